"""DeepSpeech2 (Amodei et al. 2016): 2D convolutions, bidirectional RNNs, a linear head.

Padding never leaks: after every layer, frames beyond an utterance's length are
zeroed; batch-norm statistics are computed over valid frames only
(`MaskedBatchNorm`); the recurrent layers see each utterance's frames only
(`BiRNN`, equivalent to running on packed sequences). So in eval mode each
utterance's output is the same whatever it is batched with (tested), and in
train mode the statistics do not depend on how much padding a batch carries.

Time is downsampled by `ModelConfig.time_stride` (first convolution only): with
the default 2, 10 ms feature frames become 20 ms output frames, 50 per second,
comfortably above the ~15 characters per second of fast speech that a character
CTC model must fit; BPE pieces are fewer per second and tolerate a stride of 4
(25 frames per second, and a cheaper recurrent stack).

Streaming variant (the `stream` preset; paper §3.5, §7): forward-only recurrent layers
(`ForwardRNN`), a lookahead convolution over `lookahead` future output frames after
them (`Lookahead`), convolutions whose kernels see only `conv_future` frames ahead
(explicit `TimePad`), and features normalised with training-set statistics the model
carries as buffers (`feature_extractor`). Its future context is bounded
(`right_context_ms`), so asr/stream.py can run it chunk by chunk with the same result.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asr.audio import HOP_LENGTH, N_FFT, SAMPLE_RATE, LogMel
from asr.config import ModelConfig

CLIP = 20.0  # clipped ReLU ceiling from the paper: min(max(x, 0), 20)
# (kernel, stride, padding) as (frequency, time) for the two convolutions; CONV1's time stride is the
# default, `conv1(time_stride)` the one a model uses
CONV1 = ((41, 11), (2, 2), (20, 5))
CONV2 = ((21, 11), (2, 1), (10, 5))


def conv1(time_stride: int) -> tuple:
    """CONV1 with the given time stride."""
    (kernel, (freq_stride, _), padding) = CONV1
    return kernel, (freq_stride, time_stride), padding


def conv_time_pads(config: ModelConfig) -> tuple[tuple[int, int], tuple[int, int]]:
    """(past, future) zero frames padded along time before each convolution: the 11-frame kernels see
    `conv_future` frames ahead and the rest behind (5, 5: centred, the offline presets)."""
    if not 0 <= config.conv_future <= 10:
        raise ValueError(f"conv_future {config.conv_future}: must be 0-10 (frames an 11-frame kernel sees ahead)")
    return tuple((spec[0][1] - 1 - config.conv_future, config.conv_future) for spec in (CONV1, CONV2))


def right_context_ms(config: ModelConfig) -> float:
    """How far ahead of a moment the model must hear before its output frame for that moment is final, in ms:
    the STFT window's second half, the convolutions' future frames and the lookahead. A stream's algorithmic
    latency is this plus its chunk (asr.stream.algorithmic_latency_ms); unbounded for a bidirectional model."""
    if config.bidirectional:
        return float("inf")
    (_, future1), (_, future2) = conv_time_pads(config)
    hop_ms = 1000 * HOP_LENGTH / SAMPLE_RATE  # 10 ms per feature frame
    feature_frames = future1 + config.time_stride * (future2 + config.lookahead)  # conv2 and lookahead run strided
    return 1000 * (N_FFT // 2) / SAMPLE_RATE + hop_ms * feature_frames


def frame_rate(config: ModelConfig) -> float:
    """Output frames per second: 100 feature frames per second (10 ms hop) over the time stride (2 -> 50)."""
    return SAMPLE_RATE / HOP_LENGTH / config.time_stride


class MaskedBatchNorm(nn.Module):
    """Batch norm over dim 1 whose statistics ignore padded time steps.

    x: (B, C, ..., T) with mask (B, T), True on valid frames. Padded outputs are 0.
    """

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x.float()  # statistics in fp32 even under autocast
        shape = [1, -1] + [1] * (x.dim() - 2)  # broadcast per-channel vectors over x
        m = mask.view(mask.shape[0], *[1] * (x.dim() - 2), mask.shape[1]).to(x.dtype)  # (B, 1, ..., T)
        if self.training:
            dims = [d for d in range(x.dim()) if d != 1]
            count = m.sum() * x[0, 0, ..., 0].numel()
            mean = (x * m).sum(dims) / count
            var = (((x - mean.view(shape)) * m) ** 2).sum(dims) / count
            with torch.no_grad():
                unbiased = var * count / (count - 1).clamp(min=1)
                # only from a finite batch: one inf (bad audio, an fp16 overflow) would poison them for good
                finite = torch.isfinite(mean).all() & torch.isfinite(unbiased).all()  # no host sync
                self.running_mean.copy_(torch.where(finite, self.running_mean.lerp(mean, self.momentum),
                                                    self.running_mean))  # fmt: skip
                self.running_var.copy_(torch.where(finite, self.running_var.lerp(unbiased, self.momentum),
                                                   self.running_var))  # fmt: skip
        else:
            mean, var = self.running_mean, self.running_var
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return (y * self.weight.view(shape) + self.bias.view(shape)) * m


class BiRNN(nn.Module):
    """Bidirectional GRU/LSTM over a padded batch; the two directions' outputs are summed.

    x: (B, T, input_size), lengths: (B,) -> (B, T, hidden). The forward direction runs
    on the padded batch as it is: padding comes after every valid frame, so it cannot
    reach one. The backward direction runs forwards over each utterance reversed
    within its own length, and is reversed back. The result equals a bidirectional
    RNN on packed sequences (tested against one) while avoiding PyTorch's packed-
    sequence path: a training step is 2.3x (tiny) to 3.7x (small) faster on CPU
    (benchmarks/speed.py, docs/performance.md).
    On a GPU the recurrence is latency-bound, and running the directions one after the other leaves half of it
    idle: there (`path` "auto" on CUDA, or "fused") the same two sets of weights run as one bidirectional cuDNN
    call on packed sequences, which runs both directions at once. Same parameters, same checkpoints, outputs
    equal to float rounding (tested on CPU by forcing each path).
    Outputs at padded frames are garbage; callers mask them.
    """

    path = "auto"  # "split": two one-direction calls; "fused": one bidirectional call; "auto": fused on CUDA

    def __init__(self, cell: str, input_size: int, hidden: int) -> None:
        super().__init__()
        rnn_class = {"gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.forward_rnn = rnn_class(input_size, hidden, batch_first=True)
        self.backward_rnn = rnn_class(input_size, hidden, batch_first=True)
        # A weightless (meta) bidirectional module for the fused path, run with the two directions' weights;
        # kept out of the module tree so state_dict() and .to() never see it.
        self.__dict__["_both"] = rnn_class(input_size, hidden, batch_first=True, bidirectional=True, device="meta")

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.path == "fused" or (self.path == "auto" and x.is_cuda):
            return self._fused(x, lengths)
        b, t, _ = x.shape
        steps = torch.arange(t, device=x.device)[None, :]  # (1, T)
        flip = lengths.to(x.device)[:, None] - 1 - steps  # (B, T): frame t <- frame L-1-t
        flip = torch.where(flip >= 0, flip, steps)  # padded frames stay where they are
        forward, _ = self.forward_rnn(x)  # (B, T, hidden)
        backward, _ = self.backward_rnn(x.gather(1, flip[:, :, None].expand_as(x)))
        return forward + backward.gather(1, flip[:, :, None].expand_as(backward))

    def _fused(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Both directions in one bidirectional call on packed sequences (padded outputs are 0)."""
        weights = {
            name: getattr(self.backward_rnn if name.endswith("_reverse") else self.forward_rnn,
                          name.removesuffix("_reverse"))
            for name in self._both._flat_weights_names
        }  # fmt: skip
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(functional_call(self._both, weights, (packed,))[0], batch_first=True,
                                     total_length=x.shape[1])  # fmt: skip
        forward, backward = out.chunk(2, dim=-1)  # (B, T, hidden) each
        return forward + backward


