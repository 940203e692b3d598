"""Streaming speed: asr.Stream on the PyTorch checkpoint vs asr.Stream on its ONNX step graph (export.py --streaming).

    nice -n 15 python -m benchmarks.stream_export_speed --checkpoint runs/stream10/best.pt --data_dir /work/corpus/test

Both engines stream the same `--utterances` recordings of --data_dir (every `--every`-th by id), `--chunk_ms` at a
time, through the same decoder (`--decoder`), on one thread (torch.set_num_threads(1); onnxruntime with one
intra-op thread). Passes alternate between the engines (after one untimed pass each) and the fastest of `--reps`
is kept. Printed per engine: real-time factor by CPU time of this process (time.process_time, what a busy machine
disturbs least) and by wall-clock time, the mean compute per chunk, and the ratio to PyTorch measured in the same
run; and whether the final transcripts are identical. The step graph is exported here (`asr.export.export_stream_onnx`)
without export.py's verification: run export.py --streaming for that.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from asr.audio import SAMPLE_RATE, load_audio
from asr.export import export_checkpoint_metadata, export_stream_onnx, write_metadata
from asr.infer import load_model
from asr.onnx_runtime import load_onnx, stream_metadata
from asr.stream import Stream


def stream_pass(model, audios: list[np.ndarray], chunk: int, decoder: str) -> tuple[float, float, int, list[str]]:
    """(CPU seconds, wall seconds, chunks, final texts) of streaming every utterance through its own Stream."""
    cpu, wall, chunks, texts = time.process_time(), time.perf_counter(), 0, []
    for audio in audios:
        stream = Stream(model, decoder=decoder)
        for start in range(0, len(audio), chunk):
            stream.accept(audio[start : start + chunk])
            chunks += 1
        texts.append(stream.finish())
    return time.process_time() - cpu, time.perf_counter() - wall, chunks, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a streaming checkpoint (train.py --model stream)")
    parser.add_argument("--data_dir", required=True, help="audio/ (+ transcriptions/)")
    parser.add_argument("--utterances", type=int, default=20)
    parser.add_argument("--every", type=int, default=25, help="take every n-th recording by id")
    parser.add_argument("--chunk_ms", type=float, default=320.0)
    parser.add_argument("--decoder", default="greedy", choices=["greedy", "beam"])
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(1)
    reference = load_model(args.checkpoint, device="cpu")
    path = Path(tempfile.mkdtemp(prefix="stream-speed-")) / "stream.onnx"
    spec = export_stream_onnx(reference.network, path)
    meta = export_checkpoint_metadata(reference.network, reference.tokenizer, "none", Path(args.checkpoint).name)
    write_metadata(path, stream_metadata(meta, spec))
    engines = {"PyTorch asr.Stream": reference, "onnxruntime asr.Stream": load_onnx(path, threads=1)}

    files = sorted((Path(args.data_dir) / "audio").iterdir())[:: args.every][: args.utterances]
    audios = [load_audio(f) for f in files]
    seconds = sum(len(a) for a in audios) / SAMPLE_RATE
    chunk = round(args.chunk_ms * SAMPLE_RATE / 1000)
    print(f"model: {args.checkpoint}; {len(files)} utterances, {seconds:.1f} s of audio, {args.chunk_ms:g} ms chunks, "
          f"{args.decoder}, 1 thread; torch {torch.__version__}")  # fmt: skip
    best = {name: (float("inf"), float("inf"), 0) for name in engines}
    texts = {}
    for rep in range(args.reps + 1):  # pass 0 is untimed (warm-up)
        for name, model in engines.items():
            cpu, wall, chunks, texts[name] = stream_pass(model, audios, chunk, args.decoder)
            if rep and cpu < best[name][0]:
                best[name] = (cpu, wall, chunks)
    base = best["PyTorch asr.Stream"][0]
    print("| engine | RTF (CPU time) | RTF (wall) | compute per chunk, mean (CPU) | vs PyTorch (CPU time) |")
    print("|---|---|---|---|---|")
    for name, (cpu, wall, chunks) in best.items():
        print(f"| {name} | {cpu / seconds:.4f} | {wall / seconds:.4f} | {1000 * cpu / chunks:.2f} ms | "
              f"{base / cpu:.2f}x |")  # fmt: skip
    same = sum(a == b for a, b in zip(*texts.values(), strict=True))
    print(f"final transcripts identical on {same} of {len(audios)} utterances")


if __name__ == "__main__":
    main()
