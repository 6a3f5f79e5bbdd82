"""Byte tokenizer offsets, packing into windows, batch shifting, the stdlib corpus."""

from __future__ import annotations

import numpy as np
import pytest

from hybrid_jax.data.batch import Batch
from hybrid_jax.data.byte_tokenizer import ByteTokenizer
from hybrid_jax.data.packing import pack_documents
from hybrid_jax.data.stdlib_corpus import stdlib_documents


def test_byte_tokenizer_offsets_map_back_to_text():
    tok = ByteTokenizer()
    text = "naïve — ok"
    ids, start, end = tok.encode_with_offsets(text)
    assert tok.decode(ids) == text
    assert len(ids) == len(text.encode("utf-8"))
    # Both bytes of 'ï' and all three of '—' point at their one character.
    assert [text[s:e] for s, e in zip(start, end)] == [
        c for c in text for _ in c.encode("utf-8")]


def test_pack_documents_hand_case():
    packed = pack_documents([np.array([1, 2, 3]), np.array([4, 5])], seq_len=3, eos_id=9)
    # stream: 1 2 3 9 4 5 9 -> rows of 4 tokens overlapping by one, tail padded with 0
    np.testing.assert_array_equal(packed.tokens, [[1, 2, 3, 9], [9, 4, 5, 9]])
    np.testing.assert_array_equal(packed.segment_ids, [[1, 1, 1, 1], [1, 2, 2, 2]])
    np.testing.assert_array_equal(packed.doc_index, [[0, 0, 0, 0], [0, 1, 1, 1]])
    np.testing.assert_array_equal(packed.token_index, [[0, 1, 2, 3], [3, 0, 1, 2]])
    packed = pack_documents([np.array([1, 2, 3, 4, 5])], seq_len=3, eos_id=9)
    np.testing.assert_array_equal(packed.tokens, [[1, 2, 3, 4], [4, 5, 9, 0]])
    np.testing.assert_array_equal(packed.segment_ids, [[1, 1, 1, 1], [1, 1, 1, 0]])
    np.testing.assert_array_equal(packed.token_index, [[0, 1, 2, 3], [3, 4, 5, -1]])
    with pytest.raises(ValueError, match="document 2 is empty"):
        pack_documents([np.array([1]), np.array([], np.int32)], 4, 9)


def test_batch_masks_cross_document_and_padding_targets():
    batch = Batch.from_rows(np.array([[9, 4, 5, 9, 0]]), np.array([[1, 2, 2, 2, 0]]))
    np.testing.assert_array_equal(batch.inputs, [[9, 4, 5, 9]])
    np.testing.assert_array_equal(batch.targets, [[4, 5, 9, 0]])
    np.testing.assert_array_equal(batch.loss_mask, [[False, True, True, False]])


@pytest.mark.parametrize("segs,dropped", [
    ([[1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0]], True),  # one document, then padding
    ([[2, 2, 2, 2, 2, 2], [5, 5, 5, 0, 0, 0]], True),  # any id per row
    ([[1, 1, 2, 2, 2, 2]], False),  # two documents
    ([[1, 1, 0, 1, 1, 1]], False),  # padding before the end
    ([[0, 1, 1, 1, 1, 1]], False),  # the document starts late
])
def test_trivial_segment_ids_are_dropped(segs, dropped):
    segs = np.array(segs)
    batch = Batch.from_rows(np.arange(segs.size).reshape(segs.shape), segs)
    out = batch.drop_trivial_segments()
    assert (out.segment_ids is None) == dropped
    if not dropped:
        assert out is batch
    np.testing.assert_array_equal(out.loss_mask, batch.loss_mask)  # masks stay
    assert out.drop_trivial_segments() is out


def test_stdlib_corpus_is_real_and_deterministic():
    docs = stdlib_documents(max_docs_per_domain=5)
    assert {d.domain for d in docs} == {"python", "prose"}
    assert all(len(d.text) >= 500 for d in docs)
    assert any("def " in d.text for d in docs if d.domain == "python")
    assert [d.id for d in docs] == [d.id for d in stdlib_documents(max_docs_per_domain=5)]
