"""Sentences of running prose: the body of a Project Gutenberg book, split into sentences.

One splitter serves the n-gram LM builder (`python -m asr.lm build --text book.txt`) and the synthetic
corpus (`benchmarks/synth_corpus.py`). The rules:

- A sentence never spans two paragraphs (separated by a blank line); line breaks inside one are spaces.
- A sentence ends at ".", "!" or "?", plus any closing quotes or brackets, followed by white space and a
  capital letter, optionally after an opening quote or bracket. So `"Oh!" said she.` stays one sentence, and
  so do "e.g. this" and "No. 5"; a sentence that starts with a digit or "_" (Gutenberg's italics) is not split
  off.
- Titles are not sentence ends. Mr. Mrs. Dr. St. Jr. Sr. Esq. become the words that are spoken ("Mister",
  "Missus", "Doctor", "Saint", "Junior", "Senior", "Esquire", as the LibriSpeech transcripts and LM corpus
  write them); Ms. Messrs. Mme. Prof. Rev. Capt. Col. Gen. Lt. Hon. lose their period. A title counts only
  when capitalised ("Mr." or "MR.") and followed by white space; "No." only when a digit follows, since
  "no." usually ends a sentence ("Oh, no. I am sure ...").

Sentences keep their punctuation and case; callers normalise them with `asr.text.normalize`.
"""

import re

# Titles spoken as words (capitalised as written: "Mr." -> "Mister", "MR." -> "MISTER") and titles that just
# lose their period.
SPOKEN_TITLES = {
    "Mr": "Mister",
    "Mrs": "Missus",
    "Dr": "Doctor",
    "St": "Saint",
    "Jr": "Junior",
    "Sr": "Senior",
    "Esq": "Esquire",
}
SILENT_TITLES = ("Ms", "Messrs", "Mme", "Prof", "Rev", "Capt", "Col", "Gen", "Lt", "Hon")

_TITLES = [*SPOKEN_TITLES, *SILENT_TITLES]
_TITLE = re.compile(rf"\b({'|'.join(_TITLES + [t.upper() for t in _TITLES])})\.(?=\s)|\b(No|NO)\.(?=\s*[0-9])")
_CLOSERS = "\"'\u201d\u2019)\\]"  # closing quotes and brackets that stay with the sentence they end
# What may come before the capital letter that starts the next sentence. Not "_" (Gutenberg's italics, as in
# "_You_ think"): splitting there too would be right, but it would change the sentences of data/example.
_OPENERS = "\"'\u201c\u2018(\\["
_SENTENCE_END = re.compile(rf"[.!?][{_CLOSERS}]*(\s+)(?=[{_OPENERS}]?[A-Z\u00c0-\u00d6\u00d8-\u00de])")
_GUTENBERG_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE | re.IGNORECASE)
_GUTENBERG_END = re.compile(r"^\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG", re.MULTILINE | re.IGNORECASE)


def gutenberg_body(text: str) -> str:
    """The text between Project Gutenberg's "*** START OF ..." and "*** END OF ..." lines (all of it if absent)."""
    start = _GUTENBERG_START.search(text)
    begin = start.end() if start else 0
    end = _GUTENBERG_END.search(text, begin)
    return text[begin : end.start() if end else len(text)]


def expand_titles(text: str) -> str:
    """Replace the titles that are not sentence ends by their spoken word or drop their period: "Mr." -> "Mister"."""

    def spoken(match: re.Match) -> str:
        title = match[1] or match[2]
        word = SPOKEN_TITLES.get(title.capitalize(), title)
        return word.upper() if title.isupper() else word

    return _TITLE.sub(spoken, text)


def split_sentences(text: str) -> list[str]:
    """Running prose -> its sentences, in order, titles expanded, stripped; empty paragraphs give nothing."""
    sentences = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = expand_titles(" ".join(paragraph.split()))
        ends = [m.start(1) for m in _SENTENCE_END.finditer(paragraph)]
        sentences += [paragraph[i:j] for i, j in zip([0, *ends], [*ends, len(paragraph)], strict=True)]
    return [s.strip() for s in sentences if s.strip()]
