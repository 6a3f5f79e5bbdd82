"""The filtered losses of the study: the one place they are defined.

Three token filters, after `token_analysis_method.md` §7 and the open replication (§9):

    all                   every scored token.
    content_not_repeated  content words (noun, verb, adjective, adverb, interjection,
                          qualifier) whose token has not occurred earlier in its context
                          (repeat length 0). This is FT's STATE filter and equals the
                          study's "NO-COPY" (no repeated n-gram with n <= 4): a token
                          that completes any repeated n-gram has itself occurred before,
                          so "no repeated n-gram for n <= 4" is the same as "n = 0".
    top10_no_copy         the study's TOP-10∩NO-COPY: tokens carrying one of the ten
                          most hybrid-favoured open-class tags (raw tagger tags: NN,
                          JJ, RB, VBD, ...; our six content families would be all of
                          them) with repeat length 0. Only present when the caller
                          gives the tokens' flags (`top=`); the analysis ranks the tags
                          elsewhere than on the tokens it filters (an explicit list, a
                          previous report, or cross-fitting over documents:
                          `ranking.py`), since ranking on the same data the filter is
                          then measured on selects for noise.
    repeated_5gram        tokens that complete a 5-gram seen earlier in the context
                          (repeat length >= 5; the study's COPY-5).

Both the analysis and the training loop's in-loop evals call these functions, so the
API is plain numpy in and out, and this module imports nothing beyond numpy and its
sibling modules `repeats` and `families` (themselves numpy only).

Typical in-loop use, on an eval batch of packed windows [b, t]:

    masks = filter_masks_batch(targets_bt, segment_ids_bt, content_bt, valid=loss_mask_bt)
    means = filtered_means(nll_bt, masks)        # {"all": nats, ...}
"""

from __future__ import annotations

import numpy as np

from hybrid_jax.analysis import families
from hybrid_jax.analysis.repeats import repeat_lengths

FILTERS: tuple[str, ...] = ("all", "content_not_repeated", "repeated_5gram")
TOP_NO_COPY = "top10_no_copy"  # added to FILTERS, after content_not_repeated, when given
COPY_N = 5  # the n of repeated_5gram


def content_flags(tags: np.ndarray) -> np.ndarray:
    """Boolean, shape of `tags`: the token carries a content family (int64 tag masks)."""
    return (np.asarray(tags, np.int64) & families.CONTENT_MASK) != 0


def family_flags(tags: np.ndarray, names: list[str] | tuple[str, ...]) -> np.ndarray:
    """Boolean, shape of `tags`: the token carries any of the named families (raises
    KeyError naming unknown ones)."""
    return (np.asarray(tags, np.int64) & families.mask_of(list(names))) != 0


def masks_from_repeats(rep: np.ndarray, content: np.ndarray,
                       valid: np.ndarray | None = None, *,
                       top: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The filter masks from precomputed repeat lengths (int [n]) and content flags;
    with `top` (bool [n]: the token carries a top-ranked family, `family_flags`) also
    the TOP-10∩NO-COPY filter, placed after content_not_repeated."""
    rep = np.asarray(rep)
    content = np.asarray(content, bool)
    if rep.shape != content.shape:
        raise ValueError(f"rep {rep.shape} and content {content.shape} differ in shape")
    base = np.ones(rep.shape, bool) if valid is None else np.asarray(valid, bool)
    out = {"all": base.copy(), "content_not_repeated": base & content & (rep == 0)}
    if top is not None:
        top = np.asarray(top, bool)
        if top.shape != rep.shape:
            raise ValueError(f"top {top.shape} and rep {rep.shape} differ in shape")
        out[TOP_NO_COPY] = base & top & (rep == 0)
    out["repeated_5gram"] = base & (rep >= COPY_N)
    return out


def filter_masks(token_ids: np.ndarray, context_ids: np.ndarray, content: np.ndarray, *,
                 positions: np.ndarray | None = None,
                 valid: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """{filter name: bool [n]} for a flat token stream.

    Args:
      token_ids: int [n] target tokens, in position order inside each context.
      context_ids: int [n] one id per (window, document); contiguous rows.
      content: bool [n] the token belongs to a content word (see `content_flags`).
      positions: optional int [n] window positions (a jump breaks n-grams).
      valid: optional bool [n] scored tokens; every mask is ANDed with it.
    """
    rep = repeat_lengths(token_ids, context_ids, positions=positions, max_n=COPY_N)
    return masks_from_repeats(rep, content, valid)


def filter_masks_batch(tokens_bt: np.ndarray, segment_ids_bt: np.ndarray,
                       content_bt: np.ndarray, *,
                       valid_bt: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """{filter name: bool [b, t]} for packed windows: a context is one segment of a row.

    tokens_bt are the *targets* (the tokens whose loss is measured), segment_ids_bt
    their document ids (equal ids are one document; rows never share a context).
    """
    tok = np.asarray(tokens_bt)
    seg = np.asarray(segment_ids_bt)
    if tok.ndim != 2 or tok.shape != seg.shape:
        raise ValueError(f"tokens {tok.shape} and segment ids {seg.shape} must be equal [b, t]")
    b, t = tok.shape
    # A context starts at every row start and wherever the segment id changes.
    starts = np.zeros((b, t), bool)
    starts[:, 0] = True
    starts[:, 1:] = seg[:, 1:] != seg[:, :-1]
    ctx = np.cumsum(starts.ravel())
    valid = None if valid_bt is None else np.asarray(valid_bt, bool).ravel()
    masks = filter_masks(tok.ravel(), ctx, np.asarray(content_bt, bool).ravel(), valid=valid)
    return {k: v.reshape(b, t) for k, v in masks.items()}


def filtered_means(losses: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, float]:
    """{filter name: mean loss (nats) over its tokens}; NaN for a filter with no tokens.

    Raises on non-finite losses among the selected tokens: a NaN would otherwise turn a
    whole filter's mean into NaN without saying which token was at fault.
    """
    loss = np.asarray(losses, np.float64)
    out = {}
    for name, m in masks.items():
        m = np.asarray(m, bool)
        if m.shape != loss.shape:
            raise ValueError(f"mask {name!r} {m.shape} and losses {loss.shape} differ in shape")
        sel = loss[m]
        if not np.all(np.isfinite(sel)):
            bad = np.argwhere(m & ~np.isfinite(loss))[0].tolist()
            raise ValueError(f"non-finite loss at index {bad} in filter {name!r}")
        out[name] = float(sel.mean()) if sel.size else float("nan")
    return out


def filtered_counts(masks: dict[str, np.ndarray]) -> dict[str, int]:
    """{filter name: number of tokens it keeps}."""
    return {name: int(np.count_nonzero(m)) for name, m in masks.items()}
