"""Streaming: chunk-exact log-probs, decoders whose finals equal the offline ones, causal feature statistics in the
checkpoint, a streaming model that trains and resumes like the others, bidirectional models refused."""

import dataclasses
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import LIBRISPEECH_FIXTURES, SHORTEST

import inference
import train
from asr.audio import feature_stats, load_audio
from asr.checkpoint import load_checkpoint, model_from_checkpoint, model_state, save_checkpoint
from asr.config import MODEL_PRESETS, DecodeConfig, ModelConfig
from asr.infer import Recognizer, decode_labellings
from asr.lm import load_lm
from asr.model import DeepSpeech2, count_parameters, feature_extractor, right_context_ms
from asr.stream import Stream, StreamError, _BeamStream, algorithmic_latency_ms, latency_summary
from asr.tokenizers import CharTokenizer

FIXTURES = Path(__file__).parent / "fixtures"
CHARS = CharTokenizer()
# the tiny test model made streamable, with two recurrent layers so the second one's batch norm is streamed too
TINY_STREAM = dataclasses.replace(
    MODEL_PRESETS["tiny"], rnn_layers=2, bidirectional=False, lookahead=3, conv_future=2, features="global"
)
STREAM_FLAGS = ("--model", "tiny", "--no-bidirectional", "--lookahead", "2", "--conv_future", "2",
                "--features", "global")  # fmt: skip


def random_stream_model(seed: int = 0, config: ModelConfig = TINY_STREAM) -> Recognizer:
    """An untrained streaming model whose every part matters: random batch-norm statistics, feature statistics,
    lookahead weights, and a head sharp enough that decoding it gives text."""
    torch.manual_seed(seed)
    net = DeepSpeech2(config).eval()
    with torch.no_grad():
        for m in net.modules():
            if hasattr(m, "running_mean"):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        net.feature_mean.uniform_(-8, -2)
        net.feature_std.uniform_(1, 3)
        net.lookahead.weight.normal_()
        net.head.weight.mul_(8.0)
    return Recognizer(net, CHARS, torch.device("cpu"), Path("random.pt"))


def offline_log_probs(model: Recognizer, audio: np.ndarray) -> np.ndarray:
    """The whole utterance through DeepSpeech2.forward, as inference.py runs it."""
    features = feature_extractor(model.network)(torch.from_numpy(audio))  # (T, n_mels)
    with torch.no_grad():
        lp, lengths = model.network(features[None], torch.tensor([len(features)]))
    return lp[0, : lengths[0]].numpy()


def feed(stream: Stream, audio: np.ndarray, sizes: list[int]) -> list[str]:
    """Feed `audio` in chunks of `sizes` (cycled); the partial after each."""
    partials, start, i = [], 0, 0
    while start < len(audio):
        partials.append(stream.accept(audio[start : start + sizes[i % len(sizes)]]))
        start, i = start + sizes[i % len(sizes)], i + 1
    stream.finish()
    return partials


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """A real recording (1.975 s)."""
    if not LIBRISPEECH_FIXTURES.is_dir():
        pytest.skip(f"{LIBRISPEECH_FIXTURES} not found (../shared beside the repo)")
    (path,) = (LIBRISPEECH_FIXTURES / "audio").glob(f"{SHORTEST[0]}.*")
    return load_audio(path)[: 3 * 16000]


def test_stream_log_probs_equal_the_offline_forward_for_any_chunking(speech):
    model = random_stream_model()
    offline = offline_log_probs(model, speech)
    assert offline.shape == (99, len(CHARS))  # 31600 samples: 198 feature frames, 99 at stride 2
    rng = np.random.default_rng(0)
    chunkings = [[len(speech)], [160], [7, 1000, 1, 333], *[list(rng.integers(1, 4000, 20)) for _ in range(2)]]
    for sizes in chunkings:
        stream = Stream(model)
        feed(stream, speech, sizes)
        assert stream.log_probs.shape == offline.shape, sizes
        assert np.abs(stream.log_probs - offline).max() < 1e-5, sizes
    short = speech[4000:5200]  # one sample at a time costs ~0.2 ms a call: a short clip
    stream = Stream(model)
    feed(stream, short, [1])
    assert np.abs(stream.log_probs - offline_log_probs(model, short)).max() < 1e-5


