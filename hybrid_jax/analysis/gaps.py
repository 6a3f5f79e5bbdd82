"""Loss gaps by category, with cluster-bootstrap confidence intervals over documents.

Sign: gap = loss_A - loss_B in nats, positive = B predicts the token better (the
study's convention with A = transformer, B = hybrid; `token_analysis_method.md` §2).

Every mean here is token-weighted: a category's gap is the mean over its tokens. Tokens
of one document are not independent (one text, one topic, one style; and the windows
of a long document continue each other), so uncertainty comes from a cluster
bootstrap: resample whole documents with replacement, recompute the ratio
sum(gap) / count, take percentiles of the 2000 (default) resampled ratios. The
cluster unit is one for the whole analysis (`Bootstrap.unit`): "document" by default,
"window" on request (which is anti-conservative when documents span windows or carry a
per-document effect: `tests/analysis/test_calibration.py`). All statistics of one
analysis share the same resampled clusters, so differences (content - function, open -
close, model A - model B) get CIs from paired draws.

Intervals are expanded percentile intervals (`Bootstrap.levels`): for a statistic
resting on few documents (or dominated by a few large ones) the plain percentile
interval is too narrow. p-values are t tests of the estimate over its bootstrap
standard error with the same small-sample terms (`Bootstrap.p_values`). Corrections
for multiple comparisons are in `multiple.py`.

Implementation: per-cluster sums S[k, c] and counts N[k, c] of every category c, and a
resample-count matrix R[b, k]; draw b's statistic is (R S)[b, c] / (R N)[b, c]. One
matrix product covers every category at once, and sums are linear, so the paired gap
of two tables is (R (S_A - S_B)) / (R N) with no second pass over the tokens.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from hybrid_jax.analysis import families

RECALL_BINS = (1, 32, 128, 512, 2048, np.inf)  # FT's recall-cliff distance bins, tokens
UNITS = ("document", "window")


@dataclasses.dataclass
class Bootstrap:
    """Resampled clusters shared by every statistic of one analysis.

    cluster: int64 [n] cluster index of every token, 0..n_clusters-1.
    counts:  float64 [B, n_clusters] how often each cluster is drawn in resample b.
    unit:    what a cluster is ("document", "window", or "cluster" for other callers).
    doc:     int64 [n] document index of every token when clusters are not documents
             (to count the documents behind a statistic), else None.
    """

    cluster: np.ndarray
    counts: np.ndarray
    level: float = 0.95
    unit: str = "cluster"
    doc: np.ndarray | None = None

    @staticmethod
    def over(clusters: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95,
             *, unit: str = "cluster", docs: np.ndarray | None = None) -> Bootstrap:
        """Resamples the distinct values of `clusters` ([n], any hashable values) with
        replacement. `docs` ([n]) are the tokens' documents when the clusters are not."""
        if n_boot < 1:
            raise ValueError(f"n_boot must be >= 1, got {n_boot}")
        cluster, uniq = pd.factorize(np.asarray(clusters))
        k = len(uniq)
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, k, size=(n_boot, k))
        flat = (np.arange(n_boot)[:, None] * k + draws).ravel()
        counts = np.bincount(flat, minlength=n_boot * k).reshape(n_boot, k)
        doc = None if docs is None else pd.factorize(np.asarray(docs))[0].astype(np.int64)
        return Bootstrap(cluster=cluster.astype(np.int64), counts=counts.astype(np.float64),
                         level=level, unit=unit, doc=doc)

    @staticmethod
    def for_tokens(doc_ids: np.ndarray, windows: np.ndarray, unit: str = "document",
                   n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> Bootstrap:
        """The analysis' bootstrap: clusters = the tokens' documents (`unit="document"`)
        or their windows (`unit="window"`)."""
        if unit == "document":
            return Bootstrap.over(doc_ids, n_boot, seed, level, unit="document")
        if unit == "window":
            return Bootstrap.over(windows, n_boot, seed, level, unit="window", docs=doc_ids)
        raise ValueError(f"unknown cluster unit {unit!r}; choose from {UNITS}")

    @property
    def n_clusters(self) -> int:
        return self.counts.shape[1]

    @property
    def n_boot(self) -> int:
        return self.counts.shape[0]

    def sums(self, values: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(S, N) [n_clusters, c]: per-cluster sums of `values` and token counts under
        each column of the boolean masks [n, c]. Column by column over the selected
        tokens only, so no [n, c] float array is ever built."""
        m = np.asarray(masks, bool)
        v = np.asarray(values, np.float64)
        k = self.n_clusters
        s = np.zeros((k, m.shape[1]))
        cnt = np.zeros((k, m.shape[1]))
        for j in range(m.shape[1]):
            sel = np.flatnonzero(m[:, j])
            c = self.cluster[sel]
            s[:, j] = np.bincount(c, v[sel], minlength=k)
            cnt[:, j] = np.bincount(c, minlength=k)
        return s, cnt

    def doc_presence(self, masks: np.ndarray, cnt: np.ndarray) -> np.ndarray:
        """bool [n_docs, c]: which documents have tokens under each mask column (`cnt`
        are the per-cluster counts of `sums`)."""
        if self.doc is None:  # clusters are documents
            return cnt > 0
        m = np.asarray(masks, bool)
        n_docs = int(self.doc.max()) + 1 if self.doc.size else 0
        return np.stack([np.bincount(self.doc[m[:, j]], minlength=n_docs) > 0
                         for j in range(m.shape[1])], axis=1)

    def doc_counts(self, masks: np.ndarray, cnt: np.ndarray) -> np.ndarray:
        """int64 [c]: documents with at least one token under each mask column."""
        return self.doc_presence(masks, cnt).sum(0).astype(np.int64)

    def ratio(self, s: np.ndarray, cnt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(point [c], draws [B, c]) of sum/count; NaN where a draw has no tokens."""
        with np.errstate(invalid="ignore", divide="ignore"):
            point = s.sum(0) / cnt.sum(0)
            draws = (self.counts @ s) / (self.counts @ cnt)
        return point, draws

    def levels(self, k: np.ndarray | None, n_stats: int) -> np.ndarray:
        """float [c] lower percentile level of each statistic's interval.

        The plain percentile interval of a statistic resting on k clusters is too narrow
        for small k: the bootstrap variance is (k-1)/k of the unbiased one and the
        normal quantile ignores that the variance is estimated from k clusters. The
        expanded percentile interval (Hesterberg 2015, "What teachers should know about
        the bootstrap", Am. Stat. 69:371) corrects both: it takes the bootstrap quantiles
        at level Phi(-z'), z' = sqrt(k/(k-1)) t_{k-1}(1 - alpha/2), the width a t
        interval on k-1 degrees of freedom would have. For k = 100, 2.4% instead of
        2.5%; for k = 15, 1.3%; for k = 5, 0.1%. k is the effective number of clusters
        (`clusters_with`: fewer than the clusters with tokens when their sizes are
        unequal); `k=None`: no expansion.
        """
        a = (1.0 - self.level) / 2.0
        if k is None:
            return np.full(n_stats, a)
        from scipy import stats  # deferred: scipy is only needed here

        k = np.asarray(k, np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.sqrt(k / (k - 1.0)) * stats.t.ppf(1.0 - a, k - 1.0)
        z = np.where(k > 1, z, np.inf)
        return stats.norm.sf(z)

    def interval(self, draws: np.ndarray, k: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lo, hi, se) [c]: the (expanded, `levels`) percentile interval of draws [B, c]
        of statistics resting on k [c] effective clusters each (NaN for one cluster),
        and the bootstrap standard error."""
        lvl = self.levels(k, draws.shape[1])
        srt = np.sort(draws, axis=0)  # NaN (a draw without tokens) sorts last
        b = np.isfinite(draws).sum(0)
        lo = _quantile_sorted(srt, b, lvl)
        hi = _quantile_sorted(srt, b, 1.0 - lvl)
        if k is not None:  # one cluster: its draws are all equal, which is no interval
            one = np.asarray(k, np.float64) < 1.0 + 1e-6
            lo[one], hi[one] = np.nan, np.nan
        with np.errstate(invalid="ignore"):
            se = np.full(draws.shape[1], np.nan)
            ok = b > 1
            if ok.any():
                se[ok] = np.nanstd(draws[:, ok], axis=0, ddof=1)
        return lo, hi, se

    def p_values(self, point: np.ndarray, draws: np.ndarray, k: np.ndarray | None = None
                 ) -> np.ndarray:
        """float [c] two-sided p-values of "the statistic is 0": a t test of the estimate
        over its bootstrap standard error, with the expanded interval's small-sample
        terms (k effective clusters: k/(k-1) variance factor, k-1 degrees of freedom;
        `k=None`: normal), so p < 1 - level exactly when the interval
        estimate +- t sqrt(k/(k-1)) se excludes 0, which the expanded percentile interval
        matches whenever the bootstrap distribution is near normal.

        Why not the share of draws beyond 0: it cannot resolve p below 1/(B+1), and a
        Holm correction over 40 categories needs p < 0.05/40 = 0.00125, so with the
        share a clear effect would fail the correction for lack of resamples. 1 for an
        estimate of exactly 0; NaN without draws or with one cluster."""
        point = np.asarray(point, np.float64)
        se = self.interval(draws)[2]
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.abs(point) / se
            if k is None:
                from scipy import stats

                p = 2.0 * stats.norm.sf(z)
            else:
                from scipy import stats

                k = np.asarray(k, np.float64)
                p = np.where(k > 1.0 + 1e-6,
                             2.0 * stats.t.sf(z * np.sqrt((k - 1.0) / k), k - 1.0), np.nan)
        p = np.where(point == 0, 1.0, p)
        return np.where(~np.isfinite(point) | ~np.isfinite(se), np.nan, p)

    def describe(self) -> str:
        """One line for the report: what is resampled, how often, which interval."""
        return (f"{self.level:.0%} expanded percentile intervals (for the number of "
                f"{self.unit}s behind each statistic), cluster bootstrap over "
                f"{self.unit}s ({self.n_clusters:,} {self.unit}s, {self.n_boot} resamples)")


def _quantile_sorted(srt: np.ndarray, b: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Linear-interpolated quantile q [c] of the first b [c] (finite) rows of each
    sorted column of srt [B, c]; NaN where b == 0."""
    c = np.arange(srt.shape[1])
    pos = np.clip(q, 0.0, 1.0) * np.maximum(b - 1, 0)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, np.maximum(b - 1, 0))
    w = pos - i0
    with np.errstate(invalid="ignore"):
        lo, hi = srt[i0, c], srt[i1, c]
        out = lo + w * (hi - lo)
        out = np.where(w == 0, lo, out)  # keeps infinities and exact values exact
    return np.where(b > 0, out, np.nan)


def summary_columns(boot: Bootstrap, point: np.ndarray, draws: np.ndarray,
                    k: np.ndarray | None = None) -> dict:
    """{"lo", "hi", "se", "p"} arrays [c] of the statistic's draws; k [c] the clusters
    each statistic rests on (the interval's expansion, `Bootstrap.levels`)."""
    lo, hi, se = boot.interval(draws, k)
    return {"lo": lo, "hi": hi, "se": se, "p": boot.p_values(point, draws, k)}


def clusters_with(cnt: np.ndarray) -> np.ndarray:
    """float [c]: the effective number of clusters behind each ratio statistic, from
    per-cluster token counts n [k, c]: 1 / b with

        b = 2 sum(n^3) / (sum(n) sum(n^2)) - sum(n^2) / sum(n)^2,

    the relative downward bias of the bootstrap (CR0) variance of a ratio whose
    per-cluster deviations scale with the cluster's size (a per-document effect). For k
    equal clusters b = 1/k, so this is k; a statistic dominated by a few large clusters
    counts as fewer (one cluster holding everything: 1). Used as k of the expanded
    percentile interval (`Bootstrap.levels`)."""
    n = np.asarray(cnt, np.float64)
    tot, sq, cube = n.sum(0), (n * n).sum(0), (n ** 3).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        b = 2.0 * cube / (tot * sq) - sq / (tot * tot)
        return np.where(tot > 0, 1.0 / b, 0.0)


def sums_table(boot: Bootstrap, names: list[str], s: np.ndarray, cnt: np.ndarray,
               n_docs: np.ndarray) -> pd.DataFrame:
    """The table of ratio statistics S/N from per-cluster sums: columns name, n (tokens),
    n_docs, mean, lo, hi, se, p."""
    point, draws = boot.ratio(s, cnt)
    return pd.DataFrame({"name": names, "n": cnt.sum(0).astype(np.int64),
                         "n_docs": np.asarray(n_docs, np.int64), "mean": point,
                         **summary_columns(boot, point, draws, clusters_with(cnt))})


def mean_table(boot: Bootstrap, values: np.ndarray, masks: dict[str, np.ndarray]
               ) -> pd.DataFrame:
    """Token-weighted mean of `values` under every mask, with CI: columns name, n,
    n_docs, mean, lo, hi, se, p (rows in mask order; mean NaN for an empty mask)."""
    names = list(masks)
    if not names:
        return pd.DataFrame(columns=["name", "n", "n_docs", "mean", "lo", "hi", "se", "p"])
    m = np.stack([np.asarray(masks[k], bool) for k in names], axis=1)
    s, cnt = boot.sums(values, m)
    return sums_table(boot, names, s, cnt, boot.doc_counts(m, cnt))


def diff_row(boot: Bootstrap, values: np.ndarray, mask_a: np.ndarray, mask_b: np.ndarray,
             name: str) -> dict:
    """mean(values | a) - mean(values | b) with a paired cluster-bootstrap CI."""
    m = np.stack([np.asarray(mask_a, bool), np.asarray(mask_b, bool)], axis=1)
    s, cnt = boot.sums(values, m)
    point, draws = boot.ratio(s, cnt)
    d = draws[:, 0] - draws[:, 1]
    diff = np.asarray([point[0] - point[1]])
    col = summary_columns(boot, diff, d[:, None], clusters_with(cnt.sum(1, keepdims=True)))
    both = boot.doc_presence(m, cnt).all(1)  # documents with tokens of both sides
    return {"name": name, "n_a": int(m[:, 0].sum()), "n_b": int(m[:, 1].sum()),
            "n_docs": int(both.sum()), "mean_a": float(point[0]), "mean_b": float(point[1]),
            "diff": float(diff[0]), **{k: float(v[0]) for k, v in col.items()}}


def category_masks(tags: np.ndarray, names: tuple[str, ...] | list[str]) -> dict[str, np.ndarray]:
    """{category: bool [n]} for the given category names (multi-tag: masks overlap)."""
    t = np.asarray(tags, np.int64)
    return {name: (t & families.BIT[name]) != 0 for name in names}


def family_table(boot: Bootstrap, gap: np.ndarray, feats: pd.DataFrame,
                 loss_a: np.ndarray, loss_b: np.ndarray, min_tokens: int = 1) -> pd.DataFrame:
    """Per-category gap with CI, plus each model's mean loss and the category's group
    (content / function / other / python / html / latex); categories with fewer than
    `min_tokens` tokens are left out."""
    masks = category_masks(feats["tags"].to_numpy(), families.CATEGORIES)
    masks = {k: v for k, v in masks.items() if v.sum() >= max(min_tokens, 1)}
    return _with_losses(mean_table(boot, gap, masks), masks, loss_a, loss_b, "group",
                        families.group_of)


def tag_table(boot: Bootstrap, gap: np.ndarray, masks: dict[str, np.ndarray],
              loss_a: np.ndarray, loss_b: np.ndarray) -> pd.DataFrame:
    """Per-tag gap with CI (the masks of `ranking.tag_masks`: a token counts for every
    tag it carries), plus the tag's family and each model's mean loss, as the family
    table; rows by gap, largest first (empty tags last)."""
    masks = {k: v for k, v in masks.items() if v.any()}
    table = _with_losses(mean_table(boot, gap, masks), masks, loss_a, loss_b, "family",
                         families.tag_family)
    return table.sort_values("mean", ascending=False, na_position="last",
                             kind="stable").reset_index(drop=True)


def _with_losses(table: pd.DataFrame, masks: dict[str, np.ndarray], loss_a: np.ndarray,
                 loss_b: np.ndarray, column: str, of) -> pd.DataFrame:
    """`table` (of `mean_table`) with `column` = of(name) and each model's mean loss."""
    names = table["name"].tolist()
    table[column] = [of(n) for n in names]
    table["loss_a"] = [float(loss_a[masks[n]].mean()) for n in names]
    table["loss_b"] = [float(loss_b[masks[n]].mean()) for n in names]
    return table


def content_function(boot: Bootstrap, gap: np.ndarray, tags: np.ndarray) -> dict:
    """Content vs function words: each mean with CI, and the difference."""
    t = np.asarray(tags, np.int64)
    content = (t & families.CONTENT_MASK) != 0
    function = (t & families.FUNCTION_MASK) != 0
    table = mean_table(boot, gap, {"content": content, "function": function})
    return {"table": table, "diff": diff_row(boot, gap, content, function,
                                             "content - function")}


def open_close(boot: Bootstrap, gap: np.ndarray, feats: pd.DataFrame) -> pd.DataFrame:
    """Open - close gap per domain (and "all"), brackets of every kind together."""
    rows = []
    is_open = feats["is_open"].to_numpy()
    is_close = feats["is_close"].to_numpy()
    codes, names = pd.factorize(feats["domain"].to_numpy(dtype=object), sort=True)
    for i, d in [(-1, "all"), *enumerate(names)]:
        sel = np.ones(len(codes), bool) if i < 0 else codes == i
        if (is_open & sel).sum() == 0 or (is_close & sel).sum() == 0:
            continue
        r = diff_row(boot, gap, is_open & sel, is_close & sel, d)
        rows.append({"domain": d, **{k: v for k, v in r.items() if k != "name"}})
    return pd.DataFrame(rows)


def by_repeat_length(boot: Bootstrap, gap: np.ndarray, rep: np.ndarray, max_n: int = 16
                     ) -> pd.DataFrame:
    """Gap vs repeat length n = 0..max_n (tokens completing a repeated n-gram of exactly
    that longest length)."""
    rep = np.asarray(rep)
    masks = {str(n): rep == n for n in range(max_n + 1)}
    t = mean_table(boot, gap, masks).rename(columns={"n": "tokens"})
    t.insert(0, "n", np.arange(max_n + 1))
    return t.drop(columns="name")


def recall_cliff(boot: Bootstrap, gap: np.ndarray, dist: np.ndarray, where: np.ndarray,
                 bins: tuple[float, ...] = RECALL_BINS) -> pd.DataFrame:
    """Gap by distance to the previous occurrence (tokens), binned [lo, hi), over the
    tokens `where` that have one (dist >= 1)."""
    dist = np.asarray(dist)
    sel = np.asarray(where, bool) & (dist >= 1)
    masks, lows, highs = {}, [], []
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        masks[f"[{lo:g}, {hi:g})"] = sel & (dist >= lo) & (dist < hi)
        lows.append(lo)
        highs.append(hi)
    t = mean_table(boot, gap, masks)
    t.insert(1, "dist_lo", lows)
    t.insert(2, "dist_hi", highs)
    return t


def vocab_slope(boot: Bootstrap, gap: np.ndarray, tags: np.ndarray, vocab: dict[str, int],
                min_tokens: int = 20) -> dict:
    """Slope of a family's mean gap against log |V_tau| (its number of word types), an
    unweighted least-squares line over the POS families with >= min_tokens tokens; CI
    from the same cluster resamples. Nats per e-fold of vocabulary size."""
    names = [f for f in families.POS_FAMILIES
             if vocab.get(f, 0) > 0 and ((np.asarray(tags) & families.BIT[f]) != 0).sum()
             >= min_tokens]
    if len(names) < 3:
        return {"families": names, "slope": float("nan"), "lo": float("nan"),
                "hi": float("nan"), "se": float("nan"), "p": float("nan"),
                "n_families": len(names)}
    masks = category_masks(tags, names)
    m = np.stack([masks[k] for k in names], axis=1)
    s, cnt = boot.sums(gap, m)
    point, draws = boot.ratio(s, cnt)
    x = np.log(np.asarray([vocab[f] for f in names], np.float64))
    xc = x - x.mean()

    def slope(y: np.ndarray) -> np.ndarray:  # y [..., f]; NaN families dropped per draw
        ok = np.isfinite(y)
        xx = np.where(ok, xc, 0.0)
        yy = np.where(ok, y, 0.0)
        n = ok.sum(-1)
        xm = xx.sum(-1) / n
        ym = yy.sum(-1) / n
        cov = (np.where(ok, (xx - xm[..., None]) * (yy - ym[..., None]), 0.0)).sum(-1)
        var = (np.where(ok, (xx - xm[..., None]) ** 2, 0.0)).sum(-1)
        return cov / var

    est = slope(point[None])
    col = summary_columns(boot, est, slope(draws)[:, None],
                          clusters_with(cnt.sum(1, keepdims=True)))
    return {"families": names, "vocab": {f: int(vocab[f]) for f in names},
            "slope": float(est[0]), **{k: float(v[0]) for k, v in col.items()},
            "n_families": len(names)}


def domain_table(boot: Bootstrap, gap: np.ndarray, domains: np.ndarray) -> pd.DataFrame:
    """Gap per domain, and over all tokens ("all")."""
    codes, names = pd.factorize(np.asarray(domains, dtype=object), sort=True)
    masks = {"all": np.ones(codes.size, bool)}
    masks.update({str(d): codes == i for i, d in enumerate(names)})
    return mean_table(boot, gap, masks)
