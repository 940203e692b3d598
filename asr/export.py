"""Export: a checkpoint -> an ONNX file that onnxruntime runs without PyTorch, checked against PyTorch first.

The exporter is torch.onnx's TorchScript-based one (`dynamo=False`): it traces the network once and keeps the
batch and time axes dynamic (`dynamic_axes`), GRU/LSTM layers included. `torch.export` (and with it the
dynamo-based exporter, torch.onnx.export's default in recent torch) pins the time axis of this model to the
example's length, so it cannot serve utterances of other lengths. Features stay outside the graph: the runtime
computes them with numpy (`asr.audio.log_mel`), which keeps the graph to the network and the runtime's front end
in float64 (no STFT operator whose float32 rounding would differ from torch's).

Verification (`check_log_probs`, `check_transcripts`) runs before the file is written: onnxruntime against
PyTorch on generated inputs of several lengths and batch sizes (max absolute log-prob difference, refused above
`TOLERANCE`), then greedy transcripts of a folder of recordings, which must be identical. int8 models
(`quantize_int8`: convolutions and the output layer in int8, static or dynamic) are judged by WER/CER instead.

A streaming model exports as one step of the network (`StreamStep`, `export_stream_verified`): its convolution,
recurrent and lookahead buffers are graph inputs and outputs, the same exporter traces it once, and the stream that
asr/onnx_stream.py drives with it is checked against the offline PyTorch forward over several chunkings.
"""

import dataclasses
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from asr.audio import SAMPLE_RATE, load_audio, log_mel
from asr.decode import greedy_labelling
from asr.errors import ASRError
from asr.metrics import Scores, score
from asr.model import CLIP, CONV2, DeepSpeech2, MaskedBatchNorm, _conv_out, conv_time_pads, frame_rate
from asr.onnx_runtime import INPUTS, OUTPUTS, OnnxRecognizer, load_onnx, metadata, stream_metadata
from asr.onnx_stream import LOG_PROBS, STEP_INPUTS, StreamSpec
from asr.tokenizers import Tokenizer

OPSET = 17  # onnxruntime >= 1.12 runs it; GRU and LSTM export with dynamic axes at this opset
TOLERANCE = 1e-4  # max |log p_onnx - log p_torch| accepted at export time
# (batch, seconds of each utterance) of the generated verification inputs: batch 1 at both lengths, and batch 3
# with mixed lengths so that padding is exercised
CHECK_CASES = ((1, (1.0,)), (1, (7.0,)), (3, (1.0, 7.0, 4.0)), (3, (7.0, 7.0, 7.0)))


class ExportError(ASRError):
    """An export that failed its verification; the message says what differed and what to do."""


def export_onnx(network: DeepSpeech2, path: str | Path) -> None:
    """Write the network (eval mode, CPU) as ONNX: features (B, T, n_mels) float32 + lengths (B,) int64 ->
    log_probs (B, T', V) + output_lengths (B,), batch and time dynamic."""
    network = network.eval().cpu()
    features = torch.zeros(2, 300, network.config.n_mels)  # traced once; the axes below stay free
    lengths = torch.tensor([300, 200])
    axes = {"features": {0: "batch", 1: "time"}, "lengths": {0: "batch"},
            "log_probs": {0: "batch", 1: "frames"}, "output_lengths": {0: "batch"}}  # fmt: skip
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings about the TorchScript exporter
        torch.onnx.export(network, (features, lengths), str(path), dynamo=False, opset_version=OPSET,
                          input_names=list(INPUTS), output_names=list(OUTPUTS), dynamic_axes=axes)  # fmt: skip


def write_metadata(path: str | Path, values: dict) -> None:
    """Set the ONNX file's metadata_props to `values` (other keys are kept)."""
    import onnx

    model = onnx.load(str(path))
    kept = {p.key: p.value for p in model.metadata_props if p.key not in values}
    del model.metadata_props[:]
    for key, value in {**kept, **values}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def generated_inputs(n_mels: int, seconds: Sequence[float], seed: int = 0) -> list[np.ndarray]:
    """Features of noise bursts with a few tones, one (T, n_mels) array per length (not speech, but every
    channel varies, so nothing in the network sees constant input)."""
    rng = np.random.default_rng(seed)
    out = []
    for s in seconds:
        n = int(s * SAMPLE_RATE)
        t = np.arange(n) / SAMPLE_RATE
        tones = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(100, 4000, 3))
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 4) * t)
        out.append(log_mel(0.05 * (rng.standard_normal(n) + tones) * envelope, n_mels))
    return out


