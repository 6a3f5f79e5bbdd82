"""Filtered losses and paired filtered gaps on tables whose answers are known."""

import json

import numpy as np
import pandas as pd
import pytest

from hybrid_jax.analysis import filtered, filters, gaps
from hybrid_jax.analysis.families import BIT
from hybrid_jax.analysis.pipeline import top_families_from_report
from hybrid_jax.analysis.table import ScoreTable, TableError


def _frame(n_docs=12, per_doc=40, seed=0):
    rng = np.random.default_rng(seed)
    doc = np.repeat([f"d{i}" for i in range(n_docs)], per_doc)
    return pd.DataFrame({"doc_id": doc, "window": np.arange(doc.size) // 25,
                         "position": np.arange(doc.size) % 25, "loss": rng.gamma(2, 1, doc.size)})


def test_pairs_follow_model_order_and_shared_steps():
    f = _frame()
    specs = [("transformer", 1), ("hybrid", 1), ("recurrent", 1), ("transformer", 2),
             ("hybrid", 2), ("transformer", None), ("hybrid", None), ("hybrid", 2)]
    tabs = [ScoreTable(f"{m}@{s}#{i}", f, m, s) for i, (m, s) in enumerate(specs)]
    pairs, warnings = filtered.table_pairs(tabs)
    got = [(a.model, b.model, a.step) for a, b in pairs]
    assert got == [("transformer", "hybrid", 1), ("transformer", "hybrid", 2),
                   ("transformer", "hybrid", None), ("transformer", "recurrent", 1),
                   ("hybrid", "recurrent", 1)]
    assert len(warnings) == 1 and "hybrid@2#7" in warnings[0]


def test_paired_gap_interval_resamples_documents_jointly():
    # Documents differ a lot in difficulty (which both models share); B is better by
    # exactly 0.1 nats on every token. The marginal intervals overlap widely; the
    # paired gap is 0.1 with a zero-width interval, and exact under every filter.
    f = _frame()
    doc_level = np.repeat(np.linspace(1, 8, 12), 40)
    a = ScoreTable("transformer", f.assign(loss=doc_level + f["loss"]), "transformer")
    b = ScoreTable("hybrid", a.frame.assign(loss=a.frame["loss"] - 0.1), "hybrid")
    boot = gaps.Bootstrap.for_tokens(f["doc_id"].to_numpy(), f["window"].to_numpy(),
                                     n_boot=500, seed=0)
    rep = np.tile(np.r_[np.zeros(20, int), np.arange(1, 21)], 12)
    masks = filters.masks_from_repeats(rep, np.ones(rep.size, bool))
    fs = filtered.filter_sums(boot, [a, b], masks)
    fl = filtered.filtered_losses(boot, [a, b], fs).set_index(["table", "filter"])
    lo_a, hi_b = fl.loc[("transformer", "all"), "lo"], fl.loc[("hybrid", "all"), "hi"]
    assert lo_a < hi_b  # the marginal intervals overlap
    pairs, _ = filtered.table_pairs([a, b])
    pg = filtered.paired_filtered(boot, pairs, fs)
    assert list(pg["filter"]) == list(masks)
    np.testing.assert_allclose(pg[["gap", "lo", "hi"]].to_numpy(), 0.1, atol=1e-12)
    assert (pg["p"] < 1e-10).all() and (pg["n_docs"] == 12).all()
    # The paired gap equals the difference of the two marginal means, filter by filter.
    for r in pg.itertuples():
        assert abs(r.gap - (fl.loc[("transformer", r.filter), "mean"]
                            - fl.loc[("hybrid", r.filter), "mean"])) < 1e-12
    # A per-document difference (B better on half the documents, worse on the other
    # half) is a paired gap of 0 whose interval is that of 12 document means.
    d = np.repeat(np.where(np.arange(12) % 2 == 0, 0.3, -0.3), 40)
    c = ScoreTable("recurrent", a.frame.assign(loss=a.frame["loss"] - d), "recurrent")
    fs = filtered.filter_sums(boot, [a, c], masks)
    pg = filtered.paired_filtered(boot, filtered.table_pairs([a, c])[0], fs)
    row = pg.set_index("filter").loc["all"]
    assert abs(row["gap"]) < 1e-12 and row["lo"] < -0.1 and row["hi"] > 0.1


def test_top10_no_copy_is_top_families_without_repeats():
    tags = np.array([BIT["noun"], BIT["noun"], BIT["verb"], BIT["adverb"],
                     BIT["noun"] | BIT["adverb"], BIT["determiner"]])
    rep = np.array([0, 2, 0, 0, 0, 0])
    top = filters.family_flags(tags, ["noun", "adverb"])
    m = filters.masks_from_repeats(rep, filters.content_flags(tags), top=top)
    assert list(m) == ["all", "content_not_repeated", filters.TOP_NO_COPY, "repeated_5gram"]
    assert m[filters.TOP_NO_COPY].tolist() == [True, False, False, True, True, False]
    with pytest.raises(KeyError, match="unknown categories"):
        filters.family_flags(tags, ["nouns"])


def test_top_families_from_a_previous_report(tmp_path):
    # A report from before the tag table: its families rank (test_ranking.py has the
    # tag table's).
    rows = [{"name": "noun", "group": "content", "mean": 0.02},
            {"name": "adverb", "group": "content", "mean": 0.05},
            {"name": "verb", "group": "content", "mean": -0.01},
            {"name": "existential", "group": "function", "mean": 0.09},
            {"name": "adjective", "group": "content", "mean": 0.03},
            {"name": "qualifier", "group": "content", "mean": None}]
    p = tmp_path / "report.json"
    p.write_text(json.dumps({"families": rows}))
    assert top_families_from_report(p) == ["adverb", "adjective", "noun"]
    assert top_families_from_report(p, k=2) == ["adverb", "adjective"]
    p.write_text("{}")
    with pytest.raises(TableError, match="no 'tags' or 'families' table"):
        top_families_from_report(p)
    with pytest.raises(TableError, match="cannot read"):
        top_families_from_report(tmp_path / "missing.json")


def test_bad_options_are_one_line_errors():
    from hybrid_jax.analysis.pipeline import Options

    for kw, msg in (({"cluster": "windows"}, "cluster unit 'windows'"),
                    ({"correction": "bonferroni"}, "correction 'bonferroni'"),
                    ({"top_families": ("noun", "nouns")},
                     r"unknown families or tags \['nouns'\]"),
                    ({"top_k": -1}, "top_k must be >= 0"),
                    ({"top_families": ()}, "top_families is empty"),
                    ({"min_docs": 0}, "must be >= 1")):
        with pytest.raises(TableError, match=msg):
            Options(**kw).check()
