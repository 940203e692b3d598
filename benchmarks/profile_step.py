"""Where a training step's time goes, and how close the real step is to the bare compute.

    python -m benchmarks.profile_step --data corpus/train                       # small, 60 s batches, 2 threads
    python -m benchmarks.profile_step --data corpus/train --model base --batch_seconds 20 --batches 3

On real batches of `--data` (a CustomDir; the duration-bucketed sampler of train.py, `--augment` as train.py)
it times, per batch and one after the other in this process: reading the audio, the wave augmentations, the
log-mel features, SpecAugment, collating; then the model's parts (convolutions, recurrent layers, output layer),
the CTC loss, the backward pass and the optimizer update (clipping + AdamW). CPU work is synchronous, so the
clock between forward hooks is each part's own time.

It then compares two loops over the same batches: train.py's (a DataLoader with `--num_workers` workers feeding
`train.forward_backward` + `train.apply_gradients`) against the bare compute (the same batches already in memory,
forward + backward + optimizer only). The ratio is the step's overhead: the input pipeline not hidden by the
workers, the checks and the bookkeeping.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from asr.audio import load_audio
from asr.augment import make_augmenter
from asr.config import AUGMENT_PRESETS, MODEL_PRESETS, TrainConfig
from asr.data import BucketBatchSampler, DataReport, SpeechDataset, collate, custom_dir_utterances
from asr.model import DeepSpeech2
from asr.tokenizers import CharTokenizer
from train import apply_gradients, build_optimizer, ctc_loss, forward_backward

PARTS = ("load", "augment wave", "features", "specaugment", "collate", "conv", "rnn", "output layer", "ctc loss",
         "backward", "optimizer")  # fmt: skip


class Clock:
    """Accumulates wall seconds per named part; `mark(name)` closes the part that ran since the last mark."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PARTS, 0.0)
        self.last = time.perf_counter()

    def start(self) -> None:
        self.last = time.perf_counter()

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] += now - self.last
        self.last = now


def hook_model(model: DeepSpeech2, clock: Clock) -> None:
    """Forward hooks that close "conv" when the first recurrent layer starts and "rnn" when the output starts."""
    model.rnns[0].register_forward_pre_hook(lambda *_: clock.mark("conv"))
    model.head_norm.register_forward_pre_hook(lambda *_: clock.mark("rnn"))


def profiled_batch(dataset: SpeechDataset, indices: list[int], clock: Clock) -> dict:
    """SpeechDataset.__getitem__ for each index, split into its parts, then collate."""
    items = []
    for index in indices:
        utt = dataset.utterances[index]
        clock.start()
        audio = load_audio(utt.audio_path)
        clock.mark("load")
        rng = np.random.default_rng([0, 0, index])
        if dataset.augmenter is not None:
            audio = dataset.augmenter.wave(audio, rng)
        clock.mark("augment wave")
        features = dataset.featurize(torch.from_numpy(audio))  # (T, n_mels)
        clock.mark("features")
        if dataset.augmenter is not None:
            features = dataset.augmenter.spec(features, rng)
        clock.mark("specaugment")
        target = torch.tensor(dataset.tokenizer.encode(utt.text), dtype=torch.long)
        items.append({"id": utt.id, "features": features, "target": target})
    clock.start()
    batch = collate(items)
    clock.mark("collate")
    return batch


def profiled_step(model: DeepSpeech2, optim, batch: dict, clock: Clock) -> None:
    """forward (hooked) / CTC / backward / clip + AdamW of one batch, each part on the clock."""
    clock.start()
    log_probs, out_lengths = model(batch["features"], batch["feature_lengths"])  # (B, T', V)
    clock.mark("output layer")
    loss = ctc_loss(log_probs, out_lengths, batch) / len(batch["ids"])
    clock.mark("ctc loss")
    loss.backward()
    clock.mark("backward")
    torch.nn.utils.clip_grad_norm_(model.parameters(), TrainConfig.grad_clip)
    optim.optimizer.step()
    optim.optimizer.zero_grad(set_to_none=True)
    optim.scheduler.step()
    clock.mark("optimizer")


def train_loop_seconds(model, optim, loader) -> float:
    """Wall seconds of train.py's own step over every batch of `loader` (workers included)."""
    tic = time.perf_counter()
    for batch in loader:
        forward_backward(model, optim, batch, torch.device("cpu"), amp=False)
        apply_gradients(model, optim, 1, grad_clip=TrainConfig.grad_clip)
    return time.perf_counter() - tic


