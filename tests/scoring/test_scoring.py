"""Scoring: sliced-vocabulary statistics against full logits, eval packs, the per-token
table (alignment across models, exact character offsets, resume), bad input."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from flax import nnx

from hybrid_jax.analysis.table import check_aligned, read_table
from hybrid_jax.data.batch import Batch
from hybrid_jax.data.sources import Document, load_documents
from hybrid_jax.data.tokenizers import load_tokenizer, train_sentencepiece
from hybrid_jax.models.lm import LM
from hybrid_jax.models.presets import research_model
from hybrid_jax.scoring.eval_pack import EvalPack, build_eval_pack
from hybrid_jax.scoring.score import make_scorer, score, token_stats
from hybrid_jax.scoring.writer import score_pack

from ..models.test_layers import perturb

CORPUS = pathlib.Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "corpus"
TEXTS = [
    "The quick brown fox jumps over the lazy dog. (It was not amused.)",
    "def area(r):\n    return 3.14159 * r ** 2  # naïve π — fine\n",
    "<p class=\"x\">Hello <b>world</b></p>",
    "Ein Übergrößenträger aß Äpfel; 東京 is a city.",
] * 3


def small_model(arch: str, vocab: int, seed: int = 0) -> LM:
    model = LM(research_model(arch, "tiny", vocab_size=vocab), rngs=nnx.Rngs(seed))
    perturb(model, seed, scale=0.05)
    return model


@pytest.mark.parametrize("chunk", [7, 64, 1000])
def test_sliced_stats_equal_full_softmax(chunk):
    rng = np.random.default_rng(0)
    h = jnp.asarray(rng.normal(size=(2, 9, 16)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(16, 100)) * 2, jnp.float32)
    targets = jnp.asarray(rng.integers(0, 100, (2, 9)))
    stats = token_stats(h, w, targets, vocab_chunk=chunk)
    logits = np.asarray(h, np.float64) @ np.asarray(w, np.float64)
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1,
                                                                              keepdims=True))
    logp -= logits.max(-1, keepdims=True)
    t = np.asarray(targets)
    want_loss = -np.take_along_axis(logp, t[..., None], -1)[..., 0]
    want_entropy = -(np.exp(logp) * logp).sum(-1)
    tl = np.take_along_axis(logits, t[..., None], -1)
    want_rank = (logits > tl).sum(-1)
    np.testing.assert_allclose(stats.loss, want_loss, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats.entropy, want_entropy, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(stats.rank, want_rank)


def _masked_model_losses(model: LM, tokens: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """-log p(next token) from the model's full logits, computed with the segment ids."""
    logits = np.asarray(model(jnp.asarray(tokens[:, :-1]), segment_ids=jnp.asarray(seg[:, :-1])),
                        np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    return -np.take_along_axis(logp, tokens[:, 1:, None], -1)[..., 0]


@pytest.mark.parametrize("arch", ["transformer", "hybrid"])
def test_score_api_equals_the_model_logits(arch):
    model = small_model(arch, 97)
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 97, (3, 41))
    seg = np.ones_like(tokens)
    seg[1, 20:] = 2
    got = score(model, tokens, seg, batch_size=2, vocab_chunk=10)
    want = _masked_model_losses(model, tokens, seg)
    valid = seg[:, 1:] == seg[:, :-1]
    np.testing.assert_allclose(got[valid], want[valid], rtol=1e-5, atol=1e-5)
    assert np.isnan(got[~valid]).all()  # the first token of document 2 has no context


