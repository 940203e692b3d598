"""Hostile input against runs, checkpoints, datasets and prediction folders: each test is one attack, asserting
the one-line message and that nothing outside the intended folder changed (docs/reliability.md)."""

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tone, write_custom_dir

import asr.atomic
import calc_metrics
import inference
import train
from asr.atomic import WriteError, atomic_write_text
from asr.checkpoint import CheckpointError, load_checkpoint, model_state, rng_states, save_checkpoint
from asr.config import MODEL_PRESETS
from asr.data import DataReport, load_dataset
from asr.errors import ASRError
from asr.model import DeepSpeech2
from asr.tokenizers import CharTokenizer

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


# ---------------------------------------------------------------------------------------------- runs


def _train(data, runs, *extra):
    args = ["--dataset", str(data), "--runs_dir", str(runs), "--model", "tiny", "--no-tensorboard", "--augment",
            "none", "--epochs", "2", "--max_steps", "1", *extra]  # fmt: skip
    return train.main(args)


def test_resume_of_a_checkpoint_naming_another_run_writes_only_into_its_own_folder(tmp_path, tiny_set):
    runs = tmp_path / "runs"
    victim = _train(tiny_set, runs, "--run_name", "victim")["run_dir"]
    attacker = _train(tiny_set, runs, "--run_name", "attacker")["run_dir"]
    state = torch.load(attacker / "last.pt", weights_only=True)
    state["train_config"] |= {"runs_dir": str(runs), "run_name": "victim"}  # points at the other run
    torch.save(state, attacker / "last.pt")
    before = _snapshot(victim)
    result = train.main(["--resume", str(attacker / "last.pt")])
    assert result["run_dir"] == attacker and result["step"] == 2
    assert _snapshot(victim) == before  # byte-identical: last.pt, best.pt, config.json
    assert torch.load(attacker / "last.pt", weights_only=True)["training"]["step"] == 2


def test_resuming_a_copied_run_folder_writes_into_the_copy(tmp_path, tiny_set):
    original = _train(tiny_set, tmp_path / "runs", "--run_name", "r")["run_dir"]
    copy = tmp_path / "elsewhere" / "r-copy"
    shutil.copytree(original, copy)
    before = _snapshot(original)
    assert train.main(["--resume", str(copy / "last.pt")])["run_dir"] == copy
    assert _snapshot(original) == before
    assert torch.load(copy / "last.pt", weights_only=True)["training"]["step"] == 2
    assert json.loads((copy / "config.json").read_text())["run_name"] == "r-copy"


def test_resume_refuses_a_checkpoint_outside_a_run_folder_and_a_run_name(tmp_path, tiny_set):
    original = _train(tiny_set, tmp_path / "runs", "--run_name", "r")["run_dir"]
    loose = tmp_path / "downloads" / "last.pt"
    loose.parent.mkdir()
    shutil.copy(original / "last.pt", loose)
    before, before_loose = _snapshot(original), _snapshot(loose.parent)
    with pytest.raises(ASRError, match=r"downloads/last.pt: not in a run folder \(no config.json beside it\)"):
        train.main(["--resume", str(loose)])
    with pytest.raises(ASRError, match=r"--run_name other: a resumed run writes into its checkpoint's folder"):
        train.main(["--resume", str(original / "last.pt"), "--run_name", "other"])
    assert _snapshot(original) == before and _snapshot(loose.parent) == before_loose
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["r"]


def _tones(root: Path, count: int) -> Path:
    return write_custom_dir(root, {f"u{i:02d}": (tone(0.4, freq=200 + 20 * i), 16000, "a b") for i in range(count)})


