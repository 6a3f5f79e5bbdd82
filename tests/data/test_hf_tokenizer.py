"""HfTokenizer on a small byte-level BPE built here with the `tokenizers` library.

The tokenizer.json mimics dolma2's shape: byte-level BPE, `<|endoftext|>` and
`<|pad|>` special tokens, and a post-processor that *would* prepend a BOS if asked, to
show that none is added.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from hybrid_jax.data.hf_tokenizer import HfTokenizer

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "def f(x):\n    return x * 2  # doubled",
    "Zürich, naïve café — 東京 and emoji 🙂 too.",
] * 20


def make_tokenizer(directory: pathlib.Path, vocab_size: int = 300) -> pathlib.Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|pad|>", "<|bos|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    bos = tok.token_to_id("<|bos|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", special_tokens=[("<|bos|>", bos)])
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    return directory


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> HfTokenizer:
    return HfTokenizer(make_tokenizer(tmp_path_factory.mktemp("tok")))


def test_offsets_cover_the_text_without_bos(tok):
    for text in set(CORPUS):
        ids, start, end = tok.encode_with_offsets(text)
        assert tok.token_id("<|bos|>") not in ids
        assert len(ids) == len(start) == len(end) > 0
        assert start[0] == 0 and end[-1] == len(text)
        assert np.all(start[1:] >= start[:-1]) and np.all(end >= start)
        # Every character is covered; ASCII tokens spell exactly their span.
        covered = np.zeros(len(text), bool)
        for s, e in zip(start, end, strict=True):
            covered[s:e] = True
        assert covered.all()
        for i, s, e in zip(ids, start, end, strict=True):
            piece = text[s:e]
            if piece.isascii():
                assert tok.decode([i]) == piece
        assert tok.decode(ids) == text
        np.testing.assert_array_equal(tok.encode(text), ids)


def test_documents_are_followed_by_eos(tok):
    docs = ["hello world", "Zürich 🙂", "x"]
    enc = tok.encode_documents(docs)
    eos_at = np.flatnonzero(enc.ids == tok.eos_id)
    assert tok.eos_id == tok.token_id("<|endoftext|>")
    assert len(eos_at) == 3 and eos_at[-1] == len(enc.ids) - 1
    for d, text in enumerate(docs):
        sel = enc.doc == d
        ids = enc.ids[sel]
        assert ids[-1] == tok.eos_id
        np.testing.assert_array_equal(ids[:-1], tok.encode(text))
        assert enc.char_start[sel][-1] == enc.char_end[sel][-1] == len(text)
    assert tok.decode(enc.ids) == "".join(docs)


def test_missing_eos_is_an_error(tmp_path):
    d = make_tokenizer(tmp_path / "t")
    with pytest.raises(ValueError, match="<\\|nope\\|>"):
        HfTokenizer(d, eos_token="<|nope|>")
