"""CTC decoding: log-probabilities from the model -> text.

Greedy (best path) decoding takes the most likely token per frame, merges
repeats and drops blanks.
"""

import torch

from asr.text import CharTokenizer


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, tokenizer: CharTokenizer) -> list[str]:
    """Best-path decoding of a batch.

    log_probs: (B, T, V) log-probabilities (any monotone scores work); lengths: (B,) valid frames.
    """
    if log_probs.shape[-1] != len(tokenizer):
        raise ValueError(f"log_probs have {log_probs.shape[-1]} tokens, tokenizer has {len(tokenizer)}")
    best = log_probs.argmax(dim=-1).cpu()  # (B, T)
    return [tokenizer.decode_ctc(best[b, : int(n)].tolist()) for b, n in enumerate(lengths)]
