"""benchmarks/decode_and_score.py: the model runs once, each decoder reads its saved log-probs, the grid's best
pair reaches beam_lm (here and through --tuned_on), and each printed line is inference.py's score."""

import json
from pathlib import Path

import pytest
import torch

import inference
from asr.checkpoint import model_state, save_checkpoint
from asr.config import MODEL_PRESETS
from asr.data import DataReport, read_transcripts
from asr.errors import ASRError
from asr.metrics import score
from asr.model import DeepSpeech2
from asr.tokenizers import CharTokenizer
from benchmarks import decode_and_score

LM = Path(__file__).resolve().parent / "fixtures" / "tiny_3gram.arpa"


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, model_state(DeepSpeech2(MODEL_PRESETS["tiny"]), CharTokenizer()))
    return path


def test_one_model_run_then_every_decoder_from_its_logits(tmp_path, tiny_set, checkpoint, monkeypatch, capsys):
    runs = []
    real_run_model = inference.run_model
    monkeypatch.setattr(inference, "run_model", lambda *a: runs.append(1) or real_run_model(*a))
    dev, test = tmp_path / "dev", tmp_path / "test"
    common = ["--checkpoint", str(checkpoint), "--data_dir", str(tiny_set), "--lm", str(LM), "--beam_size", "4"]
    grid = ["--grid_alphas", "0.3,0.9", "--grid_betas", "0,2"]
    assert decode_and_score.main([*common, "--out", str(dev), "--decoders", "greedy", *grid, "--label", "d"]) == 0
    assert decode_and_score.main([*common, "--out", str(test), "--decoders", "greedy,beam,beam_lm",
                                  "--tuned_on", str(dev)]) == 0  # fmt: skip
    assert len(runs) == 2  # once per folder, whatever the number of decoders

    summary = json.loads((test / "summary.json").read_text())
    best = json.loads((dev / "grid" / "grid.json").read_text())["best"]
    assert json.loads((dev / "summary.json").read_text())["grid"]["best"] == best
    pair = ["--alpha", str(best["alpha"]), "--beta", str(best["beta"])]
    assert summary["decoders"]["beam_lm"]["flags"] == [
        "--decoder",
        "beam_lm",
        "--beam_size",
        "4",
        "--lm",
        str(LM),
        *pair,
    ]
    report = DataReport()
    references = read_transcripts(tiny_set / "transcriptions", report)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"d grid: best --alpha {best['alpha']:g} --beta {best['beta']:g} (WER {100 * best['wer']:.2f}%)"
    for i, decoder in enumerate(("greedy", "beam", "beam_lm")):
        predictions = read_transcripts(test / decoder, report)
        scores = score([(references[u], predictions.get(u, "")) for u in sorted(references)])
        assert summary["decoders"][decoder]["wer"] == scores.wer
        assert lines[2 + i] == f"test {decoder}: {scores}"  # after dev's grid and greedy lines
    assert sorted(p.name for p in (test / "logits").glob("*.npy")) == sorted(f"{u}.npy" for u in references)


def test_refusals(tmp_path, checkpoint):
    base = ["--checkpoint", str(checkpoint), "--data_dir", str(tmp_path), "--out", str(tmp_path / "o")]
    with pytest.raises(ASRError, match="unknown beam_lmx"):
        decode_and_score.main([*base, "--decoders", "greedy,beam_lmx"])
    with pytest.raises(ASRError, match="need --lm FILE"):
        decode_and_score.main([*base, "--decoders", "beam_lm"])
    with pytest.raises(ASRError, match="no grid result"):
        decode_and_score.main([*base, "--lm", str(LM), "--tuned_on", str(tmp_path)])
