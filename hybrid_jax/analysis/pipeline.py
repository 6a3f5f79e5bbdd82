"""The whole analysis, end to end: tables + documents -> features -> every statistic.

    tables = load_tables(["transformer=a.parquet", "hybrid=b.parquet"])
    docs = read_documents(["eval_docs.jsonl"])
    result = analyze(tables, docs, make_tagger("auto"))
    write_report(result, "out/")          # report.py

`analyze` checks everything before computing anything: every table valid and
row-aligned with the first, every token inside its document, every document's text
the one scored (stored digests, or a heuristic; `table.check_documents`). A and B are
the two tables compared token by token (default: the first table and the first table
of another model); every table, whatever
its number, gets the filtered losses (ALL / content-not-repeated / TOP-10∩NO-COPY /
repeated-5-gram) so that checkpoints of several models draw curves over training steps,
and every two models get paired filtered gaps at every step they share (`filtered.py`).
TOP-10∩NO-COPY's ten open-class tags come from a given list or report, else from a
cross-fitted ranking on the A - B gap (`ranking.py`), never from the tokens they filter.

Statistics of one analysis share one resampling unit (`cluster`: the document by
default, or the window) and one bootstrap draw; the regression's standard errors are
cluster-robust on the same unit; every table of tests is corrected for multiple
comparisons (`multiple.py`) and rows resting on fewer than `min_docs` documents are
flagged, never significant.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from hybrid_jax.analysis import (
    families,
    filtered,
    filters,
    gaps,
    multiple,
    ranking,
    regression,
)
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


@dataclasses.dataclass(frozen=True)
class Options:
    """The statistical choices of one analysis (all reported in report.md / json).

    cluster:     resampling unit of every interval, "document" or "window".
    correction:  multiple-comparison adjustment within each table ("holm" | "bh" | "none").
    alpha:       significance level after correction.
    min_docs:    rows resting on fewer documents are flagged and never significant.
    top_families, top_source: the ranking behind the TOP-10∩NO-COPY filter (families
                 or tags, `ranking.resolve`), and where it came from; None: the
                 cross-fitted ranking (`ranking.cross_fit`) of top_k tags.
    top_k:       how many tags the cross-fitted ranking takes; 0 (and no top_families):
                 no TOP-10∩NO-COPY filter.
    """

    n_boot: int = 2000
    seed: int = 0
    cluster: str = "document"
    correction: str = "holm"
    alpha: float = 0.05
    min_docs: int = 5
    min_tokens: int = 20
    top_families: tuple[str, ...] | None = None
    top_source: str | None = None
    top_k: int = 10
    regression: bool = True
    regression_max_rows: int | None = 2_000_000

    def check(self) -> None:
        if self.cluster not in gaps.UNITS:
            raise TableError(f"cluster unit {self.cluster!r}: choose from {gaps.UNITS}")
        if self.correction not in multiple.METHODS:
            raise TableError(f"correction {self.correction!r}: choose from "
                             f"{multiple.METHODS}")
        if not 0 < self.alpha < 1:
            raise TableError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.n_boot < 1 or self.min_docs < 1:
            raise TableError(f"n_boot ({self.n_boot}) and min_docs ({self.min_docs}) must "
                             "be >= 1")
        if self.top_k < 0:
            raise TableError(f"top_k must be >= 0, got {self.top_k}")
        if self.top_families is not None:
            if not self.top_families:
                raise TableError("top_families is empty: give at least one family or tag")
            ranking.resolve(self.top_families)


def _records(frame: pd.DataFrame) -> list[dict]:
    return frame.to_dict("records")


def pick_pair(tables: list[ScoreTable], a: str | None, b: str | None
              ) -> tuple[ScoreTable, ScoreTable]:
    """Tables A and B by name (default: the first table, and the first table of
    another model after it)."""
    by_name = {t.name: t for t in tables}
    for n in (a, b):
        if n is not None and n not in by_name:
            raise TableError(f"no table named {n!r}; tables: {list(by_name)}")
    ta = by_name[a] if a else tables[0]
    # Default B: the first table of another model (else the next table).
    others = [t for t in tables if t is not ta]
    tb = by_name[b] if b else next((t for t in others if t.model != ta.model), others[0])
    if ta is tb:
        raise TableError(f"A and B are the same table {ta.name!r}")
    return ta, tb


def top_families_from_report(path: str | pathlib.Path, k: int = 10) -> list[str]:
    """The ranking for TOP-10∩NO-COPY from a previous analysis' report.json: the (at
    most) k open-class tags of its `tags` table (an older report's families) with the
    largest positive gap, largest first (`ranking.from_report`, which also says which
    table it read)."""
    return ranking.from_report(path, k)[0]


def analyze(tables: list[ScoreTable], docs: dict[str, Document], tagger: Tagger, *,
            a: str | None = None, b: str | None = None,
            ref_counts: np.ndarray | None = None, n_boot: int = 2000, seed: int = 0,
            min_tokens: int = 20, regression_max_rows: int | None = 2_000_000,
            cluster: str = "document", correction: str = "holm", alpha: float = 0.05,
            min_docs: int = 5, top_families: Sequence[str] | None = None,
            top_families_source: str | None = None, top_k: int = 10,
            verify_docs: bool = True,
            features: tuple[pd.DataFrame, dict] | None = None) -> AnalysisResult:
    """Every statistic of the study for tables A and B (+ filtered losses of all tables
    and paired filtered gaps of every two models).

    `top_families` (families or tags, with `top_families_source`, said in the report)
    makes the TOP-10∩NO-COPY filter; without it the filter's `top_k` tags are
    cross-fitted (`ranking.cross_fit`), and `top_k=0` leaves the filter out;
    `verify_docs=False` skips the heuristic text check of tables
    without stored digests; `features` reuses a `build_features` result of the same
    tables and documents (its rows must be A's)."""
    opts = Options(n_boot=n_boot, seed=seed, cluster=cluster, correction=correction,
                   alpha=alpha, min_docs=min_docs, min_tokens=min_tokens,
                   top_families=None if top_families is None else tuple(top_families),
                   top_source=top_families_source, top_k=top_k,
                   regression_max_rows=regression_max_rows)
    opts.check()
    if len(tables) < 2:
        raise TableError(f"need at least two tables to compare, got {len(tables)}")
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    check_aligned(tables)
    doc_check = check_documents(tables[0].frame, docs, tables[0].name,
                                digests={t.name: t.doc_digests for t in tables},
                                verify_text=verify_docs)
    ta, tb = pick_pair(tables, a, b)
    times["validate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if features is None:
        features = build_features(ta.frame, docs, tagger, ref_counts=ref_counts)
    feats, extras = features
    if len(feats) != len(ta.frame):
        raise TableError(f"features have {len(feats)} rows, table {ta.name!r} "
                         f"{len(ta.frame)}")
    times["features"] = time.perf_counter() - t0

    result = statistics(tables, ta, tb, feats, extras, opts, times=times)
    meta = result.numbers["meta"]
    meta["tagger"] = getattr(tagger, "model_name", tagger.name)
    meta["documents_check"] = dataclasses.asdict(doc_check)
    warn = result.numbers["warnings"]
    if doc_check.method == "not verified":
        warn.insert(0, doc_check.detail)
    warn[:0] = [f"table {t.name!r}: losses read in {t.loss_unit_read} (metadata "
                "hybrid_jax.loss_unit) and converted to nats" for t in tables if t.loss_unit_read]
    result.docs = docs
    return result


def statistics(tables: list[ScoreTable], ta: ScoreTable, tb: ScoreTable, feats: pd.DataFrame,
               extras: dict, opts: Options, times: dict[str, float] | None = None
               ) -> AnalysisResult:
    """Every statistic from validated, aligned tables and their feature table: what
    `analyze` runs after its checks (and what the calibration test reruns per replicate
    without redoing the features)."""
    times = {} if times is None else times
    t0 = time.perf_counter()
    loss_a = ta.frame["loss"].to_numpy()
    loss_b = tb.frame["loss"].to_numpy()
    gap = loss_a - loss_b
    difficulty = 0.5 * (loss_a + loss_b)
    tags = feats["tags"].to_numpy()
    boot = gaps.Bootstrap.for_tokens(feats["doc_id"].to_numpy(), feats["window"].to_numpy(),
                                     opts.cluster, n_boot=opts.n_boot, seed=opts.seed)

    def mark(frame: pd.DataFrame, groups: str | None = None) -> pd.DataFrame:
        return multiple.mark(frame, method=opts.correction, alpha=opts.alpha,
                             min_docs=opts.min_docs, groups=groups)

    frames: dict[str, pd.DataFrame] = {}
    frames["domains"] = mark(gaps.domain_table(boot, gap, feats["domain"].to_numpy()))
    frames["families"] = mark(gaps.family_table(boot, gap, feats, loss_a, loss_b))
    labels = (feats["label"].to_numpy(dtype=object) if "label" in feats
              else np.full(len(gap), "", dtype=object))
    tag_masks = ranking.tag_masks(labels, tags)
    frames["tags"] = mark(gaps.tag_table(boot, gap, tag_masks, loss_a, loss_b))
    cf = gaps.content_function(boot, gap, tags)
    frames["content_function"] = mark(cf["table"])
    frames["open_close"] = mark(gaps.open_close(boot, gap, feats))
    frames["repeat_length"] = mark(gaps.by_repeat_length(boot, gap, feats["rep"].to_numpy()))
    copy5 = feats["rep"].to_numpy() >= filters.COPY_N
    frames["recall_cliff"] = mark(gaps.recall_cliff(boot, gap, feats["copy_dist"].to_numpy(),
                                                    copy5))
    frames["recall_cliff_token"] = mark(gaps.recall_cliff(
        boot, gap, feats["prev_dist"].to_numpy(), np.ones(len(gap), bool)))
    slope = gaps.vocab_slope(boot, gap, tags, extras["vocab"], min_tokens=opts.min_tokens)

    top, top_meta, top_warnings = _top_filter(tables, ta, tb, feats, labels, tag_masks, opts)
    masks = filters.masks_from_repeats(feats["rep"].to_numpy(), filters.content_flags(tags),
                                       top=top)
    if top is not None and np.array_equal(masks[filters.TOP_NO_COPY],
                                          masks["content_not_repeated"]):
        top_warnings.append(f"{filters.TOP_NO_COPY} keeps exactly the tokens of "
                            "content_not_repeated: its ranking names every open class "
                            "present, so it is no TOP-10")
    fs = filtered.filter_sums(boot, tables, masks)
    frames["filtered_losses"] = filtered.filtered_losses(boot, tables, fs)
    frames["filtered_gaps"] = mark(gaps.mean_table(boot, gap, masks))
    pairs, pair_warnings = filtered.table_pairs(tables)
    paired = filtered.paired_filtered(boot, pairs, fs)
    paired["family"] = paired["step"].astype(str)  # one family per training step
    frames["paired_filtered"] = mark(paired, groups="family").drop(columns="family")
    times["gaps"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    reg = (_regressions(gap, feats, difficulty, tags, boot, opts) if opts.regression
           else {"skipped": "not requested"})
    times["regression"] = time.perf_counter() - t0

    warnings = list(extras["warnings"]) + pair_warnings + top_warnings
    flagged = frames["families"].loc[frames["families"]["flagged"], ["name", "n", "n_docs"]]
    numbers = {
        "meta": {
            "sign": SIGN, "units": "nats", "a": ta.name, "b": tb.name,
            "tables": [{"name": t.name, "model": t.model, "step": t.step, "path": t.path,
                        "rows": len(t.frame), "doc_digests": t.doc_digests is not None,
                        "loss_unit_read": t.loss_unit_read} for t in tables],
            "tagger": None,
            "n_tokens": int(len(gap)), "n_windows": int(feats["window"].nunique()),
            "n_docs": int(feats["doc_id"].nunique()), "n_boot": opts.n_boot,
            "seed": opts.seed, "cluster": opts.cluster, "n_clusters": boot.n_clusters,
            "ci": boot.describe(),
            "correction": {
                "method": opts.correction, "alpha": opts.alpha,
                "description": multiple.DESCRIPTION[opts.correction],
                "min_docs": opts.min_docs,
                "p_values": "two-sided t tests of each estimate over its bootstrap standard "
                            "error, with the intervals' small-sample terms (k effective "
                            "clusters: variance x k/(k-1), k-1 degrees of freedom)",
                "families": "each table is one family: categories, open-class tags, "
                            "domains, repeat lengths, each recall-cliff curve, open/close "
                            "per domain, "
                            "content/function, filtered gaps, the paired filtered gaps of "
                            "each training step, the category terms of each regression",
            },
            "flagged": _records(flagged),
            "top_families": top_meta,
            "documents_check": None,
            "tokens_per_domain": {str(k): int(v) for k, v in
                                  feats["domain"].value_counts().sort_index().items()},
        },
        "domains": _records(frames["domains"]),
        "families": _records(frames["families"]),
        "tags": _records(frames["tags"]),
        "content_function": {"table": _records(frames["content_function"]),
                             "diff": cf["diff"]},
        "open_close": _records(frames["open_close"]),
        "repeat_length": _records(frames["repeat_length"]),
        "recall_cliff": {"copy5": _records(frames["recall_cliff"]),
                         "token": _records(frames["recall_cliff_token"])},
        "vocab_slope": slope,
        "regression": reg,
        "filtered_losses": _records(frames["filtered_losses"]),
        "filtered_gaps": _records(frames["filtered_gaps"]),
        "paired_filtered": _records(frames["paired_filtered"]),
        "warnings": warnings,
    }
    tokens = feats.copy()
    tokens["loss_a"] = loss_a
    tokens["loss_b"] = loss_b
    tokens["gap"] = gap
    return AnalysisResult(numbers=numbers, frames=frames, tokens=tokens, docs={},
                          timings=times)


def _top_filter(tables: list[ScoreTable], ta: ScoreTable, tb: ScoreTable,
                feats: pd.DataFrame, labels: np.ndarray, tag_masks: dict[str, np.ndarray],
                opts: Options) -> tuple[np.ndarray | None, dict | None, list[str]]:
    """(flags [n] of the TOP-10 tokens before the repeat condition, or None: no filter;
    the report's `meta.top_families`; warnings)."""
    tags = feats["tags"].to_numpy()
    if opts.top_families is not None:
        names = ranking.resolve(opts.top_families)
        return ranking.name_flags(names, tags, labels), {
            "families": names, "source": opts.top_source or "given by the caller",
            "filter": filters.TOP_NO_COPY, "computed": True}, []
    if opts.top_k == 0:
        return None, None, []
    ra, rb = ranking.ranking_pair(tables, ta, tb)
    cf = ranking.cross_fit(ra.frame["loss"].to_numpy() - rb.frame["loss"].to_numpy(),
                           tag_masks, feats["doc_id"].to_numpy(), feats["domain"].to_numpy(),
                           k=opts.top_k, min_docs=opts.min_docs)
    computed = bool(cf.flags.any())
    meta = {"families": cf.names,
            "source": f"cross-fitted: each of {ranking.FOLDS} document folds filtered "
                      f"by the top {opts.top_k} open-class tags of the next fold, by the "
                      f"gap {ra.name} - {rb.name}",
            "filter": filters.TOP_NO_COPY, "computed": computed,
            "cross_fit": {"a": ra.name, "b": rb.name, "k": opts.top_k,
                          "min_docs": opts.min_docs, "folds": cf.describe()}}
    warnings = [] if computed else [
        f"{filters.TOP_NO_COPY} is not computed: no fold of the cross-fitted ranking has "
        f"an open-class tag with a positive gap on >= {opts.min_docs} documents"]
    return (cf.flags if computed else None), meta, warnings


def _regressions(gap: np.ndarray, feats: pd.DataFrame, difficulty: np.ndarray,
                 tags: np.ndarray, boot: gaps.Bootstrap, opts: Options) -> dict:
    """Content/function and per-family OLS over the tokens that carry a POS family, with
    standard errors cluster-robust on the analysis' unit (`boot.cluster`).

    Past `regression_max_rows` tokens a seeded random subsample of whole clusters is
    used (so the clustered SEs stay honest), which keeps the fit at a few seconds."""
    pos = (tags & families.POS_MASK) != 0
    sample = pos.copy()
    max_rows, groups = opts.regression_max_rows, boot.cluster
    if max_rows is not None and sample.sum() > max_rows:
        rng = np.random.default_rng(opts.seed)
        k = boot.n_clusters
        keep = rng.permutation(k)[: max(1, int(k * max_rows / sample.sum()))]
        sample &= np.isin(groups, keep)
    out: dict = {}
    if sample.sum() < 10:
        return {"skipped": f"only {int(sample.sum())} POS-tagged tokens"}
    content = (tags & families.CONTENT_MASK) != 0
    function = (tags & families.FUNCTION_MASK) != 0
    fits = {}
    fits["content_function"] = regression.gap_regression(
        gap, feats, difficulty, {"content": content, "function": function}, sample=sample,
        groups=groups, reference="tokens of the 'other' families (numeral, particle, "
                                 "punctuation, brackets, unknown)")
    fams = [f for f in families.POS_FAMILIES
            if ((tags & families.BIT[f]) != 0)[sample].sum() >= opts.min_tokens]
    ref = max(fams, key=lambda f: ((tags & families.BIT[f]) != 0)[sample].sum()) if fams else ""
    ind = {f: (tags & families.BIT[f]) != 0 for f in fams if f != ref}
    fits["families"] = regression.gap_regression(
        gap, feats, difficulty, ind, sample=sample, groups=groups,
        reference=f"tokens tagged only '{ref}' (the most frequent family)")
    for key, fit in fits.items():
        d = fit.to_dict()
        d["terms"] = _records(regression.mark_terms(fit.table, opts.correction, opts.alpha,
                                                    opts.min_docs))
        d["cluster"] = f"cluster-robust by {boot.unit} ({int(np.unique(groups[sample]).size)} "\
                       f"{boot.unit}s)"
        out[key] = d
    return out
