"""Training loop behaviour: overfitting, exact resume, NaN safety, run folder contents."""

import dataclasses
import io
import json
import math
import os
import shutil

import pytest
import torch
from conftest import LIBRISPEECH_FIXTURES, SHORTEST
from PIL import Image

import train
from asr.augment import WAVE_AUGMENTATIONS
from asr.config import AUGMENT_PRESETS, MODEL_PRESETS, TrainConfig
from asr.data import BucketBatchSampler, DataReport, load_dataset
from asr.errors import ASRError
from asr.settings import resolve_config


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
    last = str(cut["run_dir"] / "last.pt")
    with pytest.raises(
        ValueError, match=r"keeps its data, batches, seed and architecture: --rnn_hidden 32 \(the run's is 64\)"
    ):
        train.main(["--resume", last, "--rnn_hidden", "32"])
    with pytest.raises(
        ValueError, match=r"--model small \(the run's is tiny\), --batch_seconds 5.0 \(the run's is 20.0\)"
    ):
        train.main(["--resume", last, "--model", "small", "--batch_seconds", "5"])


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
    with pytest.raises(ASRError, match="already holds a run"):
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
    # TensorBoard files a tag under one tab: every image and audio clip has a tag of its own kind.
    assert not set(tags["images"]) & set(tags["audio"])
    val_ids = {t.split("/")[1] for t in tags["audio"] if t.startswith("val/")}
    assert len(val_ids) == 3 and {f"val/{i}/spectrogram" for i in val_ids} <= set(tags["images"])
    augmented = {t.split("/")[1] for t in tags["audio"] if t.startswith("augment/")}
    assert len(augmented) == 3 and len(tags["audio"]) == 3 + 3 * (len(WAVE_AUGMENTATIONS) + 2)
    for utt in augmented:
        for name in ("original", *WAVE_AUGMENTATIONS, "all"):
            assert (
                f"augment/{utt}/spectrogram/{name}" in tags["images"] and f"augment/{utt}/audio/{name}" in tags["audio"]
            )
        assert {f"augment/{utt}/spectrogram/features", f"augment/{utt}/spectrogram/specaugment"} <= set(tags["images"])
    image = events.Images(f"augment/{min(augmented)}/spectrogram/noise")[0]
    assert image.height == 240 and image.width > 100  # 40 mel channels (tiny model) x 6 rows, 1 column per 10 ms
    with Image.open(io.BytesIO(image.encoded_image_string)) as png:
        assert png.mode == "RGB" and len(set(png.getdata())) > 50  # a colour map, not grey levels
    assert "val/predictions/text_summary" in tags["tensors"]
    table = events.Tensors("val/predictions/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| id | target | prediction | CER | WER | beam |" in table


def test_the_design_card_command_gets_the_librispeech_recipe(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)), raising=False)
    settings, resumed = resolve_config(["--dataset", "train-clean-360", "--epochs", "50", "--device", "cpu"])
    config = settings.train
    assert resumed is None and config.dataset == "train-clean-360" and config.epochs == 50
    assert settings.model == MODEL_PRESETS["base"] and settings.augment == AUGMENT_PRESETS["librispeech"]
    assert (config.model, config.augment, config.eval_every, config.eval_utterances) == ("base", "librispeech", 1, None)
    assert config.batch_seconds == 60.0 and config.num_workers == 3  # sized for a 4-core CPU machine
    given, _ = resolve_config(["--dataset", "train-clean-100+/my/data", "--model", "small", "--num_workers", "0"])
    assert (given.train.model, given.train.augment, given.train.num_workers) == ("small", "librispeech", 0)  # flags win


def test_no_flags_stay_the_example_overfitting_check():
    settings, _ = resolve_config([])
    config = settings.train
    assert config == dataclasses.replace(TrainConfig(), batch_seconds=20.0, num_workers=0)
    assert (config.dataset, config.model, config.augment) == ("data/example", "small", "none")


# ---- audit defects (issue #11): each with the behaviour it must have now