def torch_log_probs(network: DeepSpeech2, features: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The PyTorch network (fp32, CPU) on the same zero-padded batch the runtime builds."""
    lengths = torch.tensor([len(f) for f in features])
    batch = torch.zeros(len(features), int(lengths.max()), network.config.n_mels)
    for i, f in enumerate(features):
        batch[i, : len(f)] = torch.from_numpy(f)
    with torch.inference_mode():
        log_probs, out_lengths = network.eval()(batch, lengths)
    return [log_probs[i, :n].numpy() for i, n in enumerate(out_lengths.tolist())]


def check_log_probs(network: DeepSpeech2, onnx_model: OnnxRecognizer, cases=CHECK_CASES) -> float:
    """The largest |log p_onnx - log p_torch| over the generated cases; prints one line per case."""
    worst = 0.0
    for i, (batch, seconds) in enumerate(cases):
        assert len(seconds) == batch
        features = generated_inputs(network.config.n_mels, seconds, seed=i)
        ours, theirs = onnx_model.forward(features), torch_log_probs(network, features)
        if [a.shape for a in ours] != [b.shape for b in theirs]:
            raise ExportError(f"onnxruntime gave shapes {[a.shape for a in ours]}, PyTorch {[b.shape for b in theirs]}")
        diff = max(float(np.abs(a - b).max()) for a, b in zip(ours, theirs, strict=True))
        lengths = ", ".join(f"{s:g}" for s in seconds)
        print(f"  batch {batch}, lengths {lengths} s: max |log-prob difference| {diff:.2e}")
        worst = max(worst, diff)
    return worst


@dataclasses.dataclass(frozen=True)
class Transcripts:
    """Greedy transcripts of a folder's recordings by one model, and their scores where references exist."""

    texts: dict[str, str]  # utterance id -> text
    scores: Scores | None  # corpus WER/CER against transcriptions/<id>.txt, None without references


def audio_files(data_dir: str | Path) -> list[Path]:
    """data_dir/audio/* (or data_dir/* when it has no audio/ folder), sorted: the recordings to transcribe."""
    from asr.audio import AUDIO_EXTENSIONS

    folder = Path(data_dir) / "audio" if (Path(data_dir) / "audio").is_dir() else Path(data_dir)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS) if folder.is_dir() else []
    if not files:
        raise ASRError(f"{data_dir}: no audio files (wav, flac, mp3, ogg) — pass --data_dir with audio/ inside")
    return files


def greedy_transcripts(
    log_probs_of: Callable[[np.ndarray], np.ndarray], files: Sequence[Path], tokenizer: Tokenizer, data_dir: str | Path
) -> Transcripts:
    """Greedy text of every file, `log_probs_of(samples) -> (T', V)`, scored against data_dir/transcriptions."""
    texts = {f.stem: greedy_labelling(log_probs_of(load_audio(f)), tokenizer)[0] for f in files}
    refs = Path(data_dir) / "transcriptions"
    pairs = [((refs / f"{i}.txt").read_text().strip(), t) for i, t in texts.items() if (refs / f"{i}.txt").is_file()]
    return Transcripts(texts, score(pairs) if pairs else None)


def check_greedy_agrees(out: Path, theirs: Transcripts, ours: Transcripts, files: Sequence[Path], data_dir) -> None:
    """Refuse the export unless the exported graph's greedy transcripts equal PyTorch's on every file."""
    differ = sorted(i for i in theirs.texts if theirs.texts[i] != ours.texts[i])
    if differ:
        shown = "; ".join(f"{i}: {theirs.texts[i]!r} vs {ours.texts[i]!r}" for i in differ[:3])
        raise ExportError(f"{out}: greedy transcripts differ on {len(differ)} of {len(files)} recordings of "
                          f"{data_dir} ({shown}) — not written")  # fmt: skip


