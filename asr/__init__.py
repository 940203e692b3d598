"""DeepSpeech2 CTC speech recognition: features, model, decoding, metrics.

The front door for Python users. Train the example model first (`python train.py`, about two minutes on a CPU,
writes runs/example/best.pt), then, from the repository root:

    >>> import asr
    >>> model = asr.load_model("runs/example/best.pt")  # no path: the newest runs/*/best.pt, else weights/*.pt
    >>> path = "data/example/audio/en-gb+Andy-000034.flac"
    >>> text = asr.transcribe(model, path)  # greedy decoding
    >>> samples = asr.load_audio(path)  # or any 16 kHz mono float32 array, shape (samples,)
    >>> asr.transcribe(model, samples) == text
    True
    >>> beam = asr.transcribe(model, path, decoder="beam", beam_size=8)
    >>> lm = asr.load_lm("lm/pp3.arpa")  # built by `python -m asr.lm build` (README)
    >>> fused = asr.transcribe(model, path, decoder="beam_lm", lm=lm, alpha=0.5, beta=1.0)

Each result is normalised text (lowercase words, single spaces), to compare with the file's transcript
data/example/transcriptions/en-gb+Andy-000034.txt, "he was on one side of her mother". It is what
`python inference.py --data_dir data/example --decoder beam --beam_size 8` (and so on) writes for that file.
The pieces underneath have a module each: asr.audio, asr.text, asr.tokenizers, asr.model, asr.decode, asr.lm,
asr.metrics, asr.checkpoint, asr.data, and asr.infer (batched inference, used by inference.py and train.py).
A model exported by export.py loads the same way, `asr.load_model("model.onnx")`, and transcribes on onnxruntime
without importing torch (asr.onnx_runtime; asr.export writes and verifies the file).
"""

import importlib
from typing import TYPE_CHECKING

__all__ = ["Recognizer", "Stream", "load_audio", "load_lm", "load_model", "transcribe"]

# Imported on first use, so that `import asr.text` stays light and `python -m asr.lm` does not find asr.lm
# already imported by this package (runpy would then run a second copy of it).
_HOMES = {"Recognizer": "asr.infer", "load_model": "asr.infer", "transcribe": "asr.infer",
          "load_audio": "asr.audio", "load_lm": "asr.lm", "Stream": "asr.stream"}  # fmt: skip

if TYPE_CHECKING:
    from asr.audio import load_audio
    from asr.infer import Recognizer, load_model, transcribe
    from asr.lm import load_lm
    from asr.stream import Stream


def __getattr__(name: str) -> object:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'asr' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
