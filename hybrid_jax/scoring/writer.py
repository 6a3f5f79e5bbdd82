"""Score an eval pack into the per-token table: parquet shards + a JSON side-car.

    <out>/shard-00000.parquet ...   rows of `windows_per_shard` windows each
    <out>/scores.partial.json       while scoring: provenance + the shards written so far
    <out>/scores.json               when complete: the same, plus model, tokenizer,
                                    context length, dtype, row counts, tokens/s

Columns (the contract of `hybrid_jax.analysis.table`): doc_id, domain, window,
position, token_id, char_start, char_end, loss, entropy, rank. `position` is the
target's index in its window row (1..seq_len). Each shard carries the
`document_digest` of the documents it covers.

Provenance: the side-car names where every shard came from, the eval pack
(`EvalPack.digest()`: documents, windows, tokenizer), the checkpoint (its path and the
sha256 of its parameter values, as scored: after any dtype override), and the shard
layout (windows per shard, vocabulary slice), and lists every shard's size and sha256.
`read_table` reads a directory only when `scores.json` names a complete, unchanged
shard set.

Resume: each shard is written to a temporary name and renamed when complete, then
recorded in the side-car, so a killed run leaves only whole shards; rerunning
continues after the last recorded one, after checking that the checkpoint, pack and
layout are the ones the existing shards came from (`ScoresMismatchError` otherwise:
scoring another model into the same directory would mix two models in one table).
`restart=True` deletes the existing shards and starts over. Temporary files of killed
runs are removed. A non-finite loss stops the run naming the window and position; a
full disk stops it with `DiskFullError` naming the shard.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import time
from typing import Any

import jax
import numpy as np
import pandas as pd
from flax import nnx
from jax.experimental import multihost_utils
from tqdm.auto import tqdm

from hybrid_jax.analysis.table import (
    SCORES_FORMAT,
    SCORES_PARTIAL,
    SCORES_SIDE_CAR,
    write_table,
)
from hybrid_jax.data.batch import Batch
from hybrid_jax.digests import file_sha256
from hybrid_jax.errors import DiskFullError, UserError, is_disk_full
from hybrid_jax.scoring.eval_pack import EvalPack
from hybrid_jax.scoring.score import make_scorer

log = logging.getLogger("hybrid_jax.scoring")

SIDE_CAR = SCORES_SIDE_CAR
# Provenance fields that must equal the existing shards' for a run to continue them.
_MUST_MATCH = ("pack_digest", "checkpoint.params_sha256", "dtype", "windows_per_shard",
               "vocab_chunk", "model", "step")


def _field(provenance: dict, key: str) -> Any:
    for part in key.split("."):
        provenance = provenance.get(part) if isinstance(provenance, dict) else None
    return provenance


class ScoresMismatchError(UserError, ValueError):
    """The output directory holds shards of another checkpoint, pack or layout."""


def _shard_name(i: int) -> str:
    return f"shard-{i:05d}.parquet"


def params_sha256(params: nnx.State) -> str:
    """sha256 over every parameter's path, dtype, shape and values, one tensor at a time
    (multi-host: each is gathered first). Identifies the model as scored."""
    h = hashlib.sha256()
    for path, v in sorted(nnx.to_flat_state(params), key=lambda pv: tuple(map(str, pv[0]))):
        x = v.get_value()
        if jax.process_count() > 1:
            x = multihost_utils.process_allgather(x, tiled=True)
        x = np.ascontiguousarray(jax.device_get(x))
        h.update(f"{'/'.join(map(str, path))}|{x.dtype}|{x.shape}|".encode())
        h.update(x.tobytes())
    return h.hexdigest()


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


def _write_json(path: pathlib.Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_side_car(out: pathlib.Path) -> dict | None:
    """The complete or partial side-car of `out`, or None if it has neither."""
    for name in (SCORES_SIDE_CAR, SCORES_PARTIAL):
        path = out / name
        if path.is_file():
            try:
                side = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                raise ScoresMismatchError(f"{path}: unreadable side-car ({e}); score again "
                                          "with restart") from e
            if not isinstance(side, dict) or side.get("format") != SCORES_FORMAT:
                raise ScoresMismatchError(
                    f"{path}: written by an older scorer (no provenance), so its shards "
                    "cannot be continued; score again with restart (or into a new --out)")
            return side
    return None


def _clear(out: pathlib.Path) -> None:
    """Remove a previous run's shards and side-cars (restart)."""
    for p in [*out.glob("shard-*.parquet"), out / SCORES_SIDE_CAR, out / SCORES_PARTIAL]:
        p.unlink(missing_ok=True)


