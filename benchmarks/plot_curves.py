"""Training curves from TensorBoard logs as one PNG (for docs/REPORT.md).

Reads the scalars train.py wrote under each RUN/tensorboard/ and draws one panel per tag, one line per run:

    python -m benchmarks.plot_curves runs/small-noaug runs/small-aug --out docs/curves.png
    python -m benchmarks.plot_curves runs/a --tags train/loss val/loss --labels "no augmentation" --out a.png

Needs matplotlib (in requirements-dev.txt; training itself does not).
"""

import argparse
import math
from pathlib import Path

DEFAULT_TAGS = ("train/loss", "val/loss", "val/wer", "train/lr")


def read_scalars(run: Path, tags: list[str]) -> dict[str, tuple[list[int], list[float]]]:
    """{tag: (steps, values)} from the event files under run/tensorboard (or run itself); missing tags are absent."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log_dir = run / "tensorboard" if (run / "tensorboard").is_dir() else run
    if not any(log_dir.glob("events.out.tfevents.*")):
        raise FileNotFoundError(f"no TensorBoard event files in {log_dir}")
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    found = set(events.Tags()["scalars"])
    curves = {}
    for tag in tags:
        if tag in found:
            points = sorted(events.Scalars(tag), key=lambda e: e.step)  # a resumed run may log a step twice
            curves[tag] = ([p.step for p in points], [p.value for p in points])
    return curves


def plot(runs: dict[str, dict], tags: list[str], out: Path, title: str = "") -> None:
    """One panel per tag (log scale for losses), one line per run; written as PNG to `out`."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    cols = min(2, len(tags))
    rows = math.ceil(len(tags) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.6 * rows), squeeze=False)
    for ax, tag in zip(axes.flat, tags, strict=False):
        percent = "wer" in tag or "cer" in tag  # error rates are logged as fractions
        for label, curves in runs.items():
            if tag in curves:
                steps, values = curves[tag]
                ax.plot(steps, [100 * v for v in values] if percent else values, label=label)
        ax.set_title(tag + (" (%)" if percent else ""))
        ax.set_xlabel("optimizer step")
        if tag.endswith("loss"):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes.flat[len(tags) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (train.py's runs/<name>)")
    parser.add_argument("--out", required=True, type=Path, help="PNG file to write")
    parser.add_argument("--tags", nargs="+", default=list(DEFAULT_TAGS), help="scalar tags, one panel each")
    parser.add_argument("--labels", nargs="+", help="legend names (default: the run folder names)")
    parser.add_argument("--title", default="", help="figure title")
    args = parser.parse_args(argv)
    labels = args.labels or [run.name for run in args.runs]
    if len(labels) != len(args.runs):
        parser.error(f"{len(labels)} labels for {len(args.runs)} runs")
    try:
        runs = {label: read_scalars(run, args.tags) for label, run in zip(labels, args.runs, strict=True)}
    except FileNotFoundError as e:
        parser.error(str(e))
    missing = [tag for tag in args.tags if not any(tag in curves for curves in runs.values())]
    if missing:
        parser.error(f"no run logged {', '.join(missing)}")
    plot(runs, args.tags, args.out, args.title)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
