"""Augmentations: exact behaviour of each one, reproducibility, and the preview command."""

import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import SPEECH

from asr import augment, spectrogram
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
    assert set(AUGMENT_PRESETS) == {"none", "light", "default", "librispeech", "strong"}
    assert AUGMENT_PRESETS["default"] == AugmentConfig()


def test_spec_with_probability_one_masks_and_keeps_shape_and_dtype():
    aug = augment.Augmenter(dataclasses.replace(NONE, spec_p=1.0, time_masks_per_s=2.0))
    for dtype in (torch.float32, torch.float64):
        features = torch.randn(300, 80, dtype=dtype) + 5  # no zeros before masking
        out = aug.spec(features, np.random.default_rng(0))
        assert out.shape == features.shape and out.dtype == dtype
        assert (out == 0).any() and torch.equal(out[out != 0], features[out != 0])


def test_wave_refuses_other_dtypes_and_shapes():
    aug = augment.Augmenter(NONE)
    with pytest.raises(ValueError, match="float32"):
        aug.wave(speech_like().astype(np.float64), np.random.default_rng(0))
    with pytest.raises(ValueError, match="float32"):
        aug.wave(np.zeros((2, 100), np.float32), np.random.default_rng(0))


def test_one_augmentation_does_not_change_what_another_draws():
    audio = speech_like()
    shifted = only("shift").wave(audio, np.random.default_rng(4))
    # A 0 dB gain multiplies by exactly 1.0, so any difference could only come from a changed shift draw.
    both = augment.Augmenter(dataclasses.replace(NONE, shift_p=1.0, gain_p=1.0, gain_db_min=0.0, gain_db_max=0.0))
    assert np.array_equal(both.wave(audio, np.random.default_rng(4)), shifted)


def test_time_shift_through_the_augmenter_only_adds_leading_zeros():
    audio = speech_like()
    aug = only("shift", shift_max=0.25)
    for seed in range(5):
        out = aug.wave(audio, np.random.default_rng(seed))
        delay = len(out) - len(audio)
        assert 0 <= delay <= SAMPLE_RATE // 4
        assert not out[:delay].any() and np.array_equal(out[delay:], audio)


@pytest.mark.parametrize("color", ["white", "pink", "brown"])
def test_augmenter_noise_snr_is_the_drawn_value(color):
    audio = speech_like(2.0)
    aug = only("noise", noise_snr_min=12.0, noise_snr_max=12.0, noise_colors=color)
    added = aug.wave(audio, np.random.default_rng(0)).astype(np.float64) - audio
    measured = 10 * np.log10(np.mean(audio.astype(np.float64) ** 2) / np.mean(added**2))
    assert abs(measured - 12.0) < 0.01  # exact up to float32 rounding (the issue asks for +-0.5 dB)


def test_noise_colours_have_their_spectral_slopes():
    rng = np.random.default_rng(0)
    freqs = np.fft.rfftfreq(SAMPLE_RATE * 4, 1 / SAMPLE_RATE)
    for color, slope_db_per_octave in [("white", 0.0), ("pink", -3.0), ("brown", -6.0)]:
        power = np.abs(np.fft.rfft(augment.colored_noise(SAMPLE_RATE * 4, color, rng))) ** 2
        octave_up = power[(freqs >= 2000) & (freqs < 2200)].mean() / power[(freqs >= 1000) & (freqs < 1100)].mean()
        per_octave = 10 * np.log10(octave_up)
        assert abs(per_octave - slope_db_per_octave) < 0.5, color


def test_noise_from_a_folder_of_recordings(tmp_path):
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "hum.wav", 0.1 * rng.standard_normal((4000, 2)), 8000)  # short, stereo, 8 kHz: tiled
    audio = speech_like(2.0)
    aug = augment.Augmenter(dataclasses.replace(NONE, noise_p=1.0, noise_snr_min=3.0, noise_snr_max=3.0,
                                                noise_dir=str(tmp_path)))  # fmt: skip
    out = aug.wave(audio, np.random.default_rng(1))
    added = out.astype(np.float64) - audio
    assert abs(10 * np.log10(np.mean(audio.astype(np.float64) ** 2) / np.mean(added**2)) - 3.0) < 0.01
    assert np.array_equal(out, aug.wave(audio, np.random.default_rng(1)))
    (tmp_path / "broken.wav").write_bytes(b"not audio")
    with pytest.raises(augment.AudioError, match="broken.wav"):
        augment.Augmenter(dataclasses.replace(NONE, noise_dir=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="noise_dir"):
        augment.Augmenter(dataclasses.replace(NONE, noise_dir=str(tmp_path / "missing")))


def test_synthetic_rir_has_the_drawn_drr_and_decay():
    rt60, drr = 0.6, 8.0
    rir = augment.synthetic_rir(rt60, drr, np.random.default_rng(0))
    assert len(rir) == int(rt60 * SAMPLE_RATE) and rir[0] == 1.0
    assert 10 * np.log10(1.0 / np.sum(rir[1:] ** 2)) == pytest.approx(drr, abs=1e-9)
    ms = lambda a, b: np.mean(rir[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)] ** 2)  # noqa: E731
    decay_db = 10 * np.log10(ms(0.01, 0.05) / ms(rt60 - 0.05, rt60 - 0.01))
    assert decay_db == pytest.approx(60 * (rt60 - 0.06) / rt60, abs=1.0)  # 60 dB per rt60; window centres 0.54 s apart


