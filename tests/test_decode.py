"""CTC decoding: greedy on hand-written paths, prefix beam search exact against brute force, LM fusion, edge cases."""

import dataclasses
import inspect
import itertools
import math
from pathlib import Path
from types import SimpleNamespace

import editdistance
import numpy as np
import pytest
import torch

from asr import decode
from asr.decode import (
    BeamOptions,
    Hypothesis,
    TimedHypothesis,
    WordTime,
    beam_search,
    decode_batch,
    decode_grid,
    greedy_decode,
    word_timestamps,
)
from asr.lm import build_arpa, load_lm
from asr.tokenizers import CharTokenizer

FIXTURES = Path(__file__).parent / "fixtures"
CHARS = CharTokenizer()
AB = CharTokenizer(["<blank>", " ", "a", "b"])  # V = 4, small enough to enumerate every alignment
EXACT = {"token_min_logp": -math.inf, "beam_threshold": math.inf}  # no pruning at all


def path_log_probs(path: str, tokenizer: CharTokenizer = CHARS, peak: float = 0.99) -> np.ndarray:
    """(T, V) log-probs whose best path is `path` ("-" blank, "_" space, one character per frame)."""
    ids = [tokenizer.blank if c == "-" else tokenizer.vocab.index(" " if c == "_" else c) for c in path]
    V = len(tokenizer)
    probs = np.full((len(ids), V), (1 - peak) / (V - 1))
    probs[np.arange(len(ids)), ids] = peak
    return np.log(probs)


def collapse(path) -> tuple[int, ...]:
    out, prev = [], None
    for i in path:
        if i != prev and i != 0:
            out.append(i)
        prev = i
    return tuple(out)


def brute_force(lp: np.ndarray, allowed: list[list[int]] | None = None) -> dict[tuple[int, ...], float]:
    """log p(labelling) for every labelling, summing every alignment (only `allowed` tokens per frame)."""
    T, V = lp.shape
    allowed = allowed or [list(range(V))] * T
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(*allowed):
        label = collapse(path)
        totals[label] = np.logaddexp(totals.get(label, -np.inf), lp[np.arange(T), path].sum())
    return totals


def by_text(totals: dict[tuple[int, ...], float], tokenizer: CharTokenizer = AB) -> dict[str, float]:
    """The brute-force log-probabilities of `brute_force` (or fused scores), summed over the labellings of each
    text: labellings that differ only in spaces (leading, trailing, doubled) are one text, as in beam_search."""
    texts: dict[str, float] = {}
    for tokens, score in totals.items():
        text = " ".join("".join(tokenizer.vocab[t] for t in tokens).split())
        texts[text] = np.logaddexp(texts.get(text, -np.inf), score)
    return texts


def random_log_probs(rng: np.random.Generator, T: int, V: int, scale: float = 2.0) -> np.ndarray:
    return torch.log_softmax(torch.tensor(rng.normal(size=(T, V)) * scale), dim=-1).numpy()


def search(log_probs, tokenizer, lm=None, *, nbest=None, frame_rate=None, **options) -> list[Hypothesis]:
    """beam_search with BeamOptions(**options): the options of each test, as keywords."""
    return beam_search(log_probs, tokenizer, BeamOptions(**options), lm, nbest=nbest, frame_rate=frame_rate)


def ctc_log_prob(lp: np.ndarray, ids: list[int]) -> float:
    """Exact log p(labelling) by the CTC forward algorithm (torch's)."""
    if not ids:
        return float(lp[:, 0].sum())
    loss = torch.nn.functional.ctc_loss(
        torch.from_numpy(lp).double()[:, None], torch.tensor([ids]), [lp.shape[0]], [len(ids)], reduction="sum"
    )
    return -loss.item()


# --- greedy ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("aa-a_b--b", "aa bb"),  # a repeat needs a blank between to count twice; "_" is the space token
        ("-hh-e-ll-ll-oo__ww-o-rr-l-dd-", "hello world"),
        ("--------", ""),
        ("a", "a"),
        ("ab_ba", "ab ba"),
        ("_a__a_", "a a"),  # spaces at the ends and doubled ones are normalised away
    ],
)
def test_greedy_hand_written_paths(path, text):
    lp = torch.from_numpy(path_log_probs(path))[None]
    assert greedy_decode(lp, torch.tensor([len(path)]), CHARS) == [text]


def test_greedy_batch_respects_lengths():
    a, b = path_log_probs("-ab-b"), path_log_probs("ba---")
    batch = torch.from_numpy(np.stack([a, b]))
    assert greedy_decode(batch, torch.tensor([5, 1]), CHARS) == ["abb", "b"]


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_greedy_raises_the_beam_search_error_on_nan_or_inf(value):
    broken = path_log_probs("-ab-b")
    broken[3, 5] = value
    batch = torch.from_numpy(np.stack([path_log_probs("ba---"), broken]))
    message = r"log_probs contain 1 NaN/\+inf values \({}frames 3\): the model output is broken there"
    with pytest.raises(ValueError, match=message.format("utterance 1, ")):
        greedy_decode(batch, torch.tensor([5, 5]), CHARS)
    with pytest.raises(ValueError, match=message.format("")):
        search(broken, CHARS, beam_size=4)
    assert greedy_decode(batch, torch.tensor([5, 3]), CHARS) == ["ba", "ab"]  # frames past the length are not read


