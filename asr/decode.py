"""CTC decoding: log-probabilities from the model -> text.

Greedy (best path) decoding takes the most likely token per frame, merges repeats and drops blanks.

Prefix beam search (`beam_search`) keeps the `beam_size` most probable label prefixes. Each prefix carries two
probabilities, of all alignments ending in a blank and of those ending in its last token, kept apart because
they extend differently: a repeated token only starts a new label after a blank. Alignments that reach the same
prefix are summed, so a prefix's score is the total probability of its alignments (the quantity CTC trains),
not the probability of its best path. A prefix is its text: labellings that differ only in word boundaries (a
leading space, two in a row, a trailing one) are one prefix, their probabilities summed; with a wide enough beam
and no pruning the result is the exact most probable text. Word language models are fused as
`log p_ctc + alpha * log p_lm + beta * words` (shallow fusion), scored when a word completes; see `beam_search`
(and `_WordTracker`) for the policy on partial words.
With an LM, `merge_beams` (on by default) also merges prefixes whose futures the LM cannot tell apart: the most
probable keeps its own probability and the others are dropped (no continuation of theirs can beat its), so the beam
holds more distinct ones and every score stays the score of its own text. Every
option and its default is in one frozen object, `asr.config.BeamOptions`, shared with inference.py and
`asr.transcribe`.

`decode_batch` and `decode_grid` (an alpha/beta grid) run many utterances in a process pool. `word_timestamps`
(or `beam_search(frame_rate=...)`) places each word of a labelling in time, from its most probable alignment.

Implementation notes, for speed in pure Python: prefixes are nodes of a trie (an int per prefix, children found by
one dict lookup); probabilities are kept in linear space and rescaled when they get small (sums are plain additions
instead of log-add-exp); the LM factor of a prefix is multiplied into its probabilities when the prefix is created,
so merging compares fused scores, and underflow is handled by rescaling; candidate tokens of every frame are chosen up
front with numpy, and with an LM each prefix carries per-token upper bounds of its LM factor (a letter that starts
no LM word costs at least unk_offset) checked before an extension is made; runs of frames where the blank is the
only candidate cost O(1) and runs where one same token is the only candidate are merged into one frame (both exact);
extensions that would fall below the beam threshold of a running lower bound of the frame's best are never made, and
when a frame can produce more prefixes than the beam holds, a heap of the best new ones skips the rest (exact
without merging; with it, merging may leave room that a skipped prefix would have taken).
The trie is compacted now and then: nodes that no live prefix needs are dropped, so memory follows the beam,
not the utterance. Measured speed, memory and WER, against pyctcdecode: docs/decoder-benchmark.md (figures live
there, with the command that produced them, not in docstrings).

The parts: `_candidates` picks each frame's tokens; `_PrefixTrie` holds every prefix made so far (per-node data
in flat lists indexed by node id, cheaper than an object per node), with `_WordTracker` holding each node's
word state for the LM; `_Beam` holds the live prefixes and takes them through a frame (`extend`, then
`prune`, which merges when asked) and to hypotheses (`finalize`); `_search` is the loop over frames, and
compacts the trie. `_best_alignment` (Viterbi) and `_word_spans` make the word timestamps.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import multiprocessing
import operator
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported only where a tensor is decoded: the ONNX runtime decodes without it
    import torch

from asr.config import BeamOptions
from asr.text import WORD_START, collapse_ctc, join_pieces, normalize
from asr.tokenizers import Tokenizer

DEFAULT_OPTIONS = BeamOptions()  # the defaults of beam_search, asr.transcribe and inference.py: one object

_RESCALE_BELOW = 1e-30  # rescale beam probabilities when the best falls below this (or rises above its inverse)
_MIN_LOG_FACTOR = -600.0  # LM factors below e^-600 are clamped so that a rescaled beam can never underflow to 0
_MIN_FACTOR = math.exp(_MIN_LOG_FACTOR)
_SECOND = operator.itemgetter(1)  # a sort key; faster than a Python function
_SORT_UP_TO = 8  # prune sorts up to this many times beam_size candidates, and uses a heap (nlargest) beyond
_NORMALISED_TOL = 0.1  # |logsumexp(row)| above this means the input is not log-probabilities (bf16 is ~0.01)
_PARTIAL_CHARS = 6  # a partial word that begins no LM word is charged unk_offset per this many characters
# The prefix trie drops the nodes no live prefix needs when it holds this many more (nodes, and extensions the LM
# refused) than twice what it kept the last time (~10 MiB with an LM): memory follows the beam, not the
# utterance, and the work of compacting stays proportional to the search's.
_COMPACT_AFTER = 30_000
_BOUND_ROWS_UP_TO = 128  # vocabularies up to this size get per-partial-word factor bounds (_WordTracker.bounds)
_ALIGN_BLOCK = 512  # frames whose emission log-probabilities the Viterbi alignment gathers at a time


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, tokenizer: Tokenizer) -> list[str]:
    """Best-path decoding of a batch, as normalised text (single spaces, none at the ends).

    log_probs: (B, T, V) log-probabilities (any monotone scores work); lengths: (B,) valid frames.
    Raises ValueError for NaN or +inf values in the valid frames, as `beam_search` does.
    """
    import torch

    if log_probs.shape[-1] != len(tokenizer):
        raise ValueError(f"log_probs have {log_probs.shape[-1]} tokens, tokenizer has {len(tokenizer)}")
    valid = torch.arange(log_probs.shape[1], device=log_probs.device)[None] < lengths.to(log_probs.device)[:, None]
    bad = (torch.isnan(log_probs) | (log_probs == math.inf)) & valid[..., None]  # (B, T, V)
    if bad.any():
        b = int(bad.flatten(1).any(dim=1).int().argmax())
        frames = torch.nonzero(bad[b].any(dim=-1)).flatten()
        raise _bad_values_error(int(bad.sum()), frames.tolist(), f"utterance {b}, ")
    best = log_probs.argmax(dim=-1).cpu()  # (B, T)
    # a path may start or end with a space, or hold two with a blank between: keep single inner spaces only
    return [" ".join(tokenizer.decode_ctc(best[b, : int(n)].tolist()).split()) for b, n in enumerate(lengths)]


def greedy_labelling(log_probs: np.ndarray, tokenizer: Tokenizer) -> tuple[str, tuple[int, ...]]:
    """Best-path decoding of one utterance's (T, V) log-probabilities, in numpy: (its text, as `greedy_decode`
    gives it, and its labelling: token ids without blanks). Raises ValueError for NaN or +inf values."""
    best = _as_log_prob_array(log_probs, len(tokenizer.vocab)).argmax(axis=0).tolist()  # (T,)
    return " ".join(tokenizer.decode_ctc(best).split()), tuple(collapse_ctc(best, tokenizer.blank))


@dataclass(frozen=True)
class Hypothesis:
    """One decoded text, represented by its most probable labelling. score = am_score + lm_score (natural logs).

    The hypothesis stands for every labelling of its text the search kept (those that differ in word boundaries,
    see `beam_search`): score sums their fused probabilities, and lm_score is the reported labelling's. So am_score
    is the text's CTC log-probability (every labelling of one text has the same LM score, unless some hold an
    apostrophe-only word), as far as the search kept its alignments: pruning (and `merge_beams`, which drops
    prefixes) loses some, so it is a lower bound, exact with pruning off and a wide enough beam."""

    text: str  # normalised words
    score: float  # fused score used for ranking: log p_ctc + alpha log p_lm + beta words (+ OOV offsets)
    tokens: tuple[int, ...]  # token ids of the labelling (no blanks, repeats kept as labelled)
    am_score: float  # log p_ctc(text | audio): the sum over the alignments of its labellings that survived pruning
    lm_score: float  # alpha * log p_lm(words, </s>) + beta * words + unk_offset * OOV words


@dataclass(frozen=True)
class WordTime:
    """Where a word is in the audio: the frames of its tokens in the labelling's most probable alignment."""

    word: str  # as the hypothesis text shows it
    start_frame: int  # the first output frame of its first token
    end_frame: int  # one past the last frame of its last token
    start: float  # seconds: start_frame / frame_rate
    end: float  # seconds: end_frame / frame_rate


