"""Document sources (bad input skipped and counted), tokenizers, the grain pipeline."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from hybrid_jax.data.pipeline import training_batches
from hybrid_jax.data.sources import Document, load_documents, split_held_out
from hybrid_jax.data.tokenizers import load_tokenizer, train_sentencepiece

TEXTS = [
    "The cat sat on the mat. The dog sat on the log.",
    "def f(x):\n    return x + 1  # naïve — ok\n",
    "Colourless green ideas sleep furiously; time flies like an arrow.",
] * 20


def test_jsonl_bad_documents_are_skipped_and_counted(tmp_path):
    path = tmp_path / "docs.jsonl"
    with open(path, "wb") as f:
        f.write(json.dumps({"id": "a", "text": "hello", "domain": "x"}).encode() + b"\n")
        f.write(json.dumps({"id": "b", "text": "   "}).encode() + b"\n")
        f.write(b'{"id": "c", "text": "caf\xe9"}\n')  # Latin-1 byte: not UTF-8
        f.write(json.dumps({"id": "d", "text": "world"}).encode() + b"\n")
    docs, stats = load_documents(f"jsonl:{path}")
    assert [d.id for d in docs] == ["a", "d"]
    assert docs[1].domain == "docs"  # default domain: the file name
    assert stats.read == 2 and stats.skipped == {"empty text": 1, "not UTF-8": 1}
    path.write_text('{"id": "e", "body": "no text field"}\n')
    with pytest.raises(ValueError, match=r"docs.jsonl:1: no string field 'text'"):
        load_documents(f"jsonl:{path}")
    with pytest.raises(FileNotFoundError, match="no files match"):
        load_documents(f"jsonl:{tmp_path}/missing*.jsonl")
    with pytest.raises(ValueError, match="unknown document source"):
        load_documents("s3:bucket")


def test_held_out_split_per_domain():
    docs = [Document(str(i), "ab"[i % 2], "t") for i in range(20)]
    train, held = split_held_out(docs, 5)
    assert len(held) == 4 and {d.domain for d in held} == {"a", "b"}
    assert not {d.id for d in train} & {d.id for d in held}


def test_sentencepiece_offsets_and_round_trip():
    tok = train_sentencepiece(TEXTS, 320)
    for text in TEXTS[:3]:
        ids, start, end = tok.encode_with_offsets(text)
        assert tok.decode(ids) == text
        # Offsets cover the text in order; a byte-fallback token inside a multi-byte
        # character carries that character's span.
        assert np.all(np.diff(start) >= 0) and start[0] == 0 and end[-1] == len(text)
        assert "".join(text[s:e] for s, e in zip(start, end))[:10] == text[:10]
    assert load_tokenizer("bytes").vocab_size == 257
    with pytest.raises(ValueError, match="unknown tokenizer"):
        load_tokenizer("wordpiece")


def test_pipeline_is_deterministic_resumable_and_sharded():
    docs = [Document(str(i), "d", f"document {i} " + "word " * (i % 7 + 3)) for i in range(40)]
    tok = load_tokenizer("bytes")

    def stream(**kw):
        return training_batches(docs, tok, seq_len=32, batch_size=4, seed=3, **kw)

    it = stream()
    first = [next(it) for _ in range(3)]
    state = it.get_state()
    after = [next(it) for _ in range(2)]
    again = stream()
    assert all((next(again)["tokens"] == b["tokens"]).all() for b in first)
    resumed = stream()
    resumed.set_state(state)
    assert all((next(resumed)["tokens"] == b["tokens"]).all() for b in after)
    b = first[0]
    assert b["tokens"].shape == b["segment_ids"].shape == (4, 33)
    # Every document ends with EOS, and segment ids change only after an EOS.
    for row, seg in zip(b["tokens"], b["segment_ids"]):
        changes = np.flatnonzero(np.diff(seg))
        assert all(row[c] == tok.eos_id for c in changes)

    # Four shards over two processes: each process gets its half of every global batch,
    # the halves are exactly the single-process batch, and they read disjoint documents.
    single = stream(num_shards=4)
    procs = [stream(num_shards=4, process_index=p, process_count=2) for p in range(2)]
    seen = [set(), set()]
    for _ in range(80):  # a few epochs: a document's name may straddle two rows
        rows = [next(p)["tokens"] for p in procs]
        assert rows[0].shape == (2, 33)
        np.testing.assert_array_equal(np.concatenate(rows), next(single)["tokens"])
        for p in range(2):
            for row in rows[p]:
                seen[p] |= {int(x) for x in re.findall(r"document (\d+) ", tok.decode(row))}
    assert seen[0] | seen[1] == set(range(40)) and not seen[0] & seen[1]
    # A state written by two processes resumes one process.
    merged = {"num_shards": 4,
              "shards": {**procs[0].get_state()["shards"], **procs[1].get_state()["shards"]}}
    single.set_state(merged)
    rows = [next(p)["tokens"] for p in procs]
    np.testing.assert_array_equal(np.concatenate(rows), next(single)["tokens"])
    with pytest.raises(ValueError, match="was data.shards changed"):
        stream(num_shards=2).set_state(merged)
    with pytest.raises(ValueError, match="split evenly over 3 processes"):
        stream(num_shards=4, process_index=0, process_count=3)
    with pytest.raises(ValueError, match="not a multiple of the 3 data shards"):
        stream(num_shards=3)
