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
