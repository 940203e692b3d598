"""DDP details in 2 gloo processes: a bad batch on one rank is skipped by both, frozen parameters stay out."""

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import train
from asr.config import MODEL_PRESETS, TrainConfig
from asr.distributed import replicate


def _batch(rank: int, step: int) -> dict:
    g = torch.Generator().manual_seed(10 * step + rank)
    features = torch.randn(2, 60, 40, generator=g)
    if (rank, step) == (1, 1):
        features[0, 5, 5] = float("nan")  # only rank 1's second batch is bad
    return {"ids": ["a", "b"], "features": features, "feature_lengths": torch.tensor([60, 50]),
            "targets": torch.randint(1, 29, (2, 8), generator=g), "target_lengths": torch.tensor([8, 6])}  # fmt: skip


def _worker(rank: int, init: str, out: dict) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = train.DeepSpeech2(MODEL_PRESETS["tiny"])
    config = TrainConfig(epochs=1, freeze="conv", freeze_epochs=1)
    optim = train.build_optimizer(config, model, steps_per_epoch=10)
    train.freeze_for_epoch(model, config, epoch=0)
    runner = replicate(model)
    frozen = model.conv1.weight.detach().clone()
    losses = [train.forward_backward(runner, optim, _batch(rank, s), torch.device("cpu"), amp=False) for s in (0, 1)]
    # the window's last batch was skipped on both ranks: DDP reduced nothing, reduce_by_hand averages batch 0
    norm = train.apply_gradients(model, optim, 1, grad_clip=math.inf, reduced=False)
    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()])
    sums = [torch.empty_like(checksum) for _ in range(2)]
    dist.all_gather(sums, checksum)
    kept = torch.equal(model.conv1.weight, frozen)
    out[rank] = {"losses": losses, "norm": norm, "same": torch.equal(sums[0], sums[1]), "frozen_kept": kept,
                 "frozen_grad": model.conv1.weight.grad}  # fmt: skip
    dist.destroy_process_group()


@pytest.mark.slow
def test_a_bad_batch_on_one_rank_is_skipped_by_both_and_frozen_weights_stay(tmp_path):
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(f"file://{tmp_path / 'rendezvous'}", out), nprocs=2, join=True)
    for rank in (0, 1):
        first, second = out[rank]["losses"]
        assert math.isfinite(first) and math.isnan(second)  # rank 0's good batch 1 was dropped too: no hang
        assert math.isfinite(out[rank]["norm"]) and out[rank]["same"]  # one averaged update, equal weights
        assert out[rank]["frozen_kept"] and out[rank]["frozen_grad"] is None  # --freeze conv: not decayed either