def set_rnn_path(model: nn.Module, path: str) -> None:
    """Run every BiRNN of `model` on one path: "split", "fused" or "auto" (fused on CUDA)."""
    if path not in ("auto", "split", "fused"):
        raise ValueError(f"rnn path {path!r}: not one of auto, split, fused")
    for module in model.modules():
        if isinstance(module, BiRNN):
            module.path = path


class ForwardRNN(nn.Module):
    """A forward-only GRU/LSTM with `BiRNN`'s interface: x (B, T, input_size), lengths (B,) -> (B, T, hidden).
    Padding comes after every valid frame, so it cannot reach one; outputs at padded frames are garbage."""

    def __init__(self, cell: str, input_size: int, hidden: int) -> None:
        super().__init__()
        self.forward_rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[cell](input_size, hidden, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.forward_rnn(x)[0]


class Lookahead(nn.Module):
    """The paper's row convolution: y_t = sum_{j=0..tau} w_j * x_{t+j}, per channel; frames after the end are 0.

    x: (B, C, T) -> (B, C, T). Starts as the identity (w_0 = 1), so training begins from the plain RNN."""

    def __init__(self, channels: int, tau: int) -> None:
        super().__init__()
        self.tau = tau
        self.weight = nn.Parameter(torch.zeros(channels, 1, tau + 1))  # (C, 1, tau + 1) depthwise
        with torch.no_grad():
            self.weight[:, 0, 0] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(F.pad(x, (0, self.tau)), self.weight, groups=x.shape[1])


class TimePad(nn.Module):
    """Zero frames before and after the last (time) axis: asymmetric padding for a convolution."""

    def __init__(self, past: int, future: int) -> None:
        super().__init__()
        self.past, self.future = past, future

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (self.past, self.future))


