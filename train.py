"""Train DeepSpeech2 with CTC.

    python train.py                                   # the bundled example set, CPU-friendly
    python train.py --dataset train-clean-360 --epochs 50    # the LibriSpeech recipe (asr/config.py RECIPES)
    python train.py --resume runs/<name>/last.pt      # continue exactly where it stopped
    python train.py --tokenizer bpe --bpe_vocab_size 256 --time_stride 4    # word pieces (asr/bpe.py)

`main()` below is the whole run, top to bottom; each step it calls is a function
in this file that fits on a screen, but for the flags -> settings resolution
(asr/settings.py) and the BPE tokenizer's cache (asr/bpe.py).
"""

import dataclasses
import datetime
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from asr.audio import STATS_UTTERANCES, feature_stats, torchaudio
from asr.augment import make_augmenter
from asr.bpe import cached_bpe
from asr.checkpoint import (
    load_checkpoint,
    model_from_checkpoint,
    model_state,
    rng_states,
    save_checkpoint,
    set_rng_states,
)
from asr.config import ModelConfig, Settings, TrainConfig
from asr.data import (
    BucketBatchSampler,
    DataReport,
    SpeechDataset,
    Utterance,
    collate,
    filter_for_training,
    load_dataset,
    uses_librispeech,
)
from asr.decode import BeamOptions, decode_batch, greedy_decode
from asr.distributed import agree_usable, reduce_by_hand, replicate, window_context
from asr.errors import ASRError, run_cli
from asr.features import WaveDataset, collate_waves, device_features
from asr.infer import autocast, batch_log_probs, eval_loader, uses_amp
from asr.librispeech import ensure_splits
from asr.logger import EvalResult, TrainLog
from asr.metrics import score
from asr.model import DeepSpeech2, count_parameters, feature_extractor, pick_device
from asr.optim import NO_DECAY, exponential, param_groups, regroup_state
from asr.resume import batch_in_epoch_for_world, load_scaler_state, world_size
from asr.runs import with_data_fingerprint
from asr.settings import check_limits, global_batch_seconds, print_recipe, resolve_config
from asr.stream import latency_summary
from asr.tokenizers import CharTokenizer, Tokenizer


