"""Score predicted transcripts against references: corpus WER and CER.

    python calc_metrics.py                       # data/example/transcriptions vs preds/
    python calc_metrics.py --transcriptions_dir DIR --predictions_dir preds --json

Files are matched by UtteranceID (`<id>.txt` in both folders) and both sides
are normalised the same way. A reference without a prediction is an error
(exit 1) unless --allow_missing, which scores it as an empty prediction.
"""

import argparse
import json
import sys

from asr.data import DataReport, read_transcripts
from asr.metrics import score, utterance_rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--transcriptions_dir",
        "--transcriptions-dir",
        default="data/example/transcriptions",
        help="references: <UtteranceID>.txt (default: %(default)s)",
    )
    parser.add_argument(
        "--predictions_dir",
        "--predictions-dir",
        default="preds",
        help="predictions written by inference.py (default: %(default)s)",
    )
    parser.add_argument(
        "--allow_missing",
        "--allow-missing",
        action="store_true",
        help="score references that have no prediction as empty predictions instead of failing",
    )
    parser.add_argument("--worst", type=int, default=5, help="show this many worst utterances (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)

    report = DataReport()
    try:
        references = read_transcripts(args.transcriptions_dir, report)
        predictions = read_transcripts(args.predictions_dir, report)
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    if report.failed:
        sys.exit("error: unreadable transcript files:\n" + "\n".join(f"  {p}" for p in report.failed))
    if not references:
        sys.exit(f"error: no <UtteranceID>.txt references in {args.transcriptions_dir}")

    missing = sorted(set(references) - set(predictions))
    extra = sorted(set(predictions) - set(references))
    if missing and not args.allow_missing:
        print(
            f"error: {len(missing)} reference(s) have no prediction in {args.predictions_dir}: "
            f"{', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}\n"
            "(pass --allow_missing to score them as empty predictions)",
            file=sys.stderr,
        )
        return 1

    ids = sorted(references)
    scores = score([(references[i], predictions.get(i, "")) for i in ids])
    rates = {i: utterance_rates(references[i], predictions.get(i, "")) for i in ids}
    worst = sorted(ids, key=lambda i: (-rates[i][0], -rates[i][1], i))[: args.worst]
    if args.json:
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
    sys.exit(main())
