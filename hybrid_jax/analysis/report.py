"""The report: one self-contained HTML page, the same in markdown, every number in JSON,
the figures as PNG files (and embedded in the HTML as base64), and the token views.

    out/report.html  report.md  report.json  figures/*.png  tokens/<doc>.html

Every number shown comes from `AnalysisResult.numbers`, which is what report.json holds,
so the pages and the JSON cannot disagree.
"""

from __future__ import annotations

import base64
import html
import json
import math
import pathlib

import numpy as np
import pandas as pd

from hybrid_jax.analysis import figures
from hybrid_jax.analysis.pipeline import AnalysisResult
from hybrid_jax.analysis.token_view import write_token_views


def to_jsonable(x):
    """numpy scalars -> Python, NaN/inf -> None, recursively (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [to_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if isinstance(x, np.bool_ | bool):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(float(x)) else None
    if x is None or isinstance(x, int | str):
        return x
    if pd.isna(x):
        return None
    return str(x)


def _fmt(v) -> str:
    if isinstance(v, float | np.floating):
        if not math.isfinite(v):
            return "–"
        return f"{v:.4f}" if abs(v) >= 1e-4 or v == 0 else f"{v:.2e}"
    if v is None:
        return "–"
    return str(v)


def _table_rows(frame: pd.DataFrame, cols: list[str]) -> list[list[str]]:
    return [[_fmt(r[c]) for c in cols] for r in frame.to_dict("records")]


def md_table(frame: pd.DataFrame, cols: list[str]) -> str:
    """A GitHub markdown table of the given columns."""
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r) + " |" for r in _table_rows(frame, cols)]
    return "\n".join(lines)


def html_table(frame: pd.DataFrame, cols: list[str]) -> str:
    """An HTML table of the given columns."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>"
                   for r in _table_rows(frame, cols))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:62em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
