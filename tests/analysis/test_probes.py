"""Probes: deterministic generation, target spans, and metrics through a fake score_fn."""

import re

import numpy as np
import pytest

from hybrid_jax.analysis import probes


def word_scorer(texts):
    """Whitespace words; loss 0.1 for a word seen earlier in the text, else 2.0."""
    out = []
    for t in texts:
        spans = [m.span() for m in re.finditer(r"\S+", t)]
        seen, loss = set(), []
        for s, e in spans:
            loss.append(0.1 if t[s:e] in seen else 2.0)
            seen.add(t[s:e])
        se = np.asarray(spans)
        out.append(probes.TokenScores(se[:, 0], se[:, 1], np.asarray(loss)))
    return out


def offset_scorer(texts):
    """Characters as tokens; loss = char offset / 1000: span losses are checkable sums."""
    return [probes.TokenScores(np.arange(len(t)), np.arange(len(t)) + 1,
                               np.arange(len(t)) / 1000.0) for t in texts]


def test_generation_is_deterministic_and_targets_are_where_they_say():
    a = probes.make_probes(seed=5, distances=(32, 64), per_distance=4)
    b = probes.make_probes(seed=5, distances=(32, 64), per_distance=4)
    assert [i.texts for i in a] == [i.texts for i in b]
    assert [i.texts for i in probes.make_probes(seed=6, distances=(32, 64),
                                                per_distance=4)] != [i.texts for i in a]
    for it in a:
        if it.kind == "bracket":
            s, e = it.spans[("main", "closer")]
            assert it.texts["main"][s:e] in (")", "</em>", "\\end{quote}")
        elif it.kind == "repeat":
            f, s = it.spans[("main", "first")], it.spans[("main", "second")]
            text = it.texts["main"]
            assert text[f[0]:f[1]] == text[s[0]:s[1]]
            assert len(text[f[0]:f[1]].split()) == 31  # 32-word span, first word skipped
            between = text[f[1]:s[0]].split()
            assert len(between) == it.distance + 1  # the gap, plus the skipped word
        else:
            r, w = it.spans[("right", "answer")], it.spans[("wrong", "answer")]
            right, wrong = it.texts["right"][r[0]:r[1]], it.texts["wrong"][w[0]:w[1]]
            assert right != wrong and it.texts["right"][:r[0]] == it.texts["wrong"][:w[0]]


def test_pronoun_answer_matches_the_named_role():
    for it in probes.make_probes(seed=1, distances=(32,), per_distance=4, kinds=("pronoun",)):
        text = it.texts["right"]
        role = re.search(r"The (\w+) said that", text).group(1)
        name = re.search(rf"(\w+) is the {role}\.", text).group(1)
        answer = text[it.spans[("right", "answer")][0]:].strip()
        assert (name in probes._NAMES["she"]) == (answer == "she")


def test_metrics_from_span_losses():
    items = probes.make_probes(seed=0, distances=(32,), per_distance=3)
    rows = probes.score_probes(items, {"offsets": offset_scorer}).set_index(
        ["probe", "index"])
    for it in items:
        r = rows.loc[(it.kind, it.index)]
        if it.kind == "bracket":
            s, e = it.spans[("main", "closer")]
            assert np.isclose(r["closer_loss"], np.mean(np.arange(s, e)) / 1000)
        elif it.kind == "repeat":
            (f0, f1), (s0, s1) = it.spans[("main", "first")], it.spans[("main", "second")]
            want = np.mean(np.arange(f0, f1)) / 1000 - np.mean(np.arange(s0, s1)) / 1000
            assert np.isclose(r["gain"], want)
        else:  # the two answers start at the same offset: the longer one costs more
            n_r = np.diff(it.spans[("right", "answer")])[0]
            n_w = np.diff(it.spans[("wrong", "answer")])[0]
            assert r["correct"] == (1.0 if n_r < n_w else 0.5 if n_r == n_w else 0.0)


def test_summary_with_a_recall_model():
    items = probes.make_probes(seed=2, distances=(32, 256), per_distance=4)
    summary = probes.summarize_probes(probes.score_probes(items, {"cache": word_scorer}))
    s = summary.set_index(["probe", "distance"])["value"]
    # The closer never occurred before its opener's filler: 2 nats. The planted span's
    # second occurrence is all seen words (0.1) while the first is mostly new.
    assert s.loc[("bracket", 32)] == 2.0
    assert s.loc[("repeat", 32)] > 1.5 and s.loc[("repeat", 256)] > 1.5
    # Both answers of the two-choice probes occurred earlier: ties count half.
    assert s.loc[("entity", 32)] == 0.5
    assert set(summary["metric"]) == {"closer_loss (nats)", "gain (nats)", "accuracy"}


def test_a_span_without_tokens_is_an_error():
    with pytest.raises(ValueError, match="no scored tokens"):
        probes.span_loss(probes.TokenScores(np.array([0]), np.array([2]), np.array([1.0])),
                         (5, 7))


def test_probe_intervals_resample_items():
    import pandas as pd
    from scipy import stats

    k = 40
    rows = [{"model": m, "probe": "pronoun", "subkind": "role", "distance": 32, "index": i,
             "correct": float(i % 2) if m == "half" else 1.0, "margin": 0.0}
            for m in ("half", "perfect") for i in range(k)]
    s = probes.summarize_probes(pd.DataFrame(rows), n_boot=20_000).set_index("model")
    assert s.loc["perfect", "lo"] == s.loc["perfect", "hi"] == 1.0
    half = s.loc["half"]
    assert half["value"] == 0.5 and half["n"] == k
    # The expanded percentile interval of a mean of 40 items: ~ t_39 sqrt(40/39) se, up to
    # the grid of 1/40 the resampled means of 0/1 items lie on.
    want = stats.t.ppf(0.975, k - 1) * np.sqrt(k / (k - 1)) * np.sqrt(0.25 / k)
    assert abs((half["hi"] - half["lo"]) / 2 - want) < 0.5 / k + 1e-3