def main(argv: list[str] | None = None) -> dict:
    settings, resumed = resolve_config(argv, description=__doc__)
    check_limits(settings.train)
    torchaudio()  # a torchaudio that cannot load fails here, in one line, before anything is written
    # under torchrun: one process per device; only rank 0 prints, logs and saves
    init_distributed(settings.train.dist_timeout)
    config = settings.train
    run_dir = run_folder(config)
    print(json.dumps(settings.as_dict(), indent=2))
    print_recipe(config)

    seed_everything(config.seed)
    device = pick_device(config.device)
    set_determinism(config, device)
    # fp16 with loss scaling rather than bf16: cuDNN runs GRU/LSTM in bf16 only from cuDNN 9.13
    # (PyTorch >= 2.10); fp16 RNNs work on every CUDA GPU and PyTorch this project accepts. Training steps,
    # evaluation and inference.py all pass the flag to one function (asr.infer.uses_amp: fp16 only on CUDA),
    # so validation and test WERs come from the same arithmetic.
    amp = config.amp
    # Unusable files and filtered utterances are counted and printed, never dropped silently; bad data
    # stops the run here, before its folder exists (a BPE run may have cached its tokenizer there already).
    sets = read_data(config)
    settings = replace(settings, train=with_data_fingerprint(config, [u.id for u in sets.train]))
    config = settings.train
    model, tokenizer = build_model(settings, resumed, sets.train, run_dir)
    model = model.to(device)
    origin = f"from {config.init_from}" if config.init_from else config.model
    print(f"model ({origin}): {count_parameters(model) / 1e6:.2f}M parameters, {settings.model}, device {device}")
    if not settings.model.bidirectional:
        print(latency_summary(settings.model))  # what streaming it (asr/stream.py) will cost in latency
    data = build_data(settings, tokenizer, model, sets)
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_main():
        (run_dir / "config.json").write_text(json.dumps(settings.as_dict(), indent=2) + "\n")

    optim = build_optimizer(config, model, data.steps_per_epoch)
    state = TrainState()
    if resumed is not None:
        restore(resumed, model, optim, state, config)
        saved_world = resumed["training"].get("world_size", 1)
        state.batch_in_epoch = batch_in_epoch_for_world(state.batch_in_epoch, saved_world, world_size(),
                                                        data.batches_in_epoch(state.epoch))  # fmt: skip
    log = TrainLog(run_dir / "tensorboard", config.tensorboard and is_main(), purge_step=state.step or None)
    log.config(settings.as_dict(), state.step)
    if data.dataset.augmenter is not None and state.step == 0:
        log.augmentations(data.train, settings.augment, config.seed, data.dataset.featurize)

    def save(name: str) -> None:
        if is_main():
            save_checkpoint(run_dir / name, checkpoint_dict(model, tokenizer, optim, state, settings))

    run = Run(model, tokenizer, optim, data, config, device, amp, log, save)
    stopped = False
    while state.epoch < config.epochs and not stopped:
        # One pass over the training set; returns early when --max_steps or --max_minutes is reached.
        stopped = train_epoch(run, state)
        if not stopped:
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
        # Evaluate on schedule, and always when cut short (the last evaluation did not see the final weights).
        if stopped or state.epoch % config.eval_every == 0 or state.epoch == config.epochs:
            evaluate_and_keep_best(run, state)
        save("last.pt")  # after the evaluation, so that it carries the best WER so far

    log.close()
    finish_distributed(model)
    rate = state.audio_seconds / max(state.train_seconds, 1e-9)
    print(f"done: {state.step} steps, {state.skipped_steps} skipped; {state.train_seconds / 60:.1f} min of training "
          f"at {rate:.1f} audio-s/s; best eval WER {100 * state.best_wer:.2f}%; checkpoints in {run_dir}")  # fmt: skip
    if state.load_errors:
        print(f"{len(state.load_errors)} files could not be read:\n" + "\n".join(f"  {e}" for e in state.load_errors))
    return {"run_dir": run_dir, "losses": state.losses, "best_wer": state.best_wer, "step": state.step,
            "skipped_steps": state.skipped_steps, "train_seconds": state.train_seconds,
            "audio_seconds": state.audio_seconds}  # fmt: skip


# ---------------------------------------------------------------------------------------------- run set-up


def run_folder(config: TrainConfig) -> Path:
    """runs/<run_name>; a new run refuses to write into a folder that already holds one."""
    run_dir = Path(config.runs_dir) / (config.run_name or Path(config.dataset.split("+")[0].rstrip("/")).name)
    if config.resume is None and (run_dir / "last.pt").exists():
        raise ASRError(
            f"{run_dir} already holds a run. Continue it with --resume {run_dir / 'last.pt'}, "
            "or start another with --run_name NAME"
        )
    return run_dir