def test_an_eval_set_without_references_is_refused_at_start(tmp_path, tiny_set):
    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(tiny_set / "audio", unlabelled / "audio")
    with pytest.raises(ASRError, match="no evaluation utterances with a transcript in .*unlabelled"):
        train.main(_args(tiny_set, tmp_path / "a", "--eval_dataset", str(unlabelled)))
    with pytest.raises(ASRError, match=r"no evaluation utterances with a transcript .*--eval_utterances 0"):
        train.main(_args(tiny_set, tmp_path / "b", "--eval_utterances", "0"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_last_pt_of_a_cut_run_carries_its_best_wer_and_resume_changes_lr(tmp_path, tiny_set):
    common = ("--epochs", "2", "--batch_seconds", "3", "--eval_every", "5")
    cut = train.main(_args(tiny_set, tmp_path, *common, "--max_steps", "2"))
    last = cut["run_dir"] / "last.pt"
    saved = torch.load(last, weights_only=True)
    assert saved["training"]["best_wer"] == cut["best_wer"] < float("inf")  # not inf: eval ran before the save
    train.main(["--resume", str(last), "--lr", "1e-3", "--weight_decay", "0.05", "--max_steps", "3"])
    saved = torch.load(last, weights_only=True)
    group = saved["optimizer"]["param_groups"][0]
    total = saved["scheduler"]["last_epoch"]
    assert (
        saved["scheduler"]["base_lrs"] == [1e-3, 1e-3] and group["initial_lr"] == 1e-3 and group["weight_decay"] == 0.05
    )
    assert saved["optimizer"]["param_groups"][1]["weight_decay"] == 0.0  # norms and biases stay undecayed
    durations = [u.duration for u in load_dataset(str(tiny_set), "unused", DataReport())]
    per_epoch = len(BucketBatchSampler(durations, 3.0, seed=0).batches(1))
    assert total == 3 and group["lr"] == pytest.approx(1e-3 * train.lr_factor(3, 2 * per_epoch, 0.1), rel=1e-12)


def test_max_minutes_stops_after_the_step_that_spends_it_and_is_not_inherited(tmp_path, tiny_set):
    common = ("--epochs", "2", "--batch_seconds", "3", "--eval_every", "5")
    full = train.main(_args(tiny_set, tmp_path / "a", *common))
    cut = train.main(_args(tiny_set, tmp_path / "b", *common, "--max_minutes", "1e-9"))
    assert cut["step"] == 1 and cut["best_wer"] < float("inf")  # one step spends it; the cut run is evaluated
    assert cut["train_seconds"] > 0 and cut["audio_seconds"] > 0
    resumed = train.main(["--resume", str(cut["run_dir"] / "last.pt")])
    assert cut["step"] + len(resumed["losses"]) == full["step"]  # the budget was this process's only
    for flag, value in (("--max_minutes", "0"), ("--max_steps", "-1")):
        with pytest.raises(ValueError, match=f"{flag} must be"):
            train.main(_args(tiny_set, tmp_path / "c", flag, value))


def _batches(utterances: list[str], n_mels: int = 40) -> list[dict]:
    """One collated batch per LibriSpeech fixture id."""
    from asr.data import SpeechDataset, collate, custom_dir_utterances
    from asr.tokenizers import CharTokenizer

    utts = {u.id: u for u in custom_dir_utterances(LIBRISPEECH_FIXTURES, DataReport())}
    dataset = SpeechDataset([utts[i] for i in utterances], CharTokenizer(), n_mels)
    return [collate([dataset[i]]) for i in range(len(utterances))]


def _tiny_training():
    from asr.config import MODEL_PRESETS

    torch.manual_seed(0)
    model = train.DeepSpeech2(MODEL_PRESETS["tiny"])
    return model, train.build_optimizer(TrainConfig(epochs=1), model, steps_per_epoch=10)


def test_a_partial_window_is_averaged_over_its_real_size(librispeech_fixtures):
    b1, b2 = _batches(SHORTEST[:2])
    cpu = torch.device("cpu")
    model, optim = _tiny_training()
    losses = [train.forward_backward(model, optim, b, cpu, amp=False) for b in (b1, b2)]
    accumulated = train.apply_gradients(model, optim, 2, grad_clip=float("inf"))  # a window of 2 with grad_accum 4
    model, optim = _tiny_training()
    for b in (b1, b2):
        log_probs, out_lengths = model(b["features"], b["feature_lengths"])
        (train.ctc_loss(log_probs, out_lengths, b) / 2).backward()  # the mean of the two batch losses
    assert train.apply_gradients(model, optim, 1, grad_clip=float("inf")) == pytest.approx(accumulated, rel=1e-5)
    assert all(loss > 0 for loss in losses)


def test_a_non_finite_batch_keeps_the_windows_good_gradients(librispeech_fixtures):
    good, bad = _batches(SHORTEST[:2])
    bad["features"] = torch.full_like(bad["features"], float("nan"))
    model, optim = _tiny_training()
    train.forward_backward(model, optim, good, torch.device("cpu"), amp=False)
    before = [p.grad.clone() for p in model.parameters()]
    assert math.isnan(train.forward_backward(model, optim, bad, torch.device("cpu"), amp=False))
    assert all(torch.equal(a, p.grad) for a, p in zip(before, model.parameters(), strict=True))


class _FakeData:
    """Two batches per epoch: a good one, then one whose every file failed to load."""

    def __init__(self, good: dict) -> None:
        self.good = good

    def batches(self, state):
        return [self.good, {"errors": ["x.flac: cannot decode audio"], "ids": [], "features": None}]

    def batches_in_epoch(self, epoch: int) -> int:
        return 2


def test_an_epoch_whose_last_batch_fails_still_applies_its_pending_gradients(librispeech_fixtures):
    model, optim = _tiny_training()
    state = train.TrainState()
    config = TrainConfig(grad_accum=4, log_every=1000)
    log = train.TrainLog("unused", enabled=False)
    run = train.Run(model, None, optim, _FakeData(_batches(SHORTEST[:1])[0]), config, torch.device("cpu"), False, log,
                    save=lambda name: None)  # fmt: skip
    stopped = train.train_epoch(run, state)
    assert not stopped and state.step == 1 and state.load_errors == ["x.flac: cannot decode audio"]
    assert all(p.grad is None for p in model.parameters())  # nothing carries into the next epoch


def test_tensorboard_logs_every_epoch_the_mean_loss_and_purges_on_resume(tmp_path, tiny_set, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    copies = []
    real_save = train.save_checkpoint

    def save_and_keep(path, state):  # keep every last.pt, to resume from an older one as after a crash
        real_save(path, state)
        if path.name == "last.pt":
            copies.append(path.with_name(f"last-{state['training']['step']}.pt"))
            shutil.copy(path, copies[-1])

    monkeypatch.setattr(train, "save_checkpoint", save_and_keep)
    args = _args(tiny_set, tmp_path, "--epochs", "2", "--batch_seconds", "3", "--run_name", "tb", "--log_every", "1000")
    result = train.main([a for a in args if a != "--no-tensorboard"])
    per_epoch = len(result["losses"]) // 2
    events = EventAccumulator(str(tmp_path / "tb" / "tensorboard")).Reload()
    logged = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert [s for s, _ in logged] == [per_epoch, 2 * per_epoch]  # fewer steps than --log_every: once per epoch
    assert logged[0][1] == pytest.approx(sum(result["losses"][:per_epoch]) / per_epoch)  # the mean since last log
    first = copies[0]  # written at the end of epoch 0
    train.main(["--resume", str(first), "--max_steps", str(per_epoch + 1)])
    newest = max((tmp_path / "tb" / "tensorboard").glob("events.*"), key=lambda p: p.stat().st_mtime_ns)
    starts = [e.step for e in EventFileLoader(str(newest)).Load() if e.HasField("session_log")]
    assert starts == [per_epoch]  # the resumed writer purges the crashed run's steps from here on


@pytest.fixture
def torch_switches():
    """Restores torch's global determinism switches after a test that sets them."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)  # fmt: skip
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2:]


def test_deterministic_and_cudnn_benchmark_flags_set_the_torch_switches(torch_switches):
    cpu = torch.device("cpu")
    train.set_determinism(TrainConfig(deterministic=True), cpu)
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    train.set_determinism(TrainConfig(), cpu)  # the defaults: nothing forced, no benchmark mode
    assert not torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    train.set_determinism(TrainConfig(cudnn_benchmark=True), cpu)
    assert torch.backends.cudnn.benchmark
    with pytest.raises(ValueError, match="--deterministic and --cudnn_benchmark contradict"):
        train.set_determinism(TrainConfig(deterministic=True, cudnn_benchmark=True), cpu)


def test_a_deterministic_cpu_run_gives_the_same_losses(tmp_path, tiny_set, torch_switches):
    common = ("--epochs", "1", "--batch_seconds", "3", "--eval_every", "5", "--max_steps", "3")
    plain = train.main(_args(tiny_set, tmp_path / "a", *common))
    strict = train.main(_args(tiny_set, tmp_path / "b", *common, "--deterministic"))
    assert torch.are_deterministic_algorithms_enabled()  # the flag took effect for the run
    assert len(plain["losses"]) == 3 and strict["losses"] == plain["losses"]  # CPU kernels are deterministic
