import pytest

from asr.text import BLANK, CharTokenizer, normalize, spell_number, tokenizer_from_state


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Hello, World!", "hello world"),
        ("  MANY   spaces\tand\nlines ", "many spaces and lines"),
        ("Don't stop 'em", "don't stop 'em"),
        ("It\u2019s Mr. Darcy\u2019s", "it's mr darcy's"),
        ("well-known café", "well known cafe"),
        ('"Quoted" \u2014 text ; ok?', "quoted text ok"),
        ("In 1999 I had 42 cats.", "in one thousand nine hundred ninety nine i had forty two cats"),
        ("Call 0800 now", "call zero eight zero zero now"),
        ("3.5", "three five"),
        ("100 2000000 15", "one hundred two million fifteen"),
        ("' '' '", ""),
        ("", ""),
    ],
)
def test_normalize(raw, expected):
    assert normalize(raw) == expected


def test_spell_number_edges():
    assert spell_number("0") == "zero"
    assert spell_number("1001") == "one thousand one"
    assert spell_number("1000000000000000") == " ".join(["one"] + ["zero"] * 15)


def test_default_vocabulary():
    tok = CharTokenizer()
    assert tok.vocab[:3] == [BLANK, " ", "'"] and len(tok) == 29 and tok.blank == 0 and tok.space == 1


def test_round_trip_is_exact():
    tok = CharTokenizer()
    text = normalize("It's the 3rd of May, and Mr. Bennet's 2 daughters said: \"no!\"")
    assert tok.decode(tok.encode(text)) == text


def test_encode_rejects_unnormalised_text():
    with pytest.raises(ValueError, match="normalize"):
        CharTokenizer().encode("Hello")


def test_ctc_collapse_hand_paths():
    tok = CharTokenizer()
    a, b, sp, blank = tok.encode("a")[0], tok.encode("b")[0], tok.space, tok.blank
    # repeats merge only when adjacent; a blank between two equal tokens keeps both
    assert tok.decode_ctc([a, a, blank, a, b, blank, blank, b]) == "aabb"
    assert tok.decode_ctc([a, a, blank, a, b, sp, sp, blank, b]) == "aab b"
    assert tok.decode_ctc([blank, blank]) == "" and tok.decode_ctc([]) == ""


def test_state_round_trip_and_bad_state():
    tok = CharTokenizer()
    assert tokenizer_from_state(tok.state_dict()).vocab == tok.vocab
    with pytest.raises(ValueError, match="unknown tokenizer"):
        tokenizer_from_state({"kind": "bpe9"})
    with pytest.raises(ValueError, match="must start with"):
        CharTokenizer(["a", BLANK])
