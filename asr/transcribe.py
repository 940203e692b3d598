"""Run a model over a list of utterances in batches, in inference mode.

Used by training-time evaluation and by inference.py. Batches are built by the
same duration bucketing as training (shortest first, no shuffling), so padding
stays small and results do not depend on the order of the input list.
"""

from collections.abc import Iterator

import torch

from asr.data import BucketBatchSampler, SpeechDataset, Utterance, collate
from asr.model import DeepSpeech2
from asr.text import CharTokenizer


def eval_loader(
    utterances: list[Utterance], tokenizer: CharTokenizer, n_mels: int, batch_seconds: float, num_workers: int = 0
) -> torch.utils.data.DataLoader:
    """Deterministic, unaugmented batches of `utterances`, shortest first."""
    dataset = SpeechDataset(utterances, tokenizer, n_mels)
    sampler = BucketBatchSampler([u.duration for u in utterances], batch_seconds, sortagrad=True)
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers)


def autocast(device: torch.device, enabled: bool):
    """fp16 autocast on CUDA when enabled (as in training); a no-op elsewhere."""
    return torch.autocast("cuda", dtype=torch.float16, enabled=enabled and device.type == "cuda")


@torch.inference_mode()
def transcribe(
    model: DeepSpeech2, loader: torch.utils.data.DataLoader, device: torch.device, amp: bool = False
) -> Iterator[tuple[dict, torch.Tensor, torch.Tensor]]:
    """Yield (batch, log_probs (B, T', V) on CPU, output lengths (B,)); batches whose items all failed
    to load are yielded with log_probs None so the caller can report their errors."""
    model.eval()
    for batch in loader:
        if batch["features"] is None:
            yield batch, None, None
            continue
        with autocast(device, amp):
            log_probs, lengths = model(batch["features"].to(device), batch["feature_lengths"].to(device))
        yield batch, log_probs.float().cpu(), lengths.cpu()
