"""Spectrogram pictures: what TensorBoard's panels and the augmentation previews show.

One renderer for all of them: log-mel power in dB on a fixed scale (the loudest
cell of a reference clip down to `DB_RANGE` below it, so gain, noise and masks
show as they are), a magma-like colour map from dark to bright, low frequencies
at the bottom, and each mel channel repeated to about `IMAGE_HEIGHT` pixels.
Normalised features (what the model sees, e.g. after SpecAugment) are shown
between `NORMALISED_RANGE` standard deviations.
"""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from asr.audio import LogMel

COLORMAP = np.array(  # dark to bright, magma-like: (position, r, g, b)
    [(0.0, 0, 0, 4), (0.25, 80, 18, 123), (0.5, 182, 54, 121), (0.75, 251, 136, 97), (1.0, 252, 253, 191)]
)
DB_RANGE = 80.0  # dB shown below the reference's loudest mel cell
NORMALISED_RANGE = (-2.5, 2.5)  # normalised log-mel values (mean 0, std 1 per channel) from black to white
IMAGE_HEIGHT = 240  # pixels: mel channels are repeated to about this height (80 channels: 3 rows each)
_POWER_FLOOR = 1e-10  # -100 dB: digital silence stays finite


def mel_db(logmel: LogMel, audio: np.ndarray) -> np.ndarray:
    """(samples,) float32 audio -> (frames, n_mels) mel power in dB (not normalised, so level changes show)."""
    power = logmel.mel(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)))  # (n_mels, frames)
    return (10.0 * torch.log10(power + _POWER_FLOOR)).T.numpy()


def render(values: np.ndarray, low: float, high: float, row_repeat: int | None = None) -> np.ndarray:
    """(frames, channels) values -> (channels * row_repeat, frames, 3) uint8 colour image: `low` and below
    black, `high` and above the brightest colour, the highest channel on the top row. `row_repeat` defaults to
    IMAGE_HEIGHT // channels (at least 1)."""
    if values.ndim != 2:
        raise ValueError(f"need (frames, channels) values, got shape {values.shape}")
    repeat = row_repeat if row_repeat is not None else max(1, IMAGE_HEIGHT // max(values.shape[1], 1))
    x = np.clip((values - low) / (high - low), 0.0, 1.0).T[::-1]  # (channels, frames), top row = highest channel
    rgb = np.stack([np.interp(x, COLORMAP[:, 0], COLORMAP[:, k]) for k in (1, 2, 3)], axis=-1)
    return np.repeat(rgb.round().astype(np.uint8), repeat, axis=0)


def render_db(db: np.ndarray, top: float) -> np.ndarray:
    """(frames, n_mels) dB -> colour image of the DB_RANGE below `top` (the reference clip's loudest cell)."""
    return render(db, top - DB_RANGE, top)


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write an (height, width, 3) uint8 image as an 8-bit RGB PNG."""
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3, (rgb.dtype, rgb.shape)
    Image.fromarray(rgb).save(path, format="PNG")
