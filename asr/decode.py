"""CTC decoding: log-probabilities from the model -> text.

Greedy (best path) decoding takes the most likely token per frame, merges repeats and drops blanks.

Prefix beam search (`beam_search`) keeps the `beam_size` most probable label prefixes. Each prefix carries two
probabilities, of all alignments ending in a blank and of those ending in its last token, kept apart because
they extend differently: a repeated token only starts a new label after a blank. Alignments that reach the same
prefix are summed, so a prefix's score is the total probability of its alignments (the quantity CTC trains),
not the probability of its best path; with a wide enough beam and no pruning the result is the exact most
probable labelling. Word language models are fused as `log p_ctc + alpha * log p_lm + beta * words` (shallow
fusion), scored when a word completes; see `beam_search` for the policy on partial words.

`decode_batch` and `decode_grid` (an alpha/beta grid) run many utterances in a process pool.

Implementation notes, for speed in pure Python: prefixes are nodes of a trie (an int per prefix, children
found by one dict lookup); probabilities are kept in linear space and rescaled when they get small (sums are
plain additions instead of log-add-exp); the LM factor of a prefix is multiplied into its probabilities when
the prefix is created, so merging stays exact and underflow is handled by the same rescaling; candidate
tokens of every frame are chosen up front with numpy, runs of frames where the blank is the only candidate
cost O(1) and runs where one same token is the only candidate are merged into one frame (both exact);
extensions that would fall below the beam threshold of a running lower bound of the frame's best are never
made, and when a frame can produce more prefixes than the beam holds, a heap of the best new ones skips the
rest (exact). On the benchmark (benchmarks/decode.py) beam 10 takes about 2 ms per 10 s utterance.
"""

import heapq
import inspect
import math
import multiprocessing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asr.text import CharTokenizer, normalize

WORD_START = "\u2581"  # SentencePiece's "▁": a BPE piece that starts a new word
_RESCALE_BELOW = 1e-30  # rescale beam probabilities when the best falls below this (or rises above its inverse)
_MIN_LOG_FACTOR = -600.0  # LM factors below e^-600 are clamped so that a rescaled beam can never underflow to 0
_MIN_FACTOR = math.exp(_MIN_LOG_FACTOR)
_NORMALISED_TOL = 0.1  # |logsumexp(row)| above this means the input is not log-probabilities (bf16 is ~0.01)


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, tokenizer: CharTokenizer) -> list[str]:
    """Best-path decoding of a batch, as normalised text (single spaces, none at the ends).

    log_probs: (B, T, V) log-probabilities (any monotone scores work); lengths: (B,) valid frames.
    """
    if log_probs.shape[-1] != len(tokenizer):
        raise ValueError(f"log_probs have {log_probs.shape[-1]} tokens, tokenizer has {len(tokenizer)}")
    best = log_probs.argmax(dim=-1).cpu()  # (B, T)
    # a path may start or end with a space, or hold two with a blank between: keep single inner spaces only
    return [" ".join(tokenizer.decode_ctc(best[b, : int(n)].tolist()).split()) for b, n in enumerate(lengths)]


@dataclass(frozen=True)
class Hypothesis:
    """One decoded labelling. score = am_score + lm_score (natural logs)."""

    text: str  # normalised words
    score: float  # fused score used for ranking: log p_ctc + alpha log p_lm + beta words (+ OOV offsets)
    tokens: tuple[int, ...]  # token ids of the labelling (no blanks, repeats kept as labelled)
    am_score: float  # log p_ctc(labelling | audio): the sum over its alignments that survived pruning
    lm_score: float  # alpha * log p_lm(words, </s>) + beta * words + unk_offset * OOV words


