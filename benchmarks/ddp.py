"""Training throughput of 2 DDP processes (torchrun, gloo, one thread each) against 1 process with one thread.

    python -m benchmarks.ddp --data corpus/train --steps 30

Both run train.py on the same data with the same per-process batch (--batch_seconds) for the same number of
optimizer steps, evaluation cut to one utterance, no TensorBoard. Throughput is what train.py prints at the end
(audio seconds trained on per second of training steps, start-up and evaluation excluded). Under DDP that is
rank 0's figure; every rank takes the same number of batches, each of about --batch_seconds of audio, so the
processes together train `world` times it. Run it alone on the machine: it uses two cores.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train_rate(launcher: list[str], data: str, steps: int, batch_seconds: float, runs: str) -> float:
    """audio-s/s from the `done:` line of one train.py run (rank 0's under DDP)."""
    flags = ["--dataset", data, "--model", "small", "--augment", "default", "--batch_seconds", str(batch_seconds),
             "--epochs", "100", "--max_steps", str(steps), "--eval_utterances", "1", "--eval_beam_size", "0",
             "--no-tensorboard", "--runs_dir", runs]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    out = subprocess.run([*launcher, str(ROOT / "train.py"), *flags], env=env, capture_output=True, text=True, cwd=ROOT)
    match = re.search(r"at ([0-9.]+) audio-s/s", out.stdout)
    if out.returncode != 0 or match is None:
        sys.exit(f"train.py failed ({' '.join(launcher)}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="corpus/train", help="training folder (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per run (default: %(default)s)")
    parser.add_argument("--batch_seconds", type=float, default=60.0, help="per process (default: %(default)s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as runs:
        single = train_rate([sys.executable], args.data, args.steps, args.batch_seconds, f"{runs}/one")
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        rank0 = train_rate(torchrun, args.data, args.steps, args.batch_seconds, f"{runs}/two")
    print(f"1 process, 1 thread:             {single:.1f} audio-s/s")
    print(f"2 processes (DDP), 1 thread each: {2 * rank0:.1f} audio-s/s (rank 0: {rank0:.1f})")
    print(f"ratio: {2 * rank0 / single:.2f}x")


if __name__ == "__main__":
    main()
