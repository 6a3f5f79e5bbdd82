"""Multiple comparisons: which rows of a table stay significant once the table is read
as a whole.

A report of ~40 categories at 95% each shows about two "significant" categories on
null data. So every table of tests is one family, and its p-values (from the bootstrap
standard errors, `gaps.Bootstrap.p_values`) are adjusted within it:

    holm  Holm's step-down method: controls the family-wise error rate (the chance of
          any false "significant" row in the table) at alpha, under any dependence
          between the rows. The default.
    bh    Benjamini-Hochberg: controls the false discovery rate (the expected share of
          false rows among the significant ones) at alpha; valid for independent or
          positively dependent tests (categories sharing documents are positively
          dependent through the shared per-document effects). More rows pass.
    none  no adjustment (p_adj = p), stated as such in the report.

Rows whose statistic rests on fewer than `min_docs` documents are *flagged*: shown, but
never marked significant and left out of the family (their bootstrap distribution is
the spread of a handful of documents, which a percentile interval does not describe).
Leaving them out is valid because the flag depends on document counts only, never on
the outcome.

Which tables are families (what `pipeline.py` passes here): the categories of the
family table; the open-class tags of the tag table; the domains; repeat lengths;
recall-cliff bins (each curve); open/close per domain; filtered gaps; the paired filtered
gaps of each training step (all pairs x filters of that step); the category terms of
each regression (the controls are not hypotheses and are not adjusted).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

METHODS = ("holm", "bh", "none")
DESCRIPTION = {
    "holm": "Holm's step-down correction (family-wise error rate)",
    "bh": "Benjamini-Hochberg correction (false discovery rate)",
    "none": "no correction for multiple comparisons",
}


def holm(p: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values [m]; NaN entries stay NaN and do not count in m."""
    p = np.asarray(p, np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adj, 1.0)
    return out


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) [m]; NaN entries stay NaN and do
    not count in m."""
    p = np.asarray(p, np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = p[order] * m / np.arange(1, m + 1)
    adj = np.minimum.accumulate(scaled[::-1])[::-1]
    out[order] = np.minimum(adj, 1.0)
    return out


def adjust(p: np.ndarray, method: str) -> np.ndarray:
    """Adjusted p-values by `method` ("holm" | "bh" | "none")."""
    if method == "holm":
        return holm(p)
    if method == "bh":
        return benjamini_hochberg(p)
    if method == "none":
        return np.asarray(p, np.float64).copy()
    raise ValueError(f"unknown correction {method!r}; choose from {METHODS}")


def mark(table: pd.DataFrame, *, method: str = "holm", alpha: float = 0.05,
         min_docs: int = 5, p_col: str = "p", docs_col: str | None = "n_docs",
         groups: str | None = None) -> pd.DataFrame:
    """A copy of `table` with columns `flagged` (fewer than `min_docs` documents),
    `p_adj` (NaN for flagged rows) and `significant` (p_adj < alpha, never for flagged
    rows). The family is the whole table, or each group of rows with the same value in
    column `groups`."""
    out = table.copy()
    if out.empty:
        for c, v in (("flagged", False), ("p_adj", np.nan), ("significant", False)):
            out[c] = pd.Series(dtype=type(v) if not isinstance(v, float) else float)
        return out
    p = out[p_col].to_numpy(np.float64)
    flagged = (np.zeros(len(out), bool) if docs_col is None
               else out[docs_col].to_numpy() < min_docs)
    test_p = np.where(flagged, np.nan, p)
    p_adj = np.full(len(out), np.nan)
    keys = np.zeros(len(out), int) if groups is None else pd.factorize(out[groups])[0]
    for g in np.unique(keys):
        rows = np.flatnonzero(keys == g)
        p_adj[rows] = adjust(test_p[rows], method)
    out["flagged"] = flagged
    out["p_adj"] = p_adj
    with np.errstate(invalid="ignore"):
        out["significant"] = np.isfinite(p_adj) & (p_adj < alpha)
    return out
