"""Hostile input against runs, checkpoints, datasets and prediction folders: each test is one attack, asserting
the one-line message and that nothing outside the intended folder changed (docs/reliability.md)."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import asr.atomic
from asr.atomic import WriteError, atomic_write_text
from asr.checkpoint import CheckpointError, load_checkpoint, model_state, rng_states, save_checkpoint
from asr.config import MODEL_PRESETS
from asr.model import DeepSpeech2
from asr.text import CharTokenizer

ROOT = Path(__file__).resolve().parents[1]


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (links not followed) -> its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------- checkpoints


def _training_checkpoint() -> dict:
    torch.manual_seed(0)
    state = model_state(DeepSpeech2(MODEL_PRESETS["tiny"]), CharTokenizer())
    training = {"step": 1, "epoch": 0, "batch_in_epoch": 1, "skipped_steps": 0, "best_wer": 1.0, "rng": rng_states()}
    return state | {"train_config": {"dataset": "x"}, "training": training}


@pytest.mark.parametrize(
    ("section", "change", "message"),
    [
        ("model_config", {"evil": 1}, r"model_config has an unknown key 'evil'"),
        ("model_config", {"rnn_hidden": "64"}, r"model_config.rnn_hidden is '64' \(str\), expected int"),
        ("model_config", {"rnn_type": "evil"}, r"model_config.rnn_type is 'evil', not one of gru, lstm"),
        ("model_config", {"rnn_hidden": 10**7}, r"describes a model of 6e\+14 parameters .* above the limit"),
        ("model_config", {"rnn_layers": 10**12}, r"above the limit of 2e\+09; refusing to build it"),
        ("train_config", {"lr": "fast"}, r"train_config.lr is 'fast' \(str\), expected float"),
        ("training", {"epoch": None}, r"training has no 'epoch'"),
    ],
)
def test_a_tampered_checkpoint_is_one_message_naming_the_file(tmp_path, section, change, message):
    state = _training_checkpoint()
    state[section] = {k: v for k, v in {**state[section], **change}.items() if v is not None}
    save_checkpoint(tmp_path / "bad.pt", state)
    with pytest.raises(CheckpointError, match=message) as caught:
        load_checkpoint(tmp_path / "bad.pt")
    assert str(caught.value).startswith(f"{tmp_path / 'bad.pt'}: ") and "\n" not in str(caught.value)


def test_a_tampered_checkpoint_through_inference_is_one_line_and_no_traceback(tmp_path):
    state = _training_checkpoint()
    state["model_config"]["rnn_type"] = "evil"
    save_checkpoint(tmp_path / "bad.pt", state)
    (tmp_path / "data" / "audio").mkdir(parents=True)
    run = subprocess.run(
        [sys.executable, "inference.py", "--checkpoint", str(tmp_path / "bad.pt"), "--data_dir", str(tmp_path / "data"),
         "--out", str(tmp_path / "preds")],
        cwd=ROOT, capture_output=True, text=True, env=os.environ | {"ASR_DEBUG": "0"},
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'bad.pt'}: model_config.rnn_type is 'evil', not one of gru, lstm — the file is damaged "
        "or was not written by this project's train.py; use a checkpoint it wrote"
    ]
    assert not (tmp_path / "preds").exists()


# ---------------------------------------------------------------------------------------------- atomic writes


def test_a_full_disk_during_a_checkpoint_write_is_one_message_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    state = _training_checkpoint()
    save_checkpoint(tmp_path / "last.pt", state)
    before = _snapshot(tmp_path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(asr.atomic.os, "fsync", full)  # the disk fills while the data is flushed
    with pytest.raises(WriteError, match=r"last.pt: cannot write \(No space left on device\) — the disk is full"):
        save_checkpoint(tmp_path / "last.pt", state)
    assert _snapshot(tmp_path) == before  # the old checkpoint intact, no .tmp left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_a_file_size_limit_during_a_real_checkpoint_write_is_one_message(tmp_path):
    """A real write failure (ulimit -f: EFBIG; Python ignores SIGXFSZ) in a subprocess."""
    if sys.platform != "linux":
        pytest.skip("needs setrlimit")
    save_checkpoint(tmp_path / "last.pt", _training_checkpoint())
    before = _snapshot(tmp_path)
    script = (
        "import resource, sys; sys.path.insert(0, sys.argv[2]);"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000));"
        "from asr.checkpoint import load_checkpoint, save_checkpoint; from asr.errors import run_cli;"
        "sys.exit(run_cli(lambda a: save_checkpoint(sys.argv[1], load_checkpoint(sys.argv[1])), []))"
    )
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "last.pt"), str(ROOT)], capture_output=True,
                         text=True, env=os.environ | {"ASR_DEBUG": "0"})  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip() == (
        f"error: {tmp_path / 'last.pt'}: cannot write (File too large) — the file is larger than this process may "
        "write (ulimit -f): raise the limit or write elsewhere"
    )
    assert _snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_atomic_write_replaces_whole_files_and_cleans_up_after_any_failure(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "one")
    atomic_write_text(tmp_path / "a.txt", "two")
    assert (tmp_path / "a.txt").read_text() == "two" and oct((tmp_path / "a.txt").stat().st_mode & 0o777) == "0o644"

    def broken(f):
        f.write(b"half")
        raise KeyError("bug")

    with pytest.raises(KeyError):
        asr.atomic.atomic_write(tmp_path / "a.txt", broken)
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"] and (tmp_path / "a.txt").read_text() == "two"
