"""Tokenizers: the interface training, decoding and checkpoints use, the character tokenizer, and the way a
checkpoint's tokenizer is rebuilt.

A tokenizer (`Tokenizer`) maps normalised text (`asr.text.normalize`) to CTC target ids, with the blank at
index 0. `CharTokenizer` spells text letter by letter; `asr.bpe.BpeTokenizer` uses SentencePiece word pieces.
`tokenizer_from_state` rebuilds either from what its `state_dict()` saved in a checkpoint. The decoder needs
only a tokenizer's `vocab`: each token's surface, where " " (characters) or a leading "▁" (BPE pieces) begins
a word.

Imports go one way: asr.text <- asr.bpe <- asr.tokenizers.
"""

from typing import Protocol

from asr.bpe import BpeTokenizer
from asr.text import BLANK, LETTERS, SPACE, collapse_ctc


class Tokenizer(Protocol):
    """What training, decoding and checkpoints need of a tokenizer (CharTokenizer, BpeTokenizer)."""

    kind: str  # "char" or "bpe": which class `tokenizer_from_state` rebuilds
    vocab: list[str]  # surface of every token id; vocab[0] is the CTC blank
    blank: int  # 0
    space: int | None  # the token that only separates words (" " or "▁"), if there is one

    def __len__(self) -> int: ...
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...
    def decode_ctc(self, ids: list[int]) -> str: ...
    def state_dict(self) -> dict: ...


class CharTokenizer:
    """Character vocabulary for CTC: index 0 is the blank, then space, apostrophe, a-z.

    `encode` expects normalised text; `decode` is its exact inverse, so
    `decode(encode(normalize(s))) == normalize(s)`.
    """

    kind = "char"

    def __init__(self, vocab: list[str] | None = None) -> None:
        self.vocab = list(vocab) if vocab is not None else [BLANK, SPACE, "'", *LETTERS]
        if self.vocab[0] != BLANK or len(set(self.vocab)) != len(self.vocab):
            raise ValueError(f"vocab must start with {BLANK!r} and have no duplicates, got {self.vocab}")
        self.blank = 0
        self.space = self.vocab.index(SPACE) if SPACE in self.vocab else None
        self._index = {token: i for i, token in enumerate(self.vocab)}

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        """Normalised text -> token ids (no blanks)."""
        try:
            return [self._index[c] for c in text]
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in the vocabulary; normalize() the text first") from None

    def decode(self, ids: list[int]) -> str:
        """Token ids -> text; blanks are skipped, nothing is collapsed."""
        return "".join(self.vocab[i] for i in ids if i != self.blank)

    def decode_ctc(self, ids: list[int]) -> str:
        """A frame-level CTC path -> text: merge repeats, then drop blanks."""
        return self.decode(collapse_ctc(ids, self.blank))

    def state_dict(self) -> dict:
        """What a checkpoint stores to rebuild this tokenizer."""
        return {"kind": self.kind, "vocab": self.vocab}


def tokenizer_from_state(state: dict) -> Tokenizer:
    """Rebuild a tokenizer saved with `state_dict()`: a CharTokenizer or a BpeTokenizer, by its kind."""
    kind = state.get("kind") if isinstance(state, dict) else None
    if kind == "char":
        return CharTokenizer(state["vocab"])
    if kind == "bpe":
        return BpeTokenizer(state["model"])
    raise ValueError(f"unknown tokenizer kind {kind!r} in checkpoint (this code knows 'char' and 'bpe')")
