"""Language models at LibriSpeech size: load time, memory and beam-100 decoding of the built-in ARPA reader and
KenLM on one ARPA file of millions of n-grams.

    python -m benchmarks.lm_size --out lm-bench                      # build the LM once (minutes), then measure
    python -m benchmarks.lm_size --out lm-bench --kenlm-site /venv-kenlm/lib/python3.11/site-packages

The LM is a real interpolated modified Kneser-Ney 4-gram built by the project's own builder
(`python -m asr.lm build`) from a corpus that makes as many distinct n-grams as a big LM has: `--copies`
copies of the sentences of the book, each word replaced with probability `--substitute` by one of
`--pseudo-words` random letter strings, so most 3- and 4-grams are new. It is then written uppercase and gzipped
(`lm.arpa.gz`), the form of the official LibriSpeech LMs (`3-gram.pruned.1e-7.arpa.gz`: ~34 MB). Each backend
is measured in a fresh process: load time (`asr.lm.load_lm`), peak resident memory (ru_maxrss) above the same
process after its imports, and ms per utterance (CPU time) of beam-100 search with the LM (alpha 0.5, beta 1,
inference.py's defaults otherwise) on `--utterances` synthetic 10 s utterances of the book
(`benchmarks/decode.py`'s clean class), with their WER. kenlm is optional: installed in this environment, or
in another venv of the same Python whose site-packages `--kenlm-site` appends to sys.path (after this
environment's own packages, so its numpy does not shadow ours).
"""

import argparse
import gzip
import json
import random
import resource
import string
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TEXT = ROOT.parent / "shared" / "data" / "text" / "pride_and_prejudice.txt"
SPECIAL = {"<S>": "<s>", "</S>": "</s>", "<UNK>": "<unk>"}  # ARPA tokens that stay lowercase (KenLM needs it)


def make_corpus(path: Path, copies: int, substitute: float, pseudo_words: int, seed: int = 0) -> int:
    """Write the corpus, one normalised sentence per line; returns its word count."""
    from asr.lm import read_sentences

    rng = random.Random(seed)
    sentences = read_sentences(TEXT)
    pool = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 10))) for _ in range(pseudo_words)]
    words = 0
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(copies):
            for sentence in sentences:
                tokens = [rng.choice(pool) if rng.random() < substitute else w for w in sentence.split()]
                f.write(" ".join(tokens) + "\n")
                words += len(tokens)
    return words


def build_lm(out: Path, args: argparse.Namespace) -> Path:
    """corpus.txt -> lm.arpa (the project's builder) -> lm.arpa.gz, uppercase; prints what each step took."""
    arpa_gz = out / "lm.arpa.gz"
    if arpa_gz.is_file():
        print(f"using {arpa_gz} (delete it to build again)")
        return arpa_gz
    out.mkdir(parents=True, exist_ok=True)
    words = make_corpus(out / "corpus.txt", args.copies, args.substitute, args.pseudo_words)
    print(f"corpus: {words:,} words ({args.copies} copies of the book, {args.substitute:.0%} substituted)")
    command = [sys.executable, "-m", "asr.lm", "build", "--text", str(out / "corpus.txt"), "--order",
               str(args.order), "--split", "lines", "--out", str(out / "lm.arpa")]  # fmt: skip
    tic = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True)
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB -> GiB
    print(f"built with `{' '.join(command[1:])}` in {time.perf_counter() - tic:.0f} s, peak RSS {rss:.1f} GiB")
    with open(out / "lm.arpa", encoding="utf-8") as src, gzip.open(arpa_gz, "wt", encoding="utf-8") as dst:
        for line in src:
            dst.write(_uppercase(line))
    (out / "lm.arpa").unlink()
    return arpa_gz


def _uppercase(line: str) -> str:
    """An ARPA line with its words in uppercase (<s>, </s> and <unk> stay lowercase); headers unchanged."""
    parts = line.rstrip("\n").split("\t")
    if len(parts) < 2:
        return line
    parts[1] = " ".join(SPECIAL.get(w, w) for w in parts[1].upper().split(" "))
    return "\t".join(parts) + "\n"


