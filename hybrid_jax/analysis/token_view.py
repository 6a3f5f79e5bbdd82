"""Per-document HTML pages where every scored token is coloured by the gap.

Blue = B predicted the token better (gap > 0), red = A did, white = no difference; the
colour saturates at `scale` nats. Hovering a token shows both losses, the gap, its
categories, the tagger's tag, the repeat length and the distance to the previous
occurrence. Characters no row scores (a window's first token, text outside the eval
pack) are shown in grey. Pages are self-contained (inline CSS, no scripts).
"""

from __future__ import annotations

import html
import pathlib

import numpy as np
import pandas as pd

from hybrid_jax.analysis.families import names_of
from hybrid_jax.analysis.table import Document

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}
pre{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:13px;line-height:1.7}
span.t{border-radius:2px;cursor:default} span.u{color:#aaa}
span.t:hover{outline:1px solid #333}
.legend span{display:inline-block;padding:0 .5em;margin-right:.3em}
"""


def gap_color(gap: float, scale: float) -> str:
    """rgb() of a gap: blue for > 0 (B better), red for < 0, white at 0."""
    x = float(np.clip(gap / scale, -1.0, 1.0)) if scale > 0 else 0.0
    fade = int(round(255 * (1.0 - abs(x))))
    return f"rgb({fade},{fade},255)" if x > 0 else f"rgb(255,{fade},{fade})"


def _title(r, a: str, b: str) -> str:
    cats = ", ".join(names_of(int(r.tags))) or "-"
    prev = f"{int(r.prev_dist)} tokens" if r.prev_dist >= 0 else "new"
    return (f"{a}: {r.loss_a:.3f} nats | {b}: {r.loss_b:.3f} nats | gap {r.gap:+.3f}\n"
            f"categories: {cats}\ntag: {r.label or '-'}\nrepeat n: {int(r.rep)} | "
            f"previous occurrence: {prev} | window {int(r.window)} pos {int(r.position)}")


def document_html(doc: Document, tokens: pd.DataFrame, a: str, b: str, *,
                  scale: float = 2.0, max_tokens: int = 6000) -> str:
    """The page of one document. `tokens` are its rows of the analysis token frame
    (columns of features.py plus loss_a, loss_b, gap). Past `max_tokens` tokens the text
    is cut (each token's hover text costs ~300 bytes of HTML)."""
    rows = tokens.sort_values(["char_start", "window", "position"])
    # A token scored twice (overlapping windows) is drawn once, from its first row.
    rows = rows.drop_duplicates(["char_start", "char_end"])
    text = doc.text
    if len(rows) > max_tokens:
        rows = rows.iloc[:max_tokens]
        text = text[: int(rows["char_end"].max())]
    parts, pos = [], 0
    for r in rows.itertuples(index=False):
        s, e = int(r.char_start), int(r.char_end)
        if s < pos:  # overlaps the previous token: already drawn
            continue
        if s > pos:
            parts.append(f'<span class="u">{html.escape(text[pos:s])}</span>')
        parts.append(f'<span class="t" style="background:{gap_color(r.gap, scale)}" '
                     f'title="{html.escape(_title(r, a, b))}">{html.escape(text[s:e])}</span>')
        pos = e
    if pos < len(text):
        parts.append(f'<span class="u">{html.escape(text[pos:])}</span>')
    mean = float(rows["gap"].mean()) if len(rows) else float("nan")
    legend = (f'<p class="legend"><span style="background:{gap_color(scale, scale)}">'
              f'{html.escape(b)} better by {scale:g}+ nats</span>'
              f'<span style="background:{gap_color(-scale, scale)}">{html.escape(a)} better '
              f'by {scale:g}+ nats</span><span class="u">unscored</span></p>')
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(doc.id)}"
            f"</title><style>{_CSS}</style></head><body><h2>{html.escape(doc.id)}</h2>"
            f"<p>domain {html.escape(doc.domain)} · {len(rows)} scored tokens · mean gap "
            f"{mean:+.4f} nats (gap = loss {html.escape(a)} - loss {html.escape(b)})</p>"
            f"{legend}<pre>{''.join(parts)}</pre></body></html>")


def select_documents(tokens: pd.DataFrame, k: int = 2, ids: list[str] | None = None
                     ) -> list[str]:
    """Explicit `ids`, else for every domain the k documents with the largest |mean gap|
    among those with at least 50 scored tokens (or all, when none has)."""
    if ids:
        return list(ids)
    out = []
    for _, g in tokens.groupby("domain", sort=True):
        stats = g.groupby("doc_id")["gap"].agg(["mean", "size"])
        big = stats[stats["size"] >= 50]
        stats = big if len(big) else stats
        out += list(stats["mean"].abs().sort_values(ascending=False, kind="stable")
                    .index[:k])
    return out


def write_token_views(tokens: pd.DataFrame, docs: dict[str, Document], out_dir: str |
                      pathlib.Path, a: str, b: str, *, ids: list[str] | None = None,
                      per_domain: int = 2, scale: float = 2.0) -> list[pathlib.Path]:
    """Writes one page per selected document under out_dir; returns their paths."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for doc_id in select_documents(tokens, per_domain, ids):
        if doc_id not in docs:
            raise KeyError(f"token view: document {doc_id!r} is not in the documents")
        page = document_html(docs[doc_id], tokens[tokens["doc_id"] == doc_id], a, b,
                             scale=scale)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in doc_id)
        path = out_dir / f"{safe}.html"
        path.write_text(page, encoding="utf-8")
        paths.append(path)
    return paths
