"""The report's figures: one colour and marker per model across figures, readable panel
titles, coinciding probe lines kept visible (the warnings list: test_acceptance)."""

import matplotlib.colors as mcolors
import pandas as pd
import pytest

from hybrid_jax.analysis import figures


@pytest.fixture
def keep_figure(monkeypatch):
    """figures.* return the matplotlib figure instead of PNG bytes."""
    monkeypatch.setattr(figures, "_png", lambda fig: fig)


def _lines(ax):
    return [ln for ln in ax.get_lines() if ln.get_label() and not ln.get_label().startswith("_")]


def test_model_styles_are_fixed_per_architecture_and_distinct_otherwise():
    s = figures.model_styles(["hybrid@300", "mine", "transformer", "theirs", "recurrent"])
    assert s["hybrid@300"] == figures.model_styles(["hybrid"])["hybrid"]
    assert s["mine"] != s["theirs"]
    assert len({c for c, _ in s.values()}) == 5
    assert figures.title("content_not_repeated") == "Content words, not in a repeat"
    assert figures.title("some_new_filter") == "some new filter"


def test_probe_and_filtered_figures_share_colours_and_keep_equal_lines_visible(keep_figure):
    probes = pd.DataFrame([
        {"probe": "repeat", "model": m, "distance": d, "metric": "gain (nats)",
         "value": 1.0, "lo": 0.8, "hi": 1.2, "n": 4}
        for m in ("transformer", "hybrid") for d in (32, 64)])  # identical values
    fig = figures.probe_plot(probes)
    ax = fig.axes[0]
    assert ax.get_title() == "Repeating a 32-word span"
    lines = _lines(ax)
    assert [ln.get_label() for ln in lines] == ["transformer (n = 4 per point)",
                                               "hybrid (n = 4 per point)"]
    # coinciding lines: different markers and dashes, the later one drawn on top, thinner
    assert lines[0].get_marker() != lines[1].get_marker()
    assert lines[0].get_linestyle() != lines[1].get_linestyle()
    assert lines[1].get_zorder() > lines[0].get_zorder()
    assert lines[1].get_linewidth() < lines[0].get_linewidth()
    probe_colors = {ln.get_label().split()[0]: mcolors.to_hex(ln.get_color()) for ln in lines}

    fl = pd.DataFrame([
        {"table": f"{m}@{s}", "model": m, "step": s, "filter": "repeated_5gram",
         "n": 10, "n_docs": 5, "mean": 2.0 + s / 100, "lo": 1.9, "hi": 2.5}
        for m in ("hybrid", "transformer") for s in (100, 200)])  # other order
    fig = figures.filtered_curves(fl)
    ax = fig.axes[0]
    assert ax.get_title() == "Tokens completing a repeated 5-gram"
    filt_colors = {c.get_label(): mcolors.to_hex(c.lines[0].get_color())
                   for c in ax.containers}
    assert filt_colors == probe_colors
