"""Cluster bootstrap and gap statistics on hand-computed cases."""

import numpy as np
import pandas as pd

from hybrid_jax.analysis import gaps
from hybrid_jax.analysis.families import BIT


def test_bootstrap_of_two_windows_matches_the_enumerated_distribution():
    # Window 0: gaps 0, 0 (mean 0); window 1: gaps 2, 2 (mean 2). Resampling 2 windows:
    # {0,0} p=1/4 -> 0, {0,1} p=1/2 -> 1, {1,1} p=1/4 -> 2: 2.5%/97.5% = 0 and 2, SE 1/sqrt2.
    boot = gaps.Bootstrap.over(np.array([0, 0, 1, 1]), n_boot=4000, seed=3)
    t = gaps.mean_table(boot, np.array([0.0, 0.0, 2.0, 2.0]), {"all": np.ones(4, bool)})
    row = t.iloc[0]
    assert row["n"] == 4 and row["mean"] == 1.0
    assert row["lo"] == 0.0 and row["hi"] == 2.0
    assert abs(row["se"] - 2 ** -0.5) < 0.03
    assert np.all(boot.counts.sum(1) == 2)  # every resample draws two windows


def test_token_weighting_and_identical_windows_give_a_zero_width_interval():
    boot = gaps.Bootstrap.over(np.array([0, 0, 0, 1, 2, 2]), n_boot=200, seed=0)
    v = np.full(6, 0.3)
    t = gaps.mean_table(boot, v, {"x": np.array([1, 1, 0, 1, 1, 0], bool)})
    assert np.allclose(t[["mean", "lo", "hi"]].to_numpy(), 0.3) and t["se"][0] < 1e-12
    # Token-weighted: (1 + 1 + 4) / 3, not the mean of window means.
    t = gaps.mean_table(boot, np.array([1.0, 1.0, 9.0, 4.0, 9.0, 9.0]),
                        {"x": np.array([1, 1, 0, 1, 0, 0], bool)})
    assert t["mean"][0] == 2.0


def test_cluster_interval_is_wider_than_the_token_level_spread_for_clustered_data():
    rng = np.random.default_rng(0)
    w = np.repeat(np.arange(40), 50)
    v = np.repeat(rng.normal(0, 1, 40), 50) + rng.normal(0, 0.1, 2000)
    boot = gaps.Bootstrap.over(w, n_boot=1000, seed=1)
    t = gaps.mean_table(boot, v, {"all": np.ones(2000, bool)})
    naive_se = v.std() / np.sqrt(v.size)
    assert t["se"][0] > 4 * naive_se  # ~ sd of window means / sqrt(40) = 0.16 vs 0.022


def test_diff_row_is_paired():
    w = np.array([0, 0, 1, 1, 2, 2])
    v = np.array([1.0, 0.5, 3.0, 2.5, -1.0, -1.5])  # a always exceeds b by 0.5 per window
    a = np.array([1, 0, 1, 0, 1, 0], bool)
    r = gaps.diff_row(gaps.Bootstrap.over(w, 500, 0), v, a, ~a, "a - b")
    assert abs(r["diff"] - 0.5) < 1e-12 and abs(r["lo"] - 0.5) < 1e-12
    assert abs(r["hi"] - 0.5) < 1e-12


def test_repeat_recall_and_open_close_tables():
    boot = gaps.Bootstrap.over(np.zeros(6, int), 50, 0)
    gap = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    rep = np.array([0, 0, 1, 5, 5, 16])
    t = gaps.by_repeat_length(boot, gap, rep)
    assert t.set_index("n").loc[[0, 1, 5, 16], "mean"].tolist() == [0.5, 2.0, 3.5, 5.0]
    assert t.set_index("n").loc[2, "tokens"] == 0
    dist = np.array([-1, 5, 40, 600, 31, 3000])
    rc = gaps.recall_cliff(boot, gap, dist, rep >= 5)
    assert rc["n"].tolist() == [1, 0, 0, 1, 1] and rc["mean"][0] == 4.0
    feats = pd.DataFrame({"is_open": [1, 0, 1, 0, 0, 0], "is_close": [0, 1, 0, 1, 0, 0],
                          "domain": ["a", "a", "b", "b", "b", "b"]}).astype(
        {"is_open": bool, "is_close": bool})
    oc = gaps.open_close(boot, gap, feats).set_index("domain")
    assert oc.loc["all", "diff"] == (0 + 2) / 2 - (1 + 3) / 2
    assert oc.loc["a", "diff"] == -1.0 and oc.loc["b", "diff"] == -1.0


def test_vocab_slope_recovers_a_line():
    # Three families whose mean gaps are 0.1 * log|V| + 0.2 exactly.
    vocab = {"noun": 1000, "verb": 100, "determiner": 10}
    tags = np.repeat([BIT["noun"], BIT["verb"], BIT["determiner"]], 30)
    gap = np.concatenate([np.full(30, 0.2 + 0.1 * np.log(v)) for v in vocab.values()])
    boot = gaps.Bootstrap.over(np.tile(np.arange(10), 9), 200, 0)
    r = gaps.vocab_slope(boot, gap, tags, vocab, min_tokens=5)
    assert r["families"] == ["noun", "verb", "determiner"]
    assert abs(r["slope"] - 0.1) < 1e-12 and abs(r["lo"] - 0.1) < 1e-9
