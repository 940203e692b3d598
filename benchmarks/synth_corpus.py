"""Synthetic English speech corpora: the CPU benchmark, the CI smoke set, `data/example/`, the mixed-engine set.

Sentences come from a public-domain book (default: Pride and Prejudice from
Project Gutenberg, `../shared/data/text/pride_and_prejudice.txt`); espeak-ng
speaks them in its 8 English accents ("voices") crossed with its ~100 timbre
"variants", at a random speed and pitch (preset `smoke` speaks random digit
strings instead, "seven oh four", which a small model learns within two CPU
minutes). Every utterance is resampled to 16 kHz, trimmed to 0.15 s of silence
on each side and written in the CustomDir layout the training scripts read:

    OUT/<split>/audio/<voice>+<variant>-<index>.flac     16 kHz mono PCM_16
    OUT/<split>/transcriptions/<same id>.txt             one line, asr.text.normalize() output
    OUT/manifest.json                                     seed, settings, every utterance, sha256 of every file

Splits (presets `benchmark` and `smoke`): `train`; `dev` and `test`, spoken by
variants that never occur in train or in each other (so every dev/test
voice+variant combination is an unseen speaker) and made of sentences that
occur in no other split; `test-noisy`, the test utterances with a synthetic
room and coloured noise from `asr.augment` (the analogue of LibriSpeech
test-other). Whispered, robotic and echo variants (TRAIN_ONLY_VARIANTS) are
used in benchmark training but never held out: a held-out speaker should be a
new ordinary voice, not a new phonation type.
Preset `example` writes a single CustomDir of ~40 short utterances (the
bundled `data/example/`, under 5 MB).

Preset `mixed` (docs/pretraining.md) has the benchmark's size but is spoken in
equal shares by espeak-ng and by two engines whose voices were built from real
recordings (benchmarks/tts.py): flite (kal16, awb, rms, slt) and festival
(kal, ked, slt-hts), each voice at several duration and pitch settings. The
speaker id names engine + voice + variation (`flite-slt+s115p095`: duration
x1.15, pitch x0.95; `espeak-en-us+Alex`). It holds out the benchmark's own
dev/test sentences and espeak-ng variants; flite's awb and festival's ked (people
no training voice was made from) speak only test; dev is spoken by the training
voices at held-out (duration, pitch) settings. Test is split per engine family:
`test-espeak`, `test-flite`, `test-festival` and their `test-noisy-*` twins.

Determinism: every random choice (sentence order, voice, variant, speed,
pitch, level, noise seed) is drawn up-front from `np.random.default_rng(seed)`
in the main process; the worker processes only execute fully specified jobs,
so the files do not depend on `--workers` or on scheduling. espeak-ng itself is
deterministic, so the same seed, text, espeak-ng version and library versions
give byte-identical files (checked by the sha256 sums in the manifest).

    python -m benchmarks.synth_corpus --preset example --out data/example
    python -m benchmarks.synth_corpus --preset smoke --out /tmp/smoke_corpus
    python -m benchmarks.synth_corpus --preset benchmark --out ../corpus
    python -m benchmarks.synth_corpus --preset mixed --out ../mixed    # also needs flite and festival
"""

import argparse
import dataclasses
import hashlib
import io
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from asr import augment
from asr.audio import SAMPLE_RATE, resample
from asr.errors import ASRError, run_cli
from asr.sentences import gutenberg_body, split_sentences
from asr.text import normalize
from benchmarks import tts

REPO = Path(__file__).resolve().parents[1]

DEFAULT_TEXT = REPO.parent / "shared" / "data" / "text" / "pride_and_prejudice.txt"

