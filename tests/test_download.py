"""Downloads against a loopback HTTP server with fault injection; safe extraction; LibriSpeech on demand."""

import hashlib
import http.server
import io
import json
import random
import shutil
import tarfile
import threading
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import soundfile as sf

from asr import download as dl
from asr.text import normalize

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"
PAYLOAD = random.Random(0).randbytes(3_000_000)  # three chunks and a bit
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


# ---------------------------------------------------------------------------------------------
# the loopback server


class _State:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.log: list[tuple[str, str | None]] = []  # (path with query, Range header)
        self.drop_after: dict[str, int] = {}  # path -> bytes sent before the connection is cut (once)
        self.fail_first: dict[str, int] = {}  # path -> number of 503 answers before the real one
        self.corrupt: set[str] = set()  # paths served with one byte flipped
        self.html: dict[str, bytes] = {}  # paths answered with this HTML page
        self.html_as_binary = False  # send the HTML pages as application/octet-stream
        self.honour_range = True


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        state: _State = self.server.state
        path = urlsplit(self.path).path
        state.log.append((self.path, self.headers.get("Range")))
        if state.fail_first.get(path, 0) > 0:
            state.fail_first[path] -= 1
            return self._reply(503, b"busy", "text/plain")
        if path in state.html:
            kind = "application/octet-stream" if state.html_as_binary else "text/html; charset=utf-8"
            return self._reply(200, state.html[path], kind)
        data = state.files.get(path)
        if data is None:
            return self._reply(404, b"not found", "text/plain")
        if path in state.corrupt:
            data = data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:]
        start = 0
        range_header = self.headers.get("Range")
        if range_header and state.honour_range:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                return self._reply(416, b"", "text/plain", {"Content-Range": f"bytes */{len(data)}"})
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        cut = state.drop_after.pop(path, None)
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True  # the client sees the connection end before Content-Length
            return
        self.wfile.write(body)

    def _reply(self, status: int, body: bytes, kind: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # a client that hangs up early (an HTML or size check) is expected here


class _Server:
    def __init__(self) -> None:
        self.httpd = _QuietServer(("127.0.0.1", 0), _Handler)
        self.httpd.state = _State()
        self.state: _State = self.httpd.state
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return self.base + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server():
    s = _Server()
    s.state.files["/file.bin"] = PAYLOAD
    yield s
    s.close()


def _fetch(server, dest, path="/file.bin", **kw):
    kw.setdefault("sha256", PAYLOAD_SHA)
    kw.setdefault("backoff", 0)
    kw.setdefault("progress", False)
    return dl.download_file(server.url(path), dest, **kw)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


# ---------------------------------------------------------------------------------------------
# download


def test_dropped_connection_resumes_on_next_call(server, tmp_path):
    dest = tmp_path / "file.bin"
    server.state.drop_after["/file.bin"] = 1_000_000
    with pytest.raises(dl.DownloadError, match="giving up after 0 retries.*connection dropped after 1,000,000"):
        _fetch(server, dest, retries=0)
    assert not dest.exists()
    assert (tmp_path / "file.bin.part").stat().st_size == 1_000_000

    assert _fetch(server, dest) == dest
    assert server.state.log[-1] == ("/file.bin", "bytes=1000000-")
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(tmp_path) == ["file.bin"]


def test_dropped_connection_is_retried_within_one_call(server, tmp_path):
    server.state.drop_after["/file.bin"] = 2_500_000
    _fetch(server, tmp_path / "file.bin")
    assert server.state.log == [("/file.bin", None), ("/file.bin", "bytes=2500000-")]
    assert dl.file_sha256(tmp_path / "file.bin") == PAYLOAD_SHA


def test_server_errors_are_retried(server, tmp_path):
    server.state.fail_first["/file.bin"] = 2
    _fetch(server, tmp_path / "file.bin")
    assert len(server.state.log) == 3
    assert (tmp_path / "file.bin").read_bytes() == PAYLOAD


def test_server_that_ignores_range_restarts_from_zero(server, tmp_path):
    server.state.honour_range = False
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD[:12345])
    _fetch(server, tmp_path / "file.bin")
    assert server.state.log == [("/file.bin", "bytes=12345-")]
    assert (tmp_path / "file.bin").read_bytes() == PAYLOAD


