"""Word n-gram LM: ARPA backoff arithmetic by hand, Kneser-Ney estimates by hand, normalisation, KenLM agreement."""

import gzip
import importlib.util
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from asr.lm import (
    ARPA_BUILTIN_MAX_NGRAMS,
    KENLM_UNK_LOG10,
    ArpaFormatError,
    ArpaLM,
    _counts_of_counts,
    arpa_ngram_count,
    build_arpa,
    kneser_ney_discounts,
    load_lm,
    perplexity,
    read_sentences,
)

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "tiny_3gram.arpa"
MIXED_CASE = FIXTURES / "mixed_case.arpa"
BOOK = Path(__file__).resolve().parents[2] / "shared" / "data" / "text" / "pride_and_prejudice.txt"
LN10 = math.log(10)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny() -> ArpaLM:
    return load_lm(TINY, backend="arpa")


def test_reads_header_and_orders(tiny):
    assert tiny.order == 3
    assert len(tiny) == 7 + 5 + 2


@pytest.mark.parametrize(
    ("context", "word", "log10"),
    [
        (["<s>", "the"], "cat", -0.1),  # a trigram
        (["the", "cat"], "sat", -0.2),
        (["<s>", "the"], "mat", -0.1 + -0.35),  # bow(<s> the) + p(mat | the)
        (["<s>", "the"], "sat", -0.1 + -0.2 + -1.1),  # bow(<s> the) + bow(the) + p(sat)
        (["cat", "sat"], "</s>", -0.6),  # "cat sat" has no backoff weight: 0
        (["sat", "mat"], "the", -0.6),  # unknown context, mat has no backoff: the unigram
        (["the"], "dog", -0.2 + -1.0),  # out of vocabulary: bow(the) + p(<unk>)
        ([], "cat", -0.9),
    ],
)
def test_backoff_matches_hand_computed_values(tiny, context, word, log10):
    assert tiny.logprob(context, word) == pytest.approx(log10 * LN10, abs=1e-9)


def test_stateful_scoring_and_sentence_score(tiny):
    state = tiny.begin()
    total = 0.0
    for word, expected in [("the", -0.3), ("cat", -0.1), ("sat", -0.2)]:
        lp, state, oov = tiny.score(state, word)
        assert lp == pytest.approx(expected * LN10, abs=1e-9) and not oov
        total += lp
    assert tiny.end(state) == pytest.approx(-0.6 * LN10, abs=1e-9)
    assert tiny.sentence_score(["the", "cat", "sat"]) == pytest.approx(-1.2 * LN10, abs=1e-9)
    lp, _, oov = tiny.score(tiny.begin(), "dog")
    assert oov and lp == pytest.approx((-0.3 + -1.0) * LN10, abs=1e-9)  # bow(<s>) + p(<unk>)


def test_uppercase_lm_matches_lowercase_words(tiny):
    # the fixture is uppercase like the official LibriSpeech LMs; the tokenizer's text is lowercase
    assert tiny.score(tiny.begin(), "the")[2] is False
    assert tiny.logprob(["the"], "cat") == tiny.logprob(["THE"], "Cat") == pytest.approx(-0.4 * LN10)


def test_mixed_case_lm_scores_the_most_probable_spelling_in_context():
    lm = load_lm(MIXED_CASE, backend="arpa")
    # after <s>: "The" (-0.4) beats "the" (-0.9); after "The": "cat" (-0.2) beats "Cat" (bow -0.2 + -1.5)
    state = lm.begin()
    for word, expected in [("the", -0.4), ("cat", -0.2)]:
        lp, state, oov = lm.score(state, word)
        assert lp == pytest.approx(expected * LN10, abs=1e-9) and not oov
    assert lm.end(state) == pytest.approx(-0.3 * LN10, abs=1e-9)
    # without <s>: "the" (-0.7) beats "The" (-1.2), then "Cat" (-0.5) beats "cat" (bow -0.3 + -1.0), and
    # </s> follows "Cat" (bow -0.1 + -0.8)
    assert lm.logprob(["the"], "cat") == pytest.approx(-0.5 * LN10, abs=1e-9)
    assert lm.logprob(["the", "cat"], "</s>") == pytest.approx(-0.9 * LN10, abs=1e-9)
    assert lm.logprob([], "THE") == lm.logprob([], "the") == pytest.approx(-0.7 * LN10, abs=1e-9)
    # "<UNK>" is <unk>: an OOV word gets bow(<s>) + p(<UNK>)
    lp, _, oov = lm.score(lm.begin(), "dog")
    assert oov and lp == pytest.approx((-0.5 + -1.0) * LN10, abs=1e-9)
    assert lm.is_prefix("th") and lm.is_prefix("ca") and not lm.is_prefix("<")


