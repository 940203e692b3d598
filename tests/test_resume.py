"""Resuming on another machine: CUDA RNG state of one device, AMP scaler states, another process count."""

import pytest
import torch
from test_ddp import _torchrun

import train
from asr.checkpoint import rng_states, set_rng_states
from asr.errors import ASRError
from asr.resume import batch_in_epoch_for_world, grad_accum_for_world, load_scaler_state


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch.cuda as on a machine with GPUs: one RNG state per call, the ones set are recorded."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": torch.full((8,), 7, dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": calls.append(state))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("saves every GPU's state"))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda s: pytest.fail("restores every GPU's state"))
    return calls


def test_a_gpu_checkpoint_holds_its_own_device_state_and_restores_it(fake_cuda):
    saved = rng_states()
    assert torch.equal(saved["cuda"], torch.full((8,), 7, dtype=torch.uint8))  # one state, not a list per GPU
    set_rng_states(saved)
    assert len(fake_cuda) == 1 and torch.equal(fake_cuda[0], saved["cuda"])


def test_a_4_gpu_checkpoint_of_the_old_format_resumes_on_one_gpu(fake_cuda):
    saved = rng_states() | {"cuda": [torch.full((8,), i, dtype=torch.uint8) for i in range(4)]}
    set_rng_states(saved)  # set_rng_state_all would raise IndexError on a 1-GPU machine
    assert torch.equal(fake_cuda[0], torch.zeros(8, dtype=torch.uint8))  # rank 0's own GPU, the first


def test_a_cpu_checkpoint_resumes_on_a_gpu_and_a_gpu_checkpoint_on_a_cpu(fake_cuda, monkeypatch):
    torch.manual_seed(5)
    cpu_saved = rng_states() | {"cuda": None}
    set_rng_states(cpu_saved)
    assert fake_cuda == []  # nothing to restore: the GPU keeps its seed
    gpu_saved = rng_states()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    expected = torch.rand(1)
    set_rng_states(gpu_saved)  # the CUDA state is ignored, the CPU generators are restored
    assert torch.equal(torch.rand(1), expected) and fake_cuda == []


def test_an_empty_scaler_state_loads_into_an_enabled_scaler_and_a_full_one_into_a_disabled(capsys):
    enabled = torch.amp.GradScaler("cpu", init_scale=1024.0)
    load_scaler_state(enabled, torch.amp.GradScaler("cpu", enabled=False).state_dict())  # {}: CPU or --no-amp
    assert enabled.get_scale() == 1024.0
    assert "starts from its default scale" in capsys.readouterr().out
    disabled = torch.amp.GradScaler("cpu", enabled=False)
    load_scaler_state(disabled, enabled.state_dict())
    assert disabled.state_dict() == {}
    resumed = torch.amp.GradScaler("cpu")
    load_scaler_state(resumed, enabled.state_dict())
    assert resumed.get_scale() == 1024.0


def test_another_process_count_keeps_the_batches_per_update_or_is_refused():
    assert grad_accum_for_world("last.pt", saved_world=2, saved_accum=1, world=1) == 2
    assert grad_accum_for_world("last.pt", saved_world=1, saved_accum=4, world=2) == 2
    assert grad_accum_for_world("last.pt", saved_world=4, saved_accum=1, world=4) == 1
    with pytest.raises(ASRError, match=r"last.pt: written by 1 process\(es\) x --grad_accum 1 = 1 batch\(es\) per "
                       r"update; 2 processes cannot continue that schedule — resume with 1 process"):  # fmt: skip
        grad_accum_for_world("last.pt", saved_world=1, saved_accum=1, world=2)


def test_the_position_in_the_epoch_maps_to_the_new_process_count():
    assert batch_in_epoch_for_world(6, saved_world=2, world=1, batches_in_epoch=41) == 12
    assert batch_in_epoch_for_world(12, saved_world=1, world=2, batches_in_epoch=21) == 6
    assert batch_in_epoch_for_world(21, saved_world=2, world=1, batches_in_epoch=41) == 41  # a finished epoch


def _weights(path):
    state = torch.load(path, weights_only=True)
    return {k: v for k, v in state["model"].items() if not k.endswith(("running_mean", "running_var"))}, state


def _close(a, b):
    return all(torch.allclose(a[k], b[k], rtol=0, atol=2e-5) for k in a)


@pytest.mark.slow
def test_two_processes_resume_as_one_and_one_as_two(tmp_path, tiny_set, monkeypatch):
    base = ["--dataset", str(tiny_set), "--model", "tiny", "--epochs", "2", "--batch_seconds", "3", "--seed", "1",
            "--augment", "none", "--no-tensorboard", "--eval_every", "5"]  # fmt: skip
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    # 2 processes x 1 batch, 3 updates uninterrupted; then cut after 1 and resumed by one process (grad_accum 2).
    _torchrun(*base, "--max_steps", "3", "--runs_dir", str(tmp_path / "two"))
    _torchrun(*base, "--max_steps", "1", "--runs_dir", str(tmp_path / "cut2"))
    cut = tmp_path / "cut2" / "tiny" / "last.pt"
    assert _weights(cut)[1]["training"]["world_size"] == 2
    resumed = train.main(["--resume", str(cut), "--max_steps", "3"])
    assert resumed["step"] == 3
    whole, _ = _weights(tmp_path / "two" / "tiny" / "last.pt")
    again, state = _weights(cut)
    assert state["train_config"]["grad_accum"] == 2 and state["training"]["world_size"] == 1
    assert _close(whole, again)

    # 1 process x 2 batches, cut after 1 update and resumed by 2 processes (grad_accum 1): the same weights.
    one = train.main([*base, "--max_steps", "3", "--grad_accum", "2", "--runs_dir", str(tmp_path / "one")])
    cut1 = train.main([*base, "--max_steps", "1", "--grad_accum", "2", "--runs_dir", str(tmp_path / "cut1")])
    _torchrun("--resume", str(cut1["run_dir"] / "last.pt"), "--max_steps", "3")
    assert _close(_weights(one["run_dir"] / "last.pt")[0], _weights(cut1["run_dir"] / "last.pt")[0])

    # 1 process x 1 batch cannot be continued by 2: refused, naming both counts.
    single = train.main([*base, "--max_steps", "1", "--runs_dir", str(tmp_path / "single")])
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it; the refusal comes before joining any group
    with pytest.raises(ASRError, match="written by 1 process"):
        train.main(["--resume", str(single["run_dir"] / "last.pt")])
