import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import tone

from asr.audio import HOP_LENGTH, SAMPLE_RATE, AudioError, LogMel, duration_of, load_audio, num_frames


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_any_rate_becomes_16k_mono_float32(tmp_path, rate):
    path = tmp_path / "x.wav"
    sf.write(path, tone(1.0, rate, channels=2), rate)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - SAMPLE_RATE) <= 1
    assert abs(duration_of(path) - 1.0) < 1e-9


@pytest.mark.parametrize("fmt", ["flac", "ogg", "mp3"])
def test_compressed_formats(tmp_path, fmt):
    path = tmp_path / f"x.{fmt}"
    sf.write(path, tone(0.5), SAMPLE_RATE)
    audio = load_audio(path)
    assert abs(len(audio) - SAMPLE_RATE // 2) < 0.05 * SAMPLE_RATE  # mp3 pads a few frames
    assert np.abs(audio).max() > 0.2


def test_stereo_is_averaged(tmp_path):
    path = tmp_path / "s.wav"
    stereo = np.stack([np.full(1600, 0.5), np.full(1600, -0.1)], axis=1).astype(np.float32)
    sf.write(path, stereo, SAMPLE_RATE, subtype="FLOAT")
    assert np.allclose(load_audio(path), 0.2)


@pytest.mark.parametrize(
    ("content", "reason"), [(b"", "cannot decode"), (b"RIFF\x00\x00garbage" * 10, "cannot decode")]
)
def test_corrupt_or_empty_files_name_the_file(tmp_path, content, reason):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=rf"bad\.wav: {reason}"):
        load_audio(path)
    with pytest.raises(AudioError, match=r"bad\.wav"):
        duration_of(path)


def test_zero_sample_audio(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), SAMPLE_RATE)
    with pytest.raises(AudioError, match="no samples"):
        load_audio(path)


def test_logmel_shape_and_normalisation():
    featurize = LogMel(80)
    assert (featurize.mel.mel_scale.fb.sum(dim=0) > 0).all()  # no empty mel filters
    audio = torch.from_numpy(tone(1.0)) + 0.01 * torch.randn(SAMPLE_RATE)
    feats = featurize(audio)
    assert feats.shape == (num_frames(SAMPLE_RATE), 80) == (SAMPLE_RATE // HOP_LENGTH + 1, 80)
    assert torch.allclose(feats.mean(dim=0), torch.zeros(80), atol=1e-4)
    assert torch.allclose(feats.std(dim=0, unbiased=False), torch.ones(80), atol=1e-3)


def test_logmel_of_silence_and_single_sample_is_finite():
    featurize = LogMel(80)
    assert torch.isfinite(featurize(torch.zeros(SAMPLE_RATE))).all()
    assert featurize(torch.zeros(1)).shape == (1, 80)


def test_logmel_is_gain_invariant():
    featurize = LogMel(40)
    audio = torch.from_numpy(tone(0.5)) + 0.05 * torch.randn(SAMPLE_RATE // 2)
    assert torch.allclose(featurize(audio), featurize(0.1 * audio), atol=1e-2)  # up to the log floor


def test_a_torchaudio_that_cannot_load_is_one_line_that_says_what_to_install(tmp_path):
    """torchaudio 2.11.1 with torch 2.11 fails with an undefined symbol; the user sees one line, not a traceback."""
    fake = tmp_path / "torchaudio"
    fake.mkdir()
    (fake / "__init__.py").write_text('raise OSError("libtorchaudio.so: undefined symbol: torch_exception_get_what")\n')
    repo = Path(__file__).resolve().parents[1]
    env = os.environ | {"PYTHONPATH": f"{tmp_path}{os.pathsep}{repo}"}
    args = ["--runs_dir", str(tmp_path / "runs"), "--epochs", "1", "--no-tensorboard"]
    done = subprocess.run([sys.executable, "train.py", *args], cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and not (tmp_path / "runs").exists()  # run_cli: bad input exits 2
    assert done.stderr.strip().splitlines() == [
        f"error: torchaudio cannot be loaded with torch {torch.__version__} (libtorchaudio.so: undefined symbol: "
        "torch_exception_get_what). Install the tested pair: pip install 'torch>=2.11,<2.13' 'torchaudio==2.11.0'"
    ]


def test_project_errors_share_one_base():
    """Every bad-input error of the project is an ASRError, so run_cli reports each as one line."""
    from asr.archive import UnsafeArchiveError
    from asr.download import ChecksumError, DownloadError, UnsafeNameError
    from asr.errors import ASRError
    from asr.lm import ArpaFormatError

    for kind in (AudioError, DownloadError, ChecksumError, UnsafeNameError, UnsafeArchiveError, ArpaFormatError):
        assert issubclass(kind, ASRError), kind
    # the old bases stay, so code that caught them still does
    assert issubclass(DownloadError, RuntimeError) and issubclass(UnsafeArchiveError, ValueError)
    assert issubclass(ArpaFormatError, ValueError)
