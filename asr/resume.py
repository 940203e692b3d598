"""Resuming a run on another machine: another process count, another device, AMP on or off.

A checkpoint records how many processes wrote it (`training["world_size"]`) and the global batch of one
update (`training["global_batch_seconds"]` = batch_seconds x processes x grad_accum). Every process builds the
same global, seeded list of batches per epoch (asr/data.py BucketBatchSampler) and takes every `world`-th one,
so one update consumes `world x grad_accum` consecutive global batches. A run resumed with another process
count keeps that product by changing --grad_accum: 2 processes x 1 resume as 1 process x 2 (or 4 x 1 as
2 x 2, 1 x 4 as 2 x 2). What then stays exact: which global batches make each update, the learning-rate
schedule (its length is ceil(global batches / (world x grad_accum)) per epoch either way), the optimizer
state and the step count; only the order of floating-point sums differs (~1e-6). Not kept: an epoch whose
global batch count is not a multiple of the process count repeats up to world - 1 batches at its end to keep
the ranks in step, so the last update of such an epoch differs. A count that cannot keep the product (1
process x 1 resumed as 2) is refused with a message naming both.
"""

import math
import os

import torch

from asr.errors import ASRError


def world_size() -> int:
    """Processes of this run: torchrun's WORLD_SIZE, 1 for a plain run (known before the group is joined)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def grad_accum_for_world(path: str, saved_world: int, saved_accum: int, world: int) -> int:
    """The --grad_accum that makes `world` processes take the same global batches per update as the run that
    wrote `path` (`saved_world` processes x `saved_accum`); refuses a process count that cannot."""
    per_update = saved_world * saved_accum
    if per_update % world:
        counts = [n for n in range(1, per_update + 1) if per_update % n == 0]
        raise ASRError(
            f"{path}: written by {saved_world} process(es) x --grad_accum {saved_accum} = {per_update} batch(es) per "
            f"update; {world} processes cannot continue that schedule — resume with "
            f"{' or '.join(map(str, counts))} process(es), or start a new run with --init_from {path}"
        )
    return per_update // world


def batch_in_epoch_for_world(batch_in_epoch: int, saved_world: int, world: int, batches_in_epoch: int) -> int:
    """This process's batches already consumed in the current epoch, from the count a run of `saved_world`
    processes saved (each of its processes had taken `batch_in_epoch` of every `saved_world`)."""
    return min(math.ceil(batch_in_epoch * saved_world / world), batches_in_epoch)


def load_scaler_state(scaler: torch.amp.GradScaler, state: dict) -> None:
    """Load a GradScaler state whatever the AMP setting of the run that saved it: a disabled scaler (CPU or
    --no-amp) saved {}, which an enabled one refuses; it then starts from its default scale."""
    if state or not scaler.is_enabled():
        scaler.load_state_dict(state)  # a disabled scaler ignores what it is given
        return
    print("resume: the checkpoint ran without fp16 loss scaling; the scaler starts from its default scale")
