"""Word n-gram language models for shallow fusion: read ARPA files (built in) or KenLM models, build small ones.

The decoder asks an LM three things, all in natural-log units and all cached:
`score(state, word) -> (log p(word | state), next_state, is_oov)`, `end(state) -> log p(</s> | state)` and
`is_prefix(partial_word)` (could any LM word start like this? used to penalise hopeless partial words early).
States are opaque, hashable and start at `begin()` (the `<s>` context).

Backends:
- `ArpaLM`: a pure-Python ARPA reader (plain or .gz, any order, backoff weights). ARPA stores log10 values;
  they are converted to natural logs at load. A word the LM has never seen is scored as `<unk>`; an ARPA
  without `<unk>` gets one with log10 probability -100, which is what KenLM does, so both backends agree.
- `KenLM`: the same interface over the optional `kenlm` package, for KenLM binaries and large ARPA files
  (`load_lm` picks it for binaries and for ARPA files of over a million n-grams when `kenlm` is importable;
  without it, it refuses ARPA files over ARPA_BUILTIN_MAX_NGRAMS, which the built-in reader would take minutes
  and many GiB to load, and says to install it).

Words are matched case-insensitively: the tokenizer's `normalize()` lowercases, the official LibriSpeech LMs
are uppercase, and a true-cased LM may hold several spellings of one word ("the", "The"). Both backends follow
one rule, so they agree: a word is scored as its most probable spelling in the LM given the context (the
first in the ARPA's 1-gram order on a tie), and the context goes on with that spelling. A word with one
spelling costs one lookup, as before. `<unk>` may be spelled in any case (e.g. "<UNK>"); `<s>` and `</s>`
must be lowercase, as KenLM requires.

ARPA files are checked as they are read: every malformed line (a non-numeric or non-finite number, a wrong
number of fields, a positive log-probability, an n-gram whose words are not 1-grams) and a corrupt or truncated
.gz raise `ArpaFormatError` naming the file and the line, rather than loading garbage that decodes to nonsense.
Backoff weights may be positive (they are not probabilities); `-inf` is taken only as the probability of `<s>`
(which is never predicted; read as -99, SRILM's value).

`python -m asr.lm build --text corpus.txt --order 3 --out lm.arpa` builds an interpolated modified
Kneser-Ney model (Chen & Goodman 1998; Heafield et al. 2013, the method of KenLM's lmplz; no pruning) from a
text file, normalised with `asr.text.normalize`, one sentence per line or split from running prose by
`asr.sentences` (the splitter `benchmarks/synth_corpus.py` uses too). Its discounts are estimated per order
from the counts of counts, as lmplz does (`kneser_ney_discounts`), and printed; on the same sentences the
model equals lmplz's (every probability and backoff weight within 1e-6 in natural log; tests/test_lm.py
keeps lmplz's numbers for a 3-gram of Pride and Prejudice).
"""

import argparse
import bisect
import gzip
import math
import re
import sys
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator
from pathlib import Path

from asr.errors import ASRError
from asr.sentences import gutenberg_body, split_sentences
from asr.text import normalize

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
LN10 = math.log(10.0)
KENLM_UNK_LOG10 = -100.0  # KenLM's probability for <unk> when the ARPA file has none
# The built-in reader at size (benchmarks/lm_size.py, a 3.6M n-gram 4-gram, 2 busy cores): ~7 us and ~200 bytes
# per n-gram, so 10M n-grams take over a minute and 2 GiB, LibriSpeech's unpruned 3-gram (~65M) ~8 minutes and
# ~13 GiB. Above this many n-grams, load_lm(backend="auto") without kenlm stops and says to install it.
ARPA_BUILTIN_MAX_NGRAMS = 10_000_000
_ARPA_SECONDS_PER_NGRAM = 7e-6
_ARPA_BYTES_PER_NGRAM = 200
_CACHE_LIMIT = 2_000_000  # (state, word) entries kept before the score cache is cleared
_FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # lmplz --discount_fallback defaults, for corpora too small to estimate


class ArpaFormatError(ASRError, ValueError):
    """An ARPA file (or its .gz) that cannot be read as one; the message names the file and line."""


