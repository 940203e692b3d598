"""Inference speed of PyTorch fp32, onnxruntime fp32 and onnxruntime int8 on the same utterances, and file sizes.

    python -m benchmarks.export_speed --checkpoint runs/small10/best.pt --data_dir /work/corpus/test
    python -m benchmarks.export_speed --preset base --data_dir /work/corpus/test     # untrained: speed only

Each engine transcribes the first `--utterances` recordings of --data_dir (by id) one at a time, from samples
in memory to (T', V) log-probabilities, front end included (PyTorch: `LogMel`, built once, + the network, as
`asr.transcribe` computes; onnxruntime: numpy `log_mel` + the graph, as `asr.load_model("x.onnx")`), on 1 and
2 CPU threads (`--threads`; torch.set_num_threads and onnxruntime's intra-op threads). After one untimed pass,
the fastest of `--reps` timed passes is kept. Printed: audio seconds per second and the ratios to PyTorch fp32
and onnxruntime fp32 on the same thread count, measured in the same run; and the size of each file (PyTorch:
the model's state alone, without a training checkpoint's optimizer state). int8 is static quantisation calibrated
on --calibration_dir (export.py --quantize int8), int8-dynamic is export.py --quantize int8-dynamic. The ONNX
files are exported here (`asr.export.export_onnx`, `quantize_int8`) without export.py's verification: run
export.py for that.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from asr.audio import SAMPLE_RATE, LogMel, load_audio, log_mel
from asr.checkpoint import load_checkpoint, model_from_checkpoint, model_state
from asr.config import MODEL_PRESETS
from asr.export import audio_files, export_checkpoint_metadata, export_onnx, quantize_int8, write_metadata
from asr.model import DeepSpeech2, count_parameters
from asr.onnx_runtime import load_onnx
from asr.tokenizers import CharTokenizer


@torch.inference_mode()
def torch_log_probs(network: DeepSpeech2, featurize: LogMel, audio: np.ndarray) -> np.ndarray:
    """What `asr.transcribe` computes for a checkpoint on a CPU, with the front end built once."""
    features = featurize(torch.from_numpy(audio))  # (T, n_mels)
    log_probs, lengths = network(features[None], torch.tensor([len(features)]))  # (1, T', V)
    return log_probs[0, : lengths[0]].numpy()


def timed(fn, audios: list[np.ndarray], reps: int) -> float:
    """Fastest total seconds of `reps` passes of fn over every utterance (after one untimed pass)."""
    for a in audios:
        fn(a)
    best = float("inf")
    for _ in range(reps):
        tic = time.perf_counter()
        for a in audios:
            fn(a)
        best = min(best, time.perf_counter() - tic)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="a trained checkpoint (else --preset, untrained)")
    parser.add_argument("--preset", default="small", choices=sorted(MODEL_PRESETS))
    parser.add_argument("--data_dir", required=True, help="audio/ (+ transcriptions/)")
    parser.add_argument("--utterances", type=int, default=20)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--calibration_dir", default="data/example", help="recordings that calibrate static int8")
    parser.add_argument("--keep", help="folder to keep the exported .onnx files in (default: a temporary one)")
    args = parser.parse_args()

    if args.checkpoint:
        network, tokenizer = model_from_checkpoint(load_checkpoint(args.checkpoint))
        source = Path(args.checkpoint)
    else:
        torch.manual_seed(0)
        network, tokenizer = DeepSpeech2(MODEL_PRESETS[args.preset]).eval(), CharTokenizer()
        source = Path(f"untrained-{args.preset}.pt")
    folder = Path(args.keep or tempfile.mkdtemp(prefix="export-speed-"))
    folder.mkdir(parents=True, exist_ok=True)
    fp32, weights = folder / f"{source.stem}.onnx", folder / "weights.pt"
    int8, dynamic = folder / f"{source.stem}-int8.onnx", folder / f"{source.stem}-int8-dynamic.onnx"
    export_onnx(network, fp32)
    write_metadata(fp32, export_checkpoint_metadata(network, tokenizer, "none", source.name))
    calibration = [log_mel(load_audio(f), network.config.n_mels) for f in audio_files(args.calibration_dir)]
    for path, features, kind in ((int8, calibration, "int8"), (dynamic, None, "int8-dynamic")):
        quantize_int8(fp32, path, features)
        write_metadata(path, export_checkpoint_metadata(network, tokenizer, kind, source.name))
    torch.save(model_state(network, tokenizer), weights)  # the model alone, as a checkpoint without training state

    featurize = LogMel(network.config.n_mels)
    files = sorted((Path(args.data_dir) / "audio").iterdir())[: args.utterances]
    audios = [load_audio(f) for f in files]
    seconds = sum(len(a) for a in audios) / SAMPLE_RATE
    print(f"model: {source} ({count_parameters(network) / 1e6:.2f} M parameters); {len(files)} utterances, "
          f"{seconds:.1f} s of audio, one at a time; torch {torch.__version__}")  # fmt: skip
    onnx_files = {"onnxruntime fp32": fp32, "onnxruntime int8": int8, "onnxruntime int8-dynamic": dynamic}
    sizes = {"PyTorch fp32": weights.stat().st_size} | {name: p.stat().st_size for name, p in onnx_files.items()}
    print("| threads | engine | audio s/s | vs PyTorch fp32 | vs onnxruntime fp32 | file MB |")
    print("|---|---|---|---|---|---|")
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        engines = {"PyTorch fp32": lambda a: torch_log_probs(network, featurize, a)}
        for name, path in onnx_files.items():
            model = load_onnx(path, threads=threads)
            engines[name] = lambda a, m=model: m.log_probs([a])[0]
        speed = {name: seconds / timed(fn, audios, args.reps) for name, fn in engines.items()}
        for name, s in speed.items():
            print(f"| {threads} | {name} | {s:.1f} | {s / speed['PyTorch fp32']:.2f}x | "
                  f"{s / speed['onnxruntime fp32']:.2f}x | {sizes[name] / 1e6:.2f} |")  # fmt: skip
    print(f"files in {folder}" if args.keep else "")


if __name__ == "__main__":
    main()
