"""The GPU-ready training path, checked on a CPU: finite-only batch-norm statistics, both RNN paths, features
computed inside the step, batch sizing by memory, the device check script."""

import dataclasses

import pytest
import torch

from asr.batching import pick_batch_seconds
from asr.config import MODEL_PRESETS
from asr.model import DeepSpeech2, MaskedBatchNorm, set_rnn_path

TINY = MODEL_PRESETS["tiny"]


def _norm_buffers(model):
    return {k: v.clone() for k, v in model.state_dict().items() if k.endswith(("running_mean", "running_var"))}


def test_batch_norm_statistics_ignore_a_batch_with_an_inf():
    torch.manual_seed(0)
    model = DeepSpeech2(TINY).train()
    features, lengths = torch.randn(2, 50, TINY.n_mels), torch.tensor([50, 40])
    before = _norm_buffers(model)
    poisoned = features.clone()
    poisoned[1, 3, 5] = float("inf")
    log_probs, _ = model(poisoned, lengths)
    assert not torch.isfinite(log_probs).all()
    after = _norm_buffers(model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # untouched, not inf or nan
    model(features, lengths)
    assert all(torch.isfinite(v).all() and not torch.equal(v, before[k]) for k, v in _norm_buffers(model).items())


def test_masked_batch_norm_still_updates_from_a_finite_batch():
    norm = MaskedBatchNorm(3).train()
    x, mask = torch.randn(2, 3, 10) * 2 + 1, torch.ones(2, 10, dtype=torch.bool)
    norm(x, mask)
    expected = 0.9 * torch.zeros(3) + 0.1 * x.mean(dim=(0, 2))
    assert torch.allclose(norm.running_mean, expected, atol=1e-6)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_both_rnn_paths_give_the_same_outputs_and_gradients(cell):
    torch.manual_seed(0)
    model = DeepSpeech2(dataclasses.replace(TINY, rnn_type=cell, rnn_layers=2)).train()
    features, lengths = torch.randn(3, 60, TINY.n_mels), torch.tensor([60, 41, 17])
    results = {}
    for path in ("split", "fused"):
        set_rnn_path(model, path)
        model.zero_grad()
        log_probs, out_lengths = model(features, lengths)
        mask = torch.arange(log_probs.shape[1])[None, :] < out_lengths[:, None]
        (log_probs * mask[..., None]).sum().backward()
        results[path] = log_probs * mask[..., None], [p.grad.clone() for p in model.parameters()]
    assert torch.allclose(results["split"][0], results["fused"][0], rtol=0, atol=1e-5)
    for a, b in zip(results["split"][1], results["fused"][1], strict=True):  # float rounding: ~1e-6 of the largest
        assert (a - b).abs().max() <= 1e-5 * a.abs().max()


def test_the_fused_path_adds_no_parameters_and_auto_means_split_on_a_cpu():
    model = DeepSpeech2(TINY)
    keys = list(model.state_dict())
    set_rnn_path(model, "fused")
    assert list(model.state_dict()) == keys and not any("both" in k for k in keys)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in DeepSpeech2(TINY).parameters())
    birnn = model.rnns[0]
    birnn.path = "auto"
    called = []
    birnn._fused = lambda x, lengths: called.append(1)
    birnn(torch.randn(1, 5, birnn.forward_rnn.input_size), torch.tensor([5]))
    assert called == []  # auto on a CPU tensor: the split path
    with pytest.raises(ValueError, match="rnn path 'both': not one of auto, split, fused"):
        set_rnn_path(model, "both")


GIB = 2**30


