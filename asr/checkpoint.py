"""Self-describing checkpoints: weights plus everything needed to rebuild and resume.

A checkpoint is a dict saved with torch.save: `model_config` (dict of
ModelConfig; one without `time_stride`, written before it existed, is stride 2),
`tokenizer` (its state dict: {"kind": "char", "vocab": [...]} or {"kind": "bpe",
"model": SentencePiece model bytes}), `model` (weights), and for training
checkpoints `train_config`, optimizer/scheduler/scaler states, counters and RNG
states. `inference.py --checkpoint X` needs nothing else. Files are written to a
temporary name and renamed, so a crash never leaves a half-written checkpoint.

Checkpoints travel (download_weights.py fetches them from URLs), and unpickling
an arbitrary file runs arbitrary code. So a checkpoint holds only tensors and
plain types (dict, list, tuple, str, int, float, bool, None, bytes) and is read
with `torch.load(weights_only=True)`; anything else in the file is refused.
Format 1 (before December 2026) stored NumPy's RNG state as an array: those
files still load, with NumPy arrays as the only extra type allowed.
"""

import dataclasses
import pickle
import random
import re
import types
import typing
from pathlib import Path

import numpy as np
import torch

from asr.atomic import atomic_write
from asr.config import AUGMENT_PRESETS, AugmentConfig, ModelConfig, TrainConfig
from asr.errors import ASRError
from asr.model import CONV1, CONV2, DeepSpeech2, _conv_out, conv1
from asr.tokenizers import Tokenizer, tokenizer_from_state

