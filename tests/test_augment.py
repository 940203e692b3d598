"""Augmentations: exact behaviour of each one, reproducibility, and the preview command."""

import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import SPEECH

from asr import augment
from asr.audio import SAMPLE_RATE, LogMel
from asr.config import AUGMENT_PRESETS, AugmentConfig

NONE = AUGMENT_PRESETS["none"]


def speech_like(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """Noise bursts with gaps: enough structure for correlation checks."""
    rng = np.random.default_rng(seed)
    audio = rng.standard_normal(int(seconds * SAMPLE_RATE)).astype(np.float32) * 0.1
    audio[: SAMPLE_RATE // 10] = 0
    audio[SAMPLE_RATE // 2 : SAMPLE_RATE // 2 + 1600] = 0
    return audio


def only(name: str, **ranges) -> augment.Augmenter:
    return augment.Augmenter(dataclasses.replace(NONE, **{f"{name}_p": 1.0}, **ranges))


def test_probability_zero_is_bit_identical():
    audio = speech_like()
    features = torch.randn(100, 80)
    aug = augment.Augmenter(NONE)
    assert aug.wave(audio, np.random.default_rng(0)) is audio
    assert aug.spec(features, np.random.default_rng(0)) is features


@pytest.mark.parametrize("name", augment.WAVE_AUGMENTATIONS)
def test_probability_one_changes_the_audio_and_keeps_dtype(name):
    audio = speech_like()
    out = only(name).wave(audio, np.random.default_rng(1))
    assert out.dtype == np.float32 and out.ndim == 1
    assert out.shape != audio.shape or not np.array_equal(out, audio)
    if name not in ("shift", "speed"):
        assert out.shape == audio.shape  # only shift and speed change the length


def test_same_generator_state_gives_identical_output():
    audio, features = speech_like(), torch.randn(300, 80)
    aug = augment.Augmenter(AUGMENT_PRESETS["strong"])
    a = aug.wave(audio, np.random.default_rng([3, 1, 7]))
    b = aug.wave(audio, np.random.default_rng([3, 1, 7]))
    assert np.array_equal(a, b)
    assert torch.equal(aug.spec(features, np.random.default_rng(5)), aug.spec(features, np.random.default_rng(5)))


@pytest.mark.parametrize("snr", [0.0, 7.5, 20.0])
@pytest.mark.parametrize("color", ["white", "pink", "brown"])
def test_noise_snr_is_what_was_asked(snr, color):
    audio = speech_like(2.0)
    noise = augment.colored_noise(len(audio), color, np.random.default_rng(0))
    noisy = augment.add_noise(audio, noise, snr)
    added = noisy.astype(np.float64) - audio
    measured = 10 * np.log10(np.mean(audio.astype(np.float64) ** 2) / np.mean(added**2))
    assert abs(measured - snr) < 0.5


@pytest.mark.parametrize("factor", [0.9, 0.95, 1.05, 1.1])
def test_speed_changes_length_by_the_factor(factor):
    audio = speech_like(1.0)
    out = augment.speed(audio, factor)
    assert abs(len(out) - len(audio) / factor) <= 1


def test_time_shift_delays_content_without_wrapping():
    audio = speech_like(1.0)
    delay = 1234
    out = augment.time_shift(audio, delay)
    assert len(out) == len(audio) + delay and not out[:delay].any()
    corr = np.correlate(out, audio, mode="full")  # peak at lag = delay: order kept, nothing circular
    assert int(np.argmax(corr)) - (len(audio) - 1) == delay
    assert np.array_equal(out[delay:], audio)
    with pytest.raises(ValueError, match=">= 0"):
        augment.time_shift(audio, -1)


def test_pitch_shift_keeps_length_and_moves_a_tone():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = augment.pitch_shift(tone, 12.0)  # an octave up: 880 Hz
    assert len(out) == len(tone)
    peak_hz = np.argmax(np.abs(np.fft.rfft(out))) * SAMPLE_RATE / len(out)
    assert abs(peak_hz - 880) < 10


def test_reverb_keeps_alignment_and_level():
    audio = speech_like(1.0)
    rir = augment.synthetic_rir(0.5, 6.0, np.random.default_rng(0))
    assert rir[0] == 1.0
    wet = augment.reverberate(audio, rir)
    assert len(wet) == len(audio)
    corr = np.correlate(wet, audio, mode="full")
    assert int(np.argmax(corr)) == len(audio) - 1  # no delay: the direct path stays at lag 0
    assert np.mean(wet.astype(np.float64) ** 2) == pytest.approx(np.mean(audio.astype(np.float64) ** 2), rel=1e-3)


def test_telephone_removes_low_and_high_frequencies():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    low, mid, high = (np.sin(2 * np.pi * f * t) for f in (100, 1000, 6000))
    out = augment.telephone((0.2 * (low + mid + high)).astype(np.float32), 300, 3400, mulaw=False)
    spectrum = np.abs(np.fft.rfft(out))
    assert spectrum[1000] > 100 * spectrum[100] and spectrum[1000] > 100 * spectrum[6000]


def test_gain_and_peak_protection():
    audio = speech_like()
    assert np.allclose(augment.gain(audio, 6.0), audio * 10 ** (6 / 20))
    loud = only("gain", gain_db_min=40.0, gain_db_max=40.0).wave(audio, np.random.default_rng(0))
    assert np.abs(loud).max() == pytest.approx(1.0)  # scaled back to full scale, not clipped


@pytest.mark.parametrize("preset", ["light", "default", "strong"])
@pytest.mark.parametrize("signal", ["silence", "clipped"])
def test_no_nan_or_inf_on_silence_or_clipped_input(preset, signal):
    audio = np.zeros(SAMPLE_RATE, np.float32) if signal == "silence" else np.sign(speech_like()).astype(np.float32)
    aug = augment.Augmenter(AUGMENT_PRESETS[preset])
    for seed in range(5):
        out = aug.wave(audio, np.random.default_rng(seed))
        assert np.isfinite(out).all() and np.abs(out).max() <= 1.0
        feats = aug.spec(LogMel(80)(torch.from_numpy(out)), np.random.default_rng(seed))
        assert torch.isfinite(feats).all()


def test_spec_masks_cover_the_requested_widths():
    config = dataclasses.replace(NONE, spec_p=1.0, freq_masks=2, freq_mask_frac=0.2, time_masks_per_s=2.0,
                                 time_masks_max=10, time_mask_width=30, time_mask_frac=0.05)  # fmt: skip
    frames, n_mels = 500, 80  # 5 s -> 10 time masks of width <= min(30, 25)
    masks = augment.spec_masks(frames, n_mels, config, np.random.default_rng(0))
    time = [m for m in masks if m.axis == "time"]
    freq = [m for m in masks if m.axis == "freq"]
    assert len(time) == 10 and len(freq) == 2
    assert all(0 <= m.width <= 25 and m.start + m.width <= frames for m in time)
    assert all(0 <= m.width <= 16 and m.start + m.width <= n_mels for m in freq)
    features = torch.randn(frames, n_mels) + 5
    out = augment.apply_masks(features, masks)
    for m in masks:
        region = out[m.start : m.start + m.width] if m.axis == "time" else out[:, m.start : m.start + m.width]
        assert (region == 0).all()
    masked_cells = (out == 0).sum().item()
    assert masked_cells == int(((out == 0) & (features != 0)).sum())  # only masks zeroed anything
    short = augment.spec_masks(40, n_mels, config, np.random.default_rng(0))  # 0.4 s: fewer and narrower
    assert sum(m.axis == "time" for m in short) <= 1 and all(m.width <= 2 for m in short if m.axis == "time")


def test_bad_config_is_refused():
    with pytest.raises(ValueError):
        augment.Augmenter(dataclasses.replace(NONE, speed_min=1.2, speed_max=0.9))


def test_preview_writes_wav_and_png_for_every_augmentation(tmp_path):
    files = sorted((SPEECH / "misc" / "audio").glob("*"))
    if not files:
        pytest.skip(f"no audio in {SPEECH / 'misc'}")
    augment._main(["--preview", str(files[0]), "--out", str(tmp_path)])
    for name in ("original", *augment.WAVE_AUGMENTATIONS, "all"):
        audio, rate = sf.read(tmp_path / f"{name}.wav")
        assert rate == SAMPLE_RATE and len(audio) > 0
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "specaugment.png").exists()


def test_presets_are_configs():
    assert set(AUGMENT_PRESETS) == {"none", "light", "default", "strong"}
    assert AUGMENT_PRESETS["default"] == AugmentConfig()