def test_a_clip_shorter_than_a_window_streams_like_offline():
    model = random_stream_model()
    clip = np.random.default_rng(1).normal(0, 0.1, 100).astype(np.float32)  # < one hop, one feature frame
    stream = Stream(model)
    feed(stream, clip, [30])
    assert stream.log_probs.shape == (1, len(CHARS))
    assert np.abs(stream.log_probs - offline_log_probs(model, clip)).max() < 1e-5


@pytest.mark.parametrize("decoder", ["greedy", "beam", "beam_lm"])
def test_stream_finals_equal_the_offline_decoder_on_the_same_log_probs(speech, decoder):
    model = random_stream_model(seed=3)
    lm = load_lm(FIXTURES / "tiny_3gram.arpa") if decoder == "beam_lm" else None
    config = DecodeConfig(decoder=decoder, beam_size=8)
    rng = np.random.default_rng(1)
    for sizes in ([len(speech)], [320 * 16], list(rng.integers(1, 3000, 10))):
        stream = Stream(model, lm=lm, config=config)
        partials = feed(stream, speech, sizes)
        ((text, tokens),) = decode_labellings([stream.log_probs], CHARS, config, lm)
        assert (stream.text, stream._tokens) == (text, tokens)
        assert text and partials[-1]  # the sharpened random head spells something
        words = stream.word_times()
        assert " ".join(w.word for w in words) == text and words[-1].end <= 2.0


def peaky(path: str, rng: np.random.Generator) -> np.ndarray:
    """(T, V) log-probs: one character per frame ("-" blank, "_" space), most at a random 0.995-0.9999 (the frame's
    only candidate: runs of a letter are merged by the beam search, also across chunk boundaries), a third at
    0.5-0.9 (several candidates); the rest of each frame's probability spread at random."""
    ids = [0 if c == "-" else CHARS.vocab.index(" " if c == "_" else c) for c in path]
    probs = rng.dirichlet(np.full(len(CHARS), 0.3), size=len(ids))
    peak = np.where(rng.random(len(ids)) < 0.67, rng.uniform(0.995, 0.9999, len(ids)), rng.uniform(0.5, 0.9, len(ids)))
    probs = probs * (1 - peak)[:, None]
    probs[np.arange(len(ids)), ids] += peak
    return np.log(probs).astype(np.float32)


@pytest.mark.parametrize("with_lm", [False, True])
def test_beam_stream_equals_beam_search_whatever_the_chunk_boundaries(with_lm):
    rng = np.random.default_rng(5)
    # a leading space and doubled spaces (" " then " " again after a blank) too: such a space leaves the text as
    # it was, and the stream's prefixes must fold it exactly as the offline search's do
    lp = peaky("_-tthhe-_ccaaatt__ssaaat-_-_oonn_tthhe_-mmaatt-_" * 3, rng)
    lm = load_lm(FIXTURES / "tiny_3gram.arpa") if with_lm else None
    config = DecodeConfig(decoder="beam_lm" if with_lm else "beam", beam_size=4, merge_beams=True)
    ((offline, tokens),) = decode_labellings([lp], CHARS, config, lm)
    whole = _BeamStream(CHARS, config, lm)
    whole.push(lp, final=True)  # the offline search: asr.decode's frame loop over the whole utterance
    assert whole.final() == (offline, tokens)
    assert with_lm or offline == " ".join(["the cat sat on the mat"] * 3)
    for _ in range(10):
        beam, start = _BeamStream(CHARS, config, lm), 0
        while start < len(lp):
            step = int(rng.integers(1, 6))
            beam.push(lp[start : start + step], final=False)
            start += step
        beam.push(lp[:0], final=True)
        assert beam.hypothesis() == whole.hypothesis()  # to the last bit of every score


def test_a_bidirectional_model_is_refused_with_the_reason(tmp_path):
    torch.manual_seed(0)
    offline = Recognizer(DeepSpeech2(MODEL_PRESETS["tiny"]).eval(), CHARS, torch.device("cpu"), Path("tiny.pt"))
    with pytest.raises(StreamError, match=r"tiny.pt: cannot stream: its recurrent layers are bidirectional .*"
                                          r"normalised per utterance .* — train a streaming model"):  # fmt: skip
        Stream(offline)


