"""Study stages without training: settings, records, refusals before any work."""

from __future__ import annotations

import json

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