def beam_search(
    log_probs: torch.Tensor | np.ndarray,
    tokenizer: CharTokenizer,
    *,
    beam_size: int,
    lm=None,
    alpha: float = 0.0,
    beta: float = 0.0,
    unk_offset: float = -10.0,
    token_min_logp: float = -5.0,
    top_k: int | None = None,
    cutoff_prob: float = 1.0,
    beam_threshold: float = 10.0,
    blank_skip: float | None = None,
    nbest: int | None = None,
) -> list[Hypothesis]:
    """CTC prefix beam search with optional word n-gram shallow fusion, best hypothesis first.

    log_probs: (T, V) natural-log probabilities (log_softmax output) of one utterance, V == len(tokenizer.vocab).
    beam_size: prefixes kept after each frame.
    lm, alpha, beta: an `asr.lm.load_lm` model, its weight and a per-word bonus; without an LM both are
    ignored (a purely acoustic search). The LM scores a word when it completes: at a space (character
    vocabularies), at the next piece starting with "▁" (BPE), and at the end of the utterance, followed by
    `</s>`. A word the LM does not know is scored as `<unk>` plus `unk_offset`. Partial words: as soon as a
    prefix's unfinished word cannot begin any LM word, it gets `unk_offset` at once, so hopeless spellings drop
    out early; the charge is taken back when the word completes and is scored properly.
    Pruning (pass -inf / None / 1.0 / inf / None to switch each off):
      token_min_logp: per frame, tokens below this log-probability are skipped (the frame's best never is).
      top_k: per frame, at most this many candidate tokens, blank included.
      cutoff_prob: per frame, only the most probable tokens until their probabilities add up to this.
      beam_threshold: prefixes more than this many nats below the frame's best are dropped (and extensions
        that would start below that line are never made).
      blank_skip: frames whose blank probability is at least this are treated as blank-only.
    Skipped tokens count as probability 0, so scores are lower bounds of the exact ones and, as with any beam,
    the exact best labelling can be lost. With all pruning off and a beam wider than the number of prefixes
    the search is exact. Two shortcuts are exact and always on: a frame left with only the blank costs O(1),
    and a run of frames whose only candidate is the same token is decoded as one frame.
    nbest: return at most this many hypotheses (default: all that survive, up to beam_size).

    Hypotheses are distinct labellings with distinct text (labellings that differ only in spaces are kept
    once, the best). Ties are broken deterministically: by score, then by token ids.
    T == 0 gives one empty hypothesis with am_score 0 (and the LM score of an empty sentence).
    Raises ValueError for a wrong shape or vocabulary size, NaN or +inf values, or rows that are not
    log-probabilities (apply log_softmax first).
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if not beam_threshold >= 0.0:
        raise ValueError(f"beam_threshold is in nats below the best prefix and must be >= 0, got {beam_threshold}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 (or None), got {top_k}")
    vocab = tokenizer.vocab
    lp = _as_log_prob_array(log_probs, len(vocab))
    frames = _candidates(lp, token_min_logp, top_k, cutoff_prob, blank_skip)
    words = _WordTracker(vocab, lm, alpha, beta, unk_offset) if lm is not None else None
    return _search(frames, vocab, words, beam_size, beam_threshold, nbest)


def decode_batch(
    log_probs: Sequence[torch.Tensor | np.ndarray],
    tokenizer: CharTokenizer,
    *,
    workers: int = 1,
    lm=None,
    mp_context: str | None = None,
    **beam_kwargs,
) -> list[list[Hypothesis]]:
    """`beam_search` over many utterances, in input order, in `workers` processes when workers > 1.

    log_probs: one (T_i, V) array or tensor per utterance (already cut to its valid frames).
    lm: an LM object or a path for `asr.lm.load_lm`. Each worker gets it once, when the pool starts: with the
    default "fork" start method (Linux) the workers share the parent's copy; with "spawn" (mp_context) a path
    is loaded by every worker and an object is pickled to it.
    """
    arrays = _as_arrays(log_probs)
    return _run(arrays, [{}] * len(arrays), tokenizer, workers, lm, mp_context, beam_kwargs)


def decode_grid(
    log_probs: Sequence[torch.Tensor | np.ndarray],
    tokenizer: CharTokenizer,
    *,
    lm,
    alphas: Sequence[float],
    betas: Sequence[float],
    workers: int = 1,
    mp_context: str | None = None,
    **beam_kwargs,
) -> dict[tuple[float, float], list[str]]:
    """The best text of every utterance for every (alpha, beta) pair: the raw material of a WER grid search.

    Runs len(alphas) * len(betas) * len(log_probs) searches in one process pool (LM loaded once per worker).
    Returns {(alpha, beta): [text per utterance, in input order]}.
    """
    arrays = _as_arrays(log_probs)
    pairs = [(a, b) for a in alphas for b in betas]
    tasks = [(x, {"alpha": a, "beta": b, "nbest": 1}) for a, b in pairs for x in arrays]
    results = _run([x for x, _ in tasks], [o for _, o in tasks], tokenizer, workers, lm, mp_context, beam_kwargs)
    n = len(arrays)
    return {pair: [hyps[0].text for hyps in results[i * n : (i + 1) * n]] for i, pair in enumerate(pairs)}


def beam_options(config) -> dict:
    """The fields of a config object (e.g. asr.config.DecodeConfig) that are `beam_search` keyword arguments."""
    names = set(inspect.signature(beam_search).parameters) - {"log_probs", "tokenizer", "lm"}
    return {name: getattr(config, name) for name in sorted(names) if hasattr(config, name)}


def _as_arrays(log_probs: Sequence[torch.Tensor | np.ndarray]) -> list[np.ndarray]:
    return [x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x) for x in log_probs]


def _run(arrays, overrides, tokenizer, workers, lm, mp_context, beam_kwargs) -> list[list[Hypothesis]]:
    """beam_search(arrays[i], **beam_kwargs, **overrides[i]) for every i, serially or in a process pool."""
    parallel = workers > 1 and len(arrays) > 1
    if mp_context is None:
        mp_context = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    if isinstance(lm, str | Path):
        from asr.lm import load_lm

        # forked workers share the parent's copy; spawned ones load the file themselves
        lm = load_lm(lm) if not parallel or mp_context == "fork" else str(lm)
    if not parallel:
        return [
            beam_search(x, tokenizer, lm=lm, **{**beam_kwargs, **o}) for x, o in zip(arrays, overrides, strict=True)
        ]
    ctx = multiprocessing.get_context(mp_context)
    chunk = max(1, len(arrays) // (workers * 8))
    with ctx.Pool(min(workers, len(arrays)), initializer=_init_worker, initargs=(tokenizer, lm, beam_kwargs)) as pool:
        return pool.map(_decode_in_worker, zip(arrays, overrides, strict=True), chunksize=chunk)


_worker: dict = {}


def _init_worker(tokenizer, lm, beam_kwargs) -> None:
    torch.set_num_threads(1)
    if isinstance(lm, str):
        from asr.lm import load_lm

        lm = load_lm(lm)
    _worker.update(tokenizer=tokenizer, lm=lm, kwargs=beam_kwargs)


def _decode_in_worker(task: tuple[np.ndarray, dict]) -> list[Hypothesis]:
    log_probs, overrides = task
    return beam_search(log_probs, _worker["tokenizer"], lm=_worker["lm"], **{**_worker["kwargs"], **overrides})


def _as_log_prob_array(log_probs, vocab_size: int) -> np.ndarray:
    """Check one utterance's (T, V) log-probabilities; return them transposed, (V, T) float64, for fast per-frame
    reductions (numpy reduces a short axis of a long array much faster than the other way round)."""
    if isinstance(log_probs, torch.Tensor):
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
        frames = np.unique(np.nonzero(bad)[1])
        raise ValueError(f"log_probs contain {int(bad.sum())} NaN/+inf values (frames {frames[:5].tolist()}...)")
    return lp


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
    per_frame: list[list[tuple[int, float]]] = []
    start = 0
    for end in ends:
        per_frame.append(pairs[start:end])
        start = end
    for f in np.flatnonzero(counts > 1).tolist():
        per_frame[f].sort(key=_neg_second)  # most probable first, which helps the search prune early
    top_p = top_p.tolist()
    if runs is not None:
        for f in np.flatnonzero(runs > 1).tolist():
            per_frame[f] = [(per_frame[f][0][0], top_p[f])]
    return list(zip(blank_p.tolist(), per_frame, top_p, strict=True))


class _WordTracker:
    """Word-level bookkeeping of prefixes for shallow fusion: what a token does to the current word.

    Per token: whether it ends the current word and what text it adds to the next one. A character vocabulary
    has " " (ends a word, adds nothing) and letters (add themselves); a BPE piece "▁ab" ends the word and
    starts "ab". This is the only place that knows about word boundaries, so both kinds share one decoder.
    """

    def __init__(self, vocab: list[str], lm, alpha: float, beta: float, unk_offset: float) -> None:
        self.lm, self.alpha, self.beta, self.unk_offset = lm, alpha, beta, unk_offset
        self.ends_word = [t == " " or t.startswith(WORD_START) for t in vocab]
        self.piece = ["" if t == " " else t.removeprefix(WORD_START) for t in vocab]
        self.root = (lm.begin(), "", 0.0, 0.0)  # see step()
        # per token, an upper bound of exp(step's delta), for pruning before the LM is asked
        if alpha < 0.0:
            bound = math.inf
        else:
            bound = math.exp(max(0.0, beta) + 2.0 * abs(unk_offset))
        self.max_factor = [bound if end else math.exp(max(0.0, unk_offset)) for end in self.ends_word]
        self._prefix_ok: dict[str, bool] = getattr(lm, "prefix_cache", {})  # is_prefix's answers so far

    def step(self, info: tuple, token: int) -> tuple[float, tuple]:
        """(log factor of appending token, the new prefix's info).

        info = (LM state, unfinished word, penalty charged for it, log LM score of the prefix so far).
        """
        state, partial, penalty, total = info
        if not self.ends_word[token]:
            partial += self.piece[token]
            if penalty:
                return 0.0, (state, partial, penalty, total)
            ok = self._prefix_ok.get(partial)
            if ok is None:
                ok = self.lm.is_prefix(partial)
            if ok:
                return 0.0, (state, partial, 0.0, total)
            return self.unk_offset, (state, partial, self.unk_offset, total + self.unk_offset)
        delta = 0.0
        if partial:
            delta, state = self._word(state, partial)
            delta -= penalty
        partial = self.piece[token]
        if partial and not self.lm.is_prefix(partial):
            delta += self.unk_offset
            return delta, (state, partial, self.unk_offset, total + delta)
        return delta, (state, partial, 0.0, total + delta)

    def finish(self, info: tuple) -> float:
        """Log factor of ending the utterance: the last word (if any), then </s>."""
        state, partial, penalty, _ = info
        delta = 0.0
        if partial:
            delta, state = self._word(state, partial)
            delta -= penalty
        return delta + self.alpha * self.lm.end(state)

    def _word(self, state, word: str) -> tuple[float, object]:
        lp, state, oov = self.lm.score(state, word)
        return self.alpha * lp + self.beta + (self.unk_offset if oov else 0.0), state


def _search(
    frames: list[tuple[float, list[tuple[int, float]], float]],
    vocab: list[str],
    words: _WordTracker | None,
    beam_size: int,
    beam_threshold: float,
    nbest: int | None,
) -> list[Hypothesis]:
    V = len(vocab)
    # the prefix trie: node 0 is the empty prefix; parent/last token per node; children by node * V + token
    parent = [-1]
    last = [-1]
    children: dict[int, int] = {}
    # with word scoring, per node: the LM bookkeeping (_WordTracker.step's info, with the prefix's log LM score)
    # and the linear-space factor its probabilities were multiplied by on entering it; per token: a bound of it
    info = [words.root] if words is not None else None
    factor = [1.0]
    hi = words.max_factor if words is not None else None
    keep_ratio = math.exp(-beam_threshold) if beam_threshold < math.inf else 0.0

    # the beam: prefixes with their blank- and non-blank-ending probabilities, times exp(-log_scale)
    nodes, pb, pnb = [0], [1.0], [0.0]
    best_prev = 1.0  # the best prefix's pb + pnb
    log_scale = 0.0
    collapsed = True  # every pnb is 0, so a blank-only frame changes nothing but log_scale
    for p_blank, cands, top_p in frames:
        if not cands:  # only the blank survived pruning: every prefix keeps its mass, now ending in a blank
            log_scale += math.log(p_blank)
            if not collapsed:
                pb = [b + nb for b, nb in zip(pb, pnb, strict=True)]
                pnb = [0.0] * len(pb)
                collapsed = True
            continue
        # `bound` is a lower bound of this frame's best score: at first the best prefix followed by a blank
        # (without an LM, also by the top token, split in two when it repeats the prefix's last one), then the
        # largest contribution so far. Contributions below `cut`, beam_threshold below it, are never made.
        bound = best_prev * (max(p_blank, 0.5 * top_p) if hi is None else p_blank)
        cut = bound * keep_ratio
        new_b: dict[int, float] = {}
        new_nb: dict[int, float] = {}
        nb_get = new_nb.get
        # When more prefixes can come out of this frame than the beam holds, keep a min-heap of the beam_size
        # largest masses of prefixes that are not in the beam: such a prefix gets exactly one contribution (from
        # its parent), so its mass is final, and one that cannot beat the heap's smallest can never make the beam
        # (ties go to the earlier entry, and the heap's entries came first). Exact, and it skips most of the work
        # in flat frames with many candidates.
        heap: list[float] | None = [] if len(cands) > 1 and len(nodes) * len(cands) > beam_size else None
        kth = 0.0
        in_beam = set(nodes) if heap is not None else None
        for node, b, nb in zip(nodes, pb, pnb):  # noqa: B905 (equal lengths; strict costs time here)
            total = b + nb
            if p_blank:
                mass = new_b[node] = total * p_blank  # only the prefix itself can end in this blank
                if mass > bound:
                    bound, cut = mass, mass * keep_ratio
            prev = last[node]
            for tok, p in cands:
                if tok == prev:
                    if nb:  # a repeat with no blank in between continues the same label...
                        new_nb[node] = nb_get(node, 0.0) + nb * p
                    mass = b * p  # ...after a blank it is a new one
                else:
                    mass = total * p
                most = mass if hi is None else mass * hi[tok]  # the most it can be after the LM factor
                if most <= cut:
                    continue
                key = node * V + tok
                child = children.get(key)
                if heap is not None and most <= kth and child not in in_beam:
                    continue
                if info is None:
                    if child is None:
                        child = children[key] = len(parent)
                        parent.append(node)
                        last.append(tok)
                else:
                    if child is None:
                        delta, child_info = words.step(info[node], tok)
                        f = math.exp(delta) if delta > _MIN_LOG_FACTOR else _MIN_FACTOR
                        mass *= f
                        if mass <= cut:
                            continue  # e.g. a letter that leaves no LM word starting like this: not even created
                        child = children[key] = len(parent)
                        parent.append(node)
                        last.append(tok)
                        info.append(child_info)
                        factor.append(f)
                    else:
                        mass *= factor[child]
                        if mass <= cut:
                            continue
                if heap is not None and child not in in_beam:
                    if len(heap) < beam_size:
                        heapq.heappush(heap, mass)
                        if len(heap) == beam_size:
                            kth = heap[0]
                    else:
                        heapq.heappushpop(heap, mass)
                        kth = heap[0]
                new_nb[child] = nb_get(child, 0.0) + mass
                if mass > bound:
                    bound, cut = mass, mass * keep_ratio

        # merge, then keep the beam_size best prefixes within beam_threshold of the best
        if new_b:
            for node in new_b:
                if node not in new_nb:
                    new_nb[node] = 0.0
            b_get = new_b.get
            totals = {node: nb + b_get(node, 0.0) for node, nb in new_nb.items()}
        else:
            totals = new_nb
        best = max(totals.values())
        if not best > 0.0:
            raise FloatingPointError("every prefix underflowed to probability 0; check the log_probs")
        floor = best * keep_ratio
        if len(totals) > beam_size:
            # ties keep the earlier entry (nlargest is stable): deterministic
            kept = heapq.nlargest(beam_size, totals.items(), key=_second)
            nodes = [node for node, t in kept if t >= floor and t > 0.0]
        else:
            nodes = [node for node, t in totals.items() if t >= floor and t > 0.0]
            if info is not None:  # best first: it raises `bound` early, so LM-penalised extensions are never made
                nodes.sort(key=totals.__getitem__, reverse=True)
        rescale = best < _RESCALE_BELOW or best > 1.0 / _RESCALE_BELOW
        if rescale:
            inv = 1.0 / best
            log_scale += math.log(best)
            best_prev = 1.0
        else:
            best_prev = best
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
        collapsed = False

    # end of utterance: the last word and </s> for the LM, then rank
    finals = []
    for node, b, nb, tokens in zip(nodes, pb, pnb, _token_paths(nodes, parent, last), strict=True):
        end = words.finish(info[node]) if words is not None else 0.0
        total_lm = (info[node][3] if info is not None else 0.0) + end
        finals.append((math.log(b + nb) + log_scale + end, tokens, total_lm))
    finals.sort(key=lambda f: (-f[0], f[1]))
    out, seen = [], set()
    for score, tokens, total_lm in finals:
        text = " ".join("".join(vocab[t] for t in tokens).replace(WORD_START, " ").split())
        if "'" in text:  # the only character whose normalisation is more than collapsing spaces
            text = normalize(text)
        if text in seen:
            continue
        seen.add(text)
        out.append(Hypothesis(text=text, score=score, tokens=tokens, am_score=score - total_lm, lm_score=total_lm))
        if nbest is not None and len(out) >= nbest:
            break
    return out


def _token_paths(nodes: list[int], parent: list[int], last: list[int]) -> list[tuple[int, ...]]:
    """The token sequence of each trie node."""
    paths = []
    for node in nodes:
        tokens = []
        while node > 0:
            tokens.append(last[node])
            node = parent[node]
        tokens.reverse()
        paths.append(tuple(tokens))
    return paths


def _second(item: tuple) -> float:
    return item[1]


def _neg_second(item: tuple) -> float:
    return -item[1]
