"""inference.py and calc_metrics.py end to end, on the real LibriSpeech fixtures."""

import json
import shutil

import pytest

import calc_metrics
import inference
import train
from asr.errors import ASRError
from asr.text import normalize


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny model trained for a few steps inside the test run."""
    from conftest import LIBRISPEECH_FIXTURES

    if not LIBRISPEECH_FIXTURES.is_dir():
        pytest.skip("../shared/data/speech not found")
    runs = tmp_path_factory.mktemp("runs")
    args = ["--dataset", str(LIBRISPEECH_FIXTURES), "--runs_dir", str(runs), "--model", "tiny"]
    result = train.main([*args, "--epochs", "1", "--max_steps", "2", "--no-tensorboard"])
    return result["run_dir"] / "best.pt"


def test_inference_writes_one_file_per_utterance_and_metrics(tmp_path, checkpoint, librispeech_fixtures):
    out = tmp_path / "preds"
    code = inference.main(["--data_dir", str(librispeech_fixtures), "--out", str(out), "--checkpoint", str(checkpoint)])
    assert code == 0
    ids = sorted(p.stem for p in (librispeech_fixtures / "audio").iterdir())
    assert sorted(p.stem for p in out.glob("*.txt")) == ids and len(ids) == 14
    for p in out.glob("*.txt"):
        text = p.read_text()
        assert text.endswith("\n") and text.count("\n") == 1 and normalize(text) == text.strip()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["utterances"] == 14 and metrics["words"] == 306 and metrics["failed"] == []
    assert (
        calc_metrics.main(
            ["--transcriptions_dir", str(librispeech_fixtures / "transcriptions"), "--predictions_dir", str(out)]
        )
        == 0
    )


def test_inference_continues_past_unreadable_files(tmp_path, checkpoint, librispeech_fixtures, capsys):
    data = tmp_path / "data"
    shutil.copytree(librispeech_fixtures, data)
    (data / "audio" / "broken.wav").write_bytes(b"RIFF....WAVEfmt nothing useful")
    out = tmp_path / "preds"
    assert inference.main(["--data_dir", str(data), "--out", str(out), "--checkpoint", str(checkpoint)]) == 1
    assert len(list(out.glob("*.txt"))) == 14
    assert "broken.wav: cannot read audio header" in capsys.readouterr().out


def test_inference_argument_errors(tmp_path, checkpoint):
    with pytest.raises(ASRError, match="exactly one of --data_dir"):
        inference.main(["--checkpoint", str(checkpoint)])
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*python train.py"):
        inference.main(["--data_dir", str(tmp_path), "--checkpoint", str(tmp_path / "none.pt")])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt is not a readable PyTorch checkpoint"):
        inference.main(["--data_dir", str(tmp_path), "--checkpoint", str(tmp_path / "junk.pt")])
    with pytest.raises(FileNotFoundError, match="audio does not exist"):
        inference.main(["--data_dir", str(tmp_path), "--checkpoint", str(checkpoint)])


def _write(folder, texts):
    folder.mkdir(parents=True, exist_ok=True)
    for utt_id, text in texts.items():
        (folder / f"{utt_id}.txt").write_text(text)


def test_calc_metrics_known_wer(tmp_path, capsys):
    _write(tmp_path / "ref", {"a": "THE CAT SAT ON THE MAT", "b": "Hello world", "c": "one two three four"})
    # a: 1 substitution; b: exact after normalisation; c: 1 deletion + 1 insertion -> 3 edits / 12 words
    _write(tmp_path / "hyp", {"a": "the cat sat on a mat", "b": "hello, world!", "c": "one three four five", "x": "?"})
    args = ["--transcriptions_dir", str(tmp_path / "ref"), "--predictions_dir", str(tmp_path / "hyp")]
    assert calc_metrics.main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["word_edits"], result["words"], result["wer"]) == (3, 12, 0.25)
    assert result["extra"] == ["x"] and result["missing"] == []
    assert result["worst"][0]["id"] == "c"


def test_calc_metrics_missing_predictions(tmp_path, capsys):
    _write(tmp_path / "ref", {"a": "one two", "b": "three four"})
    _write(tmp_path / "hyp", {"a": "one two"})
    args = ["--transcriptions_dir", str(tmp_path / "ref"), "--predictions_dir", str(tmp_path / "hyp")]
    assert calc_metrics.main(args) == 1
    assert "1 reference(s) have no prediction" in capsys.readouterr().err
    assert calc_metrics.main([*args, "--allow_missing", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["wer"] == 0.5


def test_calc_metrics_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere is not a folder"):
        calc_metrics.main(["--transcriptions_dir", str(tmp_path / "nowhere")])
    _write(tmp_path / "ref", {"a": "x"})
    (tmp_path / "ref" / "bad.txt").write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(ASRError, match="bad.txt: transcript is not UTF-8"):
        calc_metrics.main(["--transcriptions_dir", str(tmp_path / "ref"), "--predictions_dir", str(tmp_path / "ref")])


def test_inference_on_awkward_but_valid_audio(tmp_path, checkpoint):
    """Tiny clips, stereo, 8/22.05/44.1/48 kHz and mp3 are all transcribed (one .txt each)."""
    import soundfile as sf
    from conftest import tone

    audio = tmp_path / "data" / "audio"
    audio.mkdir(parents=True)
    sf.write(audio / "blip.wav", tone(0.01), 16000)  # 1 feature frame: shorter than any convolution kernel
    sf.write(audio / "stereo48k.flac", tone(0.5, 48000, channels=2), 48000)
    sf.write(audio / "phone8k.wav", tone(0.5, 8000), 8000)
    sf.write(audio / "cd.ogg", tone(0.5, 44100), 44100)
    sf.write(audio / "web.mp3", tone(0.5, 22050), 22050)
    out = tmp_path / "preds"
    assert (
        inference.main(["--data_dir", str(tmp_path / "data"), "--out", str(out), "--checkpoint", str(checkpoint)]) == 0
    )
    assert sorted(p.stem for p in out.glob("*.txt")) == ["blip", "cd", "phone8k", "stereo48k", "web"]
    assert not (out / "metrics.json").exists()  # no references, no metrics


def test_design_card_commands_as_written(tmp_path, checkpoint, librispeech_fixtures, monkeypatch, capsys):
    """`inference.py --data_dir X --out preds` then `calc_metrics.py`, no other flags, in a fresh folder."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint found in runs/\*/best.pt .*python train.py"):
        inference.main(["--data_dir", str(librispeech_fixtures), "--out", "preds"])
    for name in ("older", "newer"):  # the newest best.pt is the one a user means
        (tmp_path / "runs" / name).mkdir(parents=True)
        shutil.copy(checkpoint, tmp_path / "runs" / name / "best.pt")
    assert inference.main(["--data_dir", str(librispeech_fixtures), "--out", "preds"]) == 0
    assert "checkpoint: runs/newer/best.pt" in capsys.readouterr().out
    source = json.loads((tmp_path / "preds" / "inference.json").read_text())
    assert source["references"] == str(librispeech_fixtures / "transcriptions")
    assert calc_metrics.main([]) == 0
    out = capsys.readouterr().out
    assert f"references {librispeech_fixtures / 'transcriptions'}/ vs predictions preds/" in out
    assert "matched 14 of 14 references" in out and "WER" in out