class NGramLM:
    """The interface the decoder uses, with caching; subclasses implement `begin`, `_score` and `_end`.

    Any object with `begin`, `score`, `end` and `is_prefix` works as `beam_search(lm=...)`; `prefix_cache`
    (partial word -> is_prefix answer) is optional and lets the decoder skip the method call.
    """

    order: int
    path: str

    def __init__(self) -> None:
        self._cache: dict = {}
        self._words: list[str] = []  # sorted LM vocabulary (no <s>, </s>, <unk>) for is_prefix; [] = unknown
        self.prefix_cache: dict[str, bool] = {}  # is_prefix answers so far; the decoder reads it directly

    def begin(self) -> Hashable:
        """The state at the start of a sentence (after `<s>`)."""
        raise NotImplementedError

    def score(self, state: Hashable, word: str) -> tuple[float, Hashable, bool]:
        """(natural-log p(word | state), the state after word, whether word is out of vocabulary)."""
        key = (state, word)
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            hit = self._cache[key] = self._score(state, word)
        return hit

    def end(self, state: Hashable) -> float:
        """Natural-log p(</s> | state)."""
        key = (state, EOS)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = self._end(state)
        return hit

    def is_prefix(self, partial: str) -> bool:
        """True if some vocabulary word starts with `partial` (always True when the vocabulary is unknown)."""
        if not self._words:
            return True
        hit = self.prefix_cache.get(partial)
        if hit is None:
            i = bisect.bisect_left(self._words, partial)
            hit = self.prefix_cache[partial] = i < len(self._words) and self._words[i].startswith(partial)
        return hit

    def sentence_score(self, words: Iterable[str], *, eos: bool = True) -> float:
        """Natural-log probability of a whole sentence (with `</s>` unless eos=False)."""
        state, total = self.begin(), 0.0
        for w in words:
            lp, state, _ = self.score(state, w)
            total += lp
        return total + (self.end(state) if eos else 0.0)

    def _score(self, state: Hashable, word: str) -> tuple[float, Hashable, bool]:
        raise NotImplementedError

    def _end(self, state: Hashable) -> float:
        raise NotImplementedError


