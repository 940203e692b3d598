"""One-shot device check: what the GPU training path does on this machine, in one table.

    python -m benchmarks.gpu_check                      # on a CUDA GPU: the base model, ~5-8 minutes
    python -m benchmarks.gpu_check --device cpu --quick # the tiny model on a CPU in seconds (the test suite runs it)

Rows, each measured in this run:
  train      training audio-s/s of one step (forward, CTC, backward, AdamW) in fp32, fp16 (loss scaling) and
             bf16 autocast, with each RNN path: split (two one-direction calls) and fused (one bidirectional
             cuDNN call on packed sequences); the ratio column is against fp32 + split, measured here
  memory     peak memory of a training step at 100/200/400/800 s batches of --max_duration utterances (CUDA
             only) and what --batch_seconds auto picks (asr/batching.py)
  cudnn      cuDNN benchmark mode on vs off over batches of bucketed (varying) lengths
  infer      inference audio-s/s (fp16 autocast on CUDA, as inference.py)
  fit        an AMP training run on a generated corpus (tone sequences spelling random words, built in memory,
             a few MiB) with the loss at its start and end: it must fall
Throughput ratios are against a reference measured in the same run, never against numbers from elsewhere.
"""

import argparse
import math
import statistics
import time

import numpy as np
import torch

from asr.audio import SAMPLE_RATE, LogMel
from asr.batching import AUTO_SIZES, HEADROOM, cuda_peak_probe, pick_batch_seconds
from asr.config import MODEL_PRESETS, ModelConfig
from asr.model import DeepSpeech2, set_rnn_path
from asr.optim import param_groups
from asr.tokenizers import CharTokenizer

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def random_batch(config: ModelConfig, utterances: int, seconds: float, device: torch.device, jitter: float = 0.0):
    """Features (B, T, n_mels), lengths, targets (~15 characters per second) for a synthetic batch."""
    g = torch.Generator().manual_seed(utterances * 1000 + int(seconds * 10))
    frames = int(seconds * 100)
    lengths = torch.tensor([max(10, int(frames * (1 - jitter * i / max(1, utterances)))) for i in range(utterances)])
    tokens = max(1, int(seconds * 15 * 0.9))
    return {
        "features": torch.randn(utterances, frames, config.n_mels, generator=g).to(device),
        "lengths": lengths.to(device),
        "targets": torch.randint(1, config.vocab_size, (utterances, tokens), generator=g).to(device),
        "target_lengths": torch.full((utterances,), tokens).to(device),
        "audio_seconds": float(lengths.sum()) / 100,
    }


class Trainer:
    """One model with AdamW and a loss scaler in one precision."""

    def __init__(self, config: ModelConfig, device: torch.device, precision: str, path: str = "auto") -> None:
        torch.manual_seed(0)
        self.model = DeepSpeech2(config).to(device).train()
        set_rnn_path(self.model, path)
        self.device, self.dtype = device, PRECISIONS[precision]
        self.optimizer = torch.optim.AdamW(param_groups(self.model, 1e-5), lr=1e-3)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def step(self, batch: dict) -> float:
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            log_probs, out_lengths = self.model(batch["features"], batch["lengths"])  # (B, T', V)
        loss = torch.nn.functional.ctc_loss(
            log_probs.transpose(0, 1).float(), batch["targets"], out_lengths, batch["target_lengths"],
            reduction="sum", zero_infinity=True,
        ) / len(out_lengths)  # fmt: skip
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()


def time_steps(trainer: Trainer, batches: list[dict], repeats: int, warmup: list[dict] | None = None) -> float:
    """Audio-s/s over `repeats` passes of `batches`, after one warm-up pass (over `warmup` if given)."""
    for batch in batches if warmup is None else warmup:
        trainer.step(batch)
    tic = _now(trainer.device)
    for _ in range(repeats):
        for batch in batches:
            trainer.step(batch)
    return repeats * sum(b["audio_seconds"] for b in batches) / (_now(trainer.device) - tic)


def check_training(config, device, args, rows) -> None:
    batch = random_batch(config, args.utterances, args.seconds, device)
    reference = None
    for precision in PRECISIONS:
        for path in ("split", "fused"):
            try:
                rate = time_steps(Trainer(config, device, precision, path), [batch], args.repeats)
            except Exception as e:  # e.g. bf16 GRUs need cuDNN >= 9.13: report it, go on
                rows.append(("train", f"{precision} {path}", "failed", str(e).splitlines()[0][:60]))
                continue
            reference = reference or rate
            rows.append(
                ("train", f"{precision} {path}", f"{rate:.0f} audio-s/s", f"{rate / reference:.2f}x fp32 split")
            )


def check_memory(config, device, args, rows) -> None:
    if device.type != "cuda":
        rows.append(("memory", "peak per batch", "n/a", "CUDA only; --batch_seconds auto = 60 s on a CPU"))
        return
    probe = cuda_peak_probe(config, args.max_duration, device, amp=True)
    for seconds in (100.0, 200.0, 400.0, 800.0):
        peak = probe(seconds)
        shown = "out of memory" if peak is None else f"{peak / 2**30:.1f} GiB"
        rows.append(("memory", f"{seconds:g} s batch, fp16", shown, f"{args.max_duration:g}-s utterances + AdamW"))
    total = torch.cuda.get_device_properties(device).total_memory
    auto = pick_batch_seconds(probe, total, AUTO_SIZES)
    rows.append(("memory", "batch_seconds auto", f"{auto:g} s", f"{total / 2**30:.0f} GiB, {HEADROOM:.0%} free"))