@pytest.mark.parametrize("path", ["aa-a_b--b", "-hh-e-ll-ll-oo__ww-o-rr-l-dd-", "-i-'-m-"])
def test_beam_search_follows_peaked_paths(path):
    lp = path_log_probs(path, peak=0.999)
    greedy = greedy_decode(torch.from_numpy(lp)[None], torch.tensor([len(path)]), CHARS)[0]
    hyps = search(lp, CHARS, beam_size=8)
    assert hyps[0].text == " ".join(greedy.split())


# --- exactness against brute force ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_wide_beam_finds_the_most_probable_labelling(seed):
    rng = np.random.default_rng(seed)
    T = int(rng.integers(1, 7))
    """The search's hypotheses are texts: each carries the brute-force probability of its text, the sum over
    every labelling that reads as it (spaces doubled, leading or trailing included), and the best is the most
    probable text."""
    lp = random_log_probs(rng, T, 4)
    texts = by_text(brute_force(lp))
    hyps = search(lp, AB, beam_size=10_000, **EXACT)
    assert hyps[0].text == max(texts, key=texts.get)
    assert sorted(h.text for h in hyps) == sorted(texts)  # every text once
    for h in hyps:  # every hypothesis carries its text's exact total probability
        assert h.score == pytest.approx(texts[h.text], abs=1e-6)
        assert h.am_score == h.score and h.lm_score == 0.0
        assert decode._text(h.tokens, AB.vocab) == h.text and h.tokens[:1] != (1,)  # no leading space
        assert all(a != 1 or b != 1 for a, b in itertools.pairwise(h.tokens))  # nor a doubled one


@pytest.mark.parametrize("seed", range(6))
def test_pruned_frames_are_decoded_exactly(seed):
    # Peaked frames make the candidate pruning leave blank-only frames and runs of one token, which the search
    # collapses and merges; with the pruned tokens at probability 0, the result must still be exact.
    rng = np.random.default_rng(100 + seed)
    T = 9
    logits = rng.normal(size=(T, 4))
    logits[np.arange(T), rng.integers(0, 4, size=T)] += 6.0
    lp = torch.log_softmax(torch.tensor(logits), dim=-1).numpy()
    # Compared with the brute-force probability of each text (summed over its labellings), as the search's are.
    allowed = [[v for v in range(4) if lp[t, v] >= -2.0 or v == lp[t].argmax()] for t in range(T)]
    texts = by_text(brute_force(lp, allowed))
    frames = decode._candidates(decode._as_log_prob_array(lp, 4), -2.0, None, 1.0, None)
    hyps = search(lp, AB, beam_size=10_000, token_min_logp=-2.0, beam_threshold=math.inf)
    best = max(texts, key=texts.get)
    assert hyps[0].text == best and hyps[0].score == pytest.approx(texts[best], abs=1e-6)
    unpruned = by_text(brute_force(lp))
    for h in hyps:
        assert h.score == pytest.approx(texts[h.text], abs=1e-6)
        assert h.am_score <= unpruned[h.text] + 1e-9  # am_score: the text's alignments that survived the pruning
    assert any(not cands for _, cands, _ in frames)  # blank-only frames; seeds 0, 1, 2 and 5 also merge frames


def test_merging_of_repeated_single_candidate_frames_happens():
    lp = path_log_probs("-aaa-bb-", AB, peak=0.999)
    frames = decode._candidates(decode._as_log_prob_array(lp, 4), -5.0, None, 1.0, None)
    assert len(frames) == 5  # "-", "aaa" as one frame, "-", "bb" as one frame, "-"
    assert search(lp, AB, beam_size=4)[0].score == pytest.approx(ctc_log_prob(lp, [2, 3]), abs=1e-2)


@pytest.mark.parametrize("seed", range(4))
def test_wide_beam_with_lm_maximises_the_fused_score(seed):
    lm = load_lm(FIXTURES / "ab_2gram.arpa")
    alpha, beta, unk = 0.8, 0.5, -3.0
    rng = np.random.default_rng(seed)
    """Exact against brute force: the fused score of each text (its labellings' probabilities summed, all with
    the same LM score), with merge_beams off, since merging drops texts the LM cannot tell apart."""
    lp = random_log_probs(rng, 6, 4, scale=1.5)
    fused = {}
    for tokens, am in brute_force(lp).items():
        words = "".join(AB.vocab[t] for t in tokens).split()
        state, lm_part = lm.begin(), 0.0
        for w in words:
            lp_w, state, oov = lm.score(state, w)
            lm_part += alpha * lp_w + beta + (unk if oov else 0.0)
        fused[tokens] = am + lm_part + alpha * lm.end(state)
    fused = by_text(fused)
    options = {"alpha": alpha, "beta": beta, "unk_offset": unk, "merge_beams": False} | EXACT
    hyps = search(lp, AB, lm, beam_size=10_000, **options)
    assert hyps[0].text == max(fused, key=fused.get)
    for h in hyps:
        assert h.score == pytest.approx(fused[h.text], abs=1e-6)
        assert h.am_score + h.lm_score == pytest.approx(h.score, abs=1e-9)
    # Merging on: the same best text, and no score holds another text's probability (summing the merged prefixes
    # added up to 1.2 nats of other texts' to a score on these seeds, and on seed 3 made "a" beat ""); the texts
    # that lost a prefix to merging score lower bounds.
    merged = search(lp, AB, lm, beam_size=10_000, **(options | {"merge_beams": True}))
    assert merged[0].text == hyps[0].text and merged[0].score == pytest.approx(hyps[0].score, abs=1e-6)
    assert all(h.score <= fused[h.text] + 1e-9 for h in merged) and len(merged) < len(hyps)