@dataclass(frozen=True)
class TimedHypothesis(Hypothesis):
    """A Hypothesis with the position of each of its words (`beam_search(frame_rate=...)`)."""

    words: tuple[WordTime, ...]  # one per word of `text`, in order


def beam_search(
    log_probs: torch.Tensor | np.ndarray,
    tokenizer: Tokenizer,
    options: BeamOptions = DEFAULT_OPTIONS,
    lm=None,
    *,
    nbest: int | None = None,
    frame_rate: float | None = None,
) -> list[Hypothesis]:
    """CTC prefix beam search with optional word n-gram shallow fusion, best hypothesis first.

    log_probs: (T, V) natural-log probabilities (log_softmax output) of one utterance, V == len(tokenizer.vocab).
    options: `BeamOptions` (asr.config), the same defaults inference.py and `asr.transcribe` use; change one with
    `dataclasses.replace(DEFAULT_OPTIONS, beam_size=64)` or `BeamOptions(beam_size=64)`:
      beam_size: prefixes kept after each frame.
      alpha, beta: the LM's weight and a per-word bonus; without an LM both are ignored (a purely acoustic search).
      unk_offset: a word the LM does not know is scored as `<unk>` plus unk_offset (nats of the fused score,
        added after alpha). A word of apostrophes only (which the text drops) is charged unk_offset and nothing
        else (see `_WordTracker._word`). A partial word that begins no LM word is charged unk_offset per 6
        characters (at least once) until it completes and the LM scores it instead: hopeless spellings drop out
        early and glued non-words pay as they grow (policy: `_WordTracker`).
      merge_beams: with an LM, merge the prefixes it can no longer tell apart (same LM state, partial word and
        last token): the most probable is kept with its own probability and the others are dropped (as
        pyctcdecode's prune_history does): they share its future, so they trail it (unless their mass ending in a
        blank is larger and the next token repeats the last one) and only take beam slots. Their probabilities
        are not added to it: a sum would score a text with other texts' mass, which picked worse texts on
        uncertain outputs (docs/decoder-benchmark.md). Ignored without an LM. On by default; switch it off for
        an exact search.
      Pruning (pass -inf / None / 1.0 / inf / None to switch each off):
        token_min_logp: per frame, tokens below this log-probability are skipped (the frame's best never is).
        top_k: per frame, at most this many candidate tokens, blank included.
        cutoff_prob: per frame, only the most probable tokens until their probabilities add up to this.
        beam_threshold: prefixes more than this many nats below the frame's best are dropped (or never made).
        blank_skip: frames whose blank probability is at least this are treated as blank-only.
    lm: an `asr.lm.load_lm` model. It scores a word when it completes: at a space (character vocabularies), at the
    next piece starting with "▁" (BPE), and at the end of the utterance, followed by `</s>`.
    Skipped tokens count as probability 0: scores are lower bounds and, as with any beam, the best text can be
    lost; with all pruning off, no merging and a beam wider than the number of prefixes the search is exact.
    Two exact shortcuts are always on: a blank-only frame costs O(1), and a run of frames whose only candidate
    is one same token is decoded as one frame.
    nbest: return at most this many hypotheses (default: all that survive, up to beam_size).
    frame_rate: output frames per second (`asr.model.frame_rate`: 50 at time stride 2); given, every hypothesis is a
    `TimedHypothesis` with its words' positions (`word_timestamps`, an alignment per hypothesis: nbest=1 saves time).

    A prefix is its text: labellings that differ only in word boundaries (a leading space, two spaces in a row,
    or a trailing space) add up to one hypothesis. A leading or repeated boundary token is folded into its
    prefix during the search; labellings whose texts are equal at the end (a trailing space; with BPE, "▁"
    before a piece that begins a word) are summed there. Each hypothesis is reported with its most probable
    labelling (`tokens`). Ties are broken deterministically: by score, then by token ids.
    T == 0 gives one empty hypothesis with am_score 0 (and the LM score of an empty sentence).
    Raises ValueError for a wrong shape or vocabulary size, NaN or +inf values, or rows that are not
    log-probabilities (apply log_softmax first).
    """
    if not isinstance(options, BeamOptions):
        raise TypeError(f"options must be an asr.config.BeamOptions, got {type(options).__name__}")
    _check_frame_rate(frame_rate)
    vocab = tokenizer.vocab
    lp = _as_log_prob_array(log_probs, len(vocab))
    o = options
    frames = _candidates(lp, o.token_min_logp, o.top_k, o.cutoff_prob, o.blank_skip)
    words = _WordTracker(vocab, lm, o.alpha, o.beta, o.unk_offset) if lm is not None else None
    hyps = _search(frames, vocab, words, o.beam_size, o.beam_threshold, nbest, o.merge_beams)
    return hyps if frame_rate is None else _timed(hyps, np.ascontiguousarray(lp.T), vocab, frame_rate)


def _check_frame_rate(frame_rate: float | None) -> None:
    """Raise ValueError for a frame rate that is not positive."""
    if frame_rate is not None and not frame_rate > 0.0:
        raise ValueError(f"frame_rate is output frames per second and must be > 0, got {frame_rate}")


