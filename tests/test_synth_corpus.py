"""benchmarks/synth_corpus.py: sentence extraction, and a tiny corpus that must come out byte-identical twice."""

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf
from conftest import needs_espeak

from asr.manifest import MANIFEST_NAME
from asr.text import normalize
from benchmarks import synth_corpus, tts

BOOK = """The Project Gutenberg EBook of a Test, by Nobody

*** START OF THIS PROJECT GUTENBERG EBOOK A TEST ***

CHAPTER ONE

"My dear Mr. Bennet," said his lady.
Mrs. Long has just been here today. She told me all about it!
It was the year 1811 in the shire. "Is he married or single?" asked she.
The morning was cold and the road was long.
Her sister walked slowly to the little garden gate.
They spoke of music and of books for an hour.
Nobody could say when the rain would finally stop.
A letter arrived from London late in the evening.
The young man bowed and left the crowded room.
Every window of the old house was open wide.
She could not sleep for thinking of the ball.
The carriage waited outside the church for many minutes.

*** END OF THIS PROJECT GUTENBERG EBOOK A TEST ***
This license text must never be spoken by anyone at all.
"""

# What the book yields at 4-10 words; the year sentence and the headings are rejected.
EXPECTED = [
    "my dear mister bennet said his lady",
    "missus long has just been here today",
    "she told me all about it",
    "is he married or single asked she",
    "the morning was cold and the road was long",
    "her sister walked slowly to the little garden gate",
    "they spoke of music and of books for an hour",
    "nobody could say when the rain would finally stop",
    "a letter arrived from london late in the evening",
    "the young man bowed and left the crowded room",
    "every window of the old house was open wide",
    "she could not sleep for thinking of the ball",
    "the carriage waited outside the church for many minutes",
]


@pytest.fixture
def book(tmp_path: Path) -> Path:
    path = tmp_path / "book.txt"
    path.write_text(BOOK, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "sentence, spoken",
    [
        ('"_You_ want to tell me--and I know it."', "You want to tell me, and I know it."),
        ("I don't think so, said she.", "I don't think so, said she."),
        ("It was in 1811 that he came.", None),  # digits
        ("The letter from LYDIA BENNET arrived.", None),  # capitals: espeak-ng may spell them
        ("General F. came to see them.", None),  # an initial
        ("He spoke of his friends' interference.", None),  # trailing apostrophe
        ("She laughed (quietly) at him.", None),  # brackets
    ],
)
def test_speakable(sentence: str, spoken: str | None) -> None:
    assert synth_corpus.speakable(sentence) == spoken


def test_load_sentences(book: Path) -> None:
    pairs = synth_corpus.load_sentences(book, min_words=4, max_words=10)
    assert [text for _, text in pairs] == EXPECTED
    assert all(normalize(spoken) == text for spoken, text in pairs)


# The smoke preset's shape, speaking the test book's sentences instead of digit strings.
BOOK_SMOKE = dataclasses.replace(synth_corpus.PRESETS["smoke"], digits=False, min_words=4, max_words=10)


def test_digit_sentences_are_distinct_and_reproducible() -> None:
    pairs = synth_corpus.digit_sentences(200, min_words=3, max_words=6, seed=5)
    assert pairs == synth_corpus.digit_sentences(200, min_words=3, max_words=6, seed=5)
    assert pairs != synth_corpus.digit_sentences(200, min_words=3, max_words=6, seed=6)
    assert len({text for _, text in pairs}) == 200
    for spoken, text in pairs:
        assert text == normalize(spoken) == spoken
        assert 3 <= len(spoken.split()) <= 6 and set(spoken.split()) <= set(synth_corpus.DIGITS)
    with pytest.raises(ValueError, match="too few exist"):
        synth_corpus.digit_sentences(100, min_words=1, max_words=1, seed=0)


def test_plan_holds_out_variants_and_sentences(book: Path) -> None:
    sentences = synth_corpus.load_sentences(book, 4, 10)
    spec = dataclasses.replace(BOOK_SMOKE, train_utterances=20, dev_utterances=2, test_utterances=3)
    plan = synth_corpus.plan_corpus(spec, sentences, seed=3)
    assert plan == synth_corpus.plan_corpus(spec, sentences, seed=3)
    assert [len(plan[s]) for s in ("train", "dev", "test", "test-noisy")] == [20, 2, 3, 3]
    variants = {split: {job["variant"] for job in jobs} for split, jobs in plan.items()}
    texts = {split: {job["text"] for job in jobs} for split, jobs in plan.items()}
    for a, b in [("train", "dev"), ("train", "test"), ("dev", "test")]:
        assert not variants[a] & variants[b], (a, b)
        assert not texts[a] & texts[b], (a, b)
    assert len(texts["train"]) == len(EXPECTED) - 5  # 8 training sentences, reused by other voices to reach 20
    assert all(v not in synth_corpus.TRAIN_ONLY_VARIANTS for v in variants["train"])  # smoke: no effect voices
    assert [job["id"] for job in plan["test-noisy"]] == [job["id"] for job in plan["test"]]


