"""Audio loading and log-mel features.

Everything downstream sees 16 kHz mono float32 in [-1, 1]. Features are 80
log-mel energies per 10 ms frame from a 25 ms Hann window, normalised per
utterance: each mel channel gets zero mean and unit variance over the frames of
that utterance. Per-utterance normalisation removes recording gain and channel
colouring (a quiet microphone, a telephone line) without a dataset statistics
file that would have to travel with the model, and it behaves the same at
training and inference time. It needs the whole utterance, so a streaming model
(ModelConfig.features="global") uses fixed training-set statistics instead
(`feature_stats`), which it carries in its checkpoint.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

if TYPE_CHECKING:
    import torch

from asr.errors import ASRError

SAMPLE_RATE = 16000  # Hz
WIN_LENGTH = 400  # samples = 25 ms
HOP_LENGTH = 160  # samples = 10 ms
N_FFT = 512  # samples; next power of two above WIN_LENGTH
F_MIN = 20.0  # Hz; below this there is no speech, and the lowest mel filters would be empty
F_MAX = 7600.0  # Hz; keeps the top filter off the Nyquist edge that 8 kHz audio upsampled lacks
LOG_FLOOR = 1e-6  # added before the log so silence gives a finite value
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")


class AudioError(ASRError):
    """An audio file that cannot be used; the message names the file and the reason."""


class TorchaudioError(ImportError):
    """torchaudio is missing or was built for another torch; the message says what to install."""


@functools.cache
def torchaudio() -> ModuleType:
    """The torchaudio module, imported on first use so that a broken install fails with one clear line.

    torchaudio 2.11.1 declares `torch>=2.11` but does not load with torch 2.11-2.13 (undefined symbol);
    2.11.0 is built on torch's stable ABI and loads with torch 2.11 and later (requirements.txt)."""
    import torch  # here, not at the top: the ONNX runtime reads audio without torch (asr/onnx_runtime.py)

    try:
        import torchaudio as module
    except (ImportError, OSError) as e:  # OSError: libtorchaudio.so built against another torch
        reason = str(e).splitlines()[0][:160]
        raise TorchaudioError(
            f"torchaudio cannot be loaded with torch {torch.__version__} ({reason}). "
            "Install the tested pair: pip install 'torch>=2.11,<2.13' 'torchaudio==2.11.0'"
        ) from None
    return module


def load_audio(path: str | Path) -> np.ndarray:
    """Read any soundfile-supported file as 16 kHz mono float32, shape (samples,)."""
    path = Path(path)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (samples, channels)
    except Exception as e:  # soundfile raises several types for corrupt or unknown files
        raise AudioError(f"{path}: cannot decode audio ({e})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: file has no samples")
    audio = data.mean(axis=1)  # downmix to mono
    if not np.isfinite(audio).all():
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    if rate != SAMPLE_RATE:
        audio = resample(audio, rate)
    return np.ascontiguousarray(audio, dtype=np.float32)


def resample(audio: np.ndarray, rate: int) -> np.ndarray:
    """Resample (samples,) audio from `rate` Hz to SAMPLE_RATE with a windowed-sinc filter (torchaudio's; where
    torch is not installed, as for the ONNX runtime, `resample_numpy`, the same filter)."""
    if importlib.util.find_spec("torch") is None:
        return resample_numpy(audio, rate)
    import torch

    out = torchaudio().functional.resample(torch.from_numpy(audio), rate, SAMPLE_RATE)
    return out.numpy()