# espeak-ng's English accents (`espeak-ng --voices=en`, the gmw/ files; the mb-* MBROLA voices need extra packages).
VOICES = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-gb-x-rp",
    "en-029",
    "en-us-nyc",
)
# Variant file names under espeak-ng-data/voices/!v (`espeak-ng --voices=variant`), all but `fast` (marked
# unstable by espeak-ng) and `Mr serious` (a space in the name). Kept as a fixed list so the corpus does not
# change when an espeak-ng release adds variants.
VARIANTS = (
    "Alex Alicia Andrea Andy Annie AnxiousAndy Demonic Denis Diogo Gene Gene2 Henrique Hugo Jacky Lee Marco "
    "Mario Michael Mike Nguyen RicishayMax RicishayMax2 RicishayMax3 Storm Tweaky UniRobot adam anika anikaRobot "
    "announcer antonio aunty belinda benjamin boris caleb croak david ed edward edward2 f1 f2 f3 f4 f5 grandma "
    "grandpa gustave iven iven2 iven3 iven4 john kaukovalta klatt klatt2 klatt3 klatt4 klatt5 klatt6 linda m1 m2 "
    "m3 m4 m5 m6 m7 m8 marcelo max michel miguel norbert pablo paul pedro quincy rob robert robosoft robosoft2 "
    "robosoft3 robosoft4 robosoft5 robosoft6 robosoft7 robosoft8 sandro shelby steph steph2 steph3 travis victor "
    "whisper whisperf zac"
).split()
# Whispered, robotic, heavy-echo and effect variants: in train they add robustness, but as a held-out "speaker"
# they would measure a different phonation type, not generalisation to a new ordinary voice.
TRAIN_ONLY_VARIANTS = frozenset(
    "whisper whisperf croak Demonic announcer UniRobot anikaRobot RicishayMax Tweaky "
    "robosoft robosoft2 robosoft3 robosoft4 robosoft5 robosoft6 robosoft7 robosoft8".split()
)
NOISE_COLORS = ("white", "pink", "brown")  # test-noisy noise spectra (asr.augment.colored_noise)
ESPEAK_RATE = 22050  # Hz; espeak-ng's fixed output rate
SILENCE_PAD = 0.15  # seconds of silence kept before the first and after the last speech frame
SILENCE_DB = 40.0  # a 10 ms frame is silence when its RMS is this far below the loudest frame


@dataclass(frozen=True)
class CorpusSpec:
    """What to generate; a preset gives every field, command-line flags override single fields."""

    splits: bool  # False: one CustomDir (the example set); True: train/dev/test/test-noisy
    train_hours: float  # target hours of training audio (estimated before synthesis; the summary prints the truth)
    train_utterances: int | None  # exact number of training utterances; overrides train_hours
    dev_utterances: int
    test_utterances: int
    dev_variants: int  # held-out variants speaking dev (disjoint from train and test)
    test_variants: int  # held-out variants speaking test
    train_variants: int | None  # cap on the variants used in train (None: all not held out)
    effect_variants: bool  # whether train also uses the whispered/robotic/echo variants (TRAIN_ONLY_VARIANTS)
    voices: tuple[str, ...]
    min_words: int
    max_words: int
    speed: tuple[int, int]  # words per minute, uniform
    pitch: tuple[int, int]  # espeak-ng pitch 0-99 (50 = the variant's own), uniform
    level: tuple[float, float] = (0.5, 0.9)  # peak amplitude after normalisation, uniform
    snr_db: tuple[float, float] = (5.0, 20.0)  # test-noisy: signal-to-noise ratio, uniform
    rt60: tuple[float, float] = (0.2, 0.6)  # test-noisy: reverberation time in seconds, uniform
    drr_db: tuple[float, float] = (3.0, 12.0)  # test-noisy: direct-to-reverberant energy ratio in dB, uniform
    digits: bool = False  # sentences are random digit strings ("seven oh four") instead of the book's
    engines: tuple[str, ...] = ()  # (): espeak-ng alone, as above; else the engines of a mixed corpus (ENGINES)


PRESETS = {
    # ~40 short sentences by ordinary voices, for `python train.py` with no flags (overfit check, <= 5 MB).
    "example": CorpusSpec(
        splits=False,
        train_hours=0.0,
        train_utterances=40,
        dev_utterances=0,
        test_utterances=0,
        dev_variants=0,
        test_variants=0,
        train_variants=8,
        effect_variants=False,
        voices=VOICES,
        min_words=4,
        max_words=10,
        speed=(140, 180),
        pitch=(35, 65),
    ),
    # A CI-sized corpus: digit strings (11 words), so that training for ~2 minutes on CPU lowers the WER of
    # unseen speakers saying unseen strings far below its starting value.
    "smoke": CorpusSpec(
        splits=True,
        train_hours=0.0,
        train_utterances=300,
        dev_utterances=20,
        test_utterances=30,
        dev_variants=2,
        test_variants=3,
        train_variants=16,
        effect_variants=False,
        voices=("en-us", "en-gb"),
        min_words=3,
        max_words=6,
        speed=(140, 180),
        pitch=(35, 65),
        digits=True,
    ),
    # The CPU benchmark: ~2.5 h of training audio, unseen-speaker dev/test.
    "benchmark": CorpusSpec(
        splits=True,
        train_hours=2.5,
        train_utterances=None,
        dev_utterances=300,
        test_utterances=500,
        dev_variants=8,
        test_variants=8,
        train_variants=None,
        effect_variants=True,
        voices=VOICES,
        min_words=5,
        max_words=25,
        speed=(130, 190),
        pitch=(30, 70),
    ),
}
# A new accent for the fine-tuning proof: ~5 minutes of the book read by espeak-ng's German voice (German
# letter-to-sound rules on English text), a voice the benchmark never uses. The held-out sizes equal the
# benchmark's, so with the same seed dev and test hold exactly the benchmark's dev/test sentences and
# held-out variants: nothing a model pretrained on the benchmark's train split has heard.
PRESETS["accent"] = dataclasses.replace(PRESETS["benchmark"], train_hours=5 / 60, effect_variants=False, voices=("de",))
# The benchmark's size (training hours, dev and test utterances, seed -> the same held-out sentences and espeak-ng
# variants), spoken in equal shares by espeak-ng and by the engines built from real recordings (flite, festival).
PRESETS["mixed"] = dataclasses.replace(PRESETS["benchmark"], engines=("espeak", "flite", "festival"))

