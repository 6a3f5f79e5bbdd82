"""Synthetic probes (`token_analysis_method.md` §6, §9), generated from a seed and scored
through a callable, so any model plugs in without this module importing it.

    bracket     open a bracket, add filler, score the closer: "(" ... ")", HTML
                "<em>" ... "</em>", LaTeX "\\begin{quote}" ... "\\end{quote}". Metric: mean
                loss of the closer's tokens (nats; lower is better).
    repeat      pseudo-words with one 32-word span planted twice at a given gap (FT's
                memorisation-free probe). Metric: gain = mean token loss of the first
                occurrence - of the second, the span's first word skipped (nats; higher
                = better recall).
    pronoun     "Mary is the doctor. John is the teacher. <filler> The doctor said that"
                + " she" vs " he" (the replication's template). Metric: accuracy of the
                lower-loss choice (ties count half) and mean margin (nats).
    entity      "The key is in the box. The coin is in the bag. <filler> The key is in
                the" + " box" vs " bag". Same metrics.

Distances are filler lengths in words (about one token each for the filler used): 32,
64, ..., 1024 by default.

The scoring contract: `score_fn(texts: list[str]) -> list[TokenScores]`, one per text,
giving every token's character span in that text and its loss -log p(token | prefix) in
nats (NaN for an unscored first token). A probe's target loss is read from the tokens
that overlap the target's characters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pandas as pd

DISTANCES = (32, 64, 128, 256, 512, 1024)
KINDS = ("bracket", "repeat", "pronoun", "entity")


@dataclasses.dataclass
class TokenScores:
    """One scored text: char_start, char_end (int [n]) and loss (float [n], nats)."""

    char_start: np.ndarray
    char_end: np.ndarray
    loss: np.ndarray


ScoreFn = Callable[[list[str]], list[TokenScores]]


@dataclasses.dataclass
class ProbeItem:
    """One probe instance: texts to score and the named character spans to read.

    texts: {variant: text}; spans: {(variant, span name): (start, end)}.
    """

    kind: str
    subkind: str
    distance: int
    index: int
    texts: dict[str, str]
    spans: dict[tuple[str, str], tuple[int, int]]


_FILLER_WORDS = (
    "the a of and to in that it was for on with as at by this from or an which one all "
    "were there would their been has more when will some time could these two may then "
    "first any new like only other over such made after also did many before must "
    "through back years where much way well down should because each just long little "
    "very still great own old see small place end again large under last never house "
    "world part day water same number between light city land hand early land river "
    "morning garden window road table paper letter music evening country summer field "
    "market bridge harbor station valley forest island stone").split()
_NAMES = {"she": ["Mary", "Alice", "Emma", "Clara", "Sarah", "Julia"],
          "he": ["John", "Peter", "David", "Henry", "Thomas", "Robert"]}
_ROLES = ["doctor", "teacher", "pilot", "lawyer", "baker", "painter", "farmer", "chemist"]
_OBJECTS = ["key", "coin", "ring", "apple", "letter", "stamp", "shell", "button"]
_CONTAINERS = ["box", "bag", "drawer", "basket", "jar", "chest", "bowl", "case"]
_CLOSERS = {"paren": ("(", ")"), "html": ("<em>", "</em>"),
            "latex": ("\\begin{quote}", "\\end{quote}")}


def _filler(rng: np.random.Generator, n_words: int) -> str:
    """n_words neutral words as sentences of 6-14 words (no names, roles or brackets)."""
    words, out = rng.choice(_FILLER_WORDS, size=n_words), []
    i = 0
    while i < n_words:
        k = int(rng.integers(6, 15))
        sent = list(words[i:i + k])
        sent[0] = sent[0].capitalize()
        out.append(" ".join(sent) + ".")
        i += k
    return " ".join(out)


def _pseudo_words(rng: np.random.Generator, n: int) -> list[str]:
    """n pronounceable non-words (two or three syllables): nothing a model memorised."""
    cons, vows = list("bdfgklmnprstvz"), list("aeiou")
    syl = rng.integers(2, 4, size=n)
    return ["".join(rng.choice(cons) + rng.choice(vows) for _ in range(int(k))) for k in syl]


def make_probes(seed: int = 0, distances: tuple[int, ...] = DISTANCES, per_distance: int = 6,
                kinds: tuple[str, ...] = KINDS, span_words: int = 32) -> list[ProbeItem]:
    """Every probe item, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    items: list[ProbeItem] = []
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"unknown probe kind {kind!r}; choose from {KINDS}")
        for d in distances:
            for i in range(per_distance):
                items.append(_make(kind, d, i, rng, span_words))
    return items