@pytest.mark.parametrize("arch", ["transformer", "hybrid"])
def test_one_document_windows_score_the_same_without_their_segment_ids(arch):
    """score() drops the segment ids of windows that hold one document then padding
    (`Batch.drop_trivial_segments`); the kept targets' losses still equal the model's
    logits computed with the ids."""
    model = small_model(arch, 97)
    rng = np.random.default_rng(2)
    tokens = rng.integers(1, 97, (3, 41))
    seg = np.ones_like(tokens)
    seg[0, 30:] = 0  # trailing padding
    seg[2] = 0  # a padding row, as the last batch of a pack has
    tokens[seg == 0] = 0
    batch = Batch.from_rows(tokens, seg)
    assert batch.drop_trivial_segments().segment_ids is None
    got = score(model, tokens, seg, batch_size=3, vocab_chunk=10)
    want = _masked_model_losses(model, tokens, seg)
    valid = np.asarray(batch.loss_mask)
    assert valid[0].sum() == 29 and valid[1].all() and not valid[2].any()
    np.testing.assert_allclose(got[valid], want[valid], rtol=1e-5, atol=1e-5)
    assert np.isnan(got[~valid]).all()


def test_pack_layouts_score_every_text_token_once():
    tok = load_tokenizer("bytes")
    docs = [Document(f"d{i}", "x", t) for i, t in enumerate(TEXTS[:4])]
    n_text = sum(len(t.encode()) for t in TEXTS[:4])
    for mode, stride in (("packed", None), ("document", 8)):
        pack = build_eval_pack(docs, tok, 16, tokenizer_spec="bytes", mode=mode, stride=stride)
        # Every text token but each document's first is a scored target, exactly once.
        assert pack.score_mask.sum() == n_text - len(docs), mode
        keys = set()
        for r, j in zip(*np.nonzero(pack.score_mask)):
            key = (pack.doc_index[r, j + 1], pack.char_start[r, j + 1], pack.tokens[r, j + 1])
            keys.add((r, j) if mode == "packed" else key)
        assert len(keys) == pack.score_mask.sum()
    document = build_eval_pack(docs, tok, 16, tokenizer_spec="bytes", mode="document", stride=8)
    # Strided windows: every scored target after the first window has >= 8 tokens of context.
    first_window = {}
    for r in range(document.num_windows):
        first_window.setdefault(document.doc_index[r, 0], r)
    for r, j in zip(*np.nonzero(document.score_mask)):
        if r != first_window[document.doc_index[r, 0]]:
            assert j + 1 >= 8


def test_two_models_give_row_aligned_tables_and_documents_sum(tmp_path):
    tok = train_sentencepiece(TEXTS * 3, 420)
    docs = [Document(f"d{i}", "prose" if i % 2 else "code", t) for i, t in enumerate(TEXTS)]
    pack = build_eval_pack(docs, tok, 24, tokenizer_spec="sentencepiece:test")
    pack.save(tmp_path / "pack")
    pack = EvalPack.load(tmp_path / "pack")
    tables = []
    for arch, seed in (("transformer", 0), ("recurrent", 1)):
        model = small_model(arch, tok.vocab_size, seed)
        graphdef, params = nnx.split(model, nnx.Param)
        out = score_pack(graphdef, params, pack, tmp_path / arch, model_name=arch,
                         batch_size=4, windows_per_shard=4, vocab_chunk=64)
        tables.append(read_table(out))
    check_aligned(tables)
    assert not tables[0].frame["loss"].equals(tables[1].frame["loss"])
    # The table's losses are the model's: per window, the sum over scored targets equals
    # the masked mean loss of the model times the count.
    frame = tables[0].frame
    model = small_model("transformer", tok.vocab_size, 0)
    losses = score(model, pack.tokens, pack.segment_ids)
    for w in range(pack.num_windows):
        m = pack.score_mask[w]
        rows = frame[frame["window"] == w]
        assert len(rows) == m.sum()
        assert rows["loss"].sum() == pytest.approx(np.nanmean(losses[w][m]) * m.sum(), rel=1e-5)