def check_cudnn_benchmark(config, device, args, rows) -> None:
    """Bucketed batches: about the same audio each, a (batch, frames) shape not seen before each."""

    def shapes(lo: float, hi: float) -> list[dict]:
        return [random_batch(config, max(1, int(args.utterances * args.seconds / s)), float(s), device, jitter=0.05)
                for s in np.linspace(lo, hi, 6)]  # fmt: skip

    warmup, timed = shapes(args.seconds * 0.4, args.seconds * 0.5), shapes(args.seconds * 0.55, args.seconds)
    rates = {}
    for on in (False, True):
        torch.backends.cudnn.benchmark = on
        trainer = Trainer(config, device, "fp16" if device.type == "cuda" else "fp32")
        rates[on] = time_steps(trainer, timed, 1, warmup=warmup)
    torch.backends.cudnn.benchmark = False
    rows.append(("cudnn", "benchmark off", f"{rates[False]:.0f} audio-s/s", "6 bucketed shapes, each new"))
    rows.append(("cudnn", "benchmark on", f"{rates[True]:.0f} audio-s/s", f"{rates[True] / rates[False]:.2f}x off"))


@torch.inference_mode()
def check_inference(config, device, args, rows) -> None:
    model = DeepSpeech2(config).to(device).eval()
    batch = random_batch(config, args.utterances, args.seconds, device)
    times = []
    for _ in range(args.repeats + 1):
        tic = _now(device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            model(batch["features"], batch["lengths"])
        times.append(_now(device) - tic)
    rate = batch["audio_seconds"] / statistics.median(times[1:])
    rows.append(("infer", "fp16" if device.type == "cuda" else "fp32", f"{rate:.0f} audio-s/s", "forward only"))


def tone_corpus(n_mels: int, utterances: int, seed: int = 0) -> list[tuple[torch.Tensor, list[int]]]:
    """(features (T, n_mels), token ids): each letter of a random 3-6 letter word is an 80 ms tone of its own
    pitch, with 40 ms of silence between letters. Learnable, and generated here rather than carried."""
    rng = np.random.default_rng(seed)
    tokenizer, featurize = CharTokenizer(), LogMel(n_mels)
    letters = "abcdefghijklmnop"
    corpus = []
    for _ in range(utterances):
        word = "".join(rng.choice(list(letters), size=int(rng.integers(3, 7))))
        parts = [np.zeros(int(0.1 * SAMPLE_RATE), np.float32)]
        for ch in word:
            t = np.arange(int(0.08 * SAMPLE_RATE)) / SAMPLE_RATE
            freq = 300.0 * 2 ** (letters.index(ch) / 4)  # 300 Hz .. ~4.3 kHz, a third of an octave apart
            parts += [(0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), np.zeros(640, np.float32)]
        audio = np.concatenate(parts) + rng.normal(0, 0.003, sum(len(p) for p in parts)).astype(np.float32)
        corpus.append((featurize(torch.from_numpy(audio)), tokenizer.encode(word)))
    return corpus


def check_fit(config, device, args, rows) -> None:
    corpus = tone_corpus(config.n_mels, 64)
    trainer = Trainer(config, device, "fp16" if device.type == "cuda" else "fp32")
    rng = np.random.default_rng(1)
    losses = []
    for _ in range(args.fit_steps):
        picked = [corpus[i] for i in rng.choice(len(corpus), size=16, replace=False)]
        lengths = torch.tensor([f.shape[0] for f, _ in picked])
        targets = torch.nn.utils.rnn.pad_sequence([torch.tensor(t) for _, t in picked], batch_first=True)
        batch = {"features": torch.nn.utils.rnn.pad_sequence([f for f, _ in picked], batch_first=True).to(device),
                 "lengths": lengths.to(device), "targets": targets.to(device),
                 "target_lengths": torch.tensor([len(t) for _, t in picked]).to(device)}  # fmt: skip
        losses.append(trainer.step(batch))
    k = max(1, len(losses) // 10)
    first, last = statistics.mean(losses[:k]), statistics.mean(losses[-k:])
    verdict = "falling" if last < 0.7 * first and math.isfinite(last) else "NOT falling"
    rows.append(("fit", f"{args.fit_steps} steps, tone corpus", f"loss {first:.2f} -> {last:.2f}", verdict))


def main(argv: list[str] | None = None) -> list[tuple[str, str, str, str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda or cpu (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="the tiny model, small batches, few steps (seconds)")
    parser.add_argument("--max_duration", type=float, default=20.0, help="longest utterance, s (default: 20)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: PyTorch sees no CUDA GPU here (use --device cpu --quick for a dry run)")
    config = MODEL_PRESETS["tiny" if args.quick else "base"]
    args.utterances, args.seconds = (4, 1.5) if args.quick else (16, 12.5)
    args.repeats, args.fit_steps = (1, 20) if args.quick else (5, 300)
    if args.quick:
        args.max_duration = 2.0
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device check: {name}; torch {torch.__version__}; model {'tiny' if args.quick else 'base'}; "
          f"batch {args.utterances} x {args.seconds:g} s")  # fmt: skip
    rows: list[tuple[str, str, str, str]] = []
    for check in (check_training, check_memory, check_cudnn_benchmark, check_inference, check_fit):
        check(config, device, args, rows)
    widths = [max(len(r[i]) for r in [("check", "setting", "result", "note"), *rows]) for i in range(4)]
    for row in [("check", "setting", "result", "note"), tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return rows


if __name__ == "__main__":
    main()
