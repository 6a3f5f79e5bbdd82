"""Scoring free texts (probes): one document per window, losses with character spans.

`text_score_fn(graphdef, params, tokenizer)` returns the `score_fn(texts) ->
[TokenScores]` that `hybrid_jax.analysis.probes` calls. Each text is tokenized with
offsets (no BOS, no EOS), scored alone, and every token gets its loss given the tokens
before it; the first token has no context and gets NaN. Windows are padded to a power
of two so a probe set compiles a handful of shapes, not one per text.
"""

from __future__ import annotations

import numpy as np
from flax import nnx

from hybrid_jax.analysis.probes import TokenScores
from hybrid_jax.data.batch import Batch
from hybrid_jax.data.tokenizers import Tokenizer
from hybrid_jax.scoring.score import make_scorer


def text_score_fn(graphdef: nnx.GraphDef, params: nnx.State, tokenizer: Tokenizer, *,
                  batch_size: int = 8, vocab_chunk: int = 8192, max_len: int = 16384):
    scorer = make_scorer(graphdef, vocab_chunk=vocab_chunk)

    def score_fn(texts: list[str]) -> list[TokenScores]:
        encoded = [tokenizer.encode_with_offsets(t) for t in texts]
        for t, (ids, _, _) in zip(texts, encoded):
            if not 2 <= ids.size <= max_len:
                raise ValueError(f"a probe text has {ids.size} tokens (need 2..{max_len}): "
                                 f"{t[:60]!r}")
        out: list[TokenScores | None] = [None] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: encoded[i][0].size)
        for start in range(0, len(order), batch_size):
            group = order[start : start + batch_size]
            longest = max(encoded[i][0].size for i in group)
            width = 1 << (longest - 1).bit_length()  # power-of-two bucket
            tokens = np.zeros((batch_size, width), np.int32)
            segs = np.zeros((batch_size, width), np.int32)
            for row, i in enumerate(group):
                ids = encoded[i][0]
                tokens[row, : ids.size] = ids
                segs[row, : ids.size] = 1
            batch = Batch.from_rows(tokens, segs).drop_trivial_segments()  # one text per row
            loss = np.asarray(scorer(params, batch).loss)
            for row, i in enumerate(group):
                ids, cs, ce = encoded[i]
                per_token = np.concatenate([[np.nan], loss[row, : ids.size - 1]])
                out[i] = TokenScores(cs, ce, per_token)
        return out  # type: ignore[return-value]

    return score_fn
