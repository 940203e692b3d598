"""TensorBoard logging for training: scalars, evaluation panels, augmentation previews; or nothing at all.

Tags: train/<scalar>, val/<scalar>, val/predictions (text), val/<utterance id>/audio and
val/<utterance id>/spectrogram, augment/<utterance id>/audio/<name> and
augment/<utterance id>/spectrogram/<name>. No tag is used by two kinds of summary:
TensorBoard files each tag under one tab, so an image and an audio clip sharing a tag
hide one another. Spectrograms are pictures from asr.spectrogram (mel dB, colour map).

`TrainLog` owns every panel the training loop shows, so train.py calls one
method per event. With logging off it wraps a `NullWriter`, and the loop has no
`if logging:` branches. On resume the writer purges events at or after the
resumed step, so a crash followed by --resume never shows a step twice.
"""

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import torch

from asr.audio import SAMPLE_RATE, load_audio
from asr.metrics import Scores, utterance_rates
from asr.spectrogram import mel_db, render_db

LOGGED_UTTERANCES = 3  # spectrograms, audio and predictions shown at each evaluation


class NullWriter:
    """Accepts every SummaryWriter call and does nothing."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def make_writer(log_dir: str | Path, enabled: bool, purge_step: int | None = None):
    """A SummaryWriter on `log_dir` (dropping events from `purge_step` on), or a NullWriter when disabled."""
    if not enabled:
        return NullWriter()
    from torch.utils.tensorboard import SummaryWriter  # imported late: tensorboard is slow to import

    return SummaryWriter(str(log_dir), purge_step=purge_step)


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """One evaluation: greedy scores on the eval set, beam scores on its first `eval_beam_utterances`."""

    loss: float  # mean CTC loss per utterance
    scores: Scores
    references: dict[str, str]  # id -> normalised reference
    greedy: dict[str, str]  # id -> greedy transcript
    beam: dict[str, str]  # id -> beam transcript (the beam subset only; empty when off)
    beam_scores: Scores | None
    greedy_on_beam_subset: Scores | None
    errors: list[str]  # "path: reason" of eval files that could not be read (scored as empty)

    def summary(self) -> str:
        beam = self.beam_scores
        note = f"; beam WER {100 * beam.wer:.2f}% on {beam.utterances}" if beam else ""
        return f"loss {self.loss:.3f}  {self.scores}{note}"


class TrainLog:
    """The TensorBoard panels of one training run."""

    def __init__(self, log_dir: str | Path, enabled: bool, purge_step: int | None = None) -> None:
        self.writer = make_writer(log_dir, enabled, purge_step)

    def config(self, settings: dict, step: int) -> None:
        self.writer.add_text("config", "```\n" + json.dumps(settings, indent=2) + "\n```", step)

    def train(self, step: int, scalars: dict[str, float]) -> None:
        """train/<name> for each scalar (loss = mean since the last write)."""
        for name, value in scalars.items():
            self.writer.add_scalar(f"train/{name}", value, step)

    def eval(self, result: EvalResult, step: int, utterances: list, featurize: Callable, prefix: str = "val") -> None:
        """<prefix>/* scalars (val: the whole eval set; a subset gets its own prefix, so its WER is never read as
        the set's), a predictions table, and audio + spectrogram of the first utterances."""
        for name, value in (("loss", result.loss), ("wer", result.scores.wer), ("cer", result.scores.cer),
                            ("wer_utt_mean", result.scores.wer_utt_mean)):  # fmt: skip
            self.writer.add_scalar(f"{prefix}/{name}", value, step)
        if result.beam_scores is not None:
            self.writer.add_scalar(f"{prefix}/wer_beam", result.beam_scores.wer, step)
            self.writer.add_scalar(f"{prefix}/wer_greedy_same_subset", result.greedy_on_beam_subset.wer, step)
        shown = sorted(result.greedy)[:LOGGED_UTTERANCES]
        rows = [(i, result.references[i], result.greedy[i]) for i in shown]
        table = predictions_table(rows, {"beam": [result.beam.get(i, "") for i in shown]})
        self.writer.add_text(f"{prefix}/predictions", table, step)
        for utt in utterances[:LOGGED_UTTERANCES]:  # one tag per summary kind: TensorBoard files a tag under one tab
            audio = load_audio(utt.audio_path)
            self.writer.add_audio(f"{prefix}/{utt.id}/audio", torch.from_numpy(audio)[None], step, SAMPLE_RATE)
            db = mel_db(featurize, audio)
            self.writer.add_image(
                f"{prefix}/{utt.id}/spectrogram", render_db(db, float(db.max())), step, dataformats="HWC"
            )

    def augmentations(self, utterances: list, augment_config, seed: int, featurize: Callable) -> None:
        """Before/after panels: each augmentation alone on a few fixed training utterances."""
        from asr.augment import preview_panels

        for utt in utterances[:LOGGED_UTTERANCES]:
            for name, audio, picture in preview_panels(load_audio(utt.audio_path), augment_config, seed, featurize):
                self.writer.add_image(f"augment/{utt.id}/spectrogram/{name}", picture, 0, dataformats="HWC")
                if audio is not None:
                    clip = torch.from_numpy(audio)[None]
                    self.writer.add_audio(f"augment/{utt.id}/audio/{name}", clip, 0, SAMPLE_RATE)

    def close(self) -> None:
        self.writer.close()


def predictions_table(rows: list[tuple[str, str, str]], extra: dict[str, list[str]] | None = None) -> str:
    """Markdown table of (id, target, prediction) rows with per-row CER and WER; `extra` adds columns."""
    extra = extra or {}
    header = ["id", "target", "prediction", "CER", "WER", *extra]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, (utt_id, target, prediction) in enumerate(rows):
        wer, cer = utterance_rates(target, prediction)
        cells = [utt_id, target, prediction, f"{100 * cer:.1f}%", f"{100 * wer:.1f}%"]
        cells += [values[i] for values in extra.values()]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)
