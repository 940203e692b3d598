"""Decoder speed, accuracy and memory on every kind of input: greedy, our prefix beam search and pyctcdecode.

Input classes (`--classes`), each decoded by every decoder from identical log-probabilities:
- clean: synthetic outputs of a confident character CTC model at 50 frames/s, ~10 s sentences of the book
  (`--text`): every character held 1-3 frames with blanks between, noisy peaked logits (the confidence set per
  character, as a model's is), 2% of the characters confused with another by a near-tie; greedy makes a few
  percent word errors.
- medium, heavy: the same sentences as hard audio: lower peaks (so that many tokens pass the pruning of every
  frame), frequent confusions, also with the blank and the space (missed letters, split and merged words).
  Heavy noise is tuned so that greedy decoding gets about 90% of the words wrong.
- long: clean, but 60 s per utterance (`--long-seconds`), `--long-utterances` of them.
- real: model outputs saved by `inference.py --save_logits DIR` (`<id>.npy` (T, V) log-probs, `<id>.txt`
  reference, `tokenizer.json`), when `--logits DIR` is given.

Per class the table gives ms/utt and corpus WER (sum of word edits / reference words) of greedy, and of ours
and pyctcdecode at beam 10 and 100 (`--beams`), without and with a 3-gram LM built with `asr.lm.build_arpa`
from the book minus the sentences of the synthetic utterances; and our peak memory: tracemalloc around our
search only, in a separate untimed pass after the timed one (so the LM's caches are warm and allocate
nothing: the LM and the inputs are not counted), the largest peak over the class's first
`--memory-utterances` utterances (tracemalloc makes the search about 10 times slower).

Both beam searches get the same settings, printed at the start: beam width; token pruning (tokens below
log-prob -5 skipped, a frame's best kept); a beam threshold of 10 nats below the best prefix; alpha, beta;
<s> before and </s> after every sentence; the LM's vocabulary for the partial-word check; and the OOV offset,
which pyctcdecode adds to the log10 LM score before multiplying by alpha ln 10 and we add in nats after alpha,
so ours = pyctcdecode's * alpha * ln 10. pyctcdecode also charges that same number, as nats, for a partial word
that no LM word starts with (times length / 6 beyond 6 characters); it equals our partial-word charge only at
alpha = 1 / ln 10 = 0.4343, the default here. With the LM, both merge the beams the LM can no longer tell
apart (ours `merge_beams`, pyctcdecode `prune_history`), as inference.py does by default; `--no-merge` turns
both off.

pyctcdecode (and kenlm, which it needs for the LM) is installed for this benchmark only, in its own venv
since it pins numpy < 2: `pip install pyctcdecode kenlm`; without them those rows are skipped.

    python -m benchmarks.decode                                    # every class, 30 (5 long) utterances each
    python -m benchmarks.decode --classes clean --utterances 20 --no-pyctcdecode
    python -m benchmarks.decode --classes real --logits logits/test-clean
    python -m benchmarks.decode --classes clean --utterances 40 --against-commit 00f3c98   # vs that decode.py

Times are CPU ms per utterance in one process on one core (torch.set_num_threads(1)); ratios are measured in
the same run.

`--against-commit REV` instead compares this checkout's beam search with asr/decode.py at git revision REV
(read with `git show`) at beam 10 and 100, without and with the LM, on each selected class (default: clean, or
real with `--logits`): it checks that
both return the same hypotheses, then times both on every utterance in turn, `--reps` times (each decoder with
its own copy of the LM, caches warmed), and prints ms/utt of each (the fastest run of every utterance) and
their ratio.
"""

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from asr.decode import DEFAULT_OPTIONS, BeamOptions, beam_search, greedy_decode
from asr.lm import build_arpa, load_lm, read_sentences
from asr.metrics import score
from asr.text import normalize
from asr.tokenizers import CharTokenizer, tokenizer_from_state

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_TEXT = "../shared/data/text/pride_and_prejudice.txt"  # relative to the repository root
FRAMES_PER_SECOND = 50
LN10 = math.log(10.0)
# both decoders, from BeamOptions' defaults: tokens below this log-probability are skipped (a frame's best is kept),
# and prefixes this many nats below the best are dropped
TOKEN_MIN_LOGP = DEFAULT_OPTIONS.token_min_logp
BEAM_THRESHOLD = DEFAULT_OPTIONS.beam_threshold


