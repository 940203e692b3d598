"""Streaming recognition: audio in chunks of any size -> partial text while it arrives -> the final text.

    stream = asr.Stream(asr.load_model("runs/stream/best.pt"), decoder="beam_lm", lm=asr.load_lm("lm.arpa"))
    for chunk in chunks:                      # 16 kHz mono float32, any length (1 sample to the whole file)
        partial = stream.accept(chunk)        # the best text so far
    text = stream.finish()                    # the final text; stream.word_times() places its words

Only a model whose future context is bounded streams: forward-only recurrent layers and global feature
statistics (the `stream` preset, asr/model.py). `Stream` runs the same network as `DeepSpeech2.forward`, stage by
stage, and carries between calls what each stage still needs: the samples of the STFT windows not yet complete,
the last frames of each convolution's kernel, the recurrent layers' hidden states and the lookahead's future
frames. An output frame is emitted as soon as everything it depends on has arrived; `finish` pads the end with
the zeros the offline forward pads with. So the log-probabilities equal the offline forward on the whole
utterance for any chunking (within float rounding, ~1e-6; tests/test_stream.py), and the decoders run on them
frame by frame: greedy trivially, the prefix beam search through asr.decode's own frame loop (`_BeamStream`),
so the final text is exactly what the offline decoder makes of the same log-probabilities.

Algorithmic latency (`algorithmic_latency_ms`): a sound is final in the output once the model has heard its
right context (`asr.model.right_context_ms`: STFT window, convolutions, lookahead) and the chunk that carried
it has arrived: right context + chunk.

A streaming model exported by `export.py --streaming` streams the same way without PyTorch: `asr.load_model` of
that file gives an `asr.onnx_stream.OnnxStreamModel`, whose encoder runs the step graph on onnxruntime, and the
decoders below are the same. So this module imports torch only where a checkpoint's network runs.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from asr.audio import HOP_LENGTH, N_FFT, SAMPLE_RATE, AudioError, LogMel, load_audio
from asr.config import DecodeConfig, InferenceConfig, ModelConfig
from asr.decode import (
    _COMPACT_AFTER,
    Hypothesis,
    WordTime,
    _as_log_prob_array,
    _Beam,
    _candidates,
    _PrefixTrie,
    _text,
    _WordTracker,
    word_timestamps,
)
from asr.errors import ASRError
from asr.infer import Recognizer, _check_decoder, load_model
from asr.lm import NGramLM, load_lm
from asr.onnx_runtime import OnnxRecognizer
from asr.onnx_stream import OnnxStreamModel
from asr.tokenizers import Tokenizer

if TYPE_CHECKING:  # a checkpoint's network; an exported step graph (OnnxStreamModel) streams without torch
    import torch

    from asr.model import DeepSpeech2, MaskedBatchNorm


class StreamError(ASRError, ValueError):
    """A model or input that cannot be streamed; the message says why and what to do."""


def streaming_obstacles(config: ModelConfig) -> list[str]:
    """Why a model cannot stream (empty: it can): what makes its output depend on an unbounded future."""
    reasons = []
    if config.bidirectional:
        reasons.append("its recurrent layers are bidirectional (each output frame depends on the end of the audio)")
    if config.features != "global":
        reasons.append("its features are normalised per utterance (with statistics of the whole recording)")
    return reasons


def check_streamable(config: ModelConfig, source: str = "model") -> None:
    """Raise StreamError unless the model's output at a moment depends on a bounded future only."""
    reasons = streaming_obstacles(config)
    if reasons:
        raise StreamError(
            f"{source}: cannot stream: {' and '.join(reasons)} — train a streaming model "
            "(python train.py --model stream ...) or transcribe whole files without --stream"
        )


def algorithmic_latency_ms(config: ModelConfig, chunk_ms: float) -> float:
    """Right context of the model (STFT window, convolutions, lookahead) plus one chunk, in ms."""
    from asr.model import right_context_ms

    return right_context_ms(config) + chunk_ms