def test_complete_part_file_is_finished_without_a_body(server, tmp_path):
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD)  # crashed after the last byte, before the rename
    _fetch(server, tmp_path / "file.bin")
    assert server.state.log == [("/file.bin", f"bytes={len(PAYLOAD)}-")]  # answered 416
    assert (tmp_path / "file.bin").read_bytes() == PAYLOAD


def test_corrupted_bytes_fail_the_checksum_and_leave_nothing(server, tmp_path):
    server.state.corrupt.add("/file.bin")
    with pytest.raises(dl.ChecksumError, match=f"expected {PAYLOAD_SHA}"):
        _fetch(server, tmp_path / "file.bin")
    assert _leftovers(tmp_path) == []


def test_corrupted_resume_is_not_kept(server, tmp_path):
    (tmp_path / "file.bin.part").write_bytes(b"x" * 5000)  # a part file from some other file
    with pytest.raises(dl.ChecksumError):
        _fetch(server, tmp_path / "file.bin")
    assert _leftovers(tmp_path) == []
    _fetch(server, tmp_path / "file.bin")  # the next call starts clean
    assert (tmp_path / "file.bin").read_bytes() == PAYLOAD


def test_not_found_is_a_clear_error(server, tmp_path):
    with pytest.raises(dl.DownloadError, match=r"missing\.bin: HTTP 404 .*no file at this address"):
        _fetch(server, tmp_path / "missing.bin", path="/missing.bin")
    assert len(server.state.log) == 1  # a 404 is not retried
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("as_binary", [False, True])
def test_html_instead_of_a_file_is_a_clear_error(server, tmp_path, as_binary):
    server.state.html["/file.bin"] = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body></body></html>"
    server.state.html_as_binary = as_binary  # caught by Content-Type, or by sniffing the first bytes
    with pytest.raises(dl.HtmlResponseError, match="HTML page titled 'Sign in' where a file was expected"):
        _fetch(server, tmp_path / "file.bin")
    assert _leftovers(tmp_path) == []


def test_mirrors_are_tried_in_order(server, tmp_path):
    dest = tmp_path / "file.bin"
    dl.download_file(
        [server.url("/gone.bin"), server.url("/file.bin")], dest, sha256=PAYLOAD_SHA, backoff=0, progress=False
    )
    assert [p for p, _ in server.state.log] == ["/gone.bin", "/file.bin"]
    assert dest.read_bytes() == PAYLOAD


def test_all_mirrors_failing_names_each(server, tmp_path):
    with pytest.raises(dl.DownloadError, match=r"(?s)any of 2 addresses.*a\.bin: .*404.*b\.bin: .*404"):
        dl.download_file([server.url("/a.bin"), server.url("/b.bin")], tmp_path / "x", backoff=0, progress=False)


def test_size_mismatch_is_refused_before_downloading(server, tmp_path):
    with pytest.raises(dl.ChecksumError, match="offers 3,000,000 bytes but 2,999,999 were expected"):
        _fetch(server, tmp_path / "file.bin", sha256=None, size=2_999_999)
    assert _leftovers(tmp_path) == []


def test_free_space_is_checked_first(server, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10**9, 10**9 - 100, 100))
    with pytest.raises(dl.DiskSpaceError, match="GB of free space needed"):
        _fetch(server, tmp_path / "file.bin")
    assert _leftovers(tmp_path) == []


