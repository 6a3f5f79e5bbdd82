"""Token <-> word alignment by character overlap, on hand-computed cases."""

import numpy as np

from hybrid_jax.analysis.align import align_words, overlap_or, overlap_pairs
from hybrid_jax.analysis.families import BIT, names_of

# text:  "unhappy cats, don't"
#         0123456789012345678
# words: unhappy [0,7) adjective, cats [8,12) noun, "," [12,13) punct, don't [14,19) aux_do
WORDS = (np.array([0, 8, 12, 14]), np.array([7, 12, 13, 19]),
         np.array([BIT["adjective"], BIT["noun"], BIT["punctuation"], BIT["aux_do"]]))


def test_subwords_inherit_their_word_and_a_spanning_token_gets_both():
    # tokens: "un" "happy" " cats" ", " "don" "'t"  and one token "s," spanning two words
    ts = np.array([0, 2, 7, 12, 14, 17, 11])
    te = np.array([2, 7, 12, 14, 17, 19, 13])
    al = align_words(ts, te, *WORDS)
    assert [names_of(int(t)) for t in al.tags] == [
        ["adjective"], ["adjective"], ["noun"], ["punctuation"], ["aux_do"], ["aux_do"],
        ["noun", "punctuation"]]
    assert al.n_words.tolist() == [1, 1, 1, 1, 1, 1, 2]
    assert al.word.tolist() == [0, 0, 1, 2, 3, 3, 1]
    # unhappy, cats (" cats" and "s,"), "," (", " and "s,") and don't are all split.
    assert al.subword.tolist() == [True, True, True, True, True, True, True]
    # ", " continues the word "," that "s," (starting earlier) began.
    assert al.continues.tolist() == [False, True, False, True, False, True, True]


def test_whitespace_and_empty_tokens_overlap_nothing():
    ts, te = np.array([7, 13, 5]), np.array([8, 14, 5])  # " ", " ", empty
    al = align_words(ts, te, *WORDS)
    assert al.tags.tolist() == [0, 0, 0]
    assert al.n_words.tolist() == [0, 0, 0]
    assert al.word.tolist() == [-1, -1, -1]


def test_single_token_words_are_not_subwords():
    ts, te = np.array([0, 8]), np.array([7, 12])
    al = align_words(ts, te, *WORDS)
    assert al.subword.tolist() == [False, False]
    assert al.continues.tolist() == [False, False]


def test_overlap_pairs_in_token_then_span_order():
    tok, span = overlap_pairs(np.array([10, 0]), np.array([20, 3]),
                              np.array([0, 2, 9, 15, 20]), np.array([1, 9, 15, 20, 30]))
    # token 0 [10,20) overlaps spans 2 [9,15) and 3 [15,20) but not 4 [20,30);
    # token 1 [0,3) overlaps spans 0 and 1.
    assert tok.tolist() == [0, 0, 1, 1]
    assert span.tolist() == [2, 3, 0, 1]


def test_overlap_or_combines_bits():
    out = overlap_or(np.array([0, 4, 9]), np.array([6, 5, 10]), np.array([0, 3, 5]),
                     np.array([3, 5, 8]), np.array([1, 2, 4]))
    assert out.tolist() == [7, 2, 0]
