"""Pre-tokenised training data: the token store and the batches read from it."""

from __future__ import annotations

import numpy as np
import pytest

from hybrid_jax.data.batch import Batch
from hybrid_jax.data.corpus import build_corpus, iter_corpus
from hybrid_jax.data.sources import Document
from hybrid_jax.data.token_batches import TokenBatches
from hybrid_jax.data.token_store import TokenStore, TokenStoreError, tokenize_corpus
from hybrid_jax.data.tokenizers import load_tokenizer, tokenizer_digest


def _corpus(tmp_path, n=40, shard_chars=400):
    docs = [Document(f"d{i}", "ab"[i % 2], f"doc {i}: " + "word " * (3 + i % 9))
            for i in range(n)]
    build_corpus(docs, tmp_path / "corpus", held_out_every=1000, shard_chars=shard_chars)
    return tmp_path / "corpus"


def test_store_holds_every_document_in_order_whatever_the_workers(tmp_path):
    corpus = _corpus(tmp_path)
    one = tokenize_corpus(corpus, "bytes", tmp_path / "t1", workers=1)
    two = tokenize_corpus(corpus, "bytes", tmp_path / "t2", workers=2)
    assert one["digest"] == two["digest"] and two["throughput"]["workers"] == 2
    assert two["throughput"]["shards"] > 2
    store = TokenStore.open(tmp_path / "t2", verify=True)
    tok = load_tokenizer("bytes")
    docs = list(iter_corpus(corpus))
    assert store.num_documents == len(docs) and store.tokens.dtype == np.uint16
    for d, doc in enumerate(docs):
        expect = np.append(tok.encode(doc.text), tok.eos_id)
        np.testing.assert_array_equal(store.document(d), expect)
    assert store.num_tokens == sum(len(d.text.encode()) + 1 for d in docs)
    assert store.manifest["tokenizer_digest"] == tokenizer_digest("bytes")


def test_store_refuses_corruption_and_another_tokenizer(tmp_path):
    corpus = _corpus(tmp_path)
    tokenize_corpus(corpus, "bytes", tmp_path / "t", workers=1)
    path = tmp_path / "t" / "tokens.bin"
    data = bytearray(path.read_bytes())
    data[10] ^= 1
    path.write_bytes(bytes(data))
    TokenStore.open(tmp_path / "t")  # same size: only a full check finds it
    with pytest.raises(TokenStoreError, match="sha256 differs"):
        TokenStore.open(tmp_path / "t", verify=True)
    path.write_bytes(bytes(data[:-2]))
    with pytest.raises(TokenStoreError, match="truncated or replaced"):
        TokenStore.open(tmp_path / "t")
    tokenize_corpus(corpus, "bytes", tmp_path / "t", workers=1)
    sp = tmp_path / "sp.model"
    from hybrid_jax.data.tokenizers import train_sentencepiece

    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcdefghij"), 4)) for _ in range(3000)]
    train_sentencepiece([" ".join(words)], 300).save(sp)
    with pytest.raises(TokenStoreError, match="was tokenised with bytes"):
        TokenStore.open(tmp_path / "t").check_tokenizer(f"sentencepiece:{sp}")
    with pytest.raises(TokenStoreError, match="not a token store manifest"):
        TokenStore.open(tmp_path / "missing")


def _store(tmp_path, **kw):
    corpus = _corpus(tmp_path, **kw)
    tokenize_corpus(corpus, "bytes", tmp_path / "t", workers=1)
    return TokenStore.open(tmp_path / "t")


