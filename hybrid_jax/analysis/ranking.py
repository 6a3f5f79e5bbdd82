"""The ranking behind TOP-10∩NO-COPY: per-tag token masks, and where the ten tags come from.

The study's filter (`token_analysis_method.md` §7) is "the 10 most hybrid-favoured
open-class Brown POS families, minus positions completing a repeated n-gram with
n <= 4". Our families (`families.py`) have only six open classes, so it ranks the
tagger's raw tags instead: the "+"-parts of the feature table's `label` column, named
by `families.tag_name` (NN, NNS, NP, JJ, RB, VBD, ...; 29 open-class Brown tags). A
token carries a tag when one of its words has it and the tag's family is one the token
got (multi-tag attribution, as for the families: a token over "the dog" carries AT and
NN).

Ranking on the tokens the filter is then measured on selects for noise: the ten tags
whose gap came out highest on these documents are, on null data, the ten whose noise
was highest, and the filter's gap is biased toward the hybrid (by about two standard
errors in `tests/analysis/test_ranking.py`). So the ranking comes from elsewhere:

    an explicit list       families or tags (`resolve` checks the names).
    a previous report      its `tags` table (older reports: its `families` table),
                           `from_report`.
    cross-fitting          the default when neither is given (`cross_fit`): the
                           documents are dealt into FOLDS folds (`document_folds`), and
                           the tokens of fold j are filtered with the tags ranked on
                           fold j + 1 (mod FOLDS). No token is selected by its own
                           document's losses, and every document is measured.

Why three folds ranked on the next one, not two halves ranked on each other: with two
halves, half 1 is filtered by half 2's ranking and half 2 by half 1's, so a tag whose
noise is high in both halves enters both halves' measurement; the two halves' terms are
then positively correlated, which the bootstrap (resampling documents with the filter
held fixed) does not see, and its intervals come out about 20% too narrow on null
data. With three folds in a cycle, fold j's term is linear in fold j's noise, which
enters no other term except through fold j - 1's selection, so every cross term has
one independent mean-zero factor and vanishes: the fixed-filter bootstrap is then
calibrated on null data (`tests/analysis/test_ranking.py`). The price is that each
ranking rests on a third of the documents. Under a real effect the selected tags vary
less between folds, and the interval is that of the gap on the selected tags.

A ranking takes the (at most) k tags with the largest positive gap (hybrid-favoured),
among tags on at least `min_docs` documents of the ranking data (a rarer tag's mean is
the noise of a handful of documents).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from hybrid_jax.analysis import families
from hybrid_jax.analysis.table import ScoreTable, TableError

FOLDS = 3  # cross-fitting folds: three is the fewest with uncorrelated fold terms


def _label_codes(labels: np.ndarray) -> tuple[np.ndarray, int, dict[str, list[int]]]:
    """(codes [n] of the distinct labels (-1: missing), their number, {tag name: codes
    of the labels carrying it})."""
    codes, uniq = pd.factorize(np.asarray(labels, dtype=object))
    by_name: dict[str, list[int]] = {}
    for c, lab in enumerate(uniq):
        for part in str(lab).split("+"):
            if part:
                by_name.setdefault(families.tag_name(part), []).append(c)
    return codes, len(uniq), by_name


def tag_masks(labels: np.ndarray, tags: np.ndarray, names: Sequence[str] | None = None
              ) -> dict[str, np.ndarray]:
    """{tag name: bool [n]}: the tokens carrying each tag, for the named tags (names as
    `families.tag_name` writes them) or, without `names`, every open-class tag present,
    sorted by name. `labels` are the feature table's (the tagger's tags of the
    overlapped words, "+"-joined), `tags` its family masks."""
    codes, n_labels, by_name = _label_codes(labels)
    t = np.asarray(tags, np.int64)
    if t.shape != codes.shape:
        raise ValueError(f"labels {codes.shape} and tags {t.shape} differ in shape")
    if names is None:
        names = sorted(n for n in by_name if families.tag_family(n) in families.CONTENT)
    out = {}
    for name in names:
        fam = families.tag_family(name)
        lut = np.zeros(n_labels + 1, bool)  # the extra last entry: code -1, no label
        lut[by_name.get(name, [])] = True
        out[name] = lut[codes] & ((t & families.BIT[fam]) != 0) if fam else \
            np.zeros(t.size, bool)
    return out


def resolve(names: Sequence[str]) -> list[str]:
    """An explicit ranking's names: families as named (`families.CATEGORIES`), anything
    else a tag in any case (nn, NN, nn-tl -> NN); raises a one-line TableError naming
    the names that are neither."""
    out, unknown = [], []
    for raw in names:
        n = raw.strip()
        if n in families.BIT:
            out.append(n)
        elif n and families.tag_family(families.tag_name(n)) is not None:
            out.append(families.tag_name(n))
        else:
            unknown.append(raw)
    if unknown:
        raise TableError(f"top_families: unknown families or tags {unknown}; families: "
                         f"{', '.join(families.POS_FAMILIES)}; open-class tags: "
                         f"{', '.join(families.open_class_tags())}")
    return list(dict.fromkeys(out))


def name_flags(names: Sequence[str], tags: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """bool [n]: the token carries any of the named families or tags (`resolve`d)."""
    t = np.asarray(tags, np.int64)
    fams = [n for n in names if n in families.BIT]
    out = (t & families.mask_of(fams)) != 0
    for m in tag_masks(labels, t, [n for n in names if n not in families.BIT]).values():
        out |= m
    return out


def rank(gap: np.ndarray, masks: dict[str, np.ndarray], where: np.ndarray, doc: np.ndarray,
         *, k: int, min_docs: int) -> list[str]:
    """The (at most) k names of `masks` with the largest positive mean gap over the
    tokens `where`, among those with tokens in at least `min_docs` documents there
    (`doc`: int [n] document codes); largest first, ties by name."""
    gap = np.asarray(gap, np.float64)
    cands = []
    for name, m in masks.items():
        sel = np.asarray(m, bool) & where
        if not sel.any() or np.unique(doc[sel]).size < min_docs:
            continue
        mean = float(gap[sel].mean())
        if mean > 0:
            cands.append((-mean, name))
    return [name for _, name in sorted(cands)[:k]]


def document_folds(doc_ids: np.ndarray, domains: np.ndarray, n_folds: int = FOLDS
                   ) -> np.ndarray:
    """int64 [n]: the fold of every token's document. Documents are ordered by domain,
    then by the sha256 of their id, and dealt round-robin, so every domain is spread
    evenly over the folds; the split depends on the ids and domains only (no seed, no
    losses)."""
    codes, uniq = pd.factorize(np.asarray(doc_ids, dtype=object))
    dom = pd.Series(np.asarray(domains, dtype=object)).groupby(codes).first()
    keys = sorted(range(len(uniq)), key=lambda i: (str(dom.iloc[i]), hashlib.sha256(
        str(uniq[i]).encode("utf-8")).hexdigest(), str(uniq[i])))
    fold = np.empty(len(uniq), np.int64)
    fold[keys] = np.arange(len(uniq)) % n_folds
    return fold[codes]


@dataclasses.dataclass
class CrossFit:
    """A cross-fitted ranking. folds: int [n] each token's fold; ranked[j]: the tags
    that filter fold j, ranked on fold (j + 1) % FOLDS; flags: bool [n] the token
    carries a tag of its fold's ranking; n_docs[j]: documents in fold j."""

    folds: np.ndarray
    ranked: list[list[str]]
    flags: np.ndarray
    n_docs: list[int]

    def describe(self) -> list[dict]:
        n = len(self.ranked)
        return [{"fold": j, "n_docs": self.n_docs[j], "ranked_on": (j + 1) % n,
                 "tags": list(self.ranked[j])} for j in range(n)]

    @property
    def names(self) -> list[str]:
        """Every tag some fold uses, in order of first use."""
        return list(dict.fromkeys(t for r in self.ranked for t in r))


