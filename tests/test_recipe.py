"""The LibriSpeech recipe from published DS2 configs, the optimizer's groups and schedules, the batch rule."""

import math
import os

import pytest
import torch

import train
from asr.config import MODEL_PRESETS, RECIPE_SOURCES, RECIPES, TrainConfig
from asr.model import DeepSpeech2
from asr.optim import NO_DECAY, exponential, param_groups, regroup_state, scaled_lr
from asr.settings import resolve_config


def test_the_design_card_command_prints_the_recipe_with_each_values_source(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no data/LibriSpeech here: the run stops at the missing split, after the print
    with pytest.raises((FileNotFoundError, ValueError, OSError, SystemExit)):
        train.main(["--dataset", "train-clean-360", "--epochs", "50", "--no_download", "--device", "cpu"])
    printed = capsys.readouterr().out
    assert "recipe: librispeech" in printed
    for key, source in RECIPE_SOURCES["librispeech"].items():
        line = next(line for line in printed.splitlines() if line.strip().startswith(key + " = "))
        assert source in line, (key, line)
    assert RECIPE_SOURCES["librispeech"].keys() == RECIPES["librispeech"].keys()
    assert "PaddleSpeech lr 5.0e-4" in printed and "SpecAugment LD policy" in printed


def test_norms_and_biases_get_no_weight_decay():
    model = DeepSpeech2(MODEL_PRESETS["tiny"])
    decay, no_decay = param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in no_decay["params"]} == {n for n, p in model.named_parameters() if p.ndim == 1}
    assert any(n.startswith("bn1") for n in (names[id(p)] for p in no_decay["params"]))
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0 and no_decay["name"] == NO_DECAY
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_an_optimizer_state_of_one_group_loads_into_two():
    torch.manual_seed(0)
    model = DeepSpeech2(MODEL_PRESETS["tiny"])
    old = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(1, 30, 40), torch.tensor([30]))[0].sum().backward()
    old.step()
    new = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-3)
    new.load_state_dict(regroup_state(old.state_dict(), model, new))
    for p in model.parameters():
        assert torch.equal(new.state[p]["exp_avg"], old.state[p]["exp_avg"])


def test_the_exponential_schedule_warms_up_then_steps_down_per_epoch():
    factors = [exponential(s, total=100, warmup=0.1, steps_per_epoch=10, decay=0.5) for s in range(40)]
    assert factors[0] == pytest.approx(1 / 25) and factors[5] == pytest.approx(1 / 25 + 0.96 * 0.5)
    assert factors[10:20] == [0.5] * 10 and factors[20] == 0.25 and factors[39] == 0.125


def test_the_lr_follows_the_global_batch_by_the_square_root_rule_unless_given(monkeypatch):
    assert scaled_lr(5e-4, 3200.0, 800.0) == pytest.approx(1e-3)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setenv("WORLD_SIZE", "2")
    settings, _ = resolve_config(["--dataset", "train-clean-100", "--device", "cpu", "--batch_seconds", "100"])
    assert settings.train.lr == pytest.approx(5e-4 * math.sqrt(200 / 800))  # 2 processes x 100 s
    given, _ = resolve_config(["--dataset", "train-clean-100", "--device", "cpu", "--lr", "1e-3"])
    assert given.train.lr == 1e-3
    assert resolve_config(["--device", "cpu"])[0].train.lr == TrainConfig.lr  # a folder run: no reference
