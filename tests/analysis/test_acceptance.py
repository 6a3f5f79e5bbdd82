"""Issue 6 acceptance, on real documents of ../shared/data/corpus with synthetic tables:
B better by a known amount on a known category -> the report finds exactly that
category and amount; identical tables -> every gap 0 and every CI covers 0."""

import json

import numpy as np
import pytest

from hybrid_jax.analysis import families, synthetic
from hybrid_jax.analysis.features import build_features
from hybrid_jax.analysis.pipeline import analyze
from hybrid_jax.analysis.report import write_report
from hybrid_jax.analysis.table import ScoreTable, TableError, validate_frame

AMOUNT = 0.25  # nats
PLANTED = "adjective"
POS_GROUPS = {"content", "function", "other", "unknown"}


@pytest.fixture(scope="module")
def setup(corpus_docs, brown_tagger):
    sub = synthetic.sample_documents(corpus_docs, 2, max_chars=10_000, seed=0)
    docs = {d.id: d for d in sub}
    pack = synthetic.pack_table(sub, window=256)
    loss_a = synthetic.base_losses(len(pack), seed=1)
    frame_a = validate_frame(synthetic.with_losses(pack, loss_a), "A")
    feats, _ = build_features(frame_a, docs, brown_tagger)
    return docs, frame_a, loss_a, feats["tags"].to_numpy()


@pytest.fixture(scope="module")
def labels(setup, brown_tagger):
    """The tagger's labels of the setup's tokens (the feature table's `label`)."""
    docs, frame_a, _, _ = setup
    return build_features(frame_a, docs, brown_tagger)[0]["label"].to_numpy(dtype=object)


def _tag_tokens(labels, tags, name):
    """bool [n]: tokens carrying the open-class tag `name`, token by token."""
    fam = families.tag_family(name)
    return np.array([any(families.tag_name(p) == name for p in lab.split("+") if p)
                     and bool(t & families.BIT[fam]) for lab, t in zip(labels, tags,
                                                                        strict=True)])


def tables(frame_a, loss_b):
    a = ScoreTable("transformer", frame_a, "transformer")
    b = ScoreTable("hybrid", validate_frame(frame_a.assign(loss=loss_b), "B"), "hybrid")
    return [a, b]