# --- no worse than greedy ---------------------------------------------------------------------------------------


def _peaked_utterance(rng: np.random.Generator, words: list[str]) -> tuple[np.ndarray, str]:
    """A CTC-like (T, V) output for a random sentence: characters held 1-3 frames, blanks between, noise."""
    text = " ".join(rng.choice(words, size=int(rng.integers(3, 8))))
    path: list[int] = []
    peaks: list[float] = []
    for c in CHARS.encode(text):
        gap = int(rng.integers(0, 3)) + (1 if path and path[-1] == c else 0)
        hold = int(rng.integers(1, 4))
        path += [0] * gap + [c] * hold
        peaks += [8.0] * gap + [float(rng.uniform(2.0, 9.0))] * hold
    logits = rng.normal(size=(len(path), len(CHARS))) * 1.5
    logits[np.arange(len(path)), path] += np.array(peaks)
    return torch.log_softmax(torch.tensor(logits), dim=-1).numpy(), text


def test_beam_is_no_worse_than_greedy_on_random_peaked_outputs():
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "while", "it", "rained", "all", "day", "long"]
    refs, greedy_hyps, beam_hyps = [], [], []
    for _ in range(40):
        lp, ref = _peaked_utterance(rng, words)
        greedy = greedy_decode(torch.from_numpy(lp)[None], torch.tensor([len(lp)]), CHARS)[0]
        best = search(lp, CHARS, beam_size=16)[0]
        # the beam's labelling is at least as probable as greedy's (exact CTC probabilities)
        assert ctc_log_prob(lp, list(best.tokens)) >= ctc_log_prob(lp, CHARS.encode(greedy)) - 1e-9
        refs.append(ref)
        greedy_hyps.append(" ".join(greedy.split()))
        beam_hyps.append(best.text)

    def wer(hyps):
        return sum(editdistance.eval(h.split(), r.split()) for h, r in zip(hyps, refs, strict=True))

    assert wer(greedy_hyps) > 0  # the set is hard enough to tell the two apart
    assert wer(beam_hyps) <= wer(greedy_hyps)


def test_top_k_1_is_greedy():
    rng = np.random.default_rng(3)
    lp, _ = _peaked_utterance(rng, ["bugs", "bunny", "rabbit", "season"])
    greedy = greedy_decode(torch.from_numpy(lp)[None], torch.tensor([len(lp)]), CHARS)[0]
    hyps = search(lp, CHARS, beam_size=1, top_k=1, token_min_logp=-math.inf)
    assert hyps[0].text == " ".join(greedy.split())
    assert hyps[0].score == pytest.approx(lp.max(axis=1).sum(), abs=1e-9)  # the single surviving path


# --- LM fusion ----------------------------------------------------------------------------------------------------


def _bugs_or_buns() -> np.ndarray:
    """'bugs bunny' where the g is a near-tie with n, which the audio slightly prefers: 'buns bunny'."""
    lp = path_log_probs("-b-u-g-s-_-b-u-n-n-y-", peak=0.98)
    g = 5  # the frame of the g
    probs = np.full(len(CHARS), 0.02 / (len(CHARS) - 2))
    probs[CHARS.vocab.index("g")], probs[CHARS.vocab.index("n")] = 0.44, 0.54
    lp[g] = np.log(probs)
    return lp


@pytest.mark.parametrize("backend", ["arpa", "kenlm"])
def test_lm_flips_an_acoustic_near_tie_into_the_right_words(backend):
    if backend == "kenlm":
        pytest.importorskip("kenlm")
    lm = load_lm(FIXTURES / "bugs_bunny.arpa", backend=backend)  # uppercase words, like the LibriSpeech LMs
    lp = _bugs_or_buns()
    assert search(lp, CHARS, beam_size=8)[0].text == "buns bunny"
    assert search(lp, CHARS, beam_size=8, lm=lm, alpha=0.0)[0].text == "buns bunny"
    fused = search(lp, CHARS, beam_size=8, lm=lm, alpha=0.5, beta=0.5)
    assert fused[0].text == "bugs bunny"
    expected_lm = 0.5 * lm.sentence_score(["bugs", "bunny"]) + 2 * 0.5
    assert fused[0].lm_score == pytest.approx(expected_lm, abs=1e-9)
    assert [h.text for h in fused[:2]] == ["bugs bunny", "buns bunny"]


def test_without_lm_alpha_and_beta_are_ignored():
    lp = path_log_probs("-a-_-b-", AB, peak=0.9)
    plain = search(lp, AB, beam_size=8)
    assert search(lp, AB, beam_size=8, alpha=2.0, beta=1.5) == plain
    assert plain[0].text == "a b" and plain[0].lm_score == 0.0


def test_word_pieces_plug_into_the_same_decoder():
    # a BPE-like vocabulary: "▁" starts a word; the decoder only needs .vocab
    pieces = SimpleNamespace(vocab=["<blank>", "\u2581bugs", "\u2581bun", "ny", "\u2581buns"])
    lm = load_lm(FIXTURES / "bugs_bunny.arpa")
    lp = np.log(np.full((5, 5), 0.01))
    for t, piece in enumerate([1, 0, 2, 3, 0]):
        lp[t, piece] = np.log(0.96)
    hyps = search(lp, pieces, beam_size=4, lm=lm, alpha=0.7, beta=0.2)
    assert hyps[0].text == "bugs bunny" and hyps[0].tokens == (1, 2, 3)
    assert hyps[0].lm_score == pytest.approx(0.7 * lm.sentence_score(["bugs", "bunny"]) + 0.4, abs=1e-9)