def test_partial_word_prefixes(tiny):
    assert tiny.is_prefix("") and tiny.is_prefix("c") and tiny.is_prefix("ca") and tiny.is_prefix("cat")
    assert not tiny.is_prefix("cx") and not tiny.is_prefix("cats") and not tiny.is_prefix("<")


def test_gzip_file_reads_the_same(tiny, tmp_path):
    gz = tmp_path / "tiny.arpa.gz"
    with gzip.open(gz, "wt") as f:
        f.write(TINY.read_text())
    lm = load_lm(gz)
    for context, word in [(["<s>", "the"], "sat"), (["the"], "dog"), ([], "</s>")]:
        assert lm.logprob(context, word) == tiny.logprob(context, word)


def test_lm_without_unk_scores_oov_like_kenlm(tmp_path):
    arpa = tmp_path / "no_unk.arpa"
    arpa.write_text(TINY.read_text().replace("ngram 1=7", "ngram 1=6").replace("-1.0\t<unk>\n", ""))
    lm = load_lm(arpa)
    assert lm.logprob([], "dog") == pytest.approx(KENLM_UNK_LOG10 * LN10)


def test_load_errors_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="asr.lm build"):
        load_lm(tmp_path / "missing.arpa")
    junk = tmp_path / "junk.arpa"
    junk.write_text("hello\n")
    with pytest.raises((ValueError, ImportError), match="ARPA|kenlm"):
        load_lm(junk, backend="arpa")
    bad = tmp_path / "bad.arpa"
    bad.write_text("\\data\\\nngram 1=1\nngram 2=1\n\n\\1-grams:\n-1\t<s>\n\n\\2-grams:\n-1\t<s> dog\n\n\\end\\\n")
    with pytest.raises(ValueError, match="dog"):
        load_lm(bad)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("-0.9\tCAT\t-0.25", "nan\tCAT\t-0.25", r"log10 probability nan of 'CAT' is not finite"),
        ("-0.9\tCAT\t-0.25", "+5.0\tCAT\t-0.25", r"log10 probability \+5\.0 of 'CAT' is positive"),
        ("-0.9\tCAT\t-0.25", "inf\tCAT\t-0.25", r"log10 probability inf of 'CAT' is not finite"),
        ("-0.5\tCAT SAT", "-inf\tCAT SAT", r"log10 probability -inf of 'CAT SAT' is not finite"),
        ("-0.9\tCAT\t-0.25", "-0.9\tCAT\tnan", r"backoff weight nan of 'CAT' is not finite"),
        ("-0.9\tCAT\t-0.25", "minus\tCAT\t-0.25", r"log10 probability 'minus' is not a number"),
        ("-0.9\tCAT\t-0.25", "-0.9\tCAT\tx0.25", r"backoff weight 'x0.25' is not a number"),
        ("-0.5\tCAT SAT", "-0.5\tCAT SAT THE X", r"5 fields in a 2-gram line, expected 3 or 4"),
        ("-0.5\tCAT SAT", "-0.5\tCAT", r"2 fields in a 2-gram line, expected 3 or 4"),
        ("-0.5\tCAT SAT", "-0.5", r"1 fields in a 2-gram line"),
        ("-0.5\tCAT SAT", "-0.5\tCAT DOG", r"word 'DOG' is not among the 1-grams"),
        ("ngram 2=5", "ngram 2=five", r"malformed header line 'ngram 2=five', expected 'ngram N=count'"),
        ("ngram 3=2", "ngram 4=2", r"a 3-gram section, but the \\data\\ header declares no 'ngram 3=' count"),
    ],
)
def test_malformed_arpa_is_refused_with_file_and_line(tmp_path, old, new, message):
    text = TINY.read_text()
    assert old in text
    bad = text.replace(old, new)
    line = _line_of(bad, new if "ngram 4" not in new else "\\3-grams:")
    arpa = tmp_path / "bad.arpa"
    arpa.write_text(bad)
    with pytest.raises(ArpaFormatError, match=rf"^{arpa}:{line}: {message}"):
        load_lm(arpa, backend="arpa")
    gz = tmp_path / "bad.arpa.gz"
    gz.write_bytes(gzip.compress(bad.encode()))
    with pytest.raises(ArpaFormatError, match=rf"^{gz}:{line}: {message}"):
        load_lm(gz, backend="arpa")