ENGINES = ("espeak", "flite", "festival")
# The recorded-speech voices (benchmarks/tts.py) that speak train and dev, and the ones held out for test: awb
# and ked are people no other voice of any engine was made from (flite's kal16 and slt are festival's kal and
# slt-hts speakers), so test-flite and test-festival are unseen speakers.
ENGINE_VOICES = {
    "flite": {"train": ("kal16", "rms", "slt"), "test": ("awb",)},
    "festival": {"train": ("kal", "slt-hts"), "test": ("ked",)},
}
STRETCHES = (0.85, 0.95, 1.0, 1.05, 1.15, 1.25)  # duration factors of the recorded-speech voices
PITCHES = (0.85, 0.95, 1.0, 1.05, 1.15)  # F0 factors (voices with pitch control only; tts.PITCHLESS)
DEV_SETTINGS = 0.2  # share of each training voice's (stretch, pitch) settings kept for dev, never in train
ENGINE_WPM = {"flite": 220.0, "festival": 180.0}  # words per minute at stretch 1 (measured on 30 sentences each)


# ---------------------------------------------------------------------------------------------- sentences


def speakable(sentence: str) -> str | None:
    """The text espeak-ng is given, or None if the sentence could be spoken differently from its transcript.

    Rejected: digits (espeak-ng and `normalize` spell numbers differently), all-capital words and single letters
    other than "I"/"a" (espeak-ng may spell them), unknown abbreviations ("W."), words with a leading or
    trailing apostrophe (a quote mark or an elision; `normalize` keeps it, the speech does not say it),
    brackets and symbols (espeak-ng reads "[[...]]" as phonemes).
    """
    text = sentence.replace('"', " ").replace("_", " ").replace("--", ", ")
    text = text.replace("\u201c", " ").replace("\u201d", " ").replace("\u2019", "'").replace("\u2018", "'")
    text = " ".join(text.split())
    if not re.fullmatch(r"[A-Za-z ,.;:?!'\-]+", text):
        return None
    for word in re.findall(r"[A-Za-z'\-]+", text):
        bare = word.strip("-")
        if bare.startswith("'") or bare.endswith("'"):
            return None
        letters = bare.replace("'", "").replace("-", "")
        if len(letters) >= 2 and letters.isupper():
            return None
        if len(letters) == 1 and letters not in ("I", "a", "A"):
            return None
    if re.search(r"\b[A-Za-z]\.\s*\S", text):  # an initial inside the sentence
        return None
    return text


def load_sentences(path: Path, min_words: int, max_words: int) -> list[tuple[str, str]]:
    """(spoken text, normalised transcript) pairs of min..max words, deduplicated by transcript, in book order."""
    if not path.is_file():
        raise FileNotFoundError(f"sentence source {path} not found; pass --text with a plain-text file")
    raw = path.read_text(encoding="utf-8", errors="replace")
    pairs, seen = [], set()
    for sentence in split_sentences(gutenberg_body(raw)):
        spoken = speakable(sentence)
        if spoken is None:
            continue
        transcript = normalize(spoken)
        if min_words <= len(transcript.split()) <= max_words and transcript not in seen:
            seen.add(transcript)
            pairs.append((spoken, transcript))
    return pairs