@dataclasses.dataclass(frozen=True)
class Noise:
    """How synthetic log-probabilities are made: logits N(0, sd) everywhere, plus a peak on the aligned token.

    A confused character's frames also get a peak on a rival token, `closeness` times the true one's: a letter
    (letters_only) or any token, the blank (the letter is missed) and the space (words split) included.
    """

    letter_peak: tuple[float, float]  # uniform range of the peak of a character's frames
    blank_peak: tuple[float, float]  # ... of the blank frames between characters
    confusion: float  # fraction of the characters with a rival
    closeness: tuple[float, float]  # uniform range of the rival's peak / the true peak
    letters_only: bool = True  # rivals are letters, and only letters are confused (else any token, spaces too)
    sd: float = 1.0  # standard deviation of the background logits


NOISE = {
    "clean": Noise(letter_peak=(6.0, 14.0), blank_peak=(8.0, 14.0), confusion=0.02, closeness=(0.85, 1.1)),
    "medium": Noise(
        letter_peak=(3.5, 9.0), blank_peak=(5.0, 10.0), confusion=0.12, closeness=(0.8, 1.2), letters_only=False
    ),
    "heavy": Noise(
        letter_peak=(2.0, 6.0), blank_peak=(3.0, 7.0), confusion=0.3, closeness=(0.8, 1.25), letters_only=False
    ),
}
CLASSES = ("clean", "medium", "heavy", "long", "real")


def synthetic_utterances(
    sentences: list[str], n: int, seconds: float, seed: int, tokenizer: CharTokenizer, noise: Noise
) -> tuple[list[tuple[np.ndarray, str]], set[str]]:
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
        rival: list[int] = []  # a competing token per frame (-1: none)
        closeness: list[float] = []  # the rival's logit as a fraction of the peak
        for j, c in enumerate(ids):
            gap = int(rng.integers(0, 3)) + (1 if j and ids[j - 1] == c else 0)  # a blank is needed between repeats
            hold = int(rng.integers(1, 4))
            confusable = c >= 3 if noise.letters_only else c >= 1
            confused = confusable and rng.random() < noise.confusion
            path += [0] * gap + [c] * hold
            peak += [float(rng.uniform(*noise.blank_peak))] * gap + [float(rng.uniform(*noise.letter_peak))] * hold
            other = -1
            if confused:
                other = int(rng.choice(letters)) if noise.letters_only else int(rng.choice(np.delete(np.arange(V), c)))
            rival += [-1] * gap + [other] * hold
            closeness += [0.0] * gap + [float(rng.uniform(*noise.closeness))] * hold
        tail = int(rng.integers(1, 4))
        path += [0] * tail
        peak += [10.0] * tail  # a confident end
        rival += [-1] * tail
        closeness += [0.0] * tail
        T = len(path)
        logits = rng.normal(0.0, noise.sd, size=(T, V))
        peaks = np.array(peak) + rng.normal(0.0, 0.5, size=T)
        logits[np.arange(T), path] += peaks
        rows = np.nonzero(np.array(rival) >= 0)[0]
        logits[rows, np.array(rival)[rows]] += peaks[rows] * np.array(closeness)[rows]
        log_probs = torch.log_softmax(torch.from_numpy(logits), dim=-1).float().numpy()
        out.append((log_probs, text))
    return out, used


def saved_utterances(folder: Path, n: int, tokenizer: CharTokenizer) -> list[tuple[np.ndarray, str]]:
    """(log_probs, normalised reference) pairs from a folder written by `inference.py --save_logits`."""
    if not folder.is_dir():
        raise SystemExit(f"--logits {folder}: no such folder; write one with inference.py --save_logits {folder}")
    saved = folder / "tokenizer.json"
    state = json.loads(saved.read_text()) if saved.is_file() else None
    if state is not None and (state.get("kind") != "char" or tokenizer_from_state(state).vocab != tokenizer.vocab):
        raise SystemExit(f"{saved}: the model's tokenizer is not the default CharTokenizer this benchmark decodes")
    pairs = []
    for npy in sorted(folder.glob("*.npy"))[:n]:
        ref = npy.with_suffix(".txt")
        if ref.is_file():  # references are needed for WER
            pairs.append((np.load(npy).astype(np.float32), normalize(ref.read_text(encoding="utf-8"))))
    if not pairs:
        raise SystemExit(f"--logits {folder}: no <id>.npy log-probs with an <id>.txt reference beside them")
    return pairs


def wer(hyps: list[str], refs: list[str]) -> float:
    """Corpus WER in % (asr.metrics.score: word edits over reference words)."""
    return 100.0 * score(list(zip(refs, hyps, strict=True))).wer