def test_inference_refuses_a_nan_arpa_in_one_line(tmp_path):
    arpa = _write(tmp_path / "nan.arpa", TINY.read_text().replace("-0.6\tTHE\t-0.2", "nan\tTHE\t-0.2"))
    done = subprocess.run(
        [sys.executable, "inference.py", "--logits", str(tmp_path / "none"), "--decoder", "beam_lm", "--lm", str(arpa)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr  # was: decoded garbage, exit status 0
    assert f"error: {arpa}:11: log10 probability nan of 'THE' is not finite" in done.stderr


def test_positive_backoff_and_minus_inf_for_start_are_accepted(tmp_path):
    arpa = tmp_path / "ok.arpa"
    arpa.write_text(TINY.read_text().replace("-99\t<s>\t-0.3", "-inf\t<s>\t0.3"))  # both legitimate in ARPA
    lm = load_lm(arpa, backend="arpa")
    assert lm.logprob(["<s>"], "</s>") == pytest.approx((0.3 + -0.7) * LN10)


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "not gzip"])
def test_broken_arpa_gz_is_one_message_naming_the_file(tmp_path, damage):
    words = "".join(f"-3.0\tW{i * 7919 % 100003:x}\n" for i in range(3000))  # the damage lands past line 1000
    text = TINY.read_text().replace("ngram 1=7", "ngram 1=3007").replace("-1.2\tMAT\n", "-1.2\tMAT\n" + words)
    assert len(ArpaLM(_write(tmp_path / "whole.arpa", text))) == 3014
    data = gzip.compress(text.encode())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "corrupt":
        data = data[:200] + bytes(b ^ 0x5A for b in data[200:260]) + data[260:]
    else:
        data = text.encode()
    gz = tmp_path / "lm.arpa.gz"
    gz.write_bytes(data)
    with pytest.raises(ArpaFormatError, match=rf"^{gz}: the gzip file is corrupt or truncated \(.+\) — download or "):
        load_lm(gz)
    with pytest.raises(ArpaFormatError, match=rf"^{gz}: the gzip file is corrupt"):
        ArpaLM(gz)


def test_kneser_ney_matches_hand_computed_probabilities(tmp_path):
    # bigram model of three sentences; counts of counts are too few, so the discounts are 0.5, 1, 1.5
    arpa = tmp_path / "kn.arpa"
    arpa.write_text(build_arpa(["a b", "a c", "b c"], order=2))
    lm = load_lm(arpa)
    # unigrams: continuation counts a=1 (<s>), b=2 (<s>, a), c=2 (a, b), </s>=2 (b, c); total 7;
    # gamma = (0.5 * 1 + 1.0 * 3) / 7 = 0.5, spread uniformly over the 5 words a, b, c, </s>, <unk>
    p = {"a": 0.5 / 7 + 0.1, "b": 1 / 7 + 0.1, "c": 1 / 7 + 0.1, "</s>": 1 / 7 + 0.1, "<unk>": 0.1}
    for word, prob in p.items():
        assert math.exp(lm.logprob([], word)) == pytest.approx(prob, abs=1e-6)
    # after a: b and c seen once each; gamma = (0.5 + 0.5) / 2
    assert math.exp(lm.logprob(["a"], "b")) == pytest.approx(0.5 / 2 + 0.5 * p["b"], abs=1e-6)
    assert math.exp(lm.logprob(["a"], "a")) == pytest.approx(0.5 * p["a"], abs=1e-6)
    # after <s>: raw counts (nothing precedes <s>): a twice, b once; gamma = (1.0 + 0.5) / 3
    assert math.exp(lm.logprob(["<s>"], "a")) == pytest.approx(1 / 3 + 0.5 * p["a"], abs=1e-6)


