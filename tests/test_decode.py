"""CTC decoding: greedy on hand-written paths, prefix beam search exact against brute force, LM fusion, edge cases."""

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
from asr.decode import Hypothesis, beam_options, beam_search, decode_batch, decode_grid, greedy_decode
from asr.lm import load_lm
from asr.text import CharTokenizer

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


def random_log_probs(rng: np.random.Generator, T: int, V: int, scale: float = 2.0) -> np.ndarray:
    return torch.log_softmax(torch.tensor(rng.normal(size=(T, V)) * scale), dim=-1).numpy()


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


@pytest.mark.parametrize("path", ["aa-a_b--b", "-hh-e-ll-ll-oo__ww-o-rr-l-dd-", "-i-'-m-"])
def test_beam_search_follows_peaked_paths(path):
    lp = path_log_probs(path, peak=0.999)
    greedy = greedy_decode(torch.from_numpy(lp)[None], torch.tensor([len(path)]), CHARS)[0]
    hyps = beam_search(lp, CHARS, beam_size=8)
    assert hyps[0].text == " ".join(greedy.split())


# --- exactness against brute force ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_wide_beam_finds_the_most_probable_labelling(seed):
    rng = np.random.default_rng(seed)
    T = int(rng.integers(1, 7))
    lp = random_log_probs(rng, T, 4)
    totals = brute_force(lp)
    best = max(totals, key=totals.get)
    hyps = beam_search(lp, AB, beam_size=10_000, **EXACT)
    assert hyps[0].tokens == best
    assert hyps[0].score == pytest.approx(totals[best], abs=1e-6)
    for h in hyps:  # every hypothesis carries its exact total probability
        assert h.score == pytest.approx(totals[h.tokens], abs=1e-6)
        assert h.am_score == h.score and h.lm_score == 0.0


@pytest.mark.parametrize("seed", range(6))
def test_pruned_frames_are_decoded_exactly(seed):
    # Peaked frames make the candidate pruning leave blank-only frames and runs of one token, which the search
    # collapses and merges; with the pruned tokens at probability 0, the result must still be exact.
    rng = np.random.default_rng(100 + seed)
    T = 9
    logits = rng.normal(size=(T, 4))
    logits[np.arange(T), rng.integers(0, 4, size=T)] += 6.0
    lp = torch.log_softmax(torch.tensor(logits), dim=-1).numpy()
    allowed = [[v for v in range(4) if lp[t, v] >= -2.0 or v == lp[t].argmax()] for t in range(T)]
    totals = brute_force(lp, allowed)
    frames = decode._candidates(decode._as_log_prob_array(lp, 4), -2.0, None, 1.0, None)
    hyps = beam_search(lp, AB, beam_size=10_000, token_min_logp=-2.0, beam_threshold=math.inf)
    best = max(totals, key=totals.get)
    assert hyps[0].tokens == best and hyps[0].score == pytest.approx(totals[best], abs=1e-6)
    for h in hyps:
        assert h.score == pytest.approx(totals[h.tokens], abs=1e-6)
    assert any(not cands for _, cands, _ in frames)  # blank-only frames; seeds 0, 1, 2 and 5 also merge frames


def test_merging_of_repeated_single_candidate_frames_happens():
    lp = path_log_probs("-aaa-bb-", AB, peak=0.999)
    frames = decode._candidates(decode._as_log_prob_array(lp, 4), -5.0, None, 1.0, None)
    assert len(frames) == 5  # "-", "aaa" as one frame, "-", "bb" as one frame, "-"
    assert beam_search(lp, AB, beam_size=4)[0].score == pytest.approx(ctc_log_prob(lp, [2, 3]), abs=1e-2)