def timed(decode, utterances) -> tuple[float, list[str]]:
    """(ms per utterance, hypotheses)."""
    decode(utterances[0][0])  # warm caches and imports
    t0 = time.process_time()  # CPU time of this process: steadier than wall time on a shared machine
    hyps = [decode(lp) for lp, _ in utterances]
    return 1000.0 * (time.process_time() - t0) / len(utterances), hyps


def peak_memory(decode, utterances) -> float:
    """The largest tracemalloc peak (MiB) of one decode call over the utterances, minus what was allocated before.

    Run after `timed`, so that the LM's caches already hold every query and the inputs already exist.
    """
    tracemalloc.start()
    try:
        worst = 0
        for lp, _ in utterances:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            decode(lp)
            worst = max(worst, tracemalloc.get_traced_memory()[1] - before)
    finally:
        tracemalloc.stop()
    return worst / 2**20


def resolve_text(path: Path | None) -> Path:
    """--text, or the default book beside the repository, checked."""
    text = path if path is not None else ROOT / DEFAULT_TEXT
    if not text.is_file():
        raise SystemExit(
            f"--text: {text} not found; pass --text with a plain-text book (e.g. Pride and Prejudice from "
            f"Project Gutenberg); the default is {DEFAULT_TEXT} relative to the repository root"
        )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--classes",
        help=f"comma-separated, of {','.join(CLASSES)} (default: all; real only with --logits; with --against-commit "
        "clean, or real with --logits)",
    )
    parser.add_argument("--utterances", type=int, default=30, help="per class (real: at most this many)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each synthetic utterance")
    parser.add_argument("--long-utterances", type=int, default=5)
    parser.add_argument("--long-seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-utterances", type=int, default=5, help="per class, for the peak memory")
    parser.add_argument("--logits", type=Path, help="folder written by inference.py --save_logits: the real class")
    parser.add_argument(
        "--text", type=Path, help=f"book for the synthetic sentences and the LM (default {DEFAULT_TEXT})"
    )
    parser.add_argument("--alpha", type=float, default=1.0 / LN10, help="LM weight (default 1 / ln 10, see above)")
    parser.add_argument("--beta", type=float, default=1.0, help="bonus per word")
    parser.add_argument(
        "--unk-offset", type=float, default=DEFAULT_OPTIONS.unk_offset, help="our OOV offset, nats (after alpha)"
    )
    parser.add_argument("--beams", default="10,100", help="beam sizes")
    parser.add_argument(
        "--merge",
        action=argparse.BooleanOptionalAction,
        default=DEFAULT_OPTIONS.merge_beams,
        help="with the LM, merge beams the LM cannot tell apart: ours merge_beams, pyctcdecode prune_history "
        "(default: BeamOptions', as inference.py)",
    )
    parser.add_argument("--no-pyctcdecode", dest="pyctcdecode", action="store_false")
    parser.add_argument("--against-commit", metavar="REV", help="compare with asr/decode.py at this git revision")
    parser.add_argument("--reps", type=int, default=5, help="timed runs of each utterance with --against-commit")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    old_decoder = load_decoder_at(args.against_commit) if args.against_commit else None
    if args.classes is None and args.against_commit:  # the old decoder vs the new one: one class is enough
        classes = ["real" if args.logits else "clean"]
    elif args.classes is None:
        classes = [c for c in CLASSES if c != "real" or args.logits]
    else:
        classes = args.classes.split(",")
    unknown = [c for c in classes if c not in CLASSES]
    if unknown:
        raise SystemExit(f"--classes: unknown {unknown}; choose from {','.join(CLASSES)}")
    if "real" in classes and not args.logits:
        raise SystemExit("--classes real needs --logits DIR (written by inference.py --save_logits DIR)")

    text = resolve_text(args.text)
    tokenizer = CharTokenizer()
    sentences = read_sentences(text)
    long_enough = [s for s in sentences if len(s.split()) >= 4]
    inputs, used = {}, set()
    for name in classes:
        if name == "real":
            inputs[name] = saved_utterances(args.logits, args.utterances, tokenizer)
            continue
        n, seconds = (args.long_utterances, args.long_seconds) if name == "long" else (args.utterances, args.seconds)
        noise = NOISE["clean" if name == "long" else name]
        seed = args.seed + CLASSES.index(name)
        inputs[name], taken = synthetic_utterances(long_enough, n, seconds, seed, tokenizer, noise)
        used |= taken
    for name, utterances in inputs.items():
        frames = sum(lp.shape[0] for lp, _ in utterances) / len(utterances)
        print(f"{name}: {len(utterances)} utterances, {frames / FRAMES_PER_SECOND:.1f} s on average")

    with tempfile.TemporaryDirectory() as tmp:
        arpa = Path(tmp) / "lm.arpa"
        t0 = time.perf_counter()
        arpa.write_text(build_arpa([s for s in sentences if s not in used], order=3))
        lm = load_lm(arpa, backend="arpa")
        print(
            f"LM: 3-gram from {text.name} minus the {len(used)} sentences of the synthetic utterances, "
            f"built and loaded in {time.perf_counter() - t0:.1f} s ({len(lm)} n-grams)"
        )
        if old_decoder is not None:
            for name, utterances in inputs.items():
                print(f"\n## {name}")
                against_commit(args, old_decoder, tokenizer, utterances, lm, load_lm(arpa, backend="arpa"))
            return
        print_settings(args)
        decoders = make_decoders(args, tokenizer, lm, arpa)
        rows = []
        for name, utterances in inputs.items():
            rows += run_class(name, utterances, decoders, tokenizer, args.memory_utterances)
    print_table(rows)
    print(
        f"\npeak MiB: ours only, tracemalloc around the search (LM and inputs excluded), the largest over the first "
        f"{args.memory_utterances} utterances of the class"
    )


