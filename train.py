"""Train DeepSpeech2 with CTC.

    python train.py                                   # the bundled example set, CPU-friendly
    python train.py --dataset train-clean-100 --model base --epochs 50
    python train.py --resume runs/<name>/last.pt      # continue exactly where it stopped

Everything the run does is in `main()` below, top to bottom.
"""

import dataclasses
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from asr.audio import SAMPLE_RATE, TorchaudioError, load_audio, torchaudio
from asr.augment import Augmenter, preview, preview_spec
from asr.checkpoint import load_checkpoint, model_state, rng_states, save_checkpoint, set_rng_states
from asr.config import AUGMENT_PRESETS, DEVICE_BATCH_SECONDS, MODEL_PRESETS, RECIPES, TrainConfig, parser_for
from asr.data import (
    BucketBatchSampler,
    DataReport,
    SpeechDataset,
    collate,
    filter_for_training,
    load_dataset,
    uses_librispeech,
)
from asr.decode import decode_batch, greedy_decode
from asr.logger import make_writer, predictions_table, spectrogram_image
from asr.metrics import score
from asr.model import DeepSpeech2, count_parameters, pick_device
from asr.text import CharTokenizer
from asr.transcribe import eval_loader, transcribe

ARCHITECTURE_FLAGS = ("model", "rnn_type", "rnn_layers", "rnn_hidden")
LOGGED_UTTERANCES = 3  # spectrograms, audio and predictions shown in TensorBoard at each eval


def lr_factor(step: int, total: int, warmup: float) -> float:
    """One-cycle shape: linear warmup from 1/25 of the peak, then cosine decay to 1/100 of it."""
    warm = max(1, round(warmup * total))
    if step < warm:
        return 1 / 25 + (1 - 1 / 25) * step / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    return 1 / 100 + (1 - 1 / 100) * 0.5 * (1 + math.cos(math.pi * progress))


def recipe_name(dataset: str) -> str:
    """The RECIPES entry for a dataset spec: any LibriSpeech part makes it a LibriSpeech run."""
    return "librispeech" if uses_librispeech(dataset) else "folder"


def resolve_config(argv: list[str] | None) -> tuple[TrainConfig, dict | None]:
    """Flags -> TrainConfig. A new run starts from its dataset's recipe (RECIPES) and the flags given override
    it. With --resume, the saved config is the base instead (--max_steps is never inherited) and architecture
    flags must agree with the checkpoint. Values a recipe leaves to the machine are then sized for it."""
    parser_for(TrainConfig, description=__doc__).parse_args(argv)  # --help, and errors for bad values
    given = vars(parser_for(TrainConfig, defaults=False).parse_args(argv))
    if "resume" not in given:
        recipe = RECIPES[recipe_name(given.get("dataset", TrainConfig.dataset))]
        return size_for_machine(TrainConfig(**(recipe | given))), None
    state = load_checkpoint(given["resume"])
    if "train_config" not in state:
        raise ValueError(f"{given['resume']} holds no training state (it is an inference-only checkpoint)")
    saved = dataclasses.replace(TrainConfig(**state["train_config"]), max_steps=None)
    for name in ARCHITECTURE_FLAGS:
        if name in given and given[name] != getattr(saved, name):
            raise ValueError(
                f"--{name} {given[name]} differs from the checkpoint's {getattr(saved, name)}; "
                "a resumed run keeps its architecture (start a new run with --run_name to change it)"
            )
    return size_for_machine(dataclasses.replace(saved, **given)), state


def size_for_machine(config: TrainConfig) -> TrainConfig:
    """Fill what a recipe leaves to the machine (None): batch_seconds for the device, one worker per spare core."""
    batch_seconds, workers = config.batch_seconds, config.num_workers
    if batch_seconds is None:
        device = pick_device(config.device)
        if device.type == "cuda":
            gib = torch.cuda.get_device_properties(device).total_memory / 2**30
            batch_seconds = min(DEVICE_BATCH_SECONDS["cuda_max"], round(DEVICE_BATCH_SECONDS["cuda_per_gib"] * gib))
        else:
            batch_seconds = DEVICE_BATCH_SECONDS.get(device.type, DEVICE_BATCH_SECONDS["cpu"])
    if workers is None:
        workers = min(8, max(0, (os.cpu_count() or 1) - 1))
    return dataclasses.replace(config, batch_seconds=float(batch_seconds), num_workers=workers)


