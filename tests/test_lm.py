"""Word n-gram LM: ARPA backoff arithmetic by hand, Kneser-Ney estimates by hand, normalisation, KenLM agreement."""

import gzip
import math
import subprocess
import sys
from pathlib import Path

import pytest

from asr.lm import KENLM_UNK_LOG10, ArpaLM, build_arpa, load_lm, read_sentences

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "tiny_3gram.arpa"
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