def test_existing_file_is_verified_without_network(server, tmp_path):
    dest = tmp_path / "file.bin"
    _fetch(server, dest)
    _fetch(server, dest)
    assert len(server.state.log) == 1
    dest.write_bytes(b"changed")
    with pytest.raises(dl.ChecksumError, match="existing file .* delete"):
        _fetch(server, dest)


def test_google_drive_warning_page_is_passed(server, tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "_is_google_drive", lambda url: True)  # the loopback server plays Drive
    server.state.html["/uc"] = (
        b"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>"
        b'<form id="download-form" action="/download" method="get">'
        b'<input type="submit" value="Download anyway"/><input type="hidden" name="id" value="abc123">'
        b'<input type="hidden" name="export" value="download"><input type="hidden" name="confirm" value="t">'
        b"</form></body></html>"
    )
    server.state.files["/download"] = PAYLOAD
    _fetch(server, tmp_path / "model.pt", path="/uc?export=download&id=abc123")
    assert [p for p, _ in server.state.log] == [
        "/uc?export=download&id=abc123",
        "/download?id=abc123&export=download&confirm=t",
    ]
    assert (tmp_path / "model.pt").read_bytes() == PAYLOAD


def test_google_drive_page_without_a_way_through(server, tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "_is_google_drive", lambda url: True)
    server.state.html["/uc"] = b"<html><head><title>Quota exceeded</title></head></html>"
    with pytest.raises(dl.HtmlResponseError, match="Google Drive sent a web page"):
        _fetch(server, tmp_path / "model.pt", path="/uc")


def test_drive_confirm_url_from_old_style_link():
    page = '<a id="uc-download-link" href="/uc?export=download&amp;confirm=Xy_1&amp;id=FILEID">Download anyway</a>'
    got = dl.drive_confirm_url(page, "https://drive.google.com/uc?export=download&id=FILEID")
    assert got == "https://drive.google.com/uc?export=download&confirm=Xy_1&id=FILEID"
    assert dl.drive_confirm_url("<html>no way</html>", "https://drive.google.com/uc") is None


@pytest.mark.parametrize(
    "spec, url",
    [
        (
            "https://drive.google.com/file/d/1AbCdEfGhIjKlMnOp/view?usp=sharing",
            "https://drive.google.com/uc?export=download&id=1AbCdEfGhIjKlMnOp",
        ),
        (
            "https://drive.google.com/open?id=1AbCdEfGhIjKlMnOp",
            "https://drive.google.com/uc?export=download&id=1AbCdEfGhIjKlMnOp",
        ),
        ("owner/repo/best.pt", "https://huggingface.co/owner/repo/resolve/main/best.pt"),
        ("hf://owner/repo@v1.0/ckpt/best.pt", "https://huggingface.co/owner/repo/resolve/v1.0/ckpt/best.pt"),
        ("https://example.org/a/b.pt?x=1", "https://example.org/a/b.pt?x=1"),
    ],
)
def test_resolve_url(spec, url):
    assert dl.resolve_url(spec) == url


@pytest.mark.parametrize("spec", ["best.pt", "owner/best.pt", "ftp://host/x.pt", "owner/repo/../x"])
def test_resolve_url_rejects_unknown_forms(spec):
    with pytest.raises(ValueError):
        dl.resolve_url(spec)


# ---------------------------------------------------------------------------------------------
# extraction


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
    dest = dl.extract_archive(archive, tmp_path / "out", progress=False)
    assert (dest / "top/sub/y.txt").read_bytes() == b"y"
    assert (dest / "top/l").read_bytes() == b"x"  # a link inside the target is fine
    assert json.loads((dest / dl.MARKER).read_text()) == {"archive": "a.tar.gz", "members": 3}
    archive.unlink()  # idempotent: the marker alone answers the second call
    assert dl.extract_archive(archive, tmp_path / "out", progress=False) == dest
    assert _leftovers(tmp_path) == ["out"]