def bare_seconds(model, optim, batches: list[dict]) -> float:
    """Wall seconds of forward + backward + optimizer only, on batches already in memory."""
    tic = time.perf_counter()
    for batch in batches:
        log_probs, out_lengths = model(batch["features"], batch["feature_lengths"])
        (ctc_loss(log_probs, out_lengths, batch) / len(batch["ids"])).backward()
        optim.optimizer.step()
        optim.optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("corpus/train"), help="a CustomDir (default: %(default)s)")
    parser.add_argument("--model", default="small", choices=list(MODEL_PRESETS))
    parser.add_argument("--batch_seconds", type=float, default=60.0, help="audio per batch, as train.py")
    parser.add_argument("--batches", type=int, default=8, help="batches profiled (after one warm-up)")
    parser.add_argument("--augment", default="default", choices=list(AUGMENT_PRESETS))
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    parser.add_argument("--num_workers", type=int, default=1, help="DataLoader workers of the train.py loop")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    report = DataReport()
    utterances = [u for u in custom_dir_utterances(args.data, report) if u.text]
    if not utterances:
        sys.exit(f"no transcribed utterances in {args.data}: {report.summary()}")
    config = MODEL_PRESETS[args.model]
    augmenter = make_augmenter(AUGMENT_PRESETS[args.augment])
    dataset = SpeechDataset(utterances, CharTokenizer(), config.n_mels, augmenter=augmenter)
    sampler = BucketBatchSampler([u.duration for u in utterances], args.batch_seconds, seed=0)
    chosen = sampler.batches(0)[: args.batches + 1]
    audio_seconds = sum(utterances[i].duration for b in chosen[1:] for i in b)

    model = DeepSpeech2(config)
    optim = build_optimizer(TrainConfig(lr=1e-4, epochs=1), model, steps_per_epoch=10 * len(chosen))
    model.train()
    clock = Clock()
    hook_model(model, clock)
    batches = []
    for n, indices in enumerate(chosen):
        batches.append(profiled_batch(dataset, indices, clock))
        profiled_step(model, optim, batches[-1], clock)
        if n == 0:  # warm-up: allocators, kernels, lazily built resamplers
            clock.seconds = dict.fromkeys(PARTS, 0.0)
    report_parts(clock.seconds, audio_seconds, args)
    compare_loops(model, optim, dataset, chosen[1:], batches[1:], audio_seconds, args.num_workers)


def report_parts(seconds: dict[str, float], audio_seconds: float, args) -> None:
    total = sum(seconds.values())
    pipeline = sum(seconds[p] for p in PARTS[:5])
    print(f"{args.model}, {args.batches} batches of ~{args.batch_seconds:g} s ({audio_seconds:.0f} s of audio), "
          f"--augment {args.augment}, {args.threads} threads, torch {torch.__version__}")  # fmt: skip
    print(f"{'part':14} {'ms/batch':>9} {'share':>7}")
    for name in PARTS:
        print(f"{name:14} {1000 * seconds[name] / args.batches:9.1f} {100 * seconds[name] / total:6.1f}%")
    print(f"{'total':14} {1000 * total / args.batches:9.1f}   input pipeline (load..collate) "
          f"{100 * pipeline / total:.1f}% of the step when done in the training process")  # fmt: skip


def compare_loops(model, optim, dataset, chosen, batches, audio_seconds: float, workers: int) -> None:
    class Fixed(torch.utils.data.Sampler):
        def __iter__(self):
            return iter(chosen)

        def __len__(self) -> int:
            return len(chosen)

    loader = torch.utils.data.DataLoader(dataset, batch_sampler=Fixed(), collate_fn=collate, num_workers=workers)
    loop = min(train_loop_seconds(model, optim, loader) for _ in range(2))
    bare = min(bare_seconds(model, optim, batches) for _ in range(2))
    print(f"\ntrain.py loop ({workers} worker(s)): {audio_seconds / loop:.1f} audio-s/s")
    print(f"bare forward + backward + optimizer: {audio_seconds / bare:.1f} audio-s/s")
    print(f"step / bare = {loop / bare:.3f} (target <= 1.25)")
    print(f"padding: {100 * padding_share(batches):.1f}% of the frames in these batches")


def padding_share(batches: list[dict]) -> float:
    real = sum(int(b["feature_lengths"].sum()) for b in batches)
    padded = sum(b["features"].shape[0] * b["features"].shape[1] for b in batches)
    return 1 - real / padded


if __name__ == "__main__":
    main()
