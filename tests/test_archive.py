"""Safe, idempotent archive extraction: tar and zip, hostile members and bombs refused, interrupted runs redone."""

import io
import json
import tarfile
import warnings
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
        tmp_path / "a.tar.gz", [_file("top/x.txt", b"x"), _file("top/sub/y.txt", b"y"), _file("top/z.txt", b"z")]
    )
    dest = extract_archive(archive, tmp_path / "out", progress=False)
    assert (dest / "top/sub/y.txt").read_bytes() == b"y"
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
        ([_link("evil", "../../escape.txt")], "'evil' is a symbolic link to '../../escape.txt'; links are refused"),
        ([_link("evil", "/etc/passwd")], "is a symbolic link to '/etc/passwd'"),
        ([_link("evil", "../escape.txt", tarfile.LNKTYPE)], "'evil' is a hard link to '../escape.txt'; links are"),
        ([_link("d", "sub"), _link("sub", ".."), _file("d/escape.txt")], "'d' is a symbolic link"),
        # the attack: an early link that looks inside, and a later `d1 -> .` that would redirect it
        (
            [_file("audio/a.wav"), _link("transcriptions/a.txt", "../d1/d1/d1/d1/etc/passwd"), _link("d1", ".")],
            "'transcriptions/a.txt' is a symbolic link",
        ),
        ([_file("audio/a.wav"), _link("d1", ".")], "'d1' is a symbolic link to '.'"),
        ([_file("a.txt"), _link("b.txt", "missing.txt", tarfile.LNKTYPE)], "'b.txt' is a hard link to 'missing.txt'"),
        ([_file("a.txt"), _file("a.txt", b"again")], "'a.txt' appears twice"),
        ([_file("a.txt"), _file("./a.txt", b"again")], "'./a.txt' appears twice"),
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
    with pytest.raises(UnsafeArchiveError, match="member 'link' is a symbolic link; links are refused because"):
        extract_archive(archive, tmp_path / "out", progress=False)
    assert leftovers(tmp_path) == ["evil.zip"]


def test_zip_extracts(tmp_path):
    archive = tmp_path / "ok.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("dir/a.txt", "a")
    dest = extract_archive(archive, tmp_path / "out", progress=False)
    assert (dest / "dir/a.txt").read_text() == "a"


def _zip_link(zf: zipfile.ZipFile, name: str, target: str) -> None:
    info = zipfile.ZipInfo(name)
    info.external_attr = 0o120777 << 16  # a symlink entry, as `zip --symlinks` writes it
    zf.writestr(info, target)