def test_planted_gap_is_found_on_exactly_that_category(setup, labels, brown_tagger,
                                                        tmp_path):
    docs, frame_a, loss_a, tags = setup
    planted = families.has(tags, PLANTED)
    assert planted.sum() > 100
    res = analyze(tables(frame_a, synthetic.plant_gap(loss_a, planted, AMOUNT)), docs,
                  brown_tagger, n_boot=300)
    fam = res.frames["families"].set_index("name")
    # Among the POS families, only the planted one has a gap, of exactly the amount,
    # with a CI that excludes 0; it is also the largest category of all.
    pos = fam[fam["group"].isin(POS_GROUPS)]
    assert list(pos.index[pos["mean"].abs() > 1e-9]) == [PLANTED]
    row = fam.loc[PLANTED]
    assert abs(row["mean"] - AMOUNT) < 1e-9 and row["lo"] > 0
    assert abs(row["lo"] - AMOUNT) < 1e-9 and abs(row["hi"] - AMOUNT) < 1e-9
    assert fam["mean"].idxmax() == PLANTED
    # Code/markup categories overlap adjectives only through prose inside them: their
    # gap is the amount times their share of adjective tokens.
    for name, r in fam.iterrows():
        share = planted[families.has(tags, name)].mean()
        assert abs(r["mean"] - AMOUNT * share) < 1e-9, name
    # Content vs function: function words are untouched.
    cf = res.frames["content_function"].set_index("name")
    assert cf.loc["function", "mean"] == 0.0
    content = (tags & families.CONTENT_MASK) != 0
    assert abs(cf.loc["content", "mean"] - AMOUNT * planted[content].mean()) < 1e-9
    # The regression with controls finds the amount on the planted family, 0 elsewhere.
    terms = {t["term"]: t["coef"] for t in res.numbers["regression"]["families"]["terms"]}
    assert abs(terms[f"cat_{PLANTED}"] - AMOUNT) < 1e-6
    assert all(abs(v) < 1e-6 for k, v in terms.items() if k != f"cat_{PLANTED}")

    res.numbers["warnings"] = [f"document w{i}: a warning" for i in range(53)]
    paths = write_report(res, tmp_path, token_docs_per_domain=1)
    md = paths["md"].read_text()
    warn = md.split("## Warnings\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert warn[0] == "- document w0: a warning" and len(warn) == 51
    assert warn[-1] == "- ... and 3 more (report.json)"
    assert "<li>document w49: a warning</li>" in paths["html"].read_text()
    numbers = json.loads(paths["json"].read_text())
    assert len(numbers["warnings"]) == 53
    (adj,) = [r for r in numbers["families"] if r["name"] == PLANTED]
    assert abs(adj["mean"] - AMOUNT) < 1e-9
    page = paths["html"].read_text()
    assert "data:image/png;base64," in page and f"{AMOUNT:.4f}" in page
    assert (tmp_path / "figures" / "families.png").stat().st_size > 1000
    assert numbers["token_views"] and (tmp_path / numbers["token_views"][0]).is_file()
    assert f"| {PLANTED} | content |" in paths["md"].read_text()
    # The tag table: every open-class tag's gap is the amount times its share of
    # adjective tokens (the amount itself on the adjective tags), counted token by token.
    assert [r["mean"] for r in numbers["tags"]] == sorted(
        (r["mean"] for r in numbers["tags"]), reverse=True)
    tag_rows = {r["name"]: r for r in numbers["tags"]}
    assert {"JJ", "NN", "NNS", "VB", "RB"} <= set(tag_rows)
    for name, r in tag_rows.items():
        sel = _tag_tokens(labels, tags, name)
        assert r["n"] == sel.sum() and r["family"] == families.tag_family(name), name
        assert r["n_docs"] == len(set(frame_a["doc_id"][sel])), name
        assert r["flagged"] == (r["n_docs"] < 5), name
        assert abs(r["mean"] - AMOUNT * planted[sel].mean()) < 1e-9, name
    assert abs(tag_rows["JJ"]["mean"] - AMOUNT) < 1e-9 and tag_rows["JJ"]["significant"]
    assert "## Gap by open-class tag" in md and "| JJ | adjective |" in md
    # The cross-fitted TOP-10 (the default) ranks the adjective tags first in every fold
    # that has them on enough documents.
    top = numbers["meta"]["top_families"]
    assert top["computed"] and len(top["cross_fit"]["folds"]) == 3
    for fold in top["cross_fit"]["folds"]:
        adj = [t for t in fold["tags"] if families.tag_family(t) == PLANTED]
        assert fold["tags"][:len(adj)] == adj
    assert "is cross-fitted" in md


def _gap_numbers(numbers):
    """Every gap-valued number of the report (not losses, counts or p-values)."""
    out = []
    for key in ("domains", "families", "tags", "repeat_length", "filtered_gaps"):
        out += [(key, r["name"] if "name" in r else r["n"], r) for r in numbers[key]]
    out += [("content_function", r["name"], r) for r in numbers["content_function"]["table"]]
    out += [("recall_cliff", r["name"], r) for k in ("copy5", "token")
            for r in numbers["recall_cliff"][k]]
    return out


def test_identical_tables_give_zero_gaps_and_cis_covering_zero(setup, brown_tagger,
                                                               tmp_path):
    docs, frame_a, loss_a, _ = setup
    res = analyze(tables(frame_a, loss_a.copy()), docs, brown_tagger, n_boot=200)
    numbers = json.loads(write_report(res, tmp_path, token_docs_per_domain=0)["json"]
                         .read_text())
    checked = 0
    for section, name, r in _gap_numbers(numbers):
        if r["mean"] is None:  # an empty bin (e.g. no 5-gram repeats that far back)
            continue
        assert r["mean"] == 0.0, (section, name)
        if r["lo"] is None:  # one document: no interval, and flagged
            assert r["n_docs"] == 1 and r["flagged"], (section, name)
            continue
        assert r["lo"] <= 0.0 <= r["hi"], (section, name)
        assert not r["significant"], (section, name)
        checked += 1
    for r in numbers["open_close"]:
        assert r["diff"] == 0.0
        if r["lo"] is None:
            assert r["n_docs"] <= 1 and r["flagged"]
            continue
        assert r["lo"] <= 0.0 <= r["hi"]
        checked += 1
    d = numbers["content_function"]["diff"]
    assert d["diff"] == 0.0 and d["lo"] <= 0.0 <= d["hi"]
    s = numbers["vocab_slope"]
    assert s["slope"] == 0.0 and s["lo"] <= 0.0 <= s["hi"]
    for reg in numbers["regression"].values():
        assert all(abs(t["coef"]) < 1e-12 for t in reg["terms"])
    assert checked > 60
    # The filtered losses of the two tables are equal too.
    fl = numbers["filtered_losses"]
    half = len(fl) // 2
    assert [r["mean"] for r in fl[:half]] == [r["mean"] for r in fl[half:]]


def test_analyze_app_end_to_end(setup, tmp_path):
    from absl import flags

    from hybrid_jax.analysis.table import write_table
    from hybrid_jax.apps import analyze as app

    docs, frame_a, loss_a, tags = setup
    loss_b = synthetic.plant_gap(loss_a, families.has(tags, "noun"), 0.1)
    write_table(frame_a, tmp_path / "a.parquet", model="transformer")
    write_table(frame_a.assign(loss=loss_b), tmp_path / "b.parquet", model="hybrid")
    with open(tmp_path / "docs.jsonl", "w") as f:
        for d in docs.values():
            f.write(json.dumps({"id": d.id, "domain": d.domain, "text": d.text}) + "\n")
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["analyze", f"--tables={tmp_path / 'a.parquet'},{tmp_path / 'b.parquet'}",
                 f"--docs={tmp_path / 'docs.jsonl'}", f"--out={tmp_path / 'out'}",
                 "--tagger=brown", "--n_boot=100", "--token_docs_per_domain=1"])
    app.main([])
    numbers = json.loads((tmp_path / "out" / "report.json").read_text())
    assert numbers["meta"]["a"] == "transformer" and numbers["meta"]["b"] == "hybrid"
    (noun,) = [r for r in numbers["families"] if r["name"] == "noun"]
    assert abs(noun["mean"] - 0.1) < 1e-9
    assert np.isclose(numbers["domains"][0]["mean"], 0.1 * families.has(tags, "noun").mean())