def cross_fit(gap: np.ndarray, masks: dict[str, np.ndarray], doc_ids: np.ndarray,
              domains: np.ndarray, *, k: int, min_docs: int, n_folds: int = FOLDS
              ) -> CrossFit:
    """The cross-fitted TOP-k: the tokens of fold j carry one of the k tags (`rank`)
    with the largest positive gap on the documents of fold (j + 1) % n_folds."""
    folds = document_folds(doc_ids, domains, n_folds)
    doc = pd.factorize(np.asarray(doc_ids, dtype=object))[0]
    flags = np.zeros(folds.size, bool)
    ranked, n_docs = [], []
    for j in range(n_folds):
        mine = folds == j
        names = rank(gap, masks, folds == (j + 1) % n_folds, doc, k=k, min_docs=min_docs)
        for name in names:
            flags |= masks[name] & mine
        ranked.append(names)
        n_docs.append(int(np.unique(doc[mine]).size))
    return CrossFit(folds, ranked, flags, n_docs)


def ranking_pair(tables: list[ScoreTable], ta: ScoreTable, tb: ScoreTable
                 ) -> tuple[ScoreTable, ScoreTable]:
    """The tables whose gap ranks the cross-fitted TOP-10: A and B themselves when they
    are at the same step, else A's and B's models at the last step both have (the last
    common export), else A and B."""
    if ta.step == tb.step:
        return ta, tb
    steps = ({t.step for t in tables if t.model == ta.model}
             & {t.step for t in tables if t.model == tb.model}) - {None}
    if not steps:
        return ta, tb
    step = max(steps)
    return (next(t for t in tables if t.model == ta.model and t.step == step),
            next(t for t in tables if t.model == tb.model and t.step == step))


_OPEN_ROW = {"tags": lambda n: families.tag_family(n) in families.CONTENT,
             "families": lambda n: n in families.BIT and families.is_open_class(n)}


def from_report(path: str | pathlib.Path, k: int = 10) -> tuple[list[str], str]:
    """(names, table): the ranking of a previous analysis' report.json, the (at most) k
    open-class tags of its `tags` table (older reports without one: the open-class
    families of its `families` table) with the largest positive gap, largest first;
    flagged rows (too few documents) are not ranked.

    That report must come from other data (or another run) than the one the filter is
    applied to: selecting on the same tokens biases the filter's gap."""
    path = pathlib.Path(path)
    if k < 1:
        raise TableError(f"{path}: a ranking takes k >= 1 names, got k = {k}")
    try:
        numbers = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise TableError(f"{path}: cannot read the ranking ({e})") from e
    except ValueError as e:
        raise TableError(f"{path}: not a JSON report ({e})") from e
    numbers = numbers if isinstance(numbers, dict) else {}
    table = next((t for t in ("tags", "families")
                  if isinstance(numbers.get(t), list) and numbers[t]), None)
    if table is None:
        raise TableError(f"{path}: no 'tags' or 'families' table (is it an analysis "
                         "report.json?)")
    rows = numbers[table]
    is_open = _OPEN_ROW[table]
    cands = [(r["mean"], r["name"]) for r in rows
             if isinstance(r, dict) and isinstance(r.get("name"), str) and is_open(r["name"])
             and isinstance(r.get("mean"), int | float) and r["mean"] > 0
             and not r.get("flagged")]
    if not cands:
        raise TableError(f"{path}: no open-class row of its '{table}' table has a positive "
                         "gap to rank")
    return [name for _, name in sorted(cands, key=lambda x: -x[0])[:k]], table