FORMAT_VERSION = 2
REQUIRED_KEYS = ("format_version", "model_config", "tokenizer", "model")
# Format 1 pickled np.random.get_state(): an ndarray of uint32. Rebuilding an array is plain data too.
_NUMPY_ARRAY_GLOBALS = [np.ndarray(0).__reduce__()[0], np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Atomically write `state` (which must hold REQUIRED_KEYS but format_version) to `path`."""
    atomic_write(path, lambda f: torch.save({"format_version": FORMAT_VERSION, **state}, f))


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint onto the CPU and check that it is one of ours."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}. Train one with `python train.py` (it writes runs/<run_name>/best.pt) "
            "or download one with `python download_weights.py`, then pass --checkpoint PATH"
        )
    try:
        with torch.serialization.safe_globals(_NUMPY_ARRAY_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        found = re.search(r"GLOBAL (\S+)", str(e)) if isinstance(e, pickle.UnpicklingError) else None
        if found:  # weights_only refused to import a callable: the file is not plain data
            raise ValueError(
                f"refused to load {path}: it holds a pickled Python object ({found[1]}) that could run code when "
                "loaded. This project's checkpoints hold only tensors and plain types; use one written by train.py"
            ) from None
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({_last_line(e)})") from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"{path} is not a checkpoint of this project: missing {', '.join(missing)}")
    _check_sections(path, state)
    if state["format_version"] > FORMAT_VERSION:
        raise ValueError(f"{path} has format {state['format_version']}; this code reads up to {FORMAT_VERSION}")
    state = _upgrade(state)
    _check_contents(path, state)
    return state


def _last_line(e: Exception) -> str:
    """The informative end of torch.load's long error messages."""
    lines = [line for line in str(e).splitlines() if line.strip() and not line.startswith("Check the documentation")]
    return lines[-1] if lines else type(e).__name__


def _upgrade(state: dict) -> dict:
    """Format 1 -> 2: the four RNG states move into `training["rng"]`; the train config loses its architecture
    overrides (the model config is the architecture), `data_dir` becomes `librispeech_dir`, and the augmentation
    settings are saved whole (format 1 had only the preset name)."""
    training, config = state.get("training"), state.get("train_config")
    if state["format_version"] == 1 and training is not None:
        old = {kind: training.pop(f"rng_{kind}") for kind in ("python", "numpy", "torch", "cuda")}
        training["rng"] = old | {"numpy": list(old["numpy"])}
    if state["format_version"] == 1 and config is not None:
        for name in ("rnn_type", "rnn_layers", "rnn_hidden"):
            config.pop(name, None)
        config["librispeech_dir"] = config.pop("data_dir", "data")
        state["augment_config"] = dataclasses.asdict(AUGMENT_PRESETS[config.get("augment", "none")])
    return state | {"format_version": FORMAT_VERSION}


class CheckpointError(ASRError, ValueError):
    """A checkpoint file whose contents this project cannot use; the message names the file."""


MAX_PARAMETERS = 2_000_000_000  # a model_config above this is refused before anything is allocated (8 GB in fp32)
_TRAINING_COUNTERS = {"step": int, "epoch": int, "batch_in_epoch": int, "skipped_steps": int, "best_wer": float}
_SECTIONS = {"model_config": ModelConfig, "train_config": TrainConfig, "augment_config": AugmentConfig}
_FIX = "the file is damaged or was not written by this project's train.py; use a checkpoint it wrote"


def _check_sections(path: Path, state: dict) -> None:
    """Before upgrading: the version is a number and every config section that is there is a dict."""
    if not isinstance(state["format_version"], int) or isinstance(state["format_version"], bool):
        raise CheckpointError(f"{path}: format_version is {state['format_version']!r}, not an integer — {_FIX}")
    for name in (*_SECTIONS, "training"):
        if name in state and not isinstance(state[name], dict):
            raise CheckpointError(f"{path}: {name} is a {type(state[name]).__name__}, not a dict — {_FIX}")


def _check_contents(path: Path, state: dict) -> None:
    """Every config section holds only its dataclass's fields, each of the declared type and choices; the model
    config describes a model of a sane size; a training checkpoint (with a train_config) has all its counters.
    One CheckpointError naming the file and the first bad value otherwise, before anything is built from them."""
    for name, cls in _SECTIONS.items():
        if name in state:
            _check_fields(path, name, state[name], cls)
    config = ModelConfig(**state["model_config"])
    for name in ("n_mels", "conv_channels", "rnn_layers", "rnn_hidden", "vocab_size"):
        if getattr(config, name) < 1:
            raise CheckpointError(f"{path}: model_config.{name} is {getattr(config, name)}, not positive — {_FIX}")
    parameters = estimate_parameters(config)
    if parameters > MAX_PARAMETERS:
        raise CheckpointError(
            f"{path}: model_config describes a model of {parameters:.3g} parameters (at least "
            f"{4 * parameters / 1e9:.3g} GB), above the limit of {MAX_PARAMETERS:.0e}; refusing to build it — {_FIX}"
        )
    training = state.get("training")
    if training is not None and "train_config" in state:  # what train.py --resume reads
        for key, kind in _TRAINING_COUNTERS.items():
            if key not in training:
                raise CheckpointError(f"{path}: training has no {key!r} — {_FIX}")
            if not _is_type(training[key], kind):
                raise CheckpointError(
                    f"{path}: training.{key} is {training[key]!r} ({type(training[key]).__name__}), expected "
                    f"{kind.__name__} — {_FIX}"
                )
        if not isinstance(training.get("rng"), dict):
            raise CheckpointError(f"{path}: training has no 'rng' states dict — {_FIX}")


def _check_fields(path: Path, name: str, values: dict, cls: type) -> None:
    """`values` could build `cls`: no unknown key, every value of its field's type (and, for the model, among its
    choices: the architecture is built from them)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in fields:
            raise CheckpointError(f"{path}: {name} has an unknown key {key!r} — {_FIX}")
        field = fields[key]
        if not _is_type(value, field.type):
            raise CheckpointError(
                f"{path}: {name}.{key} is {value!r} ({type(value).__name__}), expected {_type_name(field.type)}"
                f" — {_FIX}"
            )
        choices = field.metadata.get("choices") if cls is ModelConfig else None  # others may be renamed later
        if choices is not None and value not in choices:
            raise CheckpointError(
                f"{path}: {name}.{key} is {value!r}, not one of {', '.join(map(str, choices))} — {_FIX}"
            )


def _is_type(value, kind) -> bool:
    """isinstance for the annotations the config dataclasses use: int, float, str, bool, X | None, tuple[X, ...]."""
    args = typing.get_args(kind)
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        return any(_is_type(value, a) for a in args)
    if kind is type(None):
        return value is None
    if origin is tuple:
        return isinstance(value, (tuple, list)) and all(_is_type(v, args[0]) for v in value)
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind) if isinstance(kind, type) else True


def _type_name(kind) -> str:
    return getattr(kind, "__name__", None) or str(kind)


def estimate_parameters(config: ModelConfig) -> int:
    """Parameters DeepSpeech2(config) would have, from the config alone (nothing allocated)."""
    c = config.conv_channels
    (k1f, k1t), (k2f, k2t) = CONV1[0], CONV2[0]
    freq = _conv_out(_conv_out(config.n_mels, conv1(config.time_stride), 0), CONV2, 0)
    gates = {"gru": 3, "lstm": 4}[config.rnn_type]
    total = c * k1f * k1t + 2 * c + c * c * k2f * k2t + 2 * c  # two bias-free convolutions and their norms
    size, hidden = c * max(freq, 1), config.rnn_hidden
    for i in range(min(config.rnn_layers, MAX_PARAMETERS)):  # each layer has at least 2 parameters
        norm = 2 * size if i > 0 else 0
        total += norm + 2 * gates * hidden * (size + hidden + 2)  # two directions: input, recurrent, two biases
        size = hidden
        if total > MAX_PARAMETERS:
            break
    return total + 2 * size + size * config.vocab_size + config.vocab_size  # head norm and linear head


def find_checkpoint(runs_dir: str | Path = "runs", weights_dir: str | Path = "weights") -> Path:
    """The checkpoint a user most likely means: the newest runs/*/best.pt, else the newest weights/*.pt."""
    for pattern, folder in (("*/best.pt", runs_dir), ("*.pt", weights_dir)):
        found = sorted(Path(folder).glob(pattern), key=lambda p: p.stat().st_mtime)
        if found:
            return found[-1]
    raise FileNotFoundError(
        f"no checkpoint found in {runs_dir}/*/best.pt or {weights_dir}/*.pt. Train one with `python train.py` "
        "(the example model, ~2 min on a CPU) or fetch one with `python download_weights.py --url URL --sha256 HEX`, "
        "or pass --checkpoint PATH"
    )


def model_from_checkpoint(state: dict) -> tuple[DeepSpeech2, Tokenizer]:
    """Rebuild the model (eval mode, CPU) and tokenizer stored in a checkpoint."""
    config = ModelConfig(**state["model_config"])
    tokenizer = tokenizer_from_state(state["tokenizer"])
    if config.vocab_size != len(tokenizer):
        raise ValueError(f"checkpoint model has {config.vocab_size} outputs but its tokenizer {len(tokenizer)} tokens")
    model = DeepSpeech2(config)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise ValueError(f"checkpoint weights do not match its model config {config}: {e}") from None
    return model.eval(), tokenizer


def model_state(model: DeepSpeech2, tokenizer: Tokenizer) -> dict:
    """The part of a checkpoint that inference needs."""
    return {
        "model_config": dataclasses.asdict(model.config),
        "tokenizer": tokenizer.state_dict(),
        "model": model.state_dict(),
    }


def rng_states() -> dict:
    """Python, NumPy, torch (and CUDA) generator states as tensors and plain types."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),  # (version, tuple of 625 ints, gauss_next)
        "numpy": [name, keys.tolist(), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        # this process's GPU only: a run resumed on a machine with fewer (or no) GPUs must still load it
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
    }


def set_rng_states(states: dict) -> None:
    """Restore what `rng_states()` returned (format 1's NumPy array keys work too)."""
    random.setstate(states["python"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    cuda = states["cuda"]
    if isinstance(cuda, list | tuple):  # written before December 2026: one state per visible GPU
        cuda = cuda[0] if cuda else None  # rank 0 wrote it, from its own GPU: the first in the list
    if cuda is not None and torch.cuda.is_available():  # a CPU run's checkpoint leaves the GPU's seed alone
        torch.cuda.set_rng_state(cuda)