def temporary_path(out: Path, tag: str) -> Path:
    """A file name beside `out` (same folder, so the final rename is atomic) for a file still being checked."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return out.with_name(f".{out.name}.{os.getpid()}.{tag}.tmp")


def export_checkpoint_metadata(network: DeepSpeech2, tokenizer: Tokenizer, quantization: str, source: str) -> dict:
    """The metadata of an export of `network`."""
    return metadata(dataclasses.asdict(network.config), tokenizer, frame_rate(network.config), quantization, source)


def quantize_int8(src: Path, dst: Path, calibration: Sequence[np.ndarray] | None = None) -> None:
    """Quantise the Conv and MatMul weights to int8 (the GRU/LSTM layers stay fp32: onnxruntime has no int8 GRU).

    With `calibration` ((T, n_mels) feature arrays): static quantisation, activation ranges fixed from those
    inputs, QLinearConv/QLinearMatMul operators (`int8`). Without: dynamic quantisation, activation ranges taken
    from every batch at run time (`int8-dynamic`; its ConvInteger is slower than fp32 Conv on a CPU). The
    metadata of `src` is copied over."""
    import onnx
    from onnxruntime import quantization as q

    root = logging.getLogger()  # the quantiser logs advice on the root logger (a pre-processing pass)
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        if calibration is None:
            q.quantize_dynamic(
                str(src), str(dst), weight_type=q.QuantType.QInt8, op_types_to_quantize=["Conv", "MatMul"]
            )
        else:
            q.quantize_static(str(src), str(dst), _Calibration(calibration), quant_format=q.QuantFormat.QOperator,
                              op_types_to_quantize=["Conv", "MatMul"], activation_type=q.QuantType.QUInt8,
                              weight_type=q.QuantType.QInt8)  # fmt: skip
    finally:
        root.setLevel(level)
    props = {p.key: p.value for p in onnx.load(str(src)).metadata_props}
    write_metadata(dst, props)


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over feature arrays: one utterance per batch."""

    def __init__(self, features: Sequence[np.ndarray]) -> None:
        self._inputs = iter([{"features": f[None], "lengths": np.array([len(f)], dtype=np.int64)} for f in features])

    def get_next(self) -> dict | None:
        return next(self._inputs, None)


def export_verified(network: DeepSpeech2, tokenizer: Tokenizer, checkpoint: Path, out: Path, quantize: str,
                    data_dir: str | Path) -> None:  # fmt: skip
    """Export, verify (`check_log_probs` within TOLERANCE, then identical greedy transcripts of data_dir), quantise
    when asked (WER/CER printed), and only then write `out`; a failed check raises ExportError and writes nothing."""
    from asr.infer import Recognizer, _log_probs

    if network.config.features != "utterance":  # the runtime's numpy front end normalises per utterance
        raise ExportError(f"{checkpoint}: a model with features={network.config.features!r} (a streaming model) "
                          "cannot be exported yet — export an offline model (features='utterance')")  # fmt: skip
    files = audio_files(data_dir)
    fp32, int8 = temporary_path(out, "fp32"), temporary_path(out, "int8")
    try:
        export_onnx(network, fp32)
        write_metadata(fp32, export_checkpoint_metadata(network, tokenizer, "none", checkpoint.name))
        onnx_model = load_onnx(fp32)
        print(f"exported {checkpoint} (opset {OPSET}, dynamic batch and time); onnxruntime vs PyTorch:")
        worst = check_log_probs(network, onnx_model)
        if not worst <= TOLERANCE:
            raise ExportError(f"{out}: onnxruntime's log-probs differ from PyTorch's by {worst:.2e} (> {TOLERANCE:g})"
                              " — not written; report the torch and onnxruntime versions")  # fmt: skip
        print(f"max |log-prob difference| {worst:.2e} <= {TOLERANCE:g}")
        reference = Recognizer(network, tokenizer, torch.device("cpu"), checkpoint, amp=False)
        theirs = greedy_transcripts(lambda s: _log_probs(reference, s), files, tokenizer, data_dir)
        ours = greedy_transcripts(lambda s: onnx_model.log_probs([s])[0], files, tokenizer, data_dir)
        check_greedy_agrees(out, theirs, ours, files, data_dir)
        print(f"greedy transcripts identical on {len(files)} of {len(files)} recordings of {data_dir}")
        if quantize != "none":
            static = quantize == "int8"  # int8: static, calibrated on data_dir; int8-dynamic: dynamic
            quantize_int8(
                fp32, int8, [log_mel(load_audio(f), network.config.n_mels) for f in files] if static else None
            )
            write_metadata(int8, export_checkpoint_metadata(network, tokenizer, quantize, checkpoint.name))
            quantized = load_onnx(int8)
            report_int8(theirs, greedy_transcripts(lambda s: quantized.log_probs([s])[0], files, tokenizer, data_dir))
        (fp32 if quantize == "none" else int8).replace(out)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {'fp32' if quantize == 'none' else quantize})")
    finally:
        for tmp in (fp32, int8):
            tmp.unlink(missing_ok=True)