def test_discounts_from_exact_counts_of_counts():
    # counts 1 x5, 2 x2, 3, 4, 5, 7: n4 counts exactly-4 only (counting "4 or more" gave n4 = 3, D3+ < 0)
    counts = Counter({"a": 1, "b": 1, "c": 1, "d": 1, "e": 1, "f": 2, "g": 2, "h": 3, "i": 4, "j": 5, "k": 7})
    assert _counts_of_counts(counts) == (5, 2, 1, 1)
    # Y = 5 / (5 + 2*2) = 5/9; D1 = 1 - 2Y 2/5 = 5/9; D2 = 2 - 3Y 1/2 = 7/6; D3+ = 3 - 4Y 1/1 = 7/9
    assert kneser_ney_discounts(5, 2, 1, 1) == pytest.approx((5 / 9, 7 / 6, 7 / 9), abs=1e-12)
    # Y = 10/18 = 5/9; D1 = 1 - 2Y 4/10 = 5/9; D2 = 2 - 3Y 2/4 = 7/6; D3+ = 3 - 4Y 1/2 = 17/9
    assert kneser_ney_discounts(10, 4, 2, 1) == pytest.approx((5 / 9, 7 / 6, 17 / 9), abs=1e-12)
    assert kneser_ney_discounts(10, 4, 2, 0) == pytest.approx((5 / 9, 7 / 6, 3.0), abs=1e-12)  # no 4s: D3+ = 3


def test_discounts_are_none_only_when_degenerate():
    assert kneser_ney_discounts(0, 3, 2, 1) is None  # D1 divides by n1
    assert kneser_ney_discounts(4, 0, 1, 1) is None  # D2 divides by n2
    assert kneser_ney_discounts(5, 5, 0, 0) is None  # D3+ divides by n3
    assert kneser_ney_discounts(1, 1, 2, 0) is None  # Y = 1/3, D2 = 2 - 3Y 2/1 = 0: no mass left for backoff
    assert kneser_ney_discounts(1, 1, 3, 0) is None  # D2 < 0


def test_kneser_ney_with_estimated_discounts_matches_hand_computed_unigrams(tmp_path):
    # a unigram model of one sentence: raw counts a b c d 1, e f 2, g 3, h 4, i 5, </s> 1
    lines: list[str] = []
    arpa = tmp_path / "lm.arpa"
    arpa.write_text(build_arpa(["a b c d e e f f g g g h h h h i i i i i"], order=1, log=lines.append))
    lm = load_lm(arpa)
    # n1 = 5 (a b c d </s>), n2 = 2, n3 = 1, n4 = 1 (i's 5 does not count): D = 5/9, 7/6, 7/9 as above
    assert lines == ["1-grams: 10, with count 1/2/3/4: 5/2/1/1; discounts D1 0.5556 D2 1.1667 D3+ 0.7778"]
    d1, d2, d3 = 5 / 9, 7 / 6, 7 / 9
    total = 21  # 20 words + </s>
    gamma = (5 * d1 + 2 * d2 + 3 * d3) / total  # spread over 11 words: a..i, </s>, <unk>
    expected = {w: (1 - d1) / total + gamma / 11 for w in "abcd"}
    expected |= {"e": (2 - d2) / total + gamma / 11, "g": (3 - d3) / total + gamma / 11}
    expected |= {"i": (5 - d3) / total + gamma / 11, "</s>": (1 - d1) / total + gamma / 11, "<unk>": gamma / 11}
    for word, prob in expected.items():
        assert math.exp(lm.logprob([], word)) == pytest.approx(prob, rel=1e-6), word


