"""The GPU-ready training path, checked on a CPU: finite-only batch-norm statistics, both RNN paths, features
computed inside the step, batch sizing by memory, the device check script."""

import dataclasses

import pytest
import torch

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
