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
import os
import pickle
import random
import re
from pathlib import Path

import numpy as np
import torch

from asr.config import AUGMENT_PRESETS, ModelConfig
from asr.model import DeepSpeech2
from asr.text import Tokenizer, tokenizer_from_state

FORMAT_VERSION = 2
REQUIRED_KEYS = ("format_version", "model_config", "tokenizer", "model")
# Format 1 pickled np.random.get_state(): an ndarray of uint32. Rebuilding an array is plain data too.
_NUMPY_ARRAY_GLOBALS = [np.ndarray(0).__reduce__()[0], np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Atomically write `state` (which must hold REQUIRED_KEYS but format_version) to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format_version": FORMAT_VERSION, **state}, tmp)
    os.replace(tmp, path)


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
    if state["format_version"] > FORMAT_VERSION:
        raise ValueError(f"{path} has format {state['format_version']}; this code reads up to {FORMAT_VERSION}")
    return _upgrade(state)


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
