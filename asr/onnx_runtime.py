"""The ONNX runtime: transcribe with a model exported by export.py, on onnxruntime, without PyTorch.

An exported file holds the acoustic network, features (B, T, n_mels) + lengths (B,) -> log-probs (B, T', V) +
output lengths (B,) with the batch and time axes dynamic, and in its metadata everything else that transcribing
needs: a format version, the tokenizer (the character list, or the SentencePiece model bytes in base64), the
model config, the sample rate, the output frame rate and the front end. Features are computed here with numpy
(`asr.audio.log_mel`, the twin of training's torch `LogMel`), and decoding is asr.decode's, so greedy, beam
and beam + LM are the code a checkpoint uses. Nothing here imports torch: `asr.load_model("model.onnx")` and
`asr.transcribe` run in an environment with only onnxruntime, numpy, soundfile, editdistance and sentencepiece
(requirements-runtime.txt).
"""

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.audio import SAMPLE_RATE, log_mel
from asr.errors import ASRError
from asr.onnx_stream import LOG_PROBS, STEP_INPUTS, STREAM_FORMAT_VERSION, STREAM_FRONT_END, OnnxStreamModel, StreamSpec
from asr.tokenizers import Tokenizer, tokenizer_from_state

FORMAT_VERSION = 1  # of the metadata below; a reader refuses files newer than the newest format it reads
READS_UP_TO = 2  # 2: a streaming step graph (asr/onnx_stream.py; an offline export stays at 1)
PREFIX = "asr."  # every metadata key of ours starts with this
FRONT_END = "log-mel numpy (asr.audio.log_mel): per-utterance normalised"
INPUTS = ("features", "lengths")  # graph input names, (B, T, n_mels) float32 and (B,) int64
OUTPUTS = ("log_probs", "output_lengths")  # (B, T', V) float32 and (B,) int64


class OnnxModelError(ASRError, ValueError):
    """An ONNX file this runtime cannot use; the message names the file and says what to do (a ValueError too,
    as the other bad-input errors inference.py reports in one line)."""


@dataclass(frozen=True, eq=False)
class OnnxRecognizer:
    """What `load_model` returns for an .onnx file: the onnxruntime session and what its metadata says."""

    session: object  # onnxruntime.InferenceSession
    tokenizer: Tokenizer
    model_config: dict  # asr.config.ModelConfig as a dict
    frame_rate: float  # output frames per second
    path: Path
    quantization: str  # "none" or "int8"

    @property
    def n_mels(self) -> int:
        return int(self.model_config["n_mels"])

    def log_probs(self, audios: Sequence[np.ndarray]) -> list[np.ndarray]:
        """16 kHz mono (samples,) arrays -> one (T'_i, V) float32 log-probability array each, run as one batch."""
        return self.forward([log_mel(audio, self.n_mels) for audio in audios])

    def forward(self, features: Sequence[np.ndarray]) -> list[np.ndarray]:
        """(T_i, n_mels) feature arrays -> (T'_i, V) log-probabilities, zero-padded into one batch (padding does
        not change any utterance's output: the network masks it, as in PyTorch)."""
        lengths = np.array([len(f) for f in features], dtype=np.int64)  # (B,)
        batch = np.zeros((len(features), int(lengths.max()), self.n_mels), dtype=np.float32)  # (B, T, n_mels)
        for i, f in enumerate(features):
            batch[i, : len(f)] = f
        log_probs, out_lengths = self.session.run(list(OUTPUTS), dict(zip(INPUTS, (batch, lengths), strict=True)))
        return [log_probs[i, : int(n)] for i, n in enumerate(out_lengths)]  # (T'_i, V) each


def metadata(model_config: dict, tokenizer: Tokenizer, frame_rate: float, quantization: str, source: str) -> dict:
    """The {key: string} metadata export.py writes into the ONNX file (`read_metadata` is its inverse)."""
    state = {k: base64.b64encode(v).decode("ascii") if isinstance(v, bytes) else v
             for k, v in tokenizer.state_dict().items()}  # fmt: skip
    values = {
        "format_version": str(FORMAT_VERSION),
        "tokenizer": json.dumps(state),
        "model_config": json.dumps(model_config),
        "sample_rate": str(SAMPLE_RATE),
        "frame_rate": repr(float(frame_rate)),
        "front_end": FRONT_END,
        "quantization": quantization,
        "source": source,
        "kind": "offline",
    }
    return {PREFIX + k: v for k, v in values.items()}