def word_timestamps(
    log_probs: torch.Tensor | np.ndarray, tokens: Sequence[int], tokenizer: Tokenizer, frame_rate: float
) -> tuple[WordTime, ...]:
    """Where each word of a labelling is: the frames of its tokens in the labelling's most probable alignment.

    log_probs: (T, V) natural-log probabilities of one utterance; tokens: the labelling (no blanks), e.g. a
    hypothesis's `tokens` or `tokenizer.encode(text)`; frame_rate: output frames per second
    (`asr.model.frame_rate`: 50 at time stride 2). A word (characters, or BPE pieces up to the next "▁") starts at
    the first frame of its first token and ends one frame after the last frame of its last token; the best
    alignment (Viterbi) decides how runs of a token and of blanks are shared out.
    Raises ValueError when the labelling cannot fit in T frames (each token needs a frame, a repeat two).
    """
    if frame_rate is None:
        raise ValueError("frame_rate is output frames per second and must be > 0, got None")
    _check_frame_rate(frame_rate)
    lp = _as_log_prob_array(log_probs, len(tokenizer.vocab))
    return _word_times(np.ascontiguousarray(lp.T), tuple(tokens), tokenizer.vocab, frame_rate)


def decode_batch(
    log_probs: Sequence[torch.Tensor | np.ndarray],
    tokenizer: Tokenizer,
    options: BeamOptions = DEFAULT_OPTIONS,
    lm=None,
    *,
    workers: int = 1,
    mp_context: str | None = None,
    nbest: int | None = None,
) -> list[list[Hypothesis]]:
    """`beam_search` over many utterances, in input order, in `workers` processes when workers > 1.

    log_probs: one (T_i, V) array or tensor per utterance (already cut to its valid frames).
    lm: an LM object or a path for `asr.lm.load_lm`. Each worker gets it once, when the pool starts: with the
    default "fork" start method (Linux) the workers share the parent's copy; with "spawn" (mp_context) a path
    is loaded by every worker and an object is pickled to it.
    """
    arrays = _as_arrays(log_probs)
    return _run(arrays, [options] * len(arrays), tokenizer, workers, lm, mp_context, nbest)


def decode_grid(
    log_probs: Sequence[torch.Tensor | np.ndarray],
    tokenizer: Tokenizer,
    options: BeamOptions = DEFAULT_OPTIONS,
    *,
    lm,
    alphas: Sequence[float],
    betas: Sequence[float],
    workers: int = 1,
    mp_context: str | None = None,
) -> dict[tuple[float, float], list[str]]:
    """The best text of every utterance for every (alpha, beta) pair: the raw material of a WER grid search.

    Runs len(alphas) * len(betas) * len(log_probs) searches in one process pool (LM loaded once per worker), each
    with `options` but for alpha and beta. Returns {(alpha, beta): [text per utterance, in input order]}.
    """
    arrays = _as_arrays(log_probs)
    pairs = [(a, b) for a in alphas for b in betas]
    tasks = [(x, dataclasses.replace(options, alpha=a, beta=b)) for a, b in pairs for x in arrays]
    results = _run([x for x, _ in tasks], [o for _, o in tasks], tokenizer, workers, lm, mp_context, 1)
    n = len(arrays)
    return {pair: [hyps[0].text for hyps in results[i * n : (i + 1) * n]] for i, pair in enumerate(pairs)}


def _as_arrays(log_probs: Sequence[torch.Tensor | np.ndarray]) -> list[np.ndarray]:
    """Tensors and arrays as numpy arrays (float32 for tensors)."""
    return [x.detach().float().cpu().numpy() if _is_tensor(x) else np.asarray(x) for x in log_probs]


def _is_tensor(x: object) -> bool:
    """Whether x is a torch tensor, without importing torch (a tensor exists only if torch was imported)."""
    torch = sys.modules.get("torch")  # None where imports of torch are blocked (tests/test_export.py)
    return torch is not None and isinstance(x, torch.Tensor)


def _run(arrays, options, tokenizer, workers, lm, mp_context, nbest) -> list[list[Hypothesis]]:
    """beam_search(arrays[i], tokenizer, options[i], lm, nbest=nbest) for every i, serially or in a process pool."""
    parallel = workers > 1 and len(arrays) > 1
    if mp_context is None:
        mp_context = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    if isinstance(lm, str | Path):
        from asr.lm import load_lm

        # forked workers share the parent's copy; spawned ones load the file themselves
        lm = load_lm(lm) if not parallel or mp_context == "fork" else str(lm)
    if not parallel:
        return [beam_search(x, tokenizer, o, lm, nbest=nbest) for x, o in zip(arrays, options, strict=True)]
    ctx = multiprocessing.get_context(mp_context)
    chunk = max(1, len(arrays) // (workers * 8))
    with ctx.Pool(min(workers, len(arrays)), initializer=_init_worker, initargs=(tokenizer, lm, nbest)) as pool:
        return pool.map(_decode_in_worker, zip(arrays, options, strict=True), chunksize=chunk)


_worker: dict = {}


def _init_worker(tokenizer, lm, nbest) -> None:
    """Process pool initializer: one thread, and the tokenizer, LM and nbest every task of the worker shares."""
    if "torch" in sys.modules:  # a torch process's workers; the ONNX runtime has no torch to tell
        sys.modules["torch"].set_num_threads(1)
    if isinstance(lm, str):
        from asr.lm import load_lm

        lm = load_lm(lm)
    _worker.update(tokenizer=tokenizer, lm=lm, nbest=nbest)


def _decode_in_worker(task: tuple[np.ndarray, BeamOptions]) -> list[Hypothesis]:
    """beam_search of one (log_probs, options) task with the worker's shared tokenizer, LM and nbest."""
    log_probs, options = task
    return beam_search(log_probs, _worker["tokenizer"], options, _worker["lm"], nbest=_worker["nbest"])


def _as_log_prob_array(log_probs, vocab_size: int) -> np.ndarray:
    """Check one utterance's (T, V) log-probabilities; return them transposed, (V, T) float64, for fast per-frame
    reductions (numpy reduces a short axis of a long array much faster than the other way round)."""
    if _is_tensor(log_probs):
        log_probs = log_probs.detach().cpu().double().numpy()
    lp = np.asarray(log_probs, dtype=np.float64)
    if lp.ndim != 2:
        raise ValueError(f"need log_probs of shape (time, vocabulary) for one utterance, got shape {lp.shape}")
    if lp.shape[1] != vocab_size:
        raise ValueError(
            f"log_probs have {lp.shape[1]} tokens per frame but the tokenizer has {vocab_size}; "
            "decode with the tokenizer the model was trained with"
        )
    lp = np.ascontiguousarray(lp.T)  # (V, T)
    bad = np.isnan(lp) | (lp == np.inf)
    if bad.any():
        raise _bad_values_error(int(bad.sum()), np.unique(np.nonzero(bad)[1]).tolist())
    return lp


def _bad_values_error(count: int, frames: list[int], where: str = "") -> ValueError:
    """The error every decoder raises for NaN/+inf log-probabilities (`where` names the utterance of a batch)."""
    shown = ", ".join(map(str, frames[:5])) + (", ..." if len(frames) > 5 else "")
    return ValueError(
        f"log_probs contain {count} NaN/+inf values ({where}frames {shown}): the model output is broken there "
        "(a diverged checkpoint, or fp16 overflow: run the model in fp32); decoding needs finite log-probabilities"
    )


def _candidates(
    lp: np.ndarray, token_min_logp: float, top_k: int | None, cutoff_prob: float, blank_skip: float | None
) -> list[tuple[float, list[tuple[int, float]], float]]:
    """Per frame after pruning: (blank probability or 0, [(non-blank token, probability), ...], top probability).

    lp: (V, T) log-probabilities. Also checks that every frame is a distribution (catches raw logits).
    """
    V, T = lp.shape
    if T == 0:
        return []
    with np.errstate(over="ignore"):
        probs = np.exp(lp)  # (V, T)
    total = probs.sum(axis=0)
    # |log total| > tol, written so that NaN/inf totals fail too
    off = ~((total > math.exp(-_NORMALISED_TOL)) & (total < math.exp(_NORMALISED_TOL)))
    if off.any():
        t = int(np.argmax(off))
        raise ValueError(
            f"log_probs frame {t} has probabilities summing to {total[t]:.3g}, not 1: pass log-probabilities "
            "(log_softmax of the model output), not logits or probabilities"
        )
    best = lp.max(axis=0)
    keep = _kept(lp, probs, best, token_min_logp, top_k, cutoff_prob, blank_skip)  # (V, T)
    # the kept non-blank tokens, frame by frame (token order within a frame)
    counts = keep[1:].sum(axis=0)  # (T,)
    flat = np.flatnonzero(keep[1:].T)
    t_idx, v_idx = flat // (V - 1), flat % (V - 1) + 1
    p = probs[v_idx, t_idx]
    # A frame whose only candidate is the same non-blank token as the previous frame's only candidate is merged
    # into it: every prefix either continues that token through both frames or extends by it in the first and
    # continues it in the second, so one frame with the product probability is exactly equivalent.
    single = ~keep[0] & (counts == 1)
    token = np.zeros(T, dtype=np.int64)
    token[t_idx] = v_idx  # the candidate of single-candidate frames
    merged = np.zeros(T, dtype=bool)
    merged[1:] = single[1:] & single[:-1] & (token[1:] == token[:-1])
    top_p = np.exp(best)
    if merged.any():
        heads = np.flatnonzero(~merged)
        top_p = np.multiply.reduceat(top_p, heads)
        runs = np.diff(np.append(heads, T))
        on_head = ~merged[t_idx]
        v_idx, p = v_idx[on_head], p[on_head]
        blank_p, counts = np.where(keep[0], probs[0], 0.0)[heads], counts[heads]
    else:
        runs = None
        blank_p = np.where(keep[0], probs[0], 0.0)
    pairs = list(zip(v_idx.tolist(), p.tolist(), strict=True))
    ends = np.cumsum(counts).tolist()
    per_frame = [pairs[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]  # (frames,)
    for f in np.flatnonzero(counts > 1).tolist():
        per_frame[f].sort(key=_neg_second)  # most probable first, which helps the search prune early
    top_p = top_p.tolist()
    if runs is not None:
        for f in np.flatnonzero(runs > 1).tolist():
            per_frame[f] = [(per_frame[f][0][0], top_p[f])]
    return list(zip(blank_p.tolist(), per_frame, top_p, strict=True))


def _kept(
    lp: np.ndarray,
    probs: np.ndarray,
    best: np.ndarray,
    token_min_logp: float,
    top_k: int | None,
    cutoff_prob: float,
    blank_skip: float | None,
) -> np.ndarray:
    """(V, T) bool: the tokens of each frame that survive the pruning options (a frame's best always does).

    lp, probs: (V, T) log-probabilities and probabilities; best: (T,) the largest log-probability per frame.
    """
    V, T = lp.shape
    keep = (lp >= token_min_logp) | (lp == best)  # (V, T); a frame's best token is always kept
    if top_k is not None or cutoff_prob < 1.0:
        order = np.argsort(-lp, axis=0, kind="stable")  # (V, T) tokens by falling probability
        ranked_keep = np.ones((V, T), dtype=bool)
        if top_k is not None:
            ranked_keep[max(1, top_k) :] = False
        if cutoff_prob < 1.0:
            cum = np.cumsum(np.take_along_axis(probs, order, axis=0), axis=0)
            ranked_keep[1:] &= cum[:-1] < cutoff_prob  # keep tokens until the cumulative mass reaches it
        mask = np.zeros((V, T), dtype=bool)
        np.put_along_axis(mask, order, ranked_keep, axis=0)
        keep &= mask
        keep[order[0], np.arange(T)] = True
    if blank_skip is not None:
        skip = lp[0] >= math.log(blank_skip)
        keep[1:, skip] = False
        keep[0, skip] = True
    return keep


class _WordTracker:
    """The word-level state of every trie node, for shallow fusion: what each token does to the current word.

    Per token (from `_word_parts`): whether it ends the current word by beginning a new one, and what text it adds
    to the word it is in. A character vocabulary has " " (ends a word, adds nothing) and letters (add themselves);
    a BPE piece "▁ab" ends the word and starts "ab", a piece "ab" adds "ab". So both kinds share one decoder, and
    the LM stays word-level: a partial word grows by whole pieces, and is checked against the LM's words as a
    string prefix whatever its pieces are.

    Per trie node, in lists indexed by node id like the trie's: its word state and its LM factor.

    Partial words (the policy `beam_search` states): an unfinished word that begins no LM word carries a charge,
    `_partial_charge`: unk_offset per _PARTIAL_CHARS characters, at least one unk_offset. Without the growth, a
    glued string ("flowinthehouse") paid unk_offset once and every later letter was free, while the correct split
    paid alpha * log p + beta at each space, so after a few words the split fell beam_threshold behind and was
    pruned before the glued word ever met the LM. The charge is in nats of the fused score, like unk_offset
    (pyctcdecode charges its raw offset, and alpha * ln 10 times it for a whole OOV word; ours is one number
    for both). It only steers the search: a node's probabilities carry it (its `factor`), its `lm_score` does
    not, and the word's completion takes it back, so final scores are exactly the LM's.
    """

    def __init__(self, vocab: list[str], lm, alpha: float, beta: float, unk_offset: float) -> None:
        self.lm, self.alpha, self.beta, self.unk_offset = lm, alpha, beta, unk_offset
        self.ends_word, self.piece = _word_parts(vocab)
        # per token, an upper bound of a node's `factor`, for pruning before the LM is asked: a letter can only
        # add to a charge (unk_offset <= 0) and ending a word takes back a charge of any size (no bound)
        letter = 1.0 if unk_offset <= 0.0 else math.inf
        self.max_factor = [math.inf if end else letter for end in self.ends_word]
        self._prefix_ok: dict[str, bool] = getattr(lm, "prefix_cache", {})  # is_prefix's answers so far
        self._shown: dict[str, str] = {}  # word with apostrophes -> as the text shows it (normalize)
        # Per node (node 0 is the empty prefix), its word state: a tuple that is only ever unpacked into the names
        #   lm_state: the LM context after the prefix's completed words
        #   partial: its unfinished last word ("" at a word boundary)
        #   charge: the charge on `partial` (0.0 while some LM word begins with it)
        #   lm_score: alpha * log p_lm + beta * words + unk_offset * OOV words, of its completed words
        # A plain tuple because it is the cheapest to make: a NamedTuple or an object per node costs several
        # times as much, and a list per field ~3 % of the whole search with an LM (valgrind instruction counts).
        self.state = [(lm.begin(), "", 0.0, 0.0)]
        # per node, what `_merge` compares: (lm_state, partial, last token); the root's last token is the trie's
        boundary = [
            t for t, (end, piece) in enumerate(zip(self.ends_word, self.piece, strict=True)) if end and not piece
        ]
        self.merge_key = [(self.state[0][0], "", boundary[0] if boundary else -1)]
        self.factor = [1.0]  # per node: exp(its lm_score + charge - its parent's), at least _MIN_FACTOR (see there)
        self.refused: dict[int, float] = {}  # trie key of an extension not made -> its factor (see `add`)
        # Per node, the upper bound of each token's factor (`bounds`), which `_Beam.extend` checks before it makes
        # an extension: max_factor at first, and once `add` finds that a letter after an uncharged partial word
        # leaves no LM word starting like this, at most the unk_offset it then costs, so the next such extension
        # from any node with that partial word is skipped without calling `add`. One list per distinct partial
        # word, shared by its nodes; vocabularies larger than _BOUND_ROWS_UP_TO tokens (and charged nodes) keep
        # the static max_factor (a list per partial word would cost more than it saves).
        self._rows: dict[str, list[float]] = {}
        self._charged_letter = max(math.exp(unk_offset), _MIN_FACTOR) if unk_offset <= 0.0 else math.inf
        self.bounds = [self.max_factor]
        self._refinable = len(self.piece) <= _BOUND_ROWS_UP_TO and self._charged_letter < math.inf

    def add(self, node: int, token: int, mass: float, cut: float, key: int) -> bool:
        """Append node + token's word state for the trie's next node, unless its LM factor takes mass to <= cut.

        key: the trie's key of the extension (node * V + token), under which a factor too small is remembered:
        most extensions are refused, and the same ones are tried again frame after frame."""
        low = self.refused.get(key)
        if low is not None and mass * low <= cut:
            return False
        lm_state, partial, charge, lm_score = self.state[node]
        if not self.ends_word[token]:
            before = partial
            partial += self.piece[token]
            if not charge:
                ok = self._prefix_ok.get(partial)
                if ok is None:
                    ok = self.lm.is_prefix(partial)
                if ok:  # most letters: no charge, and a factor of 1
                    self.state.append((lm_state, partial, 0.0, lm_score))
                    self.merge_key.append((lm_state, partial, token))
                    self.factor.append(1.0)
                    self.bounds.append(self._rows.get(partial, self.max_factor))
                    return True
                if self._refinable:  # the letter costs at least unk_offset after `before`: every node with that
                    row = self._rows.get(before)  # partial word made from now on skips it without asking
                    if row is None:
                        row = self._rows[before] = list(self.max_factor)
                    row[token] = self._charged_letter
                    self.bounds[node] = row
            n = len(partial)  # the charge as _partial_charge makes it, inline (no calls) for speed
            new_charge = self.unk_offset if n <= _PARTIAL_CHARS else self.unk_offset * n / _PARTIAL_CHARS
            delta, charge = new_charge - charge, new_charge
        else:
            delta = -charge  # the word is complete: its charge is replaced by its LM score
            if partial:
                word_score, lm_state = self._word(lm_state, partial)
                lm_score += word_score
                delta += word_score
            partial = self.piece[token]
            charge = self._partial_charge(partial) if partial and not self.lm.is_prefix(partial) else 0.0
            delta += charge
        if delta == 0.0:  # most letters; exp(0) is 1 exactly
            factor = 1.0
        else:
            factor = math.exp(delta) if delta > _MIN_LOG_FACTOR else _MIN_FACTOR
        if mass * factor <= cut:
            self.refused[key] = factor
            return False
        self.state.append((lm_state, partial, charge, lm_score))
        self.merge_key.append((lm_state, partial, token))
        self.factor.append(factor)
        self.bounds.append(self.max_factor if charge else self._rows.get(partial, self.max_factor))
        return True

    def finish(self, node: int) -> tuple[float, float]:
        """(log factor of ending the utterance after `node`: its last word, then </s>; its final LM score)."""
        lm_state, partial, charge, lm_score = self.state[node]
        delta = -charge
        if partial:
            word_score, lm_state = self._word(lm_state, partial)
            lm_score += word_score
            delta += word_score
        end = self.alpha * self.lm.end(lm_state)
        return delta + end, lm_score + end

    def _partial_charge(self, partial: str) -> float:
        """The charge on an unfinished word that begins no LM word: unk_offset per _PARTIAL_CHARS characters."""
        return self.unk_offset * max(1.0, len(partial) / _PARTIAL_CHARS)

    def _word(self, lm_state, word: str) -> tuple[float, object]:
        """(alpha * log p_lm(word | lm_state) + beta (+ unk_offset if OOV), the LM state after the word).

        The word is scored as the text shows it: a run of apostrophes is one. A word of apostrophes only is
        dropped from the text, so it must not earn the word bonus or change the LM context, but it is no free
        word either: it is charged unk_offset, what a spelling the LM does not know pays. (Free, the search filled
        word boundaries of low-confidence stretches with "'" words, each a beam slot holding a copy of one text.
        Refusing to make them would need a rule at every boundary and at the end of the utterance for a
        partial word that may still become "'tis"; a charge is one line and lets the search decide.)"""
        if "'" in word:
            shown = self._shown.get(word)
            if shown is None:
                shown = self._shown[word] = normalize(word)
            if not shown:
                return self.unk_offset, lm_state
            word = shown
        lp, lm_state, oov = self.lm.score(lm_state, word)
        return self.alpha * lp + self.beta + (self.unk_offset if oov else 0.0), lm_state


class _PrefixTrie:
    """Every prefix the search has made, as a trie of int nodes; node 0 is the empty prefix.

    Per-node data sit in flat lists indexed by node id (a list index is cheaper than an attribute of a node
    object in the hot loop). Nodes are made in one place, `_Beam.extend`. With an LM, `words` holds each node's
    word state and the factor its probabilities were multiplied by on entering it, so merging compares fused scores.
    """

    def __init__(self, vocab: list[str], words: _WordTracker | None) -> None:
        self.vocab_size = vocab_size = len(vocab)
        # Per token: does it only mark a word boundary (" ", a lone "▁")? Such a token after another one, or at
        # the start, leaves the text as it was, so it leads back to the same prefix (`_Beam.extend`). The empty
        # prefix's `last` is the first of them, as if the utterance began with one: the same rule then folds
        # leading boundaries into it.
        begins, letters = _word_parts(vocab)
        self.loop = [b and not piece for b, piece in zip(begins, letters, strict=True)] or [False] * vocab_size
        self.parent = [-1]  # per node: the node one token shorter
        self.last = [self.loop.index(True) if any(self.loop) else -1]  # per node: its last token
        self.children: dict[int, int] = {}  # node * vocab_size + token -> child node
        self.words = words

    def finish(self, node: int) -> tuple[float, float]:
        """(log LM factor of ending the utterance after `node`, its final LM score); (0, 0) without an LM."""
        return self.words.finish(node) if self.words is not None else (0.0, 0.0)

    def surfaces(self, nodes: list[int], vocab: list[str]) -> list[str]:
        """The concatenated token surfaces of each node (join_pieces makes the text), built once per shared
        ancestor: the beam's prefixes share most of their tokens, so this is much cheaper than one walk each."""
        done = {0: ""}
        parent, last, out = self.parent, self.last, []
        for node in nodes:
            path = []
            while node not in done:
                path.append(node)
                node = parent[node]
            text = done[node]
            for n in reversed(path):
                text = done[n] = text + vocab[last[n]]
            out.append(text)
        return out

    def tokens(self, node: int) -> tuple[int, ...]:
        """The token sequence of a node."""
        tokens = []
        while node > 0:
            tokens.append(self.last[node])
            node = self.parent[node]
        return tuple(reversed(tokens))

    def compact(self, live: list[int]) -> list[int]:
        """Drop every node that is neither in `live` nor an ancestor of one; renumber the rest (in order, so a
        parent still comes before its children) and return live's new ids.

        Such a node can never be needed again: prefixes only grow from live ones, and finalize only walks up from
        live ones. The lists are changed in place, since `_Beam` holds references to them. A dropped child of a
        kept node is simply made again if the search comes back to it.
        """
        parent, last, n = self.parent, self.last, len(self.parent)
        kept = bytearray(n)
        kept[0] = 1
        for node in live:
            while not kept[node]:
                kept[node] = 1
                node = parent[node]
        old = [i for i in range(n) if kept[i]]  # ascending
        new_id = [-1] * n
        for new, node in enumerate(old):
            new_id[node] = new
        parent[:] = [-1] + [new_id[parent[node]] for node in old[1:]]
        last[:] = [last[node] for node in old]
        V = self.vocab_size
        self.children.clear()
        self.children.update({parent[new] * V + last[new]: new for new in range(1, len(old))})
        if self.words is not None:
            self.words.state[:] = [self.words.state[node] for node in old]
            self.words.merge_key[:] = [self.words.merge_key[node] for node in old]
            self.words.factor[:] = [self.words.factor[node] for node in old]
            self.words.bounds[:] = [self.words.bounds[node] for node in old]
            self.words.refused.clear()  # keyed by old node ids
        return [new_id[node] for node in live]


class _Beam:
    """The live prefixes: trie nodes with the probabilities of their alignments ending in a blank (pb) and in
    their last token (pnb), both times exp(-log_scale). A frame goes through `extend` then `prune` (which also
    merges, when asked), or through `blank_frame` when only the blank is left in it; `finalize` turns the last
    beam into hypotheses."""

    def __init__(self, trie: _PrefixTrie, beam_size: int, beam_threshold: float, merge: bool = False) -> None:
        self.trie = trie
        self.size = beam_size
        self.merge = merge and trie.words is not None  # merging needs LM states (see beam_search)
        self.keep_ratio = math.exp(-beam_threshold) if beam_threshold < math.inf else 0.0
        self.nodes, self.pb, self.pnb = [0], [1.0], [0.0]  # parallel lists, one entry per live prefix
        self.best = 1.0  # the best prefix's pb + pnb
        self.log_scale = 0.0
        self.collapsed = True  # every pnb is 0, so a blank-only frame changes nothing but log_scale
        words = trie.words
        factor, hi = (words.factor, words.bounds) if words is not None else (None, None)
        # what `extend` reads every frame, in one tuple: one attribute load per frame instead of seven
        self._constants = (trie.parent, trie.last, trie.children, trie.vocab_size, words, factor, hi, trie.loop)

    def blank_frame(self, p_blank: float) -> None:
        """A frame where only the blank survived pruning: every prefix keeps its mass, now ending in a blank."""
        self.log_scale += math.log(p_blank)
        if not self.collapsed:
            self.pb = [b + nb for b, nb in zip(self.pb, self.pnb, strict=True)]
            self.pnb = [0.0] * len(self.pb)
            self.collapsed = True

    def extend(self, p_blank: float, cands: list[tuple[int, float]], top_p: float) -> tuple[dict, dict]:
        """Every prefix through one frame: ({node: mass ending in the blank}, {node: mass ending in a token})."""
        parent, last, children, V, words, factor, hi, loop = self._constants
        nodes, beam_size, keep_ratio = self.nodes, self.size, self.keep_ratio
        # `bound` is a lower bound of this frame's best score: at first the best prefix followed by a blank
        # (without an LM, also by the top token, split in two when it repeats the prefix's last one), then the
        # largest contribution so far. Contributions below `cut`, beam_threshold below it, are never made.
        bound = self.best * (max(p_blank, 0.5 * top_p) if hi is None else p_blank)
        cut = bound * keep_ratio
        new_b: dict[int, float] = {}
        new_nb: dict[int, float] = {}
        nb_get = new_nb.get
        # When more prefixes can come out of this frame than the beam holds, keep a min-heap of the beam_size
        # largest masses of prefixes not in the beam: such a prefix gets exactly one contribution (from its
        # parent), so its mass is final, and one that cannot beat the heap's smallest (kth) can never make the
        # beam (ties go to the earlier entry, and the heap's came first). Exact; it skips most of a flat frame.
        heap: list[float] | None = [] if len(cands) > 1 and len(nodes) * len(cands) > beam_size else None
        kth = 0.0 if heap is not None else -1.0  # without a heap nothing is skipped: every mass is > cut >= 0
        in_beam = set(nodes) if heap is not None else None
        for node, b, nb in zip(nodes, self.pb, self.pnb):  # noqa: B905 (equal lengths; strict costs time)
            total = b + nb
            if p_blank:
                mass = new_b[node] = total * p_blank  # only the prefix itself can end in this blank
                if mass > bound:
                    bound, cut = mass, mass * keep_ratio
            prev, base = last[node], node * V
            row = hi[node] if hi is not None else None  # per token, the most the LM factor can be
            for tok, p in cands:
                if tok == prev:
                    if nb:  # a repeat with no blank in between continues the same label...
                        new_nb[node] = nb_get(node, 0.0) + nb * p
                    mass = b * p  # ...after a blank it is a new one
                    if loop[tok]:  # ...unless it is a second word boundary: the same text, so the same prefix
                        if mass:
                            new_nb[node] = nb_get(node, 0.0) + mass
                        continue
                else:
                    mass = total * p
                most = mass if row is None else mass * row[tok]  # the most it can be after the LM factor
                if most <= cut:
                    continue
                child = children.get(base + tok)
                if most <= kth and child not in in_beam:
                    continue
                if child is None:  # a new prefix: the only place where nodes are made
                    if words is not None and not words.add(node, tok, mass, cut, base + tok):
                        continue  # e.g. a letter that leaves no LM word starting like this: not even made
                    child = children[base + tok] = len(parent)
                    parent.append(node)
                    last.append(tok)
                if factor is not None:
                    mass *= factor[child]
                    if mass <= cut:
                        continue
                if heap is not None and child not in in_beam:
                    if len(heap) < beam_size:
                        heapq.heappush(heap, mass)
                    else:
                        heapq.heappushpop(heap, mass)
                    if len(heap) == beam_size:
                        kth = heap[0]
                new_nb[child] = nb_get(child, 0.0) + mass
                if mass > bound:
                    bound, cut = mass, mass * keep_ratio
        return new_b, new_nb

    def prune(self, new_b: dict[int, float], new_nb: dict[int, float]) -> None:
        """Merge a frame's masses, keep the beam_size best prefixes within beam_threshold of the best, rescale."""
        if new_b:
            for node in new_b:
                if node not in new_nb:
                    new_nb[node] = 0.0
        if self.merge:
            _merge(new_b, new_nb, self.trie.words.merge_key)
        if new_b:
            b_get = new_b.get
            totals = {node: nb + b_get(node, 0.0) for node, nb in new_nb.items()}
        else:
            totals = new_nb
        best = max(totals.values())
        if not best > 0.0:
            raise FloatingPointError("every prefix underflowed to probability 0; check the log_probs")
        floor = best * self.keep_ratio
        if len(totals) > self.size:
            # ties keep the earlier entry (both are stable): deterministic. A sort is 2-4x faster than nlargest's
            # heap up to a few times beam_size entries, the usual case (nlargest is documented as this sort).
            if len(totals) <= _SORT_UP_TO * self.size:
                kept = sorted(totals.items(), key=_SECOND, reverse=True)[: self.size]
            else:
                kept = heapq.nlargest(self.size, totals.items(), key=_SECOND)
            nodes = [node for node, t in kept if t >= floor and t > 0.0]  # (<= beam_size,) the new beam
        else:
            nodes = [node for node, t in totals.items() if t >= floor and t > 0.0]  # (<= beam_size,)
            if self.trie.words is not None:  # best first: it raises `bound` early, so LM-penalised extensions
                nodes.sort(key=totals.__getitem__, reverse=True)  # are never made
        rescale = best < _RESCALE_BELOW or best > 1.0 / _RESCALE_BELOW
        if rescale:
            inv = 1.0 / best
            self.log_scale += math.log(best)
            self.best = 1.0
        else:
            self.best = best
        if new_b:
            b_get = new_b.get
            pb = [b_get(node, 0.0) for node in nodes]
            pnb = [new_nb[node] for node in nodes]
            if rescale:
                pb = [b * inv for b in pb]
                pnb = [nb * inv for nb in pnb]
        else:
            pb = [0.0] * len(nodes)
            pnb = [new_nb[node] * inv for node in nodes] if rescale else [new_nb[node] for node in nodes]
        self.nodes, self.pb, self.pnb = nodes, pb, pnb  # each (len(nodes),)
        self.collapsed = False

    def finalize(self, vocab: list[str], nbest: int | None) -> list[Hypothesis]:
        """End of utterance: the last word and </s> for the LM, then one hypothesis per distinct text, ranked.

        Prefixes whose texts are equal now (one ends in a boundary token, the other not) are one text: their
        probabilities are summed, and the most probable one's labelling and LM score represent them."""
        surfaces = self.trie.surfaces(self.nodes, vocab)
        finals = []  # (score, node, lm_score, text)
        for node, b, nb, surface in zip(self.nodes, self.pb, self.pnb, surfaces, strict=True):
            end, lm_score = self.trie.finish(node)
            finals.append((math.log(b + nb) + self.log_scale + end, node, lm_score, join_pieces(surface)))
        finals.sort(key=_neg_first)
        groups: dict[str, list] = {}  # text -> its members' scores, the best (first) one's entry at the end
        for score, node, lm_score, text in _ties_by_tokens(finals, self.trie.tokens):
            group = groups.get(text)
            if group is None:
                groups[text] = [score, (node, lm_score)]
            else:
                group.insert(-1, score)
        out = []
        for text, (*scores, (node, lm_score)) in groups.items():
            score = (
                scores[0] if len(scores) == 1 else scores[0] + math.log(sum(math.exp(x - scores[0]) for x in scores))
            )
            out.append((score, node, lm_score, text))
        if len(out) < len(finals):  # summing may reorder them
            out = _ties_by_tokens(sorted(out, key=_neg_first), self.trie.tokens)
        tokens = self.trie.tokens
        return [
            Hypothesis(text=text, score=score, tokens=tokens(node), am_score=score - lm_score, lm_score=lm_score)
            for score, node, lm_score, text in out[:nbest]
        ]


def _ties_by_tokens(ranked: list[tuple], tokens) -> list[tuple]:
    """(score, node, ...) entries sorted by falling score, with runs of equal scores put in token order (rare:
    only then are the nodes' token sequences needed)."""
    out, i = [], 0
    while i < len(ranked):
        j = i + 1
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        out += ranked[i:j] if j == i + 1 else sorted(ranked[i:j], key=lambda f: tokens(f[1]))
        i = j
    return out


def _merge(new_b: dict[int, float], new_nb: dict[int, float], merge_key: list[tuple]) -> None:
    """Keep one prefix of each group of a frame's prefixes that the LM cannot tell apart, in place (see beam_search).

    Equal LM state, partial word and last token (merge_key[node]) mean equal futures: every extension
    multiplies their masses by the same probabilities and LM factors. The member with the largest mass (ties: the
    earlier in new_nb) is kept as it is and the others are dropped; their masses are not added to it, so every
    prefix's probability stays that of its own text. new_nb holds every node of new_b (0.0 where it has none).
    """
    first: dict = {}  # (lm_state, partial, last token) -> the first node of the group
    groups: dict = {}  # the same key -> every node of a group with more than one, in new_nb's order
    for node in new_nb:
        key = merge_key[node]
        if key in first:
            members = groups.get(key)
            if members is None:
                groups[key] = [first[key], node]
            else:
                members.append(node)
        else:
            first[key] = node
    if not groups:
        return
    b_get = new_b.get
    for members in groups.values():
        keep = max(members, key=lambda n: new_nb[n] + b_get(n, 0.0))  # the first of equal ones
        for node in members:
            if node != keep:
                del new_nb[node]
                new_b.pop(node, None)


def _search(
    frames: list[tuple[float, list[tuple[int, float]], float]],
    vocab: list[str],
    words: _WordTracker | None,
    beam_size: int,
    beam_threshold: float,
    nbest: int | None,
    merge: bool = False,
) -> list[Hypothesis]:
    """The prefix beam search over `_candidates`' frames, best hypothesis first (see `beam_search`)."""
    trie = _PrefixTrie(vocab, words)
    beam = _Beam(trie, beam_size, beam_threshold, merge)
    extend, prune, blank_frame = beam.extend, beam.prune, beam.blank_frame
    nodes = trie.parent  # one entry per trie node (compact changes it in place)
    refused = words.refused if words is not None else {}  # and one per extension refused (compact clears it)
    compact_at = _COMPACT_AFTER  # entries of both; compacting keeps memory bounded by the beam, not the utterance
    for p_blank, cands, top_p in frames:
        if cands:
            new_b, new_nb = extend(p_blank, cands, top_p)
            prune(new_b, new_nb)
            if len(nodes) + len(refused) > compact_at:
                beam.nodes = trie.compact(beam.nodes)
                compact_at = 2 * len(nodes) + _COMPACT_AFTER
        else:
            blank_frame(p_blank)
    return beam.finalize(vocab, nbest)


def _timed(hyps: list[Hypothesis], lp: np.ndarray, vocab: list[str], frame_rate: float) -> list[Hypothesis]:
    """The hypotheses with their words' positions (TimedHypothesis); lp: (T, V) log-probabilities."""
    out = []
    for h in hyps:
        words = _word_times(lp, h.tokens, vocab, frame_rate)
        assert " ".join(w.word for w in words) == h.text, (words, h.text)
        out.append(TimedHypothesis(h.text, h.score, h.tokens, h.am_score, h.lm_score, words))
    return out


def _word_times(lp: np.ndarray, tokens: tuple[int, ...], vocab: list[str], frame_rate: float) -> tuple[WordTime, ...]:
    """Each word of the labelling `tokens` with its frames in the best alignment; lp: (T, V) log-probabilities."""
    path = _best_alignment(lp, tokens)  # (T,) non-decreasing
    states = 2 * np.arange(len(tokens)) + 1  # token i is emitted in state 2i + 1
    first = np.searchsorted(path, states, side="left").tolist()
    after = np.searchsorted(path, states, side="right").tolist()
    return tuple(
        WordTime(word, first[i], after[j], first[i] / frame_rate, after[j] / frame_rate)
        for word, i, j in _word_spans(tokens, vocab)
    )


def _best_alignment(lp: np.ndarray, tokens: tuple[int, ...]) -> np.ndarray:
    """(T,) the state of every frame in the most probable CTC alignment of `tokens` (Viterbi): 2i + 1 while token i
    is emitted, 2i in the blanks before it, 2 * len(tokens) in the blanks after the last. lp: (T, V).

    On ties a state is held rather than left, so a token starts as late and ends as late as the tie allows.
    A few numpy calls per frame, on arrays of 2 * len(tokens) + 1 states."""
    T, L = lp.shape[0], len(tokens)
    ext = np.zeros(2 * L + 1, dtype=np.int64)  # the states' tokens: blank, token 0, blank, token 1, ..., blank
    ext[1::2] = tokens
    # a token state can also be entered from two states back (skipping a blank) unless it repeats that token
    skip = np.full(len(ext), -np.inf)
    skip[3::2] = np.where(ext[3::2] != ext[1:-2:2], 0.0, -np.inf)
    score = np.full(len(ext), -np.inf)  # (2L + 1,) the best log-probability of a path ending in each state
    if T:
        score[:2] = lp[0, ext[:2]]
    else:
        score[0] = 0.0
    came = np.full((3, len(ext)), -np.inf)  # per state: the best path through it, one state back, two back
    back = np.zeros((T, len(ext)), dtype=np.int8)  # per frame and state: how many states back its predecessor is
    for start in range(0, T, _ALIGN_BLOCK):
        emit = lp[start : start + _ALIGN_BLOCK, ext]  # (<= _ALIGN_BLOCK, 2L + 1)
        for t in range(max(start, 1), min(T, start + _ALIGN_BLOCK)):
            came[0] = score
            came[1, 1:] = score[:-1]
            np.add(score[:-2], skip[2:], out=came[2, 2:])
            back[t] = came.argmax(axis=0)  # the first of equal ones: hold, then step
            score = came.max(axis=0)
            score += emit[t - start]
    end = len(ext) - 1 if L == 0 or score[-1] >= score[-2] else len(ext) - 2
    if not score[end] > -np.inf:
        raise ValueError(
            f"{L} tokens cannot be aligned to {T} frames (each token needs a frame, and a repeated token a blank "
            "between): pass the labelling of these log_probs, e.g. a hypothesis's tokens"
        )
    path = np.empty(T, dtype=np.int64)
    for t in range(T - 1, -1, -1):
        path[t] = end
        end -= int(back[t, end])
    return path


def _word_parts(vocab: list[str]) -> tuple[list[bool], list[str]]:
    """Per token: (does it begin a new word, the letters it adds to the word it is in).

    The one place that says where words begin, for every vocabulary: a character vocabulary's " " begins a word
    and adds nothing (a boundary-only token), a letter adds itself; a BPE piece "▁abc" begins a word and adds
    "abc" ("▁" alone is boundary-only), a piece "abc" adds "abc" to the current word. A word ends where the next
    begins, or at the end of the utterance."""
    begins = [t == " " or t.startswith(WORD_START) for t in vocab]
    letters = ["" if t == " " else t.removeprefix(WORD_START) for t in vocab]
    return begins, letters


def _word_spans(tokens: tuple[int, ...], vocab: list[str]) -> list[tuple[str, int, int]]:
    """(word as the hypothesis text shows it, index of its first token, of its last) for each word of tokens."""
    begins, letters = _word_parts(vocab)
    spans, word, first, last = [], "", -1, -1
    for i, token in enumerate(tokens):
        piece = letters[token]
        if begins[token]:
            spans.append((word, first, last))
            word = ""
        if piece:
            if not word:
                first = i
            word, last = word + piece, i
    spans.append((word, first, last))
    shown = [(normalize(w) if "'" in w else w, i, j) for w, i, j in spans]
    return [(w, i, j) for w, i, j in shown if w]


def _text(tokens: tuple[int, ...], vocab: list[str]) -> str:
    """The normalised text of a labelling (words begin at " " and "▁", as `_word_parts` says)."""
    return join_pieces(vocab[t] for t in tokens)


def _neg_first(item: tuple) -> float:
    """Minus the first element (a sort key)."""
    return -item[0]


def _neg_second(item: tuple) -> float:
    """Minus the second element (a sort key)."""
    return -item[1]
