"""`--batch_seconds auto`: the largest batch that fits the device, measured rather than guessed.

On CUDA the model is run at growing batch sizes (AUTO_SIZES seconds of audio) on the worst case a
duration-bucketed epoch can produce: a batch made only of --max_duration utterances, so padding adds nothing
and the recurrent stack runs its longest. Each try is a synthetic forward + CTC + backward in the run's
precision; its peak allocated memory plus AdamW's two moment buffers is compared with the card's memory less
HEADROOM (for the allocator's fragmentation, cuDNN workspaces that vary with shapes, and the loader's pinned
copies). The largest size under that line is used, printed, and saved in config.json as a number, so a resumed
run keeps it. On a CPU `auto` is 60 s (the speed is compute-bound there and bigger batches buy nothing),
on Apple's MPS 100 s.

A global batch that differs from the recipe's reference changes the learning rate by the square-root rule
(asr/optim.py scaled_lr, asr/settings.py batch_rule).
"""

import math
from collections.abc import Callable

import torch

from asr.config import DEVICE_BATCH_SECONDS, ModelConfig

AUTO_SIZES = (50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0)  # seconds of audio tried, smallest first
HEADROOM = 0.15  # share of the card's memory left free


def pick_batch_seconds(
    peak_bytes: Callable[[float], int | None], total_bytes: int, sizes=AUTO_SIZES, headroom: float = HEADROOM
) -> float:
    """The largest of `sizes` whose peak (`peak_bytes(seconds)`; None: out of memory) stays within
    (1 - headroom) of `total_bytes`; tries grow until one does not fit. The smallest size if none does."""
    limit = (1 - headroom) * total_bytes
    chosen = sizes[0]
    for seconds in sizes:
        peak = peak_bytes(seconds)
        if peak is None or peak > limit:
            break
        chosen = seconds
    return chosen


def cuda_peak_probe(
    config: ModelConfig, max_duration: float, device: torch.device, amp: bool
) -> Callable[[float], int | None]:
    """peak_bytes(seconds) for pick_batch_seconds: one synthetic training step of the `config` model on
    `device`, on a batch of max_duration-second utterances; None when CUDA runs out of memory."""
    from asr.infer import autocast
    from asr.model import DeepSpeech2

    model = DeepSpeech2(config).to(device).train()
    state_bytes = 2 * sum(p.numel() * p.element_size() for p in model.parameters())  # AdamW's exp_avg, exp_avg_sq
    frames = int(max_duration * 100)  # 10 ms feature frames
    tokens = int(max_duration * 15)  # ~15 characters per second of fast speech

    def peak_bytes(seconds: float) -> int | None:
        n = max(1, math.floor(seconds / max_duration))
        model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        try:
            features = torch.randn(n, frames, config.n_mels, device=device)  # (B, T, n_mels)
            lengths = torch.full((n,), frames, device=device)
            with autocast(device, amp):
                log_probs, out_lengths = model(features, lengths)  # (B, T', V)
            targets = torch.randint(1, config.vocab_size, (n, tokens), device=device)
            target_lengths = torch.full((n,), tokens, device=device)
            loss = torch.nn.functional.ctc_loss(
                log_probs.transpose(0, 1).float(), targets, out_lengths, target_lengths, zero_infinity=True
            )
            loss.backward()
            torch.cuda.synchronize(device)
            return torch.cuda.max_memory_allocated(device) + state_bytes
        except torch.OutOfMemoryError:
            return None
        finally:
            model.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()

    return peak_bytes


def auto_batch_seconds(config: ModelConfig, max_duration: float, device: torch.device, amp: bool) -> float:
    """--batch_seconds auto on `device`: probed on CUDA, DEVICE_BATCH_SECONDS elsewhere."""
    if device.type != "cuda":
        return DEVICE_BATCH_SECONDS.get(device.type, DEVICE_BATCH_SECONDS["cpu"])
    total = torch.cuda.get_device_properties(device).total_memory
    seconds = pick_batch_seconds(cuda_peak_probe(config, max_duration, device, amp), total)
    name = torch.cuda.get_device_name(device)
    print(f"batch_seconds auto: {seconds:g} s per batch on {name} ({total / 2**30:.0f} GiB, "
          f"{100 * HEADROOM:.0f}% kept free; probed on {max_duration:g}-s utterances)")  # fmt: skip
    return seconds