class ArpaLM(NGramLM):
    """A backoff n-gram model read from an ARPA file (plain or gzip), held in Python dicts.

    Loading costs ~7 us and ~200 bytes per n-gram (benchmarks/lm_size.py): a few million n-grams are fine
    (LibriSpeech's pruned 3-gram: ~25 s, under 1 GiB); use KenLM beyond ARPA_BUILTIN_MAX_NGRAMS.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = str(path)
        self._ids: dict[str, int] = {}  # word as spelled in the file -> id (ids in 1-gram order)
        self._prob: dict[tuple[int, ...], float] = {}  # n-gram -> natural-log probability
        self._bow: dict[tuple[int, ...], float] = {}  # context -> natural-log backoff weight (absent = 0)
        self.order = self._read(Path(path))
        for special in (BOS, EOS):
            if special not in self._ids:
                raise ArpaFormatError(
                    f"{path}: the ARPA file has no {special} unigram (spelled in lowercase) — is it a sentence-level "
                    "LM? build one with `python -m asr.lm build`"
                )
        unk = _unk_spelling(self._ids)  # "<unk>", another spelling of it, or None: added with KenLM's probability
        self._unk = self._ids[unk] if unk is not None else len(self._ids)
        self._ids.setdefault(UNK, self._unk)
        self._prob.setdefault((self._unk,), KENLM_UNK_LOG10 * LN10)
        self._bos = self._ids[BOS]
        self._eos = self._ids[EOS]
        # lowercased word -> the ids of its spellings, in file order; <s> is never predicted, so it is not here
        self._spellings: dict[str, tuple[int, ...]] = {}
        for word, wid in self._ids.items():
            if wid not in (self._bos, self._unk) and word.lower() != UNK:
                self._spellings[word.lower()] = (*self._spellings.get(word.lower(), ()), wid)
        self._words = sorted(w for w in self._spellings if w != EOS)

    def __len__(self) -> int:
        return len(self._prob)

    def begin(self) -> tuple[int, ...]:
        return (self._bos,) if self.order > 1 else ()

    def logprob(self, context: Iterable[str], word: str) -> float:
        """Natural-log p(word | context words), with backoff; for tests and inspection.

        Spellings are chosen word by word from the start of the context, by the rule of the module docstring.
        """
        ids: tuple[int, ...] = ()
        for w in context:
            ids = self._history(ids + (self._bos if w == BOS else self._spelling(self._history(ids), w)[1],))
        return self._spelling(self._history(ids), word)[0]

    def _history(self, ids: tuple[int, ...]) -> tuple[int, ...]:
        """The last order - 1 ids: all the context an n-gram model looks at."""
        return ids[max(0, len(ids) - self.order + 1) :] if self.order > 1 else ()

    def _score(self, state, word):
        lp, wid, oov = self._spelling(state, word)
        return lp, self._next_state(state, wid), oov

    def _spelling(self, context: tuple[int, ...], word: str) -> tuple[float, int, bool]:
        """(natural-log p, id, is OOV) of the most probable spelling of `word` after `context`."""
        ids = self._spellings.get(word)
        if ids is None:
            ids = self._spellings.get(word.lower())
            if ids is None:
                return self._logprob(context, self._unk), self._unk, True
        if len(ids) == 1:
            return self._logprob(context, ids[0]), ids[0], False
        best, best_id = -math.inf, ids[0]
        for wid in ids:
            lp = self._logprob(context, wid)
            if lp > best:  # a tie keeps the earlier spelling
                best, best_id = lp, wid
        return best, best_id, False

    def _end(self, state):
        return self._logprob(state, self._eos)

    def _logprob(self, context: tuple[int, ...], wid: int) -> float:
        """Standard ARPA backoff: the longest known n-gram, plus the backoff weights of the longer contexts."""
        backoff = 0.0
        for start in range(len(context) + 1):
            history = context[start:]
            p = self._prob.get(history + (wid,))
            if p is not None:
                return backoff + p
            backoff += self._bow.get(history, 0.0)
        raise AssertionError("every word, <unk> included, has a unigram")

    def _next_state(self, context: tuple[int, ...], wid: int) -> tuple[int, ...]:
        """The longest suffix of context+word that the model knows; shorter states share more cache entries.

        Dropping a first word whose n-gram is absent is exact: ARPA files contain every prefix of every
        n-gram, so no longer n-gram can start with it, and its backoff weight is 0.
        """
        if self.order == 1:
            return ()
        state = (context + (wid,))[-(self.order - 1) :]
        while state and state not in self._prob:
            state = state[1:]
        return state

    def _read(self, path: Path) -> int:
        if not path.is_file():
            raise FileNotFoundError(f"language model {path} does not exist; build one with `python -m asr.lm build`")
        counts: dict[int, int] = {}
        section = 0  # 0: before \data\, -1: in \data\, n: in \n-grams:
        found: Counter = Counter()
        for lineno, line in _arpa_lines(path):
            if section > 0:
                parts = line.split()
                if len(parts) > 1 or (parts and _is_number(parts[0])):
                    self._add(parts, section, path, lineno)
                    found[section] += 1
                    continue
            line = line.strip()
            if not line:
                continue
            if line == "\\data\\":
                section = -1
            elif line == "\\end\\":
                break
            elif section == -1 and line.startswith("ngram "):
                n, count = _ngram_header(line, path, lineno)
                counts[n] = count
            elif m := re.fullmatch(r"\\(\d+)-grams:", line):
                section = int(m.group(1))
                if section not in counts:
                    raise ArpaFormatError(
                        f"{path}:{lineno}: a {section}-gram section, but the \\data\\ header declares no "
                        f"'ngram {section}=' count — fix the header"
                    )
            elif section > 0:
                raise ArpaFormatError(f"{path}:{lineno}: malformed {section}-gram line {line[:100]!r}")
        if not counts:
            raise ArpaFormatError(f"{path}: not an ARPA file (no \\data\\ header with 'ngram N=count' lines)")
        for n, count in counts.items():
            if found[n] != count:
                print(f"warning: {path}: header says {count} {n}-grams, file has {found[n]}", file=sys.stderr)
        return max(counts)

    def _add(self, parts: list[str], n: int, path: Path, lineno: int) -> None:
        if len(parts) not in (n + 1, n + 2):
            raise ArpaFormatError(
                f"{path}:{lineno}: {len(parts)} fields in a {n}-gram line, expected {n + 1} or {n + 2} (log10 "
                f"probability, {n} word{'s' * (n > 1)}, optional backoff weight): {' '.join(parts)[:100]!r}"
            )
        words = parts[1 : n + 1]
        log10 = _arpa_float(parts[0], "log10 probability", path, lineno)
        if log10 == -math.inf and words == [BOS]:
            log10 = -99.0  # p(<s>) is never used; some tools write -inf for it
        elif not math.isfinite(log10) or log10 > 0:
            raise ArpaFormatError(
                f"{path}:{lineno}: log10 probability {parts[0]} of {' '.join(words)!r} is "
                f"{'not finite' if not math.isfinite(log10) else 'positive (a probability above 1)'} — the file is "
                "corrupt or was not written by an LM toolkit; rebuild it"
            )
        prob = log10 * LN10
        if n == 1:
            ids = (self._ids.setdefault(words[0], len(self._ids)),)
        else:
            try:
                ids = tuple(self._ids[w] for w in words)
            except KeyError as e:
                raise ArpaFormatError(f"{path}:{lineno}: word {e.args[0]!r} is not among the 1-grams") from None
        self._prob[ids] = prob
        if len(parts) > n + 1:
            bow = _arpa_float(parts[n + 1], "backoff weight", path, lineno)
            if not math.isfinite(bow):
                raise ArpaFormatError(
                    f"{path}:{lineno}: backoff weight {parts[n + 1]} of {' '.join(words)!r} is not finite — the file "
                    "is corrupt; rebuild it"
                )
            if bow:
                self._bow[ids] = bow * LN10


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _arpa_float(text: str, what: str, path: Path, lineno: int) -> float:
    try:
        return float(text)
    except ValueError:
        raise ArpaFormatError(
            f"{path}:{lineno}: {what} {text[:40]!r} is not a number — fix or rebuild the file"
        ) from None


def _ngram_header(line: str, path: Path, lineno: int) -> tuple[int, int]:
    """'ngram 3=1234' -> (3, 1234); anything else names the file and line."""
    m = re.fullmatch(r"ngram\s+(\d+)\s*=\s*(\d+)", line.strip())
    if not m or int(m.group(1)) < 1:
        raise ArpaFormatError(
            f"{path}:{lineno}: malformed header line {line.strip()[:100]!r}, expected 'ngram N=count'"
        )
    return int(m.group(1)), int(m.group(2))


def _arpa_lines(path: Path, limit: int | None = None) -> Iterator[tuple[int, str]]:
    """(line number, line) of a plain or gzipped text file; a corrupt or truncated .gz raises ArpaFormatError."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                if limit is not None and lineno > limit:
                    return
                yield lineno, line
    except (zlib.error, EOFError, gzip.BadGzipFile) as e:
        raise ArpaFormatError(
            f"{path}: the gzip file is corrupt or truncated ({' '.join(str(e).split())[:120] or type(e).__name__}) — "
            "download or build it again"
        ) from None


