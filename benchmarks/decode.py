"""Decoder speed and accuracy: greedy, our prefix beam search (with and without a 3-gram LM), and pyctcdecode.

All decoders get identical log-probabilities. Without a trained model they are synthetic but shaped like a
character CTC model's output at 50 frames/s: sentences of Pride and Prejudice, ~10 s each, every character
held 1-3 frames with blanks between, noisy peaked logits (the confidence is set per character, as a model's is),
and 2% of the characters confused with another one by a near-tie, so that greedy decoding makes a few percent
word errors. `--logits DIR` uses saved real outputs instead
(`<id>.npy` (T, V) log-probs + `<id>.txt` reference).

The LM is a 3-gram built with `python -m asr.lm build` from the same book minus the benchmark sentences.
pyctcdecode (and kenlm, which it needs for the LM) is installed for this benchmark only:
`pip install pyctcdecode kenlm`; without it those rows are skipped.

    python benchmarks/decode.py                       # 100 utterances, well under a minute
    python benchmarks/decode.py --utterances 20 --no-pyctcdecode
    python benchmarks/decode.py --utterances 40 --against-commit 00f3c98   # this asr/decode.py vs that commit's

Times are CPU ms per utterance in one process on one core (torch.set_num_threads(1)); ratios are measured in
the same run. WER is corpus-level (sum of word edits / reference words).

`--against-commit REV` instead compares this checkout's beam search with asr/decode.py at git revision REV
(read with `git show`) at beam 10 and 100, without and with the LM: it checks that both return the same
hypotheses, then times both on every utterance in turn, `--reps` times (each decoder with its own copy of the
LM, caches warmed), and prints ms/utt of each (the fastest run of every utterance) and their ratio.
"""

import argparse
import dataclasses
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import editdistance
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asr.decode import beam_search, greedy_decode  # noqa: E402
from asr.lm import build_arpa, load_lm, read_sentences  # noqa: E402
from asr.text import CharTokenizer  # noqa: E402

BOOK = ROOT.parent / "shared" / "data" / "text" / "pride_and_prejudice.txt"
FRAMES_PER_SECOND = 50


def synthetic_utterances(sentences: list[str], n: int, seconds: float, seed: int, tokenizer: CharTokenizer):
    """n (log_probs (T, V) float32, reference) pairs built from consecutive sentences, and the sentences used."""
    rng = np.random.default_rng(seed)
    V = len(tokenizer)
    letters = np.arange(3, V)
    out, used, i = [], set(), int(rng.integers(len(sentences)))
    chars_wanted = int(seconds * FRAMES_PER_SECOND / 3)  # ~3 frames per character below: ~17 characters a second
    while len(out) < n:
        words: list[str] = []
        while len(" ".join(words)) < chars_wanted:
            words += sentences[i % len(sentences)].split()
            used.add(sentences[i % len(sentences)])
            i += 1
        text = " ".join(words)[:chars_wanted].rsplit(" ", 1)[0]
        ids = tokenizer.encode(text)
        path: list[int] = []  # frame-level CTC alignment
        peak: list[float] = []  # how confident the model is, per frame; constant over a character's frames
        rival: list[int] = []  # a competing character per frame (-1: none)
        closeness: list[float] = []  # the rival's logit as a fraction of the peak
        for j, c in enumerate(ids):
            gap = int(rng.integers(0, 3)) + (1 if j and ids[j - 1] == c else 0)  # a blank is needed between repeats
            hold = int(rng.integers(1, 4))
            confused = c >= 3 and rng.random() < 0.02
            path += [0] * gap + [c] * hold
            peak += [float(rng.uniform(8.0, 14.0))] * gap + [float(rng.uniform(6.0, 14.0))] * hold
            rival += [-1] * gap + [int(rng.choice(letters)) if confused else -1] * hold
            closeness += [0.0] * gap + [float(rng.uniform(0.85, 1.1))] * hold
        tail = int(rng.integers(1, 4))
        path += [0] * tail
        peak += [10.0] * tail
        rival += [-1] * tail
        closeness += [0.0] * tail
        T = len(path)
        logits = rng.normal(0.0, 1.0, size=(T, V))
        peaks = np.array(peak) + rng.normal(0.0, 0.5, size=T)
        logits[np.arange(T), path] += peaks
        rows = np.nonzero(np.array(rival) >= 0)[0]
        logits[rows, np.array(rival)[rows]] += peaks[rows] * np.array(closeness)[rows]
        log_probs = torch.log_softmax(torch.from_numpy(logits), dim=-1).float().numpy()
        out.append((log_probs, text))
    return out, used