def report_int8(fp32: Transcripts, int8: Transcripts) -> None:
    """Print how the int8 model's greedy transcripts compare with PyTorch fp32's: identical count, WER/CER."""
    same = sum(int8.texts[i] == t for i, t in fp32.texts.items())
    print(f"int8: greedy transcripts identical to PyTorch's on {same} of {len(fp32.texts)} recordings")
    if fp32.scores is None or int8.scores is None:
        return
    for name, scores in (("PyTorch fp32", fp32.scores), ("onnxruntime int8", int8.scores)):
        print(f"  {name:<17} WER {100 * scores.wer:6.2f} %  CER {100 * scores.cer:6.2f} %")
    wer, cer = 100 * (int8.scores.wer - fp32.scores.wer), 100 * (int8.scores.cer - fp32.scores.cer)
    print(f"  int8 - fp32       WER {wer:+6.2f}    CER {cer:+6.2f}  (percentage points)")


# ---------------------------------------------------------------------------------------------- streaming export


class StreamStep(torch.nn.Module):
    """One step of a streaming network (eval mode, batch 1), the graph `export.py --streaming` writes: the inputs
    and outputs asr/onnx_stream.py describes. The same arithmetic as `DeepSpeech2.forward` and asr.stream's
    `_StreamEncoder`, with every buffer of fixed or stated size so that the graph has no branch: the first
    convolution runs over the window the runtime gives it, the second over its state + the new frames."""

    def __init__(self, network: DeepSpeech2) -> None:
        super().__init__()
        self.network = network.eval()
        self.lstm = network.config.rnn_type == "lstm"
        self.tau = network.config.lookahead

    def forward(self, features: torch.Tensor, valid1: torch.Tensor, valid2: torch.Tensor, *states: torch.Tensor):
        net = self.network
        conv2_state, hidden, *rest = states
        cell = rest.pop(0) if self.lstm else None
        ahead = rest.pop(0) if self.tau else None
        x = _time_conv(features.transpose(1, 2).unsqueeze(1), net.conv1)  # (1, C, F', m)
        x = torch.clamp(_batch_norm(net.bn1, x), 0, CLIP)
        x = x * _first(x, valid1)  # frames after the end are the second convolution's zero padding
        buffer = torch.cat([conv2_state, x], dim=-1)  # (1, C, F', P + m)
        new_conv2 = buffer[..., 1 - net.conv2.kernel_size[1] :]  # its last K - 1 frames
        x = torch.clamp(_batch_norm(net.bn2, _time_conv(buffer, net.conv2)), 0, CLIP).flatten(1, 2)  # (1, C F'', c)
        hiddens, cells = [], []
        for i, (norm, rnn) in enumerate(zip(net.rnn_norms, net.rnns, strict=True)):
            if isinstance(norm, MaskedBatchNorm):
                x = _batch_norm(norm, x)
            state = (hidden[i : i + 1], cell[i : i + 1]) if self.lstm else hidden[i : i + 1]
            out, state = rnn.forward_rnn(x.transpose(1, 2), state)  # (1, c, H)
            hiddens.append(state[0] if self.lstm else state)
            cells += [state[1]] if self.lstm else []
            x = out.transpose(1, 2)  # (1, H, c)
        new_states = [new_conv2, torch.cat(hiddens)] + ([torch.cat(cells)] if self.lstm else [])
        x = x * _first(x, valid2)  # frames after the end are the lookahead's zero padding (without one: none come)
        if self.tau:
            x = torch.cat([ahead, x], dim=-1)  # (1, H, tau + c)
            new_states.append(x[..., -self.tau :])
            x = F.conv1d(x, net.lookahead.weight, groups=x.shape[1])  # (1, H, c)
        x = _batch_norm(net.head_norm, x).transpose(1, 2)  # (1, c, H)
        return (net.head(x).float().log_softmax(dim=-1), *new_states)