class KenLM(NGramLM):
    """The NGramLM interface over the optional `kenlm` package (binaries and big ARPA files)."""

    def __init__(self, path: str | Path, vocabulary: Iterable[str] | None = None) -> None:
        try:
            import kenlm
        except ImportError:
            raise ImportError(
                f"{path} needs the optional kenlm package: pip install kenlm (or use an ARPA file, read built in)"
            ) from None
        super().__init__()
        self.path = str(path)
        self._kenlm = kenlm
        self._model = kenlm.Model(str(path))
        self.order = self._model.order
        if vocabulary is None and _is_arpa(Path(path)):
            vocabulary = _arpa_unigrams(Path(path))
        words = list(vocabulary) if vocabulary is not None else []
        self._vocabulary = words or None  # as given, for __reduce__
        # lowercased word -> its spellings in the model, in word-list order (see the module docstring);
        # without a word list (a binary): filled on first use from the lower, upper and capitalised forms
        self._spellings: dict[str, tuple[str, ...]] = {}
        for w in words:
            if w in self._model and w not in (BOS, UNK) and w.lower() != UNK:
                self._spellings[w.lower()] = (*self._spellings.get(w.lower(), ()), w)
        self._complete = bool(words)
        # what an OOV word is scored as: <unk> itself, or an ARPA's other spelling of it such as "<UNK>"
        self._unk = _unk_spelling(dict.fromkeys(words)) or UNK
        self._words = sorted(w for w in self._spellings if w != EOS)

    def __reduce__(self):
        # kenlm models cannot be pickled; a process-pool worker reloads (or memory-maps) the file instead
        return (KenLM, (self.path, self._vocabulary))

    def begin(self):
        state = self._kenlm.State()
        self._model.BeginSentenceWrite(state)
        return state

    def _score(self, state, word):
        spellings = self._spellings.get(word)
        if spellings is None:
            spellings = self._spellings_of(word.lower())
        if not spellings:
            out = self._kenlm.State()
            return self._model.BaseScore(state, self._unk, out) * LN10, out, True
        best, best_out = -math.inf, None
        for spelling in spellings:
            out = self._kenlm.State()
            lp = self._model.BaseScore(state, spelling, out)
            if lp > best:  # a tie keeps the earlier spelling
                best, best_out = lp, out
        return best * LN10, best_out, False

    def _spellings_of(self, word: str) -> tuple[str, ...]:
        """The model's spellings of a lowercase word (probed in the model when there is no word list)."""
        if word in self._spellings or self._complete:
            return self._spellings.get(word, ())
        probes = dict.fromkeys((word, word.upper(), word.capitalize()))
        found = self._spellings[word] = tuple(w for w in probes if w in self._model and w not in (BOS, UNK))
        return found

    def _end(self, state):
        return self._model.BaseScore(state, EOS, self._kenlm.State()) * LN10


