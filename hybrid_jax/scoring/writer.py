"""Score an eval pack into the per-token table: parquet shards + a JSON sidecar.

    <out>/shard-00000.parquet ...   rows of `windows_per_shard` windows each
    <out>/scores.json               model, checkpoint, tokenizer, context length, dtype,
                                    corpus and pack hashes, row counts, tokens/s

Columns (the contract of `hybrid_jax.analysis.table`): doc_id, domain, window,
position, token_id, char_start, char_end, loss, entropy, rank. `position` is the
target's index in its window row (1..seq_len).

Each shard is written to a temporary name and renamed when complete, so a killed run
leaves only whole shards; rerunning continues after the last one. A non-finite loss
stops the run naming the window and position.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from typing import Any

import jax
import numpy as np
import pandas as pd
from flax import nnx
from tqdm.auto import tqdm

from hybrid_jax.analysis.table import write_table
from hybrid_jax.data.batch import Batch
from hybrid_jax.scoring.eval_pack import EvalPack
from hybrid_jax.scoring.score import make_scorer

SIDE_CAR = "scores.json"


def _shard_path(out: pathlib.Path, i: int) -> pathlib.Path:
    return out / f"shard-{i:05d}.parquet"


def shard_rows(pack: EvalPack, lo: int, hi: int, stats) -> pd.DataFrame:
    """The table rows of windows lo..hi-1 from their scores ([hi-lo, t] each)."""
    mask = pack.score_mask[lo:hi]
    w, pos = np.nonzero(mask)
    window = lo + w
    target = pos + 1  # index of the target token in the window row
    doc = pack.doc_index[window, target]
    frame = pd.DataFrame({
        "doc_id": np.asarray([pack.docs[i].id for i in doc], dtype=object),
        "domain": np.asarray([pack.docs[i].domain for i in doc], dtype=object),
        "window": window.astype(np.int64),
        "position": target.astype(np.int64),
        "token_id": pack.tokens[window, target].astype(np.int64),
        "char_start": pack.char_start[window, target],
        "char_end": pack.char_end[window, target],
        "loss": stats.loss[w, pos].astype(np.float64),
        "entropy": stats.entropy[w, pos].astype(np.float64),
        "rank": stats.rank[w, pos].astype(np.int64),
    })
    bad = ~np.isfinite(frame["loss"].to_numpy())
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise FloatingPointError(f"non-finite loss at window {frame['window'][i]}, position "
                                 f"{frame['position'][i]} (document {frame['doc_id'][i]!r})")
    return frame


def score_pack(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    pack: EvalPack,
    out: str | os.PathLike,
    *,
    model_name: str,
    step: int | None = None,
    source: dict[str, Any] | None = None,
    batch_size: int = 8,
    windows_per_shard: int = 256,
    vocab_chunk: int = 8192,
    batch_sharding=None,
) -> pathlib.Path:
    """Write the per-token table of `pack` under `out`; resume after the last shard."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model_vocab = nnx.merge(graphdef, params).cfg.vocab_size
    if pack.meta["vocab_size"] > model_vocab:
        raise ValueError(f"the eval pack's tokenizer has {pack.meta['vocab_size']} tokens but "
                         f"the model's vocabulary has {model_vocab}: wrong tokenizer?")
    if pack.tokens.max() >= model_vocab:
        raise ValueError(f"token id {pack.tokens.max()} in the eval pack is outside the "
                         f"model's vocabulary ({model_vocab})")
    windows_per_shard = max(batch_size, windows_per_shard - windows_per_shard % batch_size)
    n_shards = -(-pack.num_windows // windows_per_shard)
    done = 0
    while done < n_shards and _shard_path(out, done).exists():
        done += 1
    scorer = make_scorer(graphdef, vocab_chunk=vocab_chunk, batch_sharding=batch_sharding)
    seq_len = pack.seq_len
    bar = tqdm(total=int(pack.score_mask.sum()), unit="tok", unit_scale=True,
               desc=f"score {model_name}", dynamic_ncols=True,
               initial=int(pack.score_mask[: done * windows_per_shard].sum()))
    t0, scored = time.perf_counter(), 0
    for shard in range(done, n_shards):
        lo, hi = shard * windows_per_shard, min(pack.num_windows, (shard + 1) * windows_per_shard)
        parts = []
        for start in range(lo, hi, batch_size):
            stop = min(start + batch_size, hi)
            tokens, segs = pack.tokens[start:stop], pack.segment_ids[start:stop]
            if stop - start < batch_size:  # one shape, one compilation
                pad = ((0, batch_size - (stop - start)), (0, 0))
                tokens, segs = np.pad(tokens, pad), np.pad(segs, pad)
            stats = scorer(params, Batch.from_rows(tokens, segs).drop_trivial_segments())
            rows = stop - start
            parts.append(jax.tree.map(lambda x, rows=rows: np.asarray(x)[:rows], stats))
            n = int(pack.score_mask[start:stop].sum())
            scored += n
            bar.update(n)
            bar.set_postfix(tok_s=f"{scored / (time.perf_counter() - t0):,.0f}")
        stats = jax.tree.map(lambda *xs: np.concatenate(xs), *parts)
        frame = shard_rows(pack, lo, hi, stats)
        tmp = out / f".shard-{shard:05d}.tmp-{os.getpid()}"
        write_table(frame, tmp, model=model_name, step=step)
        os.replace(tmp, _shard_path(out, shard))
    bar.close()
    elapsed = time.perf_counter() - t0
    side = {
        "model": model_name, "step": step, "source": source or {},
        "tokenizer": pack.meta["tokenizer"], "seq_len": seq_len, "mode": pack.meta["mode"],
        "dtype": str(nnx.merge(graphdef, params).cfg.dtype),
        "corpus_sha256": pack.meta["corpus_sha256"], "pack_sha256": pack.sha256(),
        "rows": int(pack.score_mask.sum()), "windows": pack.num_windows, "shards": n_shards,
        "tokens_per_s_last_run": scored / elapsed if scored else None,
        "device": str(jax.devices()[0].device_kind),
    }
    (out / SIDE_CAR).write_text(json.dumps(side, indent=2) + "\n")
    return out
