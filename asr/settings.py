"""A run's settings, resolved from its flags: the dataset's recipe, then the --model and --augment presets, then
single flags; or, with --resume, the run's saved settings with the flags that may change; then what a recipe
leaves to the machine (the batch size for the device, the loader workers) and the learning rate scaled to the
global batch. train.py calls `resolve_config` first and prints the result with `print_recipe`; the values and
their meanings live in asr/config.py (RECIPES, presets, dataclasses), this module only combines them.
"""

import os
from dataclasses import replace

import torch

from asr.batching import auto_batch_seconds
from asr.checkpoint import load_checkpoint
from asr.config import (
    AUGMENT_PRESETS,
    FINE_TUNING,
    FINE_TUNING_SOURCES,
    FIXED_ON_RESUME,
    MODEL_PRESETS,
    RECIPE_SOURCES,
    RECIPES,
    AugmentConfig,
    ModelConfig,
    Settings,
    TrainConfig,
    given_flags,
    parser_for,
)
from asr.data import spare_cpu_workers, uses_librispeech
from asr.download import file_sha256
from asr.model import pick_device
from asr.optim import scaled_lr
from asr.resume import grad_accum_for_world, world_size
from asr.runs import resume_folder
from asr.tokenizers import CharTokenizer, Tokenizer, tokenizer_from_state


def recipe_name(dataset: str) -> str:
    """The RECIPES entry for a dataset spec: any LibriSpeech part makes it a LibriSpeech run."""
    return "librispeech" if uses_librispeech(dataset) else "folder"


def resolve_config(argv: list[str] | None, description: str | None = None) -> tuple[Settings, dict | None]:
    """Flags -> Settings. A new run starts from its dataset's recipe (RECIPES), then the --model and --augment
    presets, then single ModelConfig/AugmentConfig flags. With --resume the run's saved settings are the base
    (--max_steps and --max_minutes are never inherited); flags that would change its batches or architecture are
    refused, all others take effect. Values a recipe leaves to the machine are then sized for it. `description`
    is the --help text (train.py's docstring)."""
    parser_for(TrainConfig, description=description, overrides=(ModelConfig, AugmentConfig)).parse_args(argv)  # --help
    given = given_flags(argv, TrainConfig, ModelConfig, AugmentConfig)
    train, arch, aug = given["TrainConfig"], given["ModelConfig"], given["AugmentConfig"]
    if "resume" not in train:
        defaults, _ = recipe_defaults(train.get("dataset", TrainConfig.dataset), "init_from" in train)
        config = TrainConfig(**(defaults | train))
        config, model = architecture(config, train, arch)
        augment = replace(AUGMENT_PRESETS[config.augment], **aug)
        return Settings(batch_rule(size_for_machine(config, model), given_lr="lr" in train), model, augment), None
    state = load_checkpoint(train["resume"])
    if "train_config" not in state:
        raise ValueError(f"{train['resume']} holds no training state (it is an inference-only checkpoint)")
    saved = replace(TrainConfig(**state["train_config"]), max_steps=None, max_minutes=None, allow_data_change=False)
    model = ModelConfig(**state["model_config"])
    fixed = [(f"--{k}", v, getattr(saved, k)) for k, v in train.items() if k in FIXED_ON_RESUME]
    fixed += [(f"--{k}", v, getattr(model, k)) for k, v in arch.items()]
    changed = [f"{flag} {value} (the run's is {old})" for flag, value, old in fixed if value != old]
    if changed:
        raise ValueError(
            f"a resumed run keeps its data, batches, seed and architecture: {', '.join(changed)}. "
            "Start a new run with --run_name NAME to change them"
        )
    runs_dir, run_name = resume_folder(train["resume"], train)  # never where the file's saved config points
    config = replace(saved, **train, runs_dir=runs_dir, run_name=run_name)
    # another process count keeps the global batches of each update by changing grad_accum (asr/resume.py)
    saved_world = state["training"].get("world_size", 1)
    config = replace(config, grad_accum=grad_accum_for_world(train["resume"], saved_world, saved.grad_accum,
                                                             world_size()))  # fmt: skip
    base = AUGMENT_PRESETS[config.augment] if "augment" in train else AugmentConfig(**state["augment_config"])
    return Settings(size_for_machine(config), model, replace(base, **aug)), state


def check_limits(config: TrainConfig) -> None:
    """Refuse a --max_steps or --max_minutes that would stop the run before its first step."""
    if config.max_steps is not None and config.max_steps < 1:
        raise ValueError(f"--max_steps must be at least 1, got {config.max_steps}")
    if config.max_minutes is not None and not config.max_minutes > 0:
        raise ValueError(f"--max_minutes must be above 0, got {config.max_minutes}")