def build_model(
    settings: Settings, resumed: dict | None, train_utts: list[Utterance], run_dir: Path
) -> tuple[DeepSpeech2, Tokenizer]:
    """A new model and tokenizer (BPE: trained on the training transcripts); or the weights and tokenizer of
    --init_from (fine-tuning) or of the resumed checkpoint."""
    config = settings.train
    source = resumed or (load_checkpoint(config.init_from) if config.init_from else None)
    if source is not None:
        return model_from_checkpoint(source)
    if config.tokenizer == "char":
        tokenizer = CharTokenizer()
    else:  # trained on the training transcripts; cached in the run folder (only rank 0 writes it)
        texts = [u.text for u in train_utts if u.text]
        tokenizer = cached_bpe(texts, config.bpe_vocab_size, config.seed, run_dir, write=is_main())
    assert len(tokenizer) == settings.model.vocab_size, (len(tokenizer), settings.model.vocab_size)
    model = DeepSpeech2(settings.model)
    if settings.model.features == "global":  # causal features: training-set statistics, saved with the weights
        mean, std, frames = feature_stats([u.audio_path for u in train_utts], settings.model.n_mels)
        model.feature_mean.copy_(mean), model.feature_std.copy_(std)
        print(f"feature statistics (global): {frames} frames of up to {STATS_UTTERANCES} training recordings")
    return model, tokenizer


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_determinism(config: TrainConfig, device: torch.device) -> None:
    """torch's global switches from --deterministic and --cudnn_benchmark (both ways, so a run sets them all).

    cuDNN's benchmark mode times several algorithms for every input shape it has not seen and keeps the
    fastest: it pays when shapes repeat. Duration-bucketed batches seldom repeat one: 28.5k LibriSpeech-like
    durations (normal, 12.7 +- 3.5 s) in 400 s batches give 924 batches with 721-885 distinct (batch, frames)
    shapes per epoch (benchmarks/speed.py), so it would re-tune on almost every step. Hence off unless
    --cudnn_benchmark (not measured on a GPU here). --deterministic makes torch refuse nondeterministic
    kernels, except that CTC's backward on CUDA has none (torch's docs list it among the kernels that raise):
    warn_only turns that into a warning.
    """
    if config.deterministic and config.cudnn_benchmark:
        raise ValueError("--deterministic and --cudnn_benchmark contradict each other: benchmark mode picks "
                         "kernels by timing; drop one of them")  # fmt: skip
    if config.deterministic and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (read at first use)
    torch.use_deterministic_algorithms(config.deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = config.deterministic
    torch.backends.cudnn.benchmark = config.cudnn_benchmark


# ---------------------------------------------------------------------------------------------- data


@dataclass
class TrainData:
    """Training and evaluation utterances with their loaders."""

    train: list[Utterance]
    eval: list[Utterance]
    dataset: SpeechDataset
    sampler: BucketBatchSampler
    loader: torch.utils.data.DataLoader
    eval_loader: torch.utils.data.DataLoader
    steps_per_epoch: int

    def batches(self, state: "TrainState") -> torch.utils.data.DataLoader:
        """This epoch's batches, after the ones already consumed (a resumed run continues mid-epoch)."""
        self.sampler.set_epoch(state.epoch, start=state.batch_in_epoch)
        self.dataset.epoch = state.epoch  # seeds this epoch's augmentations (workers copy the dataset per epoch)
        return self.loader

    def batches_in_epoch(self, epoch: int) -> int:
        return len(self.sampler.rank_batches(epoch))


@dataclass
class DataSets:
    """The training and evaluation utterances as read, before filtering, and what went wrong reading them."""

    train: list[Utterance]
    eval: list[Utterance]  # those with a transcript, at most --eval_utterances
    eval_spec: str
    report: DataReport


def read_data(config: TrainConfig) -> DataSets:
    """Download what is missing and read both sets (the training set's transcripts train a BPE tokenizer)."""
    report = DataReport()
    eval_spec = config.eval_dataset or ("dev-clean" if uses_librispeech(config.dataset) else config.dataset)
    for spec in (config.dataset, eval_spec):
        ensure_splits(spec, config.librispeech_dir, config.download)  # the only place a run downloads
    train_utts = load_dataset(config.dataset, config.librispeech_dir, report)
    eval_utts = [u for u in load_dataset(eval_spec, config.librispeech_dir, report) if u.text is not None]
    return DataSets(train_utts, eval_utts[: config.eval_utterances], eval_spec, report)


def build_data(settings: Settings, tokenizer: Tokenizer, model: DeepSpeech2, sets: DataSets) -> TrainData:
    """Filter the training set for CTC with the model's real output lengths and the tokenizer's real token counts,
    report, and build the loaders; exits when nothing usable is left."""
    config, report, eval_spec, eval_utts = settings.train, sets.report, sets.eval_spec, sets.eval
    try:
        frames = lambda n: int(model.output_lengths(torch.tensor(n)))  # noqa: E731
        train_utts = filter_for_training(sets.train, tokenizer, frames, config.max_duration, report)
    except ValueError as e:  # a tokenizer from --init_from or --resume that lacks a character of the data
        raise ValueError(f"{e}: the checkpoint's tokenizer cannot spell the training transcripts") from None
    print(
        f"train: {len(train_utts)} utterances, {sum(u.duration for u in train_utts) / 3600:.2f} h; "
        f"eval ({eval_spec}): {len(eval_utts)} utterances"
    )
    if report.summary():
        print(f"data report:\n{report.summary()}")
    if not train_utts:
        reasons = "".join(f", {n} {reason}" for reason, n in report.skipped.items())
        raise ASRError(f"{config.dataset}: no usable training utterances ({len(sets.train)} read{reasons}) — see "
                       "the data report above; fix the files or give --dataset another folder")  # fmt: skip
    if not sum(len(u.text.split()) for u in eval_utts):  # a WER over no words would read 0.00 % and freeze best.pt
        raise ASRError(f"no evaluation utterances with a transcript in {eval_spec} (--eval_utterances "
                 f"{config.eval_utterances}); give --eval_dataset a set with transcriptions/")  # fmt: skip
    # Augmentation draws from default_rng([seed, epoch, index]): resumed runs see the same augmented audio.
    # Any *_p > 0 augments, whatever the preset (--augment none --noise_p 1.0 adds noise).
    augmenter = make_augmenter(settings.augment)
    featurize = feature_extractor(model)  # per-utterance normalisation, or a streaming model's global statistics
    pin = next(model.parameters()).is_cuda
    # Features on the device (asr/features.py) normalise per utterance: a model with global statistics keeps the
    # loader path.
    if config.device_features and featurize.stats is not None:
        raise ASRError("--device_features: a model with global feature statistics (--model stream) computes its "
                       "features in the loader — drop the flag")  # fmt: skip
    on_device = (pin if config.device_features is None else config.device_features) and featurize.stats is None
    dataset_class, collate_fn = (WaveDataset, collate_waves) if on_device else (SpeechDataset, collate)
    extra = {} if on_device else {"featurize": featurize}
    dataset = dataset_class(train_utts, tokenizer, settings.model.n_mels, augmenter=augmenter, seed=config.seed,
                            **extra)  # fmt: skip
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    durations = [u.duration for u in train_utts]
    sampler = BucketBatchSampler(durations, config.batch_seconds, seed=config.seed, rank=rank, world=world)
    # Pinned host memory makes the copies to a GPU asynchronous. Workers are not persistent: each epoch's
    # workers copy the dataset with that epoch's number, which seeds its augmentations; starting them again
    # costs a second or so per epoch.
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate_fn, num_workers=config.num_workers, pin_memory=pin
    )
    val = eval_loader(eval_utts, tokenizer, settings.model.n_mels, config.batch_seconds, config.num_workers, pin,
                      featurize)  # fmt: skip
    # The schedule length comes from the epoch count only (not --max_steps), so a run cut short
    # and resumed follows the same learning-rate curve as an uninterrupted one.
    steps = math.ceil(len(sampler.rank_batches(1)) / config.grad_accum)
    return TrainData(train_utts, eval_utts, dataset, sampler, loader, val, steps)


