"""Safe, idempotent extraction of .tar(.gz/.bz2/.xz) and .zip archives.

`extract_archive()` unpacks into a temporary folder beside the target, checking
every member as it streams past and refusing absolute paths, `..` components,
links that point outside and device files; then it moves the result into place
with one rename and writes a completion marker (`MARKER`) last. An interrupted
extraction is therefore redone, a finished one makes a second call return at
once, and a folder this tool did not extract is never overwritten.
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
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from asr.atomic import atomic_write_text
from asr.download import DiskSpaceError, file_lock

MARKER = ".complete"  # written into an extracted folder as the very last step
# The stdlib's own member check (Python >= 3.10.12 / 3.11.4), on top of ours: also drops setuid bits.
_TAR_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


class UnsafeArchiveError(ValueError):
    """An archive member would land outside the target folder, or is a device file."""


def extract_archive(archive: str | Path, dest: str | Path, *, subdir: str | None = None, progress: bool = True) -> Path:
    """Safely unpack a .tar(.gz/.bz2/.xz) or .zip so that `dest` holds its contents (or its `subdir`).

    Members are checked one by one while streaming into a temporary folder beside
    `dest`; an absolute path, a `..` component, a link pointing outside, or a device
    file aborts the whole extraction and nothing reaches `dest`. The finished tree
    is renamed into place and `dest/.complete` is written last. Calling again after
    that returns immediately; a run interrupted before the marker is redone.
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
            count = _unpack(archive, tmp, progress)
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


def _unpack(archive: Path, root: Path, progress: bool) -> int:
    """Extract every member of `archive` into `root` after checking it; return the member count."""
    if not archive.is_file():
        raise FileNotFoundError(f"{archive}: archive not found")
    bar = tqdm(desc=f"extracting {archive.name}", unit=" files", disable=not progress, leave=False)
    with bar:
        if zipfile.is_zipfile(archive):
            return _unpack_zip(archive, root, bar)
        try:
            tar = tarfile.open(archive, "r|*")  # stream: one pass over a multi-GB .tar.gz
        except tarfile.TarError as e:
            raise ValueError(f"{archive}: neither a zip nor a tar archive ({e})") from None
        count = 0
        with tar:
            for member in tar:
                _check_tar_member(archive, member, root)
                tar.extract(member, root, **_TAR_FILTER)
                count += 1
                bar.update()
        return count


def _check_tar_member(archive: Path, member: tarfile.TarInfo, root: Path) -> None:
    _check_member_path(archive, member.name, root)
    if member.ischr() or member.isblk() or member.isfifo():
        raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a device file or pipe; refusing to extract")
    if member.issym():
        _check_link(archive, member.name, (root / member.name).parent / member.linkname, member.linkname, root)
    elif member.islnk():
        _check_link(archive, member.name, root / member.linkname, member.linkname, root)
    elif not (member.isreg() or member.isdir()):
        raise UnsafeArchiveError(f"{archive}: member {member.name!r} has unsupported type {member.type!r}")


def _unpack_zip(archive: Path, root: Path, bar: tqdm) -> int:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            _check_member_path(archive, info.filename, root)
            mode = info.external_attr >> 16
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a device file; refusing to extract")
            if stat.S_ISLNK(mode):
                target = zf.read(info).decode("utf-8")
                link = root / info.filename
                _check_link(archive, info.filename, link.parent / target, target, root)
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(target, link)
            else:
                zf.extract(info, root)
            bar.update()
        return len(infos)


def _check_member_path(archive: Path, name: str, root: Path) -> None:
    posix = name.replace("\\", "/")
    if not posix or posix.startswith("/") or re.match(r"[A-Za-z]:", posix):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    if ".." in PurePosixPath(posix).parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..'; refusing to extract")
    if not _inside(root / posix, root):  # written through a link extracted earlier
        raise UnsafeArchiveError(f"{archive}: member {name!r} would be written outside the target; refusing")


def _check_link(archive: Path, name: str, target: Path, linkname: str, root: Path) -> None:
    if linkname.startswith("/") or not _inside(target, root):
        raise UnsafeArchiveError(
            f"{archive}: link {name!r} -> {linkname!r} points outside the target folder; refusing to extract"
        )


def _inside(path: Path, root: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))