def test_lower_orders_estimate_discounts_from_continuation_counts():
    # as a bigram model, the unigrams' counts are their numbers of distinct predecessors: a b c d </s> 1,
    # e f g h i 2 (e.g. e follows d and e), so n = 5/5/0/0 (raw counts would give 5/2/1/1): degenerate
    lines: list[str] = []
    build_arpa(["a b c d e e f f g g g h h h h i i i i i"], order=2, log=lines.append)
    assert lines[0] == (
        "1-grams: 10, with count 1/2/3/4: 5/5/0/0; discounts D1 0.5000 D2 1.0000 D3+ 1.5000 "
        "(counts degenerate: fallback (0.5, 1.0, 1.5))"
    )
    # bigrams, raw counts: g g 2, h h 3, i i 4, twelve others once: Y = 12/14, D2 = 2 - 3Y 1/1 < 0
    assert lines[1].startswith("2-grams: 15, with count 1/2/3/4: 12/1/1/1;") and "fallback" in lines[1]


SENTENCES = [
    "it is a truth universally acknowledged",
    "that a single man in possession of a good fortune must be in want of a wife",
    "however little known the feelings or views of such a man may be",
    "this truth is so well fixed in the minds of the surrounding families",
    "my dear mister bennet said his lady to him one day",
    "have you heard that netherfield park is let at last",
    "mister bennet replied that he had not",
    "but it is returned she for missus long has just been here",
    "a man of good fortune",
    "a single man of large fortune",
]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_built_model_is_normalised(tmp_path, order):
    arpa = tmp_path / "lm.arpa"
    arpa.write_text(build_arpa(SENTENCES, order=order))
    lm = load_lm(arpa)
    assert lm.order == order
    vocab = sorted({w for s in SENTENCES for w in s.split()} | {"</s>", "<unk>"})
    histories = [[], ["<s>"], ["a"], ["of", "a"], ["<s>", "a"], ["a", "single", "man"], ["zebra", "of"], ["man"]]
    for history in histories:
        total = sum(math.exp(lm.logprob(history, w)) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-4), history


def test_read_sentences_splits_prose_and_lines(tmp_path):
    book = tmp_path / "book.txt"
    book.write_text(
        "The Project Gutenberg EBook of Something\n\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\n\n"
        'Chapter 1\n\n"My dear Mr. Bennet," said his lady, "have you\nheard? It is let!" He had not.\n\n'
        "It cost 25 pounds; Mrs. Long said so.\n\n*** END OF THIS PROJECT GUTENBERG EBOOK X ***\nlicence text\n"
    )
    assert read_sentences(book) == [
        "chapter one",
        "my dear mister bennet said his lady have you heard",
        "it is let",
        "he had not",
        "it cost twenty five pounds missus long said so",
    ]
    lines = tmp_path / "lines.txt"
    lines.write_text("HE HOPED THERE WOULD BE STEW FOR DINNER\nTURNIPS AND CARROTS\n\nAND BRUISED POTATOES\n")
    assert read_sentences(lines) == [
        "he hoped there would be stew for dinner",
        "turnips and carrots",
        "and bruised potatoes",
    ]


def test_read_sentences_uses_the_shared_prose_splitter(tmp_path):
    # asr.sentences: a sentence ends before a capital letter, so a quote stays with "said she", "Oh!" with what
    # follows, and the interjection "no." still ends a sentence
    book = tmp_path / "book.txt"
    book.write_text(
        '"What an excellent father you have, girls!" said she. "Oh! my dear\nMr. Bennet." "No, no. You forced me '
        'into visiting him on the 26th."\n\nCHAPTER 2\n'
    )
    assert read_sentences(book, "prose") == [
        "what an excellent father you have girls said she",
        "oh my dear mister bennet",
        "no no",
        "you forced me into visiting him on the twenty sixth",
        "chapter two",
    ]