# ---------------------------------------------------------------------------------------------- optimisation


@dataclass
class Optimization:
    """AdamW, its learning-rate schedule, and the fp16 loss scaler (a no-op off CUDA)."""

    optimizer: torch.optim.AdamW
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler


def lr_factor(step: int, total: int, warmup: float) -> float:
    """One-cycle shape: linear warmup from 1/25 of the peak, then cosine decay to 1/100 of it."""
    warm = max(1, round(warmup * total))
    if step < warm:
        return 1 / 25 + (1 - 1 / 25) * step / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    return 1 / 100 + (1 - 1 / 100) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(config: TrainConfig, model: DeepSpeech2, steps_per_epoch: int) -> Optimization:
    total = config.epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr)  # no decay on norms, biases
    if config.schedule == "exponential":
        factor = lambda s: exponential(s, total, config.warmup, steps_per_epoch, config.lr_decay)  # noqa: E731
    else:
        factor = lambda s: lr_factor(s, total, config.warmup)  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    scaler = torch.amp.GradScaler("cuda", enabled=uses_amp(next(model.parameters()).device, config.amp))
    return Optimization(optimizer, scheduler, scaler)


def ctc_loss(log_probs: torch.Tensor, out_lengths: torch.Tensor, batch: dict) -> torch.Tensor:
    """Summed CTC loss of a batch in fp32; log_probs (B, T', V) on the model's device."""
    ctc = torch.nn.CTCLoss(blank=0, reduction="sum", zero_infinity=True)
    device = log_probs.device
    return ctc(log_probs.transpose(0, 1).float(), batch["targets"].to(device), out_lengths,
               batch["target_lengths"].to(device))  # fmt: skip


