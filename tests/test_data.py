import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import tone, write_custom_dir

from asr.data import (
    BucketBatchSampler,
    DataReport,
    SpeechDataset,
    collate,
    ctc_min_frames,
    custom_dir_utterances,
    filter_for_training,
    librispeech_utterances,
    load_dataset,
    read_transcripts,
)
from asr.tokenizers import CharTokenizer


def test_custom_dir_reports_every_bad_file(tmp_path):
    root = write_custom_dir(
        tmp_path / "d",
        {"good": (tone(1.0), 16000, "Hello, World 2!"), "notext": (tone(0.5, 8000), 8000, None)},
    )
    (root / "audio" / "corrupt.wav").write_bytes(b"RIFFxxxxWAVEgarbage")
    (root / "audio" / "empty.flac").write_bytes(b"")
    sf.write(root / "audio" / "zero.wav", np.zeros(0, np.float32), 16000)
    (root / "audio" / "notes.md").write_text("not audio")
    (root / "transcriptions" / "orphan.txt").write_text("no audio for me")
    sf.write(root / "audio" / "latin.wav", tone(0.3), 16000)
    (root / "transcriptions" / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))

    report = DataReport()
    utts = custom_dir_utterances(root, report)
    assert [(u.id, u.text) for u in utts] == [("good", "hello world two"), ("latin", None), ("notext", None)]
    assert utts[2].duration == 0.5
    failed = " ".join(report.failed)
    assert "corrupt.wav" in failed and "empty.flac" in failed and "zero.wav: file has no samples" in failed
    warnings = " ".join(report.warnings)
    assert "orphan.txt: transcript has no audio" in warnings and "notes.md" in warnings
    assert "latin.txt: transcript is not UTF-8" in warnings
    assert len(report.failed) == 3 and len(report.warnings) == 3


def test_custom_dir_reports_every_duplicate_id_naming_all_its_files(tmp_path):
    # sorted, the files of id "x" are not neighbours: x.flac, x.m.wav, x.wav
    root = write_custom_dir(tmp_path / "d", {"x": (tone(0.5), 16000, "one")})
    sf.write(root / "audio" / "x.m.wav", tone(0.25), 16000)
    (root / "transcriptions" / "x.m.txt").write_text("two")
    sf.write(root / "audio" / "x.wav", tone(1.0), 16000)
    (root / "audio" / "y.flac").write_bytes(b"not audio")  # unreadable: the next file of the id is used
    sf.write(root / "audio" / "y.wav", tone(0.75), 16000)
    (root / "audio" / "z.ogg").write_bytes(b"")
    (root / "audio" / "z.wav").write_bytes(b"")

    report = DataReport()
    utts = custom_dir_utterances(root, report)
    assert [(u.id, u.audio_path.name, u.text, u.duration) for u in utts] == [
        ("x", "x.flac", "one", 0.5),
        ("x.m", "x.m.wav", "two", 0.25),
        ("y", "y.wav", None, 0.75),
    ]
    audio = root / "audio"
    assert report.warnings == [
        f"{audio}: utterance id 'x' has 2 audio files (x.flac, x.wav); x.flac is used, the others are ignored",
        f"{audio}: utterance id 'y' has 2 audio files (y.flac, y.wav); y.wav is used, the others are ignored",
        f"{audio}: utterance id 'z' has 2 audio files (z.ogg, z.wav); none is readable",
    ]
    assert [f.split(":")[0] for f in report.failed] == [str(audio / n) for n in ("y.flac", "z.ogg", "z.wav")]
    assert len(load_dataset(str(root), tmp_path, DataReport())) == 3  # ids are unique, so combining works


def test_custom_dir_reads_upper_case_txt_and_reports_two_transcripts_for_one_id(tmp_path):
    root = write_custom_dir(tmp_path / "d", {"a": (tone(0.5), 16000, None), "b": (tone(0.5), 16000, None)})
    texts = root / "transcriptions"
    (texts / "a.TXT").write_text("Upper case extension\n")
    (texts / "b.txt").write_text("lower\n")
    (texts / "b.TXT").write_text("upper\n")
    (texts / "c.Txt").write_text("no audio\n")

    report = DataReport()
    utts = custom_dir_utterances(root, report)
    assert [(u.id, u.text) for u in utts] == [("a", "upper case extension"), ("b", None)]
    assert report.warnings == [
        f"{texts}: utterance id 'b' has 2 transcripts (b.TXT, b.txt); audio kept without one",
        f"{texts / 'c.Txt'}: transcript has no audio file in {root / 'audio'}",
    ]
    assert not report.failed


