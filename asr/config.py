"""Every hyperparameter and its default, as dataclasses, plus the argparse glue.

A flag exists for each field: `--batch_seconds` (or `--batch-seconds`), with
the field's `help` metadata and its default shown by `--help`. Scripts build
their parser with `add_arguments(parser, Config)` and read the values back with
`from_args(Config, args)`, so a default is written in exactly one place.
"""

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field


def _f(default, help: str, **kw):
    """A dataclass field whose help text becomes the flag's help."""
    return field(default=default, metadata={"help": help, **kw})


def _seconds_or_auto(text: str) -> float | str:
    """--batch_seconds: a number of seconds, or `auto` (sized for the device)."""
    return text if text == "auto" else float(text)


@dataclass(frozen=True)
class ModelConfig:
    """DeepSpeech2 architecture; travels inside every checkpoint. Each flag overrides one value of the --model
    preset (default: the preset's value)."""

    n_mels: int = _f(80, "log-mel channels per frame (the model's input width)")
    conv_channels: int = _f(32, "channels of both 2D convolutions")
    rnn_type: str = _f("gru", "recurrent cell", choices=["gru", "lstm"])
    rnn_layers: int = _f(3, "bidirectional recurrent layers")
    rnn_hidden: int = _f(512, "hidden units per direction; directions are summed")
    time_stride: int = _f(
        2,
        "time stride of the first convolution: 100 / stride output frames per second (2: 50/s, enough for"
        " characters; BPE pieces are fewer per second and tolerate 4)",
        choices=[2, 3, 4],
    )
    bidirectional: bool = _f(True, "bidirectional recurrent layers (--no-bidirectional: forward only, streamable)")
    lookahead: int = _f(
        0, "lookahead (row) convolution after the recurrent stack over this many future output frames (0: none)"
    )
    conv_future: int = _f(
        5, "future frames each convolution's 11-frame kernel sees along time (5: centred; 0-10; fewer: less latency)"
    )
    features: str = _f(
        "utterance",
        "log-mel normalisation: utterance (each utterance's own mean/variance: needs all of it) or global"
        " (training-set mean/variance estimated at the start of training, stored in the checkpoint: streamable)",
        choices=["utterance", "global"],
    )
    vocab_size: int = _f(29, "output tokens including the CTC blank (set from the tokenizer)", flag=False)


# Named presets. tiny: unit tests (seconds); small: CPU demos and the example set;
# base: GPU LibriSpeech training, ~38M parameters, close to the paper's 5-layer GRU; stream: see below.
MODEL_PRESETS = {
    "tiny": ModelConfig(n_mels=40, conv_channels=8, rnn_layers=1, rnn_hidden=64),
    "small": ModelConfig(conv_channels=32, rnn_layers=3, rnn_hidden=256),
    "base": ModelConfig(conv_channels=32, rnn_layers=5, rnn_hidden=800),
    # stream: small's size (3.22M parameters each) made streamable (asr/stream.py): forward-only GRUs, a lookahead
    # over 4 output frames (80 ms), convolutions that see 2 frames ahead (60 ms in all), global feature statistics
    "stream": ModelConfig(
        conv_channels=32,
        rnn_layers=3,
        rnn_hidden=384,
        bidirectional=False,
        lookahead=4,
        conv_future=2,
        features="global",
    ),  # fmt: skip
}