def model_config(model: torch.nn.Module) -> ModelConfig:
    """The ModelConfig of a model or of the DDP wrapper around one."""
    return getattr(model, "module", model).config


def forward_backward(
    model: DeepSpeech2, optim: Optimization, batch: dict, device: torch.device, amp: bool, last_in_window: bool = True
) -> float:
    """Forward, CTC (mean per utterance) and backward of one batch, adding to the gradients already there.
    Returns the loss; a non-finite loss returns nan and leaves the gradients untouched. `model` may be the DDP
    wrapper (asr/distributed.py): it reduces the gradients on the window's last batch only, and a batch whose loss
    is non-finite on any process is skipped by all."""
    if "samples" in batch:  # --device_features: waveforms (B, S) to featurise here, on the device
        features = device_features(batch, device, model_config(model).n_mels)  # (B, T, n_mels)
    else:
        features = batch["features"].to(device, non_blocking=True)  # (B, T, n_mels)
    with window_context(model, last_in_window):
        with autocast(device, amp):
            log_probs, out_lengths = model(features, batch["feature_lengths"].to(device))  # (B, T', V), (B,)
        loss = ctc_loss(log_probs, out_lengths, batch) / len(batch["ids"])
        if not agree_usable(bool(torch.isfinite(loss)), device):
            return math.nan  # a NaN/inf loss would poison the weights (and the window's good gradients)
        optim.scaler.scale(loss).backward()
    return loss.item()


def apply_gradients(
    model: DeepSpeech2, optim: Optimization, batches: int, grad_clip: float, reduced: bool = True
) -> float | None:
    """One optimizer update from the gradients of `batches` accumulated batches (their mean), clipped; under DDP
    the mean over every process's batches (every process used the same number: usable batches are agreed), which
    DDP averaged during the last backward, or `reduce_by_hand` when the window's last batch was skipped
    (`reduced` False). Returns the gradient norm before clipping (non-finite, e.g. an fp16 overflow: no update),
    or None when the window had no usable batch (nothing happens)."""
    if batches == 0:
        optim.optimizer.zero_grad(set_to_none=True)
        return None
    if not reduced:
        reduce_by_hand(model)
    optim.scaler.unscale_(optim.optimizer)  # so the clipping threshold applies to true gradients
    if batches > 1:
        for p in model.parameters():
            if p.grad is not None:
                p.grad.div_(batches)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip).item()
    if math.isfinite(grad_norm):
        optim.scaler.step(optim.optimizer)
    optim.scaler.update()  # with fp16, an overflow also lowers the loss scale
    optim.optimizer.zero_grad(set_to_none=True)
    optim.scheduler.step()
    return grad_norm


# ---------------------------------------------------------------------------------------------- the loop


@dataclass
class Run:
    """What stays the same for the whole run, handed to each step of the loop (TrainState holds what changes)."""

    model: DeepSpeech2
    tokenizer: Tokenizer
    optim: Optimization
    data: TrainData
    config: TrainConfig
    device: torch.device
    amp: bool  # fp16 autocast on CUDA (asr.infer.uses_amp)
    log: TrainLog
    save: Callable[[str], None]  # save("last.pt"): the run as it is now, into its folder (rank 0 only)