DIGITS = ("zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def digit_sentences(count: int, min_words: int, max_words: int, seed: int) -> list[tuple[str, str]]:
    """`count` distinct random digit strings of min..max words as (spoken text, transcript) pairs."""
    rng = np.random.default_rng([seed, 1])  # apart from the planning generator, which is seeded with `seed`
    possible = sum(len(DIGITS) ** n for n in range(min_words, max_words + 1))
    if count > possible // 2:
        raise ValueError(f"{count} distinct digit strings of {min_words}-{max_words} words requested; too few exist")
    pairs, seen = [], set()
    while len(pairs) < count:
        words = [DIGITS[i] for i in rng.integers(len(DIGITS), size=int(rng.integers(min_words, max_words + 1)))]
        spoken = " ".join(words)
        if spoken not in seen:
            seen.add(spoken)
            pairs.append((spoken, normalize(spoken)))
    return pairs


# ---------------------------------------------------------------------------------------------- planning


def _estimate_seconds(words: int, speed: int) -> float:
    """Rough utterance length in seconds, only to size the training set up front (measured: +-20% per utterance)."""
    return words * 60.0 / speed * 0.85 + 2 * SILENCE_PAD  # espeak-ng speaks ~15% faster than its nominal wpm


def _draw(rng: np.random.Generator, spec: CorpusSpec, voices: list[str], variants: list[str]) -> dict:
    """The random settings of one utterance; always the same number of draws, so plans are stable."""
    return {
        "voice": voices[int(rng.integers(len(voices)))],
        "variant": variants[int(rng.integers(len(variants)))],
        "speed": int(rng.integers(spec.speed[0], spec.speed[1] + 1)),
        "pitch": int(rng.integers(spec.pitch[0], spec.pitch[1] + 1)),
        "level": round(float(rng.uniform(*spec.level)), 4),
    }


@dataclass(frozen=True)
class _HeldOut:
    """The sentence and espeak-ng variant split every preset starts from (drawn in this order from the seed)."""

    train_text: list[tuple[str, str]]
    dev_text: list[tuple[str, str]]
    test_text: list[tuple[str, str]]
    train_variants: list[str]
    dev_variants: list[str]
    test_variants: list[str]


def _hold_out(spec: CorpusSpec, sentences: list[tuple[str, str]], rng: np.random.Generator) -> _HeldOut:
    """Shuffle the sentences and the variants; dev and test get their own sentences and variants.

    The same seed and sizes give the same split in every preset (`mixed` holds out exactly the benchmark's
    dev/test sentences and espeak-ng variants, so each preset's checkpoint can be scored on the other's tests)."""
    order = rng.permutation(len(sentences))
    sentences = [sentences[i] for i in order]
    held_out_pool = [v for v in VARIANTS if v not in TRAIN_ONLY_VARIANTS]
    held_out = [held_out_pool[i] for i in rng.permutation(len(held_out_pool))[: spec.dev_variants + spec.test_variants]]
    dev_variants, test_variants = held_out[: spec.dev_variants], held_out[spec.dev_variants :]
    train_variants = [v for v in (VARIANTS if spec.effect_variants else held_out_pool) if v not in held_out]
    train_variants = [train_variants[i] for i in rng.permutation(len(train_variants))]
    if spec.train_variants is not None:
        train_variants = train_variants[: spec.train_variants]
    n_held = spec.dev_utterances + spec.test_utterances
    if n_held >= len(sentences):
        raise ValueError(f"{n_held} dev+test sentences requested but the text has only {len(sentences)} usable ones")
    dev_text, test_text = sentences[: spec.dev_utterances], sentences[spec.dev_utterances : n_held]
    return _HeldOut(sentences[n_held:], dev_text, test_text, train_variants, dev_variants, test_variants)


def plan_corpus(spec: CorpusSpec, sentences: list[tuple[str, str]], seed: int) -> dict[str, list[dict]]:
    """Every utterance of every split, fully specified (split -> jobs); no audio is made here."""
    if spec.engines:
        return plan_mixed(spec, sentences, seed)
    rng = np.random.default_rng(seed)
    held = _hold_out(spec, sentences, rng)
    train_text, dev_text, test_text = held.train_text, held.dev_text, held.test_text
    train_variants, dev_variants, test_variants = held.train_variants, held.dev_variants, held.test_variants
    voices = list(spec.voices)

    def jobs(split: str, texts: list[tuple[str, str]], variants: list[str]) -> list[dict]:
        out = []
        for i, (spoken, transcript) in enumerate(texts):
            job = {"split": split, "spoken": spoken, "text": transcript, **_draw(rng, spec, voices, variants)}
            job["id"] = f"{job['voice']}+{job['variant']}-{i:06d}"
            out.append(job)
        return out

    plan = {}
    # Training sentences are reused (by other voices) only when the target needs more than the book has.
    train, seconds = [], 0.0
    target = spec.train_hours * 3600
    while (len(train) < spec.train_utterances) if spec.train_utterances is not None else (seconds < target):
        spoken, transcript = train_text[len(train) % len(train_text)]
        job = {"split": "train", "spoken": spoken, "text": transcript, **_draw(rng, spec, voices, train_variants)}
        job["id"] = f"{job['voice']}+{job['variant']}-{len(train):06d}"
        seconds += _estimate_seconds(len(transcript.split()), job["speed"])
        train.append(job)
    plan["train"] = train
    if spec.splits:
        plan["dev"] = jobs("dev", dev_text, dev_variants)
        plan["test"] = jobs("test", test_text, test_variants)
        plan["test-noisy"] = [_noisy(rng, spec, job, "test-noisy") for job in plan["test"]]
    return plan


def _noisy(rng: np.random.Generator, spec: CorpusSpec, job: dict, split: str) -> dict:
    """The test-noisy job of a clean test job: its room and noise drawn here."""
    return {
        **job,
        "split": split,
        "snr_db": round(float(rng.uniform(*spec.snr_db)), 3),
        "rt60": round(float(rng.uniform(*spec.rt60)), 3),
        "drr_db": round(float(rng.uniform(*spec.drr_db)), 3),
        "noise": NOISE_COLORS[int(rng.integers(len(NOISE_COLORS)))],
        "noise_seed": int(rng.integers(2**31)),
    }


def _shares(total: int, parts: int) -> list[int]:
    """`total` split into `parts` near-equal counts, the larger ones first (10, 3 -> [4, 3, 3])."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def _settings(engine: str, voice: str) -> list[tuple[float, float]]:
    """Every (stretch, pitch) prosody setting of a recorded-speech voice (pitch 1.0 only for PITCHLESS voices)."""
    pitches = (1.0,) if (engine, voice) in tts.PITCHLESS else PITCHES
    return [(stretch, pitch) for stretch in STRETCHES for pitch in pitches]


def _setting_name(stretch: float, pitch: float) -> str:
    """The variation part of a speaker id: stretch 1.15, pitch 0.95 -> "s115p095"."""
    return f"s{round(stretch * 100):03d}p{round(pitch * 100):03d}"


def plan_mixed(spec: CorpusSpec, sentences: list[tuple[str, str]], seed: int) -> dict[str, list[dict]]:
    """The plan of a corpus spoken by several engines (spec.engines), every utterance fully specified.

    Each engine gets an equal share of the training hours (estimated), of dev and of test. Sentences and
    espeak-ng variants are held out exactly as in the espeak-only presets with the same seed and sizes
    (`_hold_out`); test is split per engine (test-<engine>, test-noisy-<engine>). Held-out voices:
    espeak-ng: dev and test variants never in train (as `benchmark`); flite and festival: the test voices of
    ENGINE_VOICES (a person no training voice of any engine was made from) never speak train or dev; dev is
    spoken by the training voices at prosody settings held out of train (DEV_SETTINGS of each voice's).
    """
    unknown = [e for e in spec.engines if e not in ENGINES]
    if unknown:
        raise ValueError(f"engine(s) {unknown}: unknown — use some of {list(ENGINES)}")
    rng = np.random.default_rng(seed)
    held = _hold_out(spec, sentences, rng)
    # Per engine: (train speakers, dev speakers, test speakers); a speaker is (voice, variant/setting).
    pools: dict[str, tuple[list, list, list]] = {}
    for engine in spec.engines:
        if engine == "espeak":
            pools[engine] = (held.train_variants, held.dev_variants, held.test_variants)
            continue
        train_pool, dev_pool = [], []
        for voice in ENGINE_VOICES[engine]["train"]:
            settings = _settings(engine, voice)
            n_dev = max(1, round(len(settings) * DEV_SETTINGS))
            dev_idx = set(rng.permutation(len(settings))[:n_dev].tolist())
            for i, setting in enumerate(settings):
                (dev_pool if i in dev_idx else train_pool).append((voice, setting))
        test_pool = [(v, s) for v in ENGINE_VOICES[engine]["test"] for s in _settings(engine, v)]
        pools[engine] = (train_pool, dev_pool, test_pool)

    def job(engine: str, split: str, pool: list, sentence: tuple[str, str], index: int) -> dict:
        spoken, transcript = sentence
        if engine == "espeak":
            settings = _draw(rng, spec, list(spec.voices), pool)
            variation = settings["variant"]
        else:
            voice, (stretch, pitch) = pool[int(rng.integers(len(pool)))]
            variation = _setting_name(stretch, pitch)
            level = round(float(rng.uniform(*spec.level)), 4)
            settings = {"voice": voice, "variant": variation, "stretch": stretch, "pitch_scale": pitch, "level": level}
        speaker = f"{engine}-{settings['voice']}+{variation}"
        return {"split": split, "spoken": spoken, "text": transcript, "engine": engine, **settings,
                "speaker": speaker, "id": f"{speaker}-{index:06d}"}  # fmt: skip

    plan: dict[str, list[dict]] = {"train": []}
    # Training: the engines take turns over the training sentences until each has its share of the hours (or,
    # with spec.train_utterances, until there are that many utterances).
    target = spec.train_hours * 3600 / len(spec.engines)
    seconds = dict.fromkeys(spec.engines, 0.0)

    def wanted(engine: str) -> bool:
        if spec.train_utterances is not None:
            return len(plan["train"]) < spec.train_utterances
        return seconds[engine] < target

    while any(wanted(e) for e in spec.engines):
        for engine in [e for e in spec.engines if wanted(e)]:
            index = len(plan["train"])
            j = job(engine, "train", pools[engine][0], held.train_text[index % len(held.train_text)], index)
            seconds[engine] += _estimate_job_seconds(j)
            plan["train"].append(j)
    if not spec.splits:
        return plan
    plan["dev"] = []
    start = 0
    for engine, n in zip(spec.engines, _shares(len(held.dev_text), len(spec.engines)), strict=True):
        for i in range(start, start + n):
            plan["dev"].append(job(engine, "dev", pools[engine][1], held.dev_text[i], i))
        start += n
    start = 0
    for engine, n in zip(spec.engines, _shares(len(held.test_text), len(spec.engines)), strict=True):
        test = [job(engine, f"test-{engine}", pools[engine][2], held.test_text[i], i) for i in range(start, start + n)]
        plan[f"test-{engine}"] = test
        plan[f"test-noisy-{engine}"] = [_noisy(rng, spec, j, f"test-noisy-{engine}") for j in test]
        start += n
    return plan


def _estimate_job_seconds(job: dict) -> float:
    """Rough length of a planned utterance of any engine (sizes the training set; the summary prints the truth)."""
    words = len(job["text"].split())
    if job["engine"] == "espeak":
        return _estimate_seconds(words, job["speed"])
    return words * 60.0 / ENGINE_WPM[job["engine"]] * job["stretch"] + 2 * SILENCE_PAD


# ---------------------------------------------------------------------------------------------- audio


def espeak_version() -> str:
    """The installed espeak-ng version ("1.51"); raises with install advice if it is missing."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise FileNotFoundError(
            "espeak-ng is not on PATH; install it (apt-get install espeak-ng, brew install espeak-ng)"
        )
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"speak NG text-to-speech: (\S+)", out, flags=re.IGNORECASE)
    return match.group(1) if match else out.strip()


