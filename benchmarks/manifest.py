"""Start-up cost of listing a LibriSpeech-sized split: audio headers vs the duration manifest (asr/manifest.py).

    python -m benchmarks.manifest                          # 281,241 files (train-960), 5,625 chapters
    python -m benchmarks.manifest --utterances 28539       # train-clean-100's count

Builds a LibriSpeech tree `LibriSpeech/<split>/<speaker>/<chapter>/` with `--utterances` flac files, 50 per
chapter, and one `<speaker>-<chapter>.trans.txt` per chapter holding a sentence of the book per line
(uppercase, as LibriSpeech's). The flac files are hard links to copies of one real 16 kHz recording (a shared
fixture; a copy per 50,000 links): every file is a genuine FLAC whose header must be parsed, but they are only
a few inodes, so the header reads always hit the page cache; real files spread over 281k inodes on a cold
cache make the header path slower, not the manifest path (it reads no audio). Then it times
`asr.data.librispeech_utterances` on that split:

- headers: `cache=False`, one `soundfile.info` per file (the behaviour before the manifest);
- cold: no manifest yet: every header read, the manifest written;
- warm: the manifest valid: one `os.scandir` per folder and one `stat` per file, no audio header read;
and, inside warm, the listing alone (`_chapters`) and the manifest load alone (`DurationManifest.open`).

Wall and process CPU seconds are printed for each; on a machine shared with other jobs the CPU time is the
steadier figure. The tree is deleted at the end unless `--keep DIR` (reused when it exists).
"""

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from asr import data
from asr.data import DataReport, librispeech_utterances
from asr.manifest import MANIFEST_NAME, DurationManifest

ROOT = Path(__file__).resolve().parents[1]

SHARED = ROOT.parent / "shared" / "data"
CLIP = SHARED / "speech" / "librispeech" / "audio" / "1034-121119-0046.flac"
TEXT = SHARED / "text" / "pride_and_prejudice.txt"
SPLIT = "train-bench"
PER_CHAPTER = 50  # about LibriSpeech's average (train-clean-100: 28,539 utterances in 585 chapters)
CHAPTERS_PER_SPEAKER = 2
LINKS_PER_COPY = 50_000


def build_tree(data_dir: Path, utterances: int, seed: int = 0) -> Path:
    """The LibriSpeech-like split under data_dir; returns its folder."""
    from asr.lm import read_sentences

    sentences = [s.upper() for s in read_sentences(TEXT) if len(s.split()) >= 5]
    rng = random.Random(seed)
    split = data_dir / "LibriSpeech" / SPLIT
    data_dir.mkdir(parents=True, exist_ok=True)
    made = 0
    chapter_no = 0
    while made < utterances:
        speaker, chapter = 100 + chapter_no // CHAPTERS_PER_SPEAKER, 1000 + chapter_no
        folder = split / str(speaker) / str(chapter)
        folder.mkdir(parents=True)
        lines = []
        for utt in range(min(PER_CHAPTER, utterances - made)):
            utt_id = f"{speaker}-{chapter}-{utt:04d}"
            if (made + utt) % LINKS_PER_COPY == 0:  # a file system allows ~65,000 links to one file
                clip = data_dir / f"clip-{(made + utt) // LINKS_PER_COPY}.flac"
                shutil.copy(CLIP, clip)
            (folder / f"{utt_id}.flac").hardlink_to(clip)
            lines.append(f"{utt_id} {rng.choice(sentences)}")
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
        made += len(lines)
        chapter_no += 1
    print(f"built {split}: {made} flac files in {chapter_no} chapters of {-(-chapter_no // CHAPTERS_PER_SPEAKER)} "
          f"speakers (hard links to copies of {CLIP.name})")  # fmt: skip
    return split


def timed(label: str, fn) -> object:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"| {label} | {wall:.2f} | {cpu:.2f} |", flush=True)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=281_241, help="flac files (default: train-960's count)")
    parser.add_argument("--keep", type=Path, help="build the tree here and keep it (reused when it exists)")
    parser.add_argument("--warm-repeats", type=int, default=3, help="times the warm start is measured")
    args = parser.parse_args(argv)
    if not CLIP.is_file() or not TEXT.is_file():
        sys.exit(f"needs {CLIP} and {TEXT} (../shared beside the repository)")
    data_dir = args.keep or Path(tempfile.mkdtemp(prefix="manifest-bench-"))
    try:
        split = data_dir / "LibriSpeech" / SPLIT
        if not split.is_dir():
            tic = time.perf_counter()
            build_tree(data_dir, args.utterances)
            print(f"(building the tree took {time.perf_counter() - tic:.0f} s)")
        (split / MANIFEST_NAME).unlink(missing_ok=True)
        print(f"\n{args.utterances} utterances; seconds\n\n| start-up | wall | CPU |\n|---|---:|---:|")
        reference = timed("headers (no manifest, `cache=False`)", lambda: librispeech_utterances(
            data_dir, SPLIT, DataReport(), cache=False))  # fmt: skip
        cold = timed("cold (headers read, manifest written)", lambda: librispeech_utterances(data_dir, SPLIT))
        for _ in range(args.warm_repeats):
            warm = timed("warm (manifest valid)", lambda: librispeech_utterances(data_dir, SPLIT, DataReport()))
        timed("  of which: listing (`_chapters`)", lambda: data._chapters(split, data.DataReport()))
        timed("  of which: manifest load (`DurationManifest.open`)", lambda: DurationManifest.open(split))
        assert reference == cold == warm, "the manifest changed the utterances"
        size = (split / MANIFEST_NAME).stat().st_size
        print(f"\nmanifest {split / MANIFEST_NAME}: {size / 2**20:.1f} MiB; identical utterances from all three")
    finally:
        if args.keep is None:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