def saved_utterances(folder: Path, n: int):
    """(log_probs, reference) pairs from <id>.npy + <id>.txt files."""
    pairs = []
    for npy in sorted(folder.glob("*.npy"))[:n]:
        ref = npy.with_suffix(".txt")
        pairs.append((np.load(npy).astype(np.float32), ref.read_text().strip() if ref.exists() else ""))
    if not pairs:
        raise SystemExit(f"no <id>.npy log-prob files in {folder}")
    return pairs


def wer(hyps: list[str], refs: list[str]) -> float:
    edits = sum(editdistance.eval(h.split(), r.split()) for h, r in zip(hyps, refs, strict=True))
    return 100.0 * edits / max(1, sum(len(r.split()) for r in refs))


def timed(decode, utterances) -> tuple[float, list[str]]:
    """(ms per utterance, hypotheses)."""
    decode(utterances[0][0])  # warm caches and imports
    t0 = time.process_time()  # CPU time of this process: steadier than wall time on a shared machine
    hyps = [decode(lp) for lp, _ in utterances]
    return 1000.0 * (time.process_time() - t0) / len(utterances), hyps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each synthetic utterance")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--logits", type=Path, help="folder of saved <id>.npy log-probs (+ <id>.txt) to use instead")
    parser.add_argument("--text", type=Path, default=BOOK, help="book for the synthetic sentences and the LM")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--beams", default="10,50,100", help="beam sizes without LM")
    parser.add_argument("--lm_beam", type=int, default=100)
    parser.add_argument("--no-pyctcdecode", dest="pyctcdecode", action="store_false")
    parser.add_argument("--against-commit", metavar="REV", help="compare with asr/decode.py at this git revision")
    parser.add_argument("--reps", type=int, default=5, help="timed runs of each utterance with --against-commit")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    old_decoder = load_decoder_at(args.against_commit) if args.against_commit else None

    tokenizer = CharTokenizer()
    sentences = read_sentences(args.text)
    long_enough = [s for s in sentences if len(s.split()) >= 4]
    if args.logits:
        utterances, used = saved_utterances(args.logits, args.utterances), set()
    else:
        utterances, used = synthetic_utterances(long_enough, args.utterances, args.seconds, args.seed, tokenizer)
    refs = [ref for _, ref in utterances]
    frames = sum(lp.shape[0] for lp, _ in utterances) / len(utterances)
    print(
        f"{len(utterances)} utterances, {frames:.0f} frames ({frames / FRAMES_PER_SECOND:.1f} s) each on average; "
        f"LM: 3-gram from {args.text.name} minus {len(used)} benchmark sentences"
    )

    with tempfile.TemporaryDirectory() as tmp:
        arpa = Path(tmp) / "lm.arpa"
        t0 = time.perf_counter()
        arpa.write_text(build_arpa([s for s in sentences if s not in used], order=3))
        lm = load_lm(arpa, backend="arpa")
        print(f"built and loaded the LM in {time.perf_counter() - t0:.1f} s ({len(lm)} n-grams)")
        print(
            f"alpha {args.alpha}, beta {args.beta}; pruning as pyctcdecode's defaults for both decoders: tokens "
            "below log-prob -5 skipped, prefixes 10 nats behind the best dropped\n"
        )
        if old_decoder is not None:
            against_commit(args, old_decoder, tokenizer, utterances, lm, load_lm(arpa, backend="arpa"))
            return
        rows = run_all(args, tokenizer, utterances, refs, lm, arpa)

    base = rows[0][1]
    print(f"| {'decoder':<28} | {'ms/utt':>7} | {'x greedy':>8} | {'WER %':>6} |")
    print(f"|{'-' * 30}|{'-' * 8}:|{'-' * 9}:|{'-' * 7}:|")
    for name, ms, w in rows:
        print(f"| {name:<28} | {ms:7.2f} | {ms / base:8.1f} | {w:6.2f} |")
    ours = {n: (ms, w) for n, ms, w in rows}
    print()
    for n, ms, w in rows:
        if n.startswith("pyctcdecode"):
            mine = n.replace("pyctcdecode", "ours")
            if mine in ours:
                mine_ms, mine_wer = ours[mine]
                print(f"{mine}: {ms / mine_ms:.1f}x faster than pyctcdecode (WER {mine_wer:.2f} % vs {w:.2f} %)")


