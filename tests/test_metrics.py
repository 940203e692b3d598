from asr.metrics import char_edits, score, utterance_rates, word_edits


def test_edit_counts():
    assert word_edits("the cat sat on the mat", "the cat sit on mat") == 2  # one substitution, one deletion
    assert char_edits("abc", "abd") == 1
    assert word_edits("", "a b") == 2


def test_corpus_wer_is_total_edits_over_total_words():
    pairs = [("a b c d e f g h i j", "a b c d e f g h i x"), ("hello", "")]  # 1/10 and 1/1
    s = score(pairs)
    assert (s.word_edits, s.words) == (2, 11)
    assert s.wer == 2 / 11
    assert s.wer_utt_mean == (0.1 + 1.0) / 2  # the per-utterance mean is a different number


def test_cer_counts_spaces():
    s = score([("ab cd", "abcd")])
    assert (s.char_edits, s.chars) == (1, 5)


def test_empty_references_never_divide_by_zero():
    assert utterance_rates("", "") == (0.0, 0.0)
    assert utterance_rates("", "noise") == (1.0, 1.0)
    s = score([("", "")])
    assert s.wer == 0.0 and s.cer == 0.0
    assert score([]).utterances == 0
