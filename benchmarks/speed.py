"""Training and inference speed of each model preset, and the padding waste of the batch sampler.

    python -m benchmarks.speed                    # all presets, 2 threads
    python -m benchmarks.speed --presets small --threads 1
    python -m benchmarks.speed --device cuda      # on a GPU (fp16 autocast, as train.py)

On a fixed batch of 16 utterances of ~10 s (clips of data/example joined end to
end) it prints, per preset: the training step time (forward, CTC, backward,
AdamW) and audio-seconds per wall-second, inference audio-seconds per second,
the share of a step that loading + featurising the batch would add, and the
work of a training step in GFLOP per audio-second (counted by PyTorch's
FlopCounterMode on CPU; with a throughput assumption it estimates GPU epochs). Both
RNN paths of `BiRNN` are timed on the same weights, on any device: "split" (two
one-direction calls over reversed sequences, what a CPU runs) and, as the
reference, "fused" (one bidirectional call on PyTorch packed sequences, the usual
way to keep padding out of an RNN, and what a CUDA GPU runs: cuDNN runs both
directions at once). The ratio is fused step time / split step time: above 1
the split path is faster. It also prints the padding waste of the
duration-bucketed sampler against random batching, on LibriSpeech-like
durations.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from asr.audio import SAMPLE_RATE, LogMel, load_audio, num_frames
from asr.config import MODEL_PRESETS, TrainConfig
from asr.data import BucketBatchSampler
from asr.infer import autocast
from asr.model import DeepSpeech2, set_rnn_path
from train import apply_gradients, build_optimizer, forward_backward

EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "example" / "audio"
BATCH, SECONDS = 16, 10.0


def make_clips() -> tuple[list[Path], list[np.ndarray]]:
    """16 utterances of ~10 s, each example clips joined end to end; also the files read, in order."""
    files = sorted(EXAMPLE.glob("*.flac"))
    if not files:
        sys.exit(f"no audio in {EXAMPLE}")
    used, clips, k = [], [], 0
    for _ in range(BATCH):
        parts = []
        while sum(len(p) for p in parts) < SECONDS * 16000:
            parts.append(load_audio(files[k % len(files)]))
            used.append(files[k % len(files)])
            k += 1
        clips.append(np.concatenate(parts))
    return used, clips


def make_batch(n_mels: int) -> tuple[list[Path], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """The `make_clips` utterances as padded features (B, T, n_mels), with random 150-character targets."""
    used, clips = make_clips()
    featurize = LogMel(n_mels)
    feats = [featurize(torch.from_numpy(clip)) for clip in clips]
    lengths = torch.tensor([f.shape[0] for f in feats])
    x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)  # (B, T, n_mels)
    targets = torch.randint(1, 29, (BATCH, 150))
    return used, x, lengths, targets, torch.full((BATCH,), 150), float(lengths.sum()) / 100


def time_load_and_featurise(files: list[Path], n_mels: int) -> float:
    featurize = LogMel(n_mels)
    tic = time.perf_counter()
    for f in files:
        featurize(torch.from_numpy(load_audio(f)))
    return time.perf_counter() - tic


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()  # GPU work is asynchronous: wait for it before reading the clock
    return time.perf_counter()


def time_train_step(model: DeepSpeech2, batch, repeats: int) -> float:
    """Median seconds of one training step as train.py's loop runs it: its own forward_backward (forward, CTC,
    backward; fp16 autocast on CUDA) and apply_gradients (clipping, AdamW)."""
    _, x, lengths, targets, target_lengths, _ = batch
    as_collated = {"ids": list(range(len(x))), "features": x, "feature_lengths": lengths, "targets": targets,
                   "target_lengths": target_lengths}  # fmt: skip
    config = TrainConfig(lr=1e-4, epochs=1)
    optim = build_optimizer(config, model, steps_per_epoch=repeats + 1)
    model.train()
    times = []
    for _ in range(repeats + 1):  # the first step warms up allocators and kernels
        tic = _now(x.device)
        forward_backward(model, optim, as_collated, x.device, amp=x.device.type == "cuda")
        apply_gradients(model, optim, 1, config.grad_clip)
        times.append(_now(x.device) - tic)
    return statistics.median(times[1:])


def train_gflop(config, seconds: float = 10.0) -> float:
    """GFLOP of one training step per second of audio (forward + backward, counted on CPU)."""
    model = DeepSpeech2(config)
    frames = int(seconds * 100)
    with FlopCounterMode(display=False) as counter:
        log_probs, _ = model(torch.randn(1, frames, config.n_mels), torch.tensor([frames]))
        log_probs.sum().backward()
    return counter.get_total_flops() / seconds / 1e9


@torch.inference_mode()
def time_inference(model: DeepSpeech2, batch, repeats: int) -> float:
    _, x, lengths, *_ = batch
    model.eval()
    times = []
    for _ in range(repeats + 1):
        tic = _now(x.device)
        with autocast(x.device, amp=True):
            model(x, lengths)
        times.append(_now(x.device) - tic)
    return statistics.median(times[1:])


def padding_waste(seed: int = 0) -> None:
    """Bucketed vs random batches on durations shaped like LibriSpeech train-clean-100."""
    rng = np.random.default_rng(seed)
    # train-clean-100: 28,539 utterances, mean 12.7 s, most 10-17 s, range ~1.3-24.5 s (assumed normal, sd 3.5 s)
    durations = np.clip(rng.normal(12.7, 3.5, size=28539), 1.3, 24.5)
    sampler = BucketBatchSampler(durations.tolist(), batch_seconds=400, seed=seed)
    real = padded = 0.0
    order = rng.permutation(len(durations))
    for start in range(0, len(order), 32):  # random batches of 32, about the same 400 s
        d = durations[order[start : start + 32]]
        real, padded = real + d.sum(), padded + d.max() * len(d)
    print("\npadding waste, 28,539 LibriSpeech-like durations, ~400 s batches:")
    print(f"  random batches of 32 (reference): {100 * (1 - real / padded):5.1f}%")
    print(f"  duration-bucketed sampler:        {100 * sampler.padding_waste(1):5.1f}%  (target <= 10%)")
    # cuDNN's benchmark mode re-tunes for every new input shape: how often would it (train.py keeps it off)?
    for epoch in (0, 1, 2):
        batches = sampler.batches(epoch)
        shapes = {(len(b), num_frames(round(durations[b].max() * SAMPLE_RATE))) for b in batches}
        print(f"  epoch {epoch}: {len(batches)} batches, {len(shapes)} distinct (batch, frames) input shapes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(MODEL_PRESETS), choices=list(MODEL_PRESETS))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per measurement (default: %(default)s)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="(default: %(default)s)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: PyTorch sees no CUDA GPU here")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    # cuDNN benchmark mode stays off, as in train.py by default: its batches rarely repeat a shape, and this
    # fixed-shape batch would otherwise flatter the GPU figures.
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{args.threads} threads"
    print(f"batch {BATCH} x ~{SECONDS:g} s, {where}, torch {torch.__version__}, median of {args.repeats}")
    header = f"{'preset':7} {'params':>7} {'train split':>16} {'fused ref':>11} {'ratio':>6} "
    print(header + f"{'step s':>7} {'infer audio-s/s':>16} {'load+feat share':>16}")
    for name in args.presets:
        config = MODEL_PRESETS[name]
        batch = make_batch(config.n_mels)
        audio_seconds = batch[-1]
        batch = (batch[0], *(t.to(device) for t in batch[1:5]), audio_seconds)
        torch.manual_seed(0)
        model = DeepSpeech2(config).to(device)
        reference = DeepSpeech2(config).to(device)
        set_rnn_path(model, "split")
        set_rnn_path(reference, "fused")
        step = time_train_step(model, batch, args.repeats)
        ref_step = time_train_step(reference, batch, args.repeats)
        infer = time_inference(model, batch, args.repeats)
        load = time_load_and_featurise(batch[0], config.n_mels)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(
            f"{name:7} {params:6.1f}M {audio_seconds / step:16.1f} {audio_seconds / ref_step:11.1f} "
            f"{ref_step / step:5.2f}x {step:7.2f} {audio_seconds / infer:16.1f} {100 * load / (load + step):15.1f}%"
        )
    print("\ntraining work per second of audio (FlopCounterMode, forward + backward):")
    for name, config in MODEL_PRESETS.items():
        print(f"  {name:7} {train_gflop(config):7.2f} GFLOP")
    padding_waste()


if __name__ == "__main__":
    main()