def test_accent_preset_holds_out_the_benchmark_sentences_and_speakers(book: Path) -> None:
    sentences = synth_corpus.load_sentences(book, 4, 10) * 120  # enough for 800 held-out sentences
    benchmark = synth_corpus.plan_corpus(synth_corpus.PRESETS["benchmark"], sentences, seed=0)
    accent = synth_corpus.plan_corpus(synth_corpus.PRESETS["accent"], sentences, seed=0)
    for split in ("dev", "test"):
        assert [j["text"] for j in accent[split]] == [j["text"] for j in benchmark[split]]
        assert {j["variant"] for j in accent[split]} == {j["variant"] for j in benchmark[split]}
    assert {j["voice"] for jobs in accent.values() for j in jobs} == {"de"}
    assert "de" not in synth_corpus.PRESETS["benchmark"].voices


def _checksums(root: Path) -> dict[str, str]:
    """SHA-256 of every file under root but the duration manifest a training run may leave (asr/manifest.py)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file() and p.name != MANIFEST_NAME
    }


@needs_espeak
def test_tiny_corpus_is_bit_identical_and_speaker_disjoint(book: Path, tmp_path: Path) -> None:
    spec = dataclasses.replace(BOOK_SMOKE, train_utterances=4, dev_utterances=2, test_utterances=2)
    first = synth_corpus.generate(spec, tmp_path / "a", seed=7, text_path=book, workers=1)
    synth_corpus.generate(spec, tmp_path / "b", seed=7, text_path=book, workers=2)  # scheduling must not matter
    sums = _checksums(tmp_path / "a")
    assert sums == _checksums(tmp_path / "b")
    assert len(sums) == 1 + 2 * (4 + 2 + 2 + 2)  # manifest + (flac, txt) per utterance

    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest == json.loads(json.dumps(first))
    speakers = {}
    for split in ("train", "dev", "test", "test-noisy"):
        folder = tmp_path / "a" / split
        entries = manifest["splits"][split]["utterances"]
        ids = sorted(e["id"] for e in entries)
        assert sorted(p.stem for p in (folder / "audio").glob("*.flac")) == ids
        assert sorted(p.stem for p in (folder / "transcriptions").glob("*.txt")) == ids
        for e in entries:
            info = sf.info(str(folder / "audio" / f"{e['id']}.flac"))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert info.frames == round(e["seconds"] * 16000)
            text = (folder / "transcriptions" / f"{e['id']}.txt").read_text(encoding="utf-8")
            assert text == e["text"] + "\n" and normalize(text) == e["text"] and e["text"] in EXPECTED
            assert e["id"].startswith(f"{e['voice']}+{e['variant']}-")
            assert sums[f"{split}/audio/{e['id']}.flac"] == e["sha256_audio"]
            assert sums[f"{split}/transcriptions/{e['id']}.txt"] == e["sha256_text"]
        speakers[split] = {(e["voice"], e["variant"]) for e in entries}
    assert not speakers["train"] & speakers["dev"] and not speakers["train"] & speakers["test"]
    assert not speakers["dev"] & speakers["test"] and speakers["test-noisy"] == speakers["test"]
    clean, noisy = (manifest["splits"][s]["utterances"] for s in ("test", "test-noisy"))
    assert [e["text"] for e in clean] == [e["text"] for e in noisy]
    assert all(c["sha256_audio"] != n["sha256_audio"] for c, n in zip(clean, noisy, strict=True))


@needs_espeak
def test_example_preset_is_one_custom_dir(book: Path, tmp_path: Path) -> None:
    spec = dataclasses.replace(synth_corpus.PRESETS["example"], train_utterances=3)
    out = tmp_path / "example"
    synth_corpus.generate(spec, out, seed=0, text_path=book, workers=1)
    assert sorted(p.name for p in out.iterdir()) == ["audio", "manifest.json", "transcriptions"]
    assert len(list((out / "audio").glob("*.flac"))) == 3
    synth_corpus.generate(spec, out, seed=1, text_path=book, workers=1)  # regenerating replaces, never mixes
    assert len(list((out / "audio").glob("*.flac"))) == 3


def test_refuses_a_foreign_non_empty_folder(book: Path, tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="no manifest.json"):
        synth_corpus._prepare_out(tmp_path, ["train"])
    assert (tmp_path / "mine.txt").read_text() == "keep me"


EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "example"
SHARED_BOOK = Path(__file__).resolve().parents[2] / "shared" / "data" / "text" / "pride_and_prejudice.txt"


@pytest.mark.skipif(not (EXAMPLE / "manifest.json").exists(), reason="data/example/ has not been generated")
def test_committed_example_matches_its_manifest() -> None:
    manifest = json.loads((EXAMPLE / "manifest.json").read_text())
    entries = manifest["splits"]["train"]["utterances"]
    sums = _checksums(EXAMPLE)
    assert len(entries) == 40
    assert sorted(sums) == sorted(
        ["README.md", "manifest.json"]
        + [f"audio/{e['id']}.flac" for e in entries]
        + [f"transcriptions/{e['id']}.txt" for e in entries]
    )
    for e in entries:
        assert sums[f"audio/{e['id']}.flac"] == e["sha256_audio"]
        assert sums[f"transcriptions/{e['id']}.txt"] == e["sha256_text"]
    assert sum((EXAMPLE / name).stat().st_size for name in sums) <= 5_000_000


@needs_espeak
@pytest.mark.skipif(not SHARED_BOOK.exists(), reason=f"sentence source {SHARED_BOOK} is not available")
@pytest.mark.skipif(not (EXAMPLE / "manifest.json").exists(), reason="data/example/ has not been generated")
def test_documented_command_regenerates_the_example(tmp_path: Path) -> None:
    synth_corpus.main(["--preset", "example", "--out", str(tmp_path / "example"), "--workers", "2"])
    committed = json.loads((EXAMPLE / "manifest.json").read_text())
    regenerated = json.loads((tmp_path / "example" / "manifest.json").read_text())
    # Same espeak-ng and torch build: byte-identical. Another CPU's resampler may differ in the last bit of a
    # float, so across machines the audio is compared sample by sample (at most 1 LSB of 16 bits) instead.
    audio_keys = ("sha256_audio",)
    strip = [{k: v for k, v in e.items() if k not in audio_keys} for e in committed["splits"]["train"]["utterances"]]
    again = [{k: v for k, v in e.items() if k not in audio_keys} for e in regenerated["splits"]["train"]["utterances"]]
    assert again == strip
    for e in committed["splits"]["train"]["utterances"]:
        a, _ = sf.read(str(EXAMPLE / "audio" / f"{e['id']}.flac"), dtype="int16")
        b, _ = sf.read(str(tmp_path / "example" / "audio" / f"{e['id']}.flac"), dtype="int16")
        assert a.shape == b.shape and int(abs(a.astype(int) - b.astype(int)).max()) <= 1, e["id"]


# ---------------------------------------------------------------------------------------------- mixed engines

needs_engines = pytest.mark.skipif(
    [e for e in ("espeak-ng", "flite", "festival") if shutil.which(e) is None] != [],
    reason="LOUD SKIP: the mixed corpus is not built here — it needs espeak-ng, flite and festival "
    "(apt-get install espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts)",
)
TINY_MIXED = dataclasses.replace(
    synth_corpus.PRESETS["mixed"], min_words=4, max_words=10, train_utterances=3, dev_utterances=3, test_utterances=3
)


def _speakers(plan: dict, split: str) -> set[str]:
    return {job["speaker"] for job in plan[split]}


def test_mixed_plan_keeps_test_voices_and_sentences_out_of_training(book: Path) -> None:
    sentences = synth_corpus.load_sentences(book, 4, 10)
    spec = dataclasses.replace(TINY_MIXED, train_utterances=60, dev_utterances=3, test_utterances=6)
    plan = synth_corpus.plan_corpus(spec, sentences, seed=1)
    assert plan == synth_corpus.plan_corpus(spec, sentences, seed=1)
    engines = ("espeak", "flite", "festival")
    assert list(plan) == ["train", "dev"] + [f"test{n}-{e}" for e in engines for n in ("", "-noisy")]
    assert [len(plan[s]) for s in plan] == [60, 3, 2, 2, 2, 2, 2, 2]
    assert [j["engine"] for j in plan["train"][:6]] == list(engines) * 2  # the engines take turns
    assert [j["engine"] for j in plan["dev"]] == list(engines)
    train_voices = {(j["engine"], j["voice"]) for j in plan["train"]}
    assert train_voices == {
        ("flite", "kal16"), ("flite", "rms"), ("flite", "slt"), ("festival", "kal"), ("festival", "slt-hts"),
    } | {("espeak", v) for v in spec.voices if ("espeak", v) in train_voices}  # fmt: skip
    train_text = {j["text"] for j in plan["train"]}
    for engine in engines:
        test = plan[f"test-{engine}"]
        assert all(j["engine"] == engine for j in test)
        assert not _speakers(plan, f"test-{engine}") & _speakers(plan, "train")
        assert not {j["text"] for j in test} & train_text
        assert [j["id"] for j in plan[f"test-noisy-{engine}"]] == [j["id"] for j in test]
    assert {j["voice"] for j in plan["test-flite"]} == {"awb"} and {j["voice"] for j in plan["test-festival"]} == {
        "ked"
    }
    espeak_train = {j["variant"] for j in plan["train"] if j["engine"] == "espeak"}
    assert not {j["variant"] for j in plan["test-espeak"] + plan["dev"] if j["engine"] == "espeak"} & espeak_train
    assert not _speakers(plan, "dev") & _speakers(plan, "train") and not {j["text"] for j in plan["dev"]} & train_text
    for j in plan["train"] + plan["dev"]:  # speaker = engine + voice + variation; id = speaker + index
        assert j["speaker"] == f"{j['engine']}-{j['voice']}+{j['variant']}" and j["id"].startswith(j["speaker"] + "-")
        if j["engine"] != "espeak":
            assert j["variant"] == synth_corpus._setting_name(j["stretch"], j["pitch_scale"])
            assert j["pitch_scale"] == 1.0 or (j["engine"], j["voice"]) not in tts.PITCHLESS


def test_mixed_preset_holds_out_the_benchmark_sentences_and_variants(book: Path) -> None:
    sentences = synth_corpus.load_sentences(book, 4, 10) * 120  # enough for 800 held-out sentences
    benchmark = synth_corpus.plan_corpus(synth_corpus.PRESETS["benchmark"], sentences, seed=0)
    mixed = synth_corpus.plan_corpus(synth_corpus.PRESETS["mixed"], sentences, seed=0)
    tests = [j for split in mixed if split.startswith("test-") and "noisy" not in split for j in mixed[split]]
    assert [j["text"] for j in tests] == [j["text"] for j in benchmark["test"]]
    assert [j["text"] for j in mixed["dev"]] == [j["text"] for j in benchmark["dev"]]
    for split in ("dev", "test"):
        espeak = [j for j in mixed[split if split == "dev" else "test-espeak"] if j["engine"] == "espeak"]
        assert {j["variant"] for j in espeak} <= {j["variant"] for j in benchmark[split]}
    assert synth_corpus.PRESETS["mixed"].train_hours == synth_corpus.PRESETS["benchmark"].train_hours


def test_festival_script_sets_the_voice_rate_and_pitch() -> None:
    diphone = tts.festival_script('He said "no".', "kal", 1.15, 0.95, Path("/x/o.wav"))
    assert diphone.splitlines() == [
        "(voice_kal_diphone)",
        "(Parameter.set 'Duration_Stretch (* 1.15 (Parameter.get 'Duration_Stretch)))",
        "(set! int_lr_params '((target_f0_mean 99.750) (target_f0_std 13.300) (model_f0_mean 170) (model_f0_std 34)))",
        '(utt.save.wave (SynthText "He said \\"no\\".") "/x/o.wav" \'riff)',
    ]
    hts = tts.festival_script("Hello.", "slt-hts", 1.25, 1.0, Path("o.wav")).splitlines()
    assert hts[1] == '(set! hts_engine_params (append hts_engine_params (list (list "-r" 0.800000))))'
    with pytest.raises(ValueError, match="no pitch control"):
        tts.speak("festival", "Hello.", "slt-hts", 1.0, 1.1)


@needs_engines
def test_tiny_mixed_corpus_has_three_engines_and_unseen_test_voices(book: Path, tmp_path: Path) -> None:
    first = synth_corpus.generate(TINY_MIXED, tmp_path / "a", seed=2, text_path=book, workers=1, preset="mixed")
    synth_corpus.generate(TINY_MIXED, tmp_path / "b", seed=2, text_path=book, workers=2, preset="mixed")
    sums = _checksums(tmp_path / "a")
    assert sums == _checksums(tmp_path / "b")  # flite and festival are deterministic too
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest == json.loads(json.dumps(first)) and set(manifest["engines"]) == {"flite", "festival"}
    train = manifest["splits"]["train"]["utterances"]
    assert {e["engine"] for e in train} == {"espeak", "flite", "festival"}
    for split, info in manifest["splits"].items():
        for e in info["utterances"]:
            path = tmp_path / "a" / split / "audio" / f"{e['id']}.flac"
            sf_info = sf.info(str(path))
            assert (sf_info.samplerate, sf_info.channels) == (16000, 1) and sf_info.frames == round(
                e["seconds"] * 16000
            )
            assert 0.5 < e["seconds"] < 10 and sums[f"{split}/audio/{e['id']}.flac"] == e["sha256_audio"]
    train_speakers = {e["speaker"] for e in train}
    for engine in ("espeak", "flite", "festival"):
        test = manifest["splits"][f"test-{engine}"]["utterances"]
        assert test and {e["engine"] for e in test} == {engine}
        assert not {e["speaker"] for e in test} & train_speakers
    assert "test-festival" in synth_corpus.summary(manifest)
