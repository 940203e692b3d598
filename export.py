"""Export a checkpoint to ONNX, verified against PyTorch, for transcribing without PyTorch.

    python export.py --checkpoint runs/example/best.pt --out model.onnx
    python export.py --checkpoint runs/example/best.pt --out model-int8.onnx --quantize int8
    python inference.py --onnx model.onnx --data_dir data/example --out preds    # onnxruntime, no torch model
    python export.py --checkpoint runs/stream/best.pt --out stream.onnx --streaming  # a step graph for asr.Stream

The file holds the network (batch and time axes dynamic) and, in its metadata, the tokenizer, model config,
sample rate, frame rate and a format version: `asr.load_model("model.onnx")` needs nothing else, and runs with
onnxruntime, numpy, soundfile, editdistance and sentencepiece only (requirements-runtime.txt).

Before the file is written: onnxruntime runs generated inputs (batch 1 and 3, 1 to 7 s) and the largest
log-probability difference from PyTorch is printed (refused above 1e-4); then every recording of --data_dir is
transcribed greedily by both, and any differing transcript is refused. With --quantize int8 the fp32 graph passes
those checks first, and the int8 one is judged by WER/CER against PyTorch's on --data_dir (printed, not refused).
With --streaming (a streaming checkpoint: train.py --model stream) the file is one step of the network with its
states as inputs and outputs (asr/onnx_stream.py), checked as a stream fed in several chunkings against the offline
PyTorch forward (refused above 1e-4) and by greedy transcripts of --data_dir; `asr.Stream(asr.load_model(path))`
runs it without torch.
"""

import sys
from pathlib import Path

from asr.config import ExportConfig, from_args, parser_for
from asr.errors import run_cli


def main(argv: list[str] | None = None) -> int:
    config = from_args(ExportConfig, parser_for(ExportConfig, description=__doc__).parse_args(argv))
    from asr.checkpoint import find_checkpoint, load_checkpoint, model_from_checkpoint  # after argparse: --help
    from asr.export import ExportError, export_stream_verified, export_verified  # stays instant without torch

    checkpoint = Path(config.checkpoint) if config.checkpoint else find_checkpoint()
    network, tokenizer = model_from_checkpoint(load_checkpoint(checkpoint))
    if config.streaming:
        if config.quantize != "none":
            raise ExportError(f"--quantize {config.quantize}: not available with --streaming yet — export fp32")
        export_stream_verified(network, tokenizer, checkpoint, Path(config.out), config.data_dir)
        return 0
    export_verified(network, tokenizer, checkpoint, Path(config.out), config.quantize, config.data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