def perplexity(lm: NGramLM, sentences: Iterable[str]) -> float:
    """exp(-mean natural-log probability per token) of `sentences` (normalised, space-separated) under `lm`.

    Tokens are the words and one </s> per sentence (not <s>); out-of-vocabulary words are scored as <unk> and
    counted, as KenLM's `Model.perplexity` does.
    """
    total, tokens = 0.0, 0
    for sentence in sentences:
        words = sentence.split()
        total += lm.sentence_score(words)
        tokens += len(words) + 1
    if not tokens:
        raise ValueError("no sentences to compute a perplexity on")
    return math.exp(-total / tokens)


def load_lm(path: str | Path, *, backend: str = "auto", vocabulary: str | Path | None = None) -> NGramLM:
    """Load an n-gram LM for `beam_search(lm=...)`.

    backend: "arpa" (built-in reader), "kenlm" (needs the kenlm package), or "auto": KenLM binaries and ARPA
    files of over a million n-grams go through kenlm when it is importable, everything else through the
    built-in reader. Without kenlm, "auto" refuses an ARPA file of more than ARPA_BUILTIN_MAX_NGRAMS n-grams
    (LibriSpeech's 3-gram.arpa.gz and 4-gram.arpa.gz) at once, saying what to install, rather than loading it
    for many minutes; "arpa" loads anything. Both announce the expected wait for over a million n-grams.
    vocabulary: an optional word list (one per line, first column) for KenLM binaries, enabling the
    partial-word check; ARPA files carry their own.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"language model {path} does not exist; build one with `python -m asr.lm build`")
    if backend not in ("auto", "arpa", "kenlm"):
        raise ValueError(f"backend must be auto, arpa or kenlm, got {backend!r}")
    arpa = _is_arpa(path)
    ngrams = arpa_ngram_count(path) if arpa else 0
    chosen = _auto_backend(path, arpa, ngrams) if backend == "auto" else backend
    if chosen == "arpa":
        if not arpa:
            raise ArpaFormatError(f"{path} is not an ARPA text file (a KenLM binary? use backend='kenlm')")
        _check_builtin_size(path, ngrams, refuse=backend == "auto")
        return ArpaLM(path)
    words = None
    if vocabulary is not None:
        words = [line.split()[0] for line in Path(vocabulary).read_text().splitlines() if line.strip()]
    return KenLM(path, words)


def _auto_backend(path: Path, arpa: bool, ngrams: int) -> str:
    """kenlm for a binary and for an ARPA file of over a million n-grams, when it is importable; else arpa."""
    if arpa and ngrams <= 1_000_000:
        return "arpa"
    try:
        import kenlm  # noqa: F401
    except ImportError:
        if not arpa:
            raise ImportError(f"{path} is not an ARPA file; reading a KenLM binary needs: pip install kenlm") from None
        return "arpa"
    return "kenlm"


def arpa_ngram_count(path: str | Path) -> int:
    """The number of n-grams an ARPA file (plain or .gz) declares in its \\data\\ header (0 without one)."""
    path = Path(path)
    total, seen = 0, False
    for lineno, line in _arpa_lines(path, limit=1000):
        line = line.strip()
        if line.startswith("ngram ") and "=" in line:
            total += _ngram_header(line, path, lineno)[1]
            seen = True
        elif seen and line:
            break
    return total


def _check_builtin_size(path: Path, n: int, refuse: bool) -> None:
    """Before the built-in reader starts on an ARPA file of `n` n-grams: refuse one over ARPA_BUILTIN_MAX_NGRAMS
    (when `refuse`: backend auto, kenlm missing), else announce a wait of over a few seconds."""
    if n <= 1_000_000:
        return
    cost = f"about {n * _ARPA_SECONDS_PER_NGRAM:.0f} s and {n * _ARPA_BYTES_PER_NGRAM / 2**30:.1f} GiB"
    if refuse and n > ARPA_BUILTIN_MAX_NGRAMS:
        raise ImportError(
            f"{path} holds {n / 1e6:.0f} million n-grams: the built-in ARPA reader would take {cost} to load it. "
            "Install KenLM, which reads it several times faster in a fraction of the memory: pip install kenlm "
            "(or choose the built-in reader explicitly: inference.py --lm_backend arpa, load_lm(backend='arpa'))"
        )
    print(f"note: reading {path} ({n / 1e6:.1f}M n-grams) with the built-in ARPA reader: {cost} "
          "(pip install kenlm loads it several times faster)", file=sys.stderr)  # fmt: skip


def _unk_spelling(words: dict[str, object]) -> str | None:
    """How an LM's words spell <unk>: "<unk>" if present, else the first case variant such as "<UNK>", else None."""
    if UNK in words:
        return UNK
    return next((w for w in words if w.lower() == UNK), None)


