"""LibriSpeech on demand: a split archive in openslr's layout served from loopback, verified, extracted, read."""

import hashlib
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from loopback import LoopbackServer, leftovers

from asr import download, librispeech
from asr.archive import MARKER
from asr.sources import load_manifest
from asr.text import normalize

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"


@pytest.fixture
def server():
    s = LoopbackServer()
    yield s
    s.close()


def test_splits_and_aliases():
    assert librispeech.LIBRISPEECH_SPLITS == (
        "dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100", "train-clean-360", "train-other-500",
    )  # fmt: skip
    assert librispeech.expand_librispeech("train-960") == ["train-clean-100", "train-clean-360", "train-other-500"]
    assert librispeech.expand_librispeech("dev-other") == ["dev-other"]
    with pytest.raises(ValueError, match="not a LibriSpeech split"):
        librispeech.expand_librispeech("train-clean-960")


def test_builtin_sums_are_torchaudios():
    ta = pytest.importorskip("torchaudio.datasets.librispeech")
    ours = {s: v["sha256"] for s, v in load_manifest()["librispeech"]["splits"].items()}
    theirs = {url.rsplit("/", 1)[1].removesuffix(".tar.gz"): sha for url, sha in ta._CHECKSUMS.items()}
    assert ours == theirs


def test_missing_split_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"test-clean is not at .*LibriSpeech/test-clean; drop --no_download"):
        librispeech.ensure_librispeech("test-clean", tmp_path, download=False)
    with pytest.raises(ValueError, match="expand_librispeech"):
        librispeech.ensure_librispeech("train-960", tmp_path)


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
    monkeypatch.setenv(librispeech.BASE_URL_ENV, server.url("/mirror/"))
    return server, utterances


def test_librispeech_archive_downloads_extracts_and_reads(librispeech_server, tmp_path):
    server, utterances = librispeech_server
    server.state.drop_after["/mirror/test-clean.tar.gz"] = 50_000  # and the link is flaky
    data_dir = tmp_path / "data"
    split_dir = librispeech.ensure_librispeech("test-clean", data_dir, backoff=0, progress=False)
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
    assert librispeech.ensure_librispeech("test-clean", data_dir, backoff=0, progress=False) == split_dir
    assert len(server.state.log) == requests_before  # the second call does no network traffic


def test_train_py_downloads_a_missing_split_and_trains(librispeech_server, tmp_path):
    import train

    server, utterances = librispeech_server
    data_dir = tmp_path / "data"
    args = ["--dataset", "test-clean", "--librispeech_dir", str(data_dir), "--runs_dir", str(tmp_path / "runs")]
    with pytest.raises(FileNotFoundError, match="drop --no_download"):
        train.main([*args, "--no_download"])
    result = train.main([*args, "--epochs", "1", "--model", "tiny", "--eval_dataset", "test-clean",
                         "--no-tensorboard"])  # fmt: skip
    assert result["step"] >= 1 and (result["run_dir"] / "best.pt").exists()
    assert sorted(p.stem for p in (data_dir / "LibriSpeech" / "test-clean").rglob("*.flac")) == sorted(utterances)


def test_librispeech_without_published_sums_uses_builtin(librispeech_server, tmp_path):
    server, _ = librispeech_server
    del server.state.files["/mirror/SHA256SUMS"]
    builtin = load_manifest()["librispeech"]["splits"]["test-clean"]["sha256"]
    with pytest.raises(download.ChecksumError, match=f"expected {builtin}"):  # our fixture is not the real archive
        librispeech.ensure_librispeech("test-clean", tmp_path / "data", backoff=0, progress=False)
    assert not (tmp_path / "data" / "LibriSpeech").exists()
    assert leftovers(tmp_path / "data" / "downloads") == []


def test_librispeech_sums_without_the_archive(librispeech_server, tmp_path):
    server, _ = librispeech_server
    server.state.files["/mirror/SHA256SUMS"] = b"0" * 64 + b"  dev-clean.tar.gz\n"
    with pytest.raises(download.DownloadError, match="SHA256SUMS has no line for test-clean.tar.gz"):
        librispeech.ensure_librispeech("test-clean", tmp_path / "data", backoff=0, progress=False)


