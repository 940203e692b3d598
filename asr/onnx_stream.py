"""The streaming ONNX runtime: a streaming model exported by `export.py --streaming`, run chunk by chunk on
onnxruntime without PyTorch. `asr.load_model("stream.onnx")` returns an `OnnxStreamModel`, which `asr.Stream`
accepts as it accepts a streaming checkpoint: the decoders are the same code (asr/stream.py), only the encoder
that turns samples into log-prob frames is this module's `OnnxStreamEncoder`.

The file's graph is one *step* of the network, batch 1 (exported by `asr.export.StreamStep`):

    features (1, K - s + s*m, n_mels)  the next s*m feature frames after the K - s already seen (K = 11, the
                                       kernel of the first convolution, s its time stride), normalised
    valid1 (1,), valid2 (1,) int64     how many of this step's first-convolution / recurrent output frames are
                                       real; the rest are zeroed, as the offline forward pads the end with zeros
    conv2_state (1, C, F, P)           the second convolution's last input frames: P = its past padding at the
                                       first step (zeros), K - 1 after
    hidden (L, 1, H) [, cell (L, 1, H) for an LSTM]   the recurrent layers' states
    lookahead_state (1, H, tau)        the last tau recurrent frames (zeros at the start), if the model has one
  ->
    log_probs (1, c, V)                one frame per new recurrent frame, tau frames behind it (the lookahead)
    <state>_out                        each state for the next step

Features stay in numpy, as in the offline runtime: `asr.audio.log_mel_energies` over the complete STFT windows
of the samples so far, normalised with the training-set statistics the file carries in its metadata. This module
keeps what lies outside the graph: the samples of incomplete windows, the feature frames not yet consumed (with
the first convolution's left zero padding in front), and the count of frames made by each stage, from which it
sets valid1/valid2 at the end and drops the lookahead's first tau frames (they belong to positions before the
start). The log-probs so equal the offline forward on the whole utterance for any chunking (tests/test_export.py).
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.audio import HOP_LENGTH, N_FFT, log_mel_energies
from asr.tokenizers import Tokenizer

STREAM_FORMAT_VERSION = 2  # the metadata format of a streaming export (offline exports stay at 1)
STREAM_FRONT_END = "log-mel numpy (asr.audio.log_mel_energies): causal, training-set statistics (asr.stream)"
STEP_INPUTS = ("features", "valid1", "valid2")  # then the states, in the order of StreamSpec.states
LOG_PROBS = "log_probs"  # the first output; then "<state>_out" for every state input


@dataclass(frozen=True)
class StreamSpec:
    """The chunk/frames contract of a step graph (the `asr.stream` metadata of the file), in feature frames."""

    kernel: int  # time kernel of both convolutions (11)
    time_stride: int  # s: the first convolution's time stride
    conv1_past: int  # zero frames the first convolution sees before the first feature frame
    conv2_future: int  # frames the second convolution sees ahead: the first step needs this + 1 new frames
    lookahead: int  # tau: the step's output lags its recurrent frames by this many
    states: dict  # {input name: initial shape}, zeros at the start of every stream
    feature_mean: tuple  # (n_mels,) training-set statistics of the log-mel energies
    feature_std: tuple

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> "StreamSpec":
        values = json.loads(text)
        return cls(**{**values, "feature_mean": tuple(values["feature_mean"]), "states": dict(values["states"]),
                      "feature_std": tuple(values["feature_std"])})  # fmt: skip


@dataclass(frozen=True, eq=False)
class OnnxStreamModel:
    """What `load_model` returns for a streaming export: the step graph's session and its metadata. Give it to
    `asr.Stream` (one Stream per utterance; the model is shared)."""

    session: object  # onnxruntime.InferenceSession
    tokenizer: Tokenizer
    model_config: dict  # asr.config.ModelConfig as a dict
    frame_rate: float  # output frames per second
    path: Path
    quantization: str
    spec: StreamSpec

    @property
    def n_mels(self) -> int:
        return int(self.model_config["n_mels"])

    def encoder(self) -> "OnnxStreamEncoder":
        """A fresh encoder (the state of one stream)."""
        return OnnxStreamEncoder(self)


class OnnxStreamEncoder:
    """Samples -> log-prob frames on the step graph: `asr.stream._StreamEncoder`'s interface (accept, finish)."""

    def __init__(self, model: OnnxStreamModel) -> None:
        self.model, self.spec = model, model.spec
        self.mean = np.asarray(self.spec.feature_mean, dtype=np.float64)  # (n_mels,)
        self.std = np.asarray(self.spec.feature_std, dtype=np.float64)
        self.pending = np.zeros(N_FFT // 2, dtype=np.float32)  # samples of incomplete windows; the centred STFT's zeros
        self.queue = np.zeros((self.spec.conv1_past, model.n_mels), dtype=np.float32)  # frames not consumed
        self.states = {name: np.zeros(shape, dtype=np.float32) for name, shape in self.spec.states.items()}
        self.frames = 0  # feature frames made
        self.made1 = self.made2 = 0  # output frames of the first convolution / of the recurrent layers, so far
        self.emitted = 0  # log-prob frames returned
        self.outputs = [LOG_PROBS, *(f"{name}_out" for name in self.states)]

    def accept(self, samples: np.ndarray) -> np.ndarray | None:
        """(n,) float32 samples -> (frames, V) log-probs that are now final (None: none yet)."""
        self.pending = np.concatenate([self.pending, samples])
        frames = (len(self.pending) - N_FFT) // HOP_LENGTH + 1 if len(self.pending) >= N_FFT else 0
        if frames <= 0:
            return None
        features = self._features(self.pending[: (frames - 1) * HOP_LENGTH + N_FFT])
        self.pending = self.pending[frames * HOP_LENGTH :]
        return self._step(features, final=False)

    def finish(self) -> np.ndarray | None:
        """The remaining frames: the STFT's trailing zeros, then every stage's zero padding at the end."""
        return self._step(self._features(np.concatenate([self.pending, np.zeros(N_FFT // 2, np.float32)])), True)

    def _features(self, samples: np.ndarray) -> np.ndarray:
        """(n,) -> (frames, n_mels) normalised features of the complete windows."""
        return ((log_mel_energies(samples, self.model.n_mels) - self.mean) / self.std).astype(np.float32)

    def _step(self, features: np.ndarray, final: bool) -> np.ndarray | None:
        spec, kernel, stride = self.spec, self.spec.kernel, self.spec.time_stride
        self.frames += len(features)
        queue = np.concatenate([self.queue, features])  # (frames, n_mels)
        if final:  # as many steps as the offline forward has output frames, plus the delays of conv2 and lookahead
            total = (self.frames - 1) // stride + 1  # output frames of the offline forward
            m = total + spec.conv2_future + spec.lookahead - self.made1
            if m <= 0:
                return None
            need = stride * (m - 1) + kernel
            queue = np.concatenate([queue, np.zeros((max(0, need - len(queue)), queue.shape[1]), np.float32)])
        else:
            m = (len(queue) - kernel) // stride + 1 if len(queue) >= kernel else 0
            if m <= 0 or (self.made1 == 0 and m <= spec.conv2_future):  # the first step must make a conv2 frame
                self.queue = queue
                return None
            total = None
        window = queue[: stride * (m - 1) + kernel]
        self.queue = queue[stride * m :]
        count2 = m - spec.conv2_future if self.made1 == 0 else m  # recurrent frames this step makes
        valid1 = m if total is None else min(m, max(0, total - self.made1))
        valid2 = count2 if total is None else min(count2, max(0, total - self.made2))
        inputs = {"features": window[None], "valid1": np.array([valid1], np.int64),
                  "valid2": np.array([valid2], np.int64), **self.states}  # fmt: skip
        log_probs, *states = self.model.session.run(self.outputs, inputs)
        self.states = dict(zip(self.states, states, strict=True))
        self.made1, self.made2 = self.made1 + m, self.made2 + count2
        lp = log_probs[0]  # (count2, V): positions made2 - count2 - tau ...
        first = self.made2 - count2 - spec.lookahead  # position of lp[0]; negative: before the start
        lp = lp[max(0, -first) :]
        if total is not None:
            lp = lp[: total - self.emitted]
        self.emitted += len(lp)
        return lp if len(lp) else None