def _is_arpa(path: Path) -> bool:
    """ARPA files start (after blank lines or comments) with \\data\\; KenLM binaries do not.

    A .gz that is not gzip, or is corrupt within its first lines, raises ArpaFormatError naming it."""
    return any(line.strip() == "\\data\\" for _, line in _arpa_lines(path, limit=1000))


def _arpa_unigrams(path: Path) -> list[str]:
    """The 1-gram words of an ARPA file, reading no further than the 1-gram section."""
    words, inside = [], False
    for _, line in _arpa_lines(path):
        if inside:
            parts = line.split()
            if len(parts) >= 2:
                words.append(parts[1])
            elif line.strip().startswith("\\"):
                break
        elif line.strip() == "\\1-grams:":
            inside = True
    return words


# ---------------------------------------------------------------------------------------------------------------
# Building an ARPA file: interpolated modified Kneser-Ney


def build_arpa(sentences: Iterable[str], order: int = 3, *, log: Callable[[str], None] | None = None) -> str:
    """ARPA text of an interpolated modified Kneser-Ney model of `sentences` (normalised, space-separated).

    The model is exactly normalised: for every history, p(w | h) over the vocabulary (all words, </s> and
    <unk>, but not <s>) sums to 1. Lower orders use continuation counts (how many distinct words precede an
    n-gram), except n-grams starting with <s>, which nothing can precede; the unigram distribution is
    interpolated with a uniform one, which is where <unk> gets its probability. Three discounts per order
    (`kneser_ney_discounts`) come from the counts of counts of that order's counts as used, as lmplz does.
    log: an optional callable given one line per order: the counts of counts and the discounts.
    """
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    adjusted = _adjusted_counts(sentences, order)
    vocab = sorted({g[0] for g in adjusted[1]} | {UNK})
    prob: list[dict[tuple[str, ...], float]] = [{} for _ in range(order + 1)]
    bow: list[dict[tuple[str, ...], float]] = [{} for _ in range(order + 1)]
    for n in range(1, order + 1):
        counts_of_counts = _counts_of_counts(adjusted[n])
        discounts = kneser_ney_discounts(*counts_of_counts)
        if log is not None:
            how = "" if discounts is not None else f" (counts degenerate: fallback {_FALLBACK_DISCOUNTS})"
            shown = discounts or _FALLBACK_DISCOUNTS
            log(
                f"{n}-grams: {len(adjusted[n])}, with count 1/2/3/4: {'/'.join(map(str, counts_of_counts))}; "
                f"discounts D1 {shown[0]:.4f} D2 {shown[1]:.4f} D3+ {shown[2]:.4f}{how}"
            )
        discounts = discounts or _FALLBACK_DISCOUNTS
        by_history: dict[tuple[str, ...], list[tuple[str, int]]] = defaultdict(list)
        for g, c in adjusted[n].items():
            by_history[g[:-1]].append((g[-1], c))
        for history, followers in by_history.items():
            total = sum(c for _, c in followers)
            mass = sum(discounts[min(c, 3) - 1] for _, c in followers)
            gamma = mass / total  # probability left for the lower order
            if n > 1:
                bow[n - 1][history] = gamma
            for word, c in followers:
                lower = 1.0 / len(vocab) if n == 1 else _interpolated(prob, bow, history[1:], word)
                prob[n][history + (word,)] = (c - discounts[min(c, 3) - 1]) / total + gamma * lower
        if n == 1:
            for word in vocab:  # words never seen after anything (<unk>) get only the uniform share
                prob[1].setdefault((word,), gamma / len(vocab))
    return _format_arpa(prob, bow, order)


