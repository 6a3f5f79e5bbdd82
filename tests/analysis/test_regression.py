"""OLS with controls recovers planted coefficients."""

import numpy as np
import pandas as pd

from hybrid_jax.analysis.regression import gap_regression


def synthetic_feats(n, rng):
    return pd.DataFrame({
        "window": np.repeat(np.arange(n // 50), 50),
        "domain": np.where(rng.random(n) < 0.5, "books", "news"),
        "log_freq": rng.normal(-8, 2, n), "log_position": np.log1p(rng.integers(0, 512, n)),
        "subword": rng.random(n) < 0.3, "rep": rng.integers(0, 17, n),
        "prev_dist": np.where(rng.random(n) < 0.4, -1, rng.integers(1, 500, n)),
    })


def test_planted_category_effect_is_recovered_under_confounding():
    rng = np.random.default_rng(0)
    n = 20_000
    feats = synthetic_feats(n, rng)
    difficulty = rng.gamma(2.0, 1.0, n)
    # The category is more common on difficult tokens, so its raw mean gap is confounded
    # by difficulty; the regression must separate the two.
    cat = rng.random(n) < 0.2 + 0.1 * (difficulty > 2)
    other = rng.random(n) < 0.3
    gap = (0.05 * cat + 0.02 * difficulty - 0.003 * feats["rep"]
           + 0.01 * (feats["domain"] == "news") + rng.normal(0, 0.05, n))
    raw = gap[cat].mean() - gap[~cat].mean()
    r = gap_regression(gap.to_numpy(), feats, difficulty, {"cat": cat, "other": other})
    t = r.table.set_index("term")
    assert abs(raw - 0.05) > 0.003  # the raw contrast is biased...
    assert abs(t.loc["cat_cat", "coef"] - 0.05) < 3 * t.loc["cat_cat", "se"]  # ...OLS is not
    assert t.loc["cat_cat", "lo"] < 0.05 < t.loc["cat_cat", "hi"]
    assert abs(t.loc["difficulty", "coef"] - 0.02) < 0.002
    assert abs(t.loc["rep", "coef"] + 0.003) < 0.0005
    assert abs(t.loc["domain_news", "coef"] - 0.01) < 0.005
    assert abs(t.loc["cat_other", "coef"]) < 3 * t.loc["cat_other", "se"]
    assert r.n == n and 0 < r.r2 < 1


def test_constant_columns_are_dropped_and_listed():
    rng = np.random.default_rng(1)
    feats = synthetic_feats(1000, rng)
    feats["domain"] = "books"
    gap = rng.normal(size=1000)
    r = gap_regression(gap, feats, np.ones(1000), {"never": np.zeros(1000, bool)})
    assert set(r.dropped) == {"difficulty", "cat_never"}
    assert "cat_never" not in set(r.table["term"])


def test_clustered_by_documents_and_category_terms_corrected():
    import statsmodels.api as sm
    from statsmodels.stats.multitest import multipletests

    from hybrid_jax.analysis.regression import mark_terms

    rng = np.random.default_rng(2)
    n = 6000
    feats = synthetic_feats(n, rng)  # windows of 50 tokens
    feats["doc_id"] = np.repeat([f"d{i}" for i in range(30)], n // 30)  # 4 windows each
    doc = pd.factorize(feats["doc_id"])[0]
    cat = rng.random(n) < 0.3
    rare = np.zeros(n, bool)
    rare[doc < 2] = rng.random(int((doc < 2).sum())) < 0.5  # in 2 documents only
    gap = 0.03 * cat + rng.normal(0, 0.2, 30)[doc] + rng.normal(0, 0.05, n)
    ind = {"cat": cat, "rare": rare}
    r_doc = gap_regression(gap, feats, np.ones(n), ind, groups=feats["doc_id"].to_numpy(),
                           domain_effects=False)
    r_win = gap_regression(gap, feats, np.ones(n), ind, domain_effects=False)
    # The same fit as statsmodels' with document clusters.
    x = r_doc.table["term"].tolist()
    design = pd.DataFrame({"intercept": 1.0, **{c: feats[c].astype(float) for c in
                                                  ("log_freq", "log_position", "subword", "rep")}})
    design["log_prev_dist"] = np.log1p(np.maximum(feats["prev_dist"], 0))
    design["new_token"] = (feats["prev_dist"] < 0).astype(float)
    design["cat_cat"], design["cat_rare"] = cat.astype(float), rare.astype(float)
    ref = sm.OLS(gap, design[x].to_numpy()).fit(cov_type="cluster",
                                                cov_kwds={"groups": doc})
    np.testing.assert_allclose(r_doc.table["se"], ref.bse, rtol=1e-10)
    t_doc, t_win = r_doc.table.set_index("term"), r_win.table.set_index("term")
    assert t_doc.loc["intercept", "se"] > 1.3 * t_win.loc["intercept", "se"]
    assert t_doc.loc["cat_rare", "n_docs"] == 2 and t_doc.loc["cat_cat", "n_docs"] == 30
    marked = mark_terms(r_doc.table, "holm", 0.05, min_docs=5).set_index("term")
    assert marked["tested"].sum() == 2 and not marked.loc["log_freq", "tested"]
    assert marked.loc["cat_rare", "flagged"] and not marked.loc["cat_rare", "significant"]
    # Only one unflagged category term: Holm over m = 1 leaves its p as it is.
    assert marked.loc["cat_cat", "p_adj"] == multipletests([t_doc.loc["cat_cat", "p"]],
                                                           method="holm")[1][0]
