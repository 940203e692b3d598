"""Run folders: where a resumed run writes, and the fingerprint of the data a run trains on.

A run lives in `<runs_dir>/<run_name>/` (config.json, last.pt, best.pt, tensorboard/). `--resume X` writes into
the folder X was read from, whatever X's saved runs_dir and run_name say, so a copied or tampered checkpoint can
never overwrite another run; X must sit in a run folder (a config.json beside it). The data fingerprint (the
number of training utterances read and a SHA-256 of their sorted ids) is kept in config.json and every
checkpoint; a resumed run whose data no longer matches is refused unless --allow_data_change.
"""

import hashlib
import os
from dataclasses import replace
from pathlib import Path

from asr.config import TrainConfig
from asr.errors import ASRError


def resume_folder(checkpoint: str | Path, given: dict) -> tuple[str, str]:
    """(runs_dir, run_name) of the folder `checkpoint` is in; refuses a checkpoint outside a run folder and
    --runs_dir/--run_name flags (`given`) that name another folder."""
    folder = Path(os.path.abspath(checkpoint)).parent
    if not (folder / "config.json").is_file():
        raise ASRError(
            f"{checkpoint}: not in a run folder (no config.json beside it), and --resume writes into the checkpoint's "
            f"own folder — resume a last.pt inside its run folder (copy the whole folder to continue elsewhere), "
            f"or start a new run from its weights with --init_from {checkpoint}"
        )
    elsewhere = [f"--{k} {v}" for k, v in given.items() if k in ("runs_dir", "run_name")]
    if elsewhere:
        raise ASRError(
            f"{', '.join(elsewhere)}: a resumed run writes into its checkpoint's folder {folder} — drop the flag "
            "(to continue elsewhere, copy the run folder and resume the copy)"
        )
    return str(folder.parent), folder.name


def data_fingerprint(ids: list[str]) -> tuple[int, str]:
    """(number of utterances, SHA-256 of their sorted ids joined by newlines)."""
    return len(ids), hashlib.sha256("\n".join(sorted(ids)).encode("utf-8")).hexdigest()


def with_data_fingerprint(config: TrainConfig, ids: list[str]) -> TrainConfig:
    """`config` recording the fingerprint of the training utterances `ids`. A resumed run (config holds the
    saved fingerprint) whose data changed is refused, naming both counts, unless --allow_data_change."""
    count, digest = data_fingerprint(ids)
    saved = (config.data_utterances, config.data_ids_sha256)
    if config.resume is not None and saved[0] is not None and saved != (count, digest) and not config.allow_data_change:
        same = " (the same number, other ids)" if saved[0] == count else ""
        raise ASRError(
            f"{config.dataset}: the training data changed since {config.resume} was saved: {count} utterances now, "
            f"{saved[0]} then{same} — restore the data, start a new run (--init_from {config.resume} keeps the "
            "weights), or pass --allow_data_change to continue on the new data"
        )
    return replace(config, data_utterances=count, data_ids_sha256=digest)
