"""Resumable, verified downloads against a loopback HTTP server with fault injection."""

import shutil

import pytest
from loopback import PAYLOAD, PAYLOAD_SHA, LoopbackServer, leftovers

from asr import download as dl


@pytest.fixture
def server():
    s = LoopbackServer()
    yield s
    s.close()


def _fetch(server, dest, path="/file.bin", **kw):
    kw.setdefault("sha256", PAYLOAD_SHA)
    kw.setdefault("backoff", 0)
    kw.setdefault("progress", False)
    return dl.download_file(server.url(path), dest, **kw)


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
    assert leftovers(tmp_path) == ["file.bin"]


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
    assert leftovers(tmp_path) == []


def test_corrupted_resume_is_not_kept(server, tmp_path):
    (tmp_path / "file.bin.part").write_bytes(b"x" * 5000)  # a part file from some other file
    with pytest.raises(dl.ChecksumError):
        _fetch(server, tmp_path / "file.bin")
    assert leftovers(tmp_path) == []
    _fetch(server, tmp_path / "file.bin")  # the next call starts clean
    assert (tmp_path / "file.bin").read_bytes() == PAYLOAD


def test_not_found_is_a_clear_error(server, tmp_path):
    with pytest.raises(dl.DownloadError, match=r"missing\.bin: HTTP 404 .*no file at this address"):
        _fetch(server, tmp_path / "missing.bin", path="/missing.bin")
    assert len(server.state.log) == 1  # a 404 is not retried
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("as_binary", [False, True])
def test_html_instead_of_a_file_is_a_clear_error(server, tmp_path, as_binary):
    server.state.html["/file.bin"] = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body></body></html>"
    server.state.html_as_binary = as_binary  # caught by Content-Type, or by sniffing the first bytes
    with pytest.raises(dl.HtmlResponseError, match="HTML page titled 'Sign in' where a file was expected"):
        _fetch(server, tmp_path / "file.bin")
    assert leftovers(tmp_path) == []


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
    assert leftovers(tmp_path) == []


def test_free_space_is_checked_first(server, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10**9, 10**9 - 100, 100))
    with pytest.raises(dl.DiskSpaceError, match="GB of free space needed"):
        _fetch(server, tmp_path / "file.bin")
    assert leftovers(tmp_path) == []


def test_existing_file_is_verified_without_network(server, tmp_path):
    dest = tmp_path / "file.bin"
    _fetch(server, dest)
    _fetch(server, dest)
    assert len(server.state.log) == 1
    dest.write_bytes(b"changed")
    with pytest.raises(dl.ChecksumError, match="existing file .* delete"):
        _fetch(server, dest)


def test_google_drive_warning_page_is_passed(server, tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "is_google_drive", lambda url: True)  # the loopback server plays Drive
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
    monkeypatch.setattr(dl, "is_google_drive", lambda url: True)
    server.state.html["/uc"] = b"<html><head><title>Quota exceeded</title></head></html>"
    with pytest.raises(dl.HtmlResponseError, match="Google Drive sent a web page"):
        _fetch(server, tmp_path / "model.pt", path="/uc")


def test_dripping_server_stalls_and_the_next_call_resumes(server, tmp_path):
    dest = tmp_path / "file.bin"
    server.state.drip["/file.bin"] = 0.1  # one byte every 0.1 s: never silent for long, never useful
    with pytest.raises(
        dl.DownloadError,
        match=r"giving up after 0 retries: stalled: \d+ bytes in 0\.\d s, less than 1,024 within the 0\.5 s timeout",
    ):
        _fetch(server, dest, retries=0, timeout=0.5)
    got = (tmp_path / "file.bin.part").stat().st_size
    assert 0 < got < 1024 and not dest.exists()

    del server.state.drip["/file.bin"]
    _fetch(server, dest)  # the next run resumes where the stall left off
    assert server.state.log[-1] == ("/file.bin", f"bytes={got}-")
    assert dest.read_bytes() == PAYLOAD


def test_silent_server_times_out(server, tmp_path):
    server.state.drip["/file.bin"] = 5.0  # one byte, then silence
    with pytest.raises(dl.DownloadError, match=r"stalled: nothing received for 0\.3 s after 1 bytes"):
        _fetch(server, tmp_path / "file.bin", retries=0, timeout=0.3)


def test_a_drip_is_not_progress_so_retries_run_out(server, tmp_path):
    server.state.drip["/file.bin"] = 0.05
    with pytest.raises(dl.DownloadError, match="giving up after 1 retries: stalled"):
        _fetch(server, tmp_path / "file.bin", retries=1, timeout=0.3)
    assert [r for _, r in server.state.log][0] is None and server.state.log[1][1].startswith("bytes=")


@pytest.mark.parametrize(
    "name, problem",
    [
        ("../../escaped.pt", "contains a path separator"),
        ("/tmp/site-packages/zz.pth", "contains a path separator"),
        ("a\\b.pt", "contains a path separator"),
        ("..", "starts with a dot"),
        (".bashrc", "starts with a dot"),
        ("-rf", "starts with a dash"),
        ("a\x00b.pt", "contains a control character"),
        ("a\nb.pt", "contains a control character"),
        ("", "is empty"),
        ("x" * 256, "is longer than the 255 bytes"),
    ],
)
def test_unsafe_file_names_are_refused(name, problem):
    with pytest.raises(dl.UnsafeNameError, match=rf"^--url u: the file name .* {problem}.* — pass --name"):
        dl.safe_file_name(name, origin="--url u")


def test_safe_file_names_pass():
    for name in ("best.pt", "3-gram.pruned.1e-7.arpa.gz", "model..v2.pt", "modèle.pt"):
        assert dl.safe_file_name(name, origin="x") == name


def test_destination_refuses_a_link_that_leads_outside(tmp_path):
    out = tmp_path / "weights"
    out.mkdir()
    (out / "best.pt").symlink_to(tmp_path / "elsewhere.pt")
    with pytest.raises(dl.UnsafeNameError, match=r"best\.pt: resolves to .*elsewhere\.pt, outside .*weights"):
        dl.destination(out, "best.pt", origin="--name")
    (out / "other.pt.part").symlink_to("/etc/passwd")
    with pytest.raises(dl.UnsafeNameError, match=r"other\.pt\.part: resolves to /etc/passwd"):
        dl.destination(out, "other.pt", origin="--name")
    assert dl.destination(out, "new.pt", origin="--name") == out / "new.pt"


def test_fetch_text_times_out_on_a_drip_too(server):
    server.state.files["/SHA256SUMS"] = b"0" * 64 + b"  test-clean.tar.gz\n"
    assert dl.fetch_text(server.url("/SHA256SUMS"), backoff=0).startswith("0000")
    server.state.drip["/SHA256SUMS"] = 0.05
    with pytest.raises(dl.DownloadError, match=r"SHA256SUMS: giving up after 0 retries: stalled: \d+ bytes in 0\.\d s"):
        dl.fetch_text(server.url("/SHA256SUMS"), retries=0, backoff=0, timeout=0.3)
    assert dl.fetch_text(server.url("/missing"), backoff=0) is None
