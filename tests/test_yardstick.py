"""benchmarks/yardstick.py: every real recording as one CustomDir set, and per-source scores of a checkpoint."""

import json
from pathlib import Path

import pytest
import torch
from conftest import SPEECH

from asr.checkpoint import model_state, save_checkpoint
from asr.config import MODEL_PRESETS
from asr.data import DataReport, custom_dir_utterances
from asr.errors import ASRError
from asr.model import DeepSpeech2
from asr.tokenizers import CharTokenizer
from benchmarks import yardstick

needs_speech = pytest.mark.skipif(not (SPEECH / "an4" / "meta.json").is_file(), reason=f"{SPEECH} not found")
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@needs_speech
def test_assemble_gathers_every_shared_recording_with_its_source(tmp_path: Path) -> None:
    out = tmp_path / "yard"
    record = yardstick.assemble(SPEECH, out)
    metas = {p.parent.name: json.loads(p.read_text())["utterances"] for p in SPEECH.glob("*/meta.json")}
    assert set(record) == set(metas) >= {"an4", "librispeech", "ljspeech", "misc", "pocketsphinx"}
    assert {s: r["utterances"] for s, r in record.items()} == {s: len(u) for s, u in metas.items()}
    assert json.loads((out / yardstick.SOURCES_FILE).read_text()) == record

    report = DataReport()
    utterances = custom_dir_utterances(out, report, cache=False)  # what inference.py --data_dir reads
    assert not report.failed and not report.warnings
    assert len(utterances) == sum(len(u) for u in metas.values())
    by_id = {u.id: u for u in utterances}
    for source, entries in metas.items():
        for entry in entries:
            utt = by_id[f"{source}--{entry['utt_id']}"]
            assert Path(utt.audio_path).read_bytes() == (SPEECH / source / "audio" / entry["file"]).read_bytes()
            assert utt.text and abs(utt.duration - entry["seconds"]) < 0.01
    assert by_id["misc--speechrecognition-english"].text == "one two three"

    yardstick.assemble(SPEECH, out, ["misc"])  # reassembling replaces, never mixes
    assert sorted(p.name for p in (out / "audio").iterdir()) == sorted(f"misc--{u['file']}" for u in metas["misc"])
    with pytest.raises(ASRError, match="not source folders"):
        yardstick.assemble(SPEECH, out, ["nope"])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(ASRError, match="not a yardstick"):
        yardstick.assemble(SPEECH, tmp_path / "other")


def test_per_source_scores_and_table() -> None:
    references = {"a--1": "one two", "a--2": "three", "b--1": "four five six"}
    predictions = {"a--1": "one too", "b--1": "four five six"}  # a--2 is missing: scored as empty
    scores = yardstick.per_source(references, predictions)
    assert list(scores) == ["a", "overall", "b"]
    assert (scores["a"].word_edits, scores["a"].words) == (2, 3)
    assert (scores["b"].word_edits, scores["overall"].word_edits, scores["overall"].words) == (0, 2, 6)
    assert yardstick.table({"greedy": scores}).splitlines() == [
        "| source | utts | words | greedy WER % | greedy CER % |",
        "|---|---|---|---|---|",
        "| a | 2 | 3 | 66.7 | 50.0 |",
        "| b | 1 | 3 | 0.0 | 0.0 |",
        "| overall | 3 | 6 | 33.3 | 24.0 |",
    ]


@pytest.mark.slow
@needs_speech
def test_score_runs_inference_and_writes_per_source_results(tmp_path: Path, capsys) -> None:
    yard = tmp_path / "yard"
    yardstick.assemble(SPEECH, yard, ["misc"])
    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(checkpoint, model_state(DeepSpeech2(MODEL_PRESETS["tiny"]), CharTokenizer()))
    argv = ["score", "--checkpoint", str(checkpoint), "--yardstick", str(yard), "--out", str(tmp_path / "out")]
    assert yardstick.main([*argv, "--lm", str(FIXTURES / "tiny_3gram.arpa"), "--beam_size", "4"]) == 0
    record = json.loads((tmp_path / "out" / "yardstick.json").read_text())
    assert list(record["scores"]) == ["greedy", "beam_lm"]
    for decoder in ("greedy", "beam_lm"):
        assert set(record["scores"][decoder]) == {"misc", "overall"}
        assert record["scores"][decoder]["overall"]["utterances"] == 3
        assert record["scores"][decoder]["overall"]["words"] == record["sources"]["misc"]["words"] == 36
        metrics = json.loads((tmp_path / "out" / decoder / "metrics.json").read_text())
        assert metrics["wer"] == record["scores"][decoder]["overall"]["wer"]  # the same number inference.py prints
    assert "| misc | 3 | 36 |" in capsys.readouterr().out
