"""asr/sentences.py: the one prose splitter behind `python -m asr.lm build` and benchmarks/synth_corpus.py."""

import pytest

from asr.sentences import expand_titles, gutenberg_body, split_sentences

BOOK = """The Project Gutenberg EBook of a Test, by Nobody

*** START OF THIS PROJECT GUTENBERG EBOOK A TEST ***

CHAPTER ONE

"My dear Mr. Bennet," said his lady.

*** END OF THIS PROJECT GUTENBERG EBOOK A TEST ***
This license text must never be spoken by anyone at all.
"""


def test_gutenberg_body_drops_header_and_license() -> None:
    body = gutenberg_body(BOOK)
    assert body.lstrip().startswith("CHAPTER ONE")
    assert "license" not in body and "EBook" not in body


def test_gutenberg_markers_any_case_and_only_in_order() -> None:
    text = "*** END OF THE PROJECT GUTENBERG EBOOK X ***\nhead\n***START OF THE PROJECT GUTENBERG EBOOK X ***\nbody\n"
    assert gutenberg_body(text + "*** end of the project gutenberg ebook x ***\nlicence") == "\nbody\n"
    assert gutenberg_body("*** START OF CHAPTER TWO\nall of it") == "*** START OF CHAPTER TWO\nall of it"


def test_split_sentences_keeps_titles_inside_a_sentence() -> None:
    text = 'Mr. Darcy bowed. "Oh! Single, my dear!" Mrs. Bennet said it.\n\nA new paragraph'
    assert split_sentences(text) == [
        "Mister Darcy bowed.",
        '"Oh!',
        'Single, my dear!"',
        "Missus Bennet said it.",
        "A new paragraph",
    ]


def test_a_sentence_ends_only_before_a_capital() -> None:
    text = (
        '"What an excellent father you have, girls!" said she, when the\ndoor was shut. "Oh, no. I am sure '
        'of it." See p. 5 and e.g. the next. \u201cHeaven forbid!\u201d She left. (Why?) [He knew.] It ended...'
    )
    assert split_sentences(text) == [
        '"What an excellent father you have, girls!" said she, when the door was shut.',
        '"Oh, no.',  # "no." is a word here, not the abbreviation of "number"
        'I am sure of it."',
        "See p. 5 and e.g. the next.",
        "\u201cHeaven forbid!\u201d",
        "She left.",
        "(Why?)",
        "[He knew.]",
        "It ended...",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dr. Jones, St. James and Mr. Smith, Jr. met", "Doctor Jones, Saint James and Mister Smith, Junior met"),
        ("MR. DARCY AND MRS. BENNET", "MISTER DARCY AND MISSUS BENNET"),
        ("Prof. Lee, Capt. Carter, Rev. Collins, Esq. there", "Prof Lee, Capt Carter, Rev Collins, Esquire there"),
        ("See No. 5 and NO. 6. No. Never.", "See No 5 and NO 6. No. Never."),
        ("mr. smith, Mr.Darcy, ends with Mr.", "mr. smith, Mr.Darcy, ends with Mr."),  # lower case, no space after
    ],
)
def test_expand_titles(text: str, expected: str) -> None:
    assert expand_titles(text) == expected


def test_split_sentences_of_nothing() -> None:
    assert split_sentences("") == [] and split_sentences("\n\n  \n\n") == []