def kneser_ney_discounts(n1: int, n2: int, n3: int, n4: int) -> tuple[float, float, float] | None:
    """Modified Kneser-Ney discounts (D1, D2, D3+) from counts of counts, or None where they are degenerate.

    nk: how many n-grams of one order have count exactly k. Chen & Goodman (1998, eq. 26), as in lmplz:
    Y = n1 / (n1 + 2 n2), D1 = 1 - 2Y n2/n1, D2 = 2 - 3Y n3/n2, D3+ = 3 - 4Y n4/n3.
    Degenerate (None; `build_arpa` then uses 0.5, 1, 1.5 like lmplz --discount_fallback): n1, n2 or n3 is 0
    (a division by zero), or some Dk falls outside (0, k] (a discount of 0 or less would leave no mass for the
    lower order, one above k a negative probability). n4 = 0 is fine (D3+ = 3).
    """
    if min(n1, n2, n3) <= 0:
        return None
    y = n1 / (n1 + 2 * n2)
    d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    if not all(0 < dk <= k for k, dk in enumerate(d, 1)):
        return None
    return d


def _adjusted_counts(sentences: Iterable[str], order: int) -> list[Counter]:
    """adjusted[n][ngram]: the counts Kneser-Ney discounts, per order n (adjusted[0] is unused).

    Raw counts at the highest order and for n-grams starting with <s>; below, continuation counts (the number
    of distinct words seen before the n-gram, <s> included). The <s> unigram is left out: it is never predicted.
    """
    raw = [Counter() for _ in range(order + 1)]  # raw[n][ngram]
    for sentence in sentences:
        if not sentence.split():
            continue
        tokens = (BOS, *sentence.split(), EOS)
        for n in range(1, order + 1):
            counter = raw[n]
            for i in range(len(tokens) - n + 1):
                counter[tokens[i : i + n]] += 1
    del raw[1][(BOS,)]
    if not raw[1]:
        raise ValueError("no text to build a language model from")
    adjusted = [Counter() for _ in range(order + 1)]
    adjusted[order] = raw[order]
    for n in range(order - 1, 0, -1):
        cont = Counter(g[1:] for g in raw[n + 1])  # distinct left neighbours, <s> included
        for g in raw[n]:
            adjusted[n][g] = raw[n][g] if g[0] == BOS else cont[g]
        # every n-gram with a predecessor shows up in cont; guard against a broken invariant
        assert all(c > 0 for c in adjusted[n].values())
    return adjusted