def main(argv: list[str] | None = None) -> dict:
    config, resume_state = resolve_config(argv)
    torchaudio()  # a torchaudio that cannot load fails here, in one line, before anything is written

    # ---- run folder and config -------------------------------------------------------------
    run_name = config.run_name or Path(config.dataset.split("+")[0].rstrip("/")).name
    run_dir = Path(config.runs_dir) / run_name
    if config.resume is None and (run_dir / "last.pt").exists():
        sys.exit(
            f"{run_dir} already holds a run. Continue it with --resume {run_dir / 'last.pt'}, "
            "or start another with --run_name NAME"
        )
    config = dataclasses.replace(config, run_name=run_name)
    print(json.dumps(dataclasses.asdict(config), indent=2))
    print(f"recipe: {recipe_name(config.dataset)} (defaults in asr/config.py RECIPES; any flag overrides them)")

    # ---- reproducibility and device -----------------------------------------------------------
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    device = pick_device(config.device)
    # fp16 with loss scaling rather than bf16: cuDNN runs GRU/LSTM in bf16 only from cuDNN 9.13
    # (PyTorch >= 2.10); fp16 RNNs work on every CUDA GPU and PyTorch this project accepts.
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # input shapes repeat thanks to duration bucketing

    # ---- model -------------------------------------------------------------------------------
    tokenizer = CharTokenizer()
    overrides = {k: getattr(config, k) for k in ("rnn_type", "rnn_layers", "rnn_hidden") if getattr(config, k)}
    model_config = dataclasses.replace(MODEL_PRESETS[config.model], vocab_size=len(tokenizer), **overrides)
    model = DeepSpeech2(model_config).to(device)
    print(f"model {config.model}: {count_parameters(model) / 1e6:.2f}M parameters, {model_config}, device {device}")

    # ---- data --------------------------------------------------------------------------------
    # Unusable files and filtered utterances are counted in `report` and printed, never dropped silently.
    report = DataReport()
    train_utts = load_dataset(config.dataset, config.data_dir, report, config.download)
    train_utts = filter_for_training(
        train_utts, tokenizer, lambda n: int(model.output_lengths(torch.tensor(n))), config.max_duration, report
    )
    eval_spec = config.eval_dataset or ("dev-clean" if uses_librispeech(config.dataset) else config.dataset)
    eval_utts = [u for u in load_dataset(eval_spec, config.data_dir, report, config.download) if u.text is not None]
    eval_utts = eval_utts[: config.eval_utterances]
    print(
        f"train: {len(train_utts)} utterances, {sum(u.duration for u in train_utts) / 3600:.2f} h; "
        f"eval ({eval_spec}): {len(eval_utts)} utterances"
    )
    if report.summary():
        print(f"data report:\n{report.summary()}")
    if not train_utts:
        sys.exit(f"no usable training utterances in {config.dataset}")
    run_dir.mkdir(parents=True, exist_ok=True)  # only now: a run with bad data leaves no folder behind
    (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")

    # Augmentation draws from default_rng([seed, epoch, index]): resumed runs see the same augmented audio.
    augmenter = Augmenter(AUGMENT_PRESETS[config.augment]) if config.augment != "none" else None
    dataset = SpeechDataset(train_utts, tokenizer, model_config.n_mels, augmenter=augmenter, seed=config.seed)
    sampler = BucketBatchSampler([u.duration for u in train_utts], config.batch_seconds, seed=config.seed)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
    )
    val_loader = eval_loader(eval_utts, tokenizer, model_config.n_mels, config.batch_seconds, config.num_workers)

    # ---- optimisation ------------------------------------------------------------------------
    # The schedule length comes from the epoch count only (not --max_steps), so a run cut short
    # and resumed follows the same learning-rate curve as an uninterrupted one.
    steps_per_epoch = math.ceil(len(sampler.batches(1)) / config.grad_accum)
    total_steps = config.epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, config.warmup))
    ctc_loss = torch.nn.CTCLoss(blank=tokenizer.blank, reduction="sum", zero_infinity=True)

    step, epoch, batch_in_epoch, skipped_steps, best_wer = 0, 0, 0, 0, math.inf
    load_errors: list[str] = []
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        scaler.load_state_dict(resume_state["scaler"])
        t = resume_state["training"]
        step, epoch, batch_in_epoch = t["step"], t["epoch"], t["batch_in_epoch"]
        skipped_steps, best_wer = t["skipped_steps"], t["best_wer"]
        set_rng_states(t["rng"])
        print(f"resumed from {config.resume}: epoch {epoch}, batch {batch_in_epoch}, step {step}")

    writer = make_writer(run_dir / "tensorboard", config.tensorboard)
    writer.add_text("config", "```\n" + json.dumps(dataclasses.asdict(config), indent=2) + "\n```", step)
    if augmenter is not None and step == 0:
        # Before/after panels: each augmentation alone on a few fixed training utterances, audio and spectrogram.
        for utt in train_utts[:LOGGED_UTTERANCES]:
            for name, audio in preview(load_audio(utt.audio_path), augmenter.config, config.seed):
                features = dataset.featurize(torch.from_numpy(audio))
                writer.add_audio(f"augment/{utt.id}/{name}", torch.from_numpy(audio)[None], 0, SAMPLE_RATE)
                writer.add_image(f"augment/{utt.id}/{name}", spectrogram_image(features), 0)
                if name == "original":
                    masked = preview_spec(features, augmenter.config, config.seed)
                    writer.add_image(f"augment/{utt.id}/specaugment", spectrogram_image(masked), 0)

    def save(name: str) -> None:
        state = model_state(model, tokenizer) | {
            "train_config": dataclasses.asdict(config),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "training": {
                "step": step,
                "epoch": epoch,
                "batch_in_epoch": batch_in_epoch,
                "skipped_steps": skipped_steps,
                "best_wer": best_wer,
                "rng": rng_states(),
            },
        }
        save_checkpoint(run_dir / name, state)

    beam_ids = {u.id for u in sorted(eval_utts, key=lambda u: u.id)[: config.eval_beam_utterances]}

    def evaluate() -> float:
        """Greedy WER on the eval set (+ beam WER on a subset); logs losses, rates, spectrograms, audio, a table."""
        total_loss, pairs, greedy, beam_inputs = 0.0, [], {}, {}
        texts = {u.id: u.text for u in eval_utts}
        for batch, log_probs, out_lens in transcribe(model, val_loader, device, use_amp):
            load_errors.extend(batch["errors"])
            if log_probs is None:
                continue
            loss = ctc_loss(log_probs.transpose(0, 1), batch["targets"], out_lens, batch["target_lengths"])
            total_loss += loss.item()
            for i, (utt_id, hyp) in enumerate(
                zip(batch["ids"], greedy_decode(log_probs, out_lens, tokenizer), strict=True)
            ):
                pairs.append((texts[utt_id], hyp))
                greedy[utt_id] = hyp
                if utt_id in beam_ids and config.eval_beam_size > 0:
                    beam_inputs[utt_id] = log_probs[i, : out_lens[i]]  # (T', V)
        model.train()
        scores = score(pairs)
        writer.add_scalar("val/loss", total_loss / max(1, len(pairs)), step)
        writer.add_scalar("val/wer", scores.wer, step)
        writer.add_scalar("val/cer", scores.cer, step)
        writer.add_scalar("val/wer_utt_mean", scores.wer_utt_mean, step)
        shown = sorted(greedy)[:LOGGED_UTTERANCES]
        beam = {}
        if beam_inputs:
            ids = sorted(beam_inputs)
            hyps = decode_batch([beam_inputs[i] for i in ids], tokenizer, beam_size=config.eval_beam_size)
            beam = {i: h[0].text for i, h in zip(ids, hyps, strict=True)}
            beam_scores = score([(texts[i], beam[i]) for i in ids])
            writer.add_scalar("val/wer_beam", beam_scores.wer, step)
            writer.add_scalar("val/wer_greedy_same_subset", score([(texts[i], greedy[i]) for i in ids]).wer, step)
        rows = [(i, texts[i], greedy[i]) for i in shown]
        writer.add_text("val/predictions", predictions_table(rows, {"beam": [beam.get(i, "") for i in shown]}), step)
        for utt in eval_utts[:LOGGED_UTTERANCES]:
            audio = torch.from_numpy(load_audio(utt.audio_path))
            writer.add_audio(f"val_audio/{utt.id}", audio[None], step, SAMPLE_RATE)
            writer.add_image(f"val_spectrogram/{utt.id}", spectrogram_image(dataset.featurize(audio)), step)
        beam_note = f"; beam {config.eval_beam_size} WER {100 * beam_scores.wer:.2f}% on {len(beam)}" if beam else ""
        tqdm.write(
            f"eval at step {step} (epoch {epoch}): loss {total_loss / max(1, len(pairs)):.3f}  {scores}{beam_note}"
        )
        return scores.wer

    # ---- the training loop ---------------------------------------------------------------------
    history: list[float] = []  # per-step training loss (the resume test compares these)
    model.train()
    stop = False
    while epoch < config.epochs and not stop:
        sampler.set_epoch(epoch, start=batch_in_epoch)
        dataset.epoch = epoch  # seeds this epoch's augmentations (workers copy the dataset per epoch)
        # disable=None: a live bar on a terminal, nothing in log files (the epoch summary line still prints)
        bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, dynamic_ncols=True, disable=None)
        n_batches = len(sampler.batches(epoch))
        pending = 0  # batches accumulated into the gradients since the last optimizer step
        seconds, tic = 0.0, time.perf_counter()
        for batch in bar:
            batch_in_epoch += 1
            for error in batch["errors"]:
                load_errors.append(error)
                tqdm.write(f"skipped unreadable file: {error}")
            if batch["features"] is None:
                continue
            features = batch["features"].to(device, non_blocking=True)  # (B, T, n_mels)
            lengths = batch["feature_lengths"].to(device)  # (B,)
            with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
                log_probs, out_lengths = model(features, lengths)  # (B, T', V), (B,)
            # CTCLoss wants (T', B, V); sum over the batch / B = mean per-utterance loss, in fp32.
            loss = ctc_loss(
                log_probs.transpose(0, 1).float(),
                batch["targets"].to(device),
                out_lengths,
                batch["target_lengths"].to(device),
            ) / len(batch["ids"])
            if not torch.isfinite(loss):
                # A NaN/inf loss would poison the weights: drop this batch's gradients and move on.
                skipped_steps += 1
                optimizer.zero_grad(set_to_none=True)
                pending = 0
                continue
            scaler.scale(loss / config.grad_accum).backward()
            pending += 1
            seconds += float(lengths.sum()) * 0.01  # 10 ms per feature frame
            if pending < config.grad_accum and batch_in_epoch < n_batches:
                continue  # keep accumulating; an epoch's last batch always ends with a step

            # ---- optimizer step ----
            scaler.unscale_(optimizer)  # so the clipping threshold applies to true gradients
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            if torch.isfinite(grad_norm):
                scaler.step(optimizer)
            else:
                skipped_steps += 1  # fp16 overflow or a bad batch: no update, weights untouched
            scaler.update()  # with fp16, an overflow also lowers the loss scale
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            pending = 0
            history.append(loss.item())

            rate = seconds / (time.perf_counter() - tic)
            bar.set_postfix(loss=f"{loss.item():.3f}", audio_s_per_s=f"{rate:.1f}", step=step)
            if step % config.log_every == 0:
                writer.add_scalar("train/loss", loss.item(), step)
                writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
                writer.add_scalar("train/grad_norm", grad_norm.item(), step)  # before clipping
                writer.add_scalar("train/skipped_steps", skipped_steps, step)
                writer.add_scalar("train/audio_seconds_per_second", rate, step)
            if step % config.checkpoint_every == 0:
                save("last.pt")
            if config.max_steps is not None and step >= config.max_steps:
                stop = True
                break
        bar.close()
        elapsed = time.perf_counter() - tic
        tqdm.write(
            f"epoch {epoch}: step {step}, last loss {history[-1] if history else float('nan'):.3f}, "
            f"{seconds / elapsed:.1f} audio-s/s, {elapsed:.0f} s"
        )
        if not stop:
            epoch, batch_in_epoch = epoch + 1, 0
            if epoch % config.eval_every == 0 or epoch == config.epochs:
                wer = evaluate()
                if wer < best_wer:
                    best_wer = wer
                    save("best.pt")
        save("last.pt")

    if stop:  # cut short by --max_steps: the last evaluation did not see the final weights
        wer = evaluate()
        if wer < best_wer or not (run_dir / "best.pt").exists():
            best_wer = min(best_wer, wer)
            save("best.pt")
    writer.close()
    print(f"done: {step} steps, {skipped_steps} skipped; best eval WER {100 * best_wer:.2f}%; checkpoints in {run_dir}")
    if load_errors:
        print(f"{len(load_errors)} files could not be read:\n" + "\n".join(f"  {e}" for e in load_errors))
    return {"run_dir": run_dir, "losses": history, "best_wer": best_wer, "step": step, "skipped_steps": skipped_steps}


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError, TorchaudioError) as e:  # bad input: the message says what to fix
        sys.exit(f"error: {e}")
