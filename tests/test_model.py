import dataclasses

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asr.config import MODEL_PRESETS
from asr.model import BiRNN, DeepSpeech2, MaskedBatchNorm, count_parameters, frame_rate

TINY = MODEL_PRESETS["tiny"]


@pytest.fixture
def model():
    torch.manual_seed(0)
    return DeepSpeech2(TINY)


@pytest.mark.parametrize("length", [1, 2, 3, 7, 10, 11, 99, 100, 101, 257])
def test_output_lengths_match_the_real_forward(model, length):
    log_probs, out_lengths = model.eval()(torch.randn(1, length, TINY.n_mels), torch.tensor([length]))
    assert log_probs.shape[1] == out_lengths.item() == model.output_lengths(torch.tensor(length)).item()


@pytest.mark.parametrize("stride", [2, 3, 4])
@pytest.mark.parametrize("length", [1, 2, 3, 4, 5, 7, 10, 11, 99, 100, 101, 257])
def test_output_lengths_match_the_real_forward_at_every_time_stride(stride, length):
    torch.manual_seed(0)
    model = DeepSpeech2(dataclasses.replace(TINY, time_stride=stride)).eval()
    log_probs, out_lengths = model(torch.randn(1, length, TINY.n_mels), torch.tensor([length]))
    assert log_probs.shape[1] == out_lengths.item() == model.output_lengths(torch.tensor(length)).item()
    assert out_lengths.item() == (length - 1) // stride + 1  # kernel 11, padding 5: one frame per `stride`


def test_frame_rate_follows_the_time_stride():
    assert [frame_rate(dataclasses.replace(TINY, time_stride=s)) for s in (2, 3, 4)] == [50.0, 100 / 3, 25.0]
    model = DeepSpeech2(dataclasses.replace(TINY, time_stride=4))
    assert model.output_lengths(torch.tensor(100 * 60)).item() / 60 == pytest.approx(25, abs=0.05)


def test_at_least_40_output_frames_per_second(model):
    frames_per_second = model.output_lengths(torch.tensor(100 * 60)).item() / 60  # 100 feature frames/s
    assert frames_per_second == pytest.approx(50, abs=0.05)


def test_log_probs_are_normalised(model):
    log_probs, _ = model.eval()(torch.randn(2, 30, TINY.n_mels), torch.tensor([30, 17]))
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2, 15), atol=1e-5)


@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
def test_padding_does_not_leak_in_eval(rnn_type):
    """Each utterance's output is the same alone or in a padded batch (garbage in the padding too)."""
    torch.manual_seed(0)
    model = DeepSpeech2(dataclasses.replace(TINY, rnn_type=rnn_type))
    model.train()(torch.randn(3, 40, TINY.n_mels), torch.tensor([40, 25, 9]))  # give BN real running stats
    model.eval()
    lengths = torch.tensor([57, 31, 8])
    batch = torch.randn(3, 57, TINY.n_mels)
    out, out_lengths = model(batch, lengths)
    for i, n in enumerate(lengths):
        alone, _ = model(batch[i : i + 1, :n], lengths[i : i + 1])
        assert torch.allclose(alone[0], out[i, : out_lengths[i]], atol=1e-5)


def test_padding_does_not_change_training_statistics(model):
    """Train mode: adding 40 padded frames changes neither outputs nor batch-norm running stats."""
    x, lengths = torch.randn(2, 30, TINY.n_mels), torch.tensor([30, 21])
    padded = torch.cat([x, torch.randn(2, 40, TINY.n_mels)], dim=1)
    twin = DeepSpeech2(TINY)
    twin.load_state_dict(model.state_dict())
    a, la = model.train()(x, lengths)
    b, _ = twin.train()(padded, lengths)
    for i, n in enumerate(la):
        assert torch.allclose(a[i, :n], b[i, :n], atol=1e-5)
    for name, buf in model.named_buffers():
        assert torch.allclose(buf, dict(twin.named_buffers())[name], atol=1e-6), name


def test_masked_batch_norm_matches_batch_norm_without_padding():
    torch.manual_seed(0)
    x = torch.randn(4, 6, 20)
    mine, ref = MaskedBatchNorm(6), torch.nn.BatchNorm1d(6)
    out = mine(x, torch.ones(4, 20, dtype=torch.bool))
    assert torch.allclose(out, ref(x), atol=1e-5)
    assert torch.allclose(mine.running_var, ref.running_var, atol=1e-6)
    assert torch.allclose(mine.running_mean, ref.running_mean, atol=1e-6)


def test_preset_sizes():
    sizes = {name: count_parameters(DeepSpeech2(cfg)) for name, cfg in MODEL_PRESETS.items()}
    assert sizes["tiny"] < 200_000
    assert 1_000_000 < sizes["small"] < 10_000_000
    assert 25_000_000 <= sizes["base"] <= 50_000_000


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_birnn_equals_a_packed_bidirectional_rnn(cell):
    torch.manual_seed(0)
    mine = BiRNN(cell, 6, 5)
    ref = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell](6, 5, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for name, p in mine.forward_rnn.named_parameters():
            getattr(ref, name).copy_(p)
        for name, p in mine.backward_rnn.named_parameters():
            getattr(ref, f"{name}_reverse").copy_(p)
    x, lengths = torch.randn(3, 9, 6), torch.tensor([9, 4, 1])
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = pad_packed_sequence(ref(packed)[0], batch_first=True, total_length=9)  # (B, T, 2 * hidden)
    expected = out[..., :5] + out[..., 5:]
    got = mine(x, lengths)
    for i, n in enumerate(lengths):
        assert torch.allclose(got[i, :n], expected[i, :n], atol=1e-6)