def test_resume_after_the_data_changed_is_refused_naming_both_counts(tmp_path):
    data = _tones(tmp_path / "data", 40)
    run = _train(data, tmp_path / "runs", "--run_name", "r")["run_dir"]
    assert json.loads((run / "config.json").read_text())["data_utterances"] == 40
    for i in range(30, 40):
        (data / "audio" / f"u{i}.flac").unlink()
        (data / "transcriptions" / f"u{i}.txt").unlink()
    before = _snapshot(run)
    with pytest.raises(ASRError, match=r"training data changed since .*last.pt was saved: 30 utterances now, 40 then"):
        train.main(["--resume", str(run / "last.pt")])
    assert _snapshot(run) == before
    assert train.main(["--resume", str(run / "last.pt"), "--allow_data_change"])["step"] == 2
    assert json.loads((run / "config.json").read_text())["data_utterances"] == 30


# ---------------------------------------------------------------------------------------------- data

NOTHING = "normalises to nothing"


def test_transcripts_that_normalise_to_nothing_are_reported_by_file_and_never_trained_on(tmp_path):
    texts = {"cyrillic": "привет мир", "chinese": "你好世界", "emoji": "😀🎉", "punct": "?!... —", "empty": ""}
    data = write_custom_dir(tmp_path / "data", {k: (tone(0.4), 16000, t) for k, t in texts.items()})
    report = DataReport()
    utts = load_dataset(str(data), tmp_path, report)
    assert [u.text for u in utts] == [None] * 5  # audio kept (it can still be transcribed), never a target
    lines = sorted(report.warnings)
    why = "(no letter a-z, digit or apostrophe: e.g. Cyrillic, Chinese, emoji, punctuation)"
    assert (
        lines[0]
        == f"{data}/transcriptions/chinese.txt: transcript {NOTHING} {why}: '你好世界'; audio kept without transcript"
    )
    assert lines[3] == f"{data}/transcriptions/empty.txt: transcript is empty; audio kept without transcript"
    assert all(f"{name}.txt: transcript" in " ".join(lines) for name in texts)
    with pytest.raises(ASRError, match=r"data: no usable training utterances \(5 read, 5 no transcript\)"):
        train.main(["--dataset", str(data), "--runs_dir", str(tmp_path / "runs"), "--model", "tiny",
                    "--no-tensorboard"])  # fmt: skip
    assert not (tmp_path / "runs").exists()


def test_a_transcript_link_out_of_the_dataset_is_never_read(tmp_path, capsys):
    secret = tmp_path / "secret.txt"  # stands for /etc/passwd
    secret.write_text("the secret words\n")
    data = write_custom_dir(tmp_path / "data", {"x": (tone(0.4), 16000, None), "y": (tone(0.4), 16000, "a b")})
    (data / "transcriptions" / "x.txt").symlink_to(secret)
    report = DataReport()
    assert [(u.id, u.text) for u in load_dataset(str(data), tmp_path, report)] == [("x", None), ("y", "a b")]
    assert report.warnings == [
        f"{data}/transcriptions/x.txt: a link to {secret}, outside the dataset folder {data}; refused (copy the "
        "file into the folder); not read"
    ]
    preds = tmp_path / "preds"
    preds.mkdir()
    (preds / "x.txt").write_text("the secret words\n")
    (preds / "y.txt").write_text("a b\n")
    with pytest.raises(ASRError, match=r"transcriptions/x.txt: a link to .*secret.txt, outside the dataset folder"):
        calc_metrics.main(["--transcriptions_dir", str(data / "transcriptions"), "--predictions_dir", str(preds)])
    assert "secret words" not in capsys.readouterr().out