def test_extract_subdir_only(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", [_file("LibriSpeech/README.TXT"), _file("LibriSpeech/dev-clean/1/2/a.txt")])
    dest = dl.extract_archive(archive, tmp_path / "dev-clean", subdir="LibriSpeech/dev-clean", progress=False)
    assert sorted(p.name for p in dest.rglob("*")) == [dl.MARKER, "1", "2", "a.txt"]
    with pytest.raises(ValueError, match="has no folder LibriSpeech/test-clean/"):
        dl.extract_archive(archive, tmp_path / "test-clean", subdir="LibriSpeech/test-clean", progress=False)
    assert not (tmp_path / "test-clean").exists()


def test_interrupted_extraction_is_redone(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", [_file("x.txt", b"new")])
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "half.txt").write_text("from the interrupted run")
    (tmp_path / ".out.extracting").touch()  # the rename happened, the marker did not
    (tmp_path / ".out.tmp-stale").mkdir()  # and an earlier run died mid-stream
    dl.extract_archive(archive, dest, progress=False)
    assert sorted(p.name for p in dest.iterdir()) == [dl.MARKER, "x.txt"]
    assert _leftovers(tmp_path) == ["a.tar.gz", "out"]


def test_foreign_folder_is_not_overwritten(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", [_file("x.txt")])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="no .complete marker"):
        dl.extract_archive(archive, tmp_path / "out", progress=False)
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
    with pytest.raises(dl.UnsafeArchiveError, match=message):
        dl.extract_archive(archive, work / "out", progress=False)
    assert sorted(p.name for p in tmp_path.rglob("*") if not p.name.endswith(".lock")) == ["evil.tar.gz", "work"]


def test_unsafe_zip_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fine.txt", "ok")
        zf.writestr("../escape.txt", "bad")
    with pytest.raises(dl.UnsafeArchiveError, match="contains '..'"):
        dl.extract_archive(archive, tmp_path / "out", progress=False)
    assert _leftovers(tmp_path) == ["evil.zip"]

    with zipfile.ZipFile(archive, "w") as zf:
        link = zipfile.ZipInfo("link")
        link.external_attr = 0o120777 << 16  # a symlink entry, as `zip --symlinks` writes it
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(dl.UnsafeArchiveError, match="points outside"):
        dl.extract_archive(archive, tmp_path / "out", progress=False)
    assert _leftovers(tmp_path) == ["evil.zip"]


def test_zip_extracts(tmp_path):
    archive = tmp_path / "ok.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("dir/a.txt", "a")
    dest = dl.extract_archive(archive, tmp_path / "out", progress=False)
    assert (dest / "dir/a.txt").read_text() == "a"


# ---------------------------------------------------------------------------------------------
# LibriSpeech


def test_splits_and_aliases():
    assert dl.LIBRISPEECH_SPLITS == (
        "dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100", "train-clean-360", "train-other-500",
    )  # fmt: skip
    assert dl.expand_librispeech("train-960") == ["train-clean-100", "train-clean-360", "train-other-500"]
    assert dl.expand_librispeech("dev-other") == ["dev-other"]
    with pytest.raises(ValueError, match="not a LibriSpeech split"):
        dl.expand_librispeech("train-clean-960")


def test_builtin_sums_are_torchaudios():
    ta = pytest.importorskip("torchaudio.datasets.librispeech")
    ours = {s: v["sha256"] for s, v in dl.load_manifest()["librispeech"]["splits"].items()}
    theirs = {url.rsplit("/", 1)[1].removesuffix(".tar.gz"): sha for url, sha in ta._CHECKSUMS.items()}
    assert ours == theirs


def test_missing_split_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"test-clean is not at .*LibriSpeech/test-clean; drop --no_download"):
        dl.ensure_librispeech("test-clean", tmp_path, download=False)
    with pytest.raises(ValueError, match="expand_librispeech"):
        dl.ensure_librispeech("train-960", tmp_path)


def _fixture_utterances() -> dict[str, tuple[np.ndarray, str]]:
    """The 16 kHz test-clean fixtures: id -> (int16 samples, uppercase transcript)."""
    folder = SPEECH / "librispeech"
    if not (folder / "meta.json").exists():
        pytest.skip(f"speech fixtures not found at {folder}")
    meta = json.loads((folder / "meta.json").read_text())
    out = {}
    for u in meta["utterances"]:
        if u["split"] == "test-clean" and u["sample_rate"] == 16000:
            audio, rate = sf.read(folder / "audio" / u["file"], dtype="int16")
            out[u["utt_id"]] = (audio, (folder / "transcriptions" / f"{Path(u['file']).stem}.txt").read_text().strip())
    assert len(out) == 7
    return out


def _librispeech_archive(path: Path, utterances: dict[str, tuple[np.ndarray, str]]) -> Path:
    """A tar.gz laid out like openslr's: LibriSpeech/<split>/<speaker>/<chapter>/ with FLAC and trans.txt."""
    root = path.parent / "layout"
    split_dir = root / "LibriSpeech" / "test-clean"
    chapters: dict[Path, list[str]] = {}
    for utt_id, (audio, text) in sorted(utterances.items()):
        speaker, chapter, _ = utt_id.split("-")
        folder = split_dir / speaker / chapter
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"{utt_id}.flac", audio, 16000, format="FLAC", subtype="PCM_16")
        chapters.setdefault(folder, []).append(f"{utt_id} {text}")
    for folder, lines in chapters.items():
        (folder / f"{folder.parent.name}-{folder.name}.trans.txt").write_text("\n".join(lines) + "\n")
    (root / "LibriSpeech" / "README.TXT").write_text("test fixture in the LibriSpeech layout\n")
    with tarfile.open(path, "w:gz") as tar:
        tar.add(root / "LibriSpeech", arcname="LibriSpeech")
    shutil.rmtree(root)
    return path


