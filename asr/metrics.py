"""Word and character error rates.

The headline numbers are corpus-level, as Kaldi, ESPnet, icefall and jiwer
report them: total edit distance divided by total reference length. The mean
of per-utterance rates is a different number (it over-weights short
utterances); it is reported too, labelled `*_utt_mean`.

CER counts characters of the normalised text including the spaces between
words. An empty reference has no words: its per-utterance rate is 0 when the
hypothesis is empty too and 1 otherwise; a corpus with no reference words at
all scores 0 when there are no errors and 1 otherwise. Nothing divides by zero.
"""

from dataclasses import asdict, dataclass

import editdistance

SOURCE_FILE = "inference.json"  # inference.py writes it beside its predictions: data, references, checkpoint


def word_edits(reference: str, hypothesis: str) -> int:
    """Levenshtein distance between the word sequences."""
    return editdistance.eval(reference.split(), hypothesis.split())


def char_edits(reference: str, hypothesis: str) -> int:
    """Levenshtein distance between the character sequences (spaces included)."""
    return editdistance.eval(reference, hypothesis)


@dataclass(frozen=True)
class Scores:
    """Corpus-level error rates and the counts behind them."""

    wer: float
    cer: float
    wer_utt_mean: float
    cer_utt_mean: float
    word_edits: int
    words: int
    char_edits: int
    chars: int
    utterances: int

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"WER {100 * self.wer:.2f}% ({self.word_edits}/{self.words} words)  "
            f"CER {100 * self.cer:.2f}% ({self.char_edits}/{self.chars} chars)  "
            f"[per-utterance mean: WER {100 * self.wer_utt_mean:.2f}%, CER {100 * self.cer_utt_mean:.2f}%; "
            f"{self.utterances} utterances]"
        )


def _rate(edits: int, length: int) -> float:
    if length == 0:
        return 0.0 if edits == 0 else 1.0
    return edits / length


def utterance_rates(reference: str, hypothesis: str) -> tuple[float, float]:
    """(WER, CER) of one utterance."""
    return (
        _rate(word_edits(reference, hypothesis), len(reference.split())),
        _rate(char_edits(reference, hypothesis), len(reference)),
    )


def score(pairs: list[tuple[str, str]]) -> Scores:
    """Score (reference, hypothesis) pairs of normalised text."""
    we = [word_edits(r, h) for r, h in pairs]
    ce = [char_edits(r, h) for r, h in pairs]
    words = [len(r.split()) for r, _ in pairs]
    chars = [len(r) for r, _ in pairs]
    n = len(pairs)
    return Scores(
        wer=_rate(sum(we), sum(words)),
        cer=_rate(sum(ce), sum(chars)),
        wer_utt_mean=sum(map(_rate, we, words)) / n if n else 0.0,
        cer_utt_mean=sum(map(_rate, ce, chars)) / n if n else 0.0,
        word_edits=sum(we),
        words=sum(words),
        char_edits=sum(ce),
        chars=sum(chars),
        utterances=n,
    )