@pytest.mark.parametrize("seed", range(4))
def test_wide_beam_with_lm_maximises_the_fused_score(seed):
    lm = load_lm(FIXTURES / "ab_2gram.arpa")
    alpha, beta, unk = 0.8, 0.5, -3.0
    rng = np.random.default_rng(seed)
    lp = random_log_probs(rng, 6, 4, scale=1.5)
    fused = {}
    for tokens, am in brute_force(lp).items():
        words = "".join(AB.vocab[t] for t in tokens).split()
        state, lm_part = lm.begin(), 0.0
        for w in words:
            lp_w, state, oov = lm.score(state, w)
            lm_part += alpha * lp_w + beta + (unk if oov else 0.0)
        fused[tokens] = am + lm_part + alpha * lm.end(state)
    best = max(fused, key=fused.get)
    hyps = beam_search(lp, AB, beam_size=10_000, lm=lm, alpha=alpha, beta=beta, unk_offset=unk, **EXACT)
    assert hyps[0].tokens == best
    for h in hyps:
        assert h.score == pytest.approx(fused[h.tokens], abs=1e-6)
        assert h.am_score + h.lm_score == pytest.approx(h.score, abs=1e-9)


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
        best = beam_search(lp, CHARS, beam_size=16)[0]
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
    hyps = beam_search(lp, CHARS, beam_size=1, top_k=1, token_min_logp=-math.inf)
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
    assert beam_search(lp, CHARS, beam_size=8)[0].text == "buns bunny"
    assert beam_search(lp, CHARS, beam_size=8, lm=lm, alpha=0.0)[0].text == "buns bunny"
    fused = beam_search(lp, CHARS, beam_size=8, lm=lm, alpha=0.5, beta=0.5)
    assert fused[0].text == "bugs bunny"
    expected_lm = 0.5 * lm.sentence_score(["bugs", "bunny"]) + 2 * 0.5
    assert fused[0].lm_score == pytest.approx(expected_lm, abs=1e-9)
    assert [h.text for h in fused[:2]] == ["bugs bunny", "buns bunny"]


def test_without_lm_alpha_and_beta_are_ignored():
    lp = path_log_probs("-a-_-b-", AB, peak=0.9)
    plain = beam_search(lp, AB, beam_size=8)
    assert beam_search(lp, AB, beam_size=8, alpha=2.0, beta=1.5) == plain
    assert plain[0].text == "a b" and plain[0].lm_score == 0.0


def test_word_pieces_plug_into_the_same_decoder():
    # a BPE-like vocabulary: "▁" starts a word; the decoder only needs .vocab
    pieces = SimpleNamespace(vocab=["<blank>", "\u2581bugs", "\u2581bun", "ny", "\u2581buns"])
    lm = load_lm(FIXTURES / "bugs_bunny.arpa")
    lp = np.log(np.full((5, 5), 0.01))
    for t, piece in enumerate([1, 0, 2, 3, 0]):
        lp[t, piece] = np.log(0.96)
    hyps = beam_search(lp, pieces, beam_size=4, lm=lm, alpha=0.7, beta=0.2)
    assert hyps[0].text == "bugs bunny" and hyps[0].tokens == (1, 2, 3)
    assert hyps[0].lm_score == pytest.approx(0.7 * lm.sentence_score(["bugs", "bunny"]) + 0.4, abs=1e-9)


def test_impossible_partial_words_are_charged_early_and_refunded():
    lm = load_lm(FIXTURES / "bugs_bunny.arpa")
    lp = path_log_probs("-b-x-", peak=0.99)  # "bx" starts no LM word
    hyp = beam_search(lp, CHARS, beam_size=4, lm=lm, alpha=1.0, unk_offset=-4.0, **EXACT)[0]
    assert hyp.text == "bx"
    # the charge for the partial word is replaced by the word's real score: <unk> + unk_offset, then </s>
    state = lm.begin()
    unk_lp, state, oov = lm.score(state, "bx")
    assert oov and hyp.lm_score == pytest.approx(unk_lp - 4.0 + lm.end(state), abs=1e-9)


# --- contract and edge cases ------------------------------------------------------------------------------------


def test_empty_input_gives_one_empty_hypothesis():
    assert beam_search(np.zeros((0, len(CHARS))), CHARS, beam_size=4) == [
        Hypothesis(text="", score=0.0, tokens=(), am_score=0.0, lm_score=0.0)
    ]
    lm = load_lm(FIXTURES / "bugs_bunny.arpa")
    (hyp,) = beam_search(np.zeros((0, len(CHARS))), CHARS, beam_size=4, lm=lm, alpha=0.5)
    assert hyp.text == "" and hyp.score == pytest.approx(0.5 * lm.end(lm.begin()))


def test_all_blank_input_decodes_to_nothing():
    lp = path_log_probs("-" * 50, peak=0.999)
    (hyp,) = beam_search(lp, CHARS, beam_size=8)
    assert hyp.text == "" and hyp.tokens == ()
    assert hyp.score == pytest.approx(50 * math.log(0.999), abs=1e-9)


def test_tensor_and_array_inputs_agree():
    lp = _bugs_or_buns()
    a = beam_search(lp, CHARS, beam_size=8)
    b = beam_search(torch.from_numpy(lp).float(), CHARS, beam_size=8)
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
        beam_search(log_probs, CHARS, beam_size=4)


def test_bad_beam_size_raises():
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(path_log_probs("-a-"), CHARS, beam_size=0)