def test_three_models_with_checkpoints_get_filtered_loss_curves(setup, brown_tagger):
    from hybrid_jax.analysis import filters
    from hybrid_jax.analysis.figures import filtered_curves

    docs, frame_a, loss_a, tags = setup
    tabs = []
    for model, shift in (("transformer", 0.0), ("hybrid", 0.2), ("recurrent", 0.1)):
        for step in (100, 200):
            loss = loss_a + shift + (0.3 if step == 100 else 0.0)
            tabs.append(ScoreTable(f"{model}@{step}", frame_a.assign(loss=loss), model, step))
    res = analyze(tabs, docs, brown_tagger, a="transformer@200", b="hybrid@200", n_boot=100)
    assert res.numbers["meta"]["a"] == "transformer@200"
    assert abs(res.frames["domains"].iloc[0]["mean"] + 0.2) < 1e-9  # B worse by 0.2
    fl = res.frames["filtered_losses"].set_index(["table", "filter"])
    rep = res.tokens["rep"].to_numpy()
    masks = filters.masks_from_repeats(rep, filters.content_flags(tags))
    want = filters.filtered_means(loss_a, masks)
    for t in tabs:
        shift = t.frame["loss"].iloc[0] - loss_a[0]
        for f in filters.FILTERS:
            assert abs(fl.loc[(t.name, f), "mean"] - (want[f] + shift)) < 1e-9
    assert filtered_curves(res.frames["filtered_losses"]) is not None


