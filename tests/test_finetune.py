"""Fine-tuning (--init_from): a new run from another run's weights, architecture and tokenizer."""

import dataclasses
import hashlib
import json

import pytest
import torch
from loopback import LoopbackServer

import download_weights
import train
from asr.checkpoint import model_state, save_checkpoint
from asr.config import FINE_TUNING, MODEL_PRESETS, RECIPES, TrainConfig
from asr.model import DeepSpeech2
from asr.settings import print_recipe, resolve_config
from asr.text import BLANK, LETTERS
from asr.tokenizers import CharTokenizer


@pytest.fixture
def source(tmp_path, tiny_set):
    """A tiny model trained for two steps: the checkpoint to fine-tune from."""
    args = ["--dataset", str(tiny_set), "--runs_dir", str(tmp_path / "src"), "--model", "tiny", "--no-tensorboard"]
    return train.main([*args, "--epochs", "1", "--max_steps", "2"])["run_dir"] / "last.pt"


def _finetune(data, runs, init_from, *extra) -> list[str]:
    return ["--dataset", str(data), "--runs_dir", str(runs), "--init_from", str(init_from), "--no-tensorboard", *extra]


def test_a_downloaded_checkpoint_is_the_exact_start_with_a_fresh_optimizer(tmp_path, tiny_set, source, monkeypatch):
    server = LoopbackServer()
    server.state.files["/src.pt"] = source.read_bytes()
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    try:
        assert (
            download_weights.main(["--url", server.url("/src.pt"), "--sha256", digest, "--out", str(tmp_path / "w")])
            == 0
        )
    finally:
        server.close()
    seen = {}
    real_build = train.build_optimizer

    def spy(config, model, steps_per_epoch):  # the model as the new run's optimizer first sees it
        seen["weights"] = {k: v.clone() for k, v in model.state_dict().items()}
        optim = real_build(config, model, steps_per_epoch)
        seen["optimizer"] = optim.optimizer.state_dict()
        return optim

    monkeypatch.setattr(train, "build_optimizer", spy)
    downloaded = tmp_path / "w" / "src.pt"
    result = train.main(_finetune(tiny_set, tmp_path / "ft", downloaded, "--epochs", "1", "--max_steps", "1"))
    weights = torch.load(source, weights_only=True)["model"]
    assert weights.keys() == seen["weights"].keys() and all(
        torch.equal(weights[k], seen["weights"][k]) for k in weights
    )
    assert seen["optimizer"]["state"] == {} and result["step"] == 1  # new optimizer, new counters
    config = json.loads((result["run_dir"] / "config.json").read_text())
    assert config["init_from"] == str(downloaded) and config["init_from_sha256"] == digest
    assert config["model"] == "tiny" and config["model_config"] == dataclasses.asdict(MODEL_PRESETS["tiny"])


def test_flags_that_contradict_the_checkpoint_are_refused(tmp_path, tiny_set, source):
    expected = r"of .*last.pt: --rnn_hidden 32 \(the checkpoint's is 64\), --model small \(the checkpoint's is tiny\)"
    with pytest.raises(ValueError, match=expected):
        train.main(_finetune(tiny_set, tmp_path / "ft", source, "--rnn_hidden", "32", "--model", "small"))
    settings, _ = resolve_config(_finetune(tiny_set, tmp_path / "ft", source, "--model", "tiny", "--rnn_layers", "1"))
    assert settings.model == MODEL_PRESETS["tiny"]  # agreeing flags, and the folder recipe's default `small`, are fine


def test_a_fine_tuning_run_starts_from_the_fine_tuning_defaults(tmp_path, tiny_set, source, capsys):
    settings, _ = resolve_config(_finetune(tiny_set, tmp_path / "ft", source))
    assert {key: getattr(settings.train, key) for key in FINE_TUNING} == FINE_TUNING
    given, _ = resolve_config(_finetune(tiny_set, tmp_path / "ft", source, "--lr", "3e-3", "--freeze", "encoder"))
    assert (given.train.lr, given.train.freeze) == (3e-3, "encoder")  # flags still win
    scratch, _ = resolve_config(["--dataset", str(tiny_set), "--runs_dir", str(tmp_path / "new")])
    assert scratch.train.warmup == TrainConfig.warmup != FINE_TUNING["warmup"]
    librispeech = ["--dataset", "train-clean-100", "--runs_dir", str(tmp_path / "ls")]
    fine_tuned, _ = resolve_config([*librispeech, "--init_from", str(source)])
    assert fine_tuned.train.lr == resolve_config(librispeech)[0].train.lr  # its recipe's lr wins over FINE_TUNING
    assert fine_tuned.train.warmup == RECIPES["librispeech"]["warmup"]
    print_recipe(given.train)
    printed = capsys.readouterr().out
    assert "recipe: folder + fine-tuning" in printed and f"lr = 0.003 (recipe: {FINE_TUNING['lr']})" in printed


def test_a_tokenizer_that_cannot_spell_the_data_is_refused(tmp_path, tiny_set):
    tokenizer = CharTokenizer([BLANK, " ", "'", *[c for c in LETTERS if c != "e"]])
    model = DeepSpeech2(dataclasses.replace(MODEL_PRESETS["tiny"], vocab_size=len(tokenizer)))
    save_checkpoint(tmp_path / "no-e.pt", model_state(model, tokenizer))
    with pytest.raises(
        ValueError, match="character 'e' is not in the vocabulary.*cannot spell the training transcripts"
    ):
        train.main(_finetune(tiny_set, tmp_path / "ft", tmp_path / "no-e.pt"))


def test_a_fine_tuning_run_resumes_exactly(tmp_path, tiny_set, source):
    common = ("--epochs", "2", "--batch_seconds", "3", "--lr", "1e-3", "--freeze", "conv", "--freeze_epochs", "1")
    full = train.main(_finetune(tiny_set, tmp_path / "a", source, *common))
    cut = train.main(_finetune(tiny_set, tmp_path / "b", source, *common, "--max_steps", "3"))
    start = torch.load(source, weights_only=True)["model"]
    after = torch.load(cut["run_dir"] / "last.pt", weights_only=True)["model"]  # step 3, still in epoch 0
    resumed = train.main(["--resume", str(cut["run_dir"] / "last.pt")])
    assert cut["losses"] + resumed["losses"] == full["losses"]
    assert torch.equal(after["conv1.weight"], start["conv1.weight"])  # frozen in epoch 0
    assert not torch.equal(after["head.weight"], start["head.weight"])
    end = torch.load(full["run_dir"] / "last.pt", weights_only=True)["model"]
    assert not torch.equal(end["conv1.weight"], start["conv1.weight"])  # thawed in epoch 1