def test_calc_metrics_without_a_record_asks_for_the_references(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "preds").mkdir()
    with pytest.raises(FileNotFoundError, match=r"preds/inference.json not found.*--transcriptions_dir"):
        calc_metrics.main([])


def test_inference_on_a_folder_without_audio_fails(tmp_path, checkpoint):
    (tmp_path / "empty" / "audio").mkdir(parents=True)
    with pytest.raises(ASRError, match=r"no audio could be transcribed in .*empty"):
        inference.main(["--data_dir", str(tmp_path / "empty"), "--checkpoint", str(checkpoint), "--out", str(tmp_path)])


def test_inference_on_a_librispeech_split(tmp_path, checkpoint, librispeech_fixtures, capsys):
    """--dataset: a missing split is fetched only when allowed (--no_download refuses), then read from disk."""
    args = ["--dataset", "test-clean", "--librispeech_dir", str(tmp_path), "--checkpoint", str(checkpoint)]
    with pytest.raises(FileNotFoundError, match=r"LibriSpeech test-clean is not at .*drop --no_download"):
        inference.main([*args, "--no_download", "--out", str(tmp_path / "preds")])
    chapter = tmp_path / "LibriSpeech" / "test-clean" / "1034" / "121119"  # unpacked by hand: used as it is
    chapter.mkdir(parents=True)
    lines = []
    for path in sorted((librispeech_fixtures / "audio").glob("1034-121119-*.flac")):
        shutil.copy(path, chapter)
        text = (librispeech_fixtures / "transcriptions" / f"{path.stem}.txt").read_text().strip()
        lines.append(f"{path.stem} {text.upper()}\n")
    (chapter / "1034-121119.trans.txt").write_text("".join(lines))
    assert inference.main([*args, "--out", str(tmp_path / "preds")]) == 0
    assert sorted(p.stem for p in (tmp_path / "preds").glob("*.txt")) == ["1034-121119-0022", "1034-121119-0046"]
    assert "LibriSpeech test-clean: using" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "preds" / "metrics.json").read_text())
    assert metrics["utterances"] == 2 and metrics["data"] == "test-clean"


