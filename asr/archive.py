"""Safe, idempotent extraction of .tar(.gz/.bz2/.xz) and .zip archives.

`extract_archive()` unpacks into a temporary folder beside the target, checking
every member as it streams past and refusing absolute paths, `..` components,
links, device files and duplicate file names; then it moves the result into
place with one rename and writes a completion marker (`MARKER`) last. An
interrupted extraction is therefore redone, a finished one makes a second call
return at once, and a folder this tool did not extract is never overwritten.

Links (symbolic and hard) are refused altogether rather than resolved: the
layouts this project reads, LibriSpeech and a CustomDir folder of audio/ and
transcriptions/, never need one, and checking a link when its own member is
extracted is not enough: a later member (`d1 -> .`) can change where an earlier
link leads, so a safe check would have to resolve every link against the final
tree. Refusing them is simpler and leaves nothing to get wrong.

Size is bounded before anything is written, from the sizes the archive declares
(a zip's central directory up front, a tar's headers member by member), and
again while a zip member is written: at most `max_members`
members, `max_bytes` unpacked, and, past RATIO_FLOOR_BYTES, no more than
`max_ratio` times the archive's own size (a zip bomb: 1 GiB of zeros deflates
to 1 MB; audio barely compresses). The defaults are generous for LibriSpeech's
largest archive, train-other-500 (~30 GiB, ~150k members).
"""

import errno
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from asr.atomic import atomic_write_text
from asr.download import DiskSpaceError, file_lock
from asr.errors import ASRError

MARKER = ".complete"  # written into an extracted folder as the very last step
# The stdlib's own member check (Python >= 3.10.12 / 3.11.4), on top of ours: also drops setuid bits.
_TAR_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


MAX_BYTES = 64 * 2**30  # unpacked bytes; LibriSpeech train-other-500 unpacks to ~30 GiB
MAX_MEMBERS = 1_000_000  # files and folders; train-other-500 has ~150k
MAX_RATIO = 100.0  # unpacked / archive size; FLAC in tar.gz is ~1, text ~5, a zip bomb ~1000
RATIO_FLOOR_BYTES = 16 * 2**20  # the ratio is only judged past this many unpacked bytes (small text archives)
_LINKS_REFUSED = (
    "links are refused because LibriSpeech and folder datasets never need one and a link can lead outside the "
    "folder — unpack the archive yourself and replace each link with the file it points to"
)


class UnsafeArchiveError(ASRError, ValueError):
    """An archive member would land outside the target folder, is a link or a device file, or the archive is too big."""


