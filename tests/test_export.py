"""ONNX export: verification against PyTorch, metadata, int8, and transcribing without torch."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import asr
import asr.tokenizers
import export
import inference
from asr.audio import SAMPLE_RATE, LogMel, load_audio, log_mel, resample_numpy, torchaudio
from asr.bpe import train_bpe
from asr.checkpoint import model_state, save_checkpoint
from asr.config import MODEL_PRESETS
from asr.export import ExportError, export_onnx, generated_inputs, quantize_int8, torch_log_probs
from asr.model import DeepSpeech2
from asr.onnx_runtime import OnnxModelError, load_onnx, metadata, read_metadata
from asr.tokenizers import CharTokenizer

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "data" / "example"
LM = Path(__file__).parent / "fixtures" / "tiny_3gram.arpa"
SUBSET = ["en-gb+Andy-000034", "en-us+f3-000001", "en-029+Alex-000018", "en-gb-x-rp+iven2-000015"]


@pytest.fixture(scope="module")
def subset(tmp_path_factory) -> Path:
    """Four recordings of data/example with their transcripts: the export's transcript check, kept short."""
    root = tmp_path_factory.mktemp("subset")
    for kind, ext in (("audio", "flac"), ("transcriptions", "txt")):
        (root / kind).mkdir()
        for utt in SUBSET:
            shutil.copy(EXAMPLE / kind / f"{utt}.{ext}", root / kind)
    return root


def _checkpoint(path: Path, kind: str) -> Path:
    torch.manual_seed(0)
    if kind == "char":
        model, tokenizer = DeepSpeech2(MODEL_PRESETS["tiny"]), CharTokenizer()
    else:  # pieces from the example transcripts, and the BPE recipe's stride 4
        texts = [p.read_text().strip() for p in sorted((EXAMPLE / "transcriptions").glob("*.txt"))]
        tokenizer = train_bpe(texts, 40)
        model = DeepSpeech2(dataclasses.replace(MODEL_PRESETS["tiny"], vocab_size=len(tokenizer), time_stride=4))
    save_checkpoint(path, model_state(model, tokenizer))
    return path


@pytest.fixture(scope="module", params=["char", "bpe"])
def exported(request, tmp_path_factory, subset) -> tuple[Path, Path, str]:
    """(checkpoint, exported fp32 file, what export.py printed) of a tiny model of each tokenizer kind."""
    root = tmp_path_factory.mktemp(f"export-{request.param}")
    checkpoint = _checkpoint(root / "tiny.pt", request.param)
    out = root / "tiny.onnx"
    with pytest.MonkeyPatch.context() as mp:
        printed = []
        mp.setattr("builtins.print", lambda *a, **k: printed.append(" ".join(map(str, a))))
        assert export.main(["--checkpoint", str(checkpoint), "--out", str(out), "--data_dir", str(subset)]) == 0
    return checkpoint, out, "\n".join(printed)


def test_export_verifies_then_writes_a_model_with_dynamic_batch_and_time(exported):
    checkpoint, out, printed = exported
    assert "batch 3, lengths 1, 7, 4 s: max |log-prob difference|" in printed
    assert "greedy transcripts identical on 4 of 4 recordings" in printed
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny.onnx", "tiny.pt"]  # no temporary files left
    model = asr.load_model(out)
    state = torch.load(checkpoint, weights_only=True)
    network = DeepSpeech2(asr.config.ModelConfig(**state["model_config"]))
    network.load_state_dict(state["model"])
    for seconds in ((1.0,), (7.0,), (1.0, 7.0, 4.0), (7.0, 1.0, 1.0)):  # batch 1 and 3, 1 s and 7 s
        features = generated_inputs(model.n_mels, seconds, seed=7)
        ours, theirs = model.forward(features), torch_log_probs(network, features)
        assert [a.shape for a in ours] == [b.shape for b in theirs]
        assert max(float(np.abs(a - b).max()) for a, b in zip(ours, theirs, strict=True)) <= 1e-4
    assert model.tokenizer.state_dict() == asr.tokenizers.tokenizer_from_state(state["tokenizer"]).state_dict()
    assert model.model_config == state["model_config"] and model.quantization == "none"


