"""`score_rows`: per-token losses (nats) of a model on packed rows, jitted."""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from hybrid_jax.data.batch import Batch
from hybrid_jax.train.losses import token_nll


def score_rows(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    rows: np.ndarray,
    segment_ids: np.ndarray,
    *,
    batch_size: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """(-log p(target), loss_mask), both [r, t], for rows [r, t+1] of tokens."""

    @jax.jit
    def nll(params, batch: Batch):
        model = nnx.merge(graphdef, params)
        logits = model(batch.inputs, segment_ids=batch.segment_ids)
        return token_nll(logits, batch.targets)

    losses, masks = [], []
    for start in range(0, rows.shape[0], batch_size):
        batch = Batch.from_rows(rows[start : start + batch_size],
                                segment_ids[start : start + batch_size])
        losses.append(np.asarray(nll(params, batch)))
        masks.append(np.asarray(batch.loss_mask))
    return np.concatenate(losses), np.concatenate(masks)