def test_links_loops_fifos_and_folders_in_audio_are_reported_as_what_they_are(tmp_path):
    data = write_custom_dir(tmp_path / "data", {"good": (tone(0.4), 16000, "a b")}, fmt="wav")
    write_custom_dir(tmp_path / "elsewhere", {"real": (tone(0.4), 16000, "a b")}, fmt="wav")
    audio = data / "audio"
    (audio / "loop.wav").symlink_to("loop.wav")
    (audio / "dangling.wav").symlink_to("missing.wav")
    (audio / "outside.wav").symlink_to(tmp_path / "elsewhere" / "audio" / "real.wav")
    (audio / "inside.wav").symlink_to("good.wav")  # a link within the folder is fine
    os.mkfifo(audio / "fifo.wav")
    (audio / "folder.wav").mkdir()
    report = DataReport()
    assert [u.id for u in load_dataset(str(data), tmp_path, report)] == ["good", "inside"]
    assert report.failed == [
        f"{audio}/dangling.wav: a dangling link to missing.wav (no such file), ignored",
        f"{audio}/fifo.wav: a named pipe (FIFO), not a file; ignored",
        f"{audio}/folder.wav: a folder, not a file; ignored",
        f"{audio}/loop.wav: a symbolic link loop (-> loop.wav), ignored",
        f"{audio}/outside.wav: a link to {tmp_path}/elsewhere/audio/real.wav, outside the dataset folder {data}; "
        "refused (copy the file into the folder)",
    ]


# ---------------------------------------------------------------------------------------------- predictions


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from conftest import LIBRISPEECH_FIXTURES, SHORTEST

    if not LIBRISPEECH_FIXTURES.is_dir():
        pytest.skip("../shared/data/speech not found")
    data = tmp_path_factory.mktemp("ckpt-data")
    for sub in ("audio", "transcriptions"):
        (data / sub).mkdir()
    for utt in SHORTEST[:2]:
        shutil.copy(next((LIBRISPEECH_FIXTURES / "audio").glob(f"{utt}.*")), data / "audio")
        shutil.copy(LIBRISPEECH_FIXTURES / "transcriptions" / f"{utt}.txt", data / "transcriptions")
    return _train(data, tmp_path_factory.mktemp("runs"), "--epochs", "1")["run_dir"] / "last.pt"


def _labelled(root: Path, ids: list[str]) -> Path:
    items = {i: (tone(0.5, freq=300 + 50 * n), 16000, "a b") for n, i in enumerate(ids)}
    return write_custom_dir(root, items, fmt="wav")


def test_a_rerun_into_the_same_out_leaves_no_stale_prediction_to_score(tmp_path, checkpoint, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    data = _labelled(tmp_path / "data", ["a", "b", "c"])
    assert inference.main(["--data_dir", str(data), "--checkpoint", str(checkpoint), "--out", "preds"]) == 0
    (tmp_path / "preds" / "mine.txt").write_text("a note of the user's\n")
    (data / "audio" / "b.wav").write_bytes(b"not audio any more")  # b fails in the second run
    assert inference.main(["--data_dir", str(data), "--checkpoint", str(checkpoint), "--out", "preds"]) == 1
    assert sorted(p.name for p in (tmp_path / "preds").glob("*.txt")) == ["a.txt", "c.txt", "mine.txt"]
    assert json.loads((tmp_path / "preds" / "inference.json").read_text())["written"] == ["a", "c"]
    capsys.readouterr()
    assert calc_metrics.main([]) == 1  # b's old prediction is gone, so b is missing, not scored
    assert "1 reference(s) have no prediction in preds: b" in capsys.readouterr().err
    assert calc_metrics.main(["--allow_missing"]) == 0
    out = capsys.readouterr()
    assert "matched 2 of 3 references" in out.out and "ignored 1 <id>.txt files in preds/" in out.err


def test_an_id_too_long_for_the_file_system_is_reported_and_the_record_still_written(tmp_path, checkpoint, capsys):
    long_id = "x" * 251  # <id>.wav and <id>.txt fit in 255 bytes, <id>.json does not
    data = _labelled(tmp_path / "data", ["a", long_id])
    out = tmp_path / "preds"
    args = ["--data_dir", str(data), "--checkpoint", str(checkpoint), "--out", str(out), "--timestamps"]
    assert inference.main(args) == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "a.txt", "inference.json", "metrics.json"]
    assert json.loads((out / "inference.json").read_text())["written"] == ["a"]
    assert f"{out}/{long_id}.json: cannot write (the name is too long for this file system (256 characters))" in (
        capsys.readouterr().out
    )