@dataclass(frozen=True)
class BeamOptions:
    """How the prefix beam search decodes (`asr.decode.beam_search`): the one place each option's default lives.
    Change one with `dataclasses.replace(options, beam_size=64)`. alpha, beta, unk_offset and merge_beams only
    matter with an LM."""

    beam_size: int = _f(32, "prefixes kept after every frame (beam, beam_lm)")
    alpha: float = _f(0.5, "LM weight: score = log p_ctc + alpha * log p_lm + beta * words (beam_lm)")
    beta: float = _f(1.0, "bonus per word, against the LM's preference for short outputs (beam_lm)")
    unk_offset: float = _f(-10.0, "extra log score of a word the LM does not know, charged as soon as it is certain")
    token_min_logp: float = _f(-5.0, "per frame, skip tokens with a lower log-probability (the best is always kept)")
    top_k: int | None = _f(None, "per frame, consider at most this many tokens (blank included)")
    cutoff_prob: float = _f(1.0, "per frame, consider the most probable tokens until their probabilities sum to this")
    beam_threshold: float = _f(10.0, "drop prefixes more than this many nats below the best one")
    blank_skip: float | None = _f(None, "treat frames whose blank probability is at least this as blank-only")
    merge_beams: bool = _f(
        True,
        "beam_lm: merge prefixes the LM can no longer tell apart (same LM state, partial word and last token), "
        "keeping the most probable, so the beam holds more distinct ones",
    )

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {self.beam_size}")
        if not self.beam_threshold >= 0.0:
            raise ValueError(
                f"beam_threshold is in nats below the best prefix and must be >= 0, got {self.beam_threshold}"
            )
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 (or None), got {self.top_k}")


