"""Streaming ONNX export: the step graph, verified at export time; asr.Stream on onnxruntime, chunk-exact against
the offline PyTorch forward, with the offline decoder's finals, and without importing torch."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_stream import CHARS, TINY_STREAM, feed, offline_log_probs, random_stream_model

import asr
import export
import inference
from asr.audio import load_audio
from asr.checkpoint import model_state, save_checkpoint
from asr.config import MODEL_PRESETS, DecodeConfig
from asr.errors import ASRError
from asr.export import ExportError, export_checkpoint_metadata, stream_spec
from asr.lm import load_lm
from asr.model import DeepSpeech2
from asr.onnx_runtime import OnnxModelError, metadata, read_metadata, stream_metadata
from asr.onnx_stream import OnnxStreamModel
from asr.stream import Stream, StreamError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "data" / "example"
LM = Path(__file__).parent / "fixtures" / "tiny_3gram.arpa"
SUBSET = ["en-gb+Andy-000034", "en-us+f3-000001"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path, str]:
    """(checkpoint of the tiny streaming model, its streaming export, what export.py printed)."""
    root = tmp_path_factory.mktemp("stream-export")
    for kind, ext in (("audio", "flac"), ("transcriptions", "txt")):
        (root / "data" / kind).mkdir(parents=True)
        for utt in SUBSET:
            shutil.copy(EXAMPLE / kind / f"{utt}.{ext}", root / "data" / kind)
    checkpoint, out = root / "stream.pt", root / "stream.onnx"
    save_checkpoint(checkpoint, model_state(random_stream_model().network, CHARS))
    with pytest.MonkeyPatch.context() as mp:
        printed = []
        mp.setattr("builtins.print", lambda *a, **k: printed.append(" ".join(map(str, a))))
        argv = ["--checkpoint", str(checkpoint), "--out", str(out), "--data_dir", str(root / "data"), "--streaming"]
        assert export.main(argv) == 0
    return checkpoint, out, "\n".join(printed)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """A recording of data/example (2.6 s)."""
    return load_audio(EXAMPLE / "audio" / f"{SUBSET[0]}.flac")


def test_streaming_export_verifies_then_writes_a_step_graph_with_its_metadata(exported):
    checkpoint, out, printed = exported
    assert "0.3 s in 1 sample chunks: max |log-prob difference|" in printed
    assert "3 s in random chunks: max |log-prob difference|" in printed
    assert "greedy transcripts (320 ms chunks) identical on 2 of 2 recordings" in printed
    assert sorted(p.name for p in out.parent.iterdir()) == ["data", "stream.onnx", "stream.pt"]  # no temporary files
    model = asr.load_model(out)
    assert isinstance(model, OnnxStreamModel) and model.frame_rate == 50.0
    state = torch.load(checkpoint, weights_only=True)
    assert model.model_config == state["model_config"] and model.tokenizer.vocab == CHARS.vocab
    network = random_stream_model().network
    assert model.spec == stream_spec(network)
    assert model.spec.states == {"conv2_state": [1, 8, 20, 8], "hidden": [2, 1, 64], "lookahead_state": [1, 64, 3]}
    assert model.spec.feature_mean == tuple(network.feature_mean.tolist())
    import onnx

    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert (props["asr.format_version"], props["asr.kind"]) == ("2", "streaming")
    assert props["asr.tokenizer"] == metadata({}, CHARS, 50.0, "none", "")["asr.tokenizer"]
    assert json.loads(props["asr.stream"])["time_stride"] == 2


def test_stream_metadata_round_trip_and_an_older_reader_is_told_to_update(tmp_path):
    network = random_stream_model().network
    spec = stream_spec(network)
    props = stream_metadata(export_checkpoint_metadata(network, CHARS, "none", "s.pt"), spec)
    back = read_metadata(props, "s.onnx")
    assert (back["kind"], back["stream"], back["source"]) == ("streaming", spec, "s.pt")
    assert back["model_config"] == dataclasses.asdict(network.config)
    offline = read_metadata(metadata({}, CHARS, 50.0, "none", "o.pt"), "o.onnx")
    assert (offline["kind"], offline["stream"]) == ("offline", None)
    with pytest.raises(OnnxModelError, match="export format 3 is newer than this code reads"):
        read_metadata(props | {"asr.format_version": "3"}, "s.onnx")


def test_the_onnx_stream_equals_the_offline_pytorch_forward_for_any_chunking(exported, speech):
    _, out, _ = exported
    model, reference = asr.load_model(out), random_stream_model()
    offline = offline_log_probs(reference, speech)
    assert offline.shape == (len(speech) // 160 // 2 + 1, len(CHARS))
    rng = np.random.default_rng(0)
    for sizes in ([len(speech)], [5120], [7, 1000, 1, 333], *[list(rng.integers(1, 4000, 20)) for _ in range(2)]):
        stream = Stream(model)
        feed(stream, speech, sizes)
        assert stream.log_probs.shape == offline.shape, sizes
        assert np.abs(stream.log_probs - offline).max() < 1e-4, sizes
    short = speech[8000:9200]  # one sample at a time: 1200 calls, 4 graph steps
    stream = Stream(model)
    feed(stream, short, [1])
    assert np.abs(stream.log_probs - offline_log_probs(reference, short)).max() < 1e-4
    clip = speech[8000:8100]  # shorter than a window: one feature frame, one output frame
    stream = Stream(model)
    feed(stream, clip, [30])
    assert np.abs(stream.log_probs - offline_log_probs(reference, clip)).max() < 1e-4


@pytest.mark.parametrize("decoder", ["greedy", "beam", "beam_lm"])
def test_the_onnx_streams_final_text_is_the_offline_decoding(exported, speech, decoder):
    checkpoint, out, _ = exported
    lm = load_lm(LM) if decoder == "beam_lm" else None
    config = DecodeConfig(decoder=decoder, beam_size=8)
    offline = asr.transcribe(asr.load_model(checkpoint, device="cpu"), speech, decoder=decoder, beam_size=8, lm=lm)
    model = asr.load_model(out)
    for sizes in ([len(speech)], [5120], list(np.random.default_rng(1).integers(1, 3000, 10))):
        stream = Stream(model, lm=lm, config=config)
        partials = feed(stream, speech, sizes)
        assert stream.text == offline and partials[-1]
        assert " ".join(w.word for w in stream.word_times()) == offline


def test_a_bidirectional_checkpoint_is_refused_with_the_reason(tmp_path):
    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(checkpoint, model_state(DeepSpeech2(MODEL_PRESETS["tiny"]), CHARS))
    message = (r"tiny.pt: cannot export a streaming graph: its recurrent layers are bidirectional \(each output frame "
               r"depends on the end of the audio\) and its features are normalised per utterance .* — export it "
               r"without --streaming")  # fmt: skip
    with pytest.raises(ExportError, match=message):
        export.main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx"), "--streaming"])
    forward_only = dataclasses.replace(TINY_STREAM, features="utterance")  # unidirectional, per-utterance features
    save_checkpoint(checkpoint, model_state(DeepSpeech2(forward_only), CHARS))
    with pytest.raises(ExportError, match="cannot export a streaming graph: its features are normalised per utt"):
        export.main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx"), "--streaming"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.pt"]


def test_an_offline_export_is_refused_by_stream():
    from asr.onnx_runtime import OnnxRecognizer

    offline = OnnxRecognizer(None, CHARS, {}, 50.0, Path("offline.onnx"), "none")
    with pytest.raises(StreamError, match="offline.onnx: an offline export cannot stream — .* --streaming"):
        Stream(offline)


# A fresh interpreter: stream the exported model with the beam search and prove torch never loaded.
_TORCH_FREE = """
import json, sys
import asr
model = asr.load_model(sys.argv[1])
samples = asr.load_audio(sys.argv[3])
stream = asr.Stream(model, decoder="beam", beam_size=8)
for start in range(0, len(samples), 5120):
    stream.accept(samples[start : start + 5120])
