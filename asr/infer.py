"""Inference: a checkpoint and audio in, log-probabilities and text out.

The front door for Python users is `load_model` and `transcribe` (re-exported by `asr`); inference.py and
training-time evaluation use the batched pieces underneath: `eval_loader` builds batches with the same
duration bucketing as training (shortest first, no shuffling, so padding stays small and results do not
depend on the order of the input list), `batch_log_probs` runs the network over them, and `decode_log_probs`
turns log-probabilities into text with the decoder a `DecodeConfig` names. `transcribe` is the same path for
one recording, so it gives the text inference.py writes for that file.
"""

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from asr.audio import LogMel, load_audio
from asr.config import BeamOptions, DecodeConfig, InferenceConfig
from asr.decode import DEFAULT_OPTIONS, decode_batch, greedy_labelling
from asr.lm import NGramLM, load_lm
from asr.onnx_runtime import OnnxRecognizer, load_onnx
from asr.tokenizers import Tokenizer

if TYPE_CHECKING:  # torch and the modules built on it are imported where a checkpoint is used: an exported
    import torch  # model (asr/onnx_runtime.py) transcribes through this module without torch

    from asr.data import Utterance
    from asr.model import DeepSpeech2

DECODERS = tuple(next(f for f in dataclasses.fields(DecodeConfig) if f.name == "decoder").metadata["choices"])


@dataclass(frozen=True, eq=False)  # compared by identity, like the network it holds
class Recognizer:
    """What `load_model` returns: the network (eval mode, on `device`), its tokenizer, where it came from, and
    whether it runs under fp16 autocast on CUDA (`amp`, as train.py's evaluation; see `uses_amp`)."""

    network: "DeepSpeech2"
    tokenizer: Tokenizer
    device: "torch.device"
    checkpoint: Path
    amp: bool = True


def load_model(
    path: str | Path | None = None, device: str = "auto", amp: bool = InferenceConfig.amp
) -> Recognizer | OnnxRecognizer:
    """Load a checkpoint written by train.py or fetched by download_weights.py (read with weights_only=True),
    or a model exported by export.py (a .onnx file: run on onnxruntime's CPU provider, without torch).

    path: the checkpoint; None takes the newest runs/*/best.pt, else the newest weights/*.pt.
    device: "cuda", "mps", "cpu", or "auto" (the first of those that is available).
    amp: fp16 autocast on CUDA, as train.py evaluates (no effect on other devices); False for fp32.
    """
    if path is not None and Path(path).suffix.lower() == ".onnx":
        return load_onnx(path)
    from asr.checkpoint import find_checkpoint, load_checkpoint, model_from_checkpoint
    from asr.model import pick_device

    path = find_checkpoint() if path is None else Path(path)
    network, tokenizer = model_from_checkpoint(load_checkpoint(path))
    torch_device = pick_device(device)
    return Recognizer(network.to(torch_device), tokenizer, torch_device, path, amp)


def transcribe(
    model: Recognizer | OnnxRecognizer,
    audio: str | Path | np.ndarray,
    decoder: str = DecodeConfig.decoder,
    beam_size: int | None = None,
    lm: str | Path | NGramLM | None = None,
    alpha: float | None = None,
    beta: float | None = None,
    options: BeamOptions = DEFAULT_OPTIONS,
) -> str:
    """One recording -> normalised text (lowercase words, single spaces).

    audio: a file soundfile reads (wav, flac, mp3, ogg; any rate and channel count), or 16 kHz mono float32
    samples of shape (samples,) such as `asr.load_audio` returns.
    decoder: "greedy" (best path), "beam" (prefix beam search keeping `beam_size` prefixes) or "beam_lm" (beam
    search fused with the word n-gram LM `lm`: score = log p_ctc + alpha * log p_lm + beta * words).
    lm: an ARPA file or KenLM binary, or a model from `asr.load_lm`; pass a loaded one when transcribing many
    recordings, since a path is read again on every call.
    options: every beam search option (`asr.config.BeamOptions`, inference.py's defaults); beam_size, alpha and
    beta, when given, replace its values.
    """
    given = {"beam_size": beam_size, "alpha": alpha, "beta": beta}
    options = dataclasses.replace(options, **{k: v for k, v in given.items() if v is not None})
    config = DecodeConfig(decoder=decoder, **dataclasses.asdict(options))
    _check_decoder(config.decoder, lm)
    if isinstance(lm, (str, Path)):
        lm = load_lm(lm)
    elif lm is not None and not isinstance(lm, NGramLM):
        raise TypeError(f"lm must be a path to an ARPA/KenLM file or a model from asr.load_lm, got {type(lm).__name__}")
    return decode_log_probs([_log_probs(model, _samples(audio))], model.tokenizer, config, lm)[0]


def decode_log_probs(
    log_probs: Sequence[np.ndarray], tokenizer: Tokenizer, config: DecodeConfig, lm: NGramLM | None = None
) -> list[str]:
    """(T_i, V) log-probabilities of each utterance -> its text, with `config.decoder` (`lm` only for beam_lm;
    and `config.beam_options()` for the beam search)."""
    return [text for text, _ in decode_labellings(log_probs, tokenizer, config, lm)]


