"""Checkpoints hold only tensors and plain types and load with weights_only=True; anything else is refused."""

import random

import numpy as np
import pytest
import torch

from asr.checkpoint import (
    load_checkpoint,
    model_from_checkpoint,
    model_state,
    rng_states,
    save_checkpoint,
    set_rng_states,
)
from asr.config import MODEL_PRESETS
from asr.model import DeepSpeech2
from asr.tokenizers import CharTokenizer


def _tiny() -> tuple[DeepSpeech2, CharTokenizer]:
    torch.manual_seed(0)
    return DeepSpeech2(MODEL_PRESETS["tiny"]), CharTokenizer()


def test_round_trip_with_weights_only(tmp_path):
    model, tokenizer = _tiny()
    save_checkpoint(tmp_path / "c.pt", model_state(model, tokenizer) | {"training": {"rng": rng_states()}})
    raw = torch.load(tmp_path / "c.pt", weights_only=True)  # plain torch, no allow-list: nothing but plain data
    assert raw["format_version"] == 2 and raw["tokenizer"] == {"kind": "char", "vocab": tokenizer.vocab}
    rebuilt, _ = model_from_checkpoint(load_checkpoint(tmp_path / "c.pt"))
    expected = model.state_dict()
    assert all(torch.equal(expected[k], w) for k, w in rebuilt.state_dict().items())


def test_a_model_config_without_time_stride_loads_as_stride_2(tmp_path):
    model, tokenizer = _tiny()
    state = model_state(model, tokenizer)
    del state["model_config"]["time_stride"]  # as written before the field existed
    save_checkpoint(tmp_path / "old.pt", state)
    rebuilt, _ = model_from_checkpoint(load_checkpoint(tmp_path / "old.pt"))
    assert rebuilt.config.time_stride == 2 and rebuilt.output_lengths(torch.tensor(101)).item() == 51


def test_rng_states_restore_every_generator():
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    saved = rng_states()
    expected = (random.random(), np.random.random(), torch.rand(1).item())
    set_rng_states(saved)
    assert (random.random(), np.random.random(), torch.rand(1).item()) == expected


class _WritesAFile:
    """A pickle payload that would create a file when unpickled."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return open, (str(self.target), "w")


def test_a_pickled_payload_is_refused_and_never_runs(tmp_path):
    model, tokenizer = _tiny()
    target = tmp_path / "pwned.txt"
    evil = model_state(model, tokenizer) | {"format_version": 2, "extra": _WritesAFile(target)}
    torch.save(evil, tmp_path / "evil.pt")
    assert not target.exists()
    refused = r"refused to load .*evil.pt: it holds a pickled Python object \((_?io|builtins).open\)"  # 3.13: _io
    with pytest.raises(ValueError, match=refused):
        load_checkpoint(tmp_path / "evil.pt")
    assert not target.exists()


def test_format_1_checkpoints_from_earlier_versions_still_load(tmp_path):
    """Format 1 stored np.random.get_state() (an array) and four rng_* keys; it loads and is upgraded."""
    model, tokenizer = _tiny()
    np.random.seed(5)
    training = {"step": 3, "rng_python": random.getstate(), "rng_numpy": np.random.get_state()}
    training |= {"rng_torch": torch.get_rng_state(), "rng_cuda": None}
    torch.save(model_state(model, tokenizer) | {"format_version": 1, "training": training}, tmp_path / "old.pt")
    state = load_checkpoint(tmp_path / "old.pt")
    assert state["format_version"] == 2 and set(state["training"]) == {"step", "rng"}
    expected = np.random.random()
    set_rng_states(state["training"]["rng"])
    assert np.random.random() == expected
    model_from_checkpoint(state)


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.pt is not a readable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a checkpoint of this project: missing format_version"):
        load_checkpoint(tmp_path / "other.pt")
