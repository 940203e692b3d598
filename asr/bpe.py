"""SentencePiece BPE tokenizer for CTC: word pieces instead of characters.

`train_bpe(texts, vocab_size)` trains a SentencePiece BPE model on normalised transcripts (`asr.text.normalize`)
and returns a `BpeTokenizer`, which has the interface of `asr.tokenizers.CharTokenizer` (`asr.tokenizers.Tokenizer`).

Ids. SentencePiece is trained with `vocab_size + 1` pieces: its `<unk>` at id 0, then `vocab_size` real pieces
(no `<s>`, `</s>` or padding). Every letter a-z and the apostrophe are required characters, so every normalised
text encodes without `<unk>`; its slot, id 0, is therefore free and becomes the CTC blank. So our id is the
SentencePiece id, the blank is 0, and the output layer has vocab_size + 1 units. A piece is a word's beginning
("▁the", or "▁" alone) or a continuation ("ing"): pieces never span two words (split_by_whitespace).

Training is deterministic: one thread, the sentences in the order given and all of them (no sampling or
shuffling), the same seed; the same transcripts give byte-identical model files (tested). `tokenizer.model`
holds those bytes; a checkpoint stores them as plain bytes (`state_dict`), so inference needs nothing else.
`cached_bpe` is what train.py calls: `train_bpe` with the result kept in the run folder for the next run there.
"""

import hashlib
import io
import json
import re
import time
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from asr.atomic import atomic_write_bytes
from asr.text import BLANK, LETTERS, WORD_START, collapse_ctc, join_pieces, normalize

REQUIRED_CHARS = LETTERS + "'"  # with "▁", the alphabet of normalised text: every text encodes
MIN_VOCAB_SIZE = len(REQUIRED_CHARS) + 1  # one piece per character and "▁": the smallest BPE vocabulary
_TOO_HIGH = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")
# SentencePiece skips training sentences longer than max_sentence_length bytes (default 4192) without a word;
# ours are raised to the longest transcript, so none is skipped.
_DEFAULT_MAX_SENTENCE = 4192
CACHE_MODEL = "tokenizer.model"  # a BPE run's SentencePiece model, in its run folder (also in every checkpoint)
CACHE_INFO = "tokenizer.json"  # what that model was trained from: a new run in the folder reuses it if equal


class BpeTokenizer:
    """SentencePiece BPE pieces for CTC: index 0 is the blank, then the pieces by SentencePiece id.

    model: the bytes of a SentencePiece model trained by `train_bpe` (its `<unk>` at id 0, no `<s>`/`</s>`).
    `encode` expects normalised text; `decode(encode(t)) == t` for every normalised t.
    """

    kind = "bpe"

    def __init__(self, model: bytes) -> None:
        self.model = bytes(model)
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(self.model)
        except (RuntimeError, OSError) as e:
            raise ValueError(f"the tokenizer's model bytes are not a SentencePiece model ({e})") from None
        sp = self._sp
        if sp.unk_id() != 0 or sp.bos_id() != -1 or sp.eos_id() != -1 or sp.pad_id() != -1:
            raise ValueError(
                "a CTC BPE tokenizer needs a SentencePiece model with <unk> at id 0 and no <s>, </s> or padding "
                f"(this one: unk {sp.unk_id()}, bos {sp.bos_id()}, eos {sp.eos_id()}, pad {sp.pad_id()}); "
                "train it with asr.bpe.train_bpe"
            )
        self.vocab = [BLANK] + [sp.id_to_piece(i) for i in range(1, sp.get_piece_size())]
        missing = [c for c in REQUIRED_CHARS + WORD_START if c not in self.vocab]
        if missing:
            raise ValueError(f"the SentencePiece model lacks the pieces {missing}: it cannot spell every text")
        self.blank = 0
        self.space = self.vocab.index(WORD_START)  # "▁" alone: a word boundary with no letters

    def __len__(self) -> int:
        return len(self.vocab)

    def __reduce__(self):
        return BpeTokenizer, (self.model,)  # for process pools: the processor itself is rebuilt from the bytes

    def encode(self, text: str) -> list[int]:
        """Normalised text -> piece ids (no blanks), SentencePiece's segmentation."""
        ids = self._sp.encode(text)
        if 0 in ids:  # <unk>: a character outside the normalised alphabet
            bad = next(c for c in text if c not in REQUIRED_CHARS and c != " ")
            raise ValueError(f"character {bad!r} is not in the vocabulary; normalize() the text first")
        return ids

    def decode(self, ids: list[int]) -> str:
        """Piece ids -> normalised text (blanks skipped; "▁" becomes a single space, none at the ends)."""
        return join_pieces(self.vocab[i] for i in ids if i != self.blank)

    def decode_ctc(self, ids: list[int]) -> str:
        """A frame-level CTC path -> text: merge repeats, then drop blanks."""
        return self.decode(collapse_ctc(ids, self.blank))

    def state_dict(self) -> dict:
        """What a checkpoint stores to rebuild this tokenizer: the SentencePiece model as plain bytes."""
        return {"kind": self.kind, "model": self.model}

    @property
    def sha256(self) -> str:
        """SHA-256 of the model bytes: two tokenizers with the same one are the same tokenizer."""
        return hashlib.sha256(self.model).hexdigest()