def test_build_command_writes_a_loadable_arpa(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(SENTENCES) + "\n")
    out = tmp_path / "lm.arpa.gz"
    run = subprocess.run(
        [sys.executable, "-m", "asr.lm", "build", "--text", str(text), "--order", "3", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "10 sentences" in run.stdout
    lm = load_lm(out)
    assert lm.order == 3
    assert lm.score(lm.begin(), "it")[2] is False


def test_kenlm_backend_agrees_with_builtin_reader(tmp_path):
    pytest.importorskip("kenlm")
    built = tmp_path / "built.arpa"
    built.write_text(build_arpa(SENTENCES, order=3))
    sentences = {
        TINY: ["the cat sat", "the mat", "sat the cat dog", "the the the", "cat"],
        FIXTURES / "bugs_bunny.arpa": ["bugs bunny", "buns bunny bugs", "bunny rabbit"],
        MIXED_CASE: ["the cat", "cat the the", "dog the cat", "the", "THE CAT"],  # "the cat": -0.9 log10
        built: ["a single man of good fortune", "mister bennet had a wife", "zebra in the park", "it"],
    }
    for path, texts in sentences.items():
        ours, theirs = load_lm(path, backend="arpa"), load_lm(path, backend="kenlm")
        assert theirs.order == ours.order
        for text in texts:
            s1, s2 = ours.begin(), theirs.begin()
            for word in text.split():
                lp1, s1, oov1 = ours.score(s1, word)
                lp2, s2, oov2 = theirs.score(s2, word)
                assert lp1 == pytest.approx(lp2, abs=1e-4) and oov1 == oov2, (path.name, text, word)
            assert ours.end(s1) == pytest.approx(theirs.end(s2), abs=1e-4)
        assert theirs.is_prefix("ca") == ours.is_prefix("ca")


@pytest.fixture(scope="module")
def book_split() -> tuple[list[str], list[str]]:
    """Pride and Prejudice's sentences: (training, held out), the held-out ones every 5th of the first 5000."""
    if not BOOK.is_file():
        pytest.skip(f"{BOOK} not found (../shared beside the repo)")
    sentences = read_sentences(BOOK)
    return [s for i, s in enumerate(sentences) if i >= 5000 or i % 5], sentences[:5000:5]


@pytest.fixture(scope="module")
def book_3gram(book_split, tmp_path_factory) -> tuple[Path, list[str]]:
    """A 3-gram ARPA of the training sentences, and the lines `build_arpa` logged."""
    lines: list[str] = []
    path = tmp_path_factory.mktemp("book") / "pp3.arpa"
    path.write_text(build_arpa(book_split[0], order=3, log=lines.append))
    return path, lines


# KenLM's own builder on the same training sentences (one per line), `lmplz -o 3` (kenlm 0.3.0): the discounts
# it prints ("Statistics:") and the perplexity of the held-out sentences under its ARPA (kenlm.Model.score).
# Every n-gram probability and backoff weight of its ARPA is within 1e-6 (natural log) of ours.
LMPLZ_DISCOUNTS = [(0.558733, 1.10759, 1.49749), (0.758177, 1.20134, 1.4506), (0.876545, 1.30905, 1.40583)]
LMPLZ_PERPLEXITY = 172.54436


def test_book_lm_reference_values(book_split, book_3gram):
    # Reference values: a change here changes every LM the project builds. Before the discounts were estimated
    # (every order fell back to 0.5, 1, 1.5) this perplexity was 203.31.
    train, held_out = book_split
    assert (len(train), len(held_out), sum(len(s.split()) + 1 for s in held_out)) == (4929, 1000, 21534)
    path, lines = book_3gram
    assert lines == [
        "1-grams: 5952, with count 1/2/3/4: 2540/1003/534/359; discounts D1 0.5587 D2 1.1076 D3+ 1.4975",
        "2-grams: 46344, with count 1/2/3/4: 35234/5619/1973/1008; discounts D1 0.7582 D2 1.2013 D3+ 1.4506",
        "3-grams: 84085, with count 1/2/3/4: 75716/5332/1401/637; discounts D1 0.8765 D2 1.3091 D3+ 1.4058",
    ]
    counts = [(2540, 1003, 534, 359), (35234, 5619, 1973, 1008), (75716, 5332, 1401, 637)]
    for n, (ours, theirs) in enumerate(zip(counts, LMPLZ_DISCOUNTS, strict=True), 1):
        assert kneser_ney_discounts(*ours) == pytest.approx(theirs, abs=5e-6), f"{n}-grams"
    ours = perplexity(load_lm(path, backend="arpa"), held_out)
    assert ours == pytest.approx(172.5444, abs=1e-4)
    assert ours == pytest.approx(LMPLZ_PERPLEXITY, rel=1e-6)


def test_kenlm_reads_the_book_lm_like_the_builtin_reader(book_split, book_3gram):
    pytest.importorskip("kenlm")
    path, _ = book_3gram
    ours, theirs = load_lm(path, backend="arpa"), load_lm(path, backend="kenlm")
    held_out = book_split[1][:200]
    for sentence in held_out:
        s1, s2 = ours.begin(), theirs.begin()
        for word in sentence.split():
            lp1, s1, oov1 = ours.score(s1, word)
            lp2, s2, oov2 = theirs.score(s2, word)
            assert lp1 == pytest.approx(lp2, abs=1e-4) and oov1 == oov2, (sentence, word)
        assert ours.end(s1) == pytest.approx(theirs.end(s2), abs=1e-4)
    assert perplexity(theirs, held_out) == pytest.approx(perplexity(ours, held_out), rel=1e-5)
    assert theirs._model.perplexity(held_out[0]) == pytest.approx(perplexity(ours, held_out[:1]), rel=1e-4)


def _declaring(tmp_path: Path, name: str, ngrams: int) -> Path:
    """A valid tiny ARPA file whose header claims `ngrams` 1-grams (the size checks read only the header)."""
    path = tmp_path / name
    text = TINY.read_text().replace("ngram 1=7", f"ngram 1={ngrams - 7}")
    if name.endswith(".gz"):
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def test_ngram_count_comes_from_the_header(tmp_path):
    assert arpa_ngram_count(TINY) == 14
    assert arpa_ngram_count(_declaring(tmp_path, "big.arpa.gz", 12_000_000)) == 12_000_000


def test_an_arpa_file_too_big_for_the_builtin_reader_asks_for_kenlm_at_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "kenlm", None)  # as if it were not installed
    huge = _declaring(tmp_path, "4-gram.arpa.gz", ARPA_BUILTIN_MAX_NGRAMS + 7)
    with pytest.raises(ImportError, match=r"holds 10 million n-grams: .* about 70 s and 1\.9 GiB.*pip install kenlm"):
        load_lm(huge)
    big = _declaring(tmp_path, "mid.arpa", 2_000_007)
    assert len(load_lm(big)) == 14  # below the limit: loaded, announced with the expected wait
    assert f"note: reading {big} (2.0M n-grams) with the built-in ARPA reader: about 14 s" in capsys.readouterr().err
    assert len(load_lm(huge, backend="arpa")) == 14  # asked for explicitly: loaded, announced
    assert "(10.0M n-grams)" in capsys.readouterr().err


def test_inference_refuses_a_huge_arpa_before_any_work(tmp_path):
    if importlib.util.find_spec("kenlm") is not None:
        pytest.skip("kenlm is installed: inference.py would read the LM with it")
    huge = _declaring(tmp_path, "3-gram.arpa.gz", 60_000_000)
    done = subprocess.run(
        [sys.executable, "inference.py", "--logits", str(tmp_path / "none"), "--decoder", "beam_lm", "--lm", str(huge)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr  # run_cli: bad input exits 2
    assert f"error: {huge} holds 60 million n-grams" in done.stderr and "--lm_backend arpa" in done.stderr


def test_download_weights_says_which_lms_need_kenlm_before_downloading(tmp_path, monkeypatch, capsys):
    import download_weights
    from asr.download import DownloadError
    from asr.sources import load_manifest

    catalogue = load_manifest()["resources"]
    assert [n for n in catalogue if download_weights.needs_kenlm(n, catalogue[n])] == [
        "3-gram.arpa.gz",
        "4-gram.arpa.gz",
    ]
    monkeypatch.setitem(sys.modules, "kenlm", None)

    def offline(*args, **kwargs):
        raise DownloadError("offline")

    monkeypatch.setattr(download_weights, "download_file", offline)
    from asr.errors import run_cli

    args = ["4-gram.arpa.gz", "3-gram.pruned.1e-7.arpa.gz", "--out", str(tmp_path)]
    assert run_cli(download_weights.main, args) == 2
    err = capsys.readouterr().err
    assert err.index("note: 4-gram.arpa.gz can only be decoded with KenLM") < err.index("error: offline")