def _check_variants(variants: set[str]) -> None:
    """Fail early, by name, when this espeak-ng lacks a variant the plan uses."""
    listing = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    have = set(re.findall(r"!v/(\S+)", listing))  # the File column
    missing = sorted(variants - have)
    if missing:
        raise RuntimeError(f"this espeak-ng has no variant(s) {missing}; the corpus was designed with espeak-ng 1.51")


def speak(text: str, voice: str, variant: str, speed: int, pitch: int) -> np.ndarray:
    """espeak-ng speech as float32 at 16 kHz, shape (samples,), untrimmed."""
    cmd = ["espeak-ng", "-v", f"{voice}+{variant}", "-s", str(speed), "-p", str(pitch), "--stdout"]
    result = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True)  # stdin: no option parsing
    if result.returncode != 0 or len(result.stdout) <= 44:
        error = result.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"espeak-ng failed for {voice}+{variant} on {text!r}: {error or 'no audio'}")
    audio, rate = sf.read(io.BytesIO(result.stdout), dtype="float32")
    assert rate == ESPEAK_RATE, rate
    return resample(audio, ESPEAK_RATE)


def trim_silence(audio: np.ndarray, pad: float = SILENCE_PAD) -> np.ndarray:
    """Cut or extend leading/trailing silence to exactly `pad` seconds around the speech."""
    hop = SAMPLE_RATE // 100  # 10 ms frames
    frames = audio[: len(audio) // hop * hop].reshape(-1, hop)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (-SILENCE_DB / 20))
    if len(loud) == 0:
        return audio
    keep = int(pad * SAMPLE_RATE)
    start, end = loud[0] * hop - keep, (loud[-1] + 1) * hop + keep
    # espeak-ng starts speaking on the first sample; zeros make up the missing lead-in (its silence is exact zero)
    before, after = np.zeros(max(0, -start), audio.dtype), np.zeros(max(0, end - len(audio)), audio.dtype)
    return np.concatenate([before, audio[max(0, start) : min(len(audio), end)], after])


def to_pcm16(audio: np.ndarray, peak: float) -> np.ndarray:
    """Scale so the largest sample is `peak` (of full scale) and quantise to int16."""
    scale = peak / max(float(np.abs(audio).max()), 1e-9)
    return np.clip(np.round(audio.astype(np.float64) * scale * 32767), -32768, 32767).astype(np.int16)


def corrupt(audio: np.ndarray, job: dict) -> np.ndarray:
    """test-noisy: a synthetic room (asr.augment.synthetic_rir) then coloured noise at the job's SNR."""
    rng = np.random.default_rng(job["noise_seed"])
    wet = augment.reverberate(audio, augment.synthetic_rir(job["rt60"], job["drr_db"], rng))
    return augment.add_noise(wet, augment.colored_noise(len(wet), job["noise"], rng), job["snr_db"])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write(out: Path, utt_id: str, pcm: np.ndarray, text: str) -> dict:
    audio_path = out / "audio" / f"{utt_id}.flac"
    text_path = out / "transcriptions" / f"{utt_id}.txt"
    sf.write(str(audio_path), pcm, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    text_path.write_text(text + "\n", encoding="utf-8")
    return {
        "seconds": round(len(pcm) / SAMPLE_RATE, 3),
        "sha256_audio": _sha256(audio_path),
        "sha256_text": _sha256(text_path),
    }


def _make_utterance(job: dict) -> dict:
    """Worker: synthesise (or corrupt) one planned utterance and write its two files; returns the manifest entry."""
    out = Path(job["out"])
    if job["split"].startswith("test-noisy"):  # test-noisy[-<engine>] corrupts test[-<engine>]
        clean = out.parent / job["split"].replace("test-noisy", "test", 1) / "audio" / f"{job['id']}.flac"
        audio, _ = sf.read(str(clean), dtype="float32")
        audio = corrupt(audio, job)
    elif job.get("engine", "espeak") == "espeak":
        audio = trim_silence(speak(job["spoken"], job["voice"], job["variant"], job["speed"], job["pitch"]))
    else:
        audio = trim_silence(tts.speak(job["engine"], job["spoken"], job["voice"], job["stretch"], job["pitch_scale"]))
    entry = {k: v for k, v in job.items() if k not in ("out", "split")}
    return entry | _write(out, job["id"], to_pcm16(audio, job["level"]), job["text"])


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core; resampling with more threads would only oversubscribe


def _run(jobs: list[dict], workers: int) -> list[dict]:
    """Execute jobs in parallel; results come back in job order whatever the scheduling."""
    if workers <= 1 or len(jobs) < 2:
        _init_worker()
        return [_make_utterance(job) for job in jobs]
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with context.Pool(workers, initializer=_init_worker) as pool:
        return pool.map(_make_utterance, jobs, chunksize=max(1, len(jobs) // (workers * 8)))


# ---------------------------------------------------------------------------------------------- main


def _prepare_out(out: Path, split_names: list[str]) -> None:
    """Make OUT empty of generated files; refuse to touch a non-empty folder this script did not write."""
    if out.exists() and any(out.iterdir()) and not (out / "manifest.json").exists():
        raise FileExistsError(f"{out} is not empty and has no manifest.json; pick an empty or new --out folder")
    names = ["audio", "transcriptions", "train", "dev", "test", "test-noisy", "manifest.json"]
    for path in [out / name for name in names] + sorted(out.glob("test-*")):  # test-<engine> of a mixed corpus
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for name in split_names:
        for sub in ("audio", "transcriptions"):
            (out / name / sub if name else out / sub).mkdir(parents=True, exist_ok=True)


def _spec_record(spec: CorpusSpec) -> dict:
    """The spec as the manifest stores it; an espeak-only spec leaves out `engines`, as before mixed corpora."""
    record = dataclasses.asdict(spec)
    if not spec.engines:
        del record["engines"]
    return record


def _check_engine(engine: str, voices: set[str]) -> str:
    """Fail early, by name, when an engine or a voice the plan uses is missing; the engine's version."""
    found = tts.version(engine)
    missing = sorted(voices & set(tts.missing_voices(engine)))
    if missing:
        raise ASRError(f"{engine}: no voice(s) {missing} — install them ({tts.INSTALL[engine]})")
    return found


def generate(spec: CorpusSpec, out: Path, seed: int, text_path: Path, workers: int, preset: str = "") -> dict:
    """Build the corpus under `out` and return the manifest (also written to out/manifest.json)."""
    version = espeak_version() if "espeak" in (spec.engines or ("espeak",)) else None
    if spec.digits:  # as many strings as the splits use: train sentences are never reused by other voices
        if spec.train_utterances is None:
            raise ValueError("a digit-string corpus is sized by --train_utterances, not --train_hours")
        needed = spec.train_utterances + spec.dev_utterances + spec.test_utterances
        sentences = digit_sentences(needed, spec.min_words, spec.max_words, seed)
    else:
        sentences = load_sentences(text_path, spec.min_words, spec.max_words)
    plan = plan_corpus(spec, sentences, seed)
    _check_variants(
        {job["variant"] for jobs in plan.values() for job in jobs if job.get("engine", "espeak") == "espeak"}
    )
    engines = {e: _check_engine(e, {j["voice"] for jobs in plan.values() for j in jobs if j.get("engine") == e})
               for e in spec.engines if e != "espeak"}  # fmt: skip
    split_dirs = {split: (out / split if spec.splits else out) for split in plan}
    _prepare_out(out, [split if spec.splits else "" for split in plan])

    manifest = {
        "generator": "benchmarks/synth_corpus.py",
        "preset": preset,
        "seed": seed,
        "spec": _spec_record(spec),
        "text": "digits" if spec.digits else text_path.name,
        "text_sha256": None if spec.digits else _sha256(text_path),
        "usable_sentences": len(sentences),
        "espeak_ng": version,
        "sample_rate": SAMPLE_RATE,
        "splits": {},
    }
    if engines:
        manifest["engines"] = engines  # {engine: version}
    for split, jobs in plan.items():  # test-noisy comes after test: it reads the clean test audio
        entries = _run([{**job, "out": str(split_dirs[split])} for job in jobs], workers)
        speakers = sorted({e.get("speaker", f"{e['voice']}+{e['variant']}") for e in entries})
        manifest["splits"][split] = {
            "hours": round(sum(e["seconds"] for e in entries) / 3600, 4),
            "speakers": len(speakers),
            "variants": sorted({e["variant"] for e in entries}),
            "utterances": entries,
        }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def summary(manifest: dict) -> str:
    """Hours, utterances and speakers per split (and, in a mixed corpus, the training hours of each engine)."""
    width = max(12, *(len(split) for split in manifest["splits"]))
    lines = [f"{'split':<{width}} {'hours':>7} {'utts':>6} {'speakers':>8} {'words':>7}"]
    for split, info in manifest["splits"].items():
        words = sum(len(u["text"].split()) for u in info["utterances"])
        n = len(info["utterances"])
        lines.append(f"{split:<{width}} {info['hours']:>7.3f} {n:>6} {info['speakers']:>8} {words:>7}")
    train = manifest["splits"]["train"]["utterances"]
    engines = sorted({u["engine"] for u in train if "engine" in u})
    if engines:
        hours = {e: sum(u["seconds"] for u in train if u["engine"] == e) / 3600 for e in engines}
        lines.append("train hours by engine: " + ", ".join(f"{e} {h:.3f}" for e, h in hours.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=list(PRESETS), default="benchmark", help="size and shape of the corpus")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created; regenerated if it exists)")
    parser.add_argument("--seed", type=int, default=0, help="the only source of randomness")
    parser.add_argument("--text", type=Path, default=DEFAULT_TEXT, help="plain-text sentence source (UTF-8)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel synthesis processes")
    parser.add_argument("--train_hours", "--train-hours", type=float, help="override the preset's training hours")
    parser.add_argument("--train_utterances", "--train-utterances", type=int, help="override: exact train size")
    parser.add_argument("--dev_utterances", "--dev-utterances", type=int, help="override the preset's dev size")
    parser.add_argument("--test_utterances", "--test-utterances", type=int, help="override the preset's test size")
    args = parser.parse_args(argv)

    spec = PRESETS[args.preset]
    overrides = {k: getattr(args, k) for k in ("train_utterances", "dev_utterances", "test_utterances")}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.train_hours is not None:
        overrides |= {"train_hours": args.train_hours, "train_utterances": overrides.get("train_utterances")}
    spec = dataclasses.replace(spec, **overrides)

    start = time.perf_counter()
    manifest = generate(spec, args.out, args.seed, args.text, args.workers, preset=args.preset)
    elapsed = time.perf_counter() - start
    print(summary(manifest))
    versions = {"espeak-ng": manifest["espeak_ng"], **manifest.get("engines", {})}
    engines = ", ".join(f"{e} {v}" for e, v in versions.items() if v)
    print(f"wrote {args.out} in {elapsed:.1f} s with {args.workers} worker(s) ({engines})")


if __name__ == "__main__":
    sys.exit(run_cli(main))  # bad input: one line naming it, exit status 2; a traceback with --debug
