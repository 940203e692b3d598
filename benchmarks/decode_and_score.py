"""Decode a checkpoint's output on a labelled folder with several decoders and score each: the step every
benchmark script ends with.

    python -m benchmarks.decode_and_score --checkpoint runs/x/best.pt --data_dir corpus/test --out preds/x-test
    python -m benchmarks.decode_and_score --checkpoint C --data_dir corpus/dev --out P/dev --decoders greedy \
        --lm lm/train3.arpa --grid_alphas 0.3,0.6,0.9,1.2 --grid_betas 0,1,2,3     # tune alpha, beta on dev
    python -m benchmarks.decode_and_score --checkpoint C --data_dir corpus/test --out P/test \
        --decoders greedy,beam,beam_lm --lm lm/train3.arpa --tuned_on P/dev          # ... and use them on test

The model runs once (inference.py --save_logits OUT/logits, which also writes the greedy transcripts to
OUT/greedy); every other decoder reads those log-probs back (inference.py --logits) and writes OUT/<decoder>/.
With --grid_alphas the grid search runs on the same log-probs first (OUT/grid/grid.json) and beam_lm uses its
best pair; --tuned_on takes the best pair of another folder's grid (say, dev's for test). inference.py's own
output goes to OUT/<step>.log. Prints one line per decoder, `LABEL DECODER: WER ...` (the line inference.py
prints), and writes OUT/summary.json: the scores of each decoder and the alpha and beta it used. Exit status 1
when some file could not be transcribed (all decoders still run), as inference.py.
"""

import argparse
import contextlib
import dataclasses
import json
import sys
from pathlib import Path

import torch

import inference
from asr.errors import ASRError, run_cli
from asr.metrics import Scores

DECODERS = ("greedy", "beam", "beam_lm")
SUMMARY_FILE = "summary.json"


def decode_and_score(
    checkpoint: Path,
    data_dir: Path,
    out: Path,
    decoders: list[str],
    lm: Path | None = None,
    alpha: float | None = None,
    beta: float | None = None,
    beam_size: int | None = None,
    grid: tuple[str, str] | None = None,
    label: str | None = None,
) -> dict:
    """Run the model once on `data_dir`, then each decoder on its log-probs; returns (and writes) the summary.
    `alpha`/`beta` None: inference.py's defaults, unless `grid` (alphas, betas as comma lists) picks them."""
    if grid is not None or "beam_lm" in decoders:
        if lm is None:
            raise ASRError("--decoders beam_lm and --grid_alphas need --lm FILE (build one: python -m asr.lm build)")
    label = label or out.name
    logits = out / "logits"
    status = _inference(out / "greedy.log", ["--data_dir", str(data_dir), "--checkpoint", str(checkpoint),
                                             "--save_logits", str(logits), "--out", str(out / "greedy")])  # fmt: skip
    summary: dict = {"checkpoint": str(checkpoint), "data": str(data_dir), "logits": str(logits), "decoders": {}}
    if grid is not None:
        flags = ["--lm", str(lm), "--grid_alphas", grid[0], "--grid_betas", grid[1], *_beam_flags(beam_size)]
        _inference(out / "grid.log", ["--logits", str(logits), "--out", str(out / "grid"), *flags])
        summary["grid"] = json.loads((out / "grid" / "grid.json").read_text())
        best = summary["grid"]["best"]
        alpha, beta = best["alpha"], best["beta"]
        print(f"{label} grid: best --alpha {alpha:g} --beta {beta:g} (WER {100 * best['wer']:.2f}%)")
    for decoder in decoders:
        flags = [] if decoder == "greedy" else ["--decoder", decoder, *_beam_flags(beam_size)]
        if decoder == "beam_lm":
            flags += ["--lm", str(lm)] + (["--alpha", str(alpha)] if alpha is not None else [])
            flags += ["--beta", str(beta)] if beta is not None else []
        if decoder != "greedy":
            args = ["--logits", str(logits), "--out", str(out / decoder), *flags]
            status = max(status, _inference(out / f"{decoder}.log", args))
        if not (out / decoder / "metrics.json").is_file():
            raise ASRError(f"{data_dir}: no references to score against — give a folder with transcriptions/")
        metrics = json.loads((out / decoder / "metrics.json").read_text())
        scores = Scores(**{f.name: metrics[f.name] for f in dataclasses.fields(Scores)})
        print(f"{label} {decoder}: {scores}")
        summary["decoders"][decoder] = scores.as_dict() | {"predictions": str(out / decoder), "flags": flags}
    summary["status"] = status
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def tuned_pair(folder: Path) -> tuple[float, float]:
    """The best (alpha, beta) of the grid that an earlier run with --grid_alphas wrote to folder/summary.json."""
    try:
        best = json.loads((folder / SUMMARY_FILE).read_text())["grid"]["best"]
    except (OSError, ValueError, KeyError):
        raise ASRError(
            f"{folder / SUMMARY_FILE}: no grid result — run decode_and_score with --grid_alphas on that folder first"
        ) from None
    return best["alpha"], best["beta"]