def _resume_point(out: pathlib.Path, side: dict | None, provenance: dict,
                  n_shards: int) -> dict[str, dict]:
    """The recorded, intact shards a run may continue after ({name: record}); raises
    ScoresMismatchError if they are not this run's."""
    on_disk = sorted(p.name for p in out.glob("shard-*.parquet"))
    if side is None:
        if on_disk:
            raise ScoresMismatchError(
                f"{out} holds {len(on_disk)} shards but no side-car saying where they came "
                f"from; score with restart to replace them, or use a new output directory")
        return {}
    old = side.get("provenance", {})
    diff = [k for k in _MUST_MATCH if _field(old, k) != _field(provenance, k)]
    if diff:
        what = "; ".join(f"{k} {_field(old, k)!r} there, {_field(provenance, k)!r} now"
                         for k in diff)
        raise ScoresMismatchError(
            f"{out} holds shards of checkpoint {_field(old, 'checkpoint.path')} that differ "
            f"from this run in {what}. Continuing would mix two sources in one table: score "
            "with restart to replace them, or use a new output directory")
    done: dict[str, dict] = {}
    recorded = side.get("shard_files", {})
    for i in range(n_shards):
        name, rec = _shard_name(i), recorded.get(_shard_name(i))
        path = out / name
        if rec is None or not path.is_file() or path.stat().st_size != rec["bytes"] or (
                file_sha256(path) != rec["sha256"]):
            if rec is not None:
                log.warning("%s differs from the shard that was recorded: scoring it again",
                            path)
            break
        done[name] = rec
    for name in on_disk:  # unrecorded or after a gap: written again below
        if name not in done:
            (out / name).unlink()
    return done


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
    restart: bool = False,
) -> pathlib.Path:
    """Write the per-token table of `pack` under `out`; resume after the last shard.

    `source`: where the parameters came from (`{"checkpoint": path, ...}`), recorded in
    the side-car. `restart`: delete shards already in `out` instead of continuing them.
    """
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for tmp in out.glob(".shard-*.tmp-*"):  # left by a killed run
        tmp.unlink()
    cfg = nnx.merge(graphdef, params).cfg
    model_vocab = cfg.vocab_size
    if pack.meta["vocab_size"] > model_vocab:
        raise ValueError(f"the eval pack's tokenizer has {pack.meta['vocab_size']} tokens but "
                         f"the model's vocabulary has {model_vocab}: wrong tokenizer?")
    if pack.tokens.max() >= model_vocab:
        raise ValueError(f"token id {pack.tokens.max()} in the eval pack is outside the "
                         f"model's vocabulary ({model_vocab})")
    windows_per_shard = max(batch_size, windows_per_shard - windows_per_shard % batch_size)
    n_shards = -(-pack.num_windows // windows_per_shard)
    source = dict(source or {})
    provenance = {
        "pack_digest": pack.digest(),
        "checkpoint": {"path": source.get("checkpoint"), "params_sha256": params_sha256(params)},
        "model": model_name, "step": step, "windows_per_shard": windows_per_shard,
        "vocab_chunk": vocab_chunk, "dtype": str(cfg.dtype),
    }
    if restart:
        _clear(out)
    done = _resume_point(out, _read_side_car(out), provenance, n_shards)
    side: dict[str, Any] = {
        "format": SCORES_FORMAT, "complete": False, "provenance": provenance,
        "model": model_name, "step": step, "source": source,
        "tokenizer": pack.meta["tokenizer"], "seq_len": pack.seq_len, "mode": pack.meta["mode"],
        "dtype": str(cfg.dtype), "corpus_sha256": pack.meta["corpus_sha256"],
        "pack_sha256": pack.sha256(), "pack_digest": provenance["pack_digest"],
        "rows": int(pack.score_mask.sum()), "windows": pack.num_windows, "shards": n_shards,
        "shard_files": done,
    }
    _write_json(out / SCORES_PARTIAL, side)
    (out / SCORES_SIDE_CAR).unlink(missing_ok=True)  # complete again only at the end

    first = len(done)
    doc_digests = pack.doc_digests()
    scorer = make_scorer(graphdef, vocab_chunk=vocab_chunk, batch_sharding=batch_sharding)
    bar = tqdm(total=int(pack.score_mask.sum()), unit="tok", unit_scale=True,
               desc=f"score {model_name}", dynamic_ncols=True,
               initial=int(pack.score_mask[: first * windows_per_shard].sum()))
    t0, scored = time.perf_counter(), 0
    for shard in range(first, n_shards):
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
        name = _shard_name(shard)
        docs = {d: doc_digests[d] for d in pd.unique(frame["doc_id"])}
        tmp = out / f".shard-{shard:05d}.tmp-{os.getpid()}"
        try:
            write_table(frame, tmp, model=model_name, step=step, doc_digests=docs)
            os.replace(tmp, out / name)
            side["shard_files"][name] = {"bytes": (out / name).stat().st_size,
                                         "sha256": file_sha256(out / name), "rows": len(frame)}
            _write_json(out / SCORES_PARTIAL, side)
        except OSError as e:
            if is_disk_full(e):
                raise DiskFullError(f"{out / name}: no space left on device while writing "
                                    "the table; free space and rerun to continue") from e
            raise
        finally:
            tmp.unlink(missing_ok=True)
    bar.close()
    elapsed = time.perf_counter() - t0
    side.update(complete=True, tokens_per_s_last_run=scored / elapsed if scored else None,
                device=str(jax.devices()[0].device_kind))
    _write_json(out / SCORES_SIDE_CAR, side)
    (out / SCORES_PARTIAL).unlink(missing_ok=True)
    return out
