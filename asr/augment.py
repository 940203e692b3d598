"""Wave and spectrogram augmentations for training.

`Augmenter(config).wave(audio, rng)` applies, each with its own probability, the
wave augmentations of the registry `WAVE_AUGMENTATIONS` in order: time shift
(leading zeros), speed perturbation, pitch shift, reverberation, additive noise,
telephone channel, gain; a result louder than full scale is then scaled back to
peak 1 (scaling, not clipping, so no distortion is added). `Augmenter.spec(features,
rng)` applies SpecAugment frequency and time masks whose count and width adapt to
the utterance length. All randomness comes from the `numpy.random.Generator` passed
in, so the same generator state gives bit-identical output. Each augmentation draws
from its own stream, seeded by one draw from that generator and the augmentation's
name, so adding, removing or changing one never changes what another draws. The
transcript never changes: no augmentation drops or reorders speech.

Adding an augmentation: one function registered with `@wave_augmentation("name")`
(it draws its parameters from the generator it is given and calls a pure
function), a `name_p` probability field in `AugmentConfig` (ranges named
`..._min`/`..._max` are checked automatically), and its test. The "none" preset
sets every `*_p` field to 0, so it needs no edit.

The pure functions (`time_shift`, `speed`, `pitch_shift`, `reverberate`,
`add_noise`, `telephone`, `gain`, `spec_masks`, `apply_masks`) take explicit
parameters and are what the tests check exactly. `preview()` and
`python -m asr.augment --preview AUDIO --out DIR` show each augmentation alone,
before and after, as WAV files and spectrogram PNGs.
"""

import argparse
import dataclasses
import math
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
import torch

from asr.audio import AUDIO_EXTENSIONS, HOP_LENGTH, SAMPLE_RATE, AudioError, LogMel, load_audio, resample
from asr.config import AUGMENT_PRESETS, AugmentConfig
from asr.spectrogram import NORMALISED_RANGE, mel_db, render, render_db, write_png

NOISE_COLORS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # exponent of the 1/f^a power spectrum
RATIO_STEP = 0.01  # speed and pitch ratios are multiples of this: 16000 Hz * 0.01 = 160 Hz, so the
# resampler's gcd(rates) >= 160 and its polyphase filter stays small; an arbitrary ratio (gcd 1) takes seconds
MIN_SIGNAL_POWER = 1e-6  # -60 dBFS: noise on digital silence is scaled against this, not against zero power
NOISE_FLOOR_HZ = 50.0  # pink/brown spectra are flat below this, so the noise is not all sub-audible rumble
MULAW_MU = 255  # G.711 mu-law, 8 bits
_VOCODER_FFT = 512  # phase vocoder STFT size (32 ms) and hop (8 ms) for the pitch shift's time stretch
_VOCODER_HOP = 128


class Mask(NamedTuple):
    """One SpecAugment mask: `width` frames (axis "time") or mel channels (axis "freq") from `start`."""

    axis: str
    start: int
    width: int


# ---------------------------------------------------------------- wave level


def time_shift(audio: np.ndarray, delay: int) -> np.ndarray:
    """Delay (samples,) audio by `delay` samples of leading zeros; nothing is dropped or wrapped around."""
    if delay < 0:
        raise ValueError(f"time shift delay must be >= 0 samples, got {delay}")
    return np.concatenate([np.zeros(delay, dtype=audio.dtype), audio])


def speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Play (samples,) audio `factor` times faster by resampling: length / factor, pitch * factor."""
    return resample(np.ascontiguousarray(audio), _ratio_rate(factor))


def pitch_shift(audio: np.ndarray, semitones: float) -> np.ndarray:
    """Raise (or lower, if negative) the pitch of (samples,) audio; the length stays exactly the same.

    A phase vocoder first stretches the audio by the frequency ratio r, then resampling plays it r times
    faster, which restores the duration and multiplies every frequency by r. r is rounded to RATIO_STEP.
    """
    ratio = _ratio_rate(2.0 ** (semitones / 12.0)) / SAMPLE_RATE
    if ratio == 1.0 or len(audio) <= _VOCODER_FFT:  # a clip shorter than one STFT window is left as it is
        return audio.copy()
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    window = torch.hann_window(_VOCODER_FFT)
    spec = torch.stft(x, _VOCODER_FFT, _VOCODER_HOP, window=window, return_complex=True)  # (freq, frames)
    stretched = torch.from_numpy(_phase_vocoder(spec.numpy(), ratio))  # (freq, frames * ratio)
    long = torch.istft(stretched, _VOCODER_FFT, _VOCODER_HOP, window=window, length=round(len(audio) * ratio))
    out = speed(long.numpy(), ratio)
    # Two roundings (stretch length, resampled length) leave the result a sample or two off; pad/trim the end.
    out = np.concatenate([out[: len(audio)], np.zeros(max(len(audio) - len(out), 0), dtype=np.float32)])
    # The vocoder loses ~1.5 dB on speech (partials that do not fall on a peak); restore the input's level.
    power_in, power_out = np.mean(audio.astype(np.float64) ** 2), np.mean(out.astype(np.float64) ** 2)
    if power_out > 0:
        out *= np.float32(math.sqrt(power_in / power_out))
    return out


def synthetic_rir(rt60: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """A room impulse response: a unit direct path at sample 0, then exponentially decaying Gaussian noise.

    The tail's amplitude falls 60 dB in `rt60` seconds (where it is cut off) and its energy is `drr_db`
    below the direct path's. Keeping the direct path at sample 0 keeps the reverberant speech aligned.
    """
    if rt60 <= 0:
        raise ValueError(f"reverberation time must be > 0 s, got {rt60}")
    n = max(int(rt60 * SAMPLE_RATE), 2)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-3.0 * math.log(10.0) * t / rt60)  # 20*log10(e^(-3 ln10)) = -60 dB
    tail[0] = 0.0
    tail *= math.sqrt(10.0 ** (-drr_db / 10.0) / np.sum(tail**2))
    tail[0] = 1.0
    return tail


def reverberate(audio: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve (samples,) audio with `rir` (direct path at index 0) by FFT; same length and RMS as the input."""
    n = len(audio) + len(rir) - 1
    size = _fft_size(n)
    wet = np.fft.irfft(np.fft.rfft(audio, size) * np.fft.rfft(rir, size), size)[: len(audio)]
    # The tail past the end of the clip is dropped: it would be reverberant silence after the last word.
    power_in, power_out = np.mean(audio.astype(np.float64) ** 2), np.mean(wet**2)
    if power_out > 0:
        wet *= math.sqrt(power_in / power_out)
    return wet.astype(np.float32)