@dataclass
class TrainState:
    """Where a run is; `state_dict()` goes into every checkpoint so --resume continues exactly."""

    step: int = 0  # optimizer updates so far
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already consumed (the sampler resumes after them)
    skipped_steps: int = 0  # non-finite losses or gradients, whose updates were dropped
    best_wer: float = math.inf
    losses: list[float] = field(default_factory=list)  # mean loss of each update in this process (not saved)
    load_errors: list[str] = field(default_factory=list)  # unreadable files met in this process (not saved)
    since_log: list[float] = field(default_factory=list)  # losses of the updates since the last log write
    train_seconds: float = 0.0  # wall-clock time in train_epoch in this process (not saved)
    audio_seconds: float = 0.0  # audio trained on in this process (not saved)

    def state_dict(self) -> dict:
        counters = ("step", "epoch", "batch_in_epoch", "skipped_steps", "best_wer")
        return {k: getattr(self, k) for k in counters} | {"rng": rng_states()}

    def load_state_dict(self, saved: dict) -> None:
        for k in ("step", "epoch", "batch_in_epoch", "skipped_steps", "best_wer"):
            setattr(self, k, saved[k])
        set_rng_states(saved["rng"])

    def record(self, wer: float) -> bool:
        """Keep the best WER; True when `wer` improves on it (a NaN never does)."""
        improved = wer < self.best_wer
        self.best_wer = wer if improved else self.best_wer
        return improved


def train_epoch(run: Run, state: TrainState) -> bool:
    """The rest of the current epoch. Gradients of `grad_accum` batches make one update; the epoch's last
    window may be shorter and is averaged over its real size. Returns True when --max_steps or --max_minutes
    stopped it."""
    model, optim, data, config, device = run.model, run.optim, run.data, run.config, run.device
    model.train()
    freeze_for_epoch(model, config, state.epoch)
    runner = replicate(model)  # under torchrun, the DDP wrapper over the parameters this epoch trains
    # Windows count batches read, usable or not, so that every DDP process closes them at the same batch.
    window, pending = 0, []  # batches read since the last update; losses of the usable ones
    seconds, tic, grad_norm = 0.0, time.perf_counter(), math.nan
    n_batches = data.batches_in_epoch(state.epoch)
    # disable=None: a live bar on a terminal, nothing in log files (the epoch summary line still prints)
    bar = tqdm(data.batches(state), desc=f"epoch {state.epoch}", leave=False, dynamic_ncols=True,
               disable=None if is_main() else True)  # fmt: skip
    for batch in bar:
        state.batch_in_epoch += 1
        window += 1
        for error in batch["errors"]:
            state.load_errors.append(error)
            tqdm.write(f"skipped unreadable file: {error}")
        closes = window >= config.grad_accum or state.batch_in_epoch >= n_batches  # the last always closes it
        loss = math.nan
        if batch["features"] is not None:
            loss = forward_backward(runner, optim, batch, device, run.amp, last_in_window=closes)
            state.skipped_steps += math.isnan(loss)
            pending += [] if math.isnan(loss) else [loss]
            seconds += float(batch["feature_lengths"].sum()) * 0.01  # 10 ms per feature frame
        else:
            agree_usable(False, device)  # under DDP the other processes wait for this one's word on the batch
        if not closes:
            continue  # keep accumulating
        grad_norm = apply_gradients(model, optim, len(pending), config.grad_clip, reduced=not math.isnan(loss))
        losses, window, pending = pending, 0, []
        if grad_norm is None:
            continue  # no usable batch in the window: no update
        state.step += 1
        state.skipped_steps += not math.isfinite(grad_norm)  # fp16 overflow or a bad batch: weights untouched
        state.losses.append(sum(losses) / len(losses) if losses else math.nan)  # this process's batches
        state.since_log.append(state.losses[-1])
        rate = seconds / (time.perf_counter() - tic)
        bar.set_postfix(loss=f"{state.losses[-1]:.3f}", audio_s_per_s=f"{rate:.1f}", step=state.step)
        if state.step % config.log_every == 0:
            log_train(run.log, state, optim, grad_norm, rate)
        if state.step % config.checkpoint_every == 0:
            run.save("last.pt")
        if out_of_budget(config, state, time.perf_counter() - tic):
            break
    bar.close()
    if state.since_log:  # at least one write per epoch, however short the run
        log_train(run.log, state, optim, grad_norm, seconds / (time.perf_counter() - tic))
    elapsed = time.perf_counter() - tic
    state.train_seconds, state.audio_seconds = state.train_seconds + elapsed, state.audio_seconds + seconds
    last = state.losses[-1] if state.losses else math.nan
    tqdm.write(f"epoch {state.epoch}: step {state.step}, last loss {last:.3f}, {seconds / elapsed:.1f} audio-s/s, "
               f"{elapsed:.0f} s")  # fmt: skip
    return out_of_budget(config, state, 0.0)


