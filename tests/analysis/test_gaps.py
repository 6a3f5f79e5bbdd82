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


def test_document_clustering_resamples_documents_not_windows():
    # Three documents of 4 tokens, each over two windows, with gaps 0, 1 and 2. Resampling
    # the 3 documents: var(mean) = var_pop({0,1,2}) / 3 = 2/9; the 6 windows as if
    # independent: 2/18, too small by a factor 2.
    doc = np.repeat(["d0", "d1", "d2"], 4)
    win = np.repeat(np.arange(6), 2)
    gap = np.repeat([0.0, 1.0, 2.0], 4)
    by_doc = gaps.Bootstrap.for_tokens(doc, win, "document", n_boot=40_000, seed=0)
    by_win = gaps.Bootstrap.for_tokens(doc, win, "window", n_boot=40_000, seed=0)
    assert (by_doc.unit, by_doc.n_clusters, by_win.n_clusters) == ("document", 3, 6)
    t_doc = gaps.mean_table(by_doc, gap, {"all": np.ones(12, bool), "d2": doc == "d2"})
    t_win = gaps.mean_table(by_win, gap, {"all": np.ones(12, bool), "d2": doc == "d2"})
    assert abs(t_doc["se"][0] - (2 / 9) ** 0.5) < 0.005
    assert abs(t_win["se"][0] - (1 / 9) ** 0.5) < 0.005
    # Documents are counted as documents whatever the cluster unit.
    assert t_doc["n_docs"].tolist() == [3, 1] and t_win["n_docs"].tolist() == [3, 1]
    # One document is no interval (its draws are all equal), and flagged downstream.
    assert np.isnan(t_doc["lo"][1]) and np.isnan(t_doc["hi"][1])
    assert t_win["lo"][1] == t_win["hi"][1] == 2.0  # two windows of one document


def test_expanded_levels_are_hesterbergs_for_equal_clusters():
    from scipy import stats

    boot = gaps.Bootstrap.over(np.arange(10), n_boot=10, seed=0)
    cnt = np.ones((15, 2)) * [[3.0, 7.0]]  # 15 equal clusters, two statistics
    k = gaps.clusters_with(cnt)
    np.testing.assert_allclose(k, [15.0, 15.0])
    want = stats.norm.sf(np.sqrt(15 / 14) * stats.t.ppf(0.975, 14))
    np.testing.assert_allclose(boot.levels(k, 2), want)
    assert 0.012 < want < 0.014
    # Unequal sizes count as fewer clusters; one cluster holding everything as one.
    assert gaps.clusters_with(np.array([[100.0], [1.0], [1.0]]))[0] < 1.1
    assert 1.0 < gaps.clusters_with(np.array([[5.0], [1.0], [1.0], [1.0]]))[0] < 4.0


def test_p_value_is_the_t_test_of_the_bootstrap_se():
    from scipy import stats

    rng = np.random.default_rng(0)
    boot = gaps.Bootstrap.over(np.arange(4), n_boot=20_000, seed=0)
    draws = rng.normal(0.3, 0.1, (20_000, 1))
    p = boot.p_values(np.array([0.3]), draws, np.array([12.0]))
    se = draws.std(ddof=1)
    want = 2 * stats.t.sf(0.3 / se * np.sqrt(11 / 12), 11)
    np.testing.assert_allclose(p, want)
    # ... and it agrees with the expanded interval: p < 0.05 iff the interval excludes 0.
    for mu in (0.15, 0.2, 0.25, 0.3):
        d = rng.normal(mu, 0.1, (20_000, 1))
        lo, hi, _ = boot.interval(d, np.array([12.0]))
        p = boot.p_values(np.array([mu]), d, np.array([12.0]))[0]
        assert (p < 0.05) == (lo[0] > 0), mu
    assert boot.p_values(np.array([0.0]), draws, np.array([12.0]))[0] == 1.0