def print_settings(args) -> None:
    """The settings of both beam searches, side by side."""
    py_unk = args.unk_offset / (args.alpha * LN10)
    rows = [
        ("setting", "ours: asr.decode.beam_search", "pyctcdecode: build_ctcdecoder + decode_beams"),
        ("beam width", f"beam_size {args.beams}", f"beam_width {args.beams}"),
        ("token pruning", f"token_min_logp {TOKEN_MIN_LOGP}", f"token_min_logp {TOKEN_MIN_LOGP}"),
        ("beam threshold", f"beam_threshold {BEAM_THRESHOLD} (nats)", f"beam_prune_logp {-BEAM_THRESHOLD}"),
        ("other pruning", "top_k None, cutoff_prob 1.0, blank_skip None", "(none)"),
        ("merging (LM only)", f"merge_beams {args.merge}", f"prune_history {args.merge}"),
        ("LM weight", f"alpha {args.alpha:.4f}", f"alpha {args.alpha:.4f}"),
        ("word bonus", f"beta {args.beta}", f"beta {args.beta}"),
        ("sentence ends", "<s> context, </s> scored at the end", "lm_score_boundary True"),
        ("LM vocabulary", "the ARPA's words", "unigrams: the same words"),
        (
            "OOV word",
            f"unk_offset {args.unk_offset} (nats, after alpha)",
            f"unk_score_offset {py_unk:.4f} (log10, before alpha ln 10)",
        ),
        ("partial non-LM word", f"{args.unk_offset} nats", f"{py_unk:.4f} nats (x length / 6 beyond 6 characters)"),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print()
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"(pyctcdecode's unk_score_offset = ours / (alpha ln 10) = {args.unk_offset} / {args.alpha * LN10:.4f})")
    if abs(args.alpha * LN10 - 1.0) > 1e-6:
        print(f"partial-word charges differ: they are equal only at alpha = 1 / ln 10 = {1 / LN10:.4f}")
    print()


def make_decoders(args, tokenizer: CharTokenizer, lm, arpa: Path) -> list[tuple[str, int, bool, object]]:
    """(decoder name, beam, with LM, decode(log_probs) -> text) for every row of the table but greedy."""
    beams = [int(b) for b in args.beams.split(",")]
    out = []
    fused = {"alpha": args.alpha, "beta": args.beta, "unk_offset": args.unk_offset, "merge_beams": args.merge}
    for with_lm in (False, True):
        for b in beams:
            options = BeamOptions(beam_size=b, **fused)  # inference.py's defaults otherwise (token pruning, threshold)
            row_lm = lm if with_lm else None
            out.append(
                ("ours", b, with_lm, lambda lp, o=options, m=row_lm: beam_search(lp, tokenizer, o, m, nbest=1)[0].text)
            )
    if not args.pyctcdecode:
        return out
    try:
        from pyctcdecode import build_ctcdecoder
    except ImportError:
        print("pyctcdecode is not installed (pip install pyctcdecode kenlm): skipping its rows")
        return out
    labels = [""] + tokenizer.vocab[1:]  # pyctcdecode's blank is ""
    decoders = {False: build_ctcdecoder(labels)}
    try:
        import kenlm  # noqa: F401

        decoders[True] = build_ctcdecoder(
            labels,
            kenlm_model_path=str(arpa),
            unigrams=lm._words,
            alpha=args.alpha,
            beta=args.beta,
            unk_score_offset=args.unk_offset / (args.alpha * LN10),
            lm_score_boundary=True,
        )
    except ImportError:
        print("kenlm is not installed: skipping pyctcdecode with an LM")
    # decode_beams, not decode: decode always prunes beams that share their last n-1 words (prune_history); without
    # an LM that would merge beams on their partial word alone, which ours never does
    py_kw = {"token_min_logp": TOKEN_MIN_LOGP, "beam_prune_logp": -BEAM_THRESHOLD}
    for with_lm, decoder in decoders.items():
        kw = py_kw | {"prune_history": args.merge and with_lm}
        for b in beams:
            decode = lambda lp, d=decoder, b=b, kw=kw: d.decode_beams(lp, beam_width=b, **kw)[0][0]  # noqa: E731
            out.append(("pyctcdecode", b, with_lm, decode))
    return out