def architecture(config: TrainConfig, train: dict, arch: dict) -> tuple[TrainConfig, ModelConfig]:
    """The --model preset with ModelConfig flags on top and an output per token; or, fine-tuning, the --init_from
    checkpoint's architecture and tokenizer, which flags given on the command line must not contradict (recipe
    defaults never do)."""
    if config.init_from is None:
        tokens = len(CharTokenizer()) if config.tokenizer == "char" else config.bpe_vocab_size + 1  # + the blank
        return config, replace(MODEL_PRESETS[config.model], vocab_size=tokens, **arch)
    state = load_checkpoint(config.init_from)
    source = ModelConfig(**state["model_config"])
    clashes = [
        f"--{k} {v} (the checkpoint's is {getattr(source, k)})" for k, v in arch.items() if v != getattr(source, k)
    ]
    preset = next((n for n, c in MODEL_PRESETS.items() if replace(c, vocab_size=source.vocab_size) == source), None)
    if "model" in train and train["model"] != preset:
        clashes.append(f"--model {train['model']} (the checkpoint's is {preset or 'no preset'})")
    kind, pieces = tokenizer_flags(tokenizer_from_state(state["tokenizer"]))
    if "tokenizer" in train and train["tokenizer"] != kind:
        clashes.append(f"--tokenizer {train['tokenizer']} (the checkpoint's is {kind})")
    if "bpe_vocab_size" in train and train["bpe_vocab_size"] != pieces:
        clashes.append(f"--bpe_vocab_size {train['bpe_vocab_size']} (the checkpoint's is {pieces or 'none: char'})")
    if clashes:
        raise ValueError(
            f"a fine-tuned run keeps the architecture and tokenizer of {config.init_from}: {', '.join(clashes)}; "
            "drop those flags"
        )
    # config.json names the checkpoint's preset (if it is one), tokenizer and the file's hash; settings.model and
    # the checkpoint's tokenizer are the truth.
    config = replace(
        config, model=preset or config.model, tokenizer=kind, bpe_vocab_size=pieces or config.bpe_vocab_size
    )
    return replace(config, init_from_sha256=file_sha256(config.init_from)), source


def tokenizer_flags(tokenizer: Tokenizer) -> tuple[str, int | None]:
    """(--tokenizer, --bpe_vocab_size) that describe a tokenizer; the size is None for characters."""
    return tokenizer.kind, (len(tokenizer) - 1 if tokenizer.kind == "bpe" else None)


def batch_rule(config: TrainConfig, given_lr: bool) -> TrainConfig:
    """--lr was tuned for a global batch of --lr_reference_batch seconds: another global batch (device-sized,
    more processes, --grad_accum) scales it by sqrt(global / reference) (asr/optim.py), unless --lr was given."""
    if given_lr or config.lr_reference_batch is None:
        return config
    lr = scaled_lr(config.lr, global_batch_seconds(config), config.lr_reference_batch)
    if lr != config.lr:
        print(f"lr {config.lr:g} is for a global batch of {config.lr_reference_batch:g} s; this run's is "
              f"{global_batch_seconds(config):g} s, so lr = {config.lr:g} x sqrt({global_batch_seconds(config):g} / "
              f"{config.lr_reference_batch:g}) = {lr:.3g} (give --lr to override)")  # fmt: skip
    return replace(config, lr=lr)


def recipe_defaults(dataset: str, fine_tuning: bool) -> tuple[dict, dict]:
    """The defaults a new run starts from, and where each comes from: the dataset's recipe, for an --init_from run
    over FINE_TUNING's (a recipe is specific to its data: LibriSpeech keeps its own learning rate)."""
    name = recipe_name(dataset)
    if not fine_tuning:
        return RECIPES[name], RECIPE_SOURCES[name]
    return FINE_TUNING | RECIPES[name], FINE_TUNING_SOURCES | RECIPE_SOURCES[name]


def print_recipe(config: TrainConfig) -> None:
    """The recipe's values as this run uses them, each with where it comes from (asr/config.py RECIPE_SOURCES,
    FINE_TUNING_SOURCES)."""
    name = recipe_name(config.dataset) + (" + fine-tuning" if config.init_from else "")
    tables = "RECIPES, FINE_TUNING" if config.init_from else "RECIPES"
    print(f"recipe: {name} (defaults in asr/config.py {tables}; any flag overrides them)")
    defaults, sources = recipe_defaults(config.dataset, config.init_from is not None)
    for key, default in defaults.items():
        value = getattr(config, key)
        shown = f"{value:.3g}" if isinstance(value, float) else f"{value}"
        shown += "" if value == default or default is None else f" (recipe: {default})"
        print(f"  {key} = {shown}  # {sources.get(key, '')}")


def size_for_machine(config: TrainConfig, model: ModelConfig | None = None) -> TrainConfig:
    """Fill what a recipe leaves to the machine (None or auto): batch_seconds for the device (asr/batching.py: on
    CUDA the largest batch of `model` that fits), one worker per spare core."""
    batch_seconds, workers = config.batch_seconds, config.num_workers
    if batch_seconds is None or batch_seconds == "auto":
        device = pick_device(config.device)
        if device.type == "cuda":  # this process's GPU (torchrun's LOCAL_RANK); the group is not joined yet
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        arch = model or MODEL_PRESETS[config.model]
        batch_seconds = auto_batch_seconds(arch, config.max_duration, device, config.amp)
    if workers is None:
        workers = spare_cpu_workers()
    return replace(config, batch_seconds=float(batch_seconds), num_workers=workers)


def global_batch_seconds(config: TrainConfig) -> float:
    """Audio seconds behind one optimizer update, all processes together."""
    return config.batch_seconds * world_size() * config.grad_accum