def run_all(args, tokenizer, utterances, refs, lm, arpa: Path) -> list[tuple[str, float, float]]:
    rows = []

    def add(name, decode):
        ms, hyps = timed(decode, utterances)
        rows.append((name, ms, wer(hyps, refs)))
        print(f"  {name}: {ms:.2f} ms/utt", flush=True)

    add("greedy", lambda lp: greedy_decode(torch.from_numpy(lp)[None], torch.tensor([lp.shape[0]]), tokenizer)[0])
    beams = [int(b) for b in args.beams.split(",")]
    # our defaults prune like pyctcdecode's: tokens below log-prob -5 skipped, prefixes 10 nats behind dropped
    for b in beams:
        add(f"ours beam {b}", lambda lp, b=b: beam_search(lp, tokenizer, beam_size=b)[0].text)
    lm_kw = {"beam_size": args.lm_beam, "lm": lm, "alpha": args.alpha, "beta": args.beta}
    add(f"ours beam {args.lm_beam} + LM", lambda lp: beam_search(lp, tokenizer, **lm_kw)[0].text)
    try:
        kenlm_kw = {**lm_kw, "lm": load_lm(arpa, backend="kenlm")}
        add(f"ours beam {args.lm_beam} + LM via kenlm", lambda lp: beam_search(lp, tokenizer, **kenlm_kw)[0].text)
    except ImportError:
        pass

    if not args.pyctcdecode:
        return rows
    try:
        from pyctcdecode import build_ctcdecoder
    except ImportError:
        print("pyctcdecode is not installed (pip install pyctcdecode kenlm): skipping its rows")
        return rows
    labels = [""] + tokenizer.vocab[1:]  # pyctcdecode's blank is ""
    plain = build_ctcdecoder(labels)
    for b in beams:
        add(f"pyctcdecode beam {b}", lambda lp, b=b: plain.decode(lp, beam_width=b))
    try:
        import kenlm  # noqa: F401
    except ImportError:
        print("kenlm is not installed: skipping pyctcdecode with an LM")
        return rows
    unigrams = lm._words
    fused = build_ctcdecoder(labels, kenlm_model_path=str(arpa), unigrams=unigrams, alpha=args.alpha, beta=args.beta)
    add(f"pyctcdecode beam {args.lm_beam} + LM", lambda lp: fused.decode(lp, beam_width=args.lm_beam))
    return rows


def load_decoder_at(rev: str):
    """asr/decode.py as it was at git revision `rev`, imported as a separate module."""
    shown = subprocess.run(["git", "show", f"{rev}:asr/decode.py"], cwd=ROOT, capture_output=True, text=True)
    if shown.returncode != 0:
        raise SystemExit(f"cannot read asr/decode.py at {rev!r} (git show: {shown.stderr.strip()})")
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(shown.stdout)
    try:
        spec = importlib.util.spec_from_file_location(f"decode_at_{rev}", f.name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        os.unlink(f.name)
    return module


def against_commit(args, old, tokenizer, utterances, lm_old, lm_new) -> None:
    """Old vs new beam search at beam 10 and 100, without and with the LM: identical hypotheses, then ms/utt of
    each and the ratio. Every utterance is decoded by both in turn (alternating which goes first) `--reps`
    times, so that changes in machine load hit both; its time is the fastest of those (noise only adds)."""
    import asr.decode as new

    print(f"asr/decode.py at {args.against_commit} (old) vs this checkout (new): CPU ms per utterance, each the")
    print(f"fastest of {args.reps} runs, old and new interleaved utterance by utterance\n")
    print(f"| {'beam':>4} | {'LM':<3} | {'old ms/utt':>10} | {'new ms/utt':>10} | {'new/old':>7} |")
    print(f"|{'-' * 5}:|{'-' * 5}|{'-' * 11}:|{'-' * 11}:|{'-' * 8}:|")
    for with_lm in (False, True):
        for beam in (10, 100):
            runs = []
            for module, lm in ((old, lm_old), (new, lm_new)):  # each its own LM, so neither warms the other's caches
                kw = {"beam_size": beam} | ({"lm": lm, "alpha": args.alpha, "beta": args.beta} if with_lm else {})
                runs.append(lambda lp, module=module, kw=kw: module.beam_search(lp, tokenizer, **kw))
            # an untimed pass of each checks the results and warms the LM caches
            results = [[[dataclasses.astuple(h) for h in run(lp)] for lp, _ in utterances] for run in runs]
            if results[0] != results[1]:
                raise SystemExit(f"beam {beam}, LM {with_lm}: old and new hypotheses differ")
            fastest = np.full((2, len(utterances)), np.inf)  # (old/new, utterance) seconds
            for rep in range(args.reps):
                for i, (lp, _) in enumerate(utterances):
                    for k in (0, 1) if (i + rep) % 2 == 0 else (1, 0):
                        t0 = time.process_time()
                        runs[k](lp)
                        fastest[k, i] = min(fastest[k, i], time.process_time() - t0)
            old_ms, new_ms = 1000.0 * fastest.mean(axis=1)
            lm_col = "yes" if with_lm else "no"
            print(f"| {beam:>4} | {lm_col:<3} | {old_ms:10.2f} | {new_ms:10.2f} | {new_ms / old_ms:7.3f} |", flush=True)
    print("\nhypotheses identical in every cell: text, tokens, score, am_score, lm_score of every n-best entry")


if __name__ == "__main__":
    main()