def run_class(name: str, utterances, decoders, tokenizer: CharTokenizer, memory_utterances: int) -> list[dict]:
    """Time, score and (ours) measure the memory of every decoder on one class of inputs."""
    refs = [ref for _, ref in utterances]

    def greedy(lp):
        return greedy_decode(torch.from_numpy(lp)[None], torch.tensor([lp.shape[0]]), tokenizer)[0]

    rows = []
    for decoder, beam, with_lm, decode in [("greedy", 1, False, greedy), *decoders]:
        ms, hyps = timed(decode, utterances)
        mib = peak_memory(decode, utterances[:memory_utterances]) if decoder == "ours" else None
        row = {"class": name, "decoder": decoder, "beam": beam, "lm": with_lm, "ms": ms, "wer": wer(hyps, refs)}
        rows.append(row | {"mib": mib})
        lm_col = "+ LM" if with_lm else ""
        print(f"  {name}: {decoder} beam {beam} {lm_col}: {ms:.1f} ms/utt, WER {row['wer']:.1f} %", flush=True)
    return rows


def print_table(rows: list[dict]) -> None:
    """One table, class by class, and the pyctcdecode / ours time ratios."""
    header = ["class ", "decoder    ", "beam", "LM ", "  ms/utt", " WER %", "peak MiB"]
    print("\n| " + " | ".join(header) + " |")
    print(f"|{'-' * 8}|{'-' * 13}|{'-' * 5}:|{'-' * 5}|{'-' * 9}:|{'-' * 7}:|{'-' * 9}:|")
    for r in rows:
        mib = f"{r['mib']:8.2f}" if r["mib"] is not None else f"{'':8}"
        beam = "" if r["decoder"] == "greedy" else r["beam"]
        lm = "yes" if r["lm"] else "no"
        print(
            f"| {r['class']:<6} | {r['decoder']:<11} | {beam:>4} | {lm:<3} | {r['ms']:8.2f} | {r['wer']:6.2f} | {mib} |"
        )
    ours = {(r["class"], r["beam"], r["lm"]): r for r in rows if r["decoder"] == "ours"}
    theirs = [r for r in rows if r["decoder"] == "pyctcdecode"]
    if theirs:
        print("\npyctcdecode time / ours (same class, beam and LM), and the WERs:")
        for r in theirs:
            mine = ours[(r["class"], r["beam"], r["lm"])]
            lm = "with LM" if r["lm"] else "no LM"
            print(
                f"  {r['class']:<6} beam {r['beam']:>3} {lm:<7}: {r['ms'] / mine['ms']:5.1f}x  "
                f"(WER ours {mine['wer']:.2f} %, pyctcdecode {r['wer']:.2f} %)"
            )


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
                lm = lm if with_lm else None
                if hasattr(module, "DEFAULT_OPTIONS"):  # one options object
                    o = BeamOptions(beam_size=beam, alpha=args.alpha, beta=args.beta, merge_beams=args.merge)
                    runs.append(lambda lp, m=module, o=o, lm=lm: m.beam_search(lp, tokenizer, o, lm))
                else:  # before it: keyword options, merging off by default
                    kw = {
                        "beam_size": beam,
                        "lm": lm,
                        "alpha": args.alpha,
                        "beta": args.beta,
                        "merge_beams": args.merge,
                    }
                    runs.append(lambda lp, m=module, kw=kw: m.beam_search(lp, tokenizer, **kw))
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
