"""The CI-sized benchmark: a couple of minutes of CPU training must make the model recognise unseen speakers.

The corpus is `benchmarks/synth_corpus.py --preset smoke`: espeak-ng digit strings ("seven oh four"), 300
for training by 32 speakers, 30 held-out strings by 6 held-out speakers for test. The untrained model's
test WER is the baseline the trained one must beat by far; nothing here is timed.
"""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from conftest import needs_espeak

import inference
import train
from asr.checkpoint import model_state, save_checkpoint
from asr.config import MODEL_PRESETS
from asr.model import DeepSpeech2
from asr.tokenizers import CharTokenizer
from benchmarks import synth_corpus

EPOCHS = 8


def _test_wer(checkpoint: Path, corpus: Path, out: Path) -> float:
    assert inference.main(["--data_dir", str(corpus / "test"), "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    return json.loads((out / "metrics.json").read_text())["wer"]


@pytest.mark.slow
@needs_espeak
def test_training_on_the_smoke_corpus_lowers_unseen_speaker_wer(tmp_path):
    corpus = tmp_path / "smoke"
    synth_corpus.generate(synth_corpus.PRESETS["smoke"], corpus, seed=0, text_path=synth_corpus.DEFAULT_TEXT, workers=2)

    tokenizer = CharTokenizer()
    torch.manual_seed(0)
    untrained = DeepSpeech2(dataclasses.replace(MODEL_PRESETS["small"], vocab_size=len(tokenizer)))
    save_checkpoint(tmp_path / "untrained.pt", model_state(untrained, tokenizer))
    before = _test_wer(tmp_path / "untrained.pt", corpus, tmp_path / "before")

    result = train.main(
        ["--dataset", str(corpus / "train"), "--eval_dataset", str(corpus / "dev"), "--runs_dir", str(tmp_path),
         "--run_name", "smoke", "--model", "small", "--augment", "none", "--epochs", str(EPOCHS),
         "--eval_every", str(EPOCHS), "--eval_beam_size", "0", "--no-tensorboard"]
    )  # fmt: skip
    after = _test_wer(result["run_dir"] / "best.pt", corpus, tmp_path / "after")

    print(f"smoke test WER: untrained {before:.2%}, after {EPOCHS} epochs {after:.2%}")
    assert before >= 0.9
    assert after <= 0.25
