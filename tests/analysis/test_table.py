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


def test_document_digest_is_the_sha256_prefix_of_the_utf8_text():
    import hashlib

    from hybrid_jax.analysis.table import document_digest

    text = "naïve café – ok"
    assert document_digest(text) == hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    assert len(document_digest("")) == 16 and document_digest("a") != document_digest("b")


def _shifted(docs, ids, prefix="PREFIX "):
    import dataclasses

    assert len(prefix) == 7
    return {k: dataclasses.replace(d, text=prefix + d.text) if k in ids else d
            for k, d in docs.items()}


@pytest.fixture(scope="module")
def real_pack(corpus_docs):
    from hybrid_jax.analysis import synthetic

    sub = synthetic.sample_documents(corpus_docs, 4, max_chars=4000, seed=3)
    pack = synthetic.pack_table(sub, window=256).assign(loss=1.0)
    return {d.id: d for d in sub}, validate_frame(pack)


def _complete_side_car(directory):
    """The side-car a scorer writes last: these shards are the complete set."""
    from hybrid_jax.analysis.table import SCORES_FORMAT, SCORES_SIDE_CAR
    from hybrid_jax.digests import file_sha256

    files = {p.name: {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
             for p in sorted(directory.glob("*.parquet"))}
    (directory / SCORES_SIDE_CAR).write_text(json.dumps(
        {"format": SCORES_FORMAT, "complete": True, "shards": len(files),
         "shard_files": files}))


def test_stored_digests_refuse_edited_documents_naming_the_first(real_pack, tmp_path):
    from hybrid_jax.analysis.table import document_digest, read_table

    docs, pack = real_pack
    digests = {k: document_digest(d.text) for k, d in docs.items()}
    # Sharded like the scorer's output: each shard carries digests of its own documents.
    half = pack["window"] < pack["window"].median()
    (tmp_path / "t").mkdir()
    for i, part in enumerate((pack[half], pack[~half])):
        write_table(part, tmp_path / "t" / f"{i}.parquet", model="m",
                    doc_digests={k: digests[k] for k in part["doc_id"].unique()})
    _complete_side_car(tmp_path / "t")
    t = read_table(tmp_path / "t")
    assert t.doc_digests == digests
    assert check_documents(t.frame, docs, digests={"m": t.doc_digests}).method == "digests"
    ids = list(docs)[2::3]
    with pytest.raises(TableError, match=rf"m: the text of {len(ids)} of {len(docs)} documents "
                                         rf"differs .* first {ids[0]!r}"):
        check_documents(t.frame, _shifted(docs, ids), digests={"m": t.doc_digests})
    with pytest.raises(TableError, match="lack 1 documents"):
        write_table(pack, tmp_path / "x.parquet", doc_digests={k: digests[k]
                                                               for k in list(docs)[1:]})


def test_without_digests_shifted_texts_are_caught_by_the_surface_check(real_pack):
    docs, pack = real_pack
    ok = check_documents(pack, docs)
    assert ok.method == "surface heuristic" and ok.n_docs >= len(docs) - 2
    ids = [list(docs)[5], list(docs)[11]]
    with pytest.raises(TableError, match=rf"in 2 of \d+ documents the text .* first "
                                         rf"{ids[0]!r}"):
        check_documents(pack, _shifted(docs, ids))
    with pytest.raises(TableError, match="documents the text"):  # every text shifted
        check_documents(pack, _shifted(docs, list(docs)))
    off = check_documents(pack, _shifted(docs, ids), verify_text=False)
    assert off.method == "not verified" and "NOT verified" in off.detail


def test_surface_check_accepts_a_byte_level_table_of_multilingual_text():
    from hybrid_jax.analysis.table import surface_agreement
    from hybrid_jax.data.byte_tokenizer import ByteTokenizer

    texts = {"en": "The cat sat on the mat. " * 20, "zh": "我们今天去公园散步，天气很好。" * 20,
             "mix": "Café naïve résumé – voilà! Größe über Straße. " * 10}
    docs, rows = {}, []
    for k, text in texts.items():
        docs[k] = Document(k, "books", text)
        ids, s, e = ByteTokenizer().encode_with_offsets(text)
        rows.append(pd.DataFrame({"doc_id": k, "domain": "books", "token_id": ids,
                                  "char_start": s, "char_end": e}))
    table = pd.concat(rows, ignore_index=True)
    agree = surface_agreement(table, docs)
    # Byte tokens inside CJK characters cover many characters each: not judged, so the
    # Chinese document is neither accepted nor refused on them.
    assert agree.loc["zh", "rows"] == 0
    assert (agree.loc[["en", "mix"], "rows"] >= 20).all()
    assert (agree.loc[["en", "mix"], "agreement"] == 1.0).all()
    assert check_documents(table, docs).method == "surface heuristic"


def test_loss_unit_metadata_bits_are_converted_and_unknown_units_refused(tmp_path):
    import math

    import pyarrow as pa
    import pyarrow.parquet as pq

    from hybrid_jax.analysis.table import read_table

    f = validate_frame(frame())
    for unit, want in (("bits", f["loss"] * math.log(2)), ("nats", f["loss"])):
        pt = pa.Table.from_pandas(f, preserve_index=False)
        pt = pt.replace_schema_metadata({b"hybrid_jax.loss_unit": unit.encode()})
        pq.write_table(pt, tmp_path / f"{unit}.parquet")
        t = read_table(tmp_path / f"{unit}.parquet")
        np.testing.assert_allclose(t.frame["loss"], want)
        assert t.loss_unit_read == (unit if unit == "bits" else None)
    pq.write_table(pa.Table.from_pandas(f, preserve_index=False).replace_schema_metadata(
        {b"hybrid_jax.loss_unit": b"perplexity"}), tmp_path / "p.parquet")
    with pytest.raises(TableError, match="loss unit 'perplexity'"):
        read_table(tmp_path / "p.parquet")
    write_table(f, tmp_path / "w.parquet")
    assert pq.read_schema(tmp_path / "w.parquet").metadata[b"hybrid_jax.loss_unit"] == b"nats"
