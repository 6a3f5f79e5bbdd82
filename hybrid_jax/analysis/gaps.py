"""Loss gaps by category, with cluster-bootstrap confidence intervals over windows.

Sign: gap = loss_A - loss_B in nats, positive = B predicts the token better (the
study's convention with A = transformer, B = hybrid; `token_analysis_method.md` §2).

Every mean here is token-weighted: a category's gap is the mean over its tokens. Tokens
of one window are not independent (one document, one model state), so uncertainty
comes from a cluster bootstrap: resample whole windows with replacement, recompute the
ratio sum(gap) / count, take the 2.5% and 97.5% percentiles (FT's method, 2000
resamples by default). All statistics of one analysis share the same resampled windows,
so differences (content - function, open - close) get CIs from paired draws.

Implementation: per-window sums S[w, c] and counts N[w, c] of every category c, and a
resample-count matrix R[b, w]; draw b's statistic is (R S)[b, c] / (R N)[b, c]. One
matrix product covers every category at once.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from hybrid_jax.analysis import families

RECALL_BINS = (1, 32, 128, 512, 2048, np.inf)  # FT's recall-cliff distance bins, tokens


@dataclasses.dataclass
class Bootstrap:
    """Resampled windows shared by every statistic of one analysis.

    cluster: int64 [n] cluster (window) index of every token, 0..n_clusters-1.
    counts:  float64 [B, n_clusters] how often each window is drawn in resample b.
    """

    cluster: np.ndarray
    counts: np.ndarray
    level: float = 0.95

    @staticmethod
    def over(windows: np.ndarray, n_boot: int = 2000, seed: int = 0,
             level: float = 0.95) -> Bootstrap:
        """Resamples the distinct values of `windows` (int [n]) with replacement."""
        cluster, uniq = pd.factorize(np.asarray(windows))
        k = len(uniq)
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, k, size=(n_boot, k))
        flat = (np.arange(n_boot)[:, None] * k + draws).ravel()
        counts = np.bincount(flat, minlength=n_boot * k).reshape(n_boot, k)
        return Bootstrap(cluster=cluster.astype(np.int64), counts=counts.astype(np.float64),
                         level=level)

    @property
    def n_clusters(self) -> int:
        return self.counts.shape[1]

    def sums(self, values: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(S, N) [n_clusters, c]: per-window sums of `values` and token counts under
        each column of the boolean masks [n, c]."""
        m = np.asarray(masks, np.float64)
        v = np.asarray(values, np.float64)[:, None] * m
        k = self.n_clusters
        s = np.stack([np.bincount(self.cluster, v[:, j], minlength=k)
                      for j in range(m.shape[1])], axis=1)
        cnt = np.stack([np.bincount(self.cluster, m[:, j], minlength=k)
                        for j in range(m.shape[1])], axis=1)
        return s, cnt

    def ratio(self, s: np.ndarray, cnt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(point [c], draws [B, c]) of sum/count; NaN where a draw has no tokens."""
        with np.errstate(invalid="ignore", divide="ignore"):
            point = s.sum(0) / cnt.sum(0)
            draws = (self.counts @ s) / (self.counts @ cnt)
        return point, draws

    def interval(self, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lo, hi, se) [c] percentile interval and bootstrap standard error."""
        a = (1.0 - self.level) / 2.0
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(draws).any(0)
            lo = np.full(draws.shape[1], np.nan)
            hi = lo.copy()
            se = lo.copy()
            if ok.any():
                q = np.nanquantile(draws[:, ok], [a, 1.0 - a], axis=0)
                lo[ok], hi[ok] = q[0], q[1]
                se[ok] = np.nanstd(draws[:, ok], axis=0, ddof=1)
        return lo, hi, se


def mean_table(boot: Bootstrap, values: np.ndarray, masks: dict[str, np.ndarray]
               ) -> pd.DataFrame:
    """Token-weighted mean of `values` under every mask, with CI: columns name, n,
    mean, lo, hi, se (rows in mask order; mean NaN for an empty mask)."""
    names = list(masks)
    if not names:
        return pd.DataFrame(columns=["name", "n", "mean", "lo", "hi", "se"])
    m = np.stack([np.asarray(masks[k], bool) for k in names], axis=1)
    s, cnt = boot.sums(values, m)
    point, draws = boot.ratio(s, cnt)
    lo, hi, se = boot.interval(draws)
    return pd.DataFrame({"name": names, "n": m.sum(0).astype(np.int64), "mean": point,
                         "lo": lo, "hi": hi, "se": se})


def diff_row(boot: Bootstrap, values: np.ndarray, mask_a: np.ndarray, mask_b: np.ndarray,
             name: str) -> dict:
    """mean(values | a) - mean(values | b) with a paired cluster-bootstrap CI."""
    m = np.stack([np.asarray(mask_a, bool), np.asarray(mask_b, bool)], axis=1)
    s, cnt = boot.sums(values, m)
    point, draws = boot.ratio(s, cnt)
    d = draws[:, 0] - draws[:, 1]
    lo, hi, se = boot.interval(d[:, None])
    return {"name": name, "n_a": int(m[:, 0].sum()), "n_b": int(m[:, 1].sum()),
            "mean_a": float(point[0]), "mean_b": float(point[1]),
            "diff": float(point[0] - point[1]), "lo": float(lo[0]), "hi": float(hi[0]),
            "se": float(se[0])}


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
    table = mean_table(boot, gap, masks)
    table["group"] = [families.group_of(n) for n in table["name"]]
    table["loss_a"] = [float(loss_a[masks[n]].mean()) for n in table["name"]]
    table["loss_b"] = [float(loss_b[masks[n]].mean()) for n in table["name"]]
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
    dom = feats["domain"].to_numpy()
    for d in ["all", *sorted(pd.unique(dom))]:
        sel = np.ones(len(dom), bool) if d == "all" else dom == d
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
    from the same window resamples. Nats per e-fold of vocabulary size."""
    names = [f for f in families.POS_FAMILIES
             if vocab.get(f, 0) > 0 and ((np.asarray(tags) & families.BIT[f]) != 0).sum()
             >= min_tokens]
    if len(names) < 3:
        return {"families": names, "slope": float("nan"), "lo": float("nan"),
                "hi": float("nan"), "se": float("nan"), "n_families": len(names)}
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

    lo, hi, se = boot.interval(slope(draws)[:, None])
    return {"families": names, "vocab": {f: int(vocab[f]) for f in names},
            "slope": float(slope(point[None])[0]), "lo": float(lo[0]), "hi": float(hi[0]),
            "se": float(se[0]), "n_families": len(names)}


def domain_table(boot: Bootstrap, gap: np.ndarray, domains: np.ndarray) -> pd.DataFrame:
    """Gap per domain, and over all tokens ("all")."""
    dom = np.asarray(domains)
    masks = {"all": np.ones(dom.size, bool)}
    masks.update({d: dom == d for d in sorted(pd.unique(dom))})
    return mean_table(boot, gap, masks)