def train_bpe(texts: Iterable[str], vocab_size: int, seed: int = 0) -> BpeTokenizer:
    """Train a SentencePiece BPE tokenizer of `vocab_size` pieces (+ the CTC blank) on transcripts.

    texts: transcripts, normalised here again (a no-op for normalised ones); empty ones are left out.
    Raises ValueError when vocab_size is below MIN_VOCAB_SIZE or above what the text allows (naming both).
    """
    sentences = [t for t in (normalize(t) for t in texts) if t]
    if not sentences:
        raise ValueError("no transcripts to train a BPE tokenizer on")
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(
            f"--bpe_vocab_size {vocab_size} is too small: a BPE tokenizer needs at least {MIN_VOCAB_SIZE} pieces "
            "(one per letter, the apostrophe and the word boundary '▁')"
        )
    model = io.BytesIO()
    spm.set_random_generator_seed(seed)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=model,
            **_trainer_options(vocab_size + 1, max(len(s.encode()) for s in sentences)),
        )
    except RuntimeError as e:
        found = _TOO_HIGH.search(str(e))
        if found is None:
            raise
        raise ValueError(
            f"--bpe_vocab_size {vocab_size} is more pieces than the {len(sentences)} training transcripts allow: "
            f"at most {int(found[2]) - 1}. Use a smaller vocabulary or more text"
        ) from None
    return BpeTokenizer(model.getvalue())


def _trainer_options(sp_vocab_size: int, longest: int) -> dict:
    """SentencePieceTrainer options: BPE over the normalised alphabet, deterministic, quiet."""
    return {
        "model_type": "bpe",
        "vocab_size": sp_vocab_size,  # <unk> (our blank's slot) + the pieces
        "character_coverage": 1.0,  # every character of the text is a piece (normalised text has 28)
        "required_chars": REQUIRED_CHARS,  # ... and every letter even if the text lacks it: nothing is <unk>
        "byte_fallback": False,
        "normalization_rule_name": "identity",  # the text is normalised already; pieces are its characters
        "split_by_whitespace": True,  # pieces never span words: "▁" begins a word, nothing else does
        "unk_id": 0,
        "bos_id": -1,
        "eos_id": -1,
        "pad_id": -1,
        "num_threads": 1,  # determinism: one thread, every sentence in order, nothing sampled
        "input_sentence_size": 0,
        "shuffle_input_sentence": False,
        "max_sentence_length": max(_DEFAULT_MAX_SENTENCE, longest + 1),
        "hard_vocab_limit": True,  # exactly vocab_size pieces, or an error
        "minloglevel": 2,  # warnings and errors only
    }


def cached_bpe(texts: list[str], vocab_size: int, seed: int, folder: Path, write: bool = True) -> BpeTokenizer:
    """`train_bpe(texts, vocab_size, seed)`, cached as folder/tokenizer.model: a new run in the same folder (say
    after bad data stopped the first) reuses it when folder/tokenizer.json says it was trained from the same
    transcripts, size and seed; training is deterministic, so that only saves time. `write` False (a DDP process
    other than rank 0) trains without writing."""
    recipe = {"bpe_vocab_size": vocab_size, "seed": seed, "transcripts": len(texts),
              "transcripts_sha256": hashlib.sha256("\n".join(texts).encode()).hexdigest()}  # fmt: skip
    model_file, info_file = folder / CACHE_MODEL, folder / CACHE_INFO
    cached = _from_cache(model_file, info_file, recipe)
    if cached is not None:
        print(f"tokenizer: BPE, {len(cached) - 1} pieces, reused from {model_file}")
        return cached
    tic = time.perf_counter()
    tokenizer = train_bpe(texts, vocab_size, seed=seed)
    print(f"tokenizer: BPE, {len(tokenizer) - 1} pieces (+ blank) trained on {len(texts)} transcripts in "
          f"{time.perf_counter() - tic:.1f} s; saved as {model_file}")  # fmt: skip
    if write:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(model_file, tokenizer.model)
        info = {"trained_from": recipe, "model_sha256": tokenizer.sha256}
        atomic_write_bytes(info_file, (json.dumps(info, indent=2) + "\n").encode())
    return tokenizer


def _from_cache(model_file: Path, info_file: Path, recipe: dict) -> BpeTokenizer | None:
    """The cached tokenizer if info_file says it was trained from `recipe` and model_file is intact, else None."""
    try:
        info, model = json.loads(info_file.read_text()), model_file.read_bytes()
    except (OSError, ValueError):  # missing or unreadable: train again
        return None
    if not isinstance(info, dict) or info.get("trained_from") != recipe:
        return None
    return BpeTokenizer(model) if info.get("model_sha256") == hashlib.sha256(model).hexdigest() else None
