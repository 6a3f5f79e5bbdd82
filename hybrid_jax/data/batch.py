"""`Batch`: the packed token windows a training or scoring step consumes."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from hybrid_jax.typing import Array, Bool, Int


class Batch(NamedTuple):
    """b windows of t tokens, documents packed with segment ids.

    inputs[i, j] predicts targets[i, j] (= the next token). `loss_mask` is false where a
    target must not count: padding, and targets that belong to another document than
    their input (the first token of a document has no context in this window).
    """

    inputs: Int[Array, "b t"]
    targets: Int[Array, "b t"]
    segment_ids: Int[Array, "b t"]
    loss_mask: Bool[Array, "b t"]

    @classmethod
    def from_rows(
        cls, tokens: np.ndarray, segment_ids: np.ndarray | None = None
    ) -> Batch:
        """Shift rows of t+1 tokens (and their segment ids) into inputs and targets."""
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or tokens.shape[1] < 2:
            raise ValueError(f"token rows must be [b, t+1] with t >= 1, got {tokens.shape}")
        if segment_ids is None:
            segment_ids = np.ones_like(tokens, dtype=np.int32)
        segment_ids = np.asarray(segment_ids, np.int32)
        if segment_ids.shape != tokens.shape:
            raise ValueError(
                f"segment_ids shape {segment_ids.shape} != tokens shape {tokens.shape}"
            )
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        seg_in, seg_out = segment_ids[:, :-1], segment_ids[:, 1:]
        loss_mask = (seg_in == seg_out) & (seg_out > 0)
        return cls(inputs.astype(np.int32), targets.astype(np.int32), seg_in, loss_mask)