stream.finish()
assert "torch" not in sys.modules, "torch was imported"
json.dump({"text": stream.text, "frames": len(stream.log_probs)}, open(sys.argv[2], "w"))
"""


def test_asr_stream_runs_the_export_without_importing_torch(exported, speech, tmp_path):
    checkpoint, out, _ = exported
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(REPO)}
    audio = EXAMPLE / "audio" / f"{SUBSET[0]}.flac"
    subprocess.run([sys.executable, "-c", _TORCH_FREE, str(out), str(tmp_path / "r.json"), str(audio)], check=True,
                   env=env)  # fmt: skip
    result = json.loads((tmp_path / "r.json").read_text())
    reference = Stream(asr.load_model(checkpoint, device="cpu"), decoder="beam", beam_size=8)
    feed(reference, speech, [5120])
    assert result == {"text": reference.text, "frames": len(reference.log_probs)}


def test_inference_refuses_onnx_with_stream_instead_of_taking_another_model(exported, tmp_path):
    _, out, _ = exported
    with pytest.raises(ASRError, match="with --stream: not supported — pass the streaming checkpoint"):
        inference.main(["--onnx", str(out), "--stream", "--data_dir", str(EXAMPLE), "--out", str(tmp_path / "p")])


def test_quantizing_a_streaming_export_is_refused(exported, tmp_path):
    checkpoint, _, _ = exported
    with pytest.raises(ExportError, match="--quantize int8: not available with --streaming yet — export fp32"):
        export.main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "q.onnx"), "--streaming", "--quantize",
                     "int8"])  # fmt: skip
    assert not list(tmp_path.iterdir())