def test_impossible_partial_words_are_charged_early_and_refunded():
    lm = load_lm(FIXTURES / "bugs_bunny.arpa")
    lp = path_log_probs("-b-x-", peak=0.99)  # "bx" starts no LM word
    hyp = search(lp, CHARS, beam_size=4, lm=lm, alpha=1.0, beta=0.0, unk_offset=-4.0, **EXACT)[0]
    assert hyp.text == "bx"
    # the charge for the partial word is replaced by the word's real score: <unk> + unk_offset, then </s>
    state = lm.begin()
    unk_lp, state, oov = lm.score(state, "bx")
    assert oov and hyp.lm_score == pytest.approx(unk_lp - 4.0 + lm.end(state), abs=1e-9)


def test_the_partial_word_charge_grows_with_the_word_and_is_taken_back():
    lm = load_lm(FIXTURES / "bugs_bunny.arpa")
    words = decode._WordTracker(CHARS.vocab, lm, 0.5, 1.0, -6.0)
    node, charges = 0, []
    for c in "bxaaaaaa":  # "b" begins BUGS, "bx" begins no LM word
        assert words.add(node, CHARS.vocab.index(c), 1.0, 0.0, len(words.state))
        node = len(words.state) - 1
        charges.append(words.state[node][2])
    # unk_offset per 6 characters, at least once; carried by the prefix's probability, not by its LM score
    assert charges == pytest.approx([0.0, -6.0, -6.0, -6.0, -6.0, -6.0, -7.0, -8.0], abs=1e-12)
    assert math.prod(words.factor[1:]) == pytest.approx(math.exp(-8.0), rel=1e-12)
    assert words.state[node][3] == 0.0
    # a space completes the word: the charge is taken back and the LM's score takes its place
    assert words.add(node, CHARS.vocab.index(" "), 1.0, 0.0, len(words.state))
    lp, _, oov = lm.score(lm.begin(), "bxaaaaaa")
    assert oov and words.state[-1][3] == 0.5 * lp + 1.0 - 6.0
    assert math.prod(words.factor[1:]) == pytest.approx(math.exp(0.5 * lp + 1.0 - 6.0), rel=1e-12)


def test_an_extension_the_lm_refused_is_remembered_until_it_is_probable_enough():
    words = decode._WordTracker(CHARS.vocab, load_lm(FIXTURES / "bugs_bunny.arpa"), 0.5, 1.0, -6.0)
    x = CHARS.vocab.index("x")  # "x" begins no LM word: a factor of e^-6 = 0.0025
    assert not words.add(0, x, 1.0, 0.01, 7)
    assert words.refused == {7: pytest.approx(math.exp(-6.0))} and len(words.state) == 1
    assert not words.add(0, x, 2.0, 0.01, 7)  # still below the cut: answered from memory
    assert words.add(0, x, 100.0, 0.01, 7) and words.state[1][1:] == ("x", -6.0, 0.0)


def _spoken(words: list[str], space: float) -> np.ndarray:
    """(T, V) log-probs of words said one after another: each letter a frame at 0.9 and then a blank frame at 0.9,
    and between two words two frames where the space has probability `space` and the blank 0.97 - space."""
    rows = []
    for i, word in enumerate(words):
        rows += [{" ": space, "<blank>": 0.97 - space}] * 2 if i else []
        rows += [row for c in word for row in ({c: 0.9}, {"<blank>": 0.9})]
    probs = np.zeros((len(rows), len(CHARS)))
    for t, row in enumerate(rows):
        probs[t] = (1.0 - sum(row.values())) / (len(CHARS) - len(row))
        for token, p in row.items():
            probs[t, CHARS.vocab.index(token)] = p
    return np.log(probs)


def test_a_glued_non_word_pays_as_it_grows(monkeypatch):
    # Weak spaces, and words that cost 2.45 nats each: a glued string charged unk_offset once gets ahead of the
    # right split by a word's cost at every space, until the split falls out of the beam.
    lm = load_lm(FIXTURES / "rabbit_season.arpa")
    lp = _spoken(["rabbit", "season", "duck", "season"] * 2, space=0.3)
    kwargs = {"beam_size": 8, "lm": lm, "alpha": 0.5, "beta": 1.0}
    assert search(lp, CHARS, **kwargs)[0].text == "rabbit season duck season rabbit season duck season"
    monkeypatch.setattr(decode, "_PARTIAL_CHARS", math.inf)  # a charge that never grows: one unk_offset
    assert search(lp, CHARS, **kwargs)[0].text == "rabbitseasonduckseasonrabbitseasonduckseason"


