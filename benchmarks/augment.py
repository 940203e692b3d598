"""What augmentation adds to a CPU training step.

    python -m benchmarks.augment
    python -m benchmarks.augment --data corpus/train     # + the padding it adds to a real epoch

For 16 utterances of ~10 s (clips of data/example joined end to end) it times,
per utterance: loading + log-mel features (what every step pays), each
augmentation preset (wave + SpecAugment, averaged over the same random draws
for every preset), and the `small` model's training step divided by the batch
size (the reference, measured in the same run). With --num_workers 0 the
augmentation cost adds to the step; with workers it overlaps with it.

Shift and speed perturbation also make clips longer (or shorter) after the
sampler has grouped them by their original duration, so a batch pads to its
longest augmented clip. With --data CustomDir it builds the training sampler's
epoch-1 batches over that folder and prints, per preset, how many padded
frames the model runs over compared with no augmentation.
"""

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from asr.audio import SAMPLE_RATE, LogMel, load_audio
from asr.augment import WAVE_AUGMENTATIONS, Augmenter
from asr.config import AUGMENT_PRESETS, MODEL_PRESETS
from asr.data import BucketBatchSampler, DataReport, Utterance, custom_dir_utterances
from asr.model import DeepSpeech2
from benchmarks.speed import BATCH, make_batch, make_clips, time_train_step


def padded_seconds(utterances: list[Utterance], batch_seconds: float) -> None:
    """Seconds the model runs over in one epoch of `utterances` (batch size x longest clip), per preset."""
    audio = [load_audio(u.audio_path) for u in utterances]
    batches = BucketBatchSampler([u.duration for u in utterances], batch_seconds, seed=0).batches(1)
    print(f"\n{len(utterances)} utterances, epoch-1 batches of {batch_seconds:g} s")
    print(f"{'preset':8} {'audio s':>9} {'padded s':>9} {'padding':>8} {'model work vs none':>19}")
    base = None
    for name, preset in AUGMENT_PRESETS.items():
        aug = Augmenter(preset)
        # The lengths train.py's dataset produces: the same (seed, epoch, index) generator per utterance.
        seconds = [len(aug.wave(a, np.random.default_rng([0, 1, i]))) / SAMPLE_RATE for i, a in enumerate(audio)]
        real = sum(seconds)
        padded = sum(max(seconds[i] for i in b) * len(b) for b in batches)
        base = base or padded
        print(
            f"{name:8} {real:9.0f} {padded:9.0f} {100 * (1 - real / padded):7.1f}% {100 * (padded / base - 1):+18.1f}%"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions (default: %(default)s)")
    parser.add_argument("--data", type=Path, help="a CustomDir whose epoch padding to measure (e.g. corpus/train)")
    parser.add_argument("--batch_seconds", type=float, default=60.0, help="sampler batch size for --data")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.data:  # read (and check) the folder before minutes of timing
        report = DataReport()
        try:
            utterances = custom_dir_utterances(args.data, report)
        except FileNotFoundError as e:
            parser.error(str(e))
        if report.summary():
            print(f"data report for {args.data}:\n{report.summary()}")

    config = MODEL_PRESETS["small"]
    batch = make_batch(config.n_mels)
    audio_seconds = batch[-1]
    _, clips = make_clips()  # the same ~10 s utterances the model step sees
    featurize = LogMel(config.n_mels)

    tic = time.perf_counter()
    for clip in clips:
        featurize(torch.from_numpy(clip))
    feature_ms = 1000 * (time.perf_counter() - tic) / BATCH

    torch.manual_seed(0)
    step_ms = 1000 * time_train_step(DeepSpeech2(config), batch, args.repeats) / BATCH
    print(f"{BATCH} utterances, {audio_seconds / BATCH:.1f} s each, {args.threads} threads; ms per utterance")
    print(f"  small-model training step (reference): {step_ms:8.1f}")
    print(f"  log-mel features:                      {feature_ms:8.1f}")
    print(f"{'preset':8} {'augment ms':>11} {'share of step':>14}")
    for name, preset in AUGMENT_PRESETS.items():
        aug = Augmenter(preset)
        tic = time.perf_counter()
        for r in range(args.repeats):
            for i, clip in enumerate(clips):
                rng = np.random.default_rng([r, i])
                aug.spec(featurize(torch.from_numpy(aug.wave(clip, rng))), rng)
        total_ms = 1000 * (time.perf_counter() - tic) / (args.repeats * BATCH) - feature_ms
        print(f"{name:8} {total_ms:11.1f} {100 * total_ms / step_ms:13.1f}%")

    # Each augmentation alone at p=1 (the ranges of the default preset): where a preset's cost comes from.
    print(f"{'alone':10} {'ms':>6} {'x log-mel':>10}")
    off = {f"{n}_p": 0.0 for n in (*WAVE_AUGMENTATIONS, "spec")}
    features = [featurize(torch.from_numpy(clip)) for clip in clips]
    for name in (*WAVE_AUGMENTATIONS, "spec"):
        aug = Augmenter(dataclasses.replace(AUGMENT_PRESETS["default"], **{**off, f"{name}_p": 1.0}))
        tic = time.perf_counter()
        for r in range(args.repeats):
            for i, clip in enumerate(clips):
                rng = np.random.default_rng([r, i])
                if name == "spec":
                    aug.spec(features[i], rng)
                else:
                    aug.wave(clip, rng)
        alone_ms = 1000 * (time.perf_counter() - tic) / (args.repeats * BATCH)
        print(f"{name:10} {alone_ms:6.1f} {alone_ms / feature_ms:10.2f}")

    if args.data:
        padded_seconds(utterances, args.batch_seconds)


if __name__ == "__main__":
    main()
