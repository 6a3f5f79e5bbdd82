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
    segment_ids: Int[Array, "b t"] | None  # None: one document per row (`drop_trivial_segments`)
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

    def drop_trivial_segments(self) -> Batch:
        """This batch with `segment_ids` None when they say nothing a causal model needs:
        every row is one document from its first position, then only padding (id 0;
        rows of padding alone included). The model then sees no document mask, so GPU
        attention can take cuDNN (which takes none) instead of the Pallas kernel, and the
        GDN kernel skips its resets. Exact for every target the loss mask keeps: no
        position attends to or carries state from a later one, and padding comes last.
        A host-side check (numpy); the batch is returned unchanged otherwise.
        """
        if self.segment_ids is None:
            return self
        seg = np.asarray(self.segment_ids)
        pad = seg == 0
        one_doc = np.all((seg == seg[:, :1]) | pad)
        pad_last = np.all(pad[:, 1:] >= pad[:, :-1])  # once padding, always padding
        return self._replace(segment_ids=None) if one_doc and pad_last else self