@pytest.mark.parametrize("decoder", ["greedy", "beam"])
def test_inference_timestamps_write_words_with_seconds(tmp_path, decoder):
    """--timestamps: <id>.json beside <id>.txt, here from saved hand-made log-probs whose letters sit at known
    frames (50 per second): "book" in frames 1-7 (b held, o blank o, k), "is" in frames 15-18."""
    import numpy as np

    from asr.tokenizers import CharTokenizer

    tokenizer, path = CharTokenizer(), "-bb-o-ok---_---ii-s-"
    probs = np.full((len(path), len(tokenizer)), 0.01 / (len(tokenizer) - 1))
    for t, c in enumerate(path):
        probs[t, tokenizer.vocab.index({"-": "<blank>", "_": " "}.get(c, c))] = 0.99
    logits = tmp_path / "logits"
    logits.mkdir()
    (logits / "tokenizer.json").write_text(json.dumps(tokenizer.state_dict()))
    np.save(logits / "book.npy", np.log(probs).astype(np.float32))
    out = tmp_path / "preds"
    args = ["--logits", str(logits), "--out", str(out), "--decoder", decoder]
    assert inference.main([*args, "--timestamps"]) == 0
    assert (out / "book.txt").read_text() == "book is\n"
    assert json.loads((out / "book.json").read_text()) == {
        "text": "book is",
        "words": [{"word": "book", "start": 0.02, "end": 0.16}, {"word": "is", "start": 0.3, "end": 0.38}],
    }
    assert inference.main([*args, "--out", str(tmp_path / "plain")]) == 0
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["book.txt", "inference.json"]


def test_inference_workers_load_the_same_batches(tmp_path, checkpoint, librispeech_fixtures, monkeypatch):
    used = []
    real_loader = inference.eval_loader

    def spy(*args, **kwargs):
        loader = real_loader(*args, **kwargs)
        used.append(loader.num_workers)
        return loader

    monkeypatch.setattr(inference, "eval_loader", spy)
    base = ["--data_dir", str(librispeech_fixtures), "--checkpoint", str(checkpoint), "--device", "cpu"]
    assert inference.main([*base, "--out", str(tmp_path / "default")]) == 0
    assert inference.main([*base, "--out", str(tmp_path / "two"), "--num_workers", "2"]) == 0
    assert used == [0, 2]  # the default on a CPU: none (the model's threads use the cores)
    texts = [{p.name: p.read_text() for p in (tmp_path / d).glob("*.txt")} for d in ("default", "two")]
    assert texts[0] == texts[1] and len(texts[0]) == 14


def test_spare_cpu_workers_leave_one_core_and_stop_at_eight(monkeypatch):
    import os

    from asr.data import spare_cpu_workers

    for cores, workers in ((1, 0), (2, 1), (4, 3), (64, 8)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cores: set(range(n)), raising=False)
        assert spare_cpu_workers() == workers