def test_ties_are_broken_deterministically():
    lp = np.log(np.full((1, 4), 0.25))  # "", " ", "a", "b" all equally likely
    hyps = beam_search(lp, AB, beam_size=8)
    assert [h.tokens for h in hyps] == [(), (2,), (3,)]  # " " normalises to "" and is kept once
    assert [h.text for h in hyps] == ["", "a", "b"]
    assert beam_search(lp, AB, beam_size=8) == hyps


def test_nbest_and_pruning_options():
    lp = _bugs_or_buns()
    assert len(beam_search(lp, CHARS, beam_size=8, nbest=1)) == 1
    assert beam_search(lp, CHARS, beam_size=8, cutoff_prob=0.9)[0].text == "buns bunny"
    frame = np.log(np.array([[0.6, 0.0001, 0.0001] + [0.3997 / 26] * 26]))  # blank 0.6, the rest spread
    assert beam_search(frame, CHARS, beam_size=4, blank_skip=0.5, token_min_logp=-math.inf)[0].text == ""
    assert beam_search(frame, CHARS, beam_size=4, token_min_logp=-math.inf)[0].text == ""
    assert len(beam_search(frame, CHARS, beam_size=40, token_min_logp=-math.inf, **{"beam_threshold": 99})) > 20


def test_decode_batch_in_worker_processes_keeps_order():
    rng = np.random.default_rng(7)
    utterances = [_peaked_utterance(rng, ["bugs", "bunny", "buns"])[0] for _ in range(6)]
    lm_path = FIXTURES / "bugs_bunny.arpa"
    kwargs = {"beam_size": 8, "alpha": 0.5, "beta": 0.5}
    serial = decode_batch(utterances, CHARS, workers=1, lm=lm_path, **kwargs)
    parallel = decode_batch(utterances, CHARS, workers=2, lm=lm_path, **kwargs)
    assert [[h.text for h in hyps] for hyps in parallel] == [[h.text for h in hyps] for hyps in serial]
    assert [hyps[0].text for hyps in serial] == [
        beam_search(u, CHARS, lm=load_lm(lm_path), **kwargs)[0].text for u in utterances
    ]


def test_decode_grid_returns_texts_per_weight_pair():
    utterances = [_bugs_or_buns(), path_log_probs("-b-u-n-n-y-")]
    grid = decode_grid(
        utterances, CHARS, lm=FIXTURES / "bugs_bunny.arpa", alphas=[0.0, 0.5], betas=[0.5], workers=2, beam_size=8
    )
    assert grid == {(0.0, 0.5): ["buns bunny", "bunny"], (0.5, 0.5): ["bugs bunny", "bunny"]}


def test_decode_config_defaults_match_beam_search():
    # asr/config.py's DecodeConfig holds the flags; its pruning defaults must be the function's (alpha and beta
    # are 0 in the function, which means no LM, and tuned values in the config)
    from asr import config

    fields = {f.name: f.default for f in getattr(config.DecodeConfig, "__dataclass_fields__", {}).values()}
    params = inspect.signature(beam_search).parameters
    pruning = ["unk_offset", "token_min_logp", "top_k", "cutoff_prob", "beam_threshold", "blank_skip"]
    shared = [name for name in pruning if name in fields]
    if not shared:
        pytest.skip("DecodeConfig has no beam search fields yet")
    for name in shared:
        assert fields[name] == params[name].default, name


def test_beam_options_pass_on_an_explicit_list_of_config_fields():
    from asr import config

    decode_config = config.DecodeConfig(beam_size=7, alpha=0.3, top_k=5, lm="lm.arpa", decode_workers=4)
    assert beam_options(decode_config) == {
        "beam_size": 7,
        "alpha": 0.3,
        "beta": decode_config.beta,
        "unk_offset": decode_config.unk_offset,
        "token_min_logp": decode_config.token_min_logp,
        "top_k": 5,
        "cutoff_prob": decode_config.cutoff_prob,
        "beam_threshold": decode_config.beam_threshold,
        "blank_skip": decode_config.blank_skip,
    }
    # the list, not beam_search's signature, decides: a config field named like a beam_search parameter (nbest,
    # lm) is not passed on unless it is listed
    options = {name: 1.0 for name in decode.BEAM_OPTIONS}
    assert beam_options(SimpleNamespace(**options, nbest=3, lm="lm.arpa", decoder="beam")) == options
    assert set(decode.BEAM_OPTIONS) < set(inspect.signature(beam_search).parameters)  # each is a keyword it takes
    with pytest.raises(AttributeError, match="top_k"):
        beam_options(SimpleNamespace(**{k: v for k, v in options.items() if k != "top_k"}))