@pytest.fixture
def librispeech_server(server, tmp_path, monkeypatch):
    utterances = _fixture_utterances()
    archive = _librispeech_archive(tmp_path / "test-clean.tar.gz", utterances)
    data = archive.read_bytes()
    server.state.files["/mirror/test-clean.tar.gz"] = data
    server.state.files["/mirror/SHA256SUMS"] = f"{hashlib.sha256(data).hexdigest()}  test-clean.tar.gz\n".encode()
    monkeypatch.setenv(dl.BASE_URL_ENV, server.url("/mirror/"))
    return server, utterances


def test_librispeech_archive_downloads_extracts_and_reads(librispeech_server, tmp_path):
    server, utterances = librispeech_server
    server.state.drop_after["/mirror/test-clean.tar.gz"] = 50_000  # and the link is flaky
    data_dir = tmp_path / "data"
    split_dir = dl.ensure_librispeech("test-clean", data_dir, backoff=0, progress=False)
    assert split_dir == data_dir / "LibriSpeech" / "test-clean"
    assert [p for p, r in server.state.log] == [
        "/mirror/SHA256SUMS",
        "/mirror/test-clean.tar.gz",
        "/mirror/test-clean.tar.gz",
    ]
    assert server.state.log[-1][1] == "bytes=50000-"
    assert not (data_dir / "downloads" / "test-clean.tar.gz").exists()  # deleted once extracted

    flacs = sorted(split_dir.rglob("*.flac"))
    assert [p.stem for p in flacs] == sorted(utterances)
    for path in flacs:
        audio, rate = sf.read(path, dtype="int16")
        assert rate == 16000 and np.array_equal(audio, utterances[path.stem][0])

    from asr.data import librispeech_utterances

    got = {u.id: u for u in librispeech_utterances(data_dir, "test-clean")}
    assert {k: u.text for k, u in got.items()} == {k: normalize(t) for k, (_, t) in utterances.items()}
    assert got["1089-134686-0001"].text == "stuff it into you his belly counselled him"
    assert {k: Path(u.audio_path).name for k, u in got.items()} == {k: f"{k}.flac" for k in utterances}

    requests_before = len(server.state.log)
    assert dl.ensure_librispeech("test-clean", data_dir, backoff=0, progress=False) == split_dir
    assert len(server.state.log) == requests_before  # the second call does no network traffic


