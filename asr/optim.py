"""What the optimizer is given: parameter groups, the exponential schedule and the batch-size rule.

Weight decay pulls weights towards 0. That is a prior for matrices and convolution kernels, not for
batch-norm scales (decaying them to 0 switches channels off) or for biases (NeMo, ESPnet and the
DeepSpeech2 reimplementations all leave them alone): so 1-D parameters form their own group with no decay.
"""

import math

import torch
from torch import nn

DECAY, NO_DECAY = "decay", "no_decay"  # param group names (saved in the optimizer state)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Matrices and kernels with `weight_decay`; norms' scales and shifts and all biases (1-D) without."""
    params = list(model.parameters())
    return [
        {"name": DECAY, "params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"name": NO_DECAY, "params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


def regroup_state(saved: dict, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """An optimizer state saved with one group over model.parameters() (before December 2026), renumbered
    for `optimizer`'s groups; other states are returned unchanged."""
    current = optimizer.state_dict()
    if len(saved["param_groups"]) == len(current["param_groups"]) or len(saved["param_groups"]) != 1:
        return saved
    old_index = {id(p): i for i, p in enumerate(model.parameters())}
    new_order = [p for group in optimizer.param_groups for p in group["params"]]
    state = {k: saved["state"][old_index[id(p)]] for k, p in enumerate(new_order) if old_index[id(p)] in saved["state"]}
    return {"state": state, "param_groups": current["param_groups"]}


def exponential(step: int, total: int, warmup: float, steps_per_epoch: int, decay: float) -> float:
    """The DS2 reimplementations' schedule: the peak times `decay` after every epoch (a staircase), after a
    linear warmup from 1/25 of the peak over `warmup` of all steps."""
    warm = max(1, round(warmup * total))
    if step < warm:
        return 1 / 25 + (1 - 1 / 25) * step / warm
    return decay ** (step // max(1, steps_per_epoch))


def scaled_lr(lr: float, global_batch_seconds: float, reference_seconds: float) -> float:
    """Square-root rule for Adam-type optimizers: the LR tuned for a global batch of `reference_seconds`,
    times sqrt(global / reference) (gradient noise falls with the square root of the batch)."""
    return lr * math.sqrt(global_batch_seconds / reference_seconds)
