"""Score predicted transcripts against references: corpus WER and CER.

    python calc_metrics.py                       # preds/ vs the references inference.py recorded for it
    python calc_metrics.py --transcriptions_dir DIR --predictions_dir preds --json

Files are matched by UtteranceID (`<id>.txt` in both folders) and both sides
are normalised the same way. A reference without a prediction is an error
(exit 1) unless --allow_missing, which scores it as an empty prediction.
"""

import json
import sys
from pathlib import Path

from asr.config import MetricsConfig, from_args, parser_for
from asr.data import DataReport, read_transcripts
from asr.errors import ASRError, run_cli
from asr.metrics import SOURCE_FILE, score, utterance_rates
from asr.predictions import read_record


def references_dir(config: MetricsConfig) -> Path:
    """--transcriptions_dir, else the references inference.py recorded beside the predictions."""
    if config.transcriptions_dir is not None:
        return Path(config.transcriptions_dir)
    source = read_record(config.predictions_dir)
    if source is None:
        raise FileNotFoundError(
            f"{Path(config.predictions_dir) / SOURCE_FILE} not found, so the references are unknown: pass "
            f"--transcriptions_dir DIR (or write {config.predictions_dir}/ with inference.py)"
        )
    if source.get("references") is None:
        raise FileNotFoundError(
            f"{config.predictions_dir}/ was transcribed from {source.get('data')}, which has no transcriptions "
            f"folder (its score is in {config.predictions_dir}/metrics.json); pass --transcriptions_dir DIR"
        )
    return Path(source["references"])


def main(argv: list[str] | None = None) -> int:
    config = from_args(MetricsConfig, parser_for(MetricsConfig, description=__doc__).parse_args(argv))
    report = DataReport()
    refs_dir = references_dir(config)
    references = read_transcripts(refs_dir, report, references=True)
    predictions = read_transcripts(config.predictions_dir, report)
    record = read_record(config.predictions_dir)
    if record is not None and record.get("written") is not None:  # only what that inference.py run wrote
        ignored = sorted(set(predictions) - set(record["written"]))
        predictions = {i: t for i, t in predictions.items() if i in set(record["written"])}
        if ignored:
            print(f"ignored {len(ignored)} <id>.txt files in {config.predictions_dir}/ that its {SOURCE_FILE} does "
                  f"not list (not written by that run): {', '.join(ignored[:5])}{' ...' if len(ignored) > 5 else ''}",
                  file=sys.stderr)  # fmt: skip
    for line in report.warnings:
        print(f"warning: {line}", file=sys.stderr)
    if report.failed:
        for line in report.failed[1:]:
            print(f"unreadable: {line}", file=sys.stderr)
        more = f" (and {len(report.failed) - 1} more, listed above)" if len(report.failed) > 1 else ""
        raise ASRError(f"{report.failed[0]}{more} — fix or remove the file")
    if not references:
        raise ASRError(f"{refs_dir}: no <UtteranceID>.txt references — pass --transcriptions_dir DIR")

    missing = sorted(set(references) - set(predictions))
    extra = sorted(set(predictions) - set(references))
    if missing and not config.allow_missing:
        print(
            f"error: {len(missing)} reference(s) have no prediction in {config.predictions_dir}: "
            f"{', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}\n"
            "(pass --allow_missing to score them as empty predictions)",
            file=sys.stderr,
        )
        return 1

    ids = sorted(references)
    scores = score([(references[i], predictions.get(i, "")) for i in ids])
    rates = {i: utterance_rates(references[i], predictions.get(i, "")) for i in ids}
    worst = sorted(ids, key=lambda i: (-rates[i][0], -rates[i][1], i))[: config.worst]
    if config.json:
        result = scores.as_dict() | {
            "missing": missing,
            "extra": extra,
            "worst": [
                {
                    "id": i,
                    "wer": rates[i][0],
                    "cer": rates[i][1],
                    "reference": references[i],
                    "prediction": predictions.get(i, ""),
                }
                for i in worst
            ],
        }
        print(json.dumps(result, indent=2))
        return 0
    print(f"references {refs_dir}/ vs predictions {config.predictions_dir}/")
    print(scores)
    print(
        f"matched {len(ids) - len(missing)} of {len(ids)} references; "
        f"{len(missing)} missing (scored as empty), {len(extra)} predictions without a reference"
    )
    for label, items in (("missing", missing), ("extra", extra)):
        if items:
            print(f"{label}: {', '.join(items)}")
    print(f"worst {len(worst)} utterances:")
    for i in worst:
        print(
            f"  {i}  WER {100 * rates[i][0]:.1f}%  CER {100 * rates[i][1]:.1f}%\n"
            f"    ref: {references[i]}\n    hyp: {predictions.get(i, '')}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
