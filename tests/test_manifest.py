"""The duration manifest: written once, reused without reading audio headers, kept in step with the folder."""

import json
import os
import shutil

import pytest
import soundfile as sf
from conftest import tone, write_custom_dir
from test_data import _librispeech_tree

import asr.manifest
from asr.data import DataReport, custom_dir_utterances, librispeech_utterances
from asr.manifest import MANIFEST_NAME, user_cache_dir


@pytest.fixture
def header_reads(monkeypatch):
    """Counts soundfile.info calls (each one is an audio header read)."""
    calls = []
    real = sf.info

    def counting(path, *args, **kwargs):
        calls.append(os.path.basename(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(sf, "info", counting)
    return calls


@pytest.fixture
def folder(tmp_path):
    return write_custom_dir(tmp_path / "set", {f"u{i}": (tone(0.5 + 0.25 * i), 16000, f"word {i}") for i in range(4)})


def _durations(root, report=None, **kw) -> dict[str, float]:
    return {u.id: u.duration for u in custom_dir_utterances(root, report or DataReport(), **kw)}


def _cached_files(path) -> list[str]:
    return sorted(json.loads(path.read_text())["files"])


def test_written_once_then_used_without_reading_headers(folder, header_reads, monkeypatch):
    assert _durations(folder) == {"u0": 0.5, "u1": 0.75, "u2": 1.0, "u3": 1.25}
    assert len(header_reads) == 4
    assert _cached_files(folder / MANIFEST_NAME) == [f"audio/u{i}.flac" for i in range(4)]

    def no_headers(path, *a, **k):
        raise AssertionError(f"header of {path} read although the manifest is valid")

    monkeypatch.setattr(sf, "info", no_headers)
    mtime = (folder / MANIFEST_NAME).stat().st_mtime_ns
    assert _durations(folder) == {"u0": 0.5, "u1": 0.75, "u2": 1.0, "u3": 1.25}
    assert (folder / MANIFEST_NAME).stat().st_mtime_ns == mtime  # nothing changed: not rewritten


def test_a_modified_file_is_read_again_and_a_removed_one_dropped(folder, header_reads):
    _durations(folder)
    header_reads.clear()
    sf.write(folder / "audio" / "u1.flac", tone(2.0), 16000)
    stat = (folder / "audio" / "u1.flac").stat()
    os.utime(folder / "audio" / "u1.flac", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # even on coarse clocks
    (folder / "audio" / "u3.flac").unlink()
    sf.write(folder / "audio" / "u4.flac", tone(0.25), 16000)

    report = DataReport()
    assert _durations(folder, report) == {"u0": 0.5, "u1": 2.0, "u2": 1.0, "u4": 0.25}
    assert sorted(header_reads) == ["u1.flac", "u4.flac"]
    assert _cached_files(folder / MANIFEST_NAME) == ["audio/u0.flac", "audio/u1.flac", "audio/u2.flac", "audio/u4.flac"]
    assert report.warnings == [f"{folder / 'transcriptions' / 'u3.txt'}: transcript has no audio file in "
                               f"{folder / 'audio'}"]  # fmt: skip


def test_unreadable_audio_is_reported_every_time_and_never_cached(folder, header_reads):
    (folder / "audio" / "bad.wav").write_bytes(b"not audio")
    sf.write(folder / "audio" / "empty.wav", tone(0.0), 16000)
    reports = [DataReport(), DataReport()]
    uncached = DataReport()
    _durations(folder, uncached, cache=False)
    for report in reports:
        assert set(_durations(folder, report)) == {"u0", "u1", "u2", "u3"}
        assert report.failed == uncached.failed and len(report.failed) == 2
    assert "bad.wav: cannot read audio header" in reports[1].failed[0]
    assert reports[1].failed[1] == f"{folder / 'audio' / 'empty.wav'}: file has no samples"
    assert _cached_files(folder / MANIFEST_NAME) == [f"audio/u{i}.flac" for i in range(4)]


def test_a_read_only_folder_uses_the_user_cache(folder, header_reads, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder.chmod(0o555)  # root passes os.access on it; the permission bits still say read-only
    try:
        assert _durations(folder) == {"u0": 0.5, "u1": 0.75, "u2": 1.0, "u3": 1.25}
        assert not (folder / MANIFEST_NAME).exists()
        (cached,) = user_cache_dir().glob("set-*.json")
        assert user_cache_dir() == tmp_path / "xdg" / "asr-durations"
        assert json.loads(cached.read_text())["root"] == str(folder)
        header_reads.clear()
        assert _durations(folder) == {"u0": 0.5, "u1": 0.75, "u2": 1.0, "u3": 1.25}
        assert header_reads == []
    finally:
        folder.chmod(0o755)


def test_no_writable_place_warns_once_and_goes_on(folder, tmp_path, monkeypatch, capsys):
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
    monkeypatch.setattr(asr.manifest, "_warned_unwritable", False)
    folder.chmod(0o555)
    try:
        assert _durations(folder) == {"u0": 0.5, "u1": 0.75, "u2": 1.0, "u3": 1.25}
        assert _durations(folder) == {"u0": 0.5, "u1": 0.75, "u2": 1.0, "u3": 1.25}
    finally:
        folder.chmod(0o755)
    err = capsys.readouterr().err
    assert err.count("warning: cannot write the duration manifest") == 1
    assert f"of {folder} to {tmp_path / 'not-a-folder' / 'asr-durations'}" in err


def test_a_corrupt_manifest_is_rebuilt_with_a_warning(folder, header_reads, capsys):
    (folder / MANIFEST_NAME).write_text('{"format": 1, "files": ["audio/u0.flac"], "sizes": [1, 2')
    assert _durations(folder) == {"u0": 0.5, "u1": 0.75, "u2": 1.0, "u3": 1.25}
    assert f"warning: {folder / MANIFEST_NAME}: duration manifest is unreadable" in capsys.readouterr().err
    assert len(header_reads) == 4
    assert _cached_files(folder / MANIFEST_NAME) == [f"audio/u{i}.flac" for i in range(4)]
    (folder / MANIFEST_NAME).write_text('{"format": 1, "files": ["audio/u0.flac"], "sizes": [], "mtimes": []}')
    assert _durations(folder) == {"u0": 0.5, "u1": 0.75, "u2": 1.0, "u3": 1.25}
    assert "unreadable (it has no seconds column); rebuilding it" in capsys.readouterr().err
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest | {"seconds": ["0.5", 1, 1, 1]}))
    assert _durations(folder) == {"u0": 0.5, "u1": 0.75, "u2": 1.0, "u3": 1.25}
    assert "unreadable (its durations are not all numbers); rebuilding it" in capsys.readouterr().err
    (folder / MANIFEST_NAME).write_text("[]")
    assert _durations(folder) == {"u0": 0.5, "u1": 0.75, "u2": 1.0, "u3": 1.25}
    assert "duration manifest is unreadable" in capsys.readouterr().err


def test_the_newer_of_the_two_copies_is_read(folder, header_reads, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    _durations(folder)  # beside the data
    folder.chmod(0o555)
    try:
        sf.write(folder / "audio" / "u0.flac", tone(3.0), 16000)
        header_reads.clear()
        assert _durations(folder)["u0"] == 3.0  # stale copy beside the data: u0 read again, user copy written
        assert _durations(folder)["u0"] == 3.0
        assert header_reads == ["u0.flac"]
    finally:
        folder.chmod(0o755)


def test_librispeech_split_manifest(tmp_path, librispeech_fixtures, header_reads):
    flacs = _librispeech_tree(tmp_path, librispeech_fixtures)
    split = tmp_path / "LibriSpeech" / "dev-clean"
    first = librispeech_utterances(tmp_path, "dev-clean")
    assert len(header_reads) == len(flacs)
    assert _cached_files(split / MANIFEST_NAME) == sorted(
        f"{f.stem.split('-')[0]}/{f.stem.split('-')[1]}/{f.name}" for f in flacs
    )
    header_reads.clear()
    assert librispeech_utterances(tmp_path, "dev-clean") == first
    assert header_reads == []
    assert librispeech_utterances(tmp_path, "dev-clean", cache=False) == first
    shutil.rmtree(split / first[0].id.split("-")[0])  # a whole speaker gone: its lines and entries with it
    librispeech_utterances(tmp_path, "dev-clean")
    assert not any(k.startswith(first[0].id.split("-")[0] + "/") for k in _cached_files(split / MANIFEST_NAME))


def test_the_manifest_is_readable_by_others(folder):
    _durations(folder)
    assert (folder / MANIFEST_NAME).stat().st_mode & 0o777 == 0o644
