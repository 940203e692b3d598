"""Data-parallel training under torchrun: torch's DistributedDataParallel does the gradient reduction.

DDP all-reduces gradients in buckets while the backward pass is still running, averaged over the processes.
Inside a --grad_accum window only the window's last batch reduces (`model.no_sync()` on the others): the
accumulated gradients travel once. Parameters frozen for a fine-tuning phase (--freeze) are left out of the
wrapper, so they get no gradient and AdamW neither moves nor decays them; the wrapper is rebuilt when the
phase ends (a one-off broadcast of the weights, cheaper than `find_unused_parameters`, which walks the
autograd graph after every forward).

Every process must take part in every collective, in the same order, or all of them hang. So whether a batch
is used is agreed: a batch that gives a non-finite loss (or that failed to load) on any process is skipped by
all of them (`agree_usable`, one tiny all-reduce per batch). When the batch so skipped was a window's last, the
window's earlier gradients were never reduced; `reduce_by_hand` then averages them in one flat all-reduce.
"""

from contextlib import AbstractContextManager, nullcontext

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

_WRAPPERS: dict[int, tuple[tuple[str, ...], DistributedDataParallel]] = {}  # id(model) -> (trainable, wrapper)


def replicate(model: nn.Module) -> nn.Module:
    """The module a training step runs: `model` itself in a plain run; under torchrun a DDP wrapper over its
    parameters that require a gradient, kept until that set changes."""
    if not dist.is_initialized():
        return model
    trainable = tuple(name for name, p in model.named_parameters() if p.requires_grad)
    cached = _WRAPPERS.get(id(model))
    if cached is not None and cached[0] == trainable:
        return cached[1]
    device = next(model.parameters()).device
    # broadcast_buffers=False: each process keeps the batch-norm statistics of its own batches (rank 0's are
    # saved), as before DDP, and no broadcast runs before every forward.
    wrapper = DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
    )
    _WRAPPERS[id(model)] = (trainable, wrapper)
    return wrapper


def window_context(model: nn.Module, last_in_window: bool) -> AbstractContextManager:
    """no_sync() for a batch that does not close its --grad_accum window (DDP only); nothing otherwise."""
    if isinstance(model, DistributedDataParallel) and not last_in_window:
        return model.no_sync()
    return nullcontext()


def agree_usable(usable: bool, device: torch.device) -> bool:
    """True when the batch is usable on every process (a plain run: `usable`)."""
    if not dist.is_initialized():
        return usable
    flag = torch.tensor([1.0 if usable else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def reduce_by_hand(model: nn.Module) -> None:
    """Average the gradients over the processes in one flat all-reduce (when DDP's own reduction was skipped
    with the window's last batch)."""
    if not dist.is_initialized():
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for g, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
        g.copy_(part.view_as(g))