def test_metadata_round_trip_and_a_file_without_it_is_refused(tmp_path):
    texts = [p.read_text().strip() for p in sorted((EXAMPLE / "transcriptions").glob("*.txt"))]
    pieces = train_bpe(texts, 40)
    config = dataclasses.asdict(dataclasses.replace(MODEL_PRESETS["tiny"], vocab_size=len(pieces)))
    props = metadata(config, pieces, 25.0, "int8", "x.pt")
    assert all(isinstance(v, str) for v in props.values())
    back = read_metadata(props, "m.onnx")
    assert back["tokenizer"].model == pieces.model and back["tokenizer"].vocab == pieces.vocab
    assert (back["model_config"], back["frame_rate"], back["quantization"], back["source"]) == (config, 25.0, "int8",
                                                                                                  "x.pt")  # fmt: skip
    with pytest.raises(OnnxModelError, match="newer than this code reads"):
        read_metadata(props | {"asr.format_version": "3"}, "m.onnx")

    bare = tmp_path / "bare.onnx"
    export_onnx(DeepSpeech2(MODEL_PRESETS["tiny"]), bare)  # the graph alone, no metadata
    message = f"{bare}: not an ONNX model exported by this project .*python export.py --checkpoint C"
    with pytest.raises(OnnxModelError, match=message):
        asr.load_model(bare)
    with pytest.raises(OnnxModelError, match="no such file"):
        load_onnx(tmp_path / "missing.onnx")


def test_export_refuses_to_write_a_graph_that_differs_from_pytorch(tmp_path, subset, monkeypatch):
    checkpoint = _checkpoint(tmp_path / "tiny.pt", "char")
    monkeypatch.setattr("asr.export.TOLERANCE", 1e-9)  # stands in for a graph that differs
    with pytest.raises(ExportError, match=r"differ from PyTorch's by .* not written"):
        export.main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx"), "--data_dir", str(subset)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.pt"]


def test_int8_export_runs_and_reports_wer(tmp_path, subset, capsys):
    checkpoint = _checkpoint(tmp_path / "tiny.pt", "char")
    out = tmp_path / "int8.onnx"
    export.main(["--checkpoint", str(checkpoint), "--out", str(out), "--data_dir", str(subset), "--quantize", "int8"])
    printed = capsys.readouterr().out
    assert "int8: greedy transcripts identical to PyTorch's on" in printed
    assert "onnxruntime int8  WER" in printed and "int8 - fp32       WER" in printed
    model = asr.load_model(out)
    assert model.quantization == "int8"
    assert isinstance(asr.transcribe(model, subset / "audio" / f"{SUBSET[0]}.flac"), str)


def test_dynamic_int8_keeps_the_metadata_and_transcribes(exported, tmp_path):
    _, onnx_file, _ = exported
    quantize_int8(onnx_file, tmp_path / "dynamic.onnx")  # no calibration: dynamic quantisation
    model, fp32 = asr.load_model(tmp_path / "dynamic.onnx"), asr.load_model(onnx_file)
    assert model.tokenizer.vocab == fp32.tokenizer.vocab and model.model_config == fp32.model_config
    assert model.quantization == "none"  # the fp32 file's metadata, copied; export.py rewrites it
    assert isinstance(asr.transcribe(model, EXAMPLE / "audio" / f"{SUBSET[0]}.flac"), str)


def test_numpy_features_equal_logmel_to_float32_rounding():
    # LogMel computes in float32 and its own error against float64 is 1.2e-4 on data/example at 80 mels;
    # log_mel computes in float64, so the two agree to that rounding (measured 1.2e-4 at worst), not closer.
    for n_mels in (40, 80):
        featurize = LogMel(n_mels)
        for utt in SUBSET:
            audio = load_audio(EXAMPLE / "audio" / f"{utt}.flac")
            theirs = featurize(torch.from_numpy(audio)).numpy()
            assert np.abs(log_mel(audio, n_mels) - theirs).max() < 2e-4
        short = np.random.default_rng(0).standard_normal(401).astype(np.float32) * 0.1
        assert log_mel(short, n_mels).shape == featurize(torch.from_numpy(short)).shape == (3, n_mels)


def test_numpy_resampling_equals_torchaudio():
    rng = np.random.default_rng(0)
    for rate in (8000, 22050, 44100, 48000):
        for n in (1, 399, 12345):
            audio = (0.3 * rng.standard_normal(n)).astype(np.float32)
            theirs = torchaudio().functional.resample(torch.from_numpy(audio), rate, SAMPLE_RATE).numpy()
            ours = resample_numpy(audio, rate)
            assert ours.shape == theirs.shape and ours.dtype == np.float32
            assert np.abs(ours - theirs).max() < 1e-4


