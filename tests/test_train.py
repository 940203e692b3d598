"""Training loop behaviour: overfitting, exact resume, NaN safety, run folder contents."""

import dataclasses
import json
import shutil

import pytest
import torch
from conftest import LIBRISPEECH_FIXTURES

import train
from asr.config import TrainConfig

SHORTEST = ["2830-3980-0043", "8455-210777-0068", "4507-16021-0012", "1034-121119-0046"]


@pytest.fixture
def tiny_set(tmp_path, librispeech_fixtures):
    """The four shortest LibriSpeech fixtures (about 10 s of audio) as a CustomDir."""
    root = tmp_path / "tiny"
    (root / "audio").mkdir(parents=True)
    (root / "transcriptions").mkdir()
    for utt in SHORTEST:
        (audio,) = (LIBRISPEECH_FIXTURES / "audio").glob(f"{utt}.*")
        shutil.copy(audio, root / "audio")
        shutil.copy(LIBRISPEECH_FIXTURES / "transcriptions" / f"{utt}.txt", root / "transcriptions")
    return root


def _args(data, runs, *extra):
    return ["--dataset", str(data), "--runs_dir", str(runs), "--model", "tiny", "--no-tensorboard", "--augment", "none",
            *extra]  # fmt: skip


@pytest.mark.slow
def test_tiny_model_overfits_two_utterances(tmp_path, tiny_set):
    for extra in SHORTEST[2:]:
        (tiny_set / "audio" / f"{extra}.wav").unlink(missing_ok=True)
        (tiny_set / "audio" / f"{extra}.flac").unlink(missing_ok=True)
        (tiny_set / "transcriptions" / f"{extra}.txt").unlink()
    result = train.main(_args(tiny_set, tmp_path / "runs", "--epochs", "70", "--lr", "5e-3", "--eval_every", "70"))
    assert result["best_wer"] == 0.0  # every word of both utterances decoded exactly


def test_resume_reproduces_the_uninterrupted_run(tmp_path, tiny_set):
    common = ("--epochs", "2", "--batch_seconds", "3", "--eval_every", "5", "--seed", "7", "--augment", "strong")
    full = train.main(_args(tiny_set, tmp_path / "a", *common))
    assert full["step"] >= 6
    cut = train.main(_args(tiny_set, tmp_path / "b", *common, "--max_steps", "3"))
    last = cut["run_dir"] / "last.pt"
    resumed = train.main(["--resume", str(last)])
    assert cut["losses"] + resumed["losses"] == full["losses"]  # bit-exact, step for step
    a = torch.load(full["run_dir"] / "last.pt", weights_only=True)["model"]
    b = torch.load(last, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_different_architecture(tmp_path, tiny_set):
    cut = train.main(_args(tiny_set, tmp_path, "--epochs", "1", "--max_steps", "1"))
    with pytest.raises(ValueError, match="--rnn_hidden 32 differs from the checkpoint's None"):
        train.main(["--resume", str(cut["run_dir"] / "last.pt"), "--rnn_hidden", "32"])


def test_nan_loss_is_skipped_and_counted(tmp_path, tiny_set, monkeypatch):
    class FlakyCTC(torch.nn.CTCLoss):
        calls = 0

        def forward(self, *args):
            FlakyCTC.calls += 1
            return super().forward(*args) * (float("nan") if FlakyCTC.calls == 2 else 1.0)

    monkeypatch.setattr(torch.nn, "CTCLoss", FlakyCTC)
    result = train.main(_args(tiny_set, tmp_path, "--epochs", "1", "--batch_seconds", "3"))
    assert result["skipped_steps"] == 1
    weights = torch.load(result["run_dir"] / "last.pt", weights_only=True)["model"]
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())


def test_run_folder_holds_config_and_checkpoints(tmp_path, tiny_set):
    result = train.main(_args(tiny_set, tmp_path, "--epochs", "1", "--run_name", "r1"))
    run = tmp_path / "r1"
    assert result["run_dir"] == run
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "tiny" and config["epochs"] == 1 and config["batch_seconds"] == 20.0
    assert (run / "last.pt").exists() and (run / "best.pt").exists() and not list(run.glob("*.tmp"))
    with pytest.raises(SystemExit, match="already holds a run"):
        train.main(_args(tiny_set, tmp_path, "--epochs", "1", "--run_name", "r1"))


def test_tensorboard_gets_scalars_images_audio_and_predictions(tmp_path, tiny_set):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = _args(tiny_set, tmp_path, "--epochs", "1", "--batch_seconds", "3", "--log_every", "1", "--run_name", "tb",
                 "--augment", "default")  # fmt: skip
    train.main([a for a in args if a != "--no-tensorboard"])
    events = EventAccumulator(str(tmp_path / "tb" / "tensorboard"), size_guidance={"tensors": 0}).Reload()
    tags = events.Tags()
    for scalar in ("train/loss", "train/lr", "train/grad_norm", "train/skipped_steps",
                   "train/audio_seconds_per_second", "val/loss", "val/wer", "val/cer", "val/wer_beam"):  # fmt: skip
        assert scalar in tags["scalars"], scalar
    assert sum(t.startswith("val_") for t in tags["images"]) == 3 and len(tags["audio"]) == 3 + 3 * 9
    assert "augment/2830-3980-0043/reverb" in tags["images"] and "augment/2830-3980-0043/specaugment" in tags["images"]
    assert "val/predictions/text_summary" in tags["tensors"]
    table = events.Tensors("val/predictions/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| id | target | prediction | CER | WER | beam |" in table


def test_the_design_card_command_gets_the_librispeech_recipe(monkeypatch):
    monkeypatch.setattr(train.os, "cpu_count", lambda: 4)
    config, resumed = train.resolve_config(["--dataset", "train-clean-360", "--epochs", "50", "--device", "cpu"])
    assert resumed is None and config.dataset == "train-clean-360" and config.epochs == 50
    assert (config.model, config.augment, config.eval_every, config.eval_utterances) == ("base", "default", 1, 1000)
    assert config.batch_seconds == 60.0 and config.num_workers == 3  # sized for a 4-core CPU machine
    given, _ = train.resolve_config(["--dataset", "train-clean-100+/my/data", "--model", "small", "--num_workers", "0"])
    assert (given.model, given.augment, given.num_workers) == ("small", "default", 0)  # flags beat the recipe


def test_no_flags_stay_the_example_overfitting_check():
    config, _ = train.resolve_config([])
    assert config == dataclasses.replace(TrainConfig(), batch_seconds=20.0, num_workers=0)
    assert (config.dataset, config.model, config.augment) == ("data/example", "small", "none")
