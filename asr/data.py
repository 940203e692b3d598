"""Utterances, datasets, the duration-bucketed batch sampler and batch collation.

A dataset spec is a LibriSpeech split name (`train-clean-100`), a path to a
CustomDir folder (`audio/*.{wav,flac,mp3,ogg}` + optional
`transcriptions/<UtteranceID>.txt`), or several joined with `+`. Nothing is
dropped silently: every file that cannot be used is reported by name with the
reason in a `DataReport`, and the scripts print that report. Durations come from
each folder's duration manifest (`asr.manifest`), so a warm start reads no audio.
"""

import errno
import functools
import gc
import math
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from asr.audio import AUDIO_EXTENSIONS, SAMPLE_RATE, AudioError, LogMel, load_audio, num_frames
from asr.errors import ASRError
from asr.librispeech import LIBRISPEECH_ALIASES, LIBRISPEECH_SPLITS, ensure_splits
from asr.manifest import DurationManifest
from asr.text import normalize
from asr.tokenizers import Tokenizer

if TYPE_CHECKING:
    from asr.augment import Augmenter


@dataclass(frozen=True, slots=True)  # slots: no __dict__ per record (LibriSpeech 960 h holds 281k of them)
class Utterance:
    """One recording; `text` is normalised, or None when there is no transcript."""

    id: str
    audio_path: Path
    text: str | None
    duration: float  # seconds


@dataclass
class DataReport:
    """What happened to every input file that did not become a usable utterance."""

    failed: list[str] = field(default_factory=list)  # "path: reason" for audio that cannot be read
    warnings: list[str] = field(default_factory=list)  # "path: reason" for other files that were not used
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count (filters such as max_duration)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def summary(self) -> str:
        """One line per failed file and warning, then the skip counts; empty when all is well."""
        lines = [f"  unreadable: {p}" for p in self.failed] + [f"  warning: {p}" for p in self.warnings]
        return "\n".join(lines + [f"  skipped {n}: {r}" for r, n in self.skipped.items()])