@dataclass(frozen=True)
class DecodeConfig(BeamOptions):
    """How log-probabilities become text (inference.py): the decoder, its LM and workers, and the beam search's
    options (inherited from BeamOptions, so their defaults are written once; `beam_options()` returns them)."""

    decoder: str = _f(
        "greedy",
        "greedy: best path; beam: prefix beam search; beam_lm: beam search fused with the word n-gram LM --lm",
        choices=["greedy", "beam", "beam_lm"],
    )
    lm: str | None = _f(
        None, "word n-gram LM for beam_lm: ARPA (.arpa, .arpa.gz) or a KenLM binary (pip install kenlm)"
    )
    lm_backend: str = _f(
        "auto",
        "how --lm is read: kenlm (pip install kenlm), arpa (built in), or auto: kenlm for binaries and ARPA files"
        " of over a million n-grams when installed; without it, ARPA files of over 10 million n-grams are refused"
        " with a message (the built-in reader would take minutes and GiBs)",
        choices=["auto", "arpa", "kenlm"],
    )
    decode_workers: int = _f(1, "processes for beam search")
    timestamps: bool = _f(False, "also write <UtteranceID>.json: every word with its start and end in seconds")

    def beam_options(self) -> BeamOptions:
        """The beam search's options of this config."""
        return BeamOptions(**{f.name: getattr(self, f.name) for f in dataclasses.fields(BeamOptions)})


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentations (asr/augment.py), in the order they are applied; the defaults are the
    `default` preset. Each has a probability `<name>_p` and its ranges; ranges are drawn uniformly. Each flag
    overrides one value of the --augment preset (default: the preset's value)."""

    shift_p: float = _f(0.3, "probability of delaying the audio with leading zeros (never circular, drops no speech)")
    shift_max: float = _f(0.5, "longest delay in seconds, drawn from [0, shift_max]")
    speed_p: float = _f(0.3, "probability of speed perturbation by resampling (tempo and pitch change together)")
    speed_min: float = _f(0.9, "slowest speed factor (output length = input length / factor); factors step by 0.01")
    speed_max: float = _f(1.1, "fastest speed factor")
    pitch_p: float = _f(0.1, "probability of a pitch shift that keeps the duration (phase vocoder + resampling)")
    pitch_semitones: float = _f(2.0, "largest pitch shift up or down, in semitones (frequency ratio in 1 % steps)")
    reverb_p: float = _f(0.2, "probability of reverberation: FFT convolution with a room impulse response")
    reverb_rt60_min: float = _f(0.2, "shortest reverberation time of a synthetic room (60 dB decay), in seconds")
    reverb_rt60_max: float = _f(0.8, "longest reverberation time of a synthetic room, in seconds")
    reverb_drr_min: float = _f(3.0, "lowest direct-to-reverberant ratio of a synthetic room in dB (lower: more echo)")
    reverb_drr_max: float = _f(15.0, "highest direct-to-reverberant energy ratio of a synthetic room in dB")
    rir_dir: str | None = _f(None, "folder of recorded room impulse responses used instead of synthetic rooms")
    noise_p: float = _f(0.3, "probability of additive noise")
    noise_snr_min: float = _f(5.0, "lowest signal-to-noise ratio in dB (powers over the whole clip)")
    noise_snr_max: float = _f(30.0, "highest signal-to-noise ratio in dB")
    noise_colors: str = _f("white,pink,brown", "comma-separated colours of generated noise to draw from")
    noise_dir: str | None = _f(None, "folder of noise recordings (wav/flac/ogg/mp3) used instead of generated noise")
    telephone_p: float = _f(0.05, "probability of a telephone channel: band-pass, then 8-bit mu-law")
    telephone_low_hz: float = _f(300.0, "lower edge of the telephone band in Hz")
    telephone_high_hz: float = _f(3400.0, "upper edge of the telephone band in Hz")
    telephone_mulaw: bool = _f(True, "round-trip the telephone channel through 8-bit mu-law (G.711) quantisation")
    gain_p: float = _f(0.3, "probability of a gain change (a result louder than full scale is scaled back to peak 1)")
    gain_db_min: float = _f(-6.0, "lowest gain in dB")
    gain_db_max: float = _f(6.0, "highest gain in dB")
    spec_p: float = _f(1.0, "probability of SpecAugment masks on an utterance's features")
    freq_masks: int = _f(1, "frequency masks per utterance")
    freq_mask_frac: float = _f(0.15, "widest frequency mask as a fraction of the mel channels")
    time_masks_per_s: float = _f(0.25, "time masks per second of audio (the count adapts to the utterance's length)")
    time_masks_max: int = _f(5, "at most this many time masks per utterance")
    time_mask_width: int = _f(20, "widest time mask in frames (10 ms each)")
    time_mask_frac: float = _f(0.05, "widest time mask as a fraction of the utterance's frames (spares short clips)")


def _all_off(config: AugmentConfig) -> AugmentConfig:
    """`config` with the probability of every augmentation (each `*_p` field) at 0; the ranges stay."""
    return dataclasses.replace(config, **{f.name: 0.0 for f in dataclasses.fields(config) if f.name.endswith("_p")})


# --augment presets. default: moderate, aimed at noisy/reverberant test sets (LibriSpeech test-other)
# without stopping a small model from learning; light: milder, for tiny data or short runs;
# strong: heavier, for big models and long runs; none: everything off (the ranges stay for previews).
AUGMENT_PRESETS = {
    "none": _all_off(AugmentConfig()),
    "light": AugmentConfig(
        shift_p=0.3,
        shift_max=0.25,
        speed_p=0.3,
        speed_min=0.95,
        speed_max=1.05,
        pitch_p=0.0,
        reverb_p=0.1,
        reverb_drr_min=6.0,
        noise_p=0.2,
        noise_snr_min=15.0,
        telephone_p=0.0,
        gain_p=0.3,
        freq_masks=1,
        time_masks_per_s=0.25,
        time_masks_max=5,
        time_mask_width=20,
    ),
    "default": AugmentConfig(),
    # LibriSpeech recipe: the default wave augmentations with SpecAugment's LD policy (Park et al. 2019,
    # Table 1: 2 frequency masks F=27 of 80 channels, 2 time masks T=100 frames, p=1.0) for a 38M model
    # without dropout; the default's masks (one of <= 12 channels, <= 5 of 20 frames) are far weaker.
    "librispeech": AugmentConfig(
        freq_masks=2,
        freq_mask_frac=27 / 80,
        time_masks_per_s=10.0,  # with time_masks_max: 2 masks on every utterance longer than 0.2 s
        time_masks_max=2,
        time_mask_width=100,
        time_mask_frac=1.0,  # LD's p = 1.0: a mask may span the whole (short) utterance
    ),
    "strong": AugmentConfig(
        shift_p=0.5,
        shift_max=1.0,
        speed_p=0.7,
        speed_min=0.85,
        speed_max=1.15,
        pitch_p=0.3,
        pitch_semitones=3.0,
        reverb_p=0.5,
        reverb_rt60_max=1.2,
        reverb_drr_min=0.0,
        noise_p=0.6,
        noise_snr_min=0.0,
        noise_snr_max=25.0,
        telephone_p=0.2,
        gain_p=0.5,
        gain_db_min=-10.0,
        gain_db_max=10.0,
        freq_masks=2,
        freq_mask_frac=0.2,
        time_masks_per_s=1.0,
        time_masks_max=20,
        time_mask_width=40,
    ),
}


@dataclass(frozen=True)
class TrainConfig:
    """One training run; printed at start and saved as runs/<run_name>/config.json."""

    dataset: str = _f(
        "data/example",
        "training data: a LibriSpeech split (train-clean-100, ...), a CustomDir path, or several joined with '+'",
    )
    eval_dataset: str | None = _f(
        None, "evaluation data, same syntax; default: dev-clean for LibriSpeech, else the training set itself"
    )
    librispeech_dir: str = _f("data", "folder that holds (or receives) LibriSpeech/<split>/")
    download: bool = _f(True, "download missing LibriSpeech splits into librispeech_dir (--no_download forbids it)")
    model: str = _f(
        "small", "architecture preset; ModelConfig flags override single values", choices=list(MODEL_PRESETS)
    )
    run_name: str | None = _f(None, "folder under runs_dir for this run; default: the (first) dataset's name")
    runs_dir: str = _f("runs", "where run folders (checkpoints, TensorBoard logs, config.json) go")
    resume: str | None = _f(
        None, "continue exactly from this checkpoint (runs/<name>/last.pt); the run writes into that file's folder"
    )
    allow_data_change: bool = _f(
        False, "--resume: continue although the training set's utterances (count or ids) changed since the run began"
    )
    data_utterances: int | None = _f(None, "training utterances read when the run began (train.py)", flag=False)
    data_ids_sha256: str | None = _f(None, "SHA-256 of their sorted ids, one per line (train.py)", flag=False)
    init_from: str | None = _f(
        None,
        "fine-tune: a new run starting from this checkpoint's weights, architecture and tokenizer (optimizer,"
        " schedule, counters and data are new; --lr, --warmup, --freeze then default to asr/config.py"
        " FINE_TUNING); e.g. weights/<file>.pt from download_weights.py --url",
    )
    init_from_sha256: str | None = _f(None, "SHA-256 of the --init_from file (recorded by train.py)", flag=False)
    freeze: str = _f(
        "none",
        "fine-tuning: parameters that get no updates for --freeze_epochs epochs (conv: the convolutional"
        " layers; encoder: all but the output layer)",
        choices=["none", "conv", "encoder"],
    )
    freeze_epochs: int = _f(0, "epochs during which --freeze applies")
    tokenizer: str = _f(
        "char",
        "output tokens: char (blank, space, apostrophe, a-z) or bpe (SentencePiece BPE pieces trained on the"
        " training transcripts, cached as runs/<run_name>/tokenizer.model and stored in every checkpoint)",
        choices=["char", "bpe"],
    )
    bpe_vocab_size: int = _f(
        256, "--tokenizer bpe: SentencePiece pieces; the CTC blank is added on top (the output layer has N + 1 units)"
    )
    augment: str = _f(
        "none",
        "training augmentation preset (AUGMENT_PRESETS; `default` for real training data; none keeps the example"
        " run an overfitting check); AugmentConfig flags override single values",
        choices=list(AUGMENT_PRESETS),
    )
    epochs: int = _f(50, "passes over the training set")
    max_steps: int | None = _f(None, "stop after this many optimizer steps (for smoke tests)")
    max_minutes: float | None = _f(
        None,
        "stop after this many minutes of training steps in this process (evaluation and start-up not counted), for"
        " equal-time comparisons. The learning-rate schedule still spans --epochs: choose them to fit the budget",
    )
    batch_seconds: float | None = _f(
        20.0,
        "audio seconds per batch (padding excluded), batches built by duration; auto: the largest that fits the"
        " device, probed on CUDA keeping 15 percent of memory free, 60 on a CPU (asr/batching.py; the LibriSpeech"
        " recipe's)",
        parse=_seconds_or_auto,
    )
    grad_accum: int = _f(1, "batches whose gradients are summed before one optimizer step")
    max_duration: float = _f(20.0, "skip (and count) training utterances longer than this, in seconds")
    lr: float = _f(2e-3, "peak learning rate of the one-cycle schedule")
    warmup: float = _f(0.1, "fraction of all steps spent warming the learning rate up from lr/25")
    weight_decay: float = _f(1e-2, "AdamW weight decay")
    grad_clip: float = _f(5.0, "clip the global gradient norm to this value")
    schedule: str = _f(
        "onecycle",
        "learning-rate schedule after the warmup: onecycle (cosine decay to lr/100 over --epochs) or exponential"
        " (x --lr_decay after every epoch, as the DeepSpeech2 reimplementations)",
        choices=["onecycle", "exponential"],
    )
    lr_decay: float = _f(0.93, "--schedule exponential: learning-rate factor per epoch")
    lr_reference_batch: float | None = _f(
        None,
        "global batch (audio seconds per update, all processes) at which --lr was tuned; a run whose global batch"
        " differs gets lr x sqrt(global / reference), unless --lr is given (the recipe sets it; None: off)",
    )
    seed: int = _f(0, "seed for weights, batch order and augmentation")
    device: str = _f("auto", "cuda, mps, cpu, or auto (the first available in that order)")
    amp: bool = _f(
        True, "mixed precision on CUDA (fp16 with dynamic loss scaling); also used by evaluation and inference.py"
    )
    deterministic: bool = _f(
        False,
        "deterministic algorithms only (torch.use_deterministic_algorithms, cuDNN deterministic, no benchmark mode,"
        " CUBLAS_WORKSPACE_CONFIG on CUDA). CPU runs are reproducible bit for bit without it; on CUDA it is slower"
        " and CTC's backward, which has no deterministic CUDA kernel, stays nondeterministic (torch warns)",
    )
    cudnn_benchmark: bool = _f(
        False,
        "let cuDNN time its algorithms for every new input shape and keep the fastest; pays only when shapes"
        " repeat, and batches bucketed by duration rarely do (about one new (batch, frames) shape per batch)",
    )
    dist_timeout: float = _f(
        60.0,
        "minutes a torchrun process waits for the others at a collective before the run is aborted (rank 0 alone"
        " evaluates and writes checkpoints meanwhile; NCCL's default is 10)",
    )
    device_features: bool | None = _f(
        None,
        "compute log-mel features and SpecAugment inside the training step on the model's device; loader workers"
        " only decode and augment waveforms (asr/features.py). Default: on with CUDA, off elsewhere",
    )
    num_workers: int | None = _f(
        0,
        "DataLoader worker processes for loading and featurising audio; the LibriSpeech recipe uses one per spare"
        " CPU core, up to 8",
    )
    log_every: int = _f(10, "optimizer steps between TensorBoard scalar writes")
    checkpoint_every: int = _f(500, "optimizer steps between last.pt writes (also written at each epoch end)")
    eval_every: int = _f(5, "epochs between evaluations (and at the last epoch)")
    eval_utterances: int | None = _f(None, "evaluate on at most this many utterances (the first in id order)")
    eval_beam_size: int = _f(8, "also report beam-search WER (no LM) at each evaluation with this beam; 0: off")
    eval_beam_utterances: int = _f(200, "beam-search WER uses this many eval utterances (the first in id order)")
    tensorboard: bool = _f(True, "write TensorBoard logs to the run folder")


# Defaults per kind of training data: a recipe replaces the TrainConfig defaults of the fields it names, and
# flags given on the command line override both (train.py prints the result and saves it as config.json).
# TrainConfig's own defaults are the "folder" recipe: `python train.py` is the overfitting check on the
# bundled example set, on a CPU. None means "sized for the machine" (train.py resolves it; see below).
RECIPES: dict[str, dict] = {
    "folder": {},
    "librispeech": {
        "model": "base",  # the paper-like 38M-parameter model (5 bidirectional GRU layers of 800)
        "augment": "librispeech",  # default wave augmentations + SpecAugment LD
        "lr": 5e-4,
        "schedule": "exponential",
        "lr_decay": 0.93,
        "warmup": 0.02,
        "weight_decay": 1e-5,
        "grad_clip": 5.0,
        "lr_reference_batch": 800.0,
        "batch_seconds": "auto",  # asr/batching.py: probed on CUDA
        "num_workers": None,  # one per spare CPU core, up to 8
        "eval_every": 1,  # all of dev-clean after every epoch (--eval_utterances N: a subset, logged as such)
    },
}
# Where each LibriSpeech recipe value comes from (train.py prints them beside the values). PaddleSpeech =
# PaddlePaddle/PaddleSpeech examples/librispeech/asr0/conf/deepspeech2.yaml (commit 2ad3a819, DS2 with 5
# bidirectional LSTM layers, Adam, batch_size 64); deepspeech.pytorch = SeanNaren/deepspeech.pytorch
# deepspeech_pytorch/configs/train_config.py (AdamW, batch_size 64).
RECIPE_SOURCES: dict[str, dict[str, str]] = {
    "folder": {},
    "librispeech": {
        "model": "DS2 paper (Amodei et al. 2016) sec. 3: 2 convolutions + bidirectional GRUs; 5 x 800 here",
        "augment": "SpecAugment LD policy (Park et al. 2019, Table 1) on this project's default wave augmentations",
        "lr": "PaddleSpeech lr 5.0e-4 (deepspeech.pytorch: 1.5e-4); AdamW as deepspeech.pytorch",
        "schedule": "PaddleSpeech and deepspeech.pytorch: the LR decays by a factor after every epoch",
        "lr_decay": "PaddleSpeech lr_decay 0.93 per epoch (deepspeech.pytorch: learning_anneal 0.99)",
        "warmup": "this project: 2% of the steps from lr/25 (the DS2 configs have none; fp16 AMP's first steps)",
        "weight_decay": "deepspeech.pytorch weight_decay 1e-5 with AdamW (PaddleSpeech: 1e-6); none on norms/biases",
        "grad_clip": "PaddleSpeech global_grad_clip 5.0",
        "lr_reference_batch": "PaddleSpeech batch_size 64 utterances x ~12.5 s mean LibriSpeech duration ~ 800 s",
        "batch_seconds": "this machine: --batch_seconds auto (CUDA: probed, 15% memory headroom; CPU: 60 s)",
        "num_workers": "this machine: one loader per spare CPU core, up to 8",
        "eval_every": "this project: all of dev-clean (2703 utterances) after every epoch, as published dev WERs",
    },
}
# A fine-tuning run (--init_from) starts from these where its dataset's recipe sets nothing; flags override both.
# Measured on LJSpeech's 24 utterances from the mixed-corpus checkpoint and checked on AN4: learning rates from
# 2e-4 to 2e-3 and conv or encoder freezing all ended within 4 CER points of each other (10 test utterances);
# these are the best measured (docs/pretraining.md#fine-tuning-defaults-learning-rate-and-freeze).
# Nothing is frozen: a freeze counted in epochs would outlast a short run.
FINE_TUNING: dict = {"lr": 2e-3, "warmup": 0.05, "freeze": "none", "freeze_epochs": 0}
FINE_TUNING_SOURCES: dict[str, str] = {key: "docs/pretraining.md: LJSpeech fine-tuning sweep" for key in FINE_TUNING}
# --batch_seconds auto off CUDA (on CUDA it is probed, asr/batching.py): CPUs are compute-bound, so a bigger
# batch buys nothing there.
DEVICE_BATCH_SECONDS = {"mps": 100.0, "cpu": 60.0}


@dataclass(frozen=True)
class InferenceConfig:
    """One inference.py invocation."""

    checkpoint: str | None = _f(
        None,
        "model checkpoint; default: the newest runs/*/best.pt (train.py), else the newest weights/*.pt"
        " (download_weights.py)",
    )
    data_dir: str | None = _f(None, "a CustomDir folder: audio/*.{wav,flac,mp3,ogg} + optional transcriptions/")
    dataset: str | None = _f(None, "instead of --data_dir: a LibriSpeech split such as test-clean")
    librispeech_dir: str = _f("data", "folder that holds (or receives) LibriSpeech/<split>/ for --dataset")
    download: bool = _f(True, "download a missing LibriSpeech split (--no_download forbids it)")
    out: str = _f("preds", "folder for <UtteranceID>.txt predictions and metrics.json")
    save_logits: str | None = _f(
        None, "also keep each utterance's log-probs as DIR/<id>.npy (+ references) for --logits"
    )
    logits: str | None = _f(None, "decode log-probs saved by --save_logits instead of running a model")
    grid_alphas: str | None = _f(None, "comma-separated LM weights: grid-search alpha x beta (needs --lm, references)")
    grid_betas: str = _f("0,0.5,1,1.5,2,3", "comma-separated word bonuses for --grid_alphas")
    batch_seconds: float = _f(200.0, "audio seconds per inference batch")
    device: str = _f("auto", "cuda, mps, cpu, or auto")
    amp: bool = _f(
        True, "fp16 autocast on CUDA, the precision train.py evaluates in (--no-amp: fp32); no effect on a CPU"
    )
    stream: bool = _f(
        False,
        "transcribe each file as a stream (asr/stream.py; a streaming checkpoint, on the CPU): fed --chunk_ms at a"
        " time as if live, without waiting; prints real-time factor, compute per chunk and the final's latency",
    )
    chunk_ms: float = _f(320.0, "--stream: audio per chunk, in ms")
    verbose: bool = _f(False, "--stream: print the partial text after every chunk")
    num_workers: int | None = _f(
        None,
        "DataLoader worker processes that load and featurise audio while the model runs; default: with a CUDA"
        " model one per spare CPU core, up to 8 (as train.py's LibriSpeech recipe), on a CPU none (the model's"
        " threads use every core there, and loading is a small share of the time)",
    )
    onnx: str | None = _f(
        None, "instead of --checkpoint: a model exported by export.py, run on onnxruntime (CPU) without PyTorch"
    )


@dataclass(frozen=True)
class MetricsConfig:
    """One calc_metrics.py invocation."""

    transcriptions_dir: str | None = _f(
        None, "references <UtteranceID>.txt; default: the folder inference.py recorded in PREDICTIONS/inference.json"
    )
    predictions_dir: str = _f("preds", "predictions written by inference.py")
    allow_missing: bool = _f(False, "score references that have no prediction as empty predictions instead of failing")
    worst: int = _f(5, "show this many worst utterances")
    json: bool = _f(False, "print the result as JSON")


@dataclass(frozen=True)
class WeightsConfig:
    """One download_weights.py invocation."""

    resources: tuple[str, ...] = _f((), "names listed below, or 'all'", positional=True)
    out: str = _f("weights", "folder for the files (inference.py looks for checkpoints in weights/)")
    url: str | None = _f(
        None,
        "a model checkpoint: https://..., a Hugging Face owner/repo/path/to/file (hf://owner/repo@rev/... for a "
        "revision), or a Google Drive share link",
    )
    sha256: str | None = _f(None, "expected SHA-256 of the --url file (strongly recommended)")
    name: str | None = _f(None, "file name for the --url download; default: the last part of the URL")
    retries: int = _f(6, "retries per address after a dropped connection")
    timeout: float = _f(
        60.0,
        "seconds: a transfer that receives fewer than 1 KiB within this long is stalled; it is cut off and retried "
        "(the next run resumes it)",
    )


@dataclass(frozen=True)
class ExportConfig:
    """One export.py invocation."""

    checkpoint: str | None = _f(None, "checkpoint to export; default: the newest runs/*/best.pt, else weights/*.pt")
    out: str = _f("model.onnx", "the ONNX file to write (only after it passes verification)")
    quantize: str = _f(
        "none",
        "int8: Conv and MatMul weights and activations in int8 (onnxruntime static quantisation, ranges calibrated"
        " on --data_dir); int8-dynamic: activation ranges per batch at run time (slower on a CPU); judged by WER/CER",
        choices=["none", "int8", "int8-dynamic"],
    )
    data_dir: str = _f(
        "data/example", "recordings (audio/ + transcriptions/) whose greedy transcripts must match PyTorch's"
    )
    streaming: bool = _f(
        False,
        "export a streaming model (--model stream) as a step graph with its states as inputs/outputs, for asr.Stream"
        " on onnxruntime (asr/onnx_stream.py)",
    )


# A resumed run continues its batches, its schedule and its weights: these cannot change with --resume
# (nor can any ModelConfig field). Everything else (lr, epochs, evaluation, augmentation, ...) can, and takes effect.
FIXED_ON_RESUME = (
    "dataset",
    "model",
    "init_from",
    "seed",
    "batch_seconds",
    "grad_accum",
    "max_duration",
    "tokenizer",
    "bpe_vocab_size",
)


@dataclass(frozen=True)
class Settings:
    """Everything a training run is configured by; saved as config.json and inside every checkpoint."""

    train: TrainConfig
    model: ModelConfig
    augment: AugmentConfig

    def as_dict(self) -> dict:
        """config.json: the TrainConfig fields, plus the resolved architecture and augmentation."""
        return dataclasses.asdict(self.train) | {
            "model_config": dataclasses.asdict(self.model),
            "augment_config": dataclasses.asdict(self.augment),
        }


def given_flags(argv: list[str] | None, *classes: type) -> dict[str, dict]:
    """{class name: {field: value}} for the flags actually given on the command line."""
    args = vars(parser_for(*classes, defaults=False).parse_args(argv))
    return {cls.__name__: {f.name: args[f.name] for f in dataclasses.fields(cls) if f.name in args} for cls in classes}


def flag_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of `cls` that are command-line flags."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("flag", True)]


def add_arguments(parser: argparse.ArgumentParser, cls: type, defaults: bool = True) -> None:
    """Add one flag per field of dataclass `cls` (both --snake_case and --kebab-case spellings).

    With defaults=False, unset flags are absent from the parsed namespace (to see what was given)."""
    group = parser.add_argument_group(cls.__name__, cls.__doc__)
    for f in flag_fields(cls):
        kind = _base_type(f.type)
        if f.metadata.get("positional"):  # a list of words before the flags
            group.add_argument(f.name, nargs="*", default=list(f.default), metavar=f.name[:-1].upper(),
                               help=f.metadata["help"])  # fmt: skip
            continue
        names = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        kw = {
            "default": f.default if defaults else argparse.SUPPRESS,
            "help": f.metadata.get("help", "").replace("%", "%%"),  # argparse %-formats help texts
            "dest": f.name,
        }
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if kind is bool:
            group.add_argument(*names, action=argparse.BooleanOptionalAction, **kw)
            no_default = argparse.SUPPRESS if not defaults else f.default
            group.add_argument(
                f"--no_{f.name}", dest=f.name, action="store_false", default=no_default, help=argparse.SUPPRESS
            )
        else:
            group.add_argument(
                *names, type=f.metadata.get("parse", kind), metavar=None if "choices" in kw else f.name.upper(), **kw
            )


def from_args(cls: type, args: argparse.Namespace):
    """Build dataclass `cls` from the parsed flags that belong to it."""
    return cls(**{f.name: getattr(args, f.name) for f in flag_fields(cls)})


def parser_for(
    *classes: type, description: str = "", epilog: str = "", defaults: bool = True, overrides: tuple[type, ...] = ()
) -> argparse.ArgumentParser:
    """A parser with the flags of `classes`, showing defaults in --help; the flags of `overrides` have no
    defaults of their own (they change single values of a preset, e.g. ModelConfig under --model)."""
    parser = argparse.ArgumentParser(description=description, epilog=epilog, formatter_class=_HelpFormatter)
    for cls in classes:
        add_arguments(parser, cls, defaults)
    for cls in overrides:
        add_arguments(parser, cls, defaults=False)
    return parser


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each flag's help; the script docstring printed as written."""


def _base_type(annotation) -> type:
    """`int | None` -> int; `str` -> str."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        (kind,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return kind
    return annotation
