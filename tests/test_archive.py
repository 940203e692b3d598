"""Safe, idempotent archive extraction: tar and zip, hostile members refused, interrupted runs redone."""

import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest
from loopback import leftovers

from asr.archive import MARKER, UnsafeArchiveError, extract_archive


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"hello") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def test_extract_tar_then_second_call_does_nothing(tmp_path):
    archive = _tar(
        tmp_path / "a.tar.gz", [_file("top/x.txt", b"x"), _file("top/sub/y.txt", b"y"), _link("top/l", "x.txt")]
    )
    dest = extract_archive(archive, tmp_path / "out", progress=False)
    assert (dest / "top/sub/y.txt").read_bytes() == b"y"
    assert (dest / "top/l").read_bytes() == b"x"  # a link inside the target is fine
    assert json.loads((dest / MARKER).read_text()) == {"archive": "a.tar.gz", "members": 3}
    archive.unlink()  # idempotent: the marker alone answers the second call
    assert extract_archive(archive, tmp_path / "out", progress=False) == dest
    assert leftovers(tmp_path) == ["out"]


def test_extract_subdir_only(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", [_file("LibriSpeech/README.TXT"), _file("LibriSpeech/dev-clean/1/2/a.txt")])
    dest = extract_archive(archive, tmp_path / "dev-clean", subdir="LibriSpeech/dev-clean", progress=False)
    assert sorted(p.name for p in dest.rglob("*")) == [MARKER, "1", "2", "a.txt"]
    with pytest.raises(ValueError, match="has no folder LibriSpeech/test-clean/"):
        extract_archive(archive, tmp_path / "test-clean", subdir="LibriSpeech/test-clean", progress=False)
    assert not (tmp_path / "test-clean").exists()


def test_interrupted_extraction_is_redone(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", [_file("x.txt", b"new")])
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "half.txt").write_text("from the interrupted run")
    (tmp_path / ".out.extracting").touch()  # the rename happened, the marker did not
    (tmp_path / ".out.tmp-stale").mkdir()  # and an earlier run died mid-stream
    extract_archive(archive, dest, progress=False)
    assert sorted(p.name for p in dest.iterdir()) == [MARKER, "x.txt"]
    assert leftovers(tmp_path) == ["a.tar.gz", "out"]


def test_foreign_folder_is_not_overwritten(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", [_file("x.txt")])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="no .complete marker"):
        extract_archive(archive, tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "mine.txt").read_text() == "user data"


def _device(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE
    return info, None


@pytest.mark.parametrize(
    "members, message",
    [
        ([_file("ok.txt"), _file("../escape.txt")], "contains '..'"),
        ([_file("a/../../escape.txt")], "contains '..'"),
        ([_file("ABSOLUTE")], "absolute path"),  # the name is replaced by an absolute path below
        ([_link("evil", "../../escape.txt")], "points outside"),
        ([_link("evil", "/etc/passwd")], "points outside"),
        ([_link("evil", "../escape.txt", tarfile.LNKTYPE)], "points outside"),
        ([_link("d", "sub"), _link("sub", ".."), _file("d/escape.txt")], "outside"),
        ([_device("null")], "device file"),
    ],
)
def test_unsafe_tar_is_refused_and_nothing_escapes(tmp_path, members, message):
    work = tmp_path / "work"
    work.mkdir()
    for info, _ in members:
        if info.name == "ABSOLUTE":
            info.name = str(tmp_path / "escape.txt")
    archive = _tar(work / "evil.tar.gz", members)
    with pytest.raises(UnsafeArchiveError, match=message):
        extract_archive(archive, work / "out", progress=False)
    assert sorted(p.name for p in tmp_path.rglob("*") if not p.name.endswith(".lock")) == ["evil.tar.gz", "work"]


def test_unsafe_zip_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fine.txt", "ok")
        zf.writestr("../escape.txt", "bad")
    with pytest.raises(UnsafeArchiveError, match="contains '..'"):
        extract_archive(archive, tmp_path / "out", progress=False)
    assert leftovers(tmp_path) == ["evil.zip"]

    with zipfile.ZipFile(archive, "w") as zf:
        link = zipfile.ZipInfo("link")
        link.external_attr = 0o120777 << 16  # a symlink entry, as `zip --symlinks` writes it
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="points outside"):
        extract_archive(archive, tmp_path / "out", progress=False)
    assert leftovers(tmp_path) == ["evil.zip"]


def test_zip_extracts(tmp_path):
    archive = tmp_path / "ok.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("dir/a.txt", "a")
    dest = extract_archive(archive, tmp_path / "out", progress=False)
    assert (dest / "dir/a.txt").read_text() == "a"
