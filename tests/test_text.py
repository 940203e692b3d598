import pytest

from asr.text import BLANK, normalize, spell_number, spell_ordinal
from asr.tokenizers import CharTokenizer, tokenizer_from_state


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


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("well\u2014I said", "well i said"),  # em dash
        ("pre\u2013war", "pre war"),  # en dash
        ("\u00abbonjour\u00bbmonsieur", "bonjour monsieur"),  # guillemets
        ("\u201cyes\u201d\u2026no\u00bfok\u00a1", "yes no ok"),  # curly quotes, ellipsis, inverted marks
        ("a\u00a0b\u3000c", "a b c"),  # no-break and ideographic spaces
        ("don't o'clock rock 'n' roll", "don't o'clock rock 'n' roll"),
        ("don\u02bct", "don't"),  # modifier letter apostrophe
    ],
)
def test_normalize_separates_words_at_non_ascii_punctuation(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Éloïse naïve résumé Zoë", "eloise naive resume zoe"),  # NFKD splits off the accent
        ("Straße STRAẞE", "strasse strasse"),
        ("Æsir encyclopædia Œuvre cœur", "aesir encyclopaedia oeuvre coeur"),
        ("Søren Ørsted Łódź Đorđe", "soren orsted lodz dorde"),
        ("þorn Þing Ðan ħal ı", "thorn thing dan hal i"),
        ("\ufb01ne \uff21\uff22", "fine ab"),  # ligature and full-width letters
        ("\u043c\u0438\u0440 peace", "peace"),  # letters of other scripts are word breaks
    ],
)
def test_normalize_transliterates_letters(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1st 2nd 3rd 4th", "first second third fourth"),
        (
            "11th 12th 13th 20th 21st 22nd 99th",
            "eleventh twelfth thirteenth twentieth twenty first twenty second ninety ninth",
        ),
        ("100th 101st 1000th 1,000,000th", "one hundredth one hundred first one thousandth one millionth"),
        ("the 2ND of May, the 3RD time", "the second of may the third time"),
        ("two 4ths; the 5th-century", "two fourths the fifth century"),
        ("2nd.3rd", "second third"),
        ("3rdly 2ndary", "three rdly two ndary"),  # a suffix followed by more letters is not an ordinal
    ],
)
def test_normalize_reads_ordinals(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1,000", "one thousand"),
        ("12,345,678", "twelve million three hundred forty five thousand six hundred seventy eight"),
        ("2,500.75", "two thousand five hundred seventy five"),  # the decimal point still splits
        ("1,5", "one five"),  # not three digits after the comma: two numbers
        ("1,0000", "one zero zero zero zero"),
        ("1234,567", "one thousand two hundred thirty four five hundred sixty seven"),  # first group > 3 digits
        ("1,000,00", "one thousand zero zero"),
        ("1, 2, 3", "one two three"),
    ],
)
def test_normalize_thousands_separator(raw, expected):
    assert normalize(raw) == expected


def test_spell_ordinal():
    assert spell_ordinal("1") == "first" and spell_ordinal("0") == "zeroth" and spell_ordinal("40") == "fortieth"
    assert spell_ordinal("1912") == "one thousand nine hundred twelfth"
    assert spell_ordinal("2000000") == "two millionth" and spell_ordinal("007") == "zero zero seventh"


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


def test_uppercase_transcripts_take_the_quick_path_to_the_same_text():
    # LibriSpeech lines are normal text in capitals; the fast path must agree with the full rules at its edges
    cases = {"DON'T 'TIS JAMES'": "don't 'tis james'", "A  B": "a b", "A''B": "a'b", "' A": "a", "A '": "a",
             " A": "a", "HELLO": "hello", "": "", "'": "", "O'CLOCK 21ST": "o'clock twenty first"}  # fmt: skip
    assert {text: normalize(text) for text in cases} == cases