def resample_numpy(audio: np.ndarray, rate: int, zero_crossings: int = 6, rolloff: float = 0.99) -> np.ndarray:
    """`resample` without torch: torchaudio's default filter (a sinc low-pass at `rolloff` of the lower Nyquist
    frequency, Hann-windowed over `zero_crossings` zero crossings each side), computed in float64; equal to
    torchaudio's result to its float32 rounding (within 1e-4 for full-scale noise, tested)."""
    gcd = math.gcd(rate, SAMPLE_RATE)
    orig, new = rate // gcd, SAMPLE_RATE // gcd
    base = min(orig, new) * rolloff
    width = math.ceil(zero_crossings * orig / base)
    t = (np.arange(0, -new, -1)[:, None] / new + np.arange(-width, width + orig)[None, :] / orig) * base
    t = np.clip(t, -zero_crossings, zero_crossings)  # (new, 2 * width + orig)
    window = np.cos(t * math.pi / zero_crossings / 2) ** 2
    kernels = np.sinc(t) * window * (base / orig)  # np.sinc(x) = sin(pi x) / (pi x)
    padded = np.pad(np.asarray(audio, dtype=np.float64), (width, width + orig))
    frames = np.lib.stride_tricks.sliding_window_view(padded, kernels.shape[1])[::orig]  # (blocks, taps)
    out = (frames @ kernels.T).reshape(-1)  # each block of `orig` input samples gives `new` output samples
    return out[: math.ceil(new * len(audio) / orig)].astype(np.float32)


def duration_of(path: str | Path) -> float:
    """Duration in seconds from the file header (no decoding)."""
    try:
        info = sf.info(str(path))
    except Exception as e:
        raise AudioError(f"{path}: cannot read audio header ({e})") from None
    return info.frames / info.samplerate


def num_frames(num_samples: int) -> int:
    """Feature frames that `LogMel` makes from `num_samples` samples (centered STFT)."""
    return num_samples // HOP_LENGTH + 1


class LogMel:
    """(samples,) waveform tensor -> (frames, n_mels) normalised log-mel features: each utterance by its own mean
    and variance, or, given `mean` and `std` (n_mels,), by those (global statistics: every frame on its own).
    center=False: no zero padding at the edges (asr/stream.py pads a stream itself). `log_mel` is the numpy twin
    of the per-utterance case. A plain callable rather than a torch.nn.Module, so that importing this module does
    not import torch."""

    def __init__(
        self, n_mels: int = 80, mean: torch.Tensor | None = None, std: torch.Tensor | None = None,
        center: bool = True,
    ) -> None:  # fmt: skip
        self.stats = None if mean is None else (mean.float()[:, None], std.float()[:, None])  # (n_mels, 1) each
        self.mel = torchaudio().transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE,
            n_fft=N_FFT,
            win_length=WIN_LENGTH,
            hop_length=HOP_LENGTH,
            f_min=F_MIN,
            f_max=F_MAX,
            n_mels=n_mels,
            power=2.0,
            center=center,
            pad_mode="constant",  # zero padding at the edges works for clips shorter than a window
        )
        empty = (self.mel.mel_scale.fb.sum(dim=0) == 0).sum().item()
        if empty:
            raise ValueError(f"{empty} of {n_mels} mel filters are empty between {F_MIN} and {F_MAX} Hz; lower n_mels")

    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        logmel = self.log_mel(audio)  # (n_mels, frames)
        if self.stats is not None:
            mean, std = self.stats
            return ((logmel - mean) / std).T.contiguous()  # (frames, n_mels)
        mean = logmel.mean(dim=1, keepdim=True)
        std = logmel.std(dim=1, keepdim=True, unbiased=False)
        return ((logmel - mean) / (std + 1e-5)).T.contiguous()  # (frames, n_mels)

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """(samples,) -> (n_mels, frames) log-mel energies, not normalised."""
        import torch

        with torch.no_grad():
            return torch.log(self.mel(audio) + LOG_FLOOR)


STATS_UTTERANCES = 1000  # global feature statistics are estimated on at most this many training recordings
STD_FLOOR = 1e-3  # a mel channel with (almost) no variance is divided by this, not by ~0


