"""The real yardstick: every real recording in ../shared/data/speech as one evaluation set, scored per source.

Synthetic test sets say how well a model learned synthetic speech; this set says how much of it transfers to
real voices. It gathers every recording of every source folder (LJSpeech, AN4, the LibriSpeech fixtures,
pocketsphinx and LibriVox, misc: each folder's meta.json lists its utterances, origin and licence) into one
CustomDir folder, and scores a checkpoint on it with inference.py: WER and CER per source and overall, with
greedy decoding and with beam search + a word 3-gram LM.

    python -m benchmarks.yardstick assemble --out yardstick
    python -m benchmarks.yardstick score --checkpoint runs/X/best.pt --yardstick yardstick --out preds/yard-X \\
        --lm_from corpus            # a 3-gram of corpus/train's transcripts (python -m asr.lm build); or --lm FILE

`assemble` writes yardstick/audio/<source>--<utt id>.<ext> (hard links to the shared files, or copies: the
readers refuse symbolic links that leave a dataset folder),
yardstick/transcriptions/<same id>.txt (the meta.json text) and yardstick/sources.json (per source:
utterances, speakers, seconds, words, origin, licence). `score` writes OUT/greedy/, OUT/beam_lm/ (inference.py's
predictions and metrics.json), OUT/logits/ (benchmarks/decode_and_score.py: the model runs once; both decoders
read its outputs), OUT/summary.json and
OUT/yardstick.json, and prints a Markdown table. The LM should come from text that holds none of the
yardstick's sentences: the synthetic corpus's training transcripts (a book) qualify.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from asr.data import DataReport, read_transcripts
from asr.errors import ASRError, run_cli
from asr.metrics import Scores, score
from asr.text import normalize
from benchmarks.decode_and_score import decode_and_score

REPO = Path(__file__).resolve().parents[1]

SPEECH = REPO.parent / "shared" / "data" / "speech"
SOURCES_FILE = "sources.json"
SEPARATOR = "--"  # utterance id = <source>--<the source's own utterance id>
DECODERS = ("greedy", "beam_lm")


def _place(source: Path, target: Path) -> None:
    """A hard link to source, or a copy where the two are on different file systems (no symbolic link: the dataset
    readers refuse links that leave the dataset folder)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def assemble(speech: Path, out: Path, sources: list[str] | None = None) -> dict:
    """Link every utterance of every (or the named) source folder of `speech` into the CustomDir `out`.

    Returns (and writes to out/sources.json) {source: {utterances, speakers, seconds, words, origin, license}}."""
    found = sorted(p.parent.name for p in speech.glob("*/meta.json"))
    if not found:
        raise ASRError(f"{speech}: no <source>/meta.json folders — pass --speech ../shared/data/speech")
    unknown = sorted(set(sources or []) - set(found))
    if unknown:
        raise ASRError(f"{unknown}: not source folders of {speech} — use some of {found}")
    if out.exists() and any(out.iterdir()) and not (out / SOURCES_FILE).is_file():
        raise ASRError(f"{out}: not empty and not a yardstick (no {SOURCES_FILE}) — pick an empty or new --out")
    for sub in ("audio", "transcriptions"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True)
    record = {}
    for source in sources or found:
        folder = (speech / source).resolve()
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        utterances = meta["utterances"]
        for u in utterances:
            audio = folder / "audio" / u["file"]
            if not audio.is_file():
                raise ASRError(f"{audio}: listed in {folder / 'meta.json'} but missing — restore ../shared")
            utt_id = f"{source}{SEPARATOR}{u['utt_id']}"
            _place(audio, out / "audio" / f"{utt_id}{audio.suffix}")
            (out / "transcriptions" / f"{utt_id}.txt").write_text(u["text"] + "\n", encoding="utf-8")
        record[source] = {
            "utterances": len(utterances),
            "speakers": len({u["speaker"] for u in utterances}),
            "seconds": round(sum(u["seconds"] for u in utterances), 3),
            "words": sum(len(normalize(u["text"]).split()) for u in utterances),
            "origin": meta["meta"].get("origin", ""),
            "license": meta["meta"].get("license", ""),
        }
    (out / SOURCES_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return record


def build_lm(corpus: Path, out: Path) -> Path:
    """A word 3-gram ARPA of corpus/train's transcripts (one sentence a line), by `python -m asr.lm build`."""
    texts = sorted((corpus / "train" / "transcriptions").glob("*.txt"))
    if not texts:
        raise ASRError(f"{corpus / 'train' / 'transcriptions'}: no transcripts — --lm_from takes a synth_corpus folder")
    out.mkdir(parents=True, exist_ok=True)
    lines = out / "lm-train.txt"
    lines.write_text("".join(p.read_text(encoding="utf-8") for p in texts), encoding="utf-8")
    arpa = out / "lm-train3.arpa"
    _python(["-m", "asr.lm", "build", "--text", str(lines), "--split", "lines", "--order", "3", "--out", str(arpa)])
    return arpa


def _python(args: list[str]) -> None:
    """Run `python ARGS` in the repository root; its output goes to ours; a failure names the command."""
    result = subprocess.run([sys.executable, *args], cwd=REPO)
    if result.returncode != 0:
        raise ASRError(f"python {' '.join(args)}: exit status {result.returncode} — see its output above")


def per_source(references: dict[str, str], predictions: dict[str, str]) -> dict[str, Scores]:
    """Scores of each source (the id's prefix) and of all of them ("overall"); a missing prediction is empty."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for utt_id, reference in sorted(references.items()):
        pair = (reference, predictions.get(utt_id, ""))
        groups.setdefault(utt_id.split(SEPARATOR, 1)[0], []).append(pair)
        groups.setdefault("overall", []).append(pair)
    return {source: score(pairs) for source, pairs in groups.items()}


def table(results: dict[str, dict[str, Scores]]) -> str:
    """A Markdown table: one row per source (overall last), WER and CER % of each decoder."""
    decoders = list(results)
    header = "| source | utts | words | " + " | ".join(f"{d} WER % | {d} CER %" for d in decoders) + " |"
    lines = [header, "|" + "---|" * (3 + 2 * len(decoders))]
    sources = [s for s in next(iter(results.values())) if s != "overall"] + ["overall"]
    for source in sources:
        first = results[decoders[0]][source]
        cells = [f"{100 * results[d][source].wer:.1f} | {100 * results[d][source].cer:.1f}" for d in decoders]
        lines.append(f"| {source} | {first.utterances} | {first.words} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def score_checkpoint(
    checkpoint: Path, yardstick: Path, out: Path, lm: Path | None, alpha: float, beta: float, beam_size: int
) -> dict:
    """Transcribe the yardstick with `checkpoint` (inference.py), decode greedy and, with an LM, beam + LM."""
    if not (yardstick / SOURCES_FILE).is_file():
        raise ASRError(f"{yardstick}: no {SOURCES_FILE} — run `python -m benchmarks.yardstick assemble` first")
    decoders = ["greedy"] + (["beam_lm"] if lm is not None else [])
    if decode_and_score(checkpoint, yardstick, out, decoders, lm, alpha, beta, beam_size, label="yardstick")["status"]:
        raise ASRError(f"{yardstick}: some recordings could not be transcribed — see {out / 'greedy.log'}")
    report = DataReport()
    references = read_transcripts(yardstick / "transcriptions", report)
    results = {}
    for decoder in decoders:
        predictions = read_transcripts(out / decoder, report)
        results[decoder] = per_source(references, predictions)
    if report.failed:
        raise ASRError(f"{out}: unreadable transcripts: {report.failed[0]} — rerun the scoring")
    record = {
        "checkpoint": str(checkpoint),
        "yardstick": str(yardstick),
        "lm": str(lm) if lm else None,
        "alpha": alpha,
        "beta": beta,
        "beam_size": beam_size,
        "sources": json.loads((yardstick / SOURCES_FILE).read_text(encoding="utf-8")),
        "scores": {d: {s: r.as_dict() for s, r in res.items()} for d, res in results.items()},
    }
    (out / "yardstick.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"\n{checkpoint} on the real yardstick ({yardstick}):\n{table(results)}")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("assemble", help="hard-link (or copy) every real recording into one CustomDir folder")
    build.add_argument("--out", type=Path, default=Path("yardstick"), help="folder to write (default: %(default)s)")
    build.add_argument("--speech", type=Path, default=SPEECH, help="the shared recordings (default: %(default)s)")
    build.add_argument("--sources", nargs="+", help="only these source folders (default: all)")
    run = commands.add_parser("score", help="WER/CER of a checkpoint on the yardstick, per source")
    run.add_argument("--checkpoint", type=Path, required=True, help="a train.py checkpoint (best.pt)")
    run.add_argument("--yardstick", type=Path, default=Path("yardstick"), help="the assembled folder")
    run.add_argument("--out", type=Path, required=True, help="folder for predictions, logits and yardstick.json")
    lm = run.add_mutually_exclusive_group()
    lm.add_argument("--lm", type=Path, help="word n-gram LM (ARPA) for beam + LM decoding")
    lm.add_argument("--lm_from", "--lm-from", type=Path, help="build a 3-gram of this synth_corpus's train split")
    run.add_argument("--alpha", type=float, default=0.5, help="LM weight (default: %(default)s)")
    run.add_argument("--beta", type=float, default=1.0, help="word bonus (default: %(default)s)")
    run.add_argument("--beam_size", "--beam-size", type=int, default=32, help="beam width (default: %(default)s)")
    args = parser.parse_args(argv)

    if args.command == "assemble":
        record = assemble(args.speech, args.out, args.sources)
        for source, info in record.items():
            print(f"{source:<13} {info['utterances']:>4} utterances {info['speakers']:>3} speakers "
                  f"{info['seconds']:>7.1f} s {info['words']:>5} words")  # fmt: skip
        total = sum(i["utterances"] for i in record.values()), sum(i["seconds"] for i in record.values())
        print(f"wrote {args.out}: {total[0]} utterances, {total[1]:.1f} s of real speech")
        return 0
    if not args.checkpoint.is_file():
        raise ASRError(f"{args.checkpoint}: no such checkpoint — pass a train.py best.pt")
    lm_path = args.lm
    if args.lm_from is not None:
        lm_path = build_lm(args.lm_from, args.out)
    score_checkpoint(args.checkpoint, args.yardstick, args.out, lm_path, args.alpha, args.beta, args.beam_size)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