def test_a_word_of_apostrophes_only_is_charged_unk_offset(tmp_path):
    """Such a word is dropped from the text, so it earns no word bonus and leaves the LM context alone, but it is
    no free word either: it pays unk_offset, as a spelling the LM does not know does."""
    (tmp_path / "lm.arpa").write_text(build_arpa(["it is", "it is o'clock", "is it"], order=2))
    lm = load_lm(tmp_path / "lm.arpa")
    lp = path_log_probs("-i-t-_-'-'-_-i-s-_-o-'-'-c-l-o-c-k-", peak=0.999)
    options = {"beam_size": 8, "alpha": 0.5, "beta": 1.0, "unk_offset": -3.0}
    hyps = search(lp, CHARS, lm=lm, **options)
    assert hyps[0].tokens == tuple(CHARS.encode("it '' is o''clock")) and hyps[0].text == "it is o'clock"
    # "''" pays unk_offset, and "o''clock" is scored as the text shows it
    expected = 0.5 * lm.sentence_score(["it", "is", "o'clock"]) + 3 * 1.0 - 3.0
    assert hyps[0].lm_score == pytest.approx(expected, abs=1e-9)
    assert [h.text for h in hyps].count("it is o'clock") == 1  # the labelling without "''" is in the same text
    words = decode._WordTracker(CHARS.vocab, lm, 0.5, 1.0, -3.0)
    assert words._word(lm.begin(), "'''") == (-3.0, lm.begin())
    # with the evidence for the apostrophe weaker than the charge, the search leaves it out
    weak = path_log_probs("-i-t-_-'-_-i-s-", peak=0.999)
    weak[7] = np.log(np.full(len(CHARS), 0.5 / (len(CHARS) - 1)))  # the apostrophe's frame: 0.5
    weak[7, CHARS.vocab.index("'")] = np.log(0.5)
    assert search(weak, CHARS, lm=lm, **options)[0].tokens == tuple(CHARS.encode("it is"))


# --- merging prefixes the LM cannot tell apart --------------------------------------------------------------------

FLOW = CharTokenizer(["<blank>", " ", "f", "l", "o", "w", "i", "n", "g"])


def _flow_in() -> np.ndarray:
    """(T, V) log-probs of "flow in" or "flowing": f, l, o, w; four frames where the space and the blank are
    equally likely; i, n; a frame where g has 0.7 and the blank 0.3. Every other token has probability 0."""
    rows = [{"f": 1.0}, {"l": 1.0}, {"o": 1.0}, {"w": 1.0}] + [{" ": 0.5, "<blank>": 0.5}] * 4
    rows += [{"i": 1.0}, {"n": 1.0}, {"g": 0.7, "<blank>": 0.3}]
    lp = np.full((len(rows), len(FLOW)), -np.inf)
    for t, row in enumerate(rows):
        for token, p in row.items():
            lp[t, FLOW.vocab.index(token)] = math.log(p)
    return lp


def test_labellings_of_one_text_add_up_to_one_hypothesis():
    """A prefix is its text: "flow in" and "flow  in" (a doubled space) are one hypothesis whose probability is
    their sum, with merge_beams on or off; each alone would lose to "flowing"."""
    lm = load_lm(FIXTURES / "flow_in.arpa")  # a unigram LM: "flowing" is 1.6 nats more probable than "flow in"
    flow_in_lm, flowing_lm = lm.sentence_score(["flow", "in"]), lm.sentence_score(["flowing"])
    # Of the 16 equally likely ways through the four frames, 1 has no space ("flowing" needs it), 10 one space
    # ("flow in") and 5 two ("flow  in", another labelling of the same text).
    for merge_beams in (False, True):
        hyps = search(_flow_in(), FLOW, lm, beam_size=16, alpha=1.0, beta=0.0, merge_beams=merge_beams)
        assert [h.text for h in hyps[:2]] == ["flow in", "flowing"]
        assert hyps[0].score == pytest.approx(math.log(15 / 16 * 0.3) + flow_in_lm, abs=1e-9)
        assert hyps[0].tokens == tuple(FLOW.encode("flow in")) and hyps[0].lm_score == pytest.approx(flow_in_lm)
        assert hyps[1].score == pytest.approx(math.log(1 / 16 * 0.7) + flowing_lm, abs=1e-9)
    # without an LM too, leading and trailing spaces included: "_a_", "a_", "_a", "a", "_a__" ... are all "a"
    with np.errstate(divide="ignore"):  # "b" has probability 0
        lp = np.log(np.array([[0.1, 0.5, 0.4, 0.0], [0.1, 0.3, 0.6, 0.0], [0.2, 0.5, 0.3, 0.0]]))
    texts = by_text(brute_force(lp, [[0, 1, 2]] * 3))
    hyps = search(lp, AB, beam_size=100, **EXACT)
    assert {h.text: h.score for h in hyps} == pytest.approx(texts, abs=1e-9)


def _two_first_words(tmp_path) -> tuple[np.ndarray, object]:
    """(log-probs of "a b" or "b b", the first letter 0.5/0.5; a unigram LM that prefers b)."""
    (tmp_path / "ab.arpa").write_text(build_arpa(["a b", "b b", "b"], order=1))
    lp = np.log(np.array([[0.0, 0.0, 0.5, 0.5], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]) + 1e-300)
    return lp, load_lm(tmp_path / "ab.arpa")


def test_merging_keeps_the_more_probable_of_the_texts_the_lm_cannot_tell_apart(tmp_path):
    lp, lm = _two_first_words(tmp_path)  # after "a " and "b " a unigram LM's state is the same
    plain = search(lp, AB, lm, beam_size=8, merge_beams=False)
    assert [h.text for h in plain] == ["b b", "a b"]
    merged = search(lp, AB, lm, beam_size=8)  # merge_beams is on by default
    assert [h.text for h in merged] == ["b b"]  # "a b" is dropped, and its probability is not added to "b b"
    assert merged[0] == plain[0]