def feature_stats(paths: list[Path], n_mels: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Global log-mel statistics for a streaming model: (mean, std, frames counted), (n_mels,) each.

    From at most STATS_UTTERANCES recordings spread evenly over `paths` taken in sorted order (deterministic), as
    they are on disk (no augmentation). Unreadable files are skipped; none readable raises AudioError."""
    paths = sorted(paths)
    step = max(1, len(paths) / STATS_UTTERANCES)
    chosen = [paths[int(i * step)] for i in range(min(len(paths), STATS_UTTERANCES))]
    import torch

    featurize = LogMel(n_mels)
    total, squares, frames = torch.zeros(n_mels, dtype=torch.float64), torch.zeros(n_mels, dtype=torch.float64), 0
    for path in chosen:
        try:
            logmel = featurize.log_mel(torch.from_numpy(load_audio(path))).double()  # (n_mels, frames)
        except AudioError:
            continue
        total += logmel.sum(dim=1)
        squares += (logmel**2).sum(dim=1)
        frames += logmel.shape[1]
    if frames == 0:
        raise AudioError(f"{paths[0] if paths else 'training set'}: no readable audio to estimate feature statistics")
    mean = total / frames
    std = (squares / frames - mean**2).clamp(min=0).sqrt().clamp(min=STD_FLOOR)
    return mean.float(), std.float(), frames


def log_mel(audio: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """(samples,) 16 kHz audio -> (frames, n_mels) float32 features: `LogMel` in numpy, equal within 1e-4.

    The ONNX runtime's front end (asr/onnx_runtime.py), so that transcribing needs no torch: the same centered
    STFT (zero padding, periodic Hann window of WIN_LENGTH centred in N_FFT), power spectrum, HTK mel filters
    without area normalisation, log with LOG_FLOOR and per-utterance normalisation, computed in float64."""
    logmel = log_mel_energies(np.pad(np.asarray(audio, dtype=np.float64), N_FFT // 2), n_mels)  # (frames, n_mels)
    mean, std = logmel.mean(axis=0), logmel.std(axis=0)
    return ((logmel - mean) / (std + 1e-5)).astype(np.float32)


def log_mel_energies(samples: np.ndarray, n_mels: int) -> np.ndarray:
    """(samples,) -> (frames, n_mels) float64 log-mel energies of every complete window, no padding and no
    normalisation: `LogMel(center=False).log_mel` in numpy (the streaming ONNX runtime frames a stream with it)."""
    samples = np.asarray(samples, dtype=np.float64)
    if len(samples) < N_FFT:
        return np.zeros((0, n_mels))
    frames = np.lib.stride_tricks.sliding_window_view(samples, N_FFT)[::HOP_LENGTH]  # (frames, N_FFT)
    power = np.abs(np.fft.rfft(frames * _stft_window(), axis=1)) ** 2  # (frames, N_FFT // 2 + 1)
    return np.log(power @ mel_filterbank(n_mels) + LOG_FLOOR)  # (frames, n_mels)


@functools.cache
def mel_filterbank(n_mels: int) -> np.ndarray:
    """(N_FFT // 2 + 1, n_mels) triangular HTK-mel filters from F_MIN to F_MAX, peak 1 (torchaudio's
    melscale_fbanks with norm=None, mel_scale="htk")."""
    freqs = np.linspace(0, SAMPLE_RATE // 2, N_FFT // 2 + 1)
    mels = np.linspace(_hz_to_mel(F_MIN), _hz_to_mel(F_MAX), n_mels + 2)
    edges = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)  # (n_mels + 2,) Hz
    slopes = edges[None, :] - freqs[:, None]  # (freqs, n_mels + 2)
    widths = np.diff(edges)
    rising, falling = -slopes[:, :-2] / widths[:-1], slopes[:, 2:] / widths[1:]
    return np.maximum(0.0, np.minimum(rising, falling))


def _hz_to_mel(hz: float) -> float:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


@functools.cache
def _stft_window() -> np.ndarray:
    """The periodic Hann window of WIN_LENGTH samples, zero-padded on both sides to N_FFT, as torch.stft pads it."""
    n = np.arange(WIN_LENGTH)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / WIN_LENGTH)
    left = (N_FFT - WIN_LENGTH) // 2
    return np.pad(window, (left, N_FFT - WIN_LENGTH - left))
