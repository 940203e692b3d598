"""SentencePiece BPE: exact round trips, deterministic training, checkpoints, decoding pieces, a run end to end."""

import dataclasses
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SPEECH

import inference
import train
from asr.bpe import MIN_VOCAB_SIZE, BpeTokenizer, cached_bpe, train_bpe
from asr.checkpoint import load_checkpoint, model_from_checkpoint, model_state, save_checkpoint
from asr.config import MODEL_PRESETS, BeamOptions, DecodeConfig
from asr.data import DataReport, Utterance, filter_for_training
from asr.decode import _WordTracker, beam_search, greedy_decode, word_timestamps
from asr.infer import decode_labellings
from asr.lm import build_arpa, load_lm
from asr.model import DeepSpeech2, frame_rate
from asr.settings import resolve_config
from asr.text import BLANK, WORD_START, normalize
from asr.tokenizers import CharTokenizer, tokenizer_from_state

BOOK = SPEECH.parent / "text" / "pride_and_prejudice.txt"
FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "example"
# A tiny corpus whose 36 pieces hold several ways to spell "bugs", "buns" and "bunny"; the decoding tests find
# the spellings they need with `split`, so they do not depend on which merges SentencePiece makes.
CORPUS = ["bugs bunny", "buns in the sun", "a sunny bunny", "bugs ate buns"]


@pytest.fixture(scope="module")
def paragraphs() -> list[str]:
    """Every paragraph of the book, normalised (2183 of them)."""
    if not BOOK.is_file():
        pytest.skip(f"{BOOK} not found (../shared beside the repo)")
    return [t for t in (normalize(p) for p in BOOK.read_text(encoding="utf-8").split("\n\n")) if t]


@pytest.fixture(scope="module")
def pieces() -> BpeTokenizer:
    return train_bpe(CORPUS, 36)


def split(tokenizer: BpeTokenizer, word: str, n: int) -> list[int] | None:
    """Ids of `word` spelled as exactly n pieces of the vocabulary, the first beginning with "▁" (or None)."""
    index = {piece: i for i, piece in enumerate(tokenizer.vocab)}

    def rest(text: str, k: int) -> list[int] | None:
        if not text or not k:
            return [] if not text and not k else None
        for end in range(len(text), 0, -1):
            tail = rest(text[end:], k - 1) if text[:end] in index else None
            if tail is not None:
                return [index[text[:end]], *tail]
        return None

    for end in range(len(word), -1, -1):  # "▁" + a first part, or "▁" alone
        first = WORD_START + word[:end]
        tail = rest(word[end:], n - 1) if first in index else None
        if tail is not None:
            return [index[first], *tail]
    return None


def log_probs(vocab_size: int, frames: list[dict[int, float]]) -> np.ndarray:
    """(T, V) log-probs: each frame gives the tokens it names their probability, the others share the rest."""
    lp = np.empty((len(frames), vocab_size))
    for t, named in enumerate(frames):
        row = np.full(vocab_size, (1 - sum(named.values())) / (vocab_size - len(named)))
        row[list(named)] = list(named.values())
        lp[t] = np.log(row)
    return lp


def path(ids: list[int], peak: float = 0.9) -> list[dict[int, float]]:
    """One frame per token, each followed by a blank frame."""
    return [frame for i in ids for frame in ({i: peak}, {0: peak})]


# --- the tokenizer ----------------------------------------------------------------------------------------------


def test_every_paragraph_of_the_book_round_trips(paragraphs):
    tokenizer = train_bpe(paragraphs, 256)
    assert len(tokenizer) == 257 and tokenizer.vocab[0] == BLANK and tokenizer.blank == 0
    assert tokenizer.vocab[tokenizer.space] == WORD_START and tokenizer.kind == "bpe"
    assert all(not p.strip(WORD_START).count(WORD_START) for p in tokenizer.vocab)  # no piece spans two words
    for text in paragraphs:
        ids = tokenizer.encode(text)
        assert 0 not in ids and tokenizer.decode(ids) == text
    text = paragraphs[0]
    ids = tokenizer.encode(text)
    frames = [t for i in ids for t in (i, i, 0)]  # held twice, then a blank: decode_ctc undoes it
    assert tokenizer.decode_ctc(frames) == text and tokenizer.decode_ctc([0, 0]) == ""


def test_training_is_deterministic(paragraphs):
    first = train_bpe(paragraphs[:500], 200, seed=3)
    again = train_bpe(paragraphs[:500], 200, seed=3)
    assert first.model == again.model and first.sha256 == again.sha256