def _make(kind: str, d: int, i: int, rng: np.random.Generator, span_words: int) -> ProbeItem:
    if kind == "bracket":
        sub = list(_CLOSERS)[i % len(_CLOSERS)]
        op, cl = _CLOSERS[sub]
        text = f"{_filler(rng, 12)} {op}{_filler(rng, d)}{cl}"
        s = len(text) - len(cl)
        return ProbeItem(kind, sub, d, i, {"main": text}, {("main", "closer"): (s, len(text))})
    if kind == "repeat":
        words = _pseudo_words(rng, 2 * span_words + d + 16)
        span = words[8:8 + span_words]
        seq = words[:8 + span_words] + words[8 + span_words:8 + span_words + d] + span
        text = " ".join(seq)
        # Character spans of the two occurrences, first word skipped (it cannot be
        # predicted from the span itself).
        starts = np.cumsum([0] + [len(w) + 1 for w in seq])
        first = (int(starts[9]), int(starts[8 + span_words] - 1))
        j = 8 + span_words + d
        second = (int(starts[j + 1]), len(text))
        return ProbeItem(kind, "span32", d, i, {"main": text},
                         {("main", "first"): first, ("main", "second"): second})
    if kind == "pronoun":
        gender = ("she", "he")[i % 2]
        other = "he" if gender == "she" else "she"
        x = str(rng.choice(_NAMES[gender]))
        y = str(rng.choice(_NAMES[other]))
        r1, r2 = (str(r) for r in rng.choice(_ROLES, size=2, replace=False))
        intro = [f"{x} is the {r1}.", f"{y} is the {r2}."]
        if i % 4 >= 2:  # alternate the order so position does not give the answer
            intro.reverse()
        stem = f"{' '.join(intro)} {_filler(rng, d)} The {r1} said that"
        return _two_choice(kind, "role", d, i, stem, f" {gender}", f" {other}")
    if kind == "entity":
        o1, o2 = (str(o) for o in rng.choice(_OBJECTS, size=2, replace=False))
        c1, c2 = (str(c) for c in rng.choice(_CONTAINERS, size=2, replace=False))
        intro = [f"The {o1} is in the {c1}.", f"The {o2} is in the {c2}."]
        if i % 2:
            intro.reverse()
        stem = f"{' '.join(intro)} {_filler(rng, d)} The {o1} is in the"
        return _two_choice(kind, "container", d, i, stem, f" {c1}", f" {c2}")
    raise ValueError(kind)


def _two_choice(kind: str, sub: str, d: int, i: int, stem: str, right: str, wrong: str
                ) -> ProbeItem:
    n = len(stem)
    return ProbeItem(kind, sub, d, i, {"right": stem + right, "wrong": stem + wrong},
                     {("right", "answer"): (n, n + len(right)),
                      ("wrong", "answer"): (n, n + len(wrong))})


def span_loss(scores: TokenScores, span: tuple[int, int]) -> tuple[float, int]:
    """(sum of losses in nats, token count) of the tokens overlapping `span`."""
    s, e = span
    cs, ce = np.asarray(scores.char_start), np.asarray(scores.char_end)
    sel = (cs < e) & (s < ce)
    loss = np.asarray(scores.loss, np.float64)[sel]
    if sel.sum() == 0 or not np.all(np.isfinite(loss)):
        raise ValueError(f"span {span} has no scored tokens (or a NaN loss)")
    return float(loss.sum()), int(sel.sum())