def _counts_of_counts(counts: Counter) -> tuple[int, int, int, int]:
    """(n1, n2, n3, n4): how many entries have count exactly 1, 2, 3 and 4 (not "4 or more")."""
    n = Counter(c for c in counts.values() if c <= 4)
    return n[1], n[2], n[3], n[4]


def _interpolated(prob: list[dict], bow: list[dict], history: tuple[str, ...], word: str) -> float:
    """p(word | history) from the lower orders already computed, backing off where an n-gram is absent."""
    weight = 1.0
    while True:
        p = prob[len(history) + 1].get(history + (word,))
        if p is not None:
            return weight * p
        weight *= bow[len(history)].get(history, 1.0)
        history = history[1:]


def _format_arpa(prob: list[dict], bow: list[dict], order: int) -> str:
    prob[1][(BOS,)] = 0.0  # listed so that <s> can carry a backoff weight; never predicted
    lines = ["\\data\\"] + [f"ngram {n}={len(prob[n])}" for n in range(1, order + 1)]
    for n in range(1, order + 1):
        lines += ["", f"\\{n}-grams:"]
        for g in sorted(prob[n]):
            lp = -99.0 if g == (BOS,) else math.log10(prob[n][g])
            line = f"{lp:.7f}\t{' '.join(g)}"
            if n < order and g in bow[n]:
                line += f"\t{math.log10(bow[n][g]):.7f}"
            lines.append(line)
    return "\n".join(lines + ["", "\\end\\", ""])


def read_sentences(path: str | Path, split: str = "auto") -> list[str]:
    """Normalised sentences of a text file.

    split: "lines" (one sentence per line, e.g. transcripts), "prose" (running text such as a book, split by
    `asr.sentences.split_sentences`: at sentence-ending punctuation before a capital letter, titles like "Mr."
    excepted and spelled out as spoken, "mister"), or "auto": lines when at least 80% of the lines end a
    sentence or there is hardly any sentence punctuation, else prose.
    A Project Gutenberg header and licence footer are dropped.
    """
    text = gutenberg_body(Path(path).read_text(encoding="utf-8", errors="replace"))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if split == "auto":
        ending = sum(bool(re.search(r"[.!?][\"'\u201d\u2019)\]]*$", line)) for line in lines)
        marks = len(re.findall(r"[.!?]", text))
        split = "lines" if ending >= 0.8 * len(lines) or marks < 0.1 * len(lines) else "prose"
    if split == "lines":
        pieces = lines
    elif split == "prose":
        pieces = split_sentences(text)
    else:
        raise ValueError(f"split must be auto, lines or prose, got {split!r}")
    return [s for s in map(normalize, pieces) if s]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m asr.lm", description="Build a word n-gram LM (ARPA).")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="interpolated modified Kneser-Ney ARPA from a text file")
    build.add_argument("--text", required=True, help="text file: a book, or one sentence per line")
    build.add_argument("--order", type=int, default=3, help="n-gram order")
    build.add_argument("--out", required=True, help="output ARPA file (.gz to compress)")
    build.add_argument("--split", default="auto", choices=["auto", "lines", "prose"], help="sentence splitting")
    build.add_argument("--exclude", help="file of sentences (one per line) to leave out, e.g. a test set")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    sentences = read_sentences(args.text, args.split)
    if args.exclude:
        excluded = {normalize(line) for line in Path(args.exclude).read_text().splitlines()}
        sentences = [s for s in sentences if s not in excluded]
    arpa = build_arpa(sentences, args.order, log=print)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".gz":
        with gzip.open(out, "wt", encoding="utf-8") as f:
            f.write(arpa)
    else:
        out.write_text(arpa, encoding="utf-8")
    header = [line for line in arpa.splitlines()[1 : args.order + 1]]
    words = sum(len(s.split()) for s in sentences)
    print(f"{out}: {len(sentences)} sentences, {words} words, {', '.join(header)} ({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
