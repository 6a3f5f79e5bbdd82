"""Tokens <-> words (and any labelled spans) by character-span overlap.

The study's rule (`token_analysis_method.md` §3): every subtoken inherits its word's
tags, and a token overlapping two words gets both ("multi-tag attribution"); not
first-subtoken-only. Overlap means sharing at least one character: token [s, e) and
word [ws, we) overlap iff s < we and ws < e. A token of whitespace between words
overlaps none and gets no word tags; an empty token (s == e) overlaps nothing.

Spans must be sorted by start and must not overlap each other (words, structure
spans and bracket spans all are), which makes every look-up a binary search:
O((n + k) log k) for n tokens and k spans, all in numpy.
"""

from __future__ import annotations

import dataclasses

import numpy as np


def overlap_pairs(tok_start: np.ndarray, tok_end: np.ndarray, span_start: np.ndarray,
                  span_end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(token index, span index) int64 [p] for every overlapping pair, grouped by token
    in token order and by span order within a token.

    Tokens may come in any order; spans must be sorted and non-overlapping.
    """
    ts = np.asarray(tok_start, np.int64)
    te = np.asarray(tok_end, np.int64)
    ss = np.asarray(span_start, np.int64)
    se = np.asarray(span_end, np.int64)
    if ss.size > 1 and (np.any(ss[1:] < se[:-1]) or np.any(se < ss)):
        raise ValueError("spans must be sorted and non-overlapping")
    first = np.searchsorted(se, ts, side="right")  # first span ending after the token start
    stop = np.searchsorted(ss, te, side="left")  # spans starting before the token end
    count = np.where(te > ts, np.maximum(stop - first, 0), 0)
    tok_idx = np.repeat(np.arange(ts.size), count)
    offsets = np.cumsum(count) - count
    span_idx = first[tok_idx] + (np.arange(tok_idx.size) - offsets[tok_idx])
    return tok_idx, span_idx


def overlap_or(tok_start: np.ndarray, tok_end: np.ndarray, span_start: np.ndarray,
               span_end: np.ndarray, span_bits: np.ndarray) -> np.ndarray:
    """int64 [n]: for every token, the OR of the bits of all spans it overlaps (0: none)."""
    tok_idx, span_idx = overlap_pairs(tok_start, tok_end, span_start, span_end)
    out = np.zeros(np.asarray(tok_start).shape[0], np.int64)
    if tok_idx.size:
        bits = np.asarray(span_bits, np.int64)[span_idx]
        # Pairs are grouped by token, so one reduceat per group start does the OR.
        starts = np.flatnonzero(np.r_[True, tok_idx[1:] != tok_idx[:-1]])
        out[tok_idx[starts]] = np.bitwise_or.reduceat(bits, starts)
    return out


@dataclasses.dataclass
class WordAlignment:
    """Per-token results of aligning tokens to words (all [n] arrays).

    tags:       int64 OR of the family masks of the words the token overlaps.
    n_words:    int64 how many words the token overlaps (0 for whitespace).
    word:       int64 index of the first word it overlaps, -1 if none.
    subword:    bool the token's word is split over more than one token.
    continues:  bool the token is not the first token of its (first) word.
    """

    tags: np.ndarray
    n_words: np.ndarray
    word: np.ndarray
    subword: np.ndarray
    continues: np.ndarray


def align_words(tok_start: np.ndarray, tok_end: np.ndarray, word_start: np.ndarray,
                word_end: np.ndarray, word_tags: np.ndarray) -> WordAlignment:
    """Aligns one document's tokens (any order) to its words (sorted, disjoint)."""
    n = np.asarray(tok_start).shape[0]
    tok_idx, word_idx = overlap_pairs(tok_start, tok_end, word_start, word_end)
    tags = np.zeros(n, np.int64)
    n_words = np.bincount(tok_idx, minlength=n).astype(np.int64)
    word = np.full(n, -1, np.int64)
    subword = np.zeros(n, bool)
    continues = np.zeros(n, bool)
    if tok_idx.size == 0:
        return WordAlignment(tags, n_words, word, subword, continues)
    starts = np.flatnonzero(np.r_[True, tok_idx[1:] != tok_idx[:-1]])
    tags[tok_idx[starts]] = np.bitwise_or.reduceat(
        np.asarray(word_tags, np.int64)[word_idx], starts)
    word[tok_idx[starts]] = word_idx[starts]
    # A word covered by more than one token is split into subwords.
    k = np.asarray(word_start).shape[0]
    tokens_per_word = np.bincount(word_idx, minlength=k)
    split = tokens_per_word[word_idx] > 1
    subword[tok_idx[split]] = True
    # The first token of a word is the one with the smallest start offset among those
    # overlapping it; every other token of the word continues it.
    ts = np.asarray(tok_start, np.int64)
    first_start = np.full(k, np.iinfo(np.int64).max)
    np.minimum.at(first_start, word_idx, ts[tok_idx])
    has_word = word >= 0
    continues[has_word] = ts[has_word] > first_start[word[has_word]]
    return WordAlignment(tags, n_words, word, subword, continues)
