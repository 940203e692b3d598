"""download_weights.py: the resource list in --help, and a checkpoint fetched from a loopback URL."""

import pytest
from loopback import PAYLOAD, PAYLOAD_SHA, LoopbackServer

from asr.sources import load_manifest


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

    code = download_weights.main(["--url", server.url("/file.bin"), "--sha256", "0" * 64, "--name", "x.pt",
                                  "--out", str(out), "--retries", "0"])  # fmt: skip
    assert code == 1 and "SHA-256 is" in capsys.readouterr().err
    assert not (out / "x.pt").exists()