def colored_noise(num_samples: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with a 1/f^a power spectrum: white a=0, pink a=1, brown a=2; (num_samples,) float64."""
    if color not in NOISE_COLORS:
        raise ValueError(f"unknown noise colour {color!r}; choose from {', '.join(NOISE_COLORS)}")
    exponent = NOISE_COLORS[color]
    if exponent == 0.0 or num_samples < 2:
        return rng.standard_normal(num_samples)
    # The spectrum of white Gaussian noise is complex Gaussian, so draw that directly and shape it (one FFT,
    # not two), for a slightly longer block whose FFT is fast, then crop: the noise is stationary.
    size = _fft_size(num_samples)
    freqs = np.fft.rfftfreq(size, 1.0 / SAMPLE_RATE)
    shape = np.maximum(freqs, NOISE_FLOOR_HZ) ** (-exponent / 2.0)  # amplitude ~ f^(-a/2)
    shape[0] = 0.0  # no DC offset
    spectrum = rng.standard_normal(len(freqs)) + 1j * rng.standard_normal(len(freqs))
    return np.fft.irfft(spectrum * shape, size)[:num_samples]


def add_noise(audio: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Add `noise` (same length) scaled so that 10 log10(P_audio / P_noise) = `snr_db` over the whole clip.

    Digital silence has no power to measure against; its noise level is set against MIN_SIGNAL_POWER.
    """
    if noise.shape != audio.shape:
        raise ValueError(f"noise has shape {noise.shape}, audio {audio.shape}; crop or tile the noise first")
    signal_power = max(float(np.mean(audio.astype(np.float64) ** 2)), MIN_SIGNAL_POWER)
    noise_power = float(np.mean(noise.astype(np.float64) ** 2))
    if noise_power == 0.0:
        return audio.copy()
    scale = math.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (audio + scale * noise).astype(np.float32)


def telephone(audio: np.ndarray, low_hz: float, high_hz: float, mulaw: bool) -> np.ndarray:
    """A telephone line: optional 8-bit mu-law, then band-pass `low_hz`..`high_hz` (raised-cosine edges, by FFT).

    On a real line the codec samples at 8 kHz, so its quantisation noise stays inside the band; quantising
    first and band-passing after keeps it there too.
    """
    x = _mulaw_round_trip(audio) if mulaw else audio
    size = _fft_size(len(x))
    spectrum = np.fft.rfft(x, size)
    spectrum *= _band(np.fft.rfftfreq(size, 1.0 / SAMPLE_RATE), low_hz, high_hz)
    return np.fft.irfft(spectrum, size)[: len(x)].astype(np.float32)


def gain(audio: np.ndarray, db: float) -> np.ndarray:
    """Multiply (samples,) audio by 10^(db/20)."""
    return (audio * np.float32(10.0 ** (db / 20.0))).astype(np.float32)


# ---------------------------------------------------------------- spectrogram level


def spec_masks(frames: int, n_mels: int, config: AugmentConfig, rng: np.random.Generator) -> list[Mask]:
    """Draw SpecAugment masks for a (frames, n_mels) utterance.

    `freq_masks` frequency masks of width U{0..freq_mask_frac*n_mels}; time masks whose count is
    time_masks_per_s * seconds (the fractional part drawn at random, at most time_masks_max) and whose width
    is U{0..min(time_mask_width, time_mask_frac*frames)}, so short utterances get fewer, narrower masks.
    """
    masks = []
    widest = int(config.freq_mask_frac * n_mels)
    for _ in range(config.freq_masks):
        width = int(rng.integers(0, widest + 1))
        masks.append(Mask("freq", int(rng.integers(0, n_mels - width + 1)), width))
    expected = config.time_masks_per_s * frames * HOP_LENGTH / SAMPLE_RATE
    count = min(int(expected) + int(rng.random() < expected - int(expected)), config.time_masks_max)
    widest = min(config.time_mask_width, int(config.time_mask_frac * frames))
    for _ in range(count):
        width = int(rng.integers(0, widest + 1))
        masks.append(Mask("time", int(rng.integers(0, frames - width + 1)), width))
    return masks


def apply_masks(features: torch.Tensor, masks: list[Mask]) -> torch.Tensor:
    """A copy of (frames, n_mels) `features` with the masked cells set to 0 (the mean of normalised features)."""
    out = features.clone()
    for mask in masks:
        if mask.axis == "time":
            out[mask.start : mask.start + mask.width, :] = 0
        else:
            out[:, mask.start : mask.start + mask.width] = 0
    return out


# ---------------------------------------------------------------- the registry

WaveAugmentation = Callable[["Augmenter", np.ndarray, np.random.Generator], np.ndarray]
WAVE_AUGMENTATIONS: dict[str, WaveAugmentation] = {}  # name -> function, in order of application


def wave_augmentation(name: str) -> Callable[[WaveAugmentation], WaveAugmentation]:
    """Register a wave augmentation: applied with probability `AugmentConfig.<name>_p`, after those registered
    before it. The function gets the Augmenter (its config and files), (samples,) float32 audio and the
    augmentation's own generator; it returns float32 audio."""

    def register(function: WaveAugmentation) -> WaveAugmentation:
        if name in WAVE_AUGMENTATIONS or name == "spec":
            raise ValueError(f"augmentation {name!r} is registered twice; give it another name")
        WAVE_AUGMENTATIONS[name] = function
        return function

    return register


@wave_augmentation("shift")
def _shift(aug: "Augmenter", audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return time_shift(audio, int(rng.integers(0, int(aug.config.shift_max * SAMPLE_RATE) + 1)))


@wave_augmentation("speed")
def _speed(aug: "Augmenter", audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return speed(audio, rng.uniform(aug.config.speed_min, aug.config.speed_max))


@wave_augmentation("pitch")
def _pitch(aug: "Augmenter", audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return pitch_shift(audio, rng.uniform(-aug.config.pitch_semitones, aug.config.pitch_semitones))


@wave_augmentation("reverb")
def _reverb(aug: "Augmenter", audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    c = aug.config
    if aug.rir_files:
        rir = aug.load_rir(aug.rir_files[int(rng.integers(len(aug.rir_files)))])
    else:
        rir = synthetic_rir(
            rng.uniform(c.reverb_rt60_min, c.reverb_rt60_max), rng.uniform(c.reverb_drr_min, c.reverb_drr_max), rng
        )
    return reverberate(audio, rir)


@wave_augmentation("noise")
def _noise(aug: "Augmenter", audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    snr = rng.uniform(aug.config.noise_snr_min, aug.config.noise_snr_max)
    if aug.noise_files:
        noise = _noise_from_file(aug.noise_files[int(rng.integers(len(aug.noise_files)))], len(audio), rng)
    else:
        noise = colored_noise(len(audio), aug.colors[int(rng.integers(len(aug.colors)))], rng)
    return add_noise(audio, noise, snr)


@wave_augmentation("telephone")
def _telephone(aug: "Augmenter", audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    c = aug.config
    return telephone(audio, c.telephone_low_hz, c.telephone_high_hz, c.telephone_mulaw)


@wave_augmentation("gain")
def _gain(aug: "Augmenter", audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return gain(audio, rng.uniform(aug.config.gain_db_min, aug.config.gain_db_max))


def is_active(config: AugmentConfig) -> bool:
    """Whether any augmentation of `config` can fire (some `*_p` > 0), whatever preset it came from."""
    return any(getattr(config, f.name) > 0 for f in dataclasses.fields(config) if f.name.endswith("_p"))


def make_augmenter(config: AugmentConfig) -> "Augmenter | None":
    """An Augmenter for `config`, or None when every probability is 0 (training skips augmentation entirely)."""
    return Augmenter(config) if is_active(config) else None


# ---------------------------------------------------------------- the augmenter


class Augmenter:
    """Applies the augmentations of an AugmentConfig; all randomness from the generator passed in."""

    def __init__(self, config: AugmentConfig) -> None:
        _check_config(config)
        self.config = config
        self.colors = _colors(config.noise_colors)
        self.noise_files = _audio_files(config.noise_dir, "noise_dir") if config.noise_dir else []
        self.rir_files = _audio_files(config.rir_dir, "rir_dir") if config.rir_dir else []
        self._rirs: dict[Path, np.ndarray] = {}  # loaded on first use; impulse responses are short

    def wave(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(samples,) float32 16 kHz audio -> augmented float32 audio; the length changes with shift and speed.

        When no augmentation fires, the input array itself is returned (bit-identical).
        """
        if audio.ndim != 1 or audio.dtype != np.float32:
            raise ValueError(f"need (samples,) float32 audio, got shape {audio.shape} dtype {audio.dtype}")
        key = _key(rng)  # one draw, always: what the caller's generator gives next never depends on the registry
        if len(audio) == 0:
            return audio
        out = audio
        for name, function in WAVE_AUGMENTATIONS.items():
            r = _stream(key, name)
            if r.random() < getattr(self.config, f"{name}_p"):
                out = function(self, out, r)
        if out is audio:
            return audio
        peak = float(np.max(np.abs(out))) if len(out) else 0.0
        if peak > 1.0:
            out = out / np.float32(peak)
        return np.ascontiguousarray(out, dtype=np.float32)

    def spec(self, features: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """(frames, n_mels) normalised log-mel -> the same shape and dtype with SpecAugment masks set to 0."""
        if features.ndim != 2:
            raise ValueError(f"need (frames, n_mels) features, got shape {tuple(features.shape)}")
        r = _stream(_key(rng), "spec")
        if r.random() >= self.config.spec_p:
            return features
        return apply_masks(features, spec_masks(features.shape[0], features.shape[1], self.config, r))

    def load_rir(self, path: Path) -> np.ndarray:
        """A recorded impulse response, cut to start at its peak (the direct path) and scaled to peak 1."""
        if path not in self._rirs:
            rir = load_audio(path).astype(np.float64)
            peak = int(np.argmax(np.abs(rir)))
            if rir[peak] == 0:
                raise AudioError(f"{path}: impulse response is all zeros; remove it from rir_dir")
            self._rirs[path] = rir[peak:] / rir[peak]
        return self._rirs[path]


def preview(audio: np.ndarray, config: AugmentConfig, seed: int) -> list[tuple[str, np.ndarray]]:
    """[("original", audio), (name, audio with only that augmentation, p=1), ..., ("all", the full config)].

    Each augmentation uses the ranges of `config`; "all" applies `config` as training would.
    """
    off = {f"{name}_p": 0.0 for name in WAVE_AUGMENTATIONS}
    out = [("original", audio)]
    for name in WAVE_AUGMENTATIONS:  # the same seed for each: "all" draws the parameters shown alone
        alone = Augmenter(dataclasses.replace(config, **{**off, f"{name}_p": 1.0}))
        out.append((name, alone.wave(audio, np.random.default_rng(seed))))
    out.append(("all", Augmenter(config).wave(audio, np.random.default_rng(seed))))
    return out


def preview_spec(features: torch.Tensor, config: AugmentConfig, seed: int) -> torch.Tensor:
    """(frames, n_mels) features with this config's SpecAugment masks applied (p=1), for before/after panels."""
    masked = Augmenter(dataclasses.replace(config, spec_p=1.0))
    return masked.spec(features, np.random.default_rng(seed))


def preview_panels(
    audio: np.ndarray, config: AugmentConfig, seed: int, logmel: LogMel
) -> list[tuple[str, np.ndarray | None, np.ndarray]]:
    """[(name, audio or None, (height, width, 3) uint8 picture)] for the previews and TensorBoard.

    First `preview()`'s clips, each pictured as mel dB against the original's loudest cell (so gain and noise
    show); then "features" and "specaugment": the normalised features the model sees, before and after this
    config's SpecAugment masks (p=1), which have no audio of their own.
    """
    top = float(mel_db(logmel, audio).max())
    panels: list[tuple[str, np.ndarray | None, np.ndarray]] = [
        (name, wave, render_db(mel_db(logmel, wave), top)) for name, wave in preview(audio, config, seed)
    ]
    features = logmel(torch.from_numpy(audio))  # (frames, n_mels) normalised
    for name, feats in [("features", features), ("specaugment", preview_spec(features, config, seed))]:
        panels.append((name, None, render(feats.numpy(), *NORMALISED_RANGE)))
    return panels


# ---------------------------------------------------------------- private helpers


def _key(rng: np.random.Generator) -> int:
    """One draw from the caller's generator: the seed shared by the augmentations of one call."""
    return int(rng.integers(0, 2**63))


def _stream(key: int, name: str) -> np.random.Generator:
    """Augmentation `name`'s own generator for one call: seeded by `key` and a stable hash of the name (crc32,
    the same in every process), so it does not depend on which other augmentations exist or fire."""
    return np.random.default_rng([key, zlib.crc32(name.encode())])


def _phase_vocoder(spec: np.ndarray, stretch: float) -> np.ndarray:
    """Stretch a (freq, frames) complex STFT (hop _VOCODER_HOP) to frames * `stretch` frames.

    Output frame k reads the input at t = k / stretch, magnitudes interpolated between the neighbouring frames.
    Each bin's phase advances by its measured instantaneous frequency (the classic phase vocoder), then
    identity phase locking (Laroche & Dolson 1999) gives every bin the phase of its nearest spectral peak plus
    the input's phase offset from that peak: without it the bins of one partial drift apart, overlap-add
    partly cancels them (speech lost ~3.5 dB) and the result sounds phasey. Vectorised numpy: torch's complex
    abs/angle/polar are several times slower on the CPU.
    """
    bins, frames = spec.shape
    padded = np.concatenate([spec, np.zeros((bins, 1), spec.dtype)], axis=1)  # frame i + 1 exists for the last i
    magnitude, phase = np.abs(padded), np.angle(padded)  # float32
    t = np.arange(0, frames, 1.0 / stretch)
    t = t[t < frames]  # float arange can end on `frames` itself (e.g. 100 frames, stretch 1.09)
    i = t.astype(np.int64)
    alpha = (t - i).astype(np.float32)
    out_magnitude = (1 - alpha) * magnitude[:, i] + alpha * magnitude[:, i + 1]  # (bins, out_frames)
    # Phase step per hop at each bin centre, 2 pi k hop / n_fft, taken modulo 2 pi so the running sums stay
    # small enough (~1e4 rad) for float32.
    expected = np.mod(2 * np.pi * np.arange(bins) * _VOCODER_HOP / _VOCODER_FFT, 2 * np.pi).astype(np.float32)[:, None]
    phase_i = phase[:, i]
    delta = phase[:, i + 1] - phase_i - expected
    delta -= np.float32(2 * np.pi) * np.round(delta / np.float32(2 * np.pi))  # off-centre part, in [-pi, pi]
    advanced = np.empty_like(delta)
    advanced[:, 0] = phase[:, 0]
    np.cumsum(delta[:, :-1] + expected, axis=1, out=advanced[:, 1:])
    advanced[:, 1:] += phase[:, :1]
    # Identity phase locking: nearest local maximum of the magnitude along frequency, per output frame.
    rows = np.arange(bins, dtype=np.int16)[:, None]
    m = out_magnitude
    is_peak = np.zeros(m.shape, dtype=bool)
    is_peak[1:-1] = (m[1:-1] > m[:-2]) & (m[1:-1] >= m[2:])
    below = np.maximum.accumulate(np.where(is_peak, rows, np.int16(-2 * bins)), axis=0)  # nearest peak at/below
    above = np.minimum.accumulate(np.where(is_peak, rows, np.int16(3 * bins))[::-1], axis=0)[::-1]  # at/above
    nearest = np.where(rows - below <= above - rows, below, above)
    nearest = np.where((nearest < 0) | (nearest >= bins), rows, nearest)  # a frame without peaks stays unlocked
    out_phase = np.take_along_axis(advanced - phase_i, nearest.astype(np.intp), axis=0) + phase_i
    out = np.empty(m.shape, dtype=np.complex64)
    out.real = out_magnitude * np.cos(out_phase)
    out.imag = out_magnitude * np.sin(out_phase)
    return out


def _ratio_rate(ratio: float) -> int:
    """The source rate in Hz that resampling to SAMPLE_RATE plays `ratio` times faster, ratio rounded to RATIO_STEP."""
    steps = round(ratio / RATIO_STEP)
    if steps <= 0:
        raise ValueError(f"speed/pitch ratio must be >= {RATIO_STEP}, got {ratio}")
    return steps * round(SAMPLE_RATE * RATIO_STEP)


def _fft_size(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n: FFTs of such sizes are fast, and they waste less than powers of two."""
    best = 1 << max(n - 1, 0).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            size = p35
            while size < n:
                size *= 2
            best = min(best, size)
            p35 *= 3
        p5 *= 5
    return best


def _band(freqs: np.ndarray, low_hz: float, high_hz: float, edge_hz: float = 100.0) -> np.ndarray:
    """Gain 1 inside low..high Hz, 0 outside, with raised-cosine transitions `edge_hz` wide (less ringing)."""
    rise = np.clip((freqs - (low_hz - edge_hz / 2)) / edge_hz, 0.0, 1.0)
    fall = np.clip(((high_hz + edge_hz / 2) - freqs) / edge_hz, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * np.minimum(rise, fall))


def _mulaw_round_trip(audio: np.ndarray) -> np.ndarray:
    """Encode to 8-bit mu-law and decode: quantisation noise that follows the signal level, as on a phone line."""
    x = np.clip(audio, -1.0, 1.0)
    encoded = np.sign(x) * np.log1p(MULAW_MU * np.abs(x)) / math.log1p(MULAW_MU)
    levels = np.round((encoded + 1.0) / 2.0 * MULAW_MU) / MULAW_MU * 2.0 - 1.0  # 256 levels in [-1, 1]
    return np.sign(levels) * np.expm1(np.abs(levels) * math.log1p(MULAW_MU)) / MULAW_MU


def _audio_files(folder: str, field: str) -> list[Path]:
    """The audio files under `folder` (recursive, sorted), each checked to have a readable header."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{field}={folder}: not a folder; point it at a folder of audio files or unset it")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"{field}={folder}: no {'/'.join(AUDIO_EXTENSIONS)} files found")
    for path in files:
        try:
            sf.info(str(path))
        except Exception as e:  # soundfile raises several types for corrupt or unknown files
            raise AudioError(f"{path}: cannot read audio header ({e}); remove it from {field}") from None
    return files


def _noise_from_file(path: Path, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """`num_samples` of a noise recording from a random offset, read without decoding the whole file; tiled if short."""
    info = sf.info(str(path))
    need = math.ceil(num_samples * info.samplerate / SAMPLE_RATE) + 1
    start = int(rng.integers(0, max(info.frames - need, 0) + 1))
    try:
        data, rate = sf.read(str(path), start=start, frames=need, dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioError(f"{path}: cannot decode noise audio ({e}); remove it from noise_dir") from None
    noise = data.mean(axis=1)
    if rate != SAMPLE_RATE:
        noise = resample(np.ascontiguousarray(noise), rate)
    if len(noise) == 0:
        raise AudioError(f"{path}: noise file has no samples; remove it from noise_dir")
    return np.resize(noise, num_samples)  # np.resize repeats a short recording end to end


def _colors(text: str) -> list[str]:
    """ "white, pink" -> ["white", "pink"]."""
    return [x.strip() for x in text.split(",") if x.strip()]


def _check_config(c: AugmentConfig) -> None:
    """Raise ValueError naming the field for probabilities outside [0, 1] and empty or reversed ranges."""
    for f in dataclasses.fields(c):
        if f.name.endswith("_p") and not 0.0 <= getattr(c, f.name) <= 1.0:
            raise ValueError(f"augment {f.name}={getattr(c, f.name)}: a probability must be in [0, 1]")
    missing = [name for name in WAVE_AUGMENTATIONS if not hasattr(c, f"{name}_p")]
    if missing:
        raise ValueError(f"augmentations {', '.join(missing)} have no probability field; add <name>_p to AugmentConfig")
    names = {f.name for f in dataclasses.fields(c)}
    pairs = [(n, n[: -len("_min")] + "_max") for n in names if n.endswith("_min")]  # every <x>_min/<x>_max range
    for low, high in sorted(p for p in pairs if p[1] in names) + [("telephone_low_hz", "telephone_high_hz")]:
        if getattr(c, low) > getattr(c, high):
            raise ValueError(f"augment {low}={getattr(c, low)} > {high}={getattr(c, high)}; swap them")
    if c.speed_min < 0.5 or c.speed_max > 2.0:
        raise ValueError(f"augment speed range {c.speed_min}..{c.speed_max}: keep factors within 0.5..2")
    if c.reverb_rt60_min <= 0:
        raise ValueError(f"augment reverb_rt60_min={c.reverb_rt60_min}: reverberation time must be > 0 s")
    if c.telephone_low_hz <= 0 or c.telephone_high_hz >= SAMPLE_RATE / 2:
        raise ValueError(f"augment telephone band must lie within 0..{SAMPLE_RATE // 2} Hz")
    colors = _colors(c.noise_colors)
    if not colors or any(x not in NOISE_COLORS for x in colors):
        raise ValueError(f"augment noise_colors={c.noise_colors!r}: use a comma list of {', '.join(NOISE_COLORS)}")
    if min(c.shift_max, c.pitch_semitones, c.freq_mask_frac, c.time_masks_per_s, c.time_mask_frac) < 0:
        raise ValueError("augment shift_max, pitch_semitones and the mask sizes must be >= 0")
    if min(c.freq_masks, c.time_masks_max, c.time_mask_width) < 0:
        raise ValueError("augment freq_masks, time_masks_max and time_mask_width must be >= 0")


# ---------------------------------------------------------------- preview CLI and images


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Write each augmentation of a preset, alone, as <name>.wav and a <name>.png log-mel spectrogram."
    )
    parser.add_argument("--preview", required=True, metavar="AUDIO", help="any audio file (wav/flac/mp3/ogg)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the WAV and PNG files")
    parser.add_argument(
        "--augment", default="default", choices=list(AUGMENT_PRESETS), help="preset whose ranges to use"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for the drawn parameters")
    parser.add_argument("--n-mels", "--n_mels", dest="n_mels", type=int, default=80, help="mel channels in the images")
    args = parser.parse_args(argv)

    audio = load_audio(args.preview)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, wave, picture in preview_panels(audio, AUGMENT_PRESETS[args.augment], args.seed, LogMel(args.n_mels)):
        write_png(out / f"{name}.png", picture)
        if wave is None:
            print(f"{name:11s} normalised log-mel  {out / name}.png")
            continue
        sf.write(str(out / f"{name}.wav"), wave, SAMPLE_RATE, subtype="PCM_16")
        print(f"{name:11s} {len(wave) / SAMPLE_RATE:6.2f} s  {out / name}.wav  {out / name}.png")


if __name__ == "__main__":
    try:
        _main()
    except (AudioError, FileNotFoundError, ValueError) as e:  # bad input: the message names it; no traceback
        sys.exit(f"error: {e}")
