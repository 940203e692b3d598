"""Transcribe audio with a trained checkpoint, or re-decode saved log-probabilities.

    python inference.py --data_dir data/example --out preds    # the newest runs/*/best.pt (or weights/*.pt)
    python inference.py --dataset test-clean --out preds/test-clean --decoder beam_lm --lm lm.arpa
    python inference.py --data_dir X --checkpoint C --save_logits logits/X      # keep the model outputs
    python inference.py --logits logits/X --decoder beam --beam_size 64        # decode again, no model
    python inference.py --logits logits/X --lm lm.arpa --grid_alphas 0.3,0.5,0.8 --grid_betas 0,1,2
    python inference.py --data_dir X --checkpoint runs/stream/best.pt --stream --chunk_ms 320 --verbose

Writes `<out>/<UtteranceID>.txt` (one line of normalised text) for every audio
file, with --timestamps also `<out>/<UtteranceID>.json` (each word with its start
and end in seconds), and `<out>/inference.json` saying what was transcribed with
which checkpoint (so that `python calc_metrics.py` with no flags scores the right
references).
When references exist it prints corpus WER/CER and writes `<out>/metrics.json`.
Files that cannot be read are listed with the reason, the others are still
transcribed, and the exit code is 1 if any failed. With
--grid_alphas it decodes the labelled utterances with every (alpha, beta) pair,
prints a WER table and the best pair, and writes `<out>/grid.json`.

A thin layer over asr.infer, the same code as `asr.load_model` + `asr.transcribe` (one recording), here
run in batches over a folder or a LibriSpeech split.
"""

import base64
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from asr.atomic import atomic_write_text
from asr.config import DecodeConfig, InferenceConfig, from_args, parser_for
from asr.data import DataReport, load_dataset, read_transcripts, spare_cpu_workers
from asr.decode import decode_grid, word_timestamps
from asr.errors import ASRError, run_cli
from asr.infer import batch_log_probs, decode_labellings, eval_loader, load_model, uses_amp
from asr.librispeech import ensure_splits
from asr.lm import NGramLM, load_lm
from asr.metrics import SOURCE_FILE, score
from asr.predictions import clear_previous, write_text
from asr.stream import stream_files
from asr.tokenizers import Tokenizer, tokenizer_from_state

TOKENIZER_FILE = "tokenizer.json"  # written beside saved log-probs so they can be decoded without the checkpoint
FRAMES_FILE = "frames.json"  # and the model's output frame rate, for --timestamps
DEFAULT_FRAME_RATE = 50.0  # of log-probs saved before the time stride was a setting (stride 2: 50 per second)


def run_model(config: InferenceConfig, report: DataReport) -> tuple[dict, dict, Tokenizer, float]:
    """Checkpoint + audio -> ({id: (T, V) log-probs}, {id: reference or None}, tokenizer, output frames per s)."""
    if config.onnx:
        return run_onnx_model(config, report)
    from asr.model import feature_extractor, frame_rate  # here: --onnx never imports torch

    model = load_model(config.checkpoint, config.device, config.amp)
    precision = "fp16 autocast, as train.py evaluates" if uses_amp(model.device, model.amp) else "fp32"
    print(f"checkpoint: {config.checkpoint} ({model.device}, {precision})")
    if config.dataset:  # a LibriSpeech split: fetch it here, if missing and allowed; load_dataset only reads
        ensure_splits(config.dataset, config.librispeech_dir, config.download)
    utterances = load_dataset(config.data_dir or config.dataset, config.librispeech_dir, report)
    print(f"{len(utterances)} utterances, {sum(u.duration for u in utterances) / 60:.1f} min of audio")
    workers = config.num_workers
    if workers is None:  # a GPU waits for audio unless workers load it; on a CPU they would take the model's cores
        workers = spare_cpu_workers() if model.device.type == "cuda" else 0
    loader = eval_loader(utterances, model.tokenizer, model.network.config.n_mels, config.batch_seconds, workers,
                         pin_memory=model.device.type == "cuda",
                         featurize=feature_extractor(model.network))  # fmt: skip
    log_probs: dict[str, np.ndarray] = {}
    with tqdm(total=len(utterances), desc="acoustic model", unit="utt", disable=None) as bar:
        for batch, lp, lengths in batch_log_probs(model.network, loader, model.device, model.amp):
            report.failed.extend(batch["errors"])
            bar.update(len(batch["ids"]) + len(batch["errors"]))
            for i, utt_id in enumerate(batch["ids"]):
                log_probs[utt_id] = lp[i, : lengths[i]].numpy()  # (T', V)
    rate = frame_rate(model.network.config)
    return log_probs, {u.id: u.text for u in utterances}, model.tokenizer, rate