def measure(backend: str, arpa: Path, utterances: int, beam: int) -> dict:
    """In this (fresh) process: load the LM with `backend`, then decode; the figures as a dict."""
    from asr.config import BeamOptions
    from asr.decode import beam_search
    from asr.lm import load_lm, read_sentences
    from asr.tokenizers import CharTokenizer
    from benchmarks.decode import NOISE, synthetic_utterances, wer

    tokenizer = CharTokenizer()
    inputs, _ = synthetic_utterances(read_sentences(TEXT), utterances, 10.0, 0, tokenizer, NOISE["clean"])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tic = time.perf_counter()
    lm = load_lm(arpa, backend=backend)
    load_s = time.perf_counter() - tic
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    options = BeamOptions(beam_size=beam)  # inference.py's defaults otherwise
    beam_search(inputs[0][0], tokenizer, options, lm, nbest=1)  # imports, first allocations
    cpu = time.process_time()
    hyps = [beam_search(lp, tokenizer, options, lm, nbest=1)[0].text for lp, _ in inputs]
    ms = 1000 * (time.process_time() - cpu) / len(inputs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"backend": type(lm).__name__, "load_s": load_s, "load_gib": (loaded - before) / 2**20,
            "peak_gib": (peak - before) / 2**20, "ms_per_utt": ms, "wer": wer(hyps, [r for _, r in inputs]),
            "ngrams": len(lm) if hasattr(lm, "__len__") else None}  # fmt: skip


def run_child(backend: str, arpa: Path, args: argparse.Namespace) -> dict | None:
    """`measure` in a fresh interpreter, so each backend's memory is its own; None when it failed."""
    command = [sys.executable, __file__, "--measure", backend, "--arpa", str(arpa), "--utterances",
               str(args.utterances), "--beam", str(args.beam)]  # fmt: skip
    command += ["--kenlm-site", args.kenlm_site] if args.kenlm_site else []
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"{backend}: failed\n{done.stderr.strip()[-2000:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("lm-bench"), help="folder for the corpus and the LM")
    parser.add_argument("--order", type=int, default=4)
    parser.add_argument("--copies", type=int, default=16, help="copies of the book in the corpus")
    parser.add_argument("--substitute", type=float, default=0.25, help="share of words replaced by pseudo-words")
    parser.add_argument("--pseudo-words", type=int, default=100_000, help="vocabulary of the replacements")
    parser.add_argument("--utterances", type=int, default=20, help="synthetic 10 s utterances decoded")
    parser.add_argument("--beam", type=int, default=100)
    parser.add_argument("--kenlm-site", help="a site-packages folder holding kenlm (appended to sys.path)")
    parser.add_argument("--backends", nargs="+", default=["arpa", "kenlm"], choices=["arpa", "kenlm"])
    parser.add_argument("--measure", choices=["arpa", "kenlm"], help=argparse.SUPPRESS)  # the child's mode
    parser.add_argument("--arpa", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.kenlm_site:
        sys.path.append(args.kenlm_site)
    if args.measure:
        print(json.dumps(measure(args.measure, args.arpa, args.utterances, args.beam)))
        return
    arpa = build_lm(args.out, args)
    with gzip.open(arpa, "rt", encoding="utf-8") as f:
        header = [line.strip() for line, _ in zip(f, range(args.order + 2), strict=False) if line.startswith("ngram")]
    total = sum(int(h.split("=")[1]) for h in header)
    print(f"{arpa}: {arpa.stat().st_size / 2**20:.0f} MiB gzipped; {', '.join(header)}; {total:,} n-grams\n")
    print(f"| backend | load s | memory after load GiB | peak GiB | beam {args.beam} + LM ms/utt | WER % |")
    print("|---|---:|---:|---:|---:|---:|")
    for backend in args.backends:
        r = run_child(backend, arpa, args)
        if r:
            print(f"| {r['backend']} | {r['load_s']:.1f} | {r['load_gib']:.2f} | {r['peak_gib']:.2f} | "
                  f"{r['ms_per_utt']:.1f} | {r['wer']:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