def test_a_full_disk_while_writing_predictions_is_one_message(tmp_path, checkpoint, monkeypatch):
    data = _labelled(tmp_path / "data", ["a", "b"])
    real = Path.write_text

    def full(self, *args, **kwargs):
        if self.parent.name == "preds":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(WriteError, match=r"preds/a.txt: cannot write \(No space left on device\) — the disk is full"):
        inference.main(["--data_dir", str(data), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "preds")])
    assert list((tmp_path / "preds").iterdir()) == []


def test_a_corrupt_inference_json_is_one_line_from_calc_metrics(tmp_path):
    (tmp_path / "preds").mkdir()
    (tmp_path / "preds" / "inference.json").write_text('{"references": "x", "writ')
    run = subprocess.run([sys.executable, str(ROOT / "calc_metrics.py")], cwd=tmp_path, capture_output=True,
                         text=True, env=os.environ | {"ASR_DEBUG": "0"})  # fmt: skip
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.splitlines() == [
        "error: preds/inference.json: not a valid record (Unterminated string starting at: line 1 column 21 (char "
        "20)) — rerun inference.py, or remove it and pass --transcriptions_dir DIR"
    ]
    debug = subprocess.run([sys.executable, str(ROOT / "calc_metrics.py"), "--debug"], cwd=tmp_path,
                           capture_output=True, text=True)  # fmt: skip
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_librispeech_files_linking_out_of_the_split_are_refused(tmp_path):
    chapter = tmp_path / "LibriSpeech" / "dev-clean" / "1" / "2"
    chapter.mkdir(parents=True)
    import soundfile as sf

    sf.write(chapter / "1-2-0000.flac", tone(0.4), 16000)
    (tmp_path / "outside.flac").write_bytes((chapter / "1-2-0000.flac").read_bytes())
    (chapter / "1-2-0001.flac").symlink_to(tmp_path / "outside.flac")
    (chapter / "1-2.trans.txt").write_text("1-2-0000 A B\n1-2-0001 C D\n")
    report = DataReport()
    assert [u.id for u in load_dataset("dev-clean", tmp_path, report)] == ["1-2-0000"]
    assert report.failed[0].startswith(f"{chapter}/1-2-0001.flac: a link to {tmp_path}/outside.flac, outside")


def test_train_py_reports_bad_input_in_one_line_and_a_traceback_only_with_debug(tmp_path):
    command = [sys.executable, str(ROOT / "train.py"), "--max_steps", "0", "--runs_dir", str(tmp_path / "runs")]
    run = subprocess.run(command, capture_output=True, text=True, env=os.environ | {"ASR_DEBUG": "0"})
    assert (run.returncode, run.stderr) == (2, "error: --max_steps must be at least 1, got 0\n")
    debug = subprocess.run([*command, "--debug"], capture_output=True, text=True)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and not (tmp_path / "runs").exists()


def test_a_librispeech_line_that_normalises_to_nothing_is_reported_with_its_line(tmp_path):
    import soundfile as sf

    chapter = tmp_path / "LibriSpeech" / "dev-clean" / "1" / "2"
    chapter.mkdir(parents=True)
    for i in range(2):
        sf.write(chapter / f"1-2-000{i}.flac", tone(0.4), 16000)
    (chapter / "1-2.trans.txt").write_text("1-2-0000 A B\n1-2-0001 ПРИВЕТ\n")
    report = DataReport()
    assert [u.id for u in load_dataset("dev-clean", tmp_path, report)] == ["1-2-0000"]
    assert report.warnings == [
        f"{chapter}/1-2.trans.txt:2: the transcript of 1-2-0001 {NOTHING} (no letter a-z, "
        "digit or apostrophe: e.g. Cyrillic, Chinese, emoji, punctuation); audio ignored"
    ]