def _zip(path: Path, members: list[tuple[str, bytes | None]]) -> Path:
    """A zip of (name, data) members; data None makes a symlink to '.'."""
    with zipfile.ZipFile(path, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": exactly what some tests want
        for name, data in members:
            if data is None:
                _zip_link(zf, name, ".")
            else:
                zf.writestr(zipfile.ZipInfo(name), data)
    return path


@pytest.mark.parametrize(
    "members, message",
    [
        ([("audio/a.wav", b"RIFF"), ("transcriptions/a.txt", None), ("d1", None)],
         "'transcriptions/a.txt' is a symbolic link; links are refused"),
        ([("audio/a.wav", b"RIFF"), ("d1", None)], "'d1' is a symbolic link"),  # the later `d1 -> .`
        ([("l", None), ("l", None)], "'l' is a symbolic link"),  # a duplicate link
        ([("a.txt", b"1"), ("a.txt", b"2")], "'a.txt' appears twice"),
        ([("a.txt", b"1"), ("/abs.txt", b"2")], "'/abs.txt' has an absolute path"),
        ([("a.txt", b"1"), ("C:/abs.txt", b"2")], "'C:/abs.txt' has an absolute path"),
        ([("a.txt", b"1"), ("x/../../up.txt", b"2")], "'x/../../up.txt' contains '..'"),
        ([("a.txt", b"1"), ("a.txt/b.txt", b"2")], "clashes with a file or folder of the same name"),
    ],
)  # fmt: skip
def test_unsafe_zip_members_are_refused_and_nothing_is_written(tmp_path, members, message):
    work = tmp_path / "work"
    work.mkdir()
    archive = _zip(work / "evil.zip", members)
    with pytest.raises(UnsafeArchiveError, match=message):
        extract_archive(archive, work / "out", progress=False)
    assert sorted(p.name for p in tmp_path.rglob("*") if not p.name.endswith(".lock")) == ["evil.zip", "work"]


def _zeros_zip(path: Path, size: int) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("ok.txt", "fine")
        with zf.open("zeros.bin", "w") as f:
            for _ in range(size // 2**20):
                f.write(bytes(2**20))
    return path


def test_zip_bomb_is_refused_by_ratio_before_writing(tmp_path):
    archive = _zeros_zip(tmp_path / "bomb.zip", 32 * 2**20)  # 32 MiB of zeros in ~33 KB; the real one: 1 GiB in 1 MB
    assert archive.stat().st_size < 100_000
    with pytest.raises(
        UnsafeArchiveError,
        match=r"bomb\.zip: unpacks to over \d+ times its own size \(at member "
        r"'zeros\.bin', 33,554,436 bytes so far\) — refused as a possible zip bomb; .* larger max_ratio",
    ):
        extract_archive(archive, tmp_path / "out", progress=False)
    assert leftovers(tmp_path) == ["bomb.zip"]  # refused from the central directory: nothing was written
    dest = extract_archive(archive, tmp_path / "out", progress=False, max_ratio=10_000)  # overridable
    assert (dest / "zeros.bin").stat().st_size == 32 * 2**20


def test_size_and_member_limits(tmp_path):
    archive = _zeros_zip(tmp_path / "big.zip", 2**20)
    with pytest.raises(
        UnsafeArchiveError,
        match=r"big\.zip: unpacks to more than 100,000 bytes \(at member "
        r"'zeros\.bin'\) — refused as a possible zip bomb; .* larger max_bytes",
    ):
        extract_archive(archive, tmp_path / "out", progress=False, max_bytes=100_000)
    tar = _tar(tmp_path / "big.tar.gz", [_file("a.txt", b"a" * 600), _file("b.txt", b"b" * 600)])
    with pytest.raises(UnsafeArchiveError, match=r"unpacks to more than 1,000 bytes \(at member 'b\.txt'\)"):
        extract_archive(tar, tmp_path / "out", progress=False, max_bytes=1000)
    with pytest.raises(UnsafeArchiveError, match=r"big\.tar\.gz: more than 1 members — .* larger max_members"):
        extract_archive(tar, tmp_path / "out", progress=False, max_members=1)
    assert leftovers(tmp_path) == ["big.tar.gz", "big.zip"]


def test_tar_bomb_is_refused_by_ratio(tmp_path):
    info = tarfile.TarInfo("zeros.bin")
    info.size = 32 * 2**20
    with tarfile.open(tmp_path / "bomb.tar.gz", "w:gz") as tar:
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    with pytest.raises(UnsafeArchiveError, match=r"unpacks to over \d+ times its own size \(at member 'zeros\.bin'"):
        extract_archive(tmp_path / "bomb.tar.gz", tmp_path / "out", progress=False)
    assert leftovers(tmp_path) == ["bomb.tar.gz"]


def test_truncated_tar_is_one_message(tmp_path):
    whole = _tar(tmp_path / "a.tar.gz", [_file("a.bin", bytes(range(256)) * 400)]).read_bytes()
    (tmp_path / "a.tar.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UnsafeArchiveError, match=r"a\.tar\.gz: the archive is corrupt or truncated \(.*\) — delete"):
        extract_archive(tmp_path / "a.tar.gz", tmp_path / "out", progress=False)
    assert leftovers(tmp_path) == ["a.tar.gz"]
