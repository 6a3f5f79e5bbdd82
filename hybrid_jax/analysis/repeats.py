"""Repeated n-grams in a token stream: how long a run each token completes, and how far
back it was seen. Pure numpy + the standard library, because the training loop's
in-loop evals use it through `filters.py` and must not pull in pandas.

Definitions (the study's, `token_analysis_method.md` §3):

    rep[i]  = the largest n <= max_n such that tokens[i-n+1 .. i] occurred verbatim
              ending at some earlier j < i in the same context; 0 if tokens[i] itself
              is new there.
    dist[n][i] = i - j for the latest such j (in tokens), -1 when the n-gram ending at
              i has no earlier occurrence.

A *context* is what the model saw before the token: one document inside one window
(packed documents never see each other, and a window restarts the model's state), so
callers pass one context id per token. Rows must be in position order inside a context;
where `positions` jump (an unscored token), n-grams do not bridge the gap, but earlier
occurrences before the gap still count, as the model still saw them.

Linear time: every level n is one pass of dictionary look-ups over a candidate set, and
a position can only complete a repeated (n+1)-gram if the n-gram ending there occurs
twice, so level n+1 visits only the positions whose n-gram key repeats. The n-grams
are keyed by 64-bit polynomial hashes (a random-free fixed base; a false match needs a
2^-64 collision).
"""

from __future__ import annotations

import dataclasses

import numpy as np

MAX_N = 16
_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd: multiplication is a bijection mod 2^64
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads small token ids over all 64 bits (uint64 [n])."""
    with np.errstate(over="ignore"):
        x = x.astype(np.uint64) + _BASE
        x = (x ^ (x >> np.uint64(30))) * _MIX1
        x = (x ^ (x >> np.uint64(27))) * _MIX2
        return x ^ (x >> np.uint64(31))


@dataclasses.dataclass(frozen=True)
class Repeats:
    """Per-token repeat statistics, all int64 [n].

    rep:   longest repeated n-gram completed here (0..max_n), in tokens.
    dist:  {n: distance in tokens to the latest earlier occurrence of the n-gram ending
           here, -1 if none} for each n requested.
    """

    rep: np.ndarray
    dist: dict[int, np.ndarray]


def context_starts(context_ids: np.ndarray, positions: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(new_context, run_offset), both [n].

    new_context[i]: row i starts a context (its id differs from row i-1).
    run_offset[i]: how many rows before i belong to the same unbroken run (same context
    and consecutive positions), i.e. the longest n-gram ending at i is run_offset + 1.
    """
    ctx = np.asarray(context_ids)
    n = ctx.shape[0]
    new_ctx = np.ones(n, bool)
    if n > 1:
        new_ctx[1:] = ctx[1:] != ctx[:-1]
    brk = new_ctx.copy()
    if positions is not None and n > 1:
        pos = np.asarray(positions, np.int64)
        brk[1:] |= pos[1:] != pos[:-1] + 1
    idx = np.arange(n)
    run_start = np.maximum.accumulate(np.where(brk, idx, 0)) if n else idx
    return new_ctx, idx - run_start


def repeat_stats(token_ids: np.ndarray, context_ids: np.ndarray, *,
                 positions: np.ndarray | None = None, max_n: int = MAX_N,
                 dist_ns: tuple[int, ...] = (1, 5)) -> Repeats:
    """Repeat length and previous-occurrence distances of every token (see module doc).

    Args:
      token_ids: int [n], rows in position order inside each context.
      context_ids: int [n], one id per (window, document) context; contiguous rows.
      positions: optional int [n] positions in the window; a jump breaks n-grams and
        distances are measured in positions rather than rows.
      max_n: the longest n-gram looked for (the study uses 16).
      dist_ns: the n for which distances are returned.
    """
    tok = np.asarray(token_ids)
    ctx = np.asarray(context_ids)
    if tok.shape != ctx.shape or tok.ndim != 1:
        raise ValueError(f"token_ids {tok.shape} and context_ids {ctx.shape} must be equal 1-d")
    if max_n < 1:
        raise ValueError(f"max_n must be >= 1, got {max_n}")
    n_rows = tok.shape[0]
    new_ctx, offset = context_starts(ctx, positions)
    # Contexts must be contiguous blocks of rows; a context id that reappears later would
    # silently merge two contexts' n-grams.
    ctx_of_block = ctx[new_ctx]
    if np.unique(ctx_of_block).size != ctx_of_block.size:
        raise ValueError("context ids must form contiguous blocks of rows (sort by window, "
                         "doc_id, position first)")
    pos = np.arange(n_rows) if positions is None else np.asarray(positions, np.int64)
    # Context key: the block number, mixed, then scaled by an odd constant so that
    # (token a, context b) and (token b, context a) do not cancel when added.
    with np.errstate(over="ignore"):
        ctx_key = _mix(np.cumsum(new_ctx).astype(np.uint64)) * _MIX1

    rep = np.zeros(n_rows, np.int64)
    dist = {n: np.full(n_rows, -1, np.int64) for n in dist_ns if 1 <= n <= max_n}
    h1 = _mix(tok.astype(np.int64).view(np.uint64))
    h = h1.copy()
    candidates = np.arange(n_rows)  # level n visits only these rows
    for n in range(1, max_n + 1):
        if n > 1:
            prev = h
            h = np.zeros(n_rows, np.uint64)
            with np.errstate(over="ignore"):
                h[1:] = prev[:-1] * _BASE + h1[1:]
        cand = candidates[offset[candidates] >= n - 1]
        if cand.size == 0:
            break
        with np.errstate(over="ignore"):
            keys = (h[cand] + ctx_key[cand]).tolist()
        cand_list = cand.tolist()
        first: dict[int, int] = {}
        dup_rows: list[int] = []
        dup_firsts: list[int] = []
        want_dist = n in dist
        last: dict[int, int] = {}
        prev_rows: list[int] = []
        for i, k in zip(cand_list, keys, strict=True):
            j = first.setdefault(k, i)
            if j != i:
                dup_rows.append(i)
                dup_firsts.append(j)
            if want_dist:
                p = last.get(k)
                if p is not None:
                    prev_rows.append(p)
                last[k] = i
        if want_dist and dup_rows:
            rows = np.asarray(dup_rows)
            dist[n][rows] = pos[rows] - pos[np.asarray(prev_rows)]
        if not dup_rows:
            break
        rows = np.asarray(dup_rows)
        rep[rows] = n
        # A repeated (n+1)-gram ending at i has a repeated n-gram as its suffix (ending
        # at i) and as its prefix (ending at i-1); both keys must occur twice.
        twice = np.union1d(rows, np.asarray(dup_firsts))
        candidates = np.intersect1d(twice, twice + 1, assume_unique=True)
    return Repeats(rep=rep, dist=dist)


def repeat_lengths(token_ids: np.ndarray, context_ids: np.ndarray, *,
                   positions: np.ndarray | None = None, max_n: int = MAX_N) -> np.ndarray:
    """int64 [n]: the longest repeated n-gram (<= max_n) each token completes; 0 = new."""
    return repeat_stats(token_ids, context_ids, positions=positions, max_n=max_n,
                        dist_ns=()).rep
