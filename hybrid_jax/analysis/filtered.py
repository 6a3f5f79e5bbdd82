"""Filtered losses of every table, and paired filtered gaps between every two models.

The filters (`filters.py`) depend on the tokens only, never on a model, so one set of
masks serves every table, and every table shares the per-cluster token counts N[k, f].
A table's per-cluster loss sums S_t[k, f] give its filtered losses S_t / N; the paired
gap of two tables is (S_A - S_B) / N, resampled with the same cluster draws for both:
the interval of a gap comes from resampling documents jointly for the two models, so
what the two models share (the same hard documents) cancels. Two marginal intervals
that overlap say nothing about the gap; this one does.

Pairs: every two models present, in the order the models first appear in the tables
(transformer, hybrid, recurrent -> transformer-hybrid, transformer-recurrent,
hybrid-recurrent), at every training step both models have a table for. Tables
without a step pair with each other as step None (the final / unstepped tables).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from hybrid_jax.analysis.gaps import Bootstrap, clusters_with, summary_columns
from hybrid_jax.analysis.table import ScoreTable


@dataclasses.dataclass
class FilterSums:
    """Per-cluster sums under every filter, shared by the losses and the gaps.

    names:  filter names, in mask order.
    loss:   {table name: float64 [n_clusters, f] sums of its losses (nats)}.
    count:  float64 [n_clusters, f] token counts (the same for every table).
    n_docs: int64 [f] documents with tokens under each filter.
    """

    names: list[str]
    loss: dict[str, np.ndarray]
    count: np.ndarray
    n_docs: np.ndarray


def filter_sums(boot: Bootstrap, tables: list[ScoreTable], masks: dict[str, np.ndarray]
                ) -> FilterSums:
    """One pass per table over its losses under every filter mask (bool [n])."""
    names = list(masks)
    m = np.stack([np.asarray(masks[k], bool) for k in names], axis=1)
    loss, count = {}, None
    for t in tables:
        s, cnt = boot.sums(t.frame["loss"].to_numpy(), m)
        loss[t.name] = s
        count = cnt if count is None else count
    return FilterSums(names, loss, count, boot.doc_counts(m, count))


def filtered_losses(boot: Bootstrap, tables: list[ScoreTable], fs: FilterSums
                    ) -> pd.DataFrame:
    """Mean loss (nats) of every table under every filter, with cluster-bootstrap CIs:
    columns table, model, step, filter, n, n_docs, mean, lo, hi, se."""
    rows = []
    for t in tables:
        point, draws = boot.ratio(fs.loss[t.name], fs.count)
        col = summary_columns(boot, point, draws, clusters_with(fs.count))
        for j, f in enumerate(fs.names):
            rows.append({"table": t.name, "model": t.model, "step": t.step, "filter": f,
                         "n": int(fs.count[:, j].sum()), "n_docs": int(fs.n_docs[j]),
                         "mean": float(point[j]), "lo": float(col["lo"][j]),
                         "hi": float(col["hi"][j]), "se": float(col["se"][j])})
    out = pd.DataFrame(rows)
    if not out.empty:
        out["step"] = out["step"].astype("Int64")  # None stays missing, steps stay ints
    return out


def _step_key(step: int | None) -> tuple[int, int]:
    return (1, 0) if step is None else (0, int(step))


def table_pairs(tables: list[ScoreTable]) -> tuple[list[tuple[ScoreTable, ScoreTable]],
                                                   list[str]]:
    """((A, B) table pairs, warnings): every two models (first-appearance order) at every
    step they share, steps ascending, None last. A second table of the same model and
    step is not paired (a warning says which)."""
    by_key: dict[tuple[str, int | None], ScoreTable] = {}
    warnings = []
    for t in tables:
        key = (t.model, t.step)
        if key in by_key:
            warnings.append(f"tables {by_key[key].name!r} and {t.name!r} are both model "
                            f"{t.model!r} at step {t.step}; only the first is paired")
            continue
        by_key[key] = t
    models = list(dict.fromkeys(t.model for t in tables))
    steps = {m: {s for (mm, s) in by_key if mm == m} for m in models}
    pairs = []
    for i, ma in enumerate(models):
        for mb in models[i + 1:]:
            for s in sorted(steps[ma] & steps[mb], key=_step_key):
                pairs.append((by_key[(ma, s)], by_key[(mb, s)]))
    return pairs, warnings


PAIRED_COLUMNS = ["a", "b", "step", "table_a", "table_b", "filter", "n", "n_docs", "gap",
                  "lo", "hi", "se", "p"]


def paired_filtered(boot: Bootstrap, pairs: list[tuple[ScoreTable, ScoreTable]],
                    fs: FilterSums) -> pd.DataFrame:
    """Paired gap loss_A - loss_B (nats; > 0: B better) under every filter for every
    pair: columns a, b (models), step, table_a, table_b, filter, n (tokens), n_docs,
    gap, lo, hi, se, p (two-sided bootstrap p of gap = 0)."""
    rows = []
    for ta, tb in pairs:
        point, draws = boot.ratio(fs.loss[ta.name] - fs.loss[tb.name], fs.count)
        col = summary_columns(boot, point, draws, clusters_with(fs.count))
        for j, f in enumerate(fs.names):
            rows.append({"a": ta.model, "b": tb.model, "step": ta.step, "table_a": ta.name,
                         "table_b": tb.name, "filter": f, "n": int(fs.count[:, j].sum()),
                         "n_docs": int(fs.n_docs[j]), "gap": float(point[j]),
                         **{k: float(v[j]) for k, v in col.items()}})
    out = pd.DataFrame(rows, columns=PAIRED_COLUMNS)
    out["step"] = out["step"].astype("Int64")
    return out
