"""Bad input: clear errors naming the column, row or file, never a silent join."""

import json

import numpy as np
import pandas as pd
import pytest

from hybrid_jax.analysis.table import (
    Document,
    ScoreTable,
    TableError,
    check_aligned,
    check_documents,
    load_tables,
    read_documents,
    validate_frame,
    write_table,
)


def frame(n=6, **over):
    f = pd.DataFrame({"doc_id": ["d0"] * n, "domain": ["books"] * n, "window": [0] * n,
                      "position": np.arange(1, n + 1), "token_id": np.arange(n) + 10,
                      "char_start": np.arange(n), "char_end": np.arange(n) + 1,
                      "loss": np.linspace(1, 2, n)})
    for k, v in over.items():
        f[k] = v
    return f


def table(name, f):
    return ScoreTable(name, validate_frame(f, name), name)


def test_missing_columns_are_named():
    with pytest.raises(TableError, match=r"missing columns \['char_end', 'loss'\]"):
        validate_frame(frame().drop(columns=["loss", "char_end"]))


def test_nan_loss_names_the_first_row():
    f = frame()
    f.loc[3, "loss"] = np.nan
    f.loc[5, "loss"] = np.inf
    with pytest.raises(TableError, match=r"2 non-finite loss.*row 3 \(doc_id='d0', window=0, "
                                         r"position=4, token_id=13"):
        validate_frame(f)


def test_negative_loss_and_bad_spans_are_errors():
    f = frame()
    f.loc[2, "loss"] = -0.5
    with pytest.raises(TableError, match="negative loss -0.5 at row 2"):
        validate_frame(f)
    f = frame()
    f.loc[1, "char_end"] = -1
    with pytest.raises(TableError, match="char_end < char_start"):
        validate_frame(f)


def test_duplicate_positions_and_non_integer_columns():
    with pytest.raises(TableError, match="same \\(window, position\\)"):
        validate_frame(frame(position=[1, 1, 2, 3, 4, 5]))
    with pytest.raises(TableError, match="'token_id' must be integer"):
        validate_frame(frame(token_id=["a"] * 6))


def test_misaligned_tables_name_the_first_mismatching_rows():
    a = table("tr", frame())
    b = table("hy", frame(token_id=[10, 11, 12, 99, 14, 98]))
    with pytest.raises(TableError, match=r"first mismatch in token_id at sorted row 3: "
                                         r"tr: row 3 .*token_id=13.*hy: row 3 .*token_id=99"):
        check_aligned([a, b])
    c = table("short", frame(5))
    with pytest.raises(TableError, match="row count at sorted row 5.*short: no such row"):
        check_aligned([a, c])
    d = table("shifted", frame(char_start=np.arange(6) + 1, char_end=np.arange(6) + 2))
    with pytest.raises(TableError, match="char_start at sorted row 0"):
        check_aligned([a, d])
    check_aligned([a, table("same", frame(loss=np.ones(6)))])  # losses may differ


def test_documents_errors_name_file_line_and_document(tmp_path):
    p = tmp_path / "docs.jsonl"
    p.write_bytes(b'{"id": "d0", "domain": "books", "text": "hello"}\n\xff\xfe\n')
    with pytest.raises(TableError, match=r"docs.jsonl:2: not UTF-8"):
        read_documents([p])
    p.write_text('{"id": "d0", "text": "x"}\n')
    with pytest.raises(TableError, match=r"docs.jsonl:1: missing field 'domain'"):
        read_documents([p])
    p.write_text('{"id": "d0", "domain": "b", "text": "x"}\n{"id": "d0", "domain": "b", '
                 '"text": "y"}\n')
    with pytest.raises(TableError, match="duplicate document id 'd0'"):
        read_documents([p])


def test_table_rows_must_fit_their_documents():
    f = validate_frame(frame())
    with pytest.raises(TableError, match="doc_ids not in the documents, first 'd0'"):
        check_documents(f, {})
    with pytest.raises(TableError, match="past the end of document 'd0' \\(3 chars\\)"):
        check_documents(f, {"d0": Document("d0", "books", "abc")})
    with pytest.raises(TableError, match="differs from the domain 'news' of document 'd0'"):
        check_documents(f, {"d0": Document("d0", "news", "abcdefgh")})


def test_parquet_round_trip_with_model_and_step(tmp_path):
    p = tmp_path / "t.parquet"
    write_table(frame(), p, model="hybrid", step=200)
    (t,) = load_tables([str(p)])
    assert (t.name, t.model, t.step) == ("hybrid@200", "hybrid", 200)
    (t,) = load_tables([f"transformer@300={p}"])
    assert (t.name, t.model, t.step) == ("transformer@300", "transformer", 300)
    pd.testing.assert_frame_equal(t.frame, validate_frame(frame()))
    with pytest.raises(TableError, match="names must be unique"):
        load_tables([str(p), str(p)])
    json.dumps(t.frame.iloc[0].astype(str).to_dict())  # rows are plain values