def test_auto_batch_keeps_15_percent_of_the_memory_free():
    peak = lambda seconds: int(2 * GIB + seconds * 0.02 * GIB)  # noqa: E731  (2 GiB + 20 MiB per audio second)
    assert pick_batch_seconds(peak, total_bytes=80 * GIB) == 3200.0  # 66 GiB <= 68 GiB
    assert pick_batch_seconds(peak, total_bytes=16 * GIB) == 400.0  # 800 s would need 18 GiB > 13.6 GiB
    assert pick_batch_seconds(lambda s: None if s > 100 else 1, total_bytes=GIB) == 100.0  # out of memory above
    tried = []
    pick_batch_seconds(lambda s: tried.append(s) or (GIB if s < 400 else 20 * GIB), total_bytes=16 * GIB)
    assert tried == [50.0, 100.0, 200.0, 400.0]  # stops at the first size that does not fit


def test_batch_seconds_auto_is_probed_on_cuda_printed_and_saved(monkeypatch, capsys):
    from asr import batching, settings

    probed = []

    def fake_probe(config, max_duration, device, amp):
        probed.append((config.rnn_hidden, max_duration, device, amp))
        return lambda seconds: int(GIB + seconds * 0.02 * GIB)

    monkeypatch.setattr(settings, "pick_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(batching, "cuda_peak_probe", fake_probe)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: type("P", (), {"total_memory": 24 * GIB}))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d: "Fake GPU")
    resolved, _ = settings.resolve_config(
        ["--dataset", "train-clean-100", "--batch_seconds", "auto", "--num_workers", "0"]
    )
    assert resolved.train.batch_seconds == 800.0 and resolved.as_dict()["batch_seconds"] == 800.0  # config.json
    assert probed == [(800, 20.0, torch.device("cuda", 0), True)]  # the base model, on the longest utterances
    assert "batch_seconds auto: 800 s per batch on Fake GPU (24 GiB, 15% kept free" in capsys.readouterr().out


def test_batch_seconds_auto_is_60_on_a_cpu():
    from asr.settings import resolve_config

    settings, _ = resolve_config(["--batch_seconds", "auto", "--device", "cpu"])
    assert settings.train.batch_seconds == 60.0
    with pytest.raises(SystemExit):  # argparse: neither a number nor auto
        resolve_config(["--batch_seconds", "lots"])


def test_features_on_the_device_equal_the_loader_features(librispeech_fixtures):
    from asr.augment import Augmenter
    from asr.config import AUGMENT_PRESETS
    from asr.data import DataReport, SpeechDataset, collate, load_dataset
    from asr.features import WaveDataset, collate_waves, device_features
    from asr.tokenizers import CharTokenizer

    utts = load_dataset(str(librispeech_fixtures), "unused", DataReport())[:4]
    for augment in ("none", "librispeech"):
        augmenter = Augmenter(AUGMENT_PRESETS[augment]) if augment != "none" else None
        common = (utts, CharTokenizer(), 80)
        cpu = SpeechDataset(*common, augmenter=augmenter, seed=3)
        waves = WaveDataset(*common, augmenter=augmenter, seed=3)
        cpu.epoch = waves.epoch = 1
        expected = collate([cpu[i] for i in range(len(utts))])
        batch = collate_waves([waves[i] for i in range(len(utts))])
        got = device_features(batch, torch.device("cpu"), 80)
        assert torch.equal(batch["feature_lengths"], expected["feature_lengths"])
        assert torch.equal(batch["targets"], expected["targets"])
        assert got.shape == expected["features"].shape
        assert (got - expected["features"]).abs().max() <= 1e-4, augment  # padding included: 0 in both
        if augment != "none":
            assert (got == 0).sum() > (expected["features"] == 0).sum() * 0.9 > 0  # the masks came through


def test_a_run_with_device_features_trains_as_the_loader_path(tmp_path, tiny_set):
    import train

    args = ["--dataset", str(tiny_set), "--model", "tiny", "--no-tensorboard", "--augment", "librispeech",
            "--epochs", "1", "--max_steps", "2", "--batch_seconds", "3", "--device", "cpu"]  # fmt: skip
    on = train.main([*args, "--runs_dir", str(tmp_path / "on"), "--device_features"])
    off = train.main([*args, "--runs_dir", str(tmp_path / "off"), "--no-device_features"])
    assert on["losses"] == pytest.approx(off["losses"], rel=1e-4)