def _gc_paused(read: Callable) -> Callable:
    """Run a dataset reader with the garbage collector paused. Reading 281k utterances creates about a million
    objects that all live on; the collector's repeated full passes over them free nothing and cost about a
    quarter of a warm start (benchmarks/manifest.py)."""

    @functools.wraps(read)
    def paused(*args, **kwargs):
        enabled = gc.isenabled()
        gc.disable()
        try:
            return read(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return paused


@_gc_paused
def custom_dir_utterances(root: str | Path, report: DataReport, cache: bool = True) -> list[Utterance]:
    """Read a CustomDir folder; audio without a transcript is kept with text=None.

    The utterance id is the file name without its extension. An id with several audio files (`x.flac`,
    `x.wav`) is reported once, naming all of them, and the first readable one (in name order) is used.
    Transcripts are `<id>.txt` with any case of the extension (`x.TXT`); two of them for one id (`x.txt` and
    `x.TXT`) are a reported conflict and the audio is kept without a transcript. Durations come from the
    folder's duration manifest (`asr.manifest`; cache=False reads every header).
    """
    root = Path(root)
    audio_dir, text_dir = root / "audio", root / "transcriptions"
    if not audio_dir.is_dir():
        raise FileNotFoundError(f"{audio_dir} does not exist: a CustomDir dataset needs audio/*.wav|flac|mp3|ogg")
    for folder in (audio_dir, text_dir):
        _check_inside(folder, root)
    manifest = DurationManifest.open(root, enabled=cache)
    audio_files: dict[str, list[Path]] = {}  # id -> its audio files, in name order
    for entry in _sorted_entries(audio_dir):
        path = audio_dir / entry.name
        if path.suffix.lower() not in AUDIO_EXTENSIONS:
            report.warnings.append(f"{path}: not a supported audio file ({', '.join(AUDIO_EXTENSIONS)}), ignored")
            continue
        problem = _not_a_usable_file(entry, root)
        if problem:
            report.failed.append(f"{path}: {problem}")
            continue
        audio_files.setdefault(path.stem, []).append(path)
    transcripts = _transcript_files(text_dir, report, root)
    utterances = []
    for utt_id, paths in audio_files.items():
        path, duration = None, None
        for candidate in paths:  # the first readable one; the unreadable ones are reported as failed
            duration = _usable_duration(candidate, f"audio/{candidate.name}", manifest, report)
            if duration is not None:
                path = candidate
                break
        if len(paths) > 1:
            used = f"{path.name} is used, the others are ignored" if path else "none is readable"
            report.warnings.append(_conflict(audio_dir, utt_id, paths, "audio files", used))
        if path is None:
            continue
        text, text_paths = None, transcripts.get(utt_id, [])
        if len(text_paths) > 1:
            report.warnings.append(_conflict(text_dir, utt_id, text_paths, "transcripts", "audio kept without one"))
        elif text_paths:
            try:
                text = _read_transcript(text_paths[0]) or _empty_transcript(text_paths[0])
            except ValueError as e:
                report.warnings.append(f"{e}; audio kept without transcript")
        utterances.append(Utterance(utt_id, path, text, duration))
    for orphan in [p for utt_id, paths in transcripts.items() if utt_id not in audio_files for p in paths]:
        report.warnings.append(f"{orphan}: transcript has no audio file in {audio_dir}")
    manifest.save()
    return utterances


@_gc_paused
def librispeech_utterances(
    data_dir: str | Path, split: str, report: DataReport | None = None, cache: bool = True
) -> list[Utterance]:
    """Read an extracted `<data_dir>/LibriSpeech/<split>/<speaker>/<chapter>/` tree.

    A transcript line without its flac goes to `report.failed`; a flac without a transcript line, and a
    repeated line for the same id (the first is used), go to `report.warnings`. Durations come from the
    split's duration manifest (`asr.manifest`; cache=False reads every header).
    """
    report = report if report is not None else DataReport()
    root = Path(data_dir) / "LibriSpeech" / split
    if not root.is_dir():
        raise FileNotFoundError(f"LibriSpeech split {split!r} not found: looked in {root}")
    manifest = DurationManifest.open(root, enabled=cache)
    chapters = _chapters(root, report)
    utterances = []
    listed: dict[str, str] = {}  # utterance id -> "trans.txt:line" where it was first listed
    for chapter in chapters:
        for trans in chapter.transcripts:
            for line_no, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                utt_id, _, text = line.partition(" ")
                if utt_id in listed:
                    report.warnings.append(
                        f"{trans}:{line_no}: {utt_id} is already listed at {listed[utt_id]}, ignored"
                    )
                    continue
                listed[utt_id] = f"{trans}:{line_no}"
                name = f"{utt_id}.flac"
                if name not in chapter.flacs:
                    report.failed.append(f"{trans}:{line_no}: no audio file {name}")
                    continue
                # a str for the stat (a Path would build its string just for that), the Path for the record
                duration = _usable_duration(f"{chapter.folder}/{name}", f"{chapter.key}/{name}", manifest, report)
                text = normalize(text) if duration is not None else None
                if text:
                    utterances.append(Utterance(utt_id, chapter.folder / name, text, duration))
                elif text is not None:
                    report.warnings.append(f"{trans}:{line_no}: the transcript of {utt_id} {_NOTHING}; audio ignored")
    _report_unlisted(chapters, listed, report)
    manifest.save()
    if not utterances:
        raise FileNotFoundError(f"no utterances under {root} (expected <speaker>/<chapter>/*.trans.txt + *.flac)")
    return utterances


def _report_unlisted(chapters: list["_Chapter"], listed: dict[str, str], report: DataReport) -> None:
    """A warning for every flac that no transcript line names, in path order."""
    for chapter in chapters:
        for name in sorted(chapter.flacs):
            if name[: -len(".flac")] not in listed:
                trans = f"{chapter.key.replace('/', '-')}.trans.txt"
                known = trans in {t.name for t in chapter.transcripts}
                where = f"no line for it in {trans}" if known else f"no {trans} beside it"
                report.warnings.append(f"{chapter.folder / name}: {where}; audio ignored")


@dataclass
class _Chapter:
    """One `<speaker>/<chapter>/` folder of a LibriSpeech split, as one directory scan saw it."""

    folder: Path
    key: str  # "<speaker>/<chapter>", the folder relative to the split
    transcripts: list[Path]  # its *.trans.txt files, in name order
    flacs: set[str]  # the names of its *.flac files


def _chapters(root: Path, report: DataReport) -> list[_Chapter]:
    """Every `<speaker>/<chapter>/` folder under a split, in name order, from one `os.scandir` per folder
    (281k files listed in about half a second, where `glob` and an `exists()` per file took several). Entries
    that are not regular files, or links out of the split, go to report.failed."""
    chapters = []
    for speaker in _sorted_entries(root):
        if not speaker.is_dir():
            continue
        for chapter in _sorted_entries(Path(speaker.path)):
            if not chapter.is_dir():
                continue
            folder, transcripts, flacs = root / speaker.name / chapter.name, [], set()
            with os.scandir(chapter.path) as entries:
                for entry in entries:
                    if not entry.name.endswith((".trans.txt", ".flac")):
                        continue
                    problem = _not_a_usable_file(entry, root)  # no system call for a regular file
                    if problem:
                        report.failed.append(f"{folder / entry.name}: {problem}")
                    elif entry.name.endswith(".trans.txt"):
                        transcripts.append(folder / entry.name)
                    else:
                        flacs.add(entry.name)
            chapters.append(_Chapter(folder, f"{speaker.name}/{chapter.name}", sorted(transcripts), flacs))
    return chapters


def _sorted_entries(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted(it, key=lambda e: e.name)


def load_dataset(spec: str, librispeech_dir: str | Path, report: DataReport) -> list[Utterance]:
    """Resolve a dataset spec (`name`, `path`, or `a+b+c`) to utterances sorted by id. Reads the disk only:
    LibriSpeech splits missing under `librispeech_dir` are an error (scripts call `ensure_splits` first)."""
    ensure_splits(spec, librispeech_dir, download=False)  # a clear message naming the missing split, never a download
    utterances: dict[str, Utterance] = {}
    for part in spec.split("+"):
        for name in LIBRISPEECH_ALIASES.get(part, (part,)):
            if name in LIBRISPEECH_SPLITS:
                found = librispeech_utterances(librispeech_dir, name, report)
            elif Path(name).is_dir():
                found = custom_dir_utterances(name, report)
            else:
                valid = ", ".join((*LIBRISPEECH_SPLITS, *LIBRISPEECH_ALIASES))
                raise ValueError(f"unknown dataset {name!r}: not a folder, and not one of {valid}")
            for utt in found:
                if utt.id in utterances:
                    raise ValueError(
                        f"utterance id {utt.id!r} appears twice ({utterances[utt.id].audio_path}, "
                        f"{utt.audio_path}); ids must be unique across combined datasets"
                    )
                utterances[utt.id] = utt
    return sorted(utterances.values(), key=lambda u: u.id)


def spare_cpu_workers(limit: int = 8) -> int:
    """DataLoader workers for a machine: one per CPU core this process may use, less the one that runs the main
    loop, at most `limit` (more rarely help: a worker loads and featurises a batch in a fraction of a step)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(limit, max(0, cores - 1))


def uses_librispeech(spec: str) -> bool:
    """True when any part of the spec is a LibriSpeech split name (train.py then uses the LibriSpeech recipe)."""
    return any(p in LIBRISPEECH_SPLITS or p in LIBRISPEECH_ALIASES for p in spec.split("+"))


def filter_for_training(
    utterances: list[Utterance],
    tokenizer: Tokenizer,
    output_frames: Callable[[int], int],
    max_duration: float,
    report: DataReport,
) -> list[Utterance]:
    """Drop (and count) utterances CTC cannot train on: no transcript, too long, or targets longer than the output.

    `output_frames(num_input_frames) -> int` is the model's exact output length.
    """
    kept = []
    for utt in utterances:
        if not utt.text:  # None, or "" from a caller that built its own Utterance
            report.skip("no transcript")
        elif utt.duration > max_duration:
            report.skip(f"longer than max_duration={max_duration:g} s")
        elif ctc_min_frames(tokenizer.encode(utt.text)) > output_frames(num_frames(round(utt.duration * SAMPLE_RATE))):
            report.skip("transcript too long for the model's output frames (CTC cannot align it)")
        else:
            kept.append(utt)
    return kept


def ctc_min_frames(target: list[int]) -> int:
    """Frames CTC needs for `target`: one per token plus a blank between each repeated pair."""
    return len(target) + sum(a == b for a, b in zip(target, target[1:], strict=False))


class SpeechDataset:  # not a torch Dataset subclass: listing a folder (inference.py --onnx) imports no torch
    """Utterance index -> dict(features (T, n_mels), target ids, id): a map-style dataset for torch's DataLoader.

    Augmentation randomness comes from `np.random.default_rng([seed, epoch, index])`, so
    a resumed run reproduces exactly the augmentations of an uninterrupted one. Set
    `.epoch` before creating each epoch's DataLoader iterator (workers get a fresh copy).
    """

    def __init__(
        self,
        utterances: list[Utterance],
        tokenizer: Tokenizer,
        n_mels: int,
        augmenter: "Augmenter | None" = None,
        seed: int = 0,
        featurize: LogMel | None = None,  # default: LogMel(n_mels); a streaming model's: asr.model.feature_extractor
    ) -> None:
        self.utterances = utterances
        self.tokenizer = tokenizer
        self.featurize = featurize if featurize is not None else LogMel(n_mels)
        self.augmenter = augmenter
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> dict:
        import torch

        utt = self.utterances[index]
        try:
            audio = load_audio(utt.audio_path)
        except AudioError as e:
            return {"id": utt.id, "error": str(e)}  # collate drops it and the caller reports it
        if self.augmenter is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            audio = self.augmenter.wave(audio, rng)
        features = self.featurize(torch.from_numpy(audio))  # (T, n_mels)
        if self.augmenter is not None:
            features = self.augmenter.spec(features, rng)
        target = self.tokenizer.encode(utt.text) if utt.text is not None else []
        return {"id": utt.id, "features": features, "target": torch.tensor(target, dtype=torch.long)}


def collate(items: list[dict]) -> dict:
    """Pad a list of dataset items into a batch; failed items are listed in `errors`.

    features (B, T_max, n_mels) zero-padded, feature_lengths (B,), targets (B, S_max), target_lengths (B,).
    """
    import torch

    good = [it for it in items if "error" not in it]
    batch = {"errors": [it["error"] for it in items if "error" in it], "ids": [it["id"] for it in good]}
    if not good:
        return batch | {"features": None}
    lengths = torch.tensor([it["features"].shape[0] for it in good])
    target_lengths = torch.tensor([len(it["target"]) for it in good])
    features = torch.zeros(len(good), int(lengths.max()), good[0]["features"].shape[1])
    targets = torch.zeros(len(good), max(1, int(target_lengths.max())), dtype=torch.long)
    for i, it in enumerate(good):
        features[i, : lengths[i]] = it["features"]
        targets[i, : target_lengths[i]] = it["target"]
    batch |= {"features": features, "feature_lengths": lengths, "targets": targets, "target_lengths": target_lengths}
    return batch


class BucketBatchSampler:
    """Batches of similar-length utterances holding at most `batch_seconds` of audio each (a DataLoader's
    batch_sampler).

    Epoch 0 with `sortagrad` runs shortest-first (SortaGrad: easy short utterances
    first stabilise early CTC training); later epochs sort by jittered duration, so
    batch composition varies, then shuffle the batch order. Everything is a pure
    function of (seed, epoch), and `set_epoch(epoch, start)` resumes mid-epoch.
    Under DDP every process builds the same global list and iterates its own share
    (`rank_batches`): each `world`-th batch, all shares the same length.
    """

    def __init__(
        self,
        durations: list[float],
        batch_seconds: float,
        seed: int = 0,
        sortagrad: bool = True,
        rank: int = 0,
        world: int = 1,
    ):
        if batch_seconds <= 0:
            raise ValueError(f"batch_seconds must be positive, got {batch_seconds}")
        self.durations = np.asarray(durations, dtype=np.float64)
        self.batch_seconds = batch_seconds
        self.seed = seed
        self.sortagrad = sortagrad
        self.rank, self.world = rank, world
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch to iterate and how many of its batches to skip (resume)."""
        self.epoch, self.start = epoch, start

    def batches(self, epoch: int) -> list[list[int]]:
        """All batches of `epoch`, in order."""
        rng = np.random.default_rng([self.seed, epoch])
        if epoch == 0 and self.sortagrad:
            order = np.argsort(self.durations, kind="stable")
        else:
            jitter = rng.uniform(0.95, 1.05, size=len(self.durations))
            order = np.argsort(self.durations * jitter, kind="stable")
        batches, current, seconds = [], [], 0.0
        for i in order.tolist():
            if current and seconds + self.durations[i] > self.batch_seconds:
                batches.append(current)
                current, seconds = [], 0.0
            current.append(i)
            seconds += self.durations[i]
        if current:
            batches.append(current)
        if not (epoch == 0 and self.sortagrad):
            batches = [batches[j] for j in rng.permutation(len(batches))]
        return batches

    def rank_batches(self, epoch: int) -> list[list[int]]:
        """This process's batches of `epoch`: global batches rank, rank + world, ... The list is first
        extended by wrapping round to a multiple of `world`, because DDP hangs when processes take
        different numbers of steps; so up to world - 1 batches run twice per epoch."""
        batches = self.batches(epoch)
        per_rank = -(-len(batches) // self.world)  # ceil
        batches = (batches * self.world)[: per_rank * self.world]
        return batches[self.rank :: self.world]

    def __len__(self) -> int:
        return len(self.rank_batches(self.epoch)) - self.start

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.rank_batches(self.epoch)[self.start :]

    def padding_waste(self, epoch: int = 1) -> float:
        """Share of padded frames in the batches of `epoch` (0 = no padding)."""
        real = padded = 0.0
        for batch in self.batches(epoch):
            d = self.durations[batch]
            real, padded = real + d.sum(), padded + d.max() * len(batch)
        return 1.0 - real / padded if padded else 0.0


def _usable_duration(path: str | Path, key: str, manifest: DurationManifest, report: DataReport) -> float | None:
    """Seconds of audio in `path` (`key` relative to the manifest's folder), or None after reporting why not."""
    try:
        duration = manifest.duration(path, key)
    except AudioError as e:
        report.failed.append(str(e))
        return None
    except OSError as e:  # the file vanished between the listing and its stat
        report.failed.append(f"{path}: cannot read audio header ({e.strerror or e})")
        return None
    if duration <= 0 or math.isnan(duration):
        report.failed.append(f"{path}: file has no samples")
        return None
    return duration


def read_transcripts(folder: str | Path, report: DataReport, references: bool = False) -> dict[str, str]:
    """All `<id>.txt` files (any case of `.txt`) of a folder -> {id: normalised text}.

    Unreadable files, ids with two transcripts (`x.txt` and `x.TXT`), and entries that are not regular files or
    are links resolving outside `folder` go to report.failed. With `references`, a text that normalises to
    nothing is left out and reported in report.warnings (an empty prediction is a valid one)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of <UtteranceID>.txt files")
    problems = DataReport()
    texts = {}
    for utt_id, paths in _transcript_files(folder, problems, folder).items():
        if len(paths) > 1:
            report.failed.append(_conflict(folder, utt_id, paths, "transcripts", "none is used"))
            continue
        try:
            texts[utt_id] = _read_transcript(paths[0])
        except ValueError as e:
            report.failed.append(str(e))
            continue
        if references and not texts[utt_id]:
            del texts[utt_id]
            report.warnings.append(f"{paths[0]}: the reference {_NOTHING}; not scored")
    report.failed.extend(problems.warnings)
    return texts


def _transcript_files(folder: Path, report: DataReport, root: Path) -> dict[str, list[Path]]:
    """{id: its `<id>.txt` files, any case of the extension, in name order}; {} when the folder is missing.
    A `.txt` entry that is not a regular file, or a link resolving outside `root`, goes to report.warnings."""
    found: dict[str, list[Path]] = {}
    if folder.is_dir():
        for entry in _sorted_entries(folder):
            path = folder / entry.name
            if path.suffix.lower() != ".txt":
                continue
            problem = _not_a_usable_file(entry, root)
            if problem:
                report.warnings.append(f"{path}: {problem}; not read")
            else:
                found.setdefault(path.stem, []).append(path)
    return found


_NOTHING = "normalises to nothing (no letter a-z, digit or apostrophe: e.g. Cyrillic, Chinese, emoji, punctuation)"


def _empty_transcript(path: Path) -> None:
    """The text of a transcript that normalises to "": None, after saying why (ValueError with the file name)."""
    raw = path.read_text(encoding="utf-8").strip()
    what = "is empty" if not raw else f"{_NOTHING}: {raw[:40]!r}"
    raise ValueError(f"{path}: transcript {what}")


def _check_inside(folder: Path, root: Path) -> None:
    """Refuse a dataset subfolder that is a link to somewhere outside the dataset folder."""
    real = os.path.realpath(folder)
    if not Path(real).is_relative_to(os.path.realpath(root)):
        raise ASRError(
            f"{folder}: a link to {real}, outside the dataset folder {root} — copy the files into the folder"
        )


def _not_a_usable_file(entry: os.DirEntry, root: Path) -> str | None:
    """None for a regular file (or a link to one inside `root`); else what the entry really is."""
    if entry.is_file(follow_symlinks=False):
        return None  # the common case, answered from the directory listing without a system call
    try:
        if entry.is_symlink():
            target = os.readlink(entry.path)
            try:
                mode = os.stat(entry.path).st_mode
            except OSError as e:
                if e.errno == errno.ELOOP:
                    return f"a symbolic link loop (-> {target}), ignored"
                if e.errno == errno.ENOENT:
                    return f"a dangling link to {target} (no such file), ignored"
                return f"a link to {target} that cannot be followed ({e.strerror}), ignored"
            real = os.path.realpath(entry.path)
            if not Path(real).is_relative_to(os.path.realpath(root)):
                return f"a link to {real}, outside the dataset folder {root}; refused (copy the file into the folder)"
        else:
            mode = entry.stat(follow_symlinks=False).st_mode
    except OSError as e:
        return f"cannot be examined ({e.strerror or e}), ignored"
    if stat.S_ISREG(mode):
        return None
    kinds = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a named pipe (FIFO)", stat.S_ISSOCK: "a socket",
             stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}  # fmt: skip
    kind = next((name for test, name in kinds.items() if test(mode)), "not a regular file")
    return f"{kind}, not a file; ignored"


def _conflict(folder: Path, utt_id: str, paths: list[Path], kind: str, outcome: str) -> str:
    """The report line for an utterance id with several files of one kind."""
    names = ", ".join(p.name for p in paths)
    return f"{folder}: utterance id {utt_id!r} has {len(paths)} {kind} ({names}); {outcome}"


def _read_transcript(path: Path) -> str:
    try:
        return normalize(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: transcript is not UTF-8 ({e.reason} at byte {e.start})") from None