def test_merge_keeps_the_more_probable_of_prefixes_with_equal_word_states():
    lm = load_lm(FIXTURES / "flow_in.arpa")
    trie = decode._PrefixTrie(FLOW.vocab, decode._WordTracker(FLOW.vocab, lm, 1.0, 0.0, -10.0))
    node = {}
    for prefix in ["f", "fl", "flo", "flow", "flow ", "flow  ", "flowi", "flow i", "flow  i"]:
        parent = node.get(prefix[:-1], 0)
        assert trie.words.add(parent, FLOW.vocab.index(prefix[-1]), 1.0, 0.0, len(trie.parent))
        node[prefix] = trie.children[parent * len(FLOW) + FLOW.vocab.index(prefix[-1])] = len(trie.parent)
        trie.parent.append(parent)
        trie.last.append(FLOW.vocab.index(prefix[-1]))
    a, b, c, d, e = node["flow "], node["flow  "], node["flowi"], node["flow i"], node["flow  i"]
    new_b, new_nb = {a: 0.1, b: 0.3, d: 0.2}, {a: 0.2, b: 0.05, c: 0.4, d: 0.0, e: 0.25}
    decode._merge(new_b, new_nb, trie.words.merge_key)
    # "flow  " (0.35) is kept and "flow " (0.3) dropped; "flow  i" (0.25) kept, "flow i" (0.2) dropped; "flowi"
    # stays alone; the kept ones keep their own masses, in their order
    assert new_b == {b: 0.3} and new_nb == {b: 0.05, c: 0.4, e: 0.25}
    assert list(new_nb) == [b, c, e]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_merge_keeps_the_most_probable_member_whatever_the_order(order):
    # three prefixes with one word state: "flow  " (0.5) is kept with its own mass, although "flow " (0.3) and
    # "flow   " (0.25) together outweigh it when they come first
    lm = load_lm(FIXTURES / "flow_in.arpa")
    words = decode._WordTracker(FLOW.vocab, lm, 1.0, 0.0, -10.0)
    last = [-1]
    for prefix in ["f", "fl", "flo", "flow", "flow ", "flow  ", "flow   "]:
        parent = {"f": 0}.get(prefix, len(last) - 1)
        assert words.add(parent, FLOW.vocab.index(prefix[-1]), 1.0, 0.0, len(last))
        last.append(FLOW.vocab.index(prefix[-1]))
    members = [(5, 0.3), (6, 0.5), (7, 0.25)]  # nodes "flow ", "flow  ", "flow   " and their masses
    new_nb = {4: 0.9} | {members[i][0]: members[i][1] for i in order}
    new_b = {members[i][0]: 0.0 for i in order}
    decode._merge(new_b, new_nb, words.merge_key)
    assert new_nb == {4: 0.9, 6: 0.5} and new_b == {6: 0.0}


def test_one_set_of_defaults_merging_on_with_an_lm():
    from asr.config import DecodeConfig
    from asr.infer import decode_log_probs

    assert decode.DEFAULT_OPTIONS == BeamOptions() == DecodeConfig().beam_options()
    assert BeamOptions().merge_beams  # with an LM; without one nothing is merged
    assert inspect.signature(beam_search).parameters["options"].default is decode.DEFAULT_OPTIONS
    lp = _bugs_or_buns()  # without an LM there is no LM state to compare: nothing is merged
    assert search(lp, CHARS, beam_size=8, merge_beams=True) == search(lp, CHARS, beam_size=8, merge_beams=False)
    config = DecodeConfig(decoder="beam_lm", beam_size=16, alpha=1.0, beta=0.0)
    lm = load_lm(FIXTURES / "flow_in.arpa")
    assert decode_log_probs([_flow_in()], FLOW, config, lm) == ["flow in"]
    with pytest.raises(ValueError, match="beam_size must be >= 1, got 0"):
        BeamOptions(beam_size=0)
    with pytest.raises(TypeError, match="BeamOptions"):
        beam_search(lp, CHARS, {"beam_size": 8})


def test_beam_search_without_options_decodes_as_inference_py_does(tmp_path):
    """`beam_search(log_probs, tokenizer[, lm=lm])` with no options gives what `inference.py --decoder beam`
    (beam_lm) writes with its default flags, on the same log-probs."""
    import inference

    rng = np.random.default_rng(11)
    words = ["bugs", "bunny", "buns", "rabbit", "season", "its"]
    log_probs = {f"u{i}": _peaked_utterance(rng, words)[0] for i in range(6)}
    log_probs["u6"] = _bugs_or_buns()
    inference.save_logits(tmp_path / "logits", log_probs, {}, CHARS, 50.0)
    arpa = FIXTURES / "bugs_bunny.arpa"
    for decoder, lm_flags, lm in [("beam", [], None), ("beam_lm", ["--lm", str(arpa)], load_lm(arpa))]:
        out = tmp_path / decoder
        flags = ["--logits", str(tmp_path / "logits"), "--out", str(out), "--decoder", decoder, *lm_flags]
        assert inference.main(flags) == 0
        written = {i: (out / f"{i}.txt").read_text().strip() for i in log_probs}
        assert written == {i: beam_search(lp, CHARS, lm=lm)[0].text for i, lp in log_probs.items()}
    assert written["u6"] == "bugs bunny"  # the LM did its work


# --- memory: the prefix trie ---------------------------------------------------------------------------------------