def run_onnx_model(config: InferenceConfig, report: DataReport) -> tuple[dict, dict, Tokenizer, float]:
    """`run_model` for a model exported by export.py: onnxruntime on the CPU, numpy features, batches of at most
    --batch_seconds of padded audio, shortest first."""
    from asr.audio import AudioError, load_audio
    from asr.onnx_runtime import batches_by_duration, load_onnx

    model = load_onnx(config.onnx)
    print(f"onnx: {config.onnx} (onnxruntime, CPU, {model.quantization if model.quantization != 'none' else 'fp32'})")
    if config.dataset:
        ensure_splits(config.dataset, config.librispeech_dir, config.download)
    utterances = load_dataset(config.data_dir or config.dataset, config.librispeech_dir, report)
    print(f"{len(utterances)} utterances, {sum(u.duration for u in utterances) / 60:.1f} min of audio")
    log_probs: dict[str, np.ndarray] = {}
    with tqdm(total=len(utterances), desc="acoustic model (onnx)", unit="utt", disable=None) as bar:
        for batch in batches_by_duration([u.duration for u in utterances], config.batch_seconds):
            loaded = {}
            for i in batch:
                try:
                    loaded[utterances[i].id] = load_audio(utterances[i].audio_path)
                except AudioError as e:
                    report.failed.append(str(e))
            if loaded:
                log_probs.update(zip(loaded, model.log_probs(list(loaded.values())), strict=True))
            bar.update(len(batch))
    return log_probs, {u.id: u.text for u in utterances}, model.tokenizer, model.frame_rate


