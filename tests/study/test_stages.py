"""Study stages without training: settings, records, refusals before any work."""

from __future__ import annotations

import json
import pathlib

import ml_collections
import pytest

from hybrid_jax.study import StudyError, prepare, settings
from hybrid_jax.study.manifest import check_digests, read_record, write_record
from tests.study.test_study import _config


def test_settings_and_records(tmp_path):
    assert settings(ml_collections.ConfigDict({}))["archs"] == "transformer,hybrid,recurrent"
    with pytest.raises(StudyError, match=r"unknown fields \['pack_docs'\]"):
        settings(ml_collections.ConfigDict({"study": {"pack_docs": 3}}))
    with pytest.raises(StudyError, match="no prepare record: run --stage=prepare first"):
        read_record(tmp_path / "prepare.json", "prepare", needed_by="train")
    write_record(tmp_path / "r.json", "score", {"digests": {"data": "a"}})
    with pytest.raises(StudyError, match="not a train record"):
        read_record(tmp_path / "r.json", "train")
    digests = {"tokenizer": "t" * 64, "data": "d" * 64, "pack": "p" * 64}
    check_digests(digests, dict(digests), what="x", where="y")
    with pytest.raises(StudyError, match=r"x was made with a different data \(data digest "
                                         r"eeeeeeeeeeee, this study's prepare.json has "
                                         r"dddddddddddd\): y"):
        check_digests(digests, {**digests, "data": "e" * 64}, what="x", where="y")


def test_an_interrupted_prepare_resumes_only_with_its_settings(tmp_path):
    docs = tmp_path / "docs.jsonl"
    config = _config(tmp_path / "missing.jsonl")
    with pytest.raises(FileNotFoundError):
        prepare(config, str(tmp_path / "w"))  # fails after starting
    started = json.loads((tmp_path / "w" / "prepare.started.json").read_text())
    assert started["sources"] == f"jsonl:{tmp_path / 'missing.jsonl'}"
    docs.write_text("".join(json.dumps({"id": str(i), "domain": "d", "text": f"text {i} " * 30})
                            + "\n" for i in range(12)))
    with pytest.raises(StudyError, match="holds a prepare started with other data settings"):
        prepare(_config(docs), str(tmp_path / "w"))


def test_the_stages_table_shows_how_far_an_unfinished_run_got(tmp_path):
    from hybrid_jax.study.summary import stages_markdown

    digests = {"tokenizer": "t" * 64, "data": "d" * 64, "pack": "p" * 64}
    write_record(tmp_path / "prepare.json", "prepare", {"digests": digests})
    run = tmp_path / "hybrid"
    run.mkdir()
    write_record(run / "study_train.json", "train",
                 {"arch": "hybrid", "digests": digests, "complete": False,
                  })
    rows = [{"step": 50, "train/tokens_per_s": 1e5},  # holds the compilation: left out
            {"step": 100, "train/tokens_per_s": 9e5}, {"step": 135, "eval/loss": 3.0},
            {"step": 150, "train/tokens_per_s": 7e5}, {"step": 200, "train/tokens_per_s": 8e5}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows)
                                       + '{"step": 250, "train/to')  # cut by the kill
    row = [line for line in stages_markdown(tmp_path).splitlines() if "train hybrid" in line]
    assert len(row) == 1 and row[0].startswith(
        "| train hybrid (not finished) | - | - | 800,000 tokens/s (median interval) up to "
        "step 200, the last logged; rerun to resume | `")  # then the command it ran


def test_top10_ranking_of_the_gpu_recipe_and_the_study_settings(tmp_path):
    import importlib.util

    from hybrid_jax.analysis.table import TableError
    from hybrid_jax.study.analyze_stage import _top_families

    root = pathlib.Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("study_gpu", root / "configs" / "study_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    s = settings(module.get_config("shared=none"))
    # The GPU recipe ranks tags, cross-fitted (analyze's default), not the six families.
    assert (s["top_families"], s["top_k"]) == ("", 10)
    assert _top_families(s) == (None, None)
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"tags": [{"name": "NN", "mean": 0.01},
                                           {"name": "JJ", "mean": 0.03},
                                           {"name": "RB", "mean": 0.02}],
                                  "families": [{"name": "noun", "mean": 0.5}]}))
    assert _top_families({"top_families": f"report:{report}", "top_k": 2}) == (
        ["JJ", "RB"], f"the tags table of {report} (top 2 open-class)")
    assert _top_families({"top_families": "NN, noun", "top_k": 10}) == (
        ["NN", "noun"], "config list (study.top_families)")
    with pytest.raises(TableError, match="cannot read the ranking"):
        _top_families({"top_families": f"report:{tmp_path / 'none.json'}", "top_k": 10})
