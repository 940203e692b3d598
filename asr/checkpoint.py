"""Self-describing checkpoints: weights plus everything needed to rebuild and resume.

A checkpoint is a dict saved with torch.save: `model_config` (dict of
ModelConfig), `tokenizer` (its state dict), `model` (weights), and for training
checkpoints `train_config`, optimizer/scheduler/scaler states, counters and RNG
states. `inference.py --checkpoint X` needs nothing else. Files are written to a
temporary name and renamed, so a crash never leaves a half-written checkpoint.
"""

import dataclasses
import os
from pathlib import Path

import torch

from asr.config import ModelConfig
from asr.model import DeepSpeech2
from asr.text import CharTokenizer, tokenizer_from_state

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "model_config", "tokenizer", "model")


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
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({e})") from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"{path} is not a checkpoint of this project: missing {', '.join(missing)}")
    if state["format_version"] > FORMAT_VERSION:
        raise ValueError(f"{path} has format {state['format_version']}; this code reads up to {FORMAT_VERSION}")
    return state


def model_from_checkpoint(state: dict) -> tuple[DeepSpeech2, CharTokenizer]:
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


def model_state(model: DeepSpeech2, tokenizer: CharTokenizer) -> dict:
    """The part of a checkpoint that inference needs."""
    return {
        "model_config": dataclasses.asdict(model.config),
        "tokenizer": tokenizer.state_dict(),
        "model": model.state_dict(),
    }