def test_analyze_app_statistics_flags_and_top_families_from(setup, labels, tmp_path):
    from absl import flags

    from hybrid_jax.analysis.table import write_table
    from hybrid_jax.apps import analyze as app

    docs, frame_a, loss_a, tags = setup
    planted = families.has(tags, "adjective") | families.has(tags, "noun")
    loss_b = synthetic.plant_gap(loss_a, families.has(tags, "adjective"), 0.2)
    loss_b = synthetic.plant_gap(loss_b, families.has(tags, "noun"), 0.1)
    write_table(frame_a, tmp_path / "a.parquet", model="transformer")
    write_table(frame_a.assign(loss=loss_b), tmp_path / "b.parquet", model="hybrid")
    with open(tmp_path / "docs.jsonl", "w") as f:
        for d in docs.values():
            f.write(json.dumps({"id": d.id, "domain": d.domain, "text": d.text}) + "\n")
    common = [f"--tables={tmp_path / 'a.parquet'},{tmp_path / 'b.parquet'}",
              f"--docs={tmp_path / 'docs.jsonl'}", "--tagger=brown", "--n_boot=200",
              "--token_docs_per_domain=0"]
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["analyze", *common, f"--out={tmp_path / 'first'}"])
    app.main([])
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["analyze", *common, f"--out={tmp_path / 'second'}", "--cluster=window",
                 "--correction=bh", "--min_docs=3", "--top_k=2",
                 f"--top_families_from={tmp_path / 'first' / 'report.json'}"])
    app.main([])
    numbers = json.loads((tmp_path / "second" / "report.json").read_text())
    meta = numbers["meta"]
    assert meta["cluster"] == "window" and meta["correction"]["method"] == "bh"
    first = json.loads((tmp_path / "first" / "report.json").read_text())
    ranked = [r["name"] for r in first["tags"] if r["mean"] > 0 and not r["flagged"]][:2]
    assert meta["top_families"]["families"] == ranked
    assert all(families.tag_family(t) in ("adjective", "noun") for t in ranked)
    assert "the tags table of" in meta["top_families"]["source"]
    assert "first/report.json" in meta["top_families"]["source"]
    assert meta["documents_check"]["method"] == "surface heuristic"
    (row,) = [r for r in numbers["filtered_gaps"] if r["name"] == "top10_no_copy"]
    top = (_tag_tokens(labels, tags, ranked[0]) | _tag_tokens(labels, tags, ranked[1])) \
        & (_rep_lengths(tmp_path / "a.parquet") == 0)
    assert abs(row["mean"] - (loss_a - loss_b)[top].mean()) < 1e-9 and row["n"] == top.sum()
    assert planted[top].all()
    md = (tmp_path / "second" / "report.md").read_text()
    assert "Clustering unit: window (" in md and "Benjamini-Hochberg" in md
    assert "Flagged categories:" in md and "top10_no_copy" in md
    # An explicit list names families or tags; an unknown name is a one-line error.
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["analyze", *common, f"--out={tmp_path / 'third'}", "--top_families=jj,nouns"])
    with pytest.raises(TableError, match=r"unknown families or tags \['nouns'\]"):
        app.main([])


def _rep_lengths(path):
    """The repeat lengths of the analysed tokens, recomputed as the analysis does."""
    import pandas as pd

    from hybrid_jax.analysis.features import context_ids
    from hybrid_jax.analysis.repeats import repeat_lengths

    f = pd.read_parquet(path)
    return repeat_lengths(f["token_id"].to_numpy(), context_ids(f),
                          positions=f["position"].to_numpy())