def decode_labellings(
    log_probs: Sequence[np.ndarray], tokenizer: Tokenizer, config: DecodeConfig, lm: NGramLM | None = None
) -> list[tuple[str, tuple[int, ...]]]:
    """As `decode_log_probs`, with the labelling each text was read from (token ids, no blanks: the best path's
    for greedy, the hypothesis's for a beam), which is what `asr.decode.word_timestamps` aligns: for BPE it may
    split a word otherwise than `tokenizer.encode` would."""
    _check_decoder(config.decoder, lm)
    if config.decoder == "greedy":
        return [greedy_labelling(lp, tokenizer) for lp in log_probs]
    hyps = decode_batch(log_probs, tokenizer, config.beam_options(), lm, workers=config.decode_workers, nbest=1)
    return [(h[0].text, h[0].tokens) for h in hyps]


def eval_loader(
    utterances: "list[Utterance]",
    tokenizer: Tokenizer,
    n_mels: int,
    batch_seconds: float,
    num_workers: int = 0,
    pin_memory: bool = False,
    featurize: LogMel | None = None,
) -> "torch.utils.data.DataLoader":
    """Deterministic, unaugmented batches of `utterances`, shortest first, loaded by `num_workers` processes
    (0: in this one); pin_memory for a CUDA model; featurize: the model's `asr.model.feature_extractor` (default:
    per-utterance log-mel)."""
    import torch

    from asr.data import BucketBatchSampler, SpeechDataset, collate

    dataset = SpeechDataset(utterances, tokenizer, n_mels, featurize=featurize)
    sampler = BucketBatchSampler([u.duration for u in utterances], batch_seconds, sortagrad=True)
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers, pin_memory=pin_memory
    )


def uses_amp(device: "torch.device", amp: bool) -> bool:
    """The one precision policy of training, evaluation, inference.py and `transcribe`: fp16 autocast exactly
    when `amp` is set and the device is CUDA, fp32 everywhere else. Validation WERs and inference.py's WERs
    come from the same arithmetic only if both ask this function."""
    return amp and device.type == "cuda"


def autocast(device: "torch.device", amp: bool):
    """The autocast context of `uses_amp`: fp16 on CUDA with amp, a no-op otherwise."""
    import torch

    return torch.autocast("cuda", dtype=torch.float16, enabled=uses_amp(device, amp))


def batch_log_probs(
    model: "DeepSpeech2", loader: "torch.utils.data.DataLoader", device: "torch.device", amp: bool
) -> "Iterator[tuple[dict, torch.Tensor, torch.Tensor]]":
    """Yield (batch, log_probs (B, T', V) on CPU, output lengths (B,)), computed in the precision `uses_amp`
    picks; batches whose items all failed to load are yielded with log_probs None so the caller can report
    their errors."""
    import torch

    model.eval()
    for batch in loader:
        if batch["features"] is None:
            yield batch, None, None
            continue
        with torch.inference_mode(), autocast(device, amp):
            log_probs, lengths = model(batch["features"].to(device), batch["feature_lengths"].to(device))
        yield batch, log_probs.float().cpu(), lengths.cpu()


def _check_decoder(decoder: str, lm: object) -> None:
    """A known decoder name, and an LM exactly when the decoder is beam_lm."""
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}; got {decoder!r}")
    if decoder == "beam_lm" and lm is None:
        raise ValueError(
            "decoder='beam_lm' needs lm: an ARPA file (build one: python -m asr.lm build) or asr.load_lm(...)"
        )
    if decoder != "beam_lm" and lm is not None:
        raise ValueError(f"lm is only used by decoder='beam_lm', not {decoder!r}: pass decoder='beam_lm' or drop lm")


def _samples(audio: str | Path | np.ndarray) -> np.ndarray:
    """A file's samples, or a checked array: 16 kHz mono float32, shape (samples,)."""
    if isinstance(audio, (str, Path)):
        if not Path(audio).is_file():
            raise FileNotFoundError(f"{audio} does not exist: pass an audio file (wav, flac, mp3, ogg) or samples")
        return load_audio(audio)
    if not isinstance(audio, np.ndarray):
        raise TypeError(
            f"audio must be a file path or a numpy array of 16 kHz mono samples, got {type(audio).__name__}"
        )
    if audio.ndim != 1:
        raise ValueError(
            f"audio samples must be mono, shape (samples,); got shape {audio.shape}. Average the channels "
            "(audio.mean(axis=1) for (samples, channels)) or pass the file path"
        )
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(
            f"audio samples must be floats in [-1, 1], got {audio.dtype}: divide 16-bit PCM by 32768, "
            "or pass the file path"
        )
    if audio.size == 0 or not np.isfinite(audio).all():
        raise ValueError("audio samples must be a non-empty array of finite values")
    return np.ascontiguousarray(audio, dtype=np.float32)


def _log_probs(model: Recognizer | OnnxRecognizer, samples: np.ndarray) -> np.ndarray:
    """(samples,) 16 kHz audio -> (T', V) log-probabilities, computed as `batch_log_probs` computes a batch of one."""
    if isinstance(model, OnnxRecognizer):
        return model.log_probs([samples])[0]
    import torch

    model.network.eval()
    from asr.model import feature_extractor

    features = feature_extractor(model.network)(torch.from_numpy(samples))  # (T, n_mels)
    with torch.inference_mode(), autocast(model.device, model.amp):
        log_probs, lengths = model.network(features[None].to(model.device), torch.tensor([len(features)]))  # (1, T', V)
    return log_probs[0, : lengths[0]].float().cpu().numpy()