def test_compact_keeps_the_live_prefixes_and_their_ancestors_only():
    trie = decode._PrefixTrie(AB.vocab, None)
    for prefix in ["a", "ab", "abb", "b", "ba", "bab", "aa"]:
        parent = trie.children[0 * 4 + AB.vocab.index(prefix[0])] if len(prefix) > 1 else 0
        for c in prefix[1:-1]:
            parent = trie.children[parent * 4 + AB.vocab.index(c)]
        trie.children[parent * 4 + AB.vocab.index(prefix[-1])] = len(trie.parent)
        trie.parent.append(parent)
        trie.last.append(AB.vocab.index(prefix[-1]))
    live = [6, 3]  # "bab", "abb"
    new = trie.compact(live)
    assert [trie.tokens(n) for n in new] == [(3, 2, 3), (2, 3, 3)]
    assert len(trie.parent) == 7  # root, a, ab, abb, b, ba, bab: "aa" is gone
    assert sorted(trie.tokens(n) for n in trie.children.values()) == sorted(
        trie.tokens(n) for n in range(1, len(trie.parent))
    )
    assert all(trie.children[trie.parent[n] * 4 + trie.last[n]] == n for n in range(1, len(trie.parent)))


@pytest.mark.parametrize("merge_beams", [False, True])
def test_compaction_bounds_the_trie_and_changes_no_result(monkeypatch, merge_beams):
    lp = random_log_probs(np.random.default_rng(5), 600, len(CHARS))
    kwargs = {"beam_size": 16, "lm": load_lm(FIXTURES / "bugs_bunny.arpa"), "alpha": 0.5, "beta": 1.0}
    sizes = []  # trie nodes before each compaction, and at the end
    compact, finalize = decode._PrefixTrie.compact, decode._Beam.finalize
    monkeypatch.setattr(decode._PrefixTrie, "compact", lambda t, live: sizes.append(len(t.parent)) or compact(t, live))
    monkeypatch.setattr(decode._Beam, "finalize", lambda b, *a: sizes.append(len(b.trie.parent)) or finalize(b, *a))
    monkeypatch.setattr(decode, "_COMPACT_AFTER", 10**9)
    whole = search(lp, CHARS, merge_beams=merge_beams, **kwargs)
    (grown,) = sizes
    sizes.clear()
    monkeypatch.setattr(decode, "_COMPACT_AFTER", 300)
    assert search(lp, CHARS, merge_beams=merge_beams, **kwargs) == whole
    assert len(sizes) > 10 and max(sizes) < grown / 10


# --- word timestamps -------------------------------------------------------------------------------------------


def test_words_start_and_end_where_their_letters_are():
    # "book": b held two frames, o, a blank, o again (the blank makes it a second o), k; then blanks, a space,
    # more blanks, and "is" with a held i
    lp = path_log_probs("-bb-o-ok---_---ii-s-", peak=0.99)
    book, is_ = WordTime("book", 1, 8, 0.02, 0.16), WordTime("is", 15, 19, 0.3, 0.38)
    hyps = search(lp, CHARS, beam_size=8, frame_rate=50.0)
    assert hyps[0] == TimedHypothesis("book is", hyps[0].score, tuple(CHARS.encode("book is")), hyps[0].am_score,
                                      0.0, (book, is_))  # fmt: skip
    assert word_timestamps(lp, CHARS.encode("book is"), CHARS, 50.0) == (book, is_)
    assert word_timestamps(torch.from_numpy(lp), CHARS.encode("book is"), CHARS, 100.0)[1] == WordTime(
        "is", 15, 19, 0.15, 0.19
    )  # the rate is the caller's: seconds = frames / frame_rate
    for h in hyps:  # every hypothesis has its words, in the order of its text
        assert isinstance(h, TimedHypothesis) and " ".join(w.word for w in h.words) == h.text
        assert all(w.start_frame < w.end_frame for w in h.words)
    assert [dataclasses.astuple(h)[:5] for h in hyps] == [
        dataclasses.astuple(h) for h in search(lp, CHARS, beam_size=8)
    ]  # the same hypotheses as without timestamps


def test_timestamps_of_several_blanks_spaces_and_non_words():
    lp = path_log_probs("a----_--_----b--_-'-'-_-cc-", peak=0.99)
    (hyp,) = search(lp, CHARS, beam_size=4, nbest=1, frame_rate=50.0)
    assert hyp.text == "a b c"  # the two spaces are one, and the word of apostrophes is no word
    assert [(w.word, w.start_frame, w.end_frame) for w in hyp.words] == [("a", 0, 1), ("b", 13, 14), ("c", 24, 26)]
    assert search(np.zeros((0, len(CHARS))), CHARS, beam_size=4, frame_rate=50.0)[0].words == ()


def test_word_pieces_have_timestamps_too():
    pieces = SimpleNamespace(vocab=["<blank>", "\u2581bugs", "\u2581bun", "ny", "\u2581buns"])
    lp = np.log(np.full((6, 5), 0.01))
    for t, piece in enumerate([1, 0, 2, 2, 3, 0]):
        lp[t, piece] = np.log(0.96)
    (hyp,) = search(lp, pieces, beam_size=4, nbest=1, frame_rate=25.0)
    assert hyp.text == "bugs bunny"
    assert hyp.words == (WordTime("bugs", 0, 1, 0.0, 0.04), WordTime("bunny", 2, 5, 0.08, 0.2))