def test_librispeech_folder_unpacked_by_hand_is_used(tmp_path):
    split_dir = tmp_path / "LibriSpeech" / "dev-clean"
    split_dir.mkdir(parents=True)
    assert librispeech.ensure_librispeech("dev-clean", tmp_path, download=False) == split_dir


def test_ensure_splits_without_download_names_the_missing_folder(tmp_path):
    (tmp_path / "LibriSpeech" / "dev-clean").mkdir(parents=True)
    custom = tmp_path / "my_corpus"
    custom.mkdir()
    librispeech.ensure_splits(f"dev-clean+{custom}", tmp_path, download=False)  # present split; folder left alone
    with pytest.raises(FileNotFoundError, match=r"test-other is not at .*LibriSpeech/test-other; drop --no_download"):
        librispeech.ensure_splits("dev-clean+test-other", tmp_path, download=False)
    with pytest.raises(FileNotFoundError, match=r"train-clean-100 is not at .*LibriSpeech/train-clean-100"):
        librispeech.ensure_splits("train-960", tmp_path, download=False)  # an alias names its splits in order


def test_ensure_splits_downloads_what_is_missing(librispeech_server, tmp_path):
    server, utterances = librispeech_server
    data_dir = tmp_path / "data"
    librispeech.ensure_splits(f"test-clean+{tmp_path}", data_dir, download=True)
    split_dir = data_dir / "LibriSpeech" / "test-clean"
    assert (split_dir / MARKER).exists()
    assert sorted(p.stem for p in split_dir.rglob("*.flac")) == sorted(utterances)
    assert [p for p, _ in server.state.log] == ["/mirror/SHA256SUMS", "/mirror/test-clean.tar.gz"]


@pytest.fixture
def fake_mirror(server, monkeypatch):
    """A mirror serving a small stand-in archive: enough for the checksum list to be judged before extraction."""
    data = b"not really a tar.gz" * 100
    server.state.files["/mirror/test-clean.tar.gz"] = data
    monkeypatch.setenv(librispeech.BASE_URL_ENV, server.url("/mirror/"))
    return server, hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "sums, message",
    [
        (b"%s  test-clean.tar.gz\n" % (b"ab" * 32), r"SHA-256 is [0-9a-f]{64}, expected (ab){32}; .*\(expected SHA-256 "
         r"from http://127\.0\.0\.1:\d+/mirror/SHA256SUMS\)$"),  # wrong
        (b"%s test-clean.tar.gz\n" % (b"ab" * 31), r"/mirror/SHA256SUMS: line 1 is not '<sha256>  <file name>' "
         r"\('a.*b test-clean.tar.gz'\) — fix or remove that file$"),  # malformed: a short sum
        (b"\x00\xff\xfe garbage\n", r"/mirror/SHA256SUMS: line 1 is not '<sha256>  <file name>'"),  # binary junk
        (b"%s  test-clean.tar.gz\n%s  test-clean.tar.gz\n" % (b"ab" * 32, b"cd" * 32),
         r"/mirror/SHA256SUMS: line 2 gives test-clean.tar.gz a second, different SHA-256 — fix that file$"),
        (b"%s  dev-clean.tar.gz\n" % (b"ab" * 32), r"/mirror/SHA256SUMS has no line for test-clean.tar.gz — add one"),
        (b"<!DOCTYPE html><html><title>Index</title></html>", r"/mirror/SHA256SUMS: the server sent an HTML page"),
    ],
)  # fmt: skip
def test_bad_sha256sums_is_one_line_naming_the_file(fake_mirror, tmp_path, sums, message):
    server, _ = fake_mirror
    server.state.files["/mirror/SHA256SUMS"] = sums
    with pytest.raises(download.DownloadError, match=message) as caught:
        librispeech.ensure_librispeech("test-clean", tmp_path / "data", backoff=0, progress=False)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "data" / "LibriSpeech").exists()
    assert not (tmp_path / "data" / "downloads").exists() or leftovers(tmp_path / "data" / "downloads") == []