def test_every_normalised_text_encodes_even_letters_the_corpus_lacks(pieces):
    text = normalize("The quick brown fox's jumps over the lazy dog: 'tis 42 zebras!")
    assert pieces.decode(pieces.encode(text)) == text
    assert pieces.encode("") == [] and pieces.decode([]) == ""
    with pytest.raises(ValueError, match="character 'T' is not in the vocabulary; normalize"):
        pieces.encode("The")


def test_decode_gives_normalised_text_from_any_pieces(pieces):
    ids = [pieces.space, pieces.space, *split(pieces, "bugs", 2), pieces.space, pieces.vocab.index("'")]
    assert pieces.decode(ids) == "bugs"  # no stray "▁", no double or edge spaces, no apostrophe-only word


def test_vocabulary_size_errors_name_the_size_and_the_limit():
    with pytest.raises(ValueError, match=r"--bpe_vocab_size 100 is more pieces than the 2 training transcripts "
                                         r"allow: at most 37"):  # fmt: skip
        train_bpe(["abc abd", "ab"], 100)
    assert len(train_bpe(["abc abd", "ab"], 37)) == 38  # the maximum works
    with pytest.raises(ValueError, match=f"--bpe_vocab_size 10 is too small: .* at least {MIN_VOCAB_SIZE} pieces"):
        train_bpe(["abc"], 10)
    with pytest.raises(ValueError, match="no transcripts"):
        train_bpe(["", "!!"], 40)


def test_checkpoint_round_trip_restores_the_identical_model_bytes(tmp_path, pieces):
    model = DeepSpeech2(dataclasses.replace(MODEL_PRESETS["tiny"], vocab_size=37))
    save_checkpoint(tmp_path / "c.pt", model_state(model, pieces))
    raw = torch.load(tmp_path / "c.pt", weights_only=True)  # plain data only
    assert raw["tokenizer"] == {"kind": "bpe", "model": pieces.model} and type(raw["tokenizer"]["model"]) is bytes
    _, tokenizer = model_from_checkpoint(load_checkpoint(tmp_path / "c.pt"))
    assert isinstance(tokenizer, BpeTokenizer) and tokenizer.model == pieces.model
    assert tokenizer.vocab == pieces.vocab
    assert pickle.loads(pickle.dumps(pieces)).vocab == pieces.vocab  # decoder worker processes get a copy


def test_bad_model_bytes_are_refused():
    with pytest.raises(ValueError, match="not a SentencePiece model"):
        tokenizer_from_state({"kind": "bpe", "model": b"not a model"})


# --- decoding pieces with the one decoder -----------------------------------------------------------------------


def test_greedy_and_beam_decode_a_word_split_across_three_pieces(pieces):
    bunny = split(pieces, "bunny", 3)
    assert bunny is not None and bunny != pieces.encode("bunny")  # three pieces, not the canonical spelling
    ids = [*pieces.encode("a sunny"), *bunny]
    lp = log_probs(len(pieces), path(ids))
    assert greedy_decode(torch.from_numpy(lp)[None], torch.tensor([len(lp)]), pieces) == ["a sunny bunny"]
    best = beam_search(lp, pieces, BeamOptions(beam_size=8), frame_rate=25.0)[0]
    assert best.text == "a sunny bunny" and best.tokens == tuple(ids)
    # token i sits on frame 2i: a word runs from the frame of its first piece with letters ("▁" alone has none)
    # to one past the frame of its last piece
    spans = []  # [first, last] token index per word
    for i, token in enumerate(ids):
        piece = pieces.vocab[token]
        if piece.startswith(WORD_START):
            spans.append([])
        if piece != WORD_START:
            spans[-1][:] = [spans[-1][0] if spans[-1] else i, i]
    expected = [(2 * first, 2 * last + 1) for first, last in spans]
    assert [(w.start_frame, w.end_frame) for w in best.words] == expected
    assert [w.word for w in best.words] == ["a", "sunny", "bunny"] and best.words[2].end == expected[2][1] / 25
    assert word_timestamps(lp, ids, pieces, 25.0) == best.words


def test_inference_times_the_words_of_the_decoders_own_pieces(pieces):
    bunny = split(pieces, "bunny", 3)
    ids = (*pieces.encode("a sunny"), *bunny)
    lp = log_probs(len(pieces), path(list(ids)))
    for decoder in ("greedy", "beam"):
        [(text, tokens)] = decode_labellings([lp], pieces, DecodeConfig(decoder=decoder, beam_size=8))
        assert text == "a sunny bunny" and tokens == ids != tuple(pieces.encode(text))  # what --timestamps aligns