def _time_conv(x: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
    """A convolution without time padding (the step's buffers hold it), its frequency padding kept."""
    return F.conv2d(x, conv.weight, None, conv.stride, (conv.padding[0], 0))


def _batch_norm(norm: MaskedBatchNorm, x: torch.Tensor) -> torch.Tensor:
    """MaskedBatchNorm in eval mode with every frame valid (the same arithmetic, no mask)."""
    shape = [1, -1] + [1] * (x.dim() - 2)
    y = (x - norm.running_mean.view(shape)) * torch.rsqrt(norm.running_var.view(shape) + norm.eps)
    return y * norm.weight.view(shape) + norm.bias.view(shape)


def _first(x: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """(T,) mask over the last axis of x: 1 for the first `count` frames, 0 after."""
    return (torch.arange(x.shape[-1]) < count).to(x.dtype)


def stream_spec(network: DeepSpeech2) -> StreamSpec:
    """The chunk/frames contract of `network`'s step graph (metadata of the file)."""
    config = network.config
    (past1, _), (past2, future2) = conv_time_pads(config)
    freq = _conv_out(config.n_mels, network.conv1_spec, 0)  # of the first convolution's output
    layers, hidden = config.rnn_layers, config.rnn_hidden
    states = {"conv2_state": [1, config.conv_channels, int(freq), past2], "hidden": [layers, 1, hidden]}
    if config.rnn_type == "lstm":
        states["cell"] = [layers, 1, hidden]
    if config.lookahead:
        states["lookahead_state"] = [1, hidden, config.lookahead]
    return StreamSpec(kernel=CONV2[0][1], time_stride=config.time_stride, conv1_past=past1, conv2_future=future2,
                      lookahead=config.lookahead, states=states,
                      feature_mean=tuple(network.feature_mean.tolist()),
                      feature_std=tuple(network.feature_std.tolist()))  # fmt: skip


def export_stream_onnx(network: DeepSpeech2, path: str | Path) -> StreamSpec:
    """Write `StreamStep(network)` as ONNX (traced once at a steady-state step; the frame axes stay free)."""
    spec = stream_spec(network)
    m = 8  # output frames of the traced step
    features = torch.zeros(1, spec.kernel - spec.time_stride + spec.time_stride * m, network.config.n_mels)
    states = [torch.zeros(shape) for shape in spec.states.values()]
    states[0] = torch.zeros(*spec.states["conv2_state"][:3], spec.kernel - 1)  # its steady size; the axis is free
    names = list(spec.states)
    axes = {"features": {1: "frames"}, "conv2_state": {3: "past"}, "log_probs": {1: "steps"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings about the TorchScript exporter
        torch.onnx.export(StreamStep(network), (features, torch.tensor([m]), torch.tensor([m]), *states), str(path),
                          dynamo=False, opset_version=OPSET, input_names=[*STEP_INPUTS, *names],
                          output_names=[LOG_PROBS, *(f"{n}_out" for n in names)], dynamic_axes=axes)  # fmt: skip
    return spec


def offline_stream_reference(network: DeepSpeech2, audio: np.ndarray) -> np.ndarray:
    """(T', V) log-probs of the offline PyTorch forward on the whole of `audio`, with PyTorch's own features."""
    from asr.model import feature_extractor

    features = feature_extractor(network)(torch.from_numpy(audio))  # (T, n_mels)
    with torch.inference_mode():
        log_probs, lengths = network.eval()(features[None], torch.tensor([len(features)]))
    return log_probs[0, : lengths[0]].numpy()


def onnx_stream_log_probs(model, audio: np.ndarray, chunks: Sequence[int]) -> np.ndarray:
    """(T', V) log-probs of `audio` fed to an `OnnxStreamModel`'s encoder in chunks of the given sizes (cycled)."""
    encoder, parts, start, i = model.encoder(), [], 0, 0
    while start < len(audio):
        parts.append(encoder.accept(audio[start : start + chunks[i % len(chunks)]]))
        start, i = start + chunks[i % len(chunks)], i + 1
    parts.append(encoder.finish())
    return np.concatenate([p for p in parts if p is not None])


def generated_audio(seconds: float, seed: int) -> np.ndarray:
    """Noise bursts with a few tones (the audio of `generated_inputs`), float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tones = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(100, 4000, 3))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 4) * t)
    return (0.05 * (rng.standard_normal(n) + tones) * envelope).astype(np.float32)


# (seconds, chunkings) of the streaming check: the whole file at once, 320 ms chunks, random sizes, and one
# sample at a time on a short clip (a graph step every 2 feature frames: ~15 steps)
STREAM_CASES = ((3.0, "whole"), (3.0, "320 ms"), (3.0, "random"), (0.3, "1 sample"), (0.02, "random"))


def check_stream_log_probs(network: DeepSpeech2, model, cases=STREAM_CASES) -> float:
    """The largest |log p_onnx stream - log p_torch offline| over the generated cases; prints one line each."""
    worst = 0.0
    for i, (seconds, chunking) in enumerate(cases):
        audio = generated_audio(seconds, seed=i)
        rng = np.random.default_rng(i)
        chunks = {"whole": [len(audio)], "320 ms": [5120], "1 sample": [1]}.get(chunking)
        chunks = chunks or [int(c) for c in rng.integers(1, 4000, 30)]
        ours, theirs = onnx_stream_log_probs(model, audio, chunks), offline_stream_reference(network, audio)
        if ours.shape != theirs.shape:
            raise ExportError(f"the ONNX stream made {ours.shape} log-probs, the offline forward {theirs.shape}")
        diff = float(np.abs(ours - theirs).max())
        print(f"  {seconds:g} s in {chunking} chunks: max |log-prob difference| {diff:.2e}")
        worst = max(worst, diff)
    return worst


def export_stream_verified(network: DeepSpeech2, tokenizer: Tokenizer, checkpoint: Path, out: Path,
                           data_dir: str | Path) -> None:  # fmt: skip
    """`export.py --streaming`: export the step graph, check the ONNX stream against the offline PyTorch forward
    (within TOLERANCE, several chunkings) and the greedy transcripts of data_dir, and only then write `out`."""
    from asr.infer import Recognizer, _log_probs
    from asr.stream import streaming_obstacles

    obstacles = streaming_obstacles(network.config)
    if obstacles:
        raise ExportError(f"{checkpoint}: cannot export a streaming graph: {' and '.join(obstacles)} — export it "
                          "without --streaming, or train a streaming model (train.py --model stream)")  # fmt: skip
    files = audio_files(data_dir)
    tmp = temporary_path(out, "stream")
    try:
        spec = export_stream_onnx(network, tmp)
        values = export_checkpoint_metadata(network, tokenizer, "none", checkpoint.name)
        write_metadata(tmp, stream_metadata(values, spec))
        model = load_onnx(tmp)
        print(f"exported {checkpoint} as a streaming step graph (opset {OPSET}); ONNX stream vs offline PyTorch:")
        worst = check_stream_log_probs(network, model)
        if not worst <= TOLERANCE:
            raise ExportError(f"{out}: the ONNX stream's log-probs differ from the offline PyTorch forward by "
                              f"{worst:.2e} (> {TOLERANCE:g}) — not written; report the torch and onnxruntime "
                              "versions")  # fmt: skip
        print(f"max |log-prob difference| {worst:.2e} <= {TOLERANCE:g}")
        reference = Recognizer(network, tokenizer, torch.device("cpu"), checkpoint, amp=False)
        theirs = greedy_transcripts(lambda s: _log_probs(reference, s), files, tokenizer, data_dir)
        ours = greedy_transcripts(lambda s: onnx_stream_log_probs(model, s, [5120]), files, tokenizer, data_dir)
        check_greedy_agrees(out, theirs, ours, files, data_dir)
        print(f"greedy transcripts (320 ms chunks) identical on {len(files)} of {len(files)} recordings of {data_dir}")
        tmp.replace(out)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, streaming step graph, fp32)")
    finally:
        tmp.unlink(missing_ok=True)