img{max-width:100%} code{background:#f3f3f3;padding:0 3px}
"""


def _sections(res: AnalysisResult, probes: pd.DataFrame | None
              ) -> list[tuple[str, str, list[tuple[pd.DataFrame, list[str]]], str | None]]:
    """(title, prose, [(table, columns)], figure name) of every report section."""
    n, f = res.numbers, res.frames
    a, b = n["meta"]["a"], n["meta"]["b"]
    cf = n["content_function"]["diff"]
    slope = n["vocab_slope"]
    secs = [
        ("Overview",
         f"A = `{a}`, B = `{b}`. {n['meta']['sign']}. {n['meta']['n_tokens']:,} tokens in "
         f"{n['meta']['n_windows']:,} windows of {n['meta']['n_docs']:,} documents; tagger "
         f"{n['meta']['tagger']}; CIs: {n['meta']['ci']} ({n['meta']['n_boot']} resamples).",
         [(f["domains"], ["name", "n", "mean", "lo", "hi"])], None),
        ("Gap by category",
         "Mean gap of the tokens of each category (a token carries every category of the "
         "words and code/markup spans it overlaps).",
         [(f["families"], ["name", "group", "n", "mean", "lo", "hi", "loss_a", "loss_b"])],
         "families"),
        ("Content vs function",
         f"content − function = {_fmt(cf['diff'])} nats [{_fmt(cf['lo'])}, {_fmt(cf['hi'])}].",
         [(f["content_function"], ["name", "n", "mean", "lo", "hi"])], None),
        ("Opening vs closing brackets",
         "gap(open) − gap(close) per domain; brackets are `([{`/`)]}`, HTML open/close tags "
         "and LaTeX `\\begin`/`\\end`.",
         [(f["open_close"], ["domain", "n_a", "n_b", "mean_a", "mean_b", "diff", "lo", "hi"])],
         "open_close"),
        ("Gap vs repeat length",
         "n = the longest n-gram (≤ 16 tokens) the token completes that occurred earlier "
         "in its context; 0 = the token is new there.",
         [(f["repeat_length"], ["n", "tokens", "mean", "lo", "hi"])], "repeat_length"),
        ("Recall cliff",
         "Gap of repeated-5-gram tokens by distance to the 5-gram's previous occurrence; "
         "then all repeated tokens by distance to the token's previous occurrence.",
         [(f["recall_cliff"], ["name", "n", "mean", "lo", "hi"]),
          (f["recall_cliff_token"], ["name", "n", "mean", "lo", "hi"])], "recall_cliff"),
        ("Gap vs family vocabulary size",
         f"Slope of family mean gap on log |V| (word types per family) over "
         f"{slope['n_families']} families: {_fmt(slope['slope'])} nats per e-fold "
         f"[{_fmt(slope['lo'])}, {_fmt(slope['hi'])}].", [], None),
    ]
    reg_tables = []
    for key in ("content_function", "families"):
        r = n["regression"].get(key)
        if r:
            reg_tables.append((pd.DataFrame(r["terms"]), ["term", "coef", "se", "lo", "hi", "p"]))
    ref = "; ".join(f"{k}: n = {v['n']:,}, R² = {_fmt(v['r2'])}, intercept = {v['reference']}"
                    for k, v in n["regression"].items() if isinstance(v, dict))
    secs.append(("Regression with controls",
                 "OLS of the gap on category indicators with controls (difficulty, log "
                 "frequency, log position, subword, repeat length, previous-occurrence "
                 f"distance, domain), window-clustered SEs. {ref}", reg_tables, None))
    secs.append(("Filtered losses",
                 "Mean loss of every table under the filters ALL / content-not-repeated / "
                 "repeated-5-gram (`filters.py`), and the A − B gap under each.",
                 [(f["filtered_losses"], ["table", "model", "step", "filter", "n", "mean",
                                          "lo", "hi"]),
                  (f["filtered_gaps"], ["name", "n", "mean", "lo", "hi"])], "filtered"))
    if probes is not None and not probes.empty:
        secs.append(("Probes", "Synthetic probes (`probes.py`), mean per distance.",
                     [(probes, ["probe", "model", "distance", "metric", "value", "n"])],
                     "probes"))
    if n["warnings"]:
        secs.append(("Warnings", "; ".join(n["warnings"][:50]), [], None))
    return secs


def make_figures(res: AnalysisResult, probes: pd.DataFrame | None) -> dict[str, bytes]:
    """{name: PNG bytes} of every figure that has data."""
    f, m = res.frames, res.numbers["meta"]
    figs = {
        "families": figures.family_bars(f["families"], m["a"], m["b"]),
        "repeat_length": figures.repeat_curve(f["repeat_length"], m["a"], m["b"]),
        "open_close": figures.open_close_bars(f["open_close"]),
        "recall_cliff": figures.recall_cliff_plot(f["recall_cliff"], f["recall_cliff_token"]),
        "filtered": figures.filtered_curves(f["filtered_losses"]),
        "probes": figures.probe_plot(probes) if probes is not None else None,
    }
    return {k: v for k, v in figs.items() if v is not None}


def write_report(res: AnalysisResult, out_dir: str | pathlib.Path, *,
                 probes: pd.DataFrame | None = None, token_docs: list[str] | None = None,
                 token_docs_per_domain: int = 2, title: str = "Token-level gap report"
                 ) -> dict[str, pathlib.Path]:
    """Writes everything under out_dir; returns {"html", "md", "json", ...: path}."""
    out = pathlib.Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    numbers = dict(res.numbers)
    if probes is not None:
        numbers["probes"] = probes.to_dict("records")
    figs = make_figures(res, probes)
    for name, png in figs.items():
        (out / "figures" / f"{name}.png").write_bytes(png)
    meta = res.numbers["meta"]
    views = write_token_views(res.tokens, res.docs, out / "tokens", meta["a"], meta["b"],
                              ids=token_docs, per_domain=token_docs_per_domain)
    numbers["token_views"] = [str(p.relative_to(out)) for p in views]

    md = [f"# {title}", ""]
    body = [f"<h1>{html.escape(title)}</h1>"]
    for sec_title, prose, tables, fig in _sections(res, probes):
        md += [f"## {sec_title}", "", prose, ""]
        body.append(f"<h2>{html.escape(sec_title)}</h2><p>{html.escape(prose)}</p>")
        if fig in figs:
            md += [f"![{sec_title}](figures/{fig}.png)", ""]
            b64 = base64.b64encode(figs[fig]).decode()
            body.append(f'<img alt="{html.escape(sec_title)}" src="data:image/png;base64,{b64}">')
        for frame, cols in tables:
            md += [md_table(frame, cols), ""]
            body.append(html_table(frame, cols))
    links = "".join(f'<li><a href="{html.escape(p)}">{html.escape(p)}</a></li>'
                    for p in numbers["token_views"])
    md += ["## Token views", ""] + [f"- [{p}]({p})" for p in numbers["token_views"]]
    body.append(f"<h2>Token views</h2><ul>{links}</ul>")

    paths = {"html": out / "report.html", "md": out / "report.md", "json": out / "report.json"}
    paths["json"].write_text(json.dumps(to_jsonable(numbers), indent=1, allow_nan=False),
                             encoding="utf-8")
    paths["md"].write_text("\n".join(md) + "\n", encoding="utf-8")
    paths["html"].write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>", encoding="utf-8")
    return paths