def stream_metadata(offline: dict, spec: StreamSpec) -> dict:
    """`metadata` of a streaming step graph: format 2, kind "streaming", its front end and chunk/frames contract."""
    values = {"format_version": str(STREAM_FORMAT_VERSION), "kind": "streaming", "front_end": STREAM_FRONT_END,
              "stream": spec.to_json()}  # fmt: skip
    return offline | {PREFIX + k: v for k, v in values.items()}


def read_metadata(props: dict, path: str | Path) -> dict:
    """Our metadata from an ONNX file's {key: string} map -> {"tokenizer", "model_config", "frame_rate",
    "quantization", "source", "kind", "stream"}; a file without it, or of a newer format, is refused with a message."""
    if PREFIX + "format_version" not in props:
        raise OnnxModelError(
            f"{path}: not an ONNX model exported by this project (no '{PREFIX}format_version' metadata) — export "
            "one with `python export.py --checkpoint C --out model.onnx`"
        )
    version = int(props[PREFIX + "format_version"])
    if version > READS_UP_TO:
        raise OnnxModelError(
            f"{path}: export format {version} is newer than this code reads ({READS_UP_TO}) — update the repository"
        )
    rate = int(props[PREFIX + "sample_rate"])
    if rate != SAMPLE_RATE:
        raise OnnxModelError(f"{path}: the model takes {rate} Hz audio, this code makes {SAMPLE_RATE} Hz features")
    kind = props.get(PREFIX + "kind", "offline")
    if props.get(PREFIX + "front_end") != (STREAM_FRONT_END if kind == "streaming" else FRONT_END):
        raise OnnxModelError(f"{path}: unknown front end {props.get(PREFIX + 'front_end')!r} — re-export the model")
    state = json.loads(props[PREFIX + "tokenizer"])
    if state.get("kind") == "bpe":
        state["model"] = base64.b64decode(state["model"])
    return {
        "tokenizer": tokenizer_from_state(state),
        "model_config": json.loads(props[PREFIX + "model_config"]),
        "frame_rate": float(props[PREFIX + "frame_rate"]),
        "quantization": props.get(PREFIX + "quantization", "none"),
        "source": props.get(PREFIX + "source", ""),
        "kind": kind,
        "stream": StreamSpec.from_json(props[PREFIX + "stream"]) if kind == "streaming" else None,
    }


def load_onnx(path: str | Path, threads: int | None = None) -> "OnnxRecognizer | OnnxStreamModel":
    """An exported model on onnxruntime's CPU provider (a streaming export: an `OnnxStreamModel` for asr.Stream);
    threads: intra-op threads (None: onnxruntime's default, one per physical core)."""
    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(f"{path}: no such file — export one with `python export.py --checkpoint C --out {path}`")
    try:
        import onnxruntime as ort
    except ImportError:
        raise OnnxModelError(
            f"{path}: onnxruntime is not installed — pip install -r requirements-runtime.txt"
        ) from None
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unreadable or invalid files
        raise OnnxModelError(f"{path}: onnxruntime cannot load it ({str(e).splitlines()[0][:200]})") from None
    meta = read_metadata(session.get_modelmeta().custom_metadata_map, path)
    names = tuple(i.name for i in session.get_inputs()), tuple(o.name for o in session.get_outputs())
    spec = meta["stream"]
    expected = (INPUTS, OUTPUTS) if spec is None else ((*STEP_INPUTS, *spec.states),
                                                       (LOG_PROBS, *(f"{n}_out" for n in spec.states)))  # fmt: skip
    if names != expected:
        raise OnnxModelError(f"{path}: graph inputs/outputs are {names}, expected {expected} — re-export it")
    tokenizer = meta["tokenizer"]
    if int(meta["model_config"]["vocab_size"]) != len(tokenizer):
        raise OnnxModelError(f"{path}: the model has {meta['model_config']['vocab_size']} outputs but its tokenizer "
                             f"{len(tokenizer)} tokens — re-export it")  # fmt: skip
    if spec is not None:
        return OnnxStreamModel(session, tokenizer, meta["model_config"], meta["frame_rate"], path,
                               meta["quantization"], spec)  # fmt: skip
    return OnnxRecognizer(session, tokenizer, meta["model_config"], meta["frame_rate"], path, meta["quantization"])


def batches_by_duration(durations: Sequence[float], batch_seconds: float) -> list[list[int]]:
    """Indices of utterances grouped shortest first into batches of at most `batch_seconds` of padded audio
    (always at least one utterance), as inference.py's checkpoint path batches them."""
    order = sorted(range(len(durations)), key=lambda i: durations[i])
    batches: list[list[int]] = []
    for i in order:  # sorted ascending, so the newest member is the longest: padded size = count * duration
        if batches and (len(batches[-1]) + 1) * durations[i] <= batch_seconds:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches
