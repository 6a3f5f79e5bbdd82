"""OLS of the per-token gap on category indicators with the study's controls.

The study re-checks raw category gaps with a regression that "estimates the category's
own effect while holding other factors constant" (paper Eq. 1;
`token_analysis_method.md` §4). Controls named there: difficulty, frequency, position,
subword status, local reuse, previous-token distance. Here:

    difficulty        mean loss of the two models on the token (nats)
    log_freq          log relative frequency in the reference counts
    log_position      log(1 + position in the window)
    subword           1 if the token's word is split over several tokens
    rep               repeated n-gram length (local reuse), 0..16
    log_prev_dist     log(1 + tokens since the token id last occurred); 0 when new
    new_token         1 if the token id has not occurred before in its context
    domain_*          domain fixed effects (first domain is the reference)

Category indicators are multi-hot (a token overlapping two words carries both), so the
model is additive in categories. Standard errors are cluster-robust on the analysis'
resampling unit (`groups`: the documents by default, as the bootstrap of `gaps.py`).
Columns that are constant over the sample (a category no token has, a single domain)
are dropped and listed, rather than left to make the design singular.

The category terms of one regression are one family of tests (`mark_terms`: Holm or
BH over the `cat_*` terms, each term flagged when its category occurs in fewer than
min_docs documents of the sample); the controls are not hypotheses and are not tested.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from hybrid_jax.analysis import multiple

CONTROLS = ("difficulty", "log_freq", "log_position", "subword", "rep", "log_prev_dist",
            "new_token")


@dataclasses.dataclass
class RegressionResult:
    """coef table (term, coef, se, lo, hi, p), sample size, R^2, dropped columns."""

    table: pd.DataFrame
    n: int
    r2: float
    dropped: list[str]
    reference: str

    def coef(self, term: str) -> float:
        return float(self.table.set_index("term").loc[term, "coef"])

    def to_dict(self) -> dict:
        return {"n": self.n, "r2": self.r2, "dropped": self.dropped,
                "reference": self.reference, "terms": self.table.to_dict("records")}


def control_matrix(feats: pd.DataFrame, difficulty: np.ndarray,
                   controls: tuple[str, ...] = CONTROLS) -> pd.DataFrame:
    """The control columns, float64, one row per token."""
    prev = feats["prev_dist"].to_numpy()
    cols = {
        "difficulty": np.asarray(difficulty, np.float64),
        "log_freq": feats["log_freq"].to_numpy(np.float64),
        "log_position": feats["log_position"].to_numpy(np.float64),
        "subword": feats["subword"].to_numpy().astype(np.float64),
        "rep": feats["rep"].to_numpy().astype(np.float64),
        "log_prev_dist": np.log1p(np.maximum(prev, 0)).astype(np.float64),
        "new_token": (prev < 0).astype(np.float64),
    }
    unknown = [c for c in controls if c not in cols]
    if unknown:
        raise KeyError(f"unknown controls {unknown}; known: {list(cols)}")
    return pd.DataFrame({c: cols[c] for c in controls})


def fit_ols(y: np.ndarray, design: pd.DataFrame, groups: np.ndarray | None = None,
            reference: str = "") -> RegressionResult:
    """OLS of y on `design` (an intercept is added), cluster-robust SEs by `groups`."""
    import statsmodels.api as sm  # deferred: statsmodels takes a second to import

    y = np.asarray(y, np.float64)
    x = design.astype(np.float64)
    const = [c for c in x.columns if np.ptp(x[c].to_numpy()) == 0]
    x = x.drop(columns=const)
    x.insert(0, "intercept", 1.0)
    model = sm.OLS(y, x.to_numpy(), hasconst=True)
    if groups is not None and pd.unique(np.asarray(groups)).size > 1:
        res = model.fit(cov_type="cluster", cov_kwds={"groups": pd.factorize(groups)[0]})
    else:
        res = model.fit()
    with np.errstate(invalid="ignore", divide="ignore"):
        ci = np.asarray(res.conf_int(0.05))
        table = pd.DataFrame({"term": list(x.columns), "coef": np.asarray(res.params),
                              "se": np.asarray(res.bse), "lo": ci[:, 0], "hi": ci[:, 1],
                              "p": np.asarray(res.pvalues)})
        r2 = float(res.rsquared)  # NaN when y is constant (identical tables)
    return RegressionResult(table=table, n=int(y.size), r2=r2, dropped=const,
                            reference=reference)


def gap_regression(gap: np.ndarray, feats: pd.DataFrame, difficulty: np.ndarray,
                   indicators: dict[str, np.ndarray], *, sample: np.ndarray | None = None,
                   groups: np.ndarray | None = None,
                   controls: tuple[str, ...] = CONTROLS, domain_effects: bool = True,
                   reference: str = "") -> RegressionResult:
    """gap ~ 1 + indicators + controls (+ domain fixed effects) over `sample` tokens.

    `indicators` are boolean [n] columns named by category; `groups` ([n]) the
    clusters of the robust SEs (default: the windows; the pipeline passes its
    bootstrap's clusters); `reference` says what the intercept stands for (the tokens
    with none of the indicators), for the report. The coefficient table gets `n_docs`
    (documents with the category, for category terms).
    """
    n = len(feats)
    sample = np.ones(n, bool) if sample is None else np.asarray(sample, bool)
    design = control_matrix(feats, difficulty, controls)
    for name, m in indicators.items():
        design.insert(len(design.columns), f"cat_{name}", np.asarray(m, np.float64))
    if domain_effects:
        dom = feats["domain"].to_numpy()
        for d in sorted(pd.unique(dom[sample]))[1:]:
            design[f"domain_{d}"] = (dom == d).astype(np.float64)
    design = design.loc[sample].reset_index(drop=True)
    groups = feats["window"].to_numpy() if groups is None else np.asarray(groups)
    res = fit_ols(np.asarray(gap)[sample], design, groups[sample], reference)
    # Documents behind each category term (for flagging thin categories).
    if "doc_id" in feats.columns:
        doc, names = pd.factorize(feats["doc_id"].to_numpy()[sample])
        n_docs = {f"cat_{k}": int(np.count_nonzero(np.bincount(
            doc[np.asarray(m, bool)[sample]], minlength=len(names))))
            for k, m in indicators.items()}
        res.table["n_docs"] = res.table["term"].map(n_docs).astype("Int64")
    else:
        res.table["n_docs"] = pd.array([pd.NA] * len(res.table), dtype="Int64")
    return res


def mark_terms(table: pd.DataFrame, method: str = "holm", alpha: float = 0.05,
               min_docs: int = 5) -> pd.DataFrame:
    """The coefficient table with `tested` (a category term), `flagged`, `p_adj` and
    `significant`: the correction runs over the tested, unflagged terms only."""
    out = table.copy()
    tested = out["term"].str.startswith("cat_").to_numpy()
    out["tested"] = tested
    out["flagged"] = False
    out["p_adj"] = np.nan
    out["significant"] = False
    if tested.any():
        sub = out.loc[tested].copy()
        known = sub["n_docs"].notna().all()
        if known:
            sub["n_docs"] = sub["n_docs"].astype(np.int64)
        marked = multiple.mark(sub, method=method, alpha=alpha, min_docs=min_docs,
                               docs_col="n_docs" if known else None)
        for c in ("flagged", "p_adj", "significant"):
            out.loc[tested, c] = marked[c].to_numpy()
    return out