def test_read_transcripts_any_case_and_conflicts(tmp_path):
    (tmp_path / "a.TXT").write_text("Alpha")
    (tmp_path / "b.txt").write_text("Beta")
    (tmp_path / "c.txt").write_text("one")
    (tmp_path / "c.TXT").write_text("two")
    (tmp_path / "d.md").write_text("not a transcript")
    report = DataReport()
    assert read_transcripts(tmp_path, report) == {"a": "alpha", "b": "beta"}
    assert report.failed == [f"{tmp_path}: utterance id 'c' has 2 transcripts (c.TXT, c.txt); none is used"]


def test_missing_audio_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"audio does not exist"):
        custom_dir_utterances(tmp_path, DataReport())


def test_shared_fixtures_all_read(librispeech_fixtures):
    report = DataReport()
    utts = load_dataset(str(librispeech_fixtures), "unused", report)
    assert len(utts) == 14 and not report.failed and not report.warnings
    assert all(u.text for u in utts)


def _librispeech_tree(tmp_path, librispeech_fixtures, split="dev-clean"):
    """Build LibriSpeech/<split>/<spk>/<chap>/ from the flac fixtures."""
    flacs = sorted((librispeech_fixtures / "audio").glob("*.flac"))
    for flac in flacs:
        spk, chap, _ = flac.stem.split("-")
        folder = tmp_path / "LibriSpeech" / split / spk / chap
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(flac, folder)
        text = (librispeech_fixtures / "transcriptions" / f"{flac.stem}.txt").read_text().strip().upper()
        with open(folder / f"{spk}-{chap}.trans.txt", "a") as f:
            f.write(f"{flac.stem} {text}\n")
    return flacs


def test_librispeech_reader(tmp_path, librispeech_fixtures):
    flacs = _librispeech_tree(tmp_path, librispeech_fixtures)
    utts = librispeech_utterances(tmp_path, "dev-clean")
    assert [u.id for u in utts] == [f.stem for f in flacs]
    expected = (librispeech_fixtures / "transcriptions" / f"{flacs[0].stem}.txt").read_text().strip().lower()
    assert utts[0].text == expected


def test_librispeech_reports_flacs_without_a_transcript_line(tmp_path, librispeech_fixtures):
    flacs = _librispeech_tree(tmp_path, librispeech_fixtures)
    chapter = tmp_path / "LibriSpeech" / "dev-clean" / "/".join(flacs[0].stem.split("-")[:2])
    trans = chapter / f"{flacs[0].stem.rsplit('-', 1)[0]}.trans.txt"
    unlisted = chapter / f"{flacs[0].stem.rsplit('-', 1)[0]}-9999.flac"
    shutil.copy(flacs[0], unlisted)
    lone = tmp_path / "LibriSpeech" / "dev-clean" / "1" / "2" / "1-2-0003.flac"
    lone.parent.mkdir(parents=True)
    shutil.copy(flacs[0], lone)
    lines = trans.read_text().splitlines()
    trans.write_text("\n".join([*lines, lines[0]]) + "\n")  # the first utterance listed twice

    report = DataReport()
    utts = librispeech_utterances(tmp_path, "dev-clean", report)
    assert [u.id for u in utts] == [f.stem for f in flacs]
    assert report.warnings == [
        f"{trans}:{len(lines) + 1}: {flacs[0].stem} is already listed at {trans}:1, ignored",
        f"{lone}: no 1-2.trans.txt beside it; audio ignored",
        f"{unlisted}: no line for it in {trans.name}; audio ignored",
    ]
    assert not report.failed


