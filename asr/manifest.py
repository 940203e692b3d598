"""The duration manifest: every audio file's duration, cached on disk so a start reads no audio headers.

Reading one header per file (`soundfile.info`) costs ~32 s for LibriSpeech's 281k training files even with
the files in the page cache, and train.py, --resume and inference.py all need the durations before the first
batch. `DurationManifest` keeps them in `<dataset folder>/.asr-durations.json`: per file (path relative to the
folder) its size, its modification time in nanoseconds and its duration. A cached duration is used while the
file's size and mtime (one `stat` per file, no audio read) are unchanged; a changed or new file's
header is read again, an entry whose file is no longer looked up is dropped, and a file whose header cannot
be read is never cached (so it is reported exactly as without a manifest).

Where it lives: in the dataset folder when that folder is writable (a folder whose permission bits say
read-only counts as not writable, even for root), else in `$XDG_CACHE_HOME/asr-durations/` (default
`~/.cache/asr-durations/`) under a name made from the folder's absolute path. Of the two files, the newer one
is read. It is written atomically (a temporary file, then a rename), only when something changed. A manifest
that cannot be parsed is rebuilt, with a warning; one that cannot be written is not an error: the run goes on
and says so once.
"""

import hashlib
import json
import os
import stat
import sys
from pathlib import Path

from asr.atomic import atomic_write_text
from asr.audio import duration_of

MANIFEST_NAME = ".asr-durations.json"
FORMAT = 1  # bumped when the layout of the file changes; another format is rebuilt silently
_COLUMNS = ("files", "sizes", "mtimes", "seconds")  # relative path, bytes, st_mtime_ns, duration in seconds
_warned_unwritable = False  # one warning per process is enough


def user_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/asr-durations`, or `~/.cache/asr-durations` when XDG_CACHE_HOME is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "asr-durations"


class DurationManifest:
    """Durations of the audio files under one folder, validated by (size, mtime_ns).

    Use: `manifest = DurationManifest.open(root)`, then `manifest.duration(path, key)` for every file (a cached
    value, or the header read now), then `manifest.save()`. `enabled=False` caches nothing.

    On disk and in memory the entries are four parallel lists (keys, sizes, mtimes, seconds) rather than a list
    per file: 281k small lists would cost the garbage collector more than the whole lookup.
    """

    def __init__(self, root: Path, columns: dict[str, list] | None = None, enabled: bool = True) -> None:
        self.root = root
        self.enabled = enabled
        columns = columns or {c: [] for c in _COLUMNS}
        self._keys, self._sizes, self._mtimes, self._seconds = (columns[c] for c in _COLUMNS)
        self._index = {key: i for i, key in enumerate(self._keys)}  # relative path -> position in the columns
        self._used: dict[str, int] = {}  # files of this run whose cached entry is valid -> position
        self._fresh: dict[str, tuple[int, int, float]] = {}  # files of this run whose header was read
        self.header_reads = 0

    @classmethod
    def open(cls, root: str | Path, enabled: bool = True) -> "DurationManifest":
        """The manifest of `root` as cached on disk (the newer of the folder's and the user cache's copy)."""
        root = Path(root).absolute()
        if not enabled:
            return cls(root, enabled=False)
        candidates = [p for p in _locations(root) if p.is_file()]
        newest = max(candidates, key=lambda p: p.stat().st_mtime_ns, default=None)
        return cls(root, _read(newest) if newest else None)

    def duration(self, path: str | Path, key: str) -> float:
        """Seconds of audio in `path`, whose path relative to root is `key` ("audio/x.flac"): the cached value
        while the file's size and mtime are unchanged, else its header's. Raises AudioError (naming the file)
        when the header cannot be read, OSError when the file cannot be stat'ed."""
        if not self.enabled:
            return duration_of(path)
        st = os.stat(path)
        i = self._index.get(key)
        if i is not None and self._sizes[i] == st.st_size and self._mtimes[i] == st.st_mtime_ns:
            self._used[key] = i
            return self._seconds[i]
        self.header_reads += 1
        seconds = duration_of(path)
        if seconds > 0:  # an empty file is reported by the caller every time, like an unreadable one
            self._fresh[key] = (st.st_size, st.st_mtime_ns, seconds)
        return seconds

    def save(self) -> Path | None:
        """Write the entries of this run when they differ from the file's (a new, changed or dropped file).
        Returns where it wrote, or None (nothing changed, or no place was writable: warned once)."""
        if not self.enabled or (not self._fresh and len(self._used) == len(self._keys)):
            return None
        used = sorted(self._used.items())
        keys = [k for k, _ in used] + list(self._fresh)
        sizes = [self._sizes[i] for _, i in used] + [e[0] for e in self._fresh.values()]
        mtimes = [self._mtimes[i] for _, i in used] + [e[1] for e in self._fresh.values()]
        seconds = [self._seconds[i] for _, i in used] + [e[2] for e in self._fresh.values()]
        columns = dict(zip(_COLUMNS, (keys, sizes, mtimes, seconds), strict=True))
        data = json.dumps({"format": FORMAT, "root": str(self.root)} | columns, separators=(",", ":"))
        errors = []
        for target in _locations(self.root, for_writing=True):
            try:
                atomic_write_text(target, data)
                return target
            except OSError as e:
                errors.append(f"{target.parent} ({e.strerror or e})")
        _warn_unwritable(self.root, errors)
        return None


def _locations(root: Path, for_writing: bool = False) -> list[Path]:
    """Where a manifest of `root` may be: the folder itself, then the user cache. For writing, the folder only
    when its permissions allow it (a read-only shared copy of a dataset is left alone)."""
    user = user_cache_dir() / f"{root.name}-{hashlib.sha256(str(root).encode()).hexdigest()[:16]}.json"
    beside = root / MANIFEST_NAME
    if for_writing and not _writable(root):
        return [user]
    return [beside, user]


def _writable(folder: Path) -> bool:
    """True when the folder's permission bits allow writing and the OS agrees (root passes os.access even on a
    read-only folder, hence the bits)."""
    try:
        return bool(folder.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)) and os.access(folder, os.W_OK)
    except OSError:
        return False


def _read(path: Path) -> dict[str, list] | None:
    """The columns of a manifest file; None (with a warning) when it is corrupt, None silently for another
    format (an older layout is rebuilt without fuss)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            return None
        missing = [c for c in _COLUMNS if c not in data]
        if missing:
            raise ValueError(f"it has no {', '.join(missing)} column")
        columns = {c: data[c] for c in _COLUMNS}
        if not all(isinstance(v, list) and len(v) == len(columns["files"]) for v in columns.values()):
            raise ValueError(f"its columns {', '.join(_COLUMNS)} are not lists of one length")
        if not all(isinstance(x, (int, float)) for x in columns["seconds"]):
            raise ValueError("its durations are not all numbers")
        return columns
    except (OSError, ValueError, TypeError, AttributeError) as e:  # AttributeError: not a JSON object
        print(f"warning: {path}: duration manifest is unreadable ({e}); rebuilding it", file=sys.stderr)
        return None


def _warn_unwritable(root: Path, errors: list[str]) -> None:
    global _warned_unwritable
    if not _warned_unwritable:
        _warned_unwritable = True
        print(
            f"warning: cannot write the duration manifest of {root} to {'; '.join(errors)}: audio headers will be "
            f"read again on the next start (set XDG_CACHE_HOME to a writable folder to keep them)",
            file=sys.stderr,
        )