def test_recorded_rir_is_aligned_to_its_peak(tmp_path):
    rir = np.zeros(2000)
    rir[100] = -0.5  # direct path after 100 samples of lead-in, negative polarity
    rir[101:] = -0.05 * np.exp(-np.arange(1899) / 300) * np.random.default_rng(0).standard_normal(1899)
    sf.write(tmp_path / "room.wav", rir, SAMPLE_RATE, subtype="FLOAT")
    audio = speech_like()
    wet = only("reverb", rir_dir=str(tmp_path)).wave(audio, np.random.default_rng(0))
    corr = np.correlate(wet, audio, mode="full")
    assert int(np.argmax(corr)) == len(audio) - 1  # the 100-sample lead-in is cut: no delay, no inversion
    assert np.mean(wet.astype(np.float64) ** 2) == pytest.approx(np.mean(audio.astype(np.float64) ** 2), rel=1e-3)


def test_speed_moves_a_tone_and_rounds_the_factor():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * 400 * t)).astype(np.float32)
    out = augment.speed(tone, 1.1)
    peak_hz = np.argmax(np.abs(np.fft.rfft(out))) * SAMPLE_RATE / len(out)
    assert abs(peak_hz - 440) < 1.5  # bin spacing of a 0.91 s clip is 1.1 Hz
    assert np.array_equal(augment.speed(tone, 1.1037), out)  # factors are rounded to RATIO_STEP


def test_pitch_shift_down_keeps_length_and_level():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = augment.pitch_shift(tone, -12.0)
    peak_hz = np.argmax(np.abs(np.fft.rfft(out))) * SAMPLE_RATE / len(out)
    assert len(out) == len(tone) and abs(peak_hz - 220) < 5
    speech = speech_like()
    shifted = augment.pitch_shift(speech, 1.7)
    assert len(shifted) == len(speech)
    assert np.mean(shifted.astype(np.float64) ** 2) == pytest.approx(np.mean(speech.astype(np.float64) ** 2), rel=1e-4)


def test_telephone_mulaw_noise_stays_in_the_band():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    out = augment.telephone(tone, 300, 3400, mulaw=True)
    spectrum = np.abs(np.fft.rfft(out)) ** 2
    in_band = spectrum[300:3400].sum()
    assert 10 * np.log10(in_band / spectrum[3600:].sum()) > 60  # quantisation noise is band-passed too
    error = out.astype(np.float64) - tone
    assert 10 * np.log10(np.mean(tone.astype(np.float64) ** 2) / np.mean(error**2)) > 30  # 8-bit mu-law


@pytest.mark.parametrize(
    ("field", "value"),
    [("noise_p", 1.5), ("spec_p", -0.1), ("noise_colors", "purple"), ("speed_min", 0.3), ("telephone_high_hz", 9000)],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field.split("_")[0]):
        augment.Augmenter(dataclasses.replace(NONE, **{field: value}))


def test_preview_shows_each_augmentation_alone_and_is_reproducible():
    audio = speech_like()
    first = augment.preview(audio, AUGMENT_PRESETS["default"], seed=3)
    assert [name for name, _ in first] == ["original", *augment.WAVE_AUGMENTATIONS, "all"]
    assert first[0][1] is audio
    for name, wave in first[1:-1]:
        assert wave.shape != audio.shape or not np.array_equal(wave, audio), name
    second = augment.preview(audio, AUGMENT_PRESETS["none"], seed=3)  # p=0 presets still preview their ranges
    for (name, a), (_, b) in zip(first[1:-1], second[1:-1], strict=True):
        assert np.array_equal(a, b), name
    assert second[-1][1] is audio  # "all" with everything off is the input itself