def save_logits(folder: Path, log_probs: dict, references: dict, tokenizer: Tokenizer, rate: float) -> None:
    """DIR/<id>.npy (float32 (T, V)), DIR/<id>.txt (reference, when known), DIR/tokenizer.json (a BPE model's
    bytes in base64), DIR/frames.json (output frames per second)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / TOKENIZER_FILE).write_text(json.dumps(_json_safe(tokenizer.state_dict())) + "\n")
    (folder / FRAMES_FILE).write_text(json.dumps({"frame_rate": rate}) + "\n")
    for utt_id, lp in log_probs.items():
        np.save(folder / f"{utt_id}.npy", lp.astype(np.float32))
        if references.get(utt_id) is not None:
            (folder / f"{utt_id}.txt").write_text(references[utt_id] + "\n", encoding="utf-8")
    print(f"saved log-probs of {len(log_probs)} utterances to {folder}/")


def load_logits(folder: Path, report: DataReport) -> tuple[dict, dict, Tokenizer, float]:
    """The inverse of `save_logits` (a folder without frames.json is from a stride-2 model: 50 frames/s)."""
    if not (folder / TOKENIZER_FILE).is_file():
        raise FileNotFoundError(
            f"{folder / TOKENIZER_FILE} not found: --logits takes a folder written by --save_logits"
        )
    tokenizer = tokenizer_from_state(_from_json_safe(json.loads((folder / TOKENIZER_FILE).read_text())))
    frames = folder / FRAMES_FILE
    rate = json.loads(frames.read_text())["frame_rate"] if frames.is_file() else DEFAULT_FRAME_RATE
    log_probs = {}
    for path in sorted(folder.glob("*.npy")):
        try:
            log_probs[path.stem] = np.load(path)
        except (ValueError, OSError) as e:
            report.failed.append(f"{path}: cannot read saved log-probs ({e})")
    texts = read_transcripts(folder, report)
    return log_probs, {utt_id: texts.get(utt_id) for utt_id in log_probs}, tokenizer, rate


def _json_safe(state: dict) -> dict:
    """A tokenizer state for JSON: bytes values (a SentencePiece model) as base64 text under "<key>_base64"."""
    out = {}
    for key, value in state.items():
        if isinstance(value, bytes):
            out[f"{key}_base64"] = base64.b64encode(value).decode("ascii")
        else:
            out[key] = value
    return out


def _from_json_safe(state: dict) -> dict:
    """The inverse of `_json_safe`."""
    return {k.removesuffix("_base64"): base64.b64decode(v) if k.endswith("_base64") else v for k, v in state.items()}


def grid_search(log_probs: dict, references: dict, tokenizer, config: InferenceConfig, decode_config, lm) -> dict:
    """WER of every (alpha, beta) pair on the labelled utterances; prints the table and the best pair."""
    ids = sorted(i for i in log_probs if references.get(i) is not None)
    if not ids or lm is None:
        raise ASRError("--grid_alphas needs --lm and utterances with references")
    alphas = [float(a) for a in config.grid_alphas.split(",")]
    betas = [float(b) for b in config.grid_betas.split(",")]
    texts = decode_grid(
        [log_probs[i] for i in ids], tokenizer, decode_config.beam_options(), lm=lm, alphas=alphas, betas=betas,
        workers=decode_config.decode_workers,
    )  # fmt: skip
    wers = {pair: score([(references[i], t) for i, t in zip(ids, hyp, strict=True)]).wer for pair, hyp in texts.items()}
    print(f"WER % on {len(ids)} utterances, beam {decode_config.beam_size} (rows: alpha, columns: beta)")
    print("alpha\\beta " + "".join(f"{b:>8g}" for b in betas))
    for a in alphas:
        print(f"{a:>10g} " + "".join(f"{100 * wers[a, b]:>8.2f}" for b in betas))
    (best_alpha, best_beta), best = min(wers.items(), key=lambda kv: (kv[1], kv[0]))
    print(f"best: --alpha {best_alpha:g} --beta {best_beta:g}  (WER {100 * best:.2f}%)")
    return {"best": {"alpha": best_alpha, "beta": best_beta, "wer": best},
            "grid": [{"alpha": a, "beta": b, "wer": w} for (a, b), w in sorted(wers.items())]}  # fmt: skip


def write_predictions(
    folder: Path,
    labellings: dict,
    log_probs: dict,
    tokenizer: Tokenizer,
    decode_config: DecodeConfig,
    rate: float,
    failed: list[str],
) -> list[str]:
    """DIR/<id>.txt (one line of text) for every {id: (text, labelling)}; with --timestamps also DIR/<id>.json:
    the text and each word with its start and end in seconds (`asr.decode.word_timestamps`: where the words are
    in the most probable alignment of the decoder's own labelling; `rate` output frames per second).
    Returns the ids whose files were all written; the others are listed in `failed`."""
    written = []
    for utt_id, (text, tokens) in labellings.items():
        ok = write_text(folder / f"{utt_id}.txt", text + "\n", failed)
        if ok and decode_config.timestamps:
            words = word_timestamps(log_probs[utt_id], tokens, tokenizer, rate)
            record = {"text": text, "words": [{"word": w.word, "start": w.start, "end": w.end} for w in words]}
            ok = write_text(folder / f"{utt_id}.json", json.dumps(record, indent=2) + "\n", failed)
            if not ok:
                (folder / f"{utt_id}.txt").unlink()  # all of an utterance's files or none
        written += [utt_id] if ok else []
    timed = " with word timestamps (<id>.json)" if decode_config.timestamps else ""
    print(f"wrote {len(written)} transcripts{timed} to {folder}/ ({decode_config.decoder})")
    return written


def source_record(config: InferenceConfig, decode_config: DecodeConfig) -> dict:
    """What made these predictions; calc_metrics.py with no flags scores them against `references`."""
    if config.logits:
        references = config.logits  # save_logits keeps <id>.txt references beside the log-probs
    elif config.data_dir:
        references = str(Path(config.data_dir) / "transcriptions")
    else:
        references = None  # a LibriSpeech split: its trans.txt files; metrics.json already holds the score
    return {"data": config.logits or config.data_dir or config.dataset, "references": references,
            "checkpoint": config.onnx or config.checkpoint, "decoder": decode_config.decoder}  # fmt: skip


@dataclasses.dataclass
class Outputs:
    """The acoustic model's output for every utterance read: from audio, from streams, or from saved log-probs."""

    log_probs: dict[str, np.ndarray]  # id -> (T', V)
    references: dict[str, str | None]  # id -> transcript, None where there is none
    tokenizer: Tokenizer
    rate: float  # output frames per second
    streamed: dict | None = None  # --stream: {id: (text, labelling)} as each stream finished


def main(argv: list[str] | None = None) -> int:
    config, decode_config = read_flags(argv)
    lm = decoder_lm(decode_config, config.grid_alphas)
    config = with_checkpoint(config)
    report = DataReport()
    outputs = model_outputs(config, decode_config, lm, report)
    if config.save_logits:
        save_logits(Path(config.save_logits), outputs.log_probs, outputs.references, outputs.tokenizer, outputs.rate)

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if config.grid_alphas:
        result = grid_search(outputs.log_probs, outputs.references, outputs.tokenizer, config, decode_config, lm)
        (out / "grid.json").write_text(json.dumps(result, indent=2) + "\n")
        return 0

    if not outputs.log_probs:
        if report.summary():
            print(f"data report:\n{report.summary()}", file=sys.stderr)
        raise ASRError(f"no audio could be transcribed in {config.logits or config.data_dir or config.dataset}")
    predictions = decode_and_write(out, outputs, config, decode_config, lm, report.failed)
    score_predictions(out, predictions, outputs.references, config, decode_config, report.failed)
    if report.summary():
        print(f"data report:\n{report.summary()}")
    if report.failed:
        print(f"{len(report.failed)} file(s) could not be transcribed (listed above)", file=sys.stderr)
        return 1
    return 0


def read_flags(argv: list[str] | None) -> tuple[InferenceConfig, DecodeConfig]:
    """Flags -> (InferenceConfig, DecodeConfig); exactly one source of audio or log-probs."""
    args = parser_for(InferenceConfig, DecodeConfig, description=__doc__).parse_args(argv)
    config, decode_config = from_args(InferenceConfig, args), from_args(DecodeConfig, args)
    if sum(x is not None for x in (config.data_dir, config.dataset, config.logits)) != 1:
        raise ASRError(
            "give exactly one of --data_dir DIR (audio/ + optional transcriptions/), --dataset SPLIT, --logits DIR"
        )
    return config, decode_config


def decoder_lm(decode_config: DecodeConfig, grid_alphas: str | None) -> NGramLM | None:
    """The --lm that --decoder beam_lm and --grid_alphas need (None for the other decoders, which refuse one)."""
    if decode_config.decoder == "beam_lm" or grid_alphas:
        if decode_config.lm is None:
            raise ASRError(
                "--decoder beam_lm and --grid_alphas need --lm FILE (build one: python -m asr.lm build --help)"
            )
        tic = time.perf_counter()
        lm = load_lm(decode_config.lm, backend=decode_config.lm_backend)
        print(f"LM {decode_config.lm}: {type(lm).__name__}, loaded in {time.perf_counter() - tic:.1f} s")
        return lm
    if decode_config.lm is not None:
        raise ASRError("--lm is only used by --decoder beam_lm; add it (or drop --lm)")
    return None


def with_checkpoint(config: InferenceConfig) -> InferenceConfig:
    """--checkpoint or --onnx, not both; with neither (and no --logits) the newest checkpoint, named when loaded."""
    if config.onnx and config.checkpoint:
        sys.exit("give --checkpoint or --onnx, not both")
    if config.onnx and config.stream:
        raise ASRError(f"--onnx {config.onnx} with --stream: not supported — pass the streaming checkpoint with "
                       "--checkpoint, or stream the export in Python: asr.Stream(asr.load_model(path))")  # fmt: skip
    if config.checkpoint is None and not config.logits and not config.onnx:
        from asr.checkpoint import find_checkpoint

        config = dataclasses.replace(config, checkpoint=str(find_checkpoint()))  # the newest; say so when loaded
    return config


def model_outputs(
    config: InferenceConfig, decode_config: DecodeConfig, lm: NGramLM | None, report: DataReport
) -> Outputs:
    """Log-probs of every utterance: read back from --logits, streamed (--stream), or from the model in batches."""
    if config.logits:
        return Outputs(*load_logits(Path(config.logits), report))
    if config.stream:
        return Outputs(*stream_files(config, decode_config, lm, report))
    return Outputs(*run_model(config, report))


def decode_and_write(
    out: Path,
    outputs: Outputs,
    config: InferenceConfig,
    decode_config: DecodeConfig,
    lm: NGramLM | None,
    failed: list[str],
) -> dict[str, str]:
    """Decode every utterance (--stream: its stream's final result), replace the previous run's files in `out` with
    <id>.txt (+ <id>.json) and inference.json; returns {id: text}. Files that cannot be written go to `failed`."""
    ids = sorted(outputs.log_probs)
    labellings = outputs.streamed or dict(
        zip(ids, decode_labellings([outputs.log_probs[i] for i in ids], outputs.tokenizer, decode_config, lm),
            strict=True)
    )  # fmt: skip
    stale = clear_previous(out)  # the previous run's files: none of them may be scored with this run's
    if stale:
        print(f"removed {stale} prediction files of the previous run in {out}/")
    written = write_predictions(out, labellings, outputs.log_probs, outputs.tokenizer, decode_config, outputs.rate,
                                failed)  # fmt: skip
    record = source_record(config, decode_config) | {"written": written}
    atomic_write_text(out / SOURCE_FILE, json.dumps(record, indent=2) + "\n")
    others = sorted(p.name for p in set(out.glob("*.txt")) - {out / f"{i}.txt" for i in written})
    if others:
        print(f"note: {len(others)} <id>.txt files in {out}/ were not written by this run ({', '.join(others[:3])}"
              f"{' ...' if len(others) > 3 else ''}); calc_metrics.py ignores them")  # fmt: skip
    return {utt_id: text for utt_id, (text, _) in labellings.items()}


def score_predictions(
    out: Path,
    predictions: dict[str, str],
    references: dict[str, str | None],
    config: InferenceConfig,
    decode_config: DecodeConfig,
    failed: list[str],
) -> None:
    """Print corpus WER/CER and write <out>/metrics.json, when any utterance has a reference. One that failed to
    load counts as an empty prediction, so failures cannot flatter the WER."""
    pairs = [(text, predictions.get(utt_id, "")) for utt_id, text in sorted(references.items()) if text is not None]
    if not pairs:
        return
    scores = score(pairs)
    print(scores)
    metrics = {
        "checkpoint": None if config.logits else config.onnx or config.checkpoint,
        "data": config.logits or config.data_dir or config.dataset,
        "decoding": dataclasses.asdict(decode_config),
        **scores.as_dict(),
        "scored_as_empty_because_unreadable": sum(i not in predictions for i, t in references.items() if t),
        "failed": failed,
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")


if __name__ == "__main__":  # no torch.inference_mode here: the network runs under it (asr.infer, asr.stream) and
    sys.exit(run_cli(main))  # --onnx never imports torch