def extract_archive(
    archive: str | Path,
    dest: str | Path,
    *,
    subdir: str | None = None,
    progress: bool = True,
    max_bytes: int = MAX_BYTES,
    max_members: int = MAX_MEMBERS,
    max_ratio: float = MAX_RATIO,
) -> Path:
    """Safely unpack a .tar(.gz/.bz2/.xz) or .zip so that `dest` holds its contents (or its `subdir`).

    Members are checked one by one while streaming into a temporary folder beside
    `dest`; an absolute path, a `..` component, a link, a device file, a second
    file of the same name, or going over the limits (max_members members,
    max_bytes unpacked, max_ratio times the archive's size) raises
    UnsafeArchiveError and nothing reaches `dest`. The finished tree is renamed
    into place and `dest/.complete` is written last. Calling again after that
    returns immediately; a run interrupted before the marker is redone.
    """
    archive, dest = Path(archive), Path(dest)
    marker = dest / MARKER
    if marker.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    stamp = dest.parent / f".{dest.name}.extracting"  # exists only while dest may be half in place
    with file_lock(dest.parent / f".{dest.name}.lock"):
        if marker.exists():  # another process finished while we waited for the lock
            return dest
        for stale in dest.parent.glob(f".{dest.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if stamp.exists():  # interrupted between moving the tree into place and writing the marker
            shutil.rmtree(dest, ignore_errors=True)
            stamp.unlink()
        if dest.exists():
            raise FileExistsError(
                f"{dest} exists but has no {MARKER} marker, so it was not extracted here by this tool; "
                "move it away (or delete it) and run again"
            )
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
        try:
            count = _unpack(archive, tmp, progress, _Budget(archive, max_bytes, max_members, max_ratio))
            src = tmp / subdir if subdir else tmp
            if not src.is_dir():
                raise ValueError(f"{archive} has no folder {subdir}/ inside; is it the right archive?")
            stamp.touch()
            os.replace(src, dest)  # one rename: dest appears complete or not at all
            atomic_write_text(marker, json.dumps({"archive": archive.name, "members": count}) + "\n")
            stamp.unlink()
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise DiskSpaceError(f"{dest.parent}: the disk filled up while extracting {archive}") from None
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


class _Budget:
    """The member-count and size limits of one extraction, charged as members go by."""

    def __init__(self, archive: Path, max_bytes: int, max_members: int, max_ratio: float) -> None:
        self.archive, self.max_bytes, self.max_members = archive, max_bytes, max_members
        self.max_ratio_bytes = max(RATIO_FLOOR_BYTES, max_ratio * archive.stat().st_size) if archive.is_file() else 0
        self.members = 0
        self.bytes = 0
        self.files: set[tuple[str, ...]] = set()  # normalised paths of the files (not folders) seen so far

    def member(self, name: str, is_dir: bool) -> None:
        """Charge one member; refuse the count limit and a second file with the same path."""
        self.members += 1
        if self.members > self.max_members:
            raise UnsafeArchiveError(
                f"{self.archive}: more than {self.max_members:,} members — not a dataset archive this tool expects; "
                "if it is, pass a larger max_members to extract_archive"
            )
        if is_dir:
            return
        key = PurePosixPath(name.replace("\\", "/")).parts
        if key in self.files:
            raise UnsafeArchiveError(
                f"{self.archive}: member {name!r} appears twice (a later copy would silently replace the first) — "
                "rebuild the archive with each file once"
            )
        self.files.add(key)

    def charge(self, name: str, size: int) -> None:
        """Add `size` unpacked bytes (declared, or written so far); refuse going over either size limit."""
        self.bytes += size
        if self.bytes > self.max_bytes:
            raise UnsafeArchiveError(
                f"{self.archive}: unpacks to more than {self.max_bytes:,} bytes (at member {name!r}) — refused as a "
                "possible zip bomb; if the archive is genuine, pass a larger max_bytes to extract_archive"
            )
        if self.max_ratio_bytes and self.bytes > self.max_ratio_bytes:
            ratio = self.bytes / max(1, self.archive.stat().st_size)
            raise UnsafeArchiveError(
                f"{self.archive}: unpacks to over {ratio:.0f} times its own size (at member {name!r}, "
                f"{self.bytes:,} bytes so far) — refused as a possible zip bomb; if the archive is genuine, pass a "
                "larger max_ratio to extract_archive"
            )


def _unpack(archive: Path, root: Path, progress: bool, budget: _Budget) -> int:
    """Extract every member of `archive` into `root` after checking it; return the member count."""
    if not archive.is_file():
        raise FileNotFoundError(f"{archive}: archive not found")
    bar = tqdm(desc=f"extracting {archive.name}", unit=" files", disable=not progress, leave=False)
    with bar:
        if zipfile.is_zipfile(archive):
            return _unpack_zip(archive, root, bar, budget)
        try:
            tar = tarfile.open(archive, "r|*")  # stream: one pass over a multi-GB .tar.gz
        except tarfile.TarError as e:
            raise ValueError(f"{archive}: neither a zip nor a tar archive ({e})") from None
        count = 0
        with tar:
            try:
                for member in tar:
                    _check_tar_member(archive, member, root)
                    budget.member(member.name, member.isdir())
                    budget.charge(member.name, member.size if member.isreg() else 0)
                    tar.extract(member, root, **_TAR_FILTER)
                    count += 1
                    bar.update()
            except (tarfile.TarError, EOFError, zlib.error) as e:  # truncated or corrupt: say which archive
                raise UnsafeArchiveError(
                    f"{archive}: the archive is corrupt or truncated ({_short(e)}) — delete it and download it again"
                ) from None
        return count


def _check_tar_member(archive: Path, member: tarfile.TarInfo, root: Path) -> None:
    _check_member_path(archive, member.name, root)
    if member.issym():
        raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a symbolic link to {member.linkname!r}; "
                                 f"{_LINKS_REFUSED}")  # fmt: skip
    if member.islnk():
        raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a hard link to {member.linkname!r}; "
                                 f"{_LINKS_REFUSED}")  # fmt: skip
    if member.ischr() or member.isblk() or member.isfifo():
        raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a device file or pipe; refusing to extract")
    if not (member.isreg() or member.isdir()):
        raise UnsafeArchiveError(f"{archive}: member {member.name!r} has unsupported type {member.type!r}")


def _unpack_zip(archive: Path, root: Path, bar: tqdm, budget: _Budget) -> int:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:  # everything is judged from the central directory before a byte is written
            _check_zip_member(archive, info, root)
            budget.member(info.filename, info.is_dir())
            budget.charge(info.filename, info.file_size)
        budget.bytes = 0  # charged again below from the bytes actually written
        for info in infos:
            target = root / info.filename
            try:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    _copy_zip_member(archive, zf, info, target, budget)
            except (FileExistsError, IsADirectoryError, NotADirectoryError):
                raise UnsafeArchiveError(
                    f"{archive}: member {info.filename!r} clashes with a file or folder of the same name — rebuild "
                    "the archive"
                ) from None
            bar.update()
        return len(infos)


def _check_zip_member(archive: Path, info: zipfile.ZipInfo, root: Path) -> None:
    _check_member_path(archive, info.filename, root)
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a symbolic link; {_LINKS_REFUSED}")
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a device file; refusing to extract")


def _copy_zip_member(archive: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: _Budget) -> None:
    """Write one zip member, charging its bytes as they are written (zipfile stops at the size it declares)."""
    try:
        with zf.open(info) as src, open(target, "xb") as out:
            while block := src.read(1 << 20):
                budget.charge(info.filename, len(block))
                out.write(block)
    except (zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise UnsafeArchiveError(
            f"{archive}: member {info.filename!r} is corrupt ({_short(e)}) — delete the archive and get it again"
        ) from None


def _check_member_path(archive: Path, name: str, root: Path) -> None:
    posix = name.replace("\\", "/")
    if not posix or posix.startswith("/") or re.match(r"[A-Za-z]:", posix):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    if ".." in PurePosixPath(posix).parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..'; refusing to extract")
    if "\x00" in posix:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains a NUL character; refusing to extract")
    if not _inside(root / posix, root):  # no links are extracted, so this only guards against a bug here
        raise UnsafeArchiveError(f"{archive}: member {name!r} would be written outside the target; refusing")


def _short(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__


def _inside(path: Path, root: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))
