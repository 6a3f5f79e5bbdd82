"""The whole analysis, end to end: tables + documents -> features -> every statistic.

    tables = load_tables(["transformer=a.parquet", "hybrid=b.parquet"])
    docs = read_documents(["eval_docs.jsonl"])
    result = analyze(tables, docs, make_tagger("auto"))
    write_report(result, "out/")          # report.py

`analyze` checks everything before computing anything: every table valid and
row-aligned with the first, every token inside its document. A and B are the two tables
compared token by token (default: the first two); every table, whatever its number,
gets the filtered losses (ALL / content-not-repeated / repeated-5-gram) so that
checkpoints of several models draw curves over training steps.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd

from hybrid_jax.analysis import families, filters, gaps, regression
from hybrid_jax.analysis.features import build_features
from hybrid_jax.analysis.table import (
    Document,
    ScoreTable,
    TableError,
    check_aligned,
    check_documents,
)
from hybrid_jax.analysis.tagging import Tagger

SIGN = "gap = loss_A - loss_B in nats; positive = B predicts the token better"


@dataclasses.dataclass
class AnalysisResult:
    """What the report shows. `numbers` is JSON-ready (every number of the report);
    `frames` holds the same tables as DataFrames for figures; `tokens` is the per-token
    frame (features, both losses, gap) for the token view."""

    numbers: dict
    frames: dict[str, pd.DataFrame]
    tokens: pd.DataFrame
    docs: dict[str, Document]
    timings: dict[str, float]


def _records(frame: pd.DataFrame) -> list[dict]:
    return frame.to_dict("records")


def pick_pair(tables: list[ScoreTable], a: str | None, b: str | None
              ) -> tuple[ScoreTable, ScoreTable]:
    """Tables A and B by name (default: the first two)."""
    by_name = {t.name: t for t in tables}
    for n in (a, b):
        if n is not None and n not in by_name:
            raise TableError(f"no table named {n!r}; tables: {list(by_name)}")
    ta = by_name[a] if a else tables[0]
    tb = by_name[b] if b else next(t for t in tables if t is not ta)
    if ta is tb:
        raise TableError(f"A and B are the same table {ta.name!r}")
    return ta, tb


def filtered_losses(boot: gaps.Bootstrap, tables: list[ScoreTable], masks: dict[str, np.ndarray]
                    ) -> pd.DataFrame:
    """Mean loss (nats) of every table under every filter, with cluster-bootstrap CIs."""
    rows = []
    for t in tables:
        tab = gaps.mean_table(boot, t.frame["loss"].to_numpy(), masks)
        for r in _records(tab):
            rows.append({"table": t.name, "model": t.model, "step": t.step,
                         "filter": r["name"], "n": r["n"], "mean": r["mean"], "lo": r["lo"],
                         "hi": r["hi"]})
    return pd.DataFrame(rows)


def analyze(tables: list[ScoreTable], docs: dict[str, Document], tagger: Tagger, *,
            a: str | None = None, b: str | None = None,
            ref_counts: np.ndarray | None = None, n_boot: int = 2000, seed: int = 0,
            min_tokens: int = 20, regression_max_rows: int | None = 2_000_000
            ) -> AnalysisResult:
    """Every statistic of the study for tables A and B (+ filtered losses of all)."""
    if len(tables) < 2:
        raise TableError(f"need at least two tables to compare, got {len(tables)}")
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    check_aligned(tables)
    check_documents(tables[0].frame, docs, tables[0].name)
    ta, tb = pick_pair(tables, a, b)
    times["validate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    feats, extras = build_features(ta.frame, docs, tagger, ref_counts=ref_counts)
    times["features"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    loss_a = ta.frame["loss"].to_numpy()
    loss_b = tb.frame["loss"].to_numpy()
    gap = loss_a - loss_b
    difficulty = 0.5 * (loss_a + loss_b)
    tags = feats["tags"].to_numpy()
    boot = gaps.Bootstrap.over(feats["window"].to_numpy(), n_boot=n_boot, seed=seed)

    frames: dict[str, pd.DataFrame] = {}
    frames["domains"] = gaps.domain_table(boot, gap, feats["domain"].to_numpy())
    frames["families"] = gaps.family_table(boot, gap, feats, loss_a, loss_b)
    cf = gaps.content_function(boot, gap, tags)
    frames["content_function"] = cf["table"]
    frames["open_close"] = gaps.open_close(boot, gap, feats)
    frames["repeat_length"] = gaps.by_repeat_length(boot, gap, feats["rep"].to_numpy())
    copy5 = feats["rep"].to_numpy() >= filters.COPY_N
    frames["recall_cliff"] = gaps.recall_cliff(boot, gap, feats["copy_dist"].to_numpy(), copy5)
    frames["recall_cliff_token"] = gaps.recall_cliff(
        boot, gap, feats["prev_dist"].to_numpy(), np.ones(len(gap), bool))
    slope = gaps.vocab_slope(boot, gap, tags, extras["vocab"], min_tokens=min_tokens)

    masks = filters.masks_from_repeats(feats["rep"].to_numpy(), filters.content_flags(tags))
    frames["filtered_losses"] = filtered_losses(boot, tables, masks)
    frames["filtered_gaps"] = gaps.mean_table(boot, gap, masks)
    times["gaps"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    reg = _regressions(gap, feats, difficulty, tags, min_tokens, regression_max_rows, seed)
    times["regression"] = time.perf_counter() - t0

    numbers = {
        "meta": {
            "sign": SIGN, "units": "nats", "a": ta.name, "b": tb.name,
            "tables": [{"name": t.name, "model": t.model, "step": t.step, "path": t.path,
                        "rows": len(t.frame)} for t in tables],
            "tagger": getattr(tagger, "model_name", tagger.name),
            "n_tokens": int(len(gap)), "n_windows": int(boot.n_clusters),
            "n_docs": int(feats["doc_id"].nunique()), "n_boot": n_boot, "seed": seed,
            "ci": f"{boot.level:.0%} cluster bootstrap over windows, percentile",
            "tokens_per_domain": {str(k): int(v) for k, v in
                                  feats["domain"].value_counts().sort_index().items()},
        },
        "domains": _records(frames["domains"]),
        "families": _records(frames["families"]),
        "content_function": {"table": _records(cf["table"]), "diff": cf["diff"]},
        "open_close": _records(frames["open_close"]),
        "repeat_length": _records(frames["repeat_length"]),
        "recall_cliff": {"copy5": _records(frames["recall_cliff"]),
                         "token": _records(frames["recall_cliff_token"])},
        "vocab_slope": slope,
        "regression": reg,
        "filtered_losses": _records(frames["filtered_losses"]),
        "filtered_gaps": _records(frames["filtered_gaps"]),
        "warnings": extras["warnings"],
    }
    tokens = feats.copy()
    tokens["loss_a"] = loss_a
    tokens["loss_b"] = loss_b
    tokens["gap"] = gap
    return AnalysisResult(numbers=numbers, frames=frames, tokens=tokens, docs=docs,
                          timings=times)


def _regressions(gap: np.ndarray, feats: pd.DataFrame, difficulty: np.ndarray,
                 tags: np.ndarray, min_tokens: int, max_rows: int | None, seed: int) -> dict:
    """Content/function and per-family OLS over the tokens that carry a POS family.

    Past `max_rows` tokens a seeded random subsample of windows is used (whole windows,
    so the clustered SEs stay honest), which keeps the fit at a few seconds."""
    pos = (tags & families.POS_MASK) != 0
    sample = pos.copy()
    if max_rows is not None and sample.sum() > max_rows:
        w = feats["window"].to_numpy()
        uniq = pd.unique(w)
        rng = np.random.default_rng(seed)
        keep = rng.permutation(uniq)[: max(1, int(len(uniq) * max_rows / sample.sum()))]
        sample &= np.isin(w, keep)
    out: dict = {}
    if sample.sum() < 10:
        return {"skipped": f"only {int(sample.sum())} POS-tagged tokens"}
    content = (tags & families.CONTENT_MASK) != 0
    function = (tags & families.FUNCTION_MASK) != 0
    out["content_function"] = regression.gap_regression(
        gap, feats, difficulty, {"content": content, "function": function}, sample=sample,
        reference="tokens of the 'other' families (numeral, particle, punctuation, "
                  "brackets, unknown)").to_dict()
    fams = [f for f in families.POS_FAMILIES
            if ((tags & families.BIT[f]) != 0)[sample].sum() >= min_tokens]
    ref = max(fams, key=lambda f: ((tags & families.BIT[f]) != 0)[sample].sum()) if fams else ""
    ind = {f: (tags & families.BIT[f]) != 0 for f in fams if f != ref}
    out["families"] = regression.gap_regression(
        gap, feats, difficulty, ind, sample=sample,
        reference=f"tokens tagged only '{ref}' (the most frequent family)").to_dict()
    return out
