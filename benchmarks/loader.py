"""Loader throughput per worker, with features computed in the worker (CPU path) or in the step (--device_features).

    python -m benchmarks.loader --data /work/corpus/train --seconds 600

One DataLoader worker process (one torch thread) feeds train.py's batches (duration-bucketed, --batch_seconds
60, the LibriSpeech recipe's augmentation) for about --seconds of audio; the main process only consumes them.
It prints audio-s/s of: the worker making features (decode + wave augmentation + log-mel + SpecAugment), the
worker stopping at waveforms (decode + wave augmentation + the SpecAugment mask draw), and, for the second,
what featurising the same batches in the main process costs on this CPU (on a GPU that part is a few
milliseconds a batch; not measured here). The ratio is the reference (features in the worker) measured in
the same run.
"""

import argparse
import time

import torch

from asr.augment import Augmenter
from asr.config import AUGMENT_PRESETS
from asr.data import BucketBatchSampler, DataReport, SpeechDataset, collate, load_dataset
from asr.features import WaveDataset, collate_waves, device_features
from asr.tokenizers import CharTokenizer


def _init_worker(_: int) -> None:
    torch.set_num_threads(1)


def rate(dataset, collate_fn, batches: list[list[int]], featurize: bool) -> tuple[float, float]:
    """(audio-s/s of the loader, audio-s/s of featurising in this process, or 0) over `batches`."""
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate_fn, num_workers=1,
                                         worker_init_fn=_init_worker)  # fmt: skip
    audio, feat_time, tic = 0.0, 0.0, time.perf_counter()
    kept = []
    for batch in loader:
        audio += float(batch["feature_lengths"].sum()) / 100
        kept.append(batch) if featurize else None
    elapsed = time.perf_counter() - tic
    if featurize:
        tic = time.perf_counter()
        for batch in kept:
            device_features(batch, torch.device("cpu"), 80)
        feat_time = time.perf_counter() - tic
    return audio / elapsed, (audio / feat_time if feat_time else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/example", help="a CustomDir folder (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=600.0, help="audio per measurement (default: 600)")
    parser.add_argument("--augment", default="librispeech", choices=list(AUGMENT_PRESETS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    utts = [u for u in load_dataset(args.data, "unused", DataReport()) if u.text]
    sampler = BucketBatchSampler([u.duration for u in utts], 60.0, seed=0)
    batches, total = [], 0.0
    for b in sampler.batches(1):
        if total >= args.seconds:
            break
        batches.append(b)
        total += sum(utts[i].duration for i in b)
    augmenter = Augmenter(AUGMENT_PRESETS[args.augment]) if args.augment != "none" else None
    common = (utts, CharTokenizer(), 80)
    cpu, _ = rate(SpeechDataset(*common, augmenter=augmenter, seed=0), collate, batches, featurize=False)
    waves, feat = rate(WaveDataset(*common, augmenter=augmenter, seed=0), collate_waves, batches, featurize=True)
    print(f"{len(batches)} batches, {total:.0f} s of audio, --augment {args.augment}, 1 worker, 1 thread")
    print(f"worker makes features (reference):      {cpu:7.1f} audio-s/s")
    print(f"worker stops at waveforms:              {waves:7.1f} audio-s/s  ({waves / cpu:.2f}x)")
    print(f"featurising those batches on this CPU:  {feat:7.1f} audio-s/s  (the step's share on a CPU)")


if __name__ == "__main__":
    main()