def test_inference_stream_refuses_a_bidirectional_checkpoint(tmp_path, tiny_set):
    run = train.main(["--dataset", str(tiny_set), "--runs_dir", str(tmp_path), "--model", "tiny", "--no-tensorboard",
                      "--max_steps", "1", "--eval_every", "9"])  # fmt: skip
    with pytest.raises(StreamError, match="its recurrent layers are bidirectional"):
        inference.main(["--data_dir", str(tiny_set), "--checkpoint", str(run["run_dir"] / "last.pt"), "--stream",
                        "--out", str(tmp_path / "preds")])  # fmt: skip


def test_inference_stream_writes_the_streams_finals_and_timings(tmp_path, tiny_set, capsys):
    run = train.main(["--dataset", str(tiny_set), "--runs_dir", str(tmp_path), *STREAM_FLAGS, "--no-tensorboard",
                      "--max_steps", "2", "--eval_every", "9"])  # fmt: skip
    checkpoint = run["run_dir"] / "last.pt"
    out = tmp_path / "preds"
    inference.main(["--data_dir", str(tiny_set), "--checkpoint", str(checkpoint), "--stream", "--chunk_ms", "160",
                    "--verbose", "--decoder", "beam", "--beam_size", "4", "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert (
        "algorithmic latency at 160 ms chunks: STFT 16 + convolutions 60 + lookahead 40 + chunk 160 = 276 ms" in printed
    )
    assert (
        f"{SHORTEST[0]}: RTF " in printed and "final " in printed and "stream summary (4 utterances, beam)" in printed
    )
    model = asr_model(checkpoint)
    for utt in SHORTEST:  # the transcripts are the streams' finals, which are the offline decoder's on their log-probs
        (audio,) = (tiny_set / "audio").glob(f"{utt}.*")
        stream = Stream(model, config=DecodeConfig(decoder="beam", beam_size=4))
        feed(stream, load_audio(audio), [2560])
        assert (out / f"{utt}.txt").read_text() == stream.text + "\n"
    assert (out / "stream.json").is_file()


def asr_model(checkpoint: Path) -> Recognizer:
    network, tokenizer = model_from_checkpoint(load_checkpoint(checkpoint))
    return Recognizer(network, tokenizer, torch.device("cpu"), checkpoint)


def test_global_feature_statistics_are_estimated_saved_and_loaded_with_the_checkpoint(tmp_path, tiny_set):
    run = train.main(["--dataset", str(tiny_set), "--runs_dir", str(tmp_path), *STREAM_FLAGS, "--no-tensorboard",
                      "--max_steps", "1", "--eval_every", "9"])  # fmt: skip
    mean, std, frames = feature_stats(sorted((tiny_set / "audio").iterdir()), 40)
    assert frames == sum(len(load_audio(p)) // 160 + 1 for p in (tiny_set / "audio").iterdir())
    state = load_checkpoint(run["run_dir"] / "last.pt")
    assert torch.equal(state["model"]["feature_mean"], mean) and torch.equal(state["model"]["feature_std"], std)
    network, _ = model_from_checkpoint(state)
    assert torch.equal(network.feature_mean, mean) and torch.equal(network.feature_std, std)
    audio = load_audio(next((tiny_set / "audio").iterdir()))
    logmel = feature_extractor(network).log_mel(torch.from_numpy(audio))  # (n_mels, frames)
    expected = ((logmel - mean[:, None]) / std[:, None]).T
    assert torch.equal(feature_extractor(network)(torch.from_numpy(audio)), expected)


def test_a_stream_model_trains_and_resumes_exactly_like_the_others(tmp_path, tiny_set):
    common = (*STREAM_FLAGS, "--epochs", "2", "--batch_seconds", "3", "--eval_every", "5", "--seed", "7",
              "--augment", "strong", "--no-tensorboard")  # fmt: skip
    full = train.main(["--dataset", str(tiny_set), "--runs_dir", str(tmp_path / "a"), *common])
    assert full["step"] >= 6 and all(math.isfinite(loss) for loss in full["losses"])
    cut = train.main(["--dataset", str(tiny_set), "--runs_dir", str(tmp_path / "b"), *common, "--max_steps", "3"])
    resumed = train.main(["--resume", str(cut["run_dir"] / "last.pt")])
    assert cut["losses"] + resumed["losses"] == full["losses"]  # bit-exact, step for step
    a = torch.load(full["run_dir"] / "last.pt", weights_only=True)["model"]
    b = torch.load(cut["run_dir"] / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert {"feature_mean", "feature_std", "lookahead.weight", "rnns.0.forward_rnn.weight_hh_l0"} <= a.keys()
    assert not any("backward" in k for k in a)


def test_offline_presets_keep_their_architecture_and_weights():
    for name in ("tiny", "small", "base"):
        config = MODEL_PRESETS[name]
        keys = DeepSpeech2(config).state_dict().keys()
        assert not any(k.startswith(("lookahead", "feature_")) for k in keys), name
        assert "rnns.0.backward_rnn.weight_ih_l0" in keys and config.features == "utterance"
        assert right_context_ms(config) == math.inf


def test_the_stream_preset_is_small_sized_and_its_latency_is_computed_from_the_config():
    stream, small = MODEL_PRESETS["stream"], MODEL_PRESETS["small"]
    assert abs(count_parameters(DeepSpeech2(stream)) / count_parameters(DeepSpeech2(small)) - 1) < 0.01
    # STFT half window 16 ms + convolutions (2 + 2 * 2 frames) 60 ms + lookahead (2 * 4 frames) 80 ms
    assert right_context_ms(stream) == 156.0
    assert algorithmic_latency_ms(stream, 320) == 476.0
    assert latency_summary(stream, 320) == (
        "algorithmic latency at 320 ms chunks: STFT 16 + convolutions 60 + lookahead 80 + chunk 320 = 476 ms"
    )


def test_bad_input_to_a_stream_is_refused(speech):
    stream = Stream(random_stream_model())
    with pytest.raises(StreamError, match="finish\\(\\) before any audio"):
        stream.finish()
    with pytest.raises(StreamError, match="need a 1-D float array"):
        stream.accept(np.zeros((10, 2), np.float32))
    stream.accept(speech[:1000])
    stream.finish()
    with pytest.raises(StreamError, match="accept\\(\\) after finish\\(\\)"):
        stream.accept(speech[:10])


def run_example(example: str, name: str, tmp_path, monkeypatch, capsys) -> tuple[list[str], np.ndarray]:
    """Run a documented streaming example in a folder holding an untrained streaming checkpoint at
    runs/stream/best.pt and the example recording; returns its printed lines and the recording."""
    repo = Path(__file__).resolve().parents[1]
    save_checkpoint(tmp_path / "runs/stream/best.pt", model_state(random_stream_model().network, CHARS))
    (tmp_path / "data/example/audio").mkdir(parents=True)
    shutil.copy(repo / "data/example/audio/en-gb+Andy-000034.flac", tmp_path / "data/example/audio")
    monkeypatch.chdir(tmp_path)
    exec(compile(example, name, "exec"), {})
    return capsys.readouterr().out.splitlines(), load_audio(tmp_path / "data/example/audio/en-gb+Andy-000034.flac")


def test_the_streaming_example_runs(tmp_path, monkeypatch, capsys):
    """docs/streaming.md's Python example, with an untrained streaming model."""
    text = (Path(__file__).resolve().parents[1] / "docs/streaming.md").read_text()
    example = text.split("```python\n", 1)[1].split("```", 1)[0]
    printed, samples = run_example(example, "docs/streaming.md", tmp_path, monkeypatch, capsys)
    chunks = -(-len(samples) // 5120)
    assert [line[:8] for line in printed[:2]] == [" 0.32 s ", " 0.64 s "] and len(printed) > chunks
    final = Stream(asr_model(tmp_path / "runs/stream/best.pt"), decoder="beam", beam_size=8)
    feed(final, samples, [len(samples)])
    words = [line.split("  ", 1)[1] for line in printed[chunks:]]
    assert " ".join(words) == final.text  # one line per word of the final text


def test_the_readme_streaming_example_runs(tmp_path, monkeypatch, capsys):
    """README.md's "Streaming" example, with an untrained streaming model: it prints partials, then the final."""
    section = (Path(__file__).resolve().parents[1] / "README.md").read_text().split("## Streaming\n", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    printed, samples = run_example(example, "README.md", tmp_path, monkeypatch, capsys)
    final = Stream(asr_model(tmp_path / "runs/stream/best.pt"), decoder="beam", beam_size=8)
    feed(final, samples, [len(samples)])
    assert len(printed) == -(-len(samples) // 5120) + 1 and printed[-1] == final.text