def out_of_budget(config: TrainConfig, state: TrainState, epoch_seconds: float) -> bool:
    """--max_steps reached, or --max_minutes spent on training steps (`epoch_seconds` of this epoch not yet
    counted in state.train_seconds). Under DDP rank 0's clock decides for all, so every process stops at the
    same step."""
    if config.max_steps is not None and state.step >= config.max_steps:
        return True
    if config.max_minutes is None:
        return False
    spent = [state.train_seconds + epoch_seconds >= 60 * config.max_minutes]
    if dist.is_initialized():
        dist.broadcast_object_list(spent, src=0)
    return spent[0]


def freeze_for_epoch(model: DeepSpeech2, config: TrainConfig, epoch: int) -> None:
    """Fine-tuning: --freeze's parameters get no gradients (so AdamW leaves them alone) in the first
    --freeze_epochs epochs. Their batch-norm statistics still adapt to the new data."""
    frozen = config.freeze if epoch < config.freeze_epochs else "none"
    for name, p in model.named_parameters():
        is_conv = name.startswith(("conv", "bn"))
        p.requires_grad_(not (frozen == "encoder" and not name.startswith("head.") or frozen == "conv" and is_conv))


def log_train(log: TrainLog, state: TrainState, optim: Optimization, grad_norm: float, rate: float) -> None:
    """train/* scalars; train/loss is the mean over the updates since the last write."""
    log.train(state.step, {"loss": sum(state.since_log) / len(state.since_log), "lr": optim.scheduler.get_last_lr()[0],
                           "grad_norm": grad_norm, "skipped_steps": state.skipped_steps,
                           "audio_seconds_per_second": rate})  # fmt: skip
    state.since_log.clear()


# ---------------------------------------------------------------------------------------------- evaluation


def evaluate(
    model: DeepSpeech2,
    utterances: list[Utterance],
    tokenizer: Tokenizer,
    config: TrainConfig,
    device: torch.device,
    amp: bool,
    loader: torch.utils.data.DataLoader,
) -> EvalResult:
    """Greedy WER/CER and CTC loss on the eval set, beam WER (no LM) on its first `eval_beam_utterances`."""
    references = {u.id: u.text for u in utterances}
    beam_ids = set(sorted(references)[: config.eval_beam_utterances]) if config.eval_beam_size > 0 else set()
    total_loss, greedy, beam_inputs, errors = 0.0, {}, {}, []
    for batch, log_probs, out_lens in batch_log_probs(model, loader, device, amp):
        errors += batch["errors"]
        if log_probs is None:
            continue
        total_loss += ctc_loss(log_probs, out_lens, batch).item()
        for i, (utt_id, hyp) in enumerate(
            zip(batch["ids"], greedy_decode(log_probs, out_lens, tokenizer), strict=True)
        ):
            greedy[utt_id] = hyp
            if utt_id in beam_ids:
                beam_inputs[utt_id] = log_probs[i, : out_lens[i]]  # (T', V)
    ids = sorted(beam_inputs)
    options = BeamOptions(beam_size=config.eval_beam_size) if ids else None  # --eval_beam_size 0: no beam
    hyps = decode_batch([beam_inputs[i] for i in ids], tokenizer, options) if ids else []
    beam = {i: h[0].text for i, h in zip(ids, hyps, strict=True)}
    return EvalResult(
        loss=total_loss / max(1, len(greedy)),
        scores=score([(references[i], greedy.get(i, "")) for i in sorted(references)]),  # a failed file scores empty
        references=references,
        greedy=greedy,
        beam=beam,
        beam_scores=score([(references[i], beam[i]) for i in ids]) if ids else None,
        greedy_on_beam_subset=score([(references[i], greedy[i]) for i in ids]) if ids else None,
        errors=errors,
    )


