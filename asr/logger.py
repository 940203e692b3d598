"""TensorBoard logging, and a writer that does nothing when logging is off.

The training loop calls the same methods either way, so it has no
`if logging:` branches.
"""

from pathlib import Path

import torch

from asr.metrics import utterance_rates


class NullWriter:
    """Accepts every SummaryWriter call and does nothing."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def make_writer(log_dir: str | Path, enabled: bool):
    """A SummaryWriter on `log_dir`, or a NullWriter when disabled."""
    if not enabled:
        return NullWriter()
    from torch.utils.tensorboard import SummaryWriter  # imported late: tensorboard is slow to import

    return SummaryWriter(str(log_dir))


def spectrogram_image(features: torch.Tensor) -> torch.Tensor:
    """(T, n_mels) features -> (1, n_mels, T) image in [0, 1], low frequencies at the bottom."""
    img = features.T.flip(0).float()
    return ((img - img.min()) / (img.max() - img.min() + 1e-8)).unsqueeze(0)


def predictions_table(rows: list[tuple[str, str, str]], extra: dict[str, list[str]] | None = None) -> str:
    """Markdown table of (id, target, prediction) rows with per-row CER and WER; `extra` adds columns."""
    extra = extra or {}
    header = ["id", "target", "prediction", "CER", "WER", *extra]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, (utt_id, target, prediction) in enumerate(rows):
        wer, cer = utterance_rates(target, prediction)
        cells = [utt_id, target, prediction, f"{100 * cer:.1f}%", f"{100 * wer:.1f}%"]
        cells += [values[i] for values in extra.values()]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)
