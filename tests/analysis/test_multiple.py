"""Multiple comparisons: Holm and Benjamini-Hochberg against statsmodels, flagging."""

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from hybrid_jax.analysis import multiple


@pytest.mark.parametrize(("ours", "theirs"), [("holm", "holm"), ("bh", "fdr_bh")])
def test_adjusted_p_values_match_statsmodels(ours, theirs):
    rng = np.random.default_rng(0)
    for m in (1, 2, 7, 40):
        p = rng.random(m) ** 3
        p[: m // 3] = p[0]  # ties
        np.testing.assert_allclose(multiple.adjust(p, ours), multipletests(p, method=theirs)[1])
    p = np.array([0.01, np.nan, 0.04, 0.03])  # NaN: not a test, not counted in m
    want = multipletests(p[[0, 2, 3]], method=theirs)[1]
    got = multiple.adjust(p, ours)
    assert np.isnan(got[1]) and np.allclose(got[[0, 2, 3]], want)


def test_flagged_rows_are_never_significant_and_leave_the_family():
    t = pd.DataFrame({"name": list("abcde"), "p": [1e-9, 0.004, 0.02, 0.03, 0.5],
                      "n_docs": [2, 10, 10, 10, 10]})
    out = multiple.mark(t, method="holm", alpha=0.05, min_docs=5)
    assert out["flagged"].tolist() == [True, False, False, False, False]
    assert not out.loc[0, "significant"] and np.isnan(out.loc[0, "p_adj"])
    # m = 4 unflagged rows: Holm 0.004*4, 0.02*3, ... as statsmodels on those four.
    np.testing.assert_allclose(out["p_adj"][1:], multipletests(t["p"][1:], method="holm")[1])
    assert out["significant"].tolist() == [False, True, False, False, False]
    assert multiple.mark(t, method="none", min_docs=1)["significant"].sum() == 4


def test_families_by_group():
    t = pd.DataFrame({"step": [1, 1, 2, 2], "p": [0.02, 0.03, 0.02, 0.9],
                      "n_docs": [9, 9, 9, 9]})
    out = multiple.mark(t, method="bh", groups="step")
    np.testing.assert_allclose(out["p_adj"], [0.03, 0.03, 0.04, 0.9])
    with pytest.raises(ValueError, match="unknown correction"):
        multiple.adjust(np.array([0.1]), "bonferoni")