def test_train_py_downloads_a_missing_split_and_trains(librispeech_server, tmp_path):
    import train

    server, utterances = librispeech_server
    data_dir = tmp_path / "data"
    args = ["--dataset", "test-clean", "--data_dir", str(data_dir), "--runs_dir", str(tmp_path / "runs")]
    with pytest.raises(FileNotFoundError, match="drop --no_download"):
        train.main([*args, "--no_download"])
    result = train.main([*args, "--epochs", "1", "--model", "tiny", "--eval_dataset", "test-clean",
                         "--no-tensorboard"])  # fmt: skip
    assert result["step"] >= 1 and (result["run_dir"] / "best.pt").exists()
    assert sorted(p.stem for p in (data_dir / "LibriSpeech" / "test-clean").rglob("*.flac")) == sorted(utterances)


def test_librispeech_without_published_sums_uses_builtin(librispeech_server, tmp_path):
    server, _ = librispeech_server
    del server.state.files["/mirror/SHA256SUMS"]
    builtin = dl.load_manifest()["librispeech"]["splits"]["test-clean"]["sha256"]
    with pytest.raises(dl.ChecksumError, match=f"expected {builtin}"):  # our fixture is not the real archive
        dl.ensure_librispeech("test-clean", tmp_path / "data", backoff=0, progress=False)
    assert not (tmp_path / "data" / "LibriSpeech").exists()
    assert _leftovers(tmp_path / "data" / "downloads") == []


def test_librispeech_sums_without_the_archive(librispeech_server, tmp_path):
    server, _ = librispeech_server
    server.state.files["/mirror/SHA256SUMS"] = b"0" * 64 + b"  dev-clean.tar.gz\n"
    with pytest.raises(dl.DownloadError, match="SHA256SUMS has no line for test-clean.tar.gz"):
        dl.ensure_librispeech("test-clean", tmp_path / "data", backoff=0, progress=False)


def test_librispeech_folder_unpacked_by_hand_is_used(tmp_path):
    split_dir = tmp_path / "LibriSpeech" / "dev-clean"
    split_dir.mkdir(parents=True)
    assert dl.ensure_librispeech("dev-clean", tmp_path, download=False) == split_dir


# ---------------------------------------------------------------------------------------------
# download_weights.py


def test_download_weights_help_lists_every_resource(capsys):
    import download_weights

    with pytest.raises(SystemExit):
        download_weights.main(["--help"])
    text = capsys.readouterr().out
    for name in dl.load_manifest()["resources"]:
        assert f"  {name}  [" in text
    assert "openslr publishes no checksum for this file" in text  # the pruned 3-gram


def test_download_weights_checkpoint_from_url(server, tmp_path, capsys):
    import download_weights

    out = tmp_path / "weights"
    code = download_weights.main(["--url", server.url("/file.bin"), "--sha256", PAYLOAD_SHA, "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and (out / "file.bin").read_bytes() == PAYLOAD
    assert f"checkpoint -> {out / 'file.bin'} (SHA-256 verified)" in printed
    assert f"python inference.py --checkpoint {out / 'file.bin'} --dataset test-clean" in printed

    code = download_weights.main(["--url", server.url("/file.bin"), "--sha256", "0" * 64, "--name", "x.pt",
                                  "--out", str(out), "--retries", "0"])  # fmt: skip
    assert code == 1 and "SHA-256 is" in capsys.readouterr().err
    assert not (out / "x.pt").exists()