def test_the_word_lm_flips_a_near_tie_between_pieces(pieces):
    lm = load_lm(FIXTURES / "bugs_bunny.arpa")
    n = next(n for n in (2, 3, 4) if split(pieces, "bugs", n) and split(pieces, "buns", n))
    bugs, buns, bunny = split(pieces, "bugs", n), split(pieces, "buns", n), split(pieces, "bunny", 3)
    # "buns" is slightly more probable acoustically, piece for piece
    frames = [{g: 0.4, s: 0.45} if g != s else {g: 0.85} for g, s in zip(bugs, buns, strict=True)]
    lp = log_probs(len(pieces), [f for frame in frames for f in (frame, {0: 0.9})] + path(bunny))
    assert beam_search(lp, pieces, BeamOptions(beam_size=16))[0].text == "buns bunny"
    for merge in (False, True):
        fused = beam_search(lp, pieces, BeamOptions(beam_size=16, alpha=0.5, beta=0.5, merge_beams=merge), lm)
        assert fused[0].text == "bugs bunny" and fused[0].tokens == (*bugs, *bunny)
        # each word scored once, when the next "▁" piece or the end of the utterance completes it
        assert fused[0].lm_score == pytest.approx(0.5 * lm.sentence_score(["bugs", "bunny"]) + 2 * 0.5, abs=1e-9)


def test_partial_words_grow_by_whole_pieces_against_the_lm_prefixes(pieces):
    lm = load_lm(FIXTURES / "bugs_bunny.arpa")
    words = _WordTracker(pieces.vocab, lm, 0.5, 1.0, -6.0)
    node = 0
    for piece in split(pieces, "bugs", 2):  # "▁bu" begins BUGS, "bugs" is BUGS: never charged
        assert words.add(node, piece, 1.0, 0.0, len(words.state))
        node = len(words.state) - 1
        assert words.state[node][1] in ("bu", "bugs") and words.state[node][2] == 0.0
    for piece in split(pieces, "sun", 2):  # completes "bugs" and begins a word that begins no LM word
        assert words.add(node, piece, 1.0, 0.0, len(words.state))
        node = len(words.state) - 1
    lm_state, partial, charge, lm_score = words.state[node]
    assert partial == "sun" and charge == -6.0
    assert lm_score == pytest.approx(0.5 * lm.sentence_score(["bugs"], eos=False) + 1.0, abs=1e-9)


# --- model frames and the CTC feasibility filter ----------------------------------------------------------------


def test_the_filter_counts_what_a_stride_4_model_cannot_align(pieces):
    # 1 s of audio: 101 feature frames -> 51 output frames at stride 2, 26 at stride 4
    text = "bugs bunny buns in the sun"  # CTC needs 27 frames for its characters (26 + the repeated "n")
    assert len(pieces.encode(text)) < 26
    utts = [Utterance("u", Path("u.wav"), text, 1.0)]
    for stride, tokenizer, kept in ((2, CharTokenizer(), 1), (4, CharTokenizer(), 0), (4, pieces, 1)):
        config = dataclasses.replace(MODEL_PRESETS["tiny"], time_stride=stride)
        model = DeepSpeech2(config)
        report = DataReport()
        frames = lambda n, m=model: int(m.output_lengths(torch.tensor(n)))  # noqa: E731
        assert len(filter_for_training(utts, tokenizer, frames, 20.0, report)) == kept
        assert report.skipped == ({} if kept else {"transcript too long for the model's output frames "
                                                   "(CTC cannot align it)": 1})  # fmt: skip
        assert frame_rate(config) == 100 / stride


# --- training and inference end to end --------------------------------------------------------------------------


def test_the_run_caches_its_tokenizer_and_reuses_it(tmp_path, capsys):
    first = cached_bpe(CORPUS, 36, 0, tmp_path)
    assert (tmp_path / "tokenizer.model").read_bytes() == first.model
    assert cached_bpe(CORPUS, 36, 0, tmp_path).model == first.model
    assert "reused from" in capsys.readouterr().out
    other = cached_bpe(CORPUS, 35, 0, tmp_path)  # retrained
    assert len(other) == 36 and (tmp_path / "tokenizer.model").read_bytes() == other.model
    assert json.loads((tmp_path / "tokenizer.json").read_text())["trained_from"]["bpe_vocab_size"] == 35