def test_timestamps_errors_say_what_to_pass():
    lp = path_log_probs("a-a", AB)
    assert [w.word for w in word_timestamps(lp, [2, 2], AB, 50.0)] == ["aa"]
    with pytest.raises(ValueError, match=r"3 tokens cannot be aligned to 3 frames .* a hypothesis's tokens"):
        word_timestamps(lp, [2, 2, 2], AB, 50.0)
    with pytest.raises(ValueError, match="frame_rate is output frames per second and must be > 0, got 0"):
        word_timestamps(lp, [2], AB, 0)
    with pytest.raises(ValueError, match="frame_rate is output frames per second"):
        search(lp, AB, beam_size=4, frame_rate=-50.0)


# --- contract and edge cases ------------------------------------------------------------------------------------


def test_empty_input_gives_one_empty_hypothesis():
    assert search(np.zeros((0, len(CHARS))), CHARS, beam_size=4) == [
        Hypothesis(text="", score=0.0, tokens=(), am_score=0.0, lm_score=0.0)
    ]
    lm = load_lm(FIXTURES / "bugs_bunny.arpa")
    (hyp,) = search(np.zeros((0, len(CHARS))), CHARS, beam_size=4, lm=lm, alpha=0.5)
    assert hyp.text == "" and hyp.score == pytest.approx(0.5 * lm.end(lm.begin()))


def test_all_blank_input_decodes_to_nothing():
    lp = path_log_probs("-" * 50, peak=0.999)
    (hyp,) = search(lp, CHARS, beam_size=8)
    assert hyp.text == "" and hyp.tokens == ()
    assert hyp.score == pytest.approx(50 * math.log(0.999), abs=1e-9)


def test_tensor_and_array_inputs_agree():
    lp = _bugs_or_buns()
    a = search(lp, CHARS, beam_size=8)
    b = search(torch.from_numpy(lp).float(), CHARS, beam_size=8)
    assert [h.text for h in a] == [h.text for h in b]
    assert a[0].score == pytest.approx(b[0].score, abs=1e-4)


@pytest.mark.parametrize(
    ("log_probs", "message"),
    [
        (np.zeros((5, 30)), "tokenizer has 29"),
        (np.zeros(29), "shape"),
        (np.full((3, 29), np.nan), "NaN"),
        (np.random.default_rng(0).normal(size=(4, 29)) * 5, "log_softmax"),  # raw logits
        (np.full((4, 29), 1 / 29), "log_softmax"),  # probabilities, not log-probabilities
    ],
)
def test_bad_input_raises_a_clear_error(log_probs, message):
    with pytest.raises(ValueError, match=message):
        search(log_probs, CHARS, beam_size=4)


def test_bad_beam_size_raises():
    with pytest.raises(ValueError, match="beam_size"):
        search(path_log_probs("-a-"), CHARS, beam_size=0)


def test_ties_are_broken_deterministically():
    lp = np.log(np.full((1, 4), 0.25))  # "", " ", "a", "b" all equally likely
    hyps = search(lp, AB, beam_size=8)
    assert [h.tokens for h in hyps] == [(), (2,), (3,)]  # " " normalises to "" and is kept once
    assert [h.text for h in hyps] == ["", "a", "b"]
    assert search(lp, AB, beam_size=8) == hyps


def test_nbest_and_pruning_options():
    lp = _bugs_or_buns()
    assert len(search(lp, CHARS, beam_size=8, nbest=1)) == 1
    assert search(lp, CHARS, beam_size=8, cutoff_prob=0.9)[0].text == "buns bunny"
    frame = np.log(np.array([[0.6, 0.0001, 0.0001] + [0.3997 / 26] * 26]))  # blank 0.6, the rest spread
    assert search(frame, CHARS, beam_size=4, blank_skip=0.5, token_min_logp=-math.inf)[0].text == ""
    assert search(frame, CHARS, beam_size=4, token_min_logp=-math.inf)[0].text == ""
    assert len(search(frame, CHARS, beam_size=40, token_min_logp=-math.inf, **{"beam_threshold": 99})) > 20


def test_decode_batch_in_worker_processes_keeps_order():
    rng = np.random.default_rng(7)
    utterances = [_peaked_utterance(rng, ["bugs", "bunny", "buns"])[0] for _ in range(6)]
    lm_path = FIXTURES / "bugs_bunny.arpa"
    options = BeamOptions(beam_size=8, alpha=0.5, beta=0.5)
    serial = decode_batch(utterances, CHARS, options, lm_path, workers=1)
    parallel = decode_batch(utterances, CHARS, options, lm_path, workers=2)
    assert [[h.text for h in hyps] for hyps in parallel] == [[h.text for h in hyps] for hyps in serial]
    assert [hyps[0].text for hyps in serial] == [
        beam_search(u, CHARS, options, load_lm(lm_path))[0].text for u in utterances
    ]


def test_decode_grid_returns_texts_per_weight_pair():
    utterances = [_bugs_or_buns(), path_log_probs("-b-u-n-n-y-")]
    grid = decode_grid(
        utterances,
        CHARS,
        BeamOptions(beam_size=8),
        lm=FIXTURES / "bugs_bunny.arpa",
        alphas=[0.0, 0.5],
        betas=[0.5],
        workers=2,
    )
    assert grid == {(0.0, 0.5): ["buns bunny", "bunny"], (0.5, 0.5): ["bugs bunny", "bunny"]}