def test_png_writer_round_trips_pixels(tmp_path):
    import struct

    from PIL import Image

    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    spectrogram.write_png(tmp_path / "x.png", rgb)
    data = (tmp_path / "x.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">IIBB", data[16:26]) == (3, 2, 8, 2)  # width, height, 8 bits, RGB
    with Image.open(tmp_path / "x.png") as png:
        assert png.mode == "RGB" and np.array_equal(np.asarray(png), rgb)
    image = spectrogram.render(np.array([[0.0, 1.0], [0.5, 0.25]]), 0.0, 1.0, row_repeat=2)  # (frames, channels)
    assert image.shape == (4, 2, 3) and tuple(image[3, 0]) == (0, 0, 4) and tuple(image[0, 0]) == (252, 253, 191)


@pytest.mark.slow
def test_preview_command_works_on_every_shared_recording(tmp_path):
    files = sorted(p for p in SPEECH.glob("*/audio/*") if p.is_file())
    if not files:
        pytest.skip(f"no recordings under {SPEECH} (../shared beside the repo)")
    for path in files:
        augment._main(["--preview", str(path), "--out", str(tmp_path / path.stem)])
        for name in ("original", *augment.WAVE_AUGMENTATIONS, "all"):
            audio, rate = sf.read(tmp_path / path.stem / f"{name}.wav")
            assert rate == SAMPLE_RATE and len(audio) > 0 and np.isfinite(audio).all(), (path, name)


@pytest.mark.parametrize(("samples", "semitones"), [(12672, 1.49), (25472, 1.49), (3072, 1.96)])
def test_pitch_shift_at_lengths_where_float_arange_overshoots(samples, semitones):
    """Regression: 100 STFT frames stretched by 1.09 made np.arange end on the last frame + 1 (IndexError)."""
    audio = speech_like(samples / SAMPLE_RATE)
    out = augment.pitch_shift(audio, semitones)
    assert len(out) == len(audio) and np.isfinite(out).all()


def test_every_augmentation_survives_clips_of_any_length():
    config = dataclasses.replace(AUGMENT_PRESETS["strong"], **{f"{n}_p": 1.0 for n in augment.WAVE_AUGMENTATIONS})
    aug = augment.Augmenter(config)
    for length in (1, 2, 52, 511, 512, 513, 1000):
        audio = speech_like(1.0)[:length]
        out = aug.wave(audio, np.random.default_rng(length))
        assert np.isfinite(out).all() and len(out) > 0


def test_none_preset_turns_every_probability_off_and_keeps_the_ranges():
    probabilities = [f.name for f in dataclasses.fields(AugmentConfig) if f.name.endswith("_p")]
    assert {f"{name}_p" for name in augment.WAVE_AUGMENTATIONS} | {"spec_p"} == set(probabilities)
    assert all(getattr(NONE, name) == 0.0 for name in probabilities)
    assert dataclasses.replace(NONE, **{n: getattr(AugmentConfig(), n) for n in probabilities}) == AugmentConfig()
    assert not augment.is_active(NONE) and augment.make_augmenter(NONE) is None


def test_a_single_probability_flag_augments_whatever_the_preset():
    from asr.settings import resolve_config

    settings, _ = resolve_config(["--augment", "none", "--noise_p", "1.0"])
    assert settings.train.augment == "none" and settings.augment == dataclasses.replace(NONE, noise_p=1.0)
    augmenter = augment.make_augmenter(settings.augment)
    assert augmenter is not None
    audio = speech_like()
    noisy = augmenter.wave(audio, np.random.default_rng(0))
    added = noisy.astype(np.float64) - audio
    snr = 10 * np.log10(np.mean(audio.astype(np.float64) ** 2) / np.mean(added**2))
    assert noisy.shape == audio.shape and NONE.noise_snr_min - 0.01 <= snr <= NONE.noise_snr_max + 0.01


@dataclasses.dataclass(frozen=True)
class _WithDummy(AugmentConfig):
    dummy_p: float = 1.0


def _dummy(aug: augment.Augmenter, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rng.standard_normal(1000)  # draws plenty, changes nothing
    return audio * np.float32(rng.uniform(1.0, 1.0))


@pytest.mark.parametrize("name", [*augment.WAVE_AUGMENTATIONS, "spec"])
def test_adding_an_augmentation_leaves_every_other_draw_unchanged(name, monkeypatch):
    audio, features = speech_like(), torch.randn(300, 80) + 5
    config = dataclasses.replace(AUGMENT_PRESETS["strong"], **{f"{name}_p": 1.0})
    before = augment.Augmenter(config)
    rng = np.random.default_rng([7, 1, 3])
    wave_before, spec_before = before.wave(audio, rng), before.spec(features, rng)
    # Registered first, so it runs before every other augmentation and draws before they do.
    monkeypatch.setattr(augment, "WAVE_AUGMENTATIONS", {"dummy": _dummy, **augment.WAVE_AUGMENTATIONS})
    after = augment.Augmenter(_WithDummy(**dataclasses.asdict(config)))
    rng = np.random.default_rng([7, 1, 3])
    assert np.array_equal(after.wave(audio, rng), wave_before)
    assert torch.equal(after.spec(features, rng), spec_before)


def test_an_augmentation_without_a_probability_field_is_refused(monkeypatch):
    monkeypatch.setattr(augment, "WAVE_AUGMENTATIONS", {**augment.WAVE_AUGMENTATIONS, "dummy": _dummy})
    with pytest.raises(ValueError, match="dummy.*dummy_p|<name>_p"):
        augment.Augmenter(NONE)