def latency_summary(config: ModelConfig, chunk_ms: float = 320.0) -> str:
    """One line: where the algorithmic latency of a streaming model comes from."""
    from asr.model import conv_time_pads

    (_, future1), (_, future2) = conv_time_pads(config)
    hop = 1000 * HOP_LENGTH / SAMPLE_RATE
    parts = {
        "STFT": 1000 * (N_FFT // 2) / SAMPLE_RATE,
        "convolutions": hop * (future1 + config.time_stride * future2),
        "lookahead": hop * config.time_stride * config.lookahead,
        "chunk": chunk_ms,
    }
    shown = " + ".join(f"{name} {ms:g}" for name, ms in parts.items())
    return f"algorithmic latency at {chunk_ms:g} ms chunks: {shown} = {algorithmic_latency_ms(config, chunk_ms):g} ms"


class Stream:
    """Chunk-by-chunk recognition with a streaming model (see the module docstring).

    model: from `asr.load_model(path, device="cpu")` (a streaming checkpoint: `python train.py --model stream`), or
    `asr.load_model("stream.onnx")` (`python export.py --streaming`: onnxruntime, no torch).
    decoder, beam_size, lm, alpha, beta: as `asr.transcribe`; config: a full DecodeConfig instead (its decoder,
    beam and LM weights and pruning options; the LM still comes from `lm`).
    """

    def __init__(
        self,
        model: Recognizer | OnnxStreamModel,
        decoder: str = DecodeConfig.decoder,
        lm: str | Path | NGramLM | None = None,
        beam_size: int = DecodeConfig.beam_size,
        alpha: float = DecodeConfig.alpha,
        beta: float = DecodeConfig.beta,
        config: DecodeConfig | None = None,
    ) -> None:
        if isinstance(model, OnnxRecognizer):
            raise StreamError(f"{model.path}: an offline export cannot stream — export a streaming checkpoint with "
                              "python export.py --streaming")  # fmt: skip
        if not isinstance(model, OnnxStreamModel):
            check_streamable(model.network.config, str(model.checkpoint))
            if model.device.type != "cpu":
                raise StreamError(f"{model.checkpoint}: a Stream runs on the CPU — load it with device='cpu'")
        config = config or DecodeConfig(decoder=decoder, beam_size=beam_size, alpha=alpha, beta=beta)
        _check_decoder(config.decoder, lm)
        if isinstance(lm, (str, Path)):
            lm = load_lm(lm)
        self.model, self.config, self.tokenizer = model, config, model.tokenizer
        if isinstance(model, OnnxStreamModel):
            self._encoder, self._frame_rate = model.encoder(), model.frame_rate
        else:
            from asr.model import frame_rate

            self._encoder, self._frame_rate = _StreamEncoder(model.network.eval()), frame_rate(model.network.config)
        self._decoder = _GreedyStream(self.tokenizer) if config.decoder == "greedy" else _BeamStream(
            self.tokenizer, config, lm
        )  # fmt: skip
        self._log_probs: list[np.ndarray] = []  # (n, V) per call that made frames
        self.samples = 0  # accepted so far
        self.text: str | None = None  # the final text, once finished
        self._tokens: tuple[int, ...] = ()

    def accept(self, samples: np.ndarray) -> str:
        """Take the next (n,) 16 kHz mono float32 samples (n >= 0); return the partial text (best so far)."""
        if self.text is not None:
            raise StreamError("stream: accept() after finish() — start a new Stream for the next utterance")
        samples = _checked(samples)
        self.samples += len(samples)
        self._feed(self._encoder.accept(samples), final=False)
        return self._decoder.partial()

    def finish(self) -> str:
        """End of the audio: flush every stage; return the final text (normalised words)."""
        if self.text is None:
            if self.samples == 0:
                raise StreamError("stream: finish() before any audio — accept() at least one sample")
            self._feed(self._encoder.finish(), final=True)
            self.text, self._tokens = self._decoder.final()
        return self.text

    @property
    def log_probs(self) -> np.ndarray:
        """(T', V) float32 log-probabilities of every output frame made so far."""
        if not self._log_probs:
            return np.zeros((0, len(self.tokenizer)), dtype=np.float32)
        return np.concatenate(self._log_probs)

    def word_times(self) -> tuple[WordTime, ...]:
        """Each word of the final text with its start and end in seconds (after `finish`), from the most probable
        alignment of the decoder's labelling, as `inference.py --timestamps` places them."""
        if self.text is None:
            raise StreamError("stream: word_times() before finish() — the final text has no timestamps yet")
        return word_timestamps(self.log_probs, self._tokens, self.tokenizer, self._frame_rate)

    def _feed(self, log_probs: np.ndarray | None, final: bool) -> None:
        lp = np.zeros((0, len(self.tokenizer)), np.float32) if log_probs is None else log_probs
        if len(lp):
            self._log_probs.append(lp)
        self._decoder.push(lp, final)


def _checked(samples: np.ndarray) -> np.ndarray:
    """(n,) finite floats as contiguous float32; StreamError otherwise."""
    if not isinstance(samples, np.ndarray) or samples.ndim != 1 or not np.issubdtype(samples.dtype, np.floating):
        shape = getattr(samples, "shape", type(samples).__name__)
        raise StreamError(
            f"samples {shape}: need a 1-D float array of 16 kHz mono audio in [-1, 1] — average the channels, "
            "divide 16-bit PCM by 32768"
        )
    if not np.isfinite(samples).all():
        raise StreamError("samples: contain NaN or infinite values — pass finite audio")
    return np.ascontiguousarray(samples, dtype=np.float32)


# ---------------------------------------------------------------------------------------------- the network


class _StreamEncoder:
    """The network of DeepSpeech2.forward (batch of one, eval mode) run incrementally: samples -> log-prob frames."""

    def __init__(self, network: DeepSpeech2) -> None:
        import torch

        from asr.model import conv_time_pads

        config = network.config
        self.featurize = LogMel(config.n_mels, network.feature_mean.cpu(), network.feature_std.cpu(), center=False)
        self.pending = torch.zeros(N_FFT // 2)  # samples of incomplete windows; the centred STFT's leading zeros
        (past1, future1), (past2, future2) = conv_time_pads(config)
        self.convs = [_TimeConv(network.conv1, network.bn1, past1, future1),
                      _TimeConv(network.conv2, network.bn2, past2, future2)]  # fmt: skip
        self.network = network
        self.hidden: list = [None] * len(network.rnns)  # per recurrent layer, its state after the last frame
        tau = config.lookahead
        self.ahead = network.rnns[-1].forward_rnn.hidden_size if tau else 0
        self.lookahead_buffer = torch.zeros(1, self.ahead, 0)  # (1, hidden, <= tau) frames awaiting their future

    def accept(self, samples: np.ndarray) -> np.ndarray | None:
        """(n,) samples -> (frames, V) log-probs that are now final (None: none yet)."""
        import torch

        with torch.inference_mode():
            return self._accept(torch.from_numpy(samples))

    def _accept(self, samples: torch.Tensor) -> np.ndarray | None:
        import torch

        self.pending = torch.cat([self.pending, samples])
        frames = (len(self.pending) - N_FFT) // HOP_LENGTH + 1 if len(self.pending) >= N_FFT else 0
        if frames <= 0:
            return None
        features = self.featurize(self.pending[: (frames - 1) * HOP_LENGTH + N_FFT])  # (frames, n_mels)
        self.pending = self.pending[frames * HOP_LENGTH :]
        return self._network(features, final=False)

    def finish(self) -> np.ndarray | None:
        """The remaining frames: the STFT's trailing zeros, then each stage's future padding."""
        import torch

        with torch.inference_mode():
            return self._finish()

    def _finish(self) -> np.ndarray | None:
        import torch

        pending = torch.cat([self.pending, torch.zeros(N_FFT // 2)])
        frames = (len(pending) - N_FFT) // HOP_LENGTH + 1 if len(pending) >= N_FFT else 0
        features = self.featurize(pending[: (frames - 1) * HOP_LENGTH + N_FFT]) if frames > 0 else None
        return self._network(features, final=True)

    def _network(self, features: torch.Tensor | None, final: bool) -> np.ndarray | None:
        import torch

        from asr.model import MaskedBatchNorm

        net = self.network
        x = None if features is None else features.T[None, None]  # (1, 1, n_mels, frames)
        for conv in self.convs:
            x = conv(x, final)  # (1, C, F', frames') or None
        if x is not None:
            x = x.reshape(1, -1, x.shape[-1])  # (1, C * F'', frames')
            ones = torch.ones(1, x.shape[-1], dtype=torch.bool)
            for i, (norm, rnn) in enumerate(zip(net.rnn_norms, net.rnns, strict=True)):
                if isinstance(norm, MaskedBatchNorm):
                    x = norm(x, ones)
                out, self.hidden[i] = rnn.forward_rnn(x.transpose(1, 2), self.hidden[i])  # (1, frames', hidden)
                x = out.transpose(1, 2)  # (1, hidden, frames')
        if net.lookahead is not None:
            x = self._lookahead(x, final)
        if x is None or x.shape[-1] == 0:
            return None
        x = net.head_norm(x, torch.ones(1, x.shape[-1], dtype=torch.bool)).transpose(1, 2)  # (1, frames', hidden)
        return net.head(x).float().log_softmax(dim=-1)[0].numpy()  # (frames', V)

    def _lookahead(self, x: torch.Tensor | None, final: bool) -> torch.Tensor | None:
        """Frames whose `tau` future frames have arrived (at the end: zeros), through the lookahead convolution."""
        import torch
        import torch.nn.functional as F

        tau = self.network.lookahead.tau
        parts = [self.lookahead_buffer] + ([x] if x is not None else [])
        if final:
            parts.append(torch.zeros(1, self.ahead, tau))
        buffer = torch.cat(parts, dim=-1)
        ready = buffer.shape[-1] - tau
        if ready <= 0:
            self.lookahead_buffer = buffer
            return None
        self.lookahead_buffer = buffer[..., ready:]
        return F.conv1d(buffer, self.network.lookahead.weight, groups=self.ahead)  # (1, hidden, ready)


class _TimeConv:
    """One convolution + batch norm + clipped ReLU over a stream of frames: keeps the frames its kernel still
    needs, starts from `past` zero frames (the offline padding) and ends with `future` ones."""

    def __init__(self, conv: torch.nn.Conv2d, norm: MaskedBatchNorm, past: int, future: int) -> None:
        self.conv, self.norm, self.past, self.future = conv, norm, past, future
        self.kernel, self.stride = conv.kernel_size[1], conv.stride[1]
        self.buffer: torch.Tensor | None = None  # (1, C, F, frames) not yet consumed

    def __call__(self, x: torch.Tensor | None, final: bool) -> torch.Tensor | None:
        """New input frames (1, C, F, n) or None -> the output frames now computable (1, C', F', m) or None."""
        import torch
        import torch.nn.functional as F

        from asr.model import CLIP

        if x is None and (self.buffer is None or not final):
            return None
        if self.buffer is None:
            self.buffer = x.new_zeros(*x.shape[:3], self.past)
        parts = [self.buffer] + ([x] if x is not None else [])
        if final:
            parts.append(self.buffer.new_zeros(*self.buffer.shape[:3], self.future))
        buffer = torch.cat(parts, dim=-1)
        count = (buffer.shape[-1] - self.kernel) // self.stride + 1 if buffer.shape[-1] >= self.kernel else 0
        if count <= 0:
            self.buffer = buffer
            return None
        window = buffer[..., : (count - 1) * self.stride + self.kernel]
        self.buffer = buffer[..., count * self.stride :]
        y = F.conv2d(window, self.conv.weight, None, self.conv.stride, (self.conv.padding[0], 0))  # (1, C', F', m)
        return torch.clamp(self.norm(y, torch.ones(1, y.shape[-1], dtype=torch.bool)), 0, CLIP)


# ---------------------------------------------------------------------------------------------- the decoders


class _GreedyStream:
    """Best path, frame by frame; the text of `asr.decode.greedy_decode` on the same log-probs."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer, self.best = tokenizer, []  # the best token of every frame

    def push(self, lp: np.ndarray, final: bool) -> None:
        self.best += lp.argmax(axis=-1).tolist()

    def partial(self) -> str:
        return " ".join(self.tokenizer.decode_ctc(self.best).split())

    def final(self) -> tuple[str, tuple[int, ...]]:
        blank, tokens, prev = self.tokenizer.blank, [], None
        for t in self.best:
            if t != prev and t != blank:
                tokens.append(t)
            prev = t
        return self.partial(), tuple(tokens)


class _BeamStream:
    """The prefix beam search of asr.decode, fed frame by frame: `beam_search`'s own loop (`_search`) over its own
    per-frame candidates (`_candidates`), so the final hypothesis is the offline one. `_candidates` merges a run of
    frames whose only candidate is one same token into one frame; a run may continue in the next chunk, so the
    trailing frames that share the last frame's best (non-blank) token are held back until it ends."""

    def __init__(self, tokenizer: Tokenizer, config: DecodeConfig, lm: NGramLM | None) -> None:
        self.vocab, self.config = tokenizer.vocab, config
        self.words = (
            _WordTracker(self.vocab, lm, config.alpha, config.beta, config.unk_offset) if lm is not None else None
        )
        self.trie = _PrefixTrie(self.vocab, self.words)
        self.beam = _Beam(self.trie, config.beam_size, config.beam_threshold, config.merge_beams)
        self.held = np.zeros((0, len(self.vocab)), dtype=np.float32)  # (frames, V) not yet searched
        self.compact_at = _COMPACT_AFTER

    def push(self, lp: np.ndarray, final: bool) -> None:
        lp = np.concatenate([self.held, lp]) if len(self.held) else lp
        cut = len(lp)
        if not final and cut:
            best = lp.argmax(axis=-1)  # (frames,)
            if best[-1] != 0:  # a blank-best frame keeps the blank: never part of a run, nothing to hold
                cut -= 1
                while cut > 0 and best[cut - 1] == best[-1]:
                    cut -= 1
        self.held = lp[cut:]
        if cut:
            self._search(lp[:cut])

    def _search(self, lp: np.ndarray) -> None:
        c = self.config
        frames = _candidates(_as_log_prob_array(lp, len(self.vocab)), c.token_min_logp, c.top_k, c.cutoff_prob,
                             c.blank_skip)  # fmt: skip
        beam, trie = self.beam, self.trie
        for p_blank, cands, top_p in frames:  # asr.decode._search, one frame at a time
            if cands:
                new_b, new_nb = beam.extend(p_blank, cands, top_p)
                beam.prune(new_b, new_nb)
                refused = len(self.words.refused) if self.words is not None else 0
                if len(trie.parent) + refused > self.compact_at:
                    beam.nodes = trie.compact(beam.nodes)
                    self.compact_at = 2 * len(trie.parent) + _COMPACT_AFTER
            else:
                beam.blank_frame(p_blank)

    def partial(self) -> str:
        beam = self.beam
        best = max(range(len(beam.nodes)), key=lambda i: beam.pb[i] + beam.pnb[i])
        return _text(self.trie.tokens(beam.nodes[best]), self.vocab)

    def final(self) -> tuple[str, tuple[int, ...]]:
        best = self.hypothesis()
        return best.text, best.tokens

    def hypothesis(self) -> Hypothesis:
        """The best hypothesis, with its scores (after the final push)."""
        return self.beam.finalize(self.vocab, 1)[0]


def stream_log_probs(model: Recognizer, samples: np.ndarray, chunks: Sequence[int]) -> np.ndarray:
    """(T', V) log-probs of `samples` fed in chunks of the given sizes (cycled), for tests and benchmarks."""
    stream, start, i = Stream(model), 0, 0
    while start < len(samples):
        stream.accept(samples[start : start + chunks[i % len(chunks)]])
        start, i = start + chunks[i % len(chunks)], i + 1
    stream.finish()
    return stream.log_probs


# ---------------------------------------------------------------------------------------------- inference.py --stream


@dataclasses.dataclass(frozen=True)
class StreamTiming:
    """Compute spent on one utterance fed chunk by chunk (seconds of wall-clock time on this machine)."""

    audio_seconds: float
    chunk_seconds: tuple[float, ...]  # per accept() call
    finish_seconds: float  # the finish() call

    @property
    def rtf(self) -> float:
        """Real-time factor: all compute over the audio's duration."""
        return (sum(self.chunk_seconds) + self.finish_seconds) / self.audio_seconds

    @property
    def final_latency(self) -> float:
        """From the last sample's arrival to the final text: the last chunk's accept() plus finish()."""
        return (self.chunk_seconds[-1] if self.chunk_seconds else 0.0) + self.finish_seconds


def stream_utterance(stream: Stream, audio: np.ndarray, chunk: int, on_partial=None) -> StreamTiming:
    """Feed `audio` to `stream` `chunk` samples at a time, as fast as it takes them; on_partial(seconds, text)."""
    times = []
    for start in range(0, len(audio), chunk):
        tic = time.perf_counter()
        partial = stream.accept(audio[start : start + chunk])
        times.append(time.perf_counter() - tic)
        if on_partial is not None:
            on_partial(min(len(audio), start + chunk) / SAMPLE_RATE, partial)
    tic = time.perf_counter()
    stream.finish()
    return StreamTiming(len(audio) / SAMPLE_RATE, tuple(times), time.perf_counter() - tic)


def stream_files(config: InferenceConfig, decode_config: DecodeConfig, lm: NGramLM | None, report) -> tuple:
    """inference.py --stream: every file of --data_dir / --dataset through its own Stream on the CPU, --chunk_ms at a
    time; prints each utterance's timings and a summary, writes <out>/stream.json. Returns ({id: (T', V) log-probs},
    {id: reference}, tokenizer, output frames per second, {id: (final text, labelling)})."""
    import torch

    from asr.data import load_dataset
    from asr.model import frame_rate

    model = load_model(config.checkpoint, "cpu")
    check_streamable(model.network.config, str(config.checkpoint))
    chunk = round(config.chunk_ms * SAMPLE_RATE / 1000)
    if chunk < 1:
        raise StreamError(f"--chunk_ms {config.chunk_ms}: less than one sample — give at least 0.0625 ms")
    print(f"checkpoint: {config.checkpoint} (cpu, {torch.get_num_threads()} threads, streaming)")
    print(latency_summary(model.network.config, config.chunk_ms))
    utterances = load_dataset(config.data_dir or config.dataset, config.librispeech_dir, report)
    log_probs, finals, timings = {}, {}, {}
    for utt in utterances:
        try:
            audio = load_audio(utt.audio_path)
        except AudioError as e:
            report.failed.append(str(e))
            continue
        stream = Stream(model, lm=lm, config=decode_config)
        show = (lambda s, text, i=utt.id: print(f"  {i} {s:7.2f} s: {text}")) if config.verbose else None
        timing = stream_utterance(stream, audio, chunk, show)
        log_probs[utt.id], finals[utt.id], timings[utt.id] = stream.log_probs, (stream.text, stream._tokens), timing
        print(f"{utt.id}: RTF {timing.rtf:.3f}, compute per {config.chunk_ms:g} ms chunk mean "
              f"{1000 * np.mean(timing.chunk_seconds):.1f} ms, max {1000 * max(timing.chunk_seconds):.1f} ms, final "
              f"{1000 * timing.final_latency:.1f} ms after the last sample"
              + (f": {stream.text}" if config.verbose else ""))  # fmt: skip
    summary = _timing_summary(timings, config.chunk_ms, model.network.config)
    if timings:
        print(f"stream summary ({len(timings)} utterances, {decode_config.decoder}): RTF {summary['rtf']:.3f}, compute "
              f"per chunk mean {summary['chunk_ms_mean']:.1f} ms, max {summary['chunk_ms_max']:.1f} ms; final latency "
              f"mean {summary['final_ms_mean']:.1f} ms, max {summary['final_ms_max']:.1f} ms; algorithmic latency "
              f"{summary['algorithmic_latency_ms']:g} ms")  # fmt: skip
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    per_utt = {i: {"rtf": t.rtf, "chunk_ms": [1000 * s for s in t.chunk_seconds], "final_ms": 1000 * t.final_latency}
               for i, t in timings.items()}  # fmt: skip
    (out / "stream.json").write_text(json.dumps({"summary": summary, "utterances": per_utt}, indent=2) + "\n")
    rate = frame_rate(model.network.config)
    return log_probs, {u.id: u.text for u in utterances}, model.tokenizer, rate, finals


def _timing_summary(timings: dict[str, StreamTiming], chunk_ms: float, config: ModelConfig) -> dict:
    """Corpus figures: RTF (all compute over all audio), per-chunk and final-latency mean/max in ms."""
    import torch

    chunks = [s for t in timings.values() for s in t.chunk_seconds]
    finals = [t.final_latency for t in timings.values()]
    compute = sum(chunks) + sum(t.finish_seconds for t in timings.values())
    audio = sum(t.audio_seconds for t in timings.values())
    return {"chunk_ms": chunk_ms, "threads": torch.get_num_threads(), "utterances": len(timings),
            "audio_seconds": audio, "rtf": compute / audio if audio else None,
            "chunk_ms_mean": 1000 * float(np.mean(chunks)) if chunks else None,
            "chunk_ms_max": 1000 * max(chunks) if chunks else None,
            "final_ms_mean": 1000 * float(np.mean(finals)) if finals else None,
            "final_ms_max": 1000 * max(finals) if finals else None,
            "algorithmic_latency_ms": algorithmic_latency_ms(config, chunk_ms)}  # fmt: skip
