"""Repeated n-gram lengths, distances and the filters, on hand-computed cases."""

import numpy as np
import pytest

from hybrid_jax.analysis import filters
from hybrid_jax.analysis.repeats import repeat_lengths, repeat_stats


def test_hand_computed_repeat_lengths_and_distances():
    #         a  b  c  a  b  c  d  a  b  x  b
    tok = np.array([0, 1, 2, 0, 1, 2, 3, 0, 1, 9, 1])
    r = repeat_stats(tok, np.zeros_like(tok), dist_ns=(1, 2, 3))
    assert r.rep.tolist() == [0, 0, 0, 1, 2, 3, 0, 1, 2, 0, 1]
    assert r.dist[1].tolist() == [-1, -1, -1, 3, 3, 3, -1, 4, 4, -1, 2]
    # "a b" at 7-8 last seen ending at 4; "a b c" at 3-5 seen ending at 2.
    assert r.dist[2].tolist() == [-1, -1, -1, -1, 3, 3, -1, -1, 4, -1, -1]
    assert r.dist[3].tolist() == [-1, -1, -1, -1, -1, 3, -1, -1, -1, -1, -1]


def test_repeat_length_is_capped_and_overlapping_runs_count():
    tok = np.zeros(25, np.int64)  # a a a ...: token i completes an i-gram seen at i-1
    assert repeat_lengths(tok, np.zeros(25), max_n=16).tolist() == (
        [0] + list(range(1, 17)) + [16] * 8)


def test_contexts_do_not_see_each_other_and_position_gaps_break_ngrams():
    tok = np.array([5, 6, 5, 6, 5, 6])
    ctx = np.array([0, 0, 1, 1, 1, 1])
    assert repeat_lengths(tok, ctx).tolist() == [0, 0, 0, 0, 1, 2]
    # Positions 0 1 2 | 10 11 12 in one context: the n-gram "6 5" cannot bridge the gap
    # but tokens before it still count as seen.
    tok = np.array([5, 6, 7, 6, 5, 6])
    pos = np.array([0, 1, 2, 10, 11, 12])
    r = repeat_stats(tok, np.zeros(6), positions=pos, dist_ns=(1,))
    assert r.rep.tolist() == [0, 0, 0, 1, 1, 2]
    assert r.dist[1].tolist() == [-1, -1, -1, 9, 11, 2]


def test_matches_brute_force_on_random_streams():
    rng = np.random.default_rng(1)
    for _ in range(100):
        n = int(rng.integers(1, 60))
        tok = rng.integers(0, int(rng.integers(1, 4)), n)
        ctx = np.sort(rng.integers(0, 3, n))
        got = repeat_lengths(tok, ctx, max_n=6)
        want = np.zeros(n, np.int64)
        for i in range(n):
            s = i
            while s > 0 and ctx[s - 1] == ctx[i]:
                s -= 1
            for m in range(1, 7):
                if i - m + 1 < s:
                    break
                g = list(tok[i - m + 1:i + 1])
                if not any(list(tok[j - m + 1:j + 1]) == g for j in range(s + m - 1, i)):
                    break
                want[i] = m
        np.testing.assert_array_equal(got, want)


def test_non_contiguous_contexts_are_rejected():
    with pytest.raises(ValueError, match="contiguous"):
        repeat_lengths(np.array([1, 2, 3]), np.array([0, 1, 0]))


def test_filter_masks_hand_case():
    #                a  b  c  d  e  a  b  c  d  e  f
    tok = np.array([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5])
    content = np.array([1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1], bool)
    m = filters.filter_masks(tok, np.zeros(11), content)
    assert m["all"].all()
    assert np.flatnonzero(m["content_not_repeated"]).tolist() == [0, 2, 3, 10]
    assert np.flatnonzero(m["repeated_5gram"]).tolist() == [9]
    means = filters.filtered_means(np.arange(11.0), m)
    assert means == {"all": 5.0, "content_not_repeated": 15 / 4, "repeated_5gram": 9.0}
    assert filters.filtered_counts(m) == {"all": 11, "content_not_repeated": 4,
                                          "repeated_5gram": 1}


def test_filter_masks_batch_keeps_rows_and_segments_apart():
    tok = np.array([[1, 2, 1, 2, 7, 7], [1, 2, 3, 4, 5, 6]])
    seg = np.array([[0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0]])
    content = np.ones_like(tok, bool)
    valid = np.ones_like(tok, bool)
    valid[0, 5] = False
    m = filters.filter_masks_batch(tok, seg, content, valid_bt=valid)
    assert m["content_not_repeated"].tolist() == [[True, True, False, False, True, False],
                                                  [True] * 6]
    assert not m["all"][0, 5]


def test_filtered_means_names_a_nan_loss():
    m = {"all": np.ones(3, bool)}
    with pytest.raises(ValueError, match=r"index \[1\]"):
        filters.filtered_means(np.array([1.0, np.nan, 2.0]), m)