def test_batches_cover_each_epoch_once_with_document_segments(tmp_path):
    store = _store(tmp_path)
    t, b = 16, 4
    it = TokenBatches(store, seq_len=t, batch_size=b, seed=1)
    n = it.num_instances
    assert n == (store.num_tokens - 1) // t
    seen = np.concatenate([it.global_instances(s) for s in range(-(-2 * n // b))])[: 2 * n]
    # Each epoch visits every instance once, in another order.
    assert sorted(seen[:n]) == list(range(n)) and sorted(seen[n:]) == list(range(n))
    assert list(seen[:n]) != list(seen[n:])
    batch = next(it)
    inst = it.global_instances(0)
    flat = np.asarray(store.tokens, np.int64)
    doc_of = np.searchsorted(store.offsets, np.arange(flat.size), side="right") - 1
    for row, i in enumerate(inst):
        np.testing.assert_array_equal(batch["tokens"][row], flat[i * t : i * t + t + 1])
        docs = doc_of[i * t : i * t + t + 1]
        np.testing.assert_array_equal(batch["segment_ids"][row], docs - docs[0] + 1)
    # The loss mask drops exactly the targets whose input is in the previous document.
    mask = Batch.from_rows(batch["tokens"], batch["segment_ids"]).loss_mask
    for row, i in enumerate(inst):
        docs = doc_of[i * t : i * t + t + 1]
        np.testing.assert_array_equal(mask[row], docs[1:] == docs[:-1])


def test_batches_resume_split_over_processes_and_digest(tmp_path):
    store = _store(tmp_path)

    def stream(**kw):
        return TokenBatches(store, seq_len=16, batch_size=4, seed=3, **kw)

    it = stream()
    first = [next(it) for _ in range(3)]
    state = it.get_state()
    after = [next(it) for _ in range(40)]  # past the first epoch
    resumed = stream()
    resumed.set_state(state)
    for a in after:
        np.testing.assert_array_equal(next(resumed)["tokens"], a["tokens"])
    assert resumed.stream_digest == it.stream_digest and it.epochs > 1
    # Two processes read the two halves of every global batch.
    p0, p1 = stream(process_index=0, process_count=2), stream(process_index=1, process_count=2)
    for b in first:
        np.testing.assert_array_equal(np.concatenate([next(p0)["tokens"], next(p1)["tokens"]]),
                                      b["tokens"])
    # The digest names the global stream: the same on every process.
    assert p0.stream_digest == p1.stream_digest == state["shards"]["0"]["stream_digest"]
    assert p1.get_state()["shards"] == {}  # process 0 keeps the state
    # Another seed or batch size is another stream; its state is refused.
    other = TokenBatches(store, seq_len=16, batch_size=8, seed=3)
    with pytest.raises(TokenStoreError, match="batch_size 4 -> 8"):
        other.set_state(state)
    assert TokenBatches(store, seq_len=16, batch_size=4, seed=4).global_instances(0).tolist() \
        != stream().global_instances(0).tolist()
    with pytest.raises(TokenStoreError, match="fewer than one batch"):
        TokenBatches(store, seq_len=store.num_tokens, batch_size=2, seed=0)


def test_trainer_checkpoint_restores_the_token_stream(tmp_path):
    """The trainer's checkpoints (train/checkpoints.py) keep a token stream's position
    and digest, and refuse it for another stream."""
    import jax
    import jax.numpy as jnp
    import optax

    from hybrid_jax.train.checkpoints import Checkpointer, CheckpointRestoreError
    from hybrid_jax.train.state import TrainState

    store = _store(tmp_path)
    tx = optax.sgd(0.1)
    state = TrainState.create({"w": jnp.ones(3)}, tx)._replace(step=jnp.asarray(3, jnp.int32))
    it = TokenBatches(store, seq_len=16, batch_size=4, seed=0)
    for _ in range(3):
        next(it)
    ckpt = Checkpointer(tmp_path / "ckpt", async_save=False)
    ckpt.save(state, it)
    ckpt.close()
    expect = next(it)["tokens"]
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    fresh = TokenBatches(store, seq_len=16, batch_size=4, seed=0)
    restored = Checkpointer(tmp_path / "ckpt").restore_latest(abstract, fresh)
    assert int(restored.step) == 3 and fresh.batches == 3
    np.testing.assert_array_equal(next(fresh)["tokens"], expect)
    assert fresh.stream_digest == it.stream_digest
    other = TokenBatches(store, seq_len=16, batch_size=4, seed=1)
    # An intact checkpoint of another stream is refused, not moved aside (checkpoints.py).
    with pytest.raises(CheckpointRestoreError, match="seed 0 -> 1"):
        Checkpointer(tmp_path / "ckpt").restore_latest(abstract, other)