def test_character_offsets_map_back_to_every_corpus_domain(tmp_path):
    docs, _ = load_documents(f"corpus:{CORPUS}")
    by_domain: dict[str, list[Document]] = {}
    for d in docs:
        by_domain.setdefault(d.domain, []).append(d)
    sample = [d for ds in by_domain.values() for d in ds[:2]]
    assert len({d.domain for d in sample}) == 7
    tok = train_sentencepiece((d.text for d in sample), 600)
    for spec, t in (("bytes", load_tokenizer("bytes")), ("sp", tok)):
        pack = build_eval_pack(sample, t, 512, tokenizer_spec=spec)
        real = pack.char_start >= 0
        for i, d in enumerate(sample):
            sel = real & (pack.doc_index == i)
            starts, ends, ids = pack.char_start[sel], pack.char_end[sel], pack.tokens[sel]
            # Rows overlap by one token: keep each (start, token) once, in text order.
            spans = sorted(set(zip(starts.tolist(), ends.tolist(), ids.tolist())))
            pieces, last_end = [], 0
            for s, e, _ in spans:
                if s >= last_end:  # byte pieces of one character share its span
                    pieces.append(d.text[s:e])
                    last_end = e
            assert "".join(pieces) == d.text, (spec, d.id)


def test_resume_skips_complete_shards(tmp_path, monkeypatch):
    tok = load_tokenizer("bytes")
    docs = [Document(f"d{i}", "x", t) for i, t in enumerate(TEXTS)]
    pack = build_eval_pack(docs, tok, 32, tokenizer_spec="bytes")
    model = small_model("hybrid", 257)
    graphdef, params = nnx.split(model, nnx.Param)
    out = score_pack(graphdef, params, pack, tmp_path / "t", model_name="m", batch_size=2,
                     windows_per_shard=2)
    full = read_table(out).frame
    shards = sorted(out.glob("shard-*.parquet"))
    assert len(shards) >= 3
    shards[-1].unlink()  # as if killed while writing the last shard
    mtimes = {p: p.stat().st_mtime_ns for p in shards[:-1]}
    score_pack(graphdef, params, pack, out, model_name="m", batch_size=2, windows_per_shard=2)
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())  # not rewritten
    pd.testing.assert_frame_equal(read_table(out).frame, full)


def test_exports_of_one_run_share_one_compiled_scorer(tmp_path):
    # A study scores several exports of each run: equal graphdefs (separate loads, other
    # weights) must reuse one compilation, and a different model must not.
    tok = load_tokenizer("bytes")
    pack = build_eval_pack([Document(f"d{i}", "x", t) for i, t in enumerate(TEXTS)], tok,
                           32, tokenizer_spec="bytes")
    tables, compiled = [], []
    for seed in (0, 1):
        graphdef, params = nnx.split(small_model("hybrid", 257, seed), nnx.Param)
        out = score_pack(graphdef, params, pack, tmp_path / f"s{seed}", model_name="m",
                         batch_size=2, vocab_chunk=64)
        tables.append(read_table(out).frame["loss"])
        compiled.append(make_scorer(graphdef, vocab_chunk=64)._cache_size())
    scorer = make_scorer(graphdef, vocab_chunk=64)
    # (a table has two batch signatures: windows with and without a document mask)
    assert compiled[0] >= 1 and compiled[1] == compiled[0]  # nothing new for export 2
    assert not tables[0].equals(tables[1])
    other, _ = nnx.split(small_model("hybrid", 300), nnx.Param)
    assert make_scorer(other, vocab_chunk=64) is not scorer
    assert make_scorer(graphdef, vocab_chunk=32) is not scorer


def test_vocab_mismatch_is_an_error(tmp_path):
    tok = train_sentencepiece(TEXTS * 3, 450)
    pack = build_eval_pack([Document("a", "x", TEXTS[0])], tok, 16, tokenizer_spec="sp")
    graphdef, params = nnx.split(small_model("transformer", 300), nnx.Param)
    with pytest.raises(ValueError, match="tokenizer has 450 tokens but the model's vocabulary "
                                         "has 300"):
        score_pack(graphdef, params, pack, tmp_path, model_name="m")
    with pytest.raises(ValueError, match="no non-empty document"):
        build_eval_pack([Document("e", "x", "")], tok, 16, tokenizer_spec="sp")
    jax.clear_caches()
