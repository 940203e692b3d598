"""The Python front door: `asr.load_model` + `asr.transcribe`, its docstring example, and its agreement with
inference.py. The checkpoint is an untrained tiny model: its text is gibberish, but deterministic."""

import doctest
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import asr
import inference
from asr.checkpoint import model_state, save_checkpoint
from asr.config import MODEL_PRESETS
from asr.lm import build_arpa
from asr.model import DeepSpeech2
from asr.tokenizers import CharTokenizer

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_IDS = ["en-029+Alex-000018", "en-gb+Andy-000034", "en-029+f3-000005"]  # en-gb+Andy-000034: the docstring's


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder laid out like the repository after `python train.py` and the README's LM recipe:
    runs/example/best.pt, data/example/{audio,transcriptions}/ (three files), lm/pp3.arpa."""
    root = tmp_path_factory.mktemp("front_door")
    torch.manual_seed(0)
    save_checkpoint(root / "runs/example/best.pt", model_state(DeepSpeech2(MODEL_PRESETS["tiny"]), CharTokenizer()))
    texts = []
    for kind, ext in (("audio", "flac"), ("transcriptions", "txt")):
        (root / "data/example" / kind).mkdir(parents=True)
        for utt_id in EXAMPLE_IDS:
            shutil.copy(REPO / "data/example" / kind / f"{utt_id}.{ext}", root / "data/example" / kind)
            if kind == "transcriptions":
                texts.append((root / "data/example" / kind / f"{utt_id}.{ext}").read_text().strip())
    (root / "lm").mkdir()
    (root / "lm/pp3.arpa").write_text(build_arpa(texts, order=3))
    return root


@pytest.fixture
def model(workdir) -> asr.Recognizer:
    return asr.load_model(workdir / "runs/example/best.pt", device="cpu")


def test_the_package_docstring_example_runs(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    result = doctest.testmod(asr, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted == 9


def test_help_shows_the_front_door_and_import_stays_light():
    code = "import sys, asr; print(sorted(m for m in sys.modules if m.startswith('asr'))); help(asr)"
    env = os.environ | {"PAGER": "cat"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env, check=True)
    assert done.stdout.splitlines()[0] == "['asr']"  # the front door is imported on first use
    assert '>>> model = asr.load_model("runs/example/best.pt")' in done.stdout
    # Python 3.13 breaks long signatures over lines and names pathlib._local.Path: compare them flattened
    shown = re.sub(r",\s+", ", ", done.stdout.replace("pathlib._local.Path", "pathlib.Path"))
    shown = re.sub(r",?\s+\)", ")", re.sub(r"\(\s+", "(", shown))  # and end them with ",\n)"
    assert (
        "load_model(path: str | pathlib.Path | None = None, device: str = 'auto', amp: bool = True)"
        " -> asr.infer.Recognizer | asr.onnx_runtime.OnnxRecognizer" in shown
    )
    assert (
        "transcribe(model: asr.infer.Recognizer | asr.onnx_runtime.OnnxRecognizer, "
        "audio: str | pathlib.Path | numpy.ndarray, decoder: str = 'greedy'" in shown
    )
    assert asr.__all__ == ["Recognizer", "Stream", "load_audio", "load_lm", "load_model", "transcribe"]
    assert sorted(set(asr.__all__) - set(dir(asr))) == []
    # `python -m asr.lm` runs the module once: the package does not import it ahead of runpy
    done = subprocess.run([sys.executable, "-W", "error", "-m", "asr.lm", "--help"], cwd=REPO, capture_output=True)
    assert done.returncode == 0 and done.stderr == b""


@pytest.mark.parametrize(
    "flags, options",
    [
        ([], {}),
        (["--decoder", "beam", "--beam_size", "8"], {"decoder": "beam", "beam_size": 8}),
        (["--decoder", "beam_lm", "--beam_size", "8", "--lm", "lm/pp3.arpa", "--alpha", "0.8", "--beta", "2"],
         {"decoder": "beam_lm", "beam_size": 8, "lm": "lm/pp3.arpa", "alpha": 0.8, "beta": 2.0}),
    ],
)  # fmt: skip
def test_transcribe_gives_what_inference_py_writes(workdir, model, monkeypatch, flags, options):
    monkeypatch.chdir(workdir)
    args = ["--data_dir", "data/example", "--checkpoint", "runs/example/best.pt", "--out", "preds", "--device", "cpu"]
    assert inference.main([*args, *flags]) == 0
    written = {utt_id: (workdir / "preds" / f"{utt_id}.txt").read_text() for utt_id in EXAMPLE_IDS}
    ours = {
        utt_id: asr.transcribe(model, f"data/example/audio/{utt_id}.flac", **options) + "\n" for utt_id in EXAMPLE_IDS
    }
    assert ours == written
    assert len(set(written.values())) == 3 and all(len(text) > 4 for text in written.values())  # not trivially equal


def test_the_untrained_model_transcribes_exactly_this(workdir, model):
    """Pins the whole path (features, network, decoders) on one file; any change to them shows here."""
    path = workdir / "data/example/audio/en-gb+Andy-000034.flac"
    assert asr.transcribe(model, path) == "ealelelelelelea"
    assert asr.transcribe(model, str(path), decoder="beam", beam_size=8) == (
        "eaeaeleleleleleleleleleleleleleleleleleleleleleae"  # since labellings of one text add up (asr.decode)
    )


def test_samples_in_any_float_dtype_equal_the_file(workdir, model):
    path = workdir / "data/example/audio/en-029+f3-000005.flac"
    samples = asr.load_audio(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    text = asr.transcribe(model, path, decoder="beam", beam_size=4)
    assert asr.transcribe(model, samples, decoder="beam", beam_size=4) == text
    assert asr.transcribe(model, samples.astype(np.float64), decoder="beam", beam_size=4) == text
    assert asr.transcribe(model, samples[::-1]) != asr.transcribe(model, samples)  # input matters


def test_a_loaded_lm_equals_its_path(workdir, model):
    path = workdir / "data/example/audio/en-gb+Andy-000034.flac"
    by_path = asr.transcribe(model, path, decoder="beam_lm", beam_size=4, lm=workdir / "lm/pp3.arpa")
    loaded = asr.load_lm(workdir / "lm/pp3.arpa")
    assert asr.transcribe(model, path, decoder="beam_lm", beam_size=4, lm=loaded) == by_path


def test_load_model_takes_the_newest_checkpoint(workdir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint found in runs/\*/best.pt or weights/\*.pt"):
        asr.load_model()
    (tmp_path / "weights").mkdir()
    shutil.copy(workdir / "runs/example/best.pt", tmp_path / "weights/downloaded.pt")
    assert asr.load_model(device="cpu").checkpoint == Path("weights/downloaded.pt")
    for name in ("older", "newer"):
        (tmp_path / "runs" / name).mkdir(parents=True)
        shutil.copy(workdir / "runs/example/best.pt", tmp_path / "runs" / name / "best.pt")
    model = asr.load_model(device="cpu")
    assert model.checkpoint == Path("runs/newer/best.pt") and model.device == torch.device("cpu")
    assert not model.network.training and len(model.tokenizer) == model.network.config.vocab_size
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at missing.pt\. Train one with `python train.py`"):
        asr.load_model("missing.pt")


def test_bad_input_gets_a_message_that_says_what_to_do(workdir, model):
    path = workdir / "data/example/audio/en-gb+Andy-000034.flac"
    with pytest.raises(ValueError, match=r"decoder must be one of greedy, beam, beam_lm; got 'beam-lm'"):
        asr.transcribe(model, path, decoder="beam-lm")
    with pytest.raises(ValueError, match=r"decoder='beam_lm' needs lm: an ARPA file \(build one: python -m asr.lm"):
        asr.transcribe(model, path, decoder="beam_lm")
    with pytest.raises(ValueError, match=r"lm is only used by decoder='beam_lm', not 'beam': pass decoder='beam_lm'"):
        asr.transcribe(model, path, decoder="beam", lm=workdir / "lm/pp3.arpa")
    with pytest.raises(
        TypeError, match=r"lm must be a path to an ARPA/KenLM file or a model from asr.load_lm, got dict"
    ):
        asr.transcribe(model, path, decoder="beam_lm", lm={})
    with pytest.raises(FileNotFoundError, match=r"language model .*nothing.arpa does not exist; build one"):
        asr.transcribe(model, path, decoder="beam_lm", lm=workdir / "nothing.arpa")
    with pytest.raises(FileNotFoundError, match=r"nothing.wav does not exist: pass an audio file"):
        asr.transcribe(model, workdir / "nothing.wav")
    with pytest.raises(TypeError, match=r"audio must be a file path or a numpy array .* got list"):
        asr.transcribe(model, [0.0] * 16000)
    stereo = np.zeros((16000, 2), dtype=np.float32)
    with pytest.raises(ValueError, match=r"must be mono, shape \(samples,\); got shape \(16000, 2\)\. Average"):
        asr.transcribe(model, stereo)
    with pytest.raises(ValueError, match=r"floats in \[-1, 1\], got int16: divide 16-bit PCM by 32768"):
        asr.transcribe(model, np.zeros(16000, dtype=np.int16))
    with pytest.raises(ValueError, match=r"non-empty array of finite values"):
        asr.transcribe(model, np.array([0.0, np.nan], dtype=np.float32))
    with pytest.raises(ValueError, match=r"non-empty array of finite values"):
        asr.transcribe(model, np.zeros(0, dtype=np.float32))
    with pytest.raises(ValueError, match=r"beam_size must be >= 1, got 0"):
        asr.transcribe(model, path, decoder="beam", beam_size=0)


def test_evaluation_inference_and_transcribe_share_one_precision_policy(workdir, tmp_path, monkeypatch):
    """train.py's validation, inference.py and asr.transcribe all ask asr.infer.uses_amp, with the same default."""
    import train
    from asr.config import InferenceConfig, TrainConfig
    from asr.infer import uses_amp

    assert InferenceConfig.amp == TrainConfig.amp is True
    assert uses_amp(torch.device("cuda"), True) and not uses_amp(torch.device("cuda"), False)
    assert not uses_amp(torch.device("cpu"), True) and not uses_amp(torch.device("mps"), True)
    asked = []

    def spy(device, amp):
        asked.append((device.type, amp))
        return uses_amp(device, amp)

    monkeypatch.setattr(asr.infer, "uses_amp", spy)
    monkeypatch.setattr(train, "uses_amp", spy)
    data = workdir / "data/example"
    train.main(["--dataset", str(data), "--runs_dir", str(tmp_path / "runs"), "--model", "tiny", "--epochs", "1",
                "--no-tensorboard", "--eval_beam_size", "0"])  # fmt: skip
    assert ("cpu", True) in asked and all(a == ("cpu", True) for a in asked)  # training steps and evaluation
    asked.clear()
    inference.main(["--data_dir", str(data), "--checkpoint", str(workdir / "runs/example/best.pt"),
                    "--out", str(tmp_path / "preds"), "--device", "cpu"])  # fmt: skip
    assert asked and all(a == ("cpu", True) for a in asked)
    asked.clear()
    inference.main(["--data_dir", str(data), "--checkpoint", str(workdir / "runs/example/best.pt"),
                    "--out", str(tmp_path / "preds32"), "--device", "cpu", "--no-amp"])  # fmt: skip
    assert asked and all(a == ("cpu", False) for a in asked)
    assert sorted(p.read_text() for p in (tmp_path / "preds").glob("*.txt")) == sorted(
        p.read_text() for p in (tmp_path / "preds32").glob("*.txt")
    )  # on a CPU the flag changes nothing
    asked.clear()
    model = asr.load_model(workdir / "runs/example/best.pt", device="cpu")
    asr.transcribe(model, data / "audio" / f"{EXAMPLE_IDS[0]}.flac")
    assert asked == [("cpu", True)]
