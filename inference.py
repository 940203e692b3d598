"""Transcribe audio with a trained checkpoint.

    python inference.py --data_dir data/example --out preds --checkpoint runs/example/best.pt
    python inference.py --dataset test-clean --out preds/test-clean

Writes `<out>/<UtteranceID>.txt` (one line of normalised text) for every audio
file. When references exist it prints corpus WER/CER and writes
`<out>/metrics.json`. Files that cannot be read are listed with the reason, the
others are still transcribed, and the exit code is 1 if any failed.
"""

import dataclasses
import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from asr.checkpoint import load_checkpoint, model_from_checkpoint
from asr.config import DecodeConfig, InferenceConfig, from_args, parser_for
from asr.data import DataReport, load_dataset
from asr.decode import greedy_decode
from asr.metrics import score
from asr.model import pick_device
from asr.transcribe import eval_loader, transcribe


def main(argv: list[str] | None = None) -> int:
    args = parser_for(InferenceConfig, DecodeConfig, description=__doc__).parse_args(argv)
    config, decode_config = from_args(InferenceConfig, args), from_args(DecodeConfig, args)
    if (config.data_dir is None) == (config.dataset is None):
        sys.exit("give exactly one of --data_dir DIR (audio/ + optional transcriptions/) or --dataset SPLIT")

    model, tokenizer = model_from_checkpoint(load_checkpoint(config.checkpoint))
    device = pick_device(config.device)
    model.to(device)

    report = DataReport()
    utterances = load_dataset(config.data_dir or config.dataset, config.librispeech_dir, report, config.download)
    print(f"{len(utterances)} utterances, {sum(u.duration for u in utterances) / 60:.1f} min of audio")

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    loader = eval_loader(utterances, tokenizer, model.config.n_mels, config.batch_seconds)
    predictions: dict[str, str] = {}
    with tqdm(total=len(utterances), desc="transcribing", unit="utt") as bar:
        for batch, log_probs, lengths in transcribe(model, loader, device):
            report.failed.extend(batch["errors"])
            bar.update(len(batch["ids"]) + len(batch["errors"]))
            if log_probs is None:
                continue
            for utt_id, text in zip(batch["ids"], greedy_decode(log_probs, lengths, tokenizer), strict=True):
                predictions[utt_id] = text
                (out / f"{utt_id}.txt").write_text(text + "\n", encoding="utf-8")
    print(f"wrote {len(predictions)} transcripts to {out}/")

    # Score every utterance that has a reference; one that failed to load counts as an empty prediction,
    # so failures cannot flatter the WER.
    pairs = [(u.text, predictions.get(u.id, "")) for u in utterances if u.text is not None]
    if pairs:
        scores = score(pairs)
        print(scores)
        metrics = {
            "checkpoint": config.checkpoint,
            "data": config.data_dir or config.dataset,
            "decoding": dataclasses.asdict(decode_config),
            **scores.as_dict(),
            "scored_as_empty_because_unreadable": sum(u.id not in predictions for u in utterances if u.text),
            "failed": report.failed,
        }
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if report.summary():
        print(f"data report:\n{report.summary()}")
    if report.failed:
        print(f"{len(report.failed)} file(s) could not be transcribed (listed above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    with torch.inference_mode():
        sys.exit(main())