def test_inference_onnx_writes_the_predictions_of_the_checkpoint(exported, subset, tmp_path):
    checkpoint, onnx_file, _ = exported
    for name, flags in (("pt", ["--checkpoint", str(checkpoint)]), ("onnx", ["--onnx", str(onnx_file)])):
        assert inference.main([*flags, "--data_dir", str(subset), "--out", str(tmp_path / name),
                               "--decoder", "beam", "--beam_size", "4", "--batch_seconds", "6"]) == 0  # fmt: skip
    for utt in SUBSET:
        assert (tmp_path / "onnx" / f"{utt}.txt").read_text() == (tmp_path / "pt" / f"{utt}.txt").read_text()
    assert json.loads((tmp_path / "onnx" / "inference.json").read_text())["checkpoint"] == str(onnx_file)


# Run in a fresh interpreter: load the exported model, transcribe with every decoder, prove torch never loaded.
_TORCH_FREE = """
import json, sys
import asr
model = asr.load_model(sys.argv[1])
lm = asr.load_lm(sys.argv[3])
texts = {}
for path in sys.argv[4:]:
    texts[path] = [asr.transcribe(model, path), asr.transcribe(model, path, decoder="beam", beam_size=8),
                   asr.transcribe(model, path, decoder="beam_lm", lm=lm, beam_size=8)]
assert "torch" not in sys.modules, "torch was imported"
json.dump(texts, open(sys.argv[2], "w"))
"""


def _transcribe_in(python: str, onnx_file: Path, tmp_path: Path) -> dict:
    files = [str(EXAMPLE / "audio" / f"{utt}.flac") for utt in SUBSET]
    result = tmp_path / "texts.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(REPO)}
    subprocess.run([python, "-c", _TORCH_FREE, str(onnx_file), str(result), str(LM), *files], check=True, env=env)
    return json.loads(result.read_text())


def test_an_exported_model_transcribes_without_importing_torch(exported, tmp_path):
    checkpoint, onnx_file, _ = exported
    texts = _transcribe_in(sys.executable, onnx_file, tmp_path)
    reference = asr.load_model(checkpoint, device="cpu")
    lm = asr.load_lm(LM)
    for path, (greedy, beam, fused) in texts.items():
        assert greedy == asr.transcribe(reference, path)
        assert beam == asr.transcribe(reference, path, decoder="beam", beam_size=8)
        assert fused == asr.transcribe(reference, path, decoder="beam_lm", lm=lm, beam_size=8)


@pytest.mark.slow
def test_a_venv_without_torch_transcribes_the_example_set(exported, tmp_path):
    """requirements-runtime.txt in a fresh venv (no torch): the exported model transcribes as PyTorch does."""
    checkpoint, onnx_file, _ = exported
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    tic = time.perf_counter()
    install = subprocess.run([python, "-m", "pip", "install", "-q", "-r", str(REPO / "requirements-runtime.txt")],
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    if install.returncode != 0:
        if any(s in install.stderr for s in ("No matching distribution", "connection", "Could not find a version")):
            pytest.skip(f"pip could not reach a package index: {install.stderr.strip().splitlines()[-1][:200]}")
        raise AssertionError(install.stderr)
    print(f"runtime venv installed in {time.perf_counter() - tic:.1f} s")
    assert subprocess.run([python, "-c", "import torch"], capture_output=True).returncode != 0  # really no torch
    texts = _transcribe_in(python, onnx_file, tmp_path)
    reference = asr.load_model(checkpoint, device="cpu")
    assert {p: t[0] for p, t in texts.items()} == {p: asr.transcribe(reference, p) for p in texts}


# inference.py --onnx in a fresh interpreter where torch cannot be imported (None in sys.modules makes `import torch`
# raise ImportError and importlib.util.find_spec("torch") return None, as in an environment without it).
_NO_TORCH = """
import runpy, sys
sys.modules["torch"] = sys.modules["torchaudio"] = None
sys.argv = ["inference.py", *sys.argv[1:]]
try:
    runpy.run_path("inference.py", run_name="__main__")
finally:
    assert not [m for m, v in sys.modules.items() if m.split(".")[0] in ("torch", "torchaudio") and v is not None]
"""


def test_inference_onnx_runs_where_torch_cannot_be_imported(exported, subset, tmp_path):
    _, onnx_file, _ = exported
    flags = ["--onnx", str(onnx_file), "--data_dir", str(subset), "--decoder", "beam_lm", "--lm", str(LM)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", _NO_TORCH, *flags, "--out", str(tmp_path / "free")], cwd=REPO,
                         env=env, capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "onnx: " in run.stdout and "WER" in run.stdout
    assert inference.main([*flags, "--out", str(tmp_path / "here")]) == 0  # the same run, torch importable
    for utt in SUBSET:
        assert (tmp_path / "free" / f"{utt}.txt").read_text() == (tmp_path / "here" / f"{utt}.txt").read_text()