def evaluate_and_keep_best(run: Run, state: TrainState) -> None:
    """Rank 0 evaluates on the whole eval set (the other processes wait), logs, and keeps best.pt."""
    if is_main():
        data, config = run.data, run.config
        result = evaluate(run.model, data.eval, run.tokenizer, config, run.device, run.amp, data.eval_loader)
        subset = f"val_first{config.eval_utterances}" if config.eval_utterances is not None else "val"
        run.log.eval(result, state.step, data.eval, data.dataset.featurize, prefix=subset)  # a subset is labelled so
        tqdm.write(f"eval at step {state.step} (epoch {state.epoch}): {result.summary()}")
        state.load_errors += [e for e in result.errors if e not in state.load_errors]
        if state.record(result.scores.wer):
            run.save("best.pt")
    if dist.is_initialized():
        dist.barrier()


# ---------------------------------------------------------------------------------------------- processes (DDP)


def init_distributed(timeout_minutes: float = 60.0) -> None:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK); nothing for a plain run.
    Other ranks than 0 keep quiet: their stdout goes nowhere (errors still reach stderr). A collective waits up
    to `timeout_minutes` (--dist_timeout) for every process: NCCL's default 10 minutes can run out while rank 0
    alone evaluates on all of dev-clean and writes a checkpoint to a slow disk."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1 or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # "cuda" below is this process's GPU
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    if not is_main():
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)


def is_main() -> bool:
    """True in a plain run and in the DDP process of rank 0."""
    return not dist.is_initialized() or dist.get_rank() == 0


def finish_distributed(model: DeepSpeech2) -> None:
    """Check that every process ended with the same weights (they must: same start, same averaged updates)."""
    if not dist.is_initialized():
        return
    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()])
    gathered = [torch.empty_like(checksum) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, checksum)
    assert all(torch.equal(g, checksum) for g in gathered), "DDP processes ended with different weights"
    dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------- checkpoints


def checkpoint_dict(model, tokenizer, optim: Optimization, state: TrainState, settings: Settings) -> dict:
    """Everything --resume needs, as tensors and plain types (asr/checkpoint.py)."""
    return model_state(model, tokenizer) | {
        "train_config": dataclasses.asdict(settings.train),
        "augment_config": dataclasses.asdict(settings.augment),
        "optimizer": optim.optimizer.state_dict(),
        "scheduler": optim.scheduler.state_dict(),
        "scaler": optim.scaler.state_dict(),
        "training": state.state_dict()
        | {"world_size": world_size(), "global_batch_seconds": global_batch_seconds(settings.train)},
    }


def restore(saved: dict, model, optim: Optimization, state: TrainState, config: TrainConfig) -> None:
    """Load a checkpoint into the run; --lr and --weight_decay given with --resume take effect from here."""
    model.load_state_dict(saved["model"])
    optim.optimizer.load_state_dict(regroup_state(saved["optimizer"], model, optim.optimizer))
    optim.scheduler.load_state_dict(saved["scheduler"])
    load_scaler_state(optim.scaler, saved["scaler"])  # {} from a CPU or --no-amp run
    state.load_state_dict(saved["training"])
    optim.scheduler.base_lrs = [config.lr for _ in optim.optimizer.param_groups]
    factor = optim.scheduler.lr_lambdas[0](optim.scheduler.last_epoch)
    for group in optim.optimizer.param_groups:
        decay = config.weight_decay if group.get("name") != NO_DECAY else 0.0
        group.update(initial_lr=config.lr, lr=config.lr * factor, weight_decay=decay)
    print(f"resumed from {config.resume}: epoch {state.epoch}, batch {state.batch_in_epoch}, step {state.step}")


if __name__ == "__main__":
    status = run_cli(lambda argv: main(argv) and 0)  # bad input: one line `error: ...`, exit status 2
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Under torchrun, torch's C++ teardown at interpreter exit sometimes aborts ("terminate called without an
        # active exception") after the run has finished and saved; leave without it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
