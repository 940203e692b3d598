"""Train/test CustomDir folders of the real recordings in ../shared/data/speech, for fine-tuning experiments.

    python -m benchmarks.real_splits --out real

writes (as hard links, or copies where the file system has none; the dataset readers refuse symbolic
links that leave the dataset folder):
    real/an4-train, real/an4-test      AN4's own split (meta.json): 30 / 10 utterances of spoken words and letters
    real/lj-train, real/lj-test        LJSpeech, one reader: the first 24 / the last 10 utterances by id
and prints each folder's utterance, word and second counts (to report beside every WER).
"""

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"


def _link(utterances: list[dict], source: Path, folder: Path) -> tuple[int, int, float]:
    """folder/audio/<file> and folder/transcriptions/<id>.txt as hard links to (or copies of) `source`;
    (utterances, words, seconds)."""
    for sub in ("audio", "transcriptions"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    words = 0
    for u in utterances:
        for sub, name in (("audio", u["file"]), ("transcriptions", f"{u['utt_id']}.txt")):
            target = folder / sub / name
            if not target.exists():  # a hard link or a copy: the readers refuse links that leave the dataset folder
                try:
                    os.link(source / sub / name, target)
                except OSError:
                    shutil.copy2(source / sub / name, target)
        words += len((source / "transcriptions" / f"{u['utt_id']}.txt").read_text().split())
    return len(utterances), words, sum(u["seconds"] for u in utterances)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("real"), help="folder for the splits (default: %(default)s)")
    parser.add_argument("--speech", type=Path, default=SPEECH, help="the shared recordings (default: %(default)s)")
    args = parser.parse_args(argv)
    if not (args.speech / "an4" / "meta.json").is_file():
        sys.exit(f"no {args.speech}/an4/meta.json: pass --speech DIR (../shared/data/speech)")
    an4 = json.loads((args.speech / "an4" / "meta.json").read_text())["utterances"]
    lj = sorted(
        json.loads((args.speech / "ljspeech" / "meta.json").read_text())["utterances"], key=lambda u: u["utt_id"]
    )
    splits = {
        "an4-train": ("an4", [u for u in an4 if u["split"] == "AN4-train"]),
        "an4-test": ("an4", [u for u in an4 if u["split"] == "AN4-test"]),
        "lj-train": ("ljspeech", lj[:24]),
        "lj-test": ("ljspeech", lj[24:]),
    }
    for name, (corpus, utterances) in splits.items():
        n, words, seconds = _link(utterances, args.speech / corpus, args.out / name)
        print(f"{args.out / name}: {n} utterances, {words} words, {seconds:.1f} s")


if __name__ == "__main__":
    main()
