"""Shared fixtures: the real recordings in ../shared/data/speech and tiny synthetic folders."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"
LIBRISPEECH_FIXTURES = SPEECH / "librispeech"

# The synthetic-corpus tests speak with espeak-ng (.ci/run installs it).
needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt-get install espeak-ng)"
)


@pytest.fixture(autouse=True, scope="session")
def _private_user_cache(tmp_path_factory):
    """Duration manifests of read-only folders (../shared) go to a temporary XDG_CACHE_HOME, not ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield


@pytest.fixture
def librispeech_fixtures() -> Path:
    """The 14 LibriSpeech utterances (wav and flac, one at 8 kHz) in CustomDir layout."""
    if not LIBRISPEECH_FIXTURES.is_dir():
        pytest.skip(f"{LIBRISPEECH_FIXTURES} not found (../shared beside the repo)")
    return LIBRISPEECH_FIXTURES


def tone(seconds: float, rate: int = 16000, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    """A sine wave, (samples,) or (samples, channels)."""
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return wave if channels == 1 else np.stack([wave] * channels, axis=1)


def write_custom_dir(root: Path, items: dict[str, tuple[np.ndarray, int, str | None]], fmt: str = "flac") -> Path:
    """Write {id: (audio, rate, text or None)} as root/audio/<id>.<fmt> + root/transcriptions/<id>.txt."""
    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "transcriptions").mkdir(exist_ok=True)
    for utt_id, (audio, rate, text) in items.items():
        sf.write(root / "audio" / f"{utt_id}.{fmt}", audio, rate)
        if text is not None:
            (root / "transcriptions" / f"{utt_id}.txt").write_text(text + "\n")
    return root


SHORTEST = ["2830-3980-0043", "8455-210777-0068", "4507-16021-0012", "1034-121119-0046"]


@pytest.fixture
def tiny_set(tmp_path, librispeech_fixtures):
    """The four shortest LibriSpeech fixtures (about 10 s of audio) as a CustomDir."""
    root = tmp_path / "tiny"
    (root / "audio").mkdir(parents=True)
    (root / "transcriptions").mkdir()
    for utt in SHORTEST:
        (audio,) = (LIBRISPEECH_FIXTURES / "audio").glob(f"{utt}.*")
        shutil.copy(audio, root / "audio")
        shutil.copy(LIBRISPEECH_FIXTURES / "transcriptions" / f"{utt}.txt", root / "transcriptions")
    return root
