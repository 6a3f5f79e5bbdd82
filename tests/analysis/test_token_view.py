"""Token view pages: colours by gap, hover text, and the document's text intact."""

import html
import re

import numpy as np
import pandas as pd

from hybrid_jax.analysis.families import BIT
from hybrid_jax.analysis.table import Document
from hybrid_jax.analysis.token_view import document_html, gap_color, write_token_views


def test_gap_colours():
    assert gap_color(2.0, 2.0) == "rgb(0,0,255)"  # B better: blue
    assert gap_color(-5.0, 2.0) == "rgb(255,0,0)"  # A better, saturated: red
    assert gap_color(0.0, 2.0) == "rgb(255,255,255)"
    assert gap_color(1.0, 2.0) == "rgb(128,128,255)"


def tokens():
    return pd.DataFrame({
        "doc_id": "d", "domain": "books", "window": 0, "position": [1, 2, 3],
        "char_start": [0, 3, 8], "char_end": [3, 7, 9], "tags": [BIT["noun"], 0, 0],
        "label": ["nn", "", ""], "rep": [0, 0, 2], "prev_dist": [-1, -1, 4],
        "loss_a": [2.0, 1.0, 0.5], "loss_b": [1.5, 1.0, 0.75], "gap": [0.5, 0.0, -0.25]})


def test_page_keeps_text_and_shows_losses_on_hover():
    doc = Document("d", "books", "Cat <is> a!")
    page = document_html(doc, tokens(), "tr", "hy")
    pre = re.search(r"<pre>(.*)</pre>", page, re.S).group(1)
    assert html.unescape(re.sub(r"<[^>]+>", "", pre)) == doc.text
    first = re.search(r'<span class="t"[^>]*title="([^"]*)">Cat</span>', page)
    hover = html.unescape(first.group(1))
    assert "tr: 2.000 nats | hy: 1.500 nats | gap +0.500" in hover
    assert "categories: noun" in hover and "tag: nn" in hover
    assert "repeat n: 0 | previous occurrence: new" in hover
    assert '<span class="u">a!</span>' in page  # unscored characters in grey


def test_selection_and_files(tmp_path):
    t = tokens()
    docs = {"d": Document("d", "books", "Cat <is> a!")}
    paths = write_token_views(t, docs, tmp_path, "tr", "hy", per_domain=1)
    assert [p.name for p in paths] == ["d.html"] and paths[0].read_text().startswith(
        "<!doctype html>")
    assert np.isclose(t["gap"].mean(), 0.25 / 3)