@pytest.fixture(scope="module")
def bpe_run(tmp_path_factory):
    """`python train.py --tokenizer bpe --bpe_vocab_size 128 --model tiny --epochs 1` on the example set, with
    time stride 4 (beam-search evaluation on 4 utterances, to keep it short)."""
    runs = tmp_path_factory.mktemp("runs")
    args = ["--dataset", str(EXAMPLE), "--runs_dir", str(runs), "--model", "tiny", "--no-tensorboard"]
    args += ["--tokenizer", "bpe", "--bpe_vocab_size", "128", "--time_stride", "4", "--eval_beam_utterances", "4"]
    return train.main([*args, "--epochs", "1"])["run_dir"]


@pytest.mark.slow
def test_a_bpe_run_trains_and_inference_decodes_it_every_way(tmp_path, bpe_run):
    checkpoint = bpe_run / "best.pt"
    state = torch.load(checkpoint, weights_only=True)
    assert state["tokenizer"]["model"] == (bpe_run / "tokenizer.model").read_bytes()
    assert state["model_config"]["vocab_size"] == 129 and state["model_config"]["time_stride"] == 4
    assert state["train_config"]["tokenizer"] == "bpe"
    data = tmp_path / "five"  # five of the example utterances
    for sub in ("audio", "transcriptions"):
        (data / sub).mkdir(parents=True)
        for file in sorted((EXAMPLE / sub).iterdir())[:5]:
            shutil.copy(file, data / sub)
    refs = [p.read_text().strip() for p in (EXAMPLE / "transcriptions").glob("*.txt")]
    arpa = tmp_path / "lm.arpa"
    arpa.write_text(build_arpa(sorted(refs), order=2))
    common = ["--data_dir", str(data), "--checkpoint", str(checkpoint), "--beam_size", "4"]
    saved = tmp_path / "logits"
    for decoder in (["greedy", "--timestamps", "--save_logits", str(saved)], ["beam"], ["beam_lm", "--lm", str(arpa)]):
        out = tmp_path / decoder[0]
        assert inference.main([*common, "--out", str(out), "--decoder", *decoder]) == 0
        texts = [p.read_text() for p in out.glob("*.txt")]
        assert len(texts) == 5 and all(normalize(t) == t.strip() for t in texts)
        assert json.loads((out / "metrics.json").read_text())["utterances"] == 5
    for audio in (data / "audio").iterdir():
        timed = json.loads((tmp_path / "greedy" / f"{audio.stem}.json").read_text())
        assert [w["word"] for w in timed["words"]] == timed["text"].split()
        assert all(abs(w["end"] * 25 - round(w["end"] * 25)) < 1e-9 for w in timed["words"])  # 40 ms frames
    # saved log-probs carry the BPE tokenizer (its bytes in base64) and the frame rate (stride 4: 25 per second),
    # and decode to the same text without the model
    assert json.loads((saved / "frames.json").read_text()) == {"frame_rate": 25.0}
    assert inference.main(["--logits", str(saved), "--out", str(tmp_path / "again")]) == 0
    for p in (tmp_path / "greedy").glob("*.txt"):
        assert (tmp_path / "again" / p.name).read_text() == p.read_text()


@pytest.mark.slow
def test_resume_and_fine_tuning_keep_the_checkpoints_tokenizer(tmp_path, bpe_run):
    last = bpe_run / "last.pt"
    model_bytes = torch.load(last, weights_only=True)["tokenizer"]["model"]
    with pytest.raises(ValueError, match=r"--bpe_vocab_size 64 \(the run's is 128\)"):
        train.main(["--resume", str(last), "--bpe_vocab_size", "64"])
    args = ["--dataset", str(EXAMPLE), "--runs_dir", str(tmp_path), "--init_from", str(last), "--no-tensorboard"]
    with pytest.raises(ValueError, match=r"--tokenizer char \(the checkpoint's is bpe\), --bpe_vocab_size 64 "
                                         r"\(the checkpoint's is 128\)"):  # fmt: skip
        train.main([*args, "--tokenizer", "char", "--bpe_vocab_size", "64"])
    settings, _ = resolve_config([*args, "--tokenizer", "bpe", "--bpe_vocab_size", "128"])  # agreeing flags
    assert settings.train.tokenizer == "bpe" and settings.model.vocab_size == 129
    result = train.main([*args, "--epochs", "1", "--max_steps", "1", "--eval_utterances", "4"])
    assert torch.load(result["run_dir"] / "last.pt", weights_only=True)["tokenizer"]["model"] == model_bytes