def score_probes(items: list[ProbeItem], score_fns: dict[str, ScoreFn]) -> pd.DataFrame:
    """One row per (model, item): the item's metric values. Texts are scored in one
    batch per model."""
    rows = []
    keys = [(k, v) for k, it in enumerate(items) for v in it.texts]
    texts = [items[k].texts[v] for k, v in keys]
    for model, fn in score_fns.items():
        scored = fn(texts)
        if len(scored) != len(texts):
            raise ValueError(f"score_fn of {model!r} returned {len(scored)} results for "
                             f"{len(texts)} texts")
        by_key = dict(zip(keys, scored, strict=True))
        for k, it in enumerate(items):
            row = {"model": model, "probe": it.kind, "subkind": it.subkind,
                   "distance": it.distance, "index": it.index}
            loss = {name: span_loss(by_key[(k, v)], sp) for (v, name), sp in it.spans.items()}
            if it.kind == "bracket":
                total, n = loss["closer"]
                row["closer_loss"] = total / n
            elif it.kind == "repeat":
                (l1, n1), (l2, n2) = loss["first"], loss["second"]
                row["gain"] = l1 / n1 - l2 / n2
            else:
                lr = _span_total(it, by_key, k, "right")
                lw = _span_total(it, by_key, k, "wrong")
                row["margin"] = lw - lr
                row["correct"] = 1.0 if lr < lw else (0.5 if lr == lw else 0.0)
            rows.append(row)
    return pd.DataFrame(rows)


def _span_total(it: ProbeItem, by_key: dict, k: int, variant: str) -> float:
    return span_loss(by_key[(k, variant)], it.spans[(variant, "answer")])[0]


_METRICS = {"bracket": "closer_loss", "repeat": "gain", "pronoun": "correct",
            "entity": "correct"}


def summarize_probes(scores: pd.DataFrame, n_boot: int = 1000, seed: int = 0,
                     level: float = 0.95) -> pd.DataFrame:
    """Mean metric per (probe, model, distance): columns probe, model, distance, metric,
    value, lo, hi, n. Brackets: closer loss (nats); repeat: gain (nats); pronoun and
    entity: accuracy (fraction).

    lo, hi: a `level` interval from resampling the probe items of each (probe,
    distance) with replacement (items are the independent units here, as documents are
    for the tables), the same draws for every model, expanded for the number of items
    (`gaps.Bootstrap.levels`)."""
    from hybrid_jax.analysis.gaps import Bootstrap  # numpy + pandas only

    rows = []
    for (probe, dist), g in scores.groupby(["probe", "distance"], sort=True):
        metric = _METRICS[probe]
        item, _ = pd.factorize(pd.MultiIndex.from_frame(g[["subkind", "index"]]))
        k = int(item.max()) + 1
        boot = Bootstrap.over(np.arange(k), n_boot=n_boot, seed=seed, level=level,
                              unit="probe item")
        for model, gm in g.groupby("model", sort=True):
            codes = item[g["model"].to_numpy() == model]
            v = np.full(k, np.nan)
            v[codes] = gm[metric].to_numpy(np.float64)
            if np.isnan(v).any():
                raise ValueError(f"probe {probe!r} at distance {dist}: model {model!r} lacks "
                                 f"{int(np.isnan(v).sum())} of the {k} items")
            draws = (boot.counts @ v)[:, None] / k
            lo, hi, _ = boot.interval(draws, np.asarray([float(k)]))
            rows.append({"probe": probe, "model": model, "distance": int(dist), "metric":
                         {"correct": "accuracy"}.get(metric, metric + " (nats)"),
                         "value": float(v.mean()), "lo": float(lo[0]), "hi": float(hi[0]),
                         "n": k})
    return pd.DataFrame(rows)