def _beam_flags(beam_size: int | None) -> list[str]:
    return [] if beam_size is None else ["--beam_size", str(beam_size)]


def _inference(log: Path, argv: list[str]) -> int:
    """inference.py with `argv`, in this process, its output to `log`; its exit status (1: some files failed)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f, contextlib.redirect_stdout(f), torch.inference_mode():
        return inference.main(argv)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="a train.py checkpoint (best.pt)")
    parser.add_argument("--data_dir", "--data-dir", type=Path, required=True, help="audio/ + transcriptions/")
    parser.add_argument("--out", type=Path, required=True, help="folder for logits/, <decoder>/, summary.json")
    parser.add_argument("--decoders", default="greedy,beam_lm", help="comma list of greedy, beam, beam_lm "
                        "(default: %(default)s)")  # fmt: skip
    parser.add_argument("--lm", type=Path, help="word n-gram LM (ARPA) for beam_lm and the grid")
    parser.add_argument("--alpha", type=float, help="LM weight (default: inference.py's)")
    parser.add_argument("--beta", type=float, help="word bonus (default: inference.py's)")
    parser.add_argument("--beam_size", "--beam-size", type=int, help="beam width (default: inference.py's)")
    parser.add_argument("--grid_alphas", "--grid-alphas", help="tune alpha x beta on this folder first (needs --lm)")
    parser.add_argument("--grid_betas", "--grid-betas", default="0,0.5,1,1.5,2,3", help="for --grid_alphas")
    parser.add_argument("--tuned_on", "--tuned-on", type=Path, help="use the best alpha, beta of OUT of an "
                        "earlier --grid_alphas run (e.g. dev's)")  # fmt: skip
    parser.add_argument("--label", help="what each printed line starts with (default: the --out folder's name)")
    args = parser.parse_args(argv)
    decoders = [d for d in args.decoders.split(",") if d]
    unknown = [d for d in decoders if d not in DECODERS]
    if unknown:
        raise ASRError(f"--decoders {args.decoders}: unknown {', '.join(unknown)} — choose from {', '.join(DECODERS)}")
    if args.tuned_on is not None and (args.grid_alphas or args.alpha is not None or args.beta is not None):
        raise ASRError("--tuned_on gives alpha and beta: drop --grid_alphas, --alpha and --beta")
    alpha, beta = tuned_pair(args.tuned_on) if args.tuned_on is not None else (args.alpha, args.beta)
    grid = (args.grid_alphas, args.grid_betas) if args.grid_alphas else None
    summary = decode_and_score(args.checkpoint, args.data_dir, args.out, decoders, args.lm, alpha, beta,
                               args.beam_size, grid, args.label)  # fmt: skip
    return summary["status"]


if __name__ == "__main__":
    sys.exit(run_cli(main))