class DeepSpeech2(nn.Module):
    """features (B, T, n_mels) + lengths (B,) -> log-probs (B, T', V) + output lengths (B,)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config.conv_channels
        self.conv1_spec = conv1(config.time_stride)
        pads = conv_time_pads(config)
        centred = pads[0][0] == pads[0][1]  # time padding inside the convolutions, as always; else explicit
        self.pad1, self.pad2 = (nn.Identity(), nn.Identity()) if centred else (TimePad(*pads[0]), TimePad(*pads[1]))
        specs = [self.conv1_spec, CONV2] if centred else [(k, s, (p[0], 0)) for k, s, p in (self.conv1_spec, CONV2)]
        self.conv1 = nn.Conv2d(1, c, *specs[0], bias=False)
        self.bn1 = MaskedBatchNorm(c)
        self.conv2 = nn.Conv2d(c, c, *specs[1], bias=False)
        self.bn2 = MaskedBatchNorm(c)
        freq = _conv_out(_conv_out(config.n_mels, self.conv1_spec, 0), CONV2, 0)
        self.rnns = nn.ModuleList()
        self.rnn_norms = nn.ModuleList()  # sequence-wise BN before every RNN but the first (its input is BN'd)
        size = c * freq
        for i in range(config.rnn_layers):
            self.rnn_norms.append(MaskedBatchNorm(size) if i > 0 else nn.Identity())
            rnn_class = BiRNN if config.bidirectional else ForwardRNN
            self.rnns.append(rnn_class(config.rnn_type, size, config.rnn_hidden))
            size = config.rnn_hidden
        if config.lookahead < 0:
            raise ValueError(f"lookahead {config.lookahead}: must be >= 0 future output frames (0: none)")
        self.lookahead = Lookahead(size, config.lookahead) if config.lookahead else None
        if config.features == "global":  # set from the training set by train.py; (n_mels,) each
            self.register_buffer("feature_mean", torch.zeros(config.n_mels))
            self.register_buffer("feature_std", torch.ones(config.n_mels))
        self.head_norm = MaskedBatchNorm(size)
        self.head = nn.Linear(size, config.vocab_size)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Exact output frames for input frame counts (only the first convolution strides in time)."""
        return _conv_out(lengths, self.conv1_spec, 1)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        valid = torch.arange(features.shape[1], device=features.device)[None, :] < lengths.to(features.device)[:, None]
        x = (features * valid[:, :, None]).transpose(1, 2).unsqueeze(1)  # (B, 1, F, T), padding zeroed
        x = self.conv1(self.pad1(x))  # (B, C, F', T')
        lengths = self.output_lengths(lengths)
        mask = torch.arange(x.shape[-1], device=x.device)[None, :] < lengths.to(x.device)[:, None]  # (B, T')
        x = torch.clamp(self.bn1(x, mask), 0, CLIP)
        x = torch.clamp(self.bn2(self.conv2(self.pad2(x)), mask), 0, CLIP)  # (B, C, F'', T')
        b, c, f, t = x.shape
        x = x.reshape(b, c * f, t)  # (B, H, T')
        for norm, rnn in zip(self.rnn_norms, self.rnns, strict=True):
            if isinstance(norm, MaskedBatchNorm):
                x = norm(x, mask)
            x = rnn(x.transpose(1, 2), lengths).transpose(1, 2)  # (B, hidden, T')
        if self.lookahead is not None:  # padded frames zeroed: each utterance ends as a stream does
            x = self.lookahead(x * mask[:, None, :].to(x.dtype))  # (B, hidden, T')
        x = self.head_norm(x, mask).transpose(1, 2)  # (B, T', hidden)
        logits = self.head(x).float()  # (B, T', V)
        return logits.log_softmax(dim=-1), lengths


def _conv_out(size, conv: tuple, dim: int):
    """Output size along `dim` (0 = frequency, 1 = time) of a convolution: floor((n + 2p - k) / s) + 1."""
    kernel, stride, padding = (spec[dim] for spec in conv)
    return (size + 2 * padding - kernel) // stride + 1


def feature_extractor(model: DeepSpeech2) -> LogMel:
    """The features `model` was trained on: per-utterance normalisation, or (features="global") the
    training-set statistics it carries."""
    if model.config.features != "global":
        return LogMel(model.config.n_mels)
    return LogMel(model.config.n_mels, model.feature_mean.detach().cpu(), model.feature_std.detach().cpu())


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def pick_device(name: str = "auto") -> torch.device:
    """'auto' -> the first of cuda, mps, cpu that is available; otherwise the named device."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
