"""Features on the device: log-mel and SpecAugment computed inside the training step, for a whole batch.

A loader worker otherwise decodes, augments the waveform, computes an STFT and a mel filterbank and draws
SpecAugment masks for every utterance; on a machine with few cores (Colab: 2) that starves a GPU. With
`--device_features` (default on CUDA) the workers stop after the waveform augmentations and draw the SpecAugment
masks (cheap: the same draws from the same generator as the CPU path, applied to a tensor of ones); the step
pads the waveforms into one batch, computes the features on the device and applies the masks there.

The features equal the per-utterance CPU path (asr/audio.py LogMel) to float rounding: the STFT is centred
with zero padding, so frames near an utterance's end see zeros beyond it in both cases, and the per-utterance
normalisation runs over each utterance's own frames only (tested on a CPU).
"""

import functools

import numpy as np
import torch

from asr.audio import HOP_LENGTH, LOG_FLOOR, AudioError, LogMel, load_audio, num_frames
from asr.data import SpeechDataset


class BatchLogMel(torch.nn.Module):
    """(B, S) zero-padded waveforms + (B,) sample counts -> (B, T, n_mels) features, each utterance normalised
    over its own frames as LogMel does; frames past an utterance's end are 0."""

    def __init__(self, n_mels: int) -> None:
        super().__init__()
        self.mel = LogMel(n_mels).mel  # the same window, filterbank and padding as the CPU path

    @torch.no_grad()
    def forward(self, waves: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        logmel = torch.log(self.mel(waves) + LOG_FLOOR)  # (B, n_mels, T)
        frames = samples.to(waves.device) // HOP_LENGTH + 1  # (B,) as num_frames()
        valid = (torch.arange(logmel.shape[-1], device=waves.device)[None, :] < frames[:, None])[:, None, :]
        count = frames[:, None, None].to(logmel.dtype)  # (B, 1, 1)
        mean = (logmel * valid).sum(-1, keepdim=True) / count
        std = ((((logmel - mean) * valid) ** 2).sum(-1, keepdim=True) / count).sqrt()
        return (((logmel - mean) / (std + 1e-5)) * valid).transpose(1, 2).contiguous()  # (B, T, n_mels)


@functools.cache
def _featurizer(n_mels: int, device: torch.device) -> BatchLogMel:
    return BatchLogMel(n_mels).to(device)


def device_features(batch: dict, device: torch.device, n_mels: int) -> torch.Tensor:
    """The (B, T, n_mels) masked features of a `collate_waves` batch, computed on `device`."""
    waves = batch["features"].to(device, non_blocking=True)  # (B, S)
    features = _featurizer(n_mels, device)(waves, batch["samples"])
    if batch["keep"] is not None:
        features = features * batch["keep"].to(device, non_blocking=True)  # SpecAugment: masked cells are 0
    return features


class WaveDataset(SpeechDataset):
    """SpeechDataset whose items stop before the features: dict(wave (S,), keep (T, n_mels) bool or None,
    target, id). The augmentations draw exactly what SpeechDataset's draw, so both give the same batches."""

    def __getitem__(self, index: int) -> dict:
        utt = self.utterances[index]
        try:
            audio = load_audio(utt.audio_path)
        except AudioError as e:
            return {"id": utt.id, "error": str(e)}
        keep = None
        if self.augmenter is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            audio = self.augmenter.wave(audio, rng)
            ones = torch.ones(num_frames(len(audio)), self.featurize.mel.n_mels)
            keep = self.augmenter.spec(ones, rng) != 0  # the masks the CPU path would draw, as a (T, n_mels) map
        target = self.tokenizer.encode(utt.text) if utt.text is not None else []
        return {"id": utt.id, "wave": torch.from_numpy(audio), "keep": keep,
                "target": torch.tensor(target, dtype=torch.long)}  # fmt: skip


def collate_waves(items: list[dict]) -> dict:
    """Pad WaveDataset items into a batch: features = waveforms (B, S) zero-padded, samples (B,),
    feature_lengths (B,) in frames, keep (B, T, n_mels) or None, targets (B, S_max), target_lengths (B,)."""
    good = [it for it in items if "error" not in it]
    batch = {"errors": [it["error"] for it in items if "error" in it], "ids": [it["id"] for it in good]}
    if not good:
        return batch | {"features": None}
    samples = torch.tensor([len(it["wave"]) for it in good])
    frames = samples // HOP_LENGTH + 1
    target_lengths = torch.tensor([len(it["target"]) for it in good])
    waves = torch.zeros(len(good), int(samples.max()))
    targets = torch.zeros(len(good), max(1, int(target_lengths.max())), dtype=torch.long)
    keep = None
    if good[0]["keep"] is not None:
        keep = torch.ones(len(good), int(frames.max()), good[0]["keep"].shape[1], dtype=torch.bool)
    for i, it in enumerate(good):
        waves[i, : samples[i]] = it["wave"]
        targets[i, : target_lengths[i]] = it["target"]
        if keep is not None:
            keep[i, : frames[i]] = it["keep"]
    return batch | {"features": waves, "samples": samples, "keep": keep, "feature_lengths": frames,
                    "targets": targets, "target_lengths": target_lengths}  # fmt: skip
