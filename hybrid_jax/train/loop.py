"""A single-process training loop over in-memory packed rows, with a progress bar.

Enough to train the tiny CPU models of the demo and the tests; sharding, streaming
data and checkpoints build on the same step function.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from hybrid_jax.data.batch import Batch
from hybrid_jax.models.config import ModelConfig
from hybrid_jax.models.lm import LM
from hybrid_jax.train.optimizer import make_optimizer
from hybrid_jax.train.step import make_train_step


@dataclasses.dataclass
class TrainResult:
    graphdef: nnx.GraphDef
    params: nnx.State
    losses: list[float]  # training loss (nats) per step


def train_on_rows(
    cfg: ModelConfig,
    rows: np.ndarray,
    segment_ids: np.ndarray,
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    warmup_steps: int,
    weight_decay: float = 0.1,
    grad_clip: float = 1.0,
    seed: int = 0,
    desc: str = "train",
) -> TrainResult:
    """Train a fresh `LM(cfg)` on rows [r, t+1], batches drawn by a seeded shuffle."""
    if rows.shape[0] < batch_size:
        raise ValueError(f"{rows.shape[0]} rows cannot fill a batch of {batch_size}")
    model = LM(cfg, rngs=nnx.Rngs(seed))
    graphdef, params = nnx.split(model, nnx.Param)
    tx = make_optimizer(learning_rate=learning_rate, steps=steps, warmup_steps=warmup_steps,
                        weight_decay=weight_decay, grad_clip=grad_clip)
    opt_state = tx.init(params)
    step_fn = make_train_step(graphdef, tx)
    rng = np.random.default_rng(seed)
    order = rng.permutation(rows.shape[0])
    cursor, losses = 0, []
    bar = tqdm(range(steps), desc=desc, unit="step", dynamic_ncols=True)
    for _ in bar:
        if cursor + batch_size > order.size:
            order, cursor = rng.permutation(rows.shape[0]), 0
        idx = order[cursor : cursor + batch_size]
        cursor += batch_size
        batch = Batch.from_rows(rows[idx], segment_ids[idx])
        params, opt_state, metrics = step_fn(params, opt_state, batch)
        losses.append(float(metrics["loss"]))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    return TrainResult(graphdef, params, losses)