def test_dataset_specs(tmp_path, librispeech_fixtures):
    _librispeech_tree(tmp_path, librispeech_fixtures, "dev-clean")
    _librispeech_tree(tmp_path, librispeech_fixtures, "dev-other")
    with pytest.raises(ValueError, match="appears twice"):
        load_dataset("dev-clean+dev-other", tmp_path, DataReport())
    custom = write_custom_dir(tmp_path / "mine", {"x1": (tone(0.5), 16000, "a")})
    assert len(load_dataset(f"dev-clean+{custom}", tmp_path, DataReport())) == 7
    with pytest.raises(FileNotFoundError, match=r"test-other is not at .*LibriSpeech/test-other; drop --no_download"):
        load_dataset("test-other", tmp_path, DataReport())
    with pytest.raises(ValueError, match=r"unknown dataset 'train-clean-9'.*train-clean-100.*train-960"):
        load_dataset("train-clean-9", tmp_path, DataReport())


def test_ctc_min_frames():
    assert ctc_min_frames([1, 2, 2, 1]) == 5 and ctc_min_frames([3, 3, 3]) == 5 and ctc_min_frames([]) == 0


def test_training_filter_counts_what_it_skips(tmp_path):
    from asr.data import Utterance

    utts = [
        Utterance("ok", tmp_path / "ok.wav", "hello", 1.0),
        Utterance("long", tmp_path / "l.wav", "hi", 30.0),
        Utterance("fast", tmp_path / "f.wav", "a" * 40, 0.5),  # 26 output frames < 79 needed
        Utterance("unlabelled", tmp_path / "u.wav", None, 1.0),
    ]
    report = DataReport()
    kept = filter_for_training(utts, CharTokenizer(), lambda n: (n - 1) // 2 + 1, 20.0, report)
    assert [u.id for u in kept] == ["ok"]
    assert sum(report.skipped.values()) == 3 and len(report.skipped) == 3


def test_dataset_and_collate(tmp_path):
    root = write_custom_dir(tmp_path / "d", {"a": (tone(0.5), 16000, "ab"), "b": (tone(1.0), 16000, "abc")})
    report = DataReport()
    ds = SpeechDataset(custom_dir_utterances(root, report), CharTokenizer(), n_mels=40)
    (root / "audio" / "b.flac").write_bytes(b"broken after listing")
    batch = collate([ds[0], ds[1]])
    assert batch["ids"] == ["a"] and "b.flac" in batch["errors"][0]
    assert batch["features"].shape == (1, 51, 40) and batch["targets"].tolist() == [[3, 4]]
    assert collate([ds[1]])["features"] is None


def test_collate_pads_with_zeros(tmp_path):
    items = [
        {"id": "x", "features": torch.ones(3, 2), "target": torch.tensor([5])},
        {"id": "y", "features": torch.ones(5, 2), "target": torch.tensor([6, 7])},
    ]
    batch = collate(items)
    assert batch["feature_lengths"].tolist() == [3, 5] and batch["features"][0, 3:].abs().sum() == 0
    assert batch["targets"].tolist() == [[5, 0], [6, 7]] and batch["target_lengths"].tolist() == [1, 2]


def test_sampler_sortagrad_budget_determinism_and_resume():
    rng = np.random.default_rng(0)
    durations = rng.uniform(1, 16, size=500).tolist()
    sampler = BucketBatchSampler(durations, batch_seconds=60, seed=3)
    first = sampler.batches(0)
    flat = [i for b in first for i in b]
    assert sorted(flat) == list(range(500))  # every utterance exactly once
    assert [durations[i] for i in flat] == sorted(durations)  # SortaGrad: shortest first
    for epoch in (0, 1, 2):
        for batch in sampler.batches(epoch):
            assert sum(durations[i] for i in batch) <= 60 or len(batch) == 1
    assert sampler.batches(1) == BucketBatchSampler(durations, 60, seed=3).batches(1)  # pure function of seed
    assert sampler.batches(1) != sampler.batches(2)
    sampler.set_epoch(2, start=5)
    assert list(sampler) == sampler.batches(2)[5:] and len(sampler) == len(sampler.batches(2)) - 5
    assert sampler.padding_waste() < 0.10


def test_sampler_keeps_an_overlong_utterance_alone():
    assert BucketBatchSampler([50.0, 1.0], batch_seconds=10).batches(0) == [[1], [0]]
