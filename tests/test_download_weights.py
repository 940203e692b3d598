"""download_weights.py: the resource list in --help, a checkpoint fetched from a loopback URL, hostile names."""

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from loopback import PAYLOAD, PAYLOAD_SHA, LoopbackServer

from asr.errors import run_cli
from asr.sources import load_manifest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server():
    s = LoopbackServer()
    yield s
    s.close()


def test_download_weights_help_lists_every_resource(capsys):
    import download_weights

    with pytest.raises(SystemExit):
        download_weights.main(["--help"])
    text = capsys.readouterr().out
    for name in load_manifest()["resources"]:
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

    code = run_cli(download_weights.main, ["--url", server.url("/file.bin"), "--sha256", "0" * 64, "--name", "x.pt",
                                           "--out", str(out), "--retries", "0"])  # fmt: skip
    assert code == 2 and "SHA-256 is" in capsys.readouterr().err
    assert not (out / "x.pt").exists()


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(
    "served, shown",
    [
        ("/ok/..%2F..%2Fescaped.pt", "'../../escaped.pt'"),  # two folders up from --out
        ("/{site}%2Fzz.pth", "'{site}/zz.pth'"),  # a .pth in a site-packages runs at Python start-up
    ],
)
def test_url_naming_a_path_outside_out_is_refused(server, tmp_path, capsys, served, shown):
    import download_weights

    site = tmp_path / "venv" / "site-packages"
    site.mkdir(parents=True)
    served = served.format(site=quote(str(site), safe=""))  # /%2Ftmp%2F...%2Fsite-packages%2Fzz.pth
    shown = shown.format(site=site)
    server.state.files[served] = PAYLOAD
    out = tmp_path / "a" / "b" / "weights"
    before = _tree(tmp_path)
    code = run_cli(download_weights.main, ["--url", server.url(served), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        f"error: --url {server.url(served)}: the file name {shown} contains a path separator ('/' or '\\'), so it "
        "could land outside the download folder — pass --name with a plain file name such as model.pt\n"
    )
    assert server.state.log == []  # refused before any request
    assert _tree(tmp_path) == before  # nothing written anywhere, --out not even created

    assert run_cli(download_weights.main, ["--url", server.url(served), "--out", str(out), "--name", "ok.pt"]) == 0
    assert (out / "ok.pt").read_bytes() == PAYLOAD
    assert _tree(tmp_path) == sorted(
        [*before, "a", "a/b", "a/b/weights", "a/b/weights/.ok.pt.lock", "a/b/weights/ok.pt"]
    )


@pytest.mark.parametrize("name", ["../x.pt", ".hidden.pt", "-x.pt", "sub/x.pt"])
def test_name_flag_is_checked_the_same_way(server, tmp_path, capsys, name):
    import download_weights

    code = run_cli(
        download_weights.main, ["--url", server.url("/file.bin"), "--out", str(tmp_path / "w"), f"--name={name}"]
    )
    assert code == 2 and capsys.readouterr().err.startswith(f"error: --name: the file name {name!r} ")
    assert server.state.log == [] and _tree(tmp_path) == []


def test_bad_download_prints_one_line_and_no_traceback(server, tmp_path):
    cmd = [sys.executable, "download_weights.py", "--url", server.url("/missing.pt"), "--out", str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if k != "ASR_DEBUG"}
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    assert (
        done.stderr
        == f"error: {server.url('/missing.pt')}: HTTP 404 Not Found: there is no file at this address; check the URL\n"
    )

    done = subprocess.run([*cmd, "--debug"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode != 0 and "Traceback" in done.stderr and "DownloadError" in done.stderr


def test_timeout_flag_cuts_off_a_dripping_server(server, tmp_path, capsys):
    import download_weights

    server.state.drip["/file.bin"] = 0.1
    args = ["--url", server.url("/file.bin"), "--out", str(tmp_path), "--timeout", "0.5", "--retries", "0"]
    assert run_cli(download_weights.main, args) == 2
    assert "stalled" in capsys.readouterr().err
    assert (tmp_path / "file.bin.part").exists()  # kept for the next run to resume
    del server.state.drip["/file.bin"]
    assert run_cli(download_weights.main, args) == 0 and (tmp_path / "file.bin").read_bytes() == PAYLOAD
    assert server.state.log[-1][1].startswith("bytes=")
