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
    if v is None or v is pd.NA:
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


TAG_ROWS = 15  # rows of the tag table shown in report.md / .html

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:62em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
img{max-width:100%} code{background:#f3f3f3;padding:0 3px}
"""


def _with_sig(frame: pd.DataFrame) -> pd.DataFrame:
    """Adds the display column `sig`: "yes" (significant after the correction), "no",
    or "flagged" (too few documents: never tested)."""
    out = frame.copy()
    if "significant" not in out:
        return out
    flagged = out["flagged"].to_numpy(bool) if "flagged" in out else np.zeros(len(out), bool)
    out["sig"] = np.where(flagged, "flagged", np.where(out["significant"].to_numpy(bool),
                                                       "yes", "no"))
    return out


def statistics_prose(n: dict) -> str:
    """The paragraph that says how every interval and mark of the report was made."""
    m = n["meta"]
    c = m["correction"]
    flagged = m["flagged"]
    fl = (", ".join(f"`{r['name']}` ({r['n_docs']} doc{'s' if r['n_docs'] != 1 else ''}, "
                    f"{r['n']:,} tokens)" for r in flagged) if flagged else "none")
    dc = m.get("documents_check") or {}
    top_s = " " + top_prose(m.get("top_families"))
    return (f"Clustering unit: {m['cluster']} ({m['n_clusters']:,} {m['cluster']}s); "
            f"every interval of this report resamples {m['cluster']}s (filtered losses, "
            "paired gaps, categories, domains, open/close, repeat lengths, recall cliff, "
            "vocabulary slope; the same draws for all, so differences are paired), and the "
            f"regressions' standard errors are cluster-robust by {m['cluster']}. Intervals: "
            f"{m['ci']}. p-values: {c['p_values']}. Multiple comparisons: "
            f"{c['description']} at alpha = {c['alpha']} within each table ({c['families']}); "
            f"`sig` marks rows significant after it. Rows resting on fewer than "
            f"{c['min_docs']} documents are flagged: shown, never significant, left out of "
            f"the correction. Flagged categories: {fl}. Documents: "
            f"{dc.get('method', 'unknown')}: {dc.get('detail', '')}.{top_s}")


def top_prose(top: dict | None) -> str:
    """What the TOP-10∩NO-COPY filter is made of (`meta.top_families`), in words."""
    if top is None:
        return ("TOP-10∩NO-COPY is not computed: `--top_k=0` (study.top_k = 0) and no "
                "ranking given.")
    cf = top.get("cross_fit")
    if cf is None:
        return (f"TOP-10∩NO-COPY (`{top['filter']}`) keeps the tokens, not in a repeat, of "
                f"{', '.join(top['families'])}, ranked by {top['source']}.")
    folds = "; ".join(f"fold {f['fold']} ({f['n_docs']} docs): "
                      f"{', '.join(f['tags']) or 'no tag'}" for f in cf["folds"])
    head = (f"TOP-10∩NO-COPY (`{top['filter']}`) is cross-fitted: the documents are dealt "
            f"into {len(cf['folds'])} folds (by domain, in the order of a hash of their "
            f"ids), and the tokens of each fold, not in a repeat, are kept when they carry "
            f"one of the {cf['k']} open-class tags with the largest positive gap "
            f"{cf['a']} − {cf['b']} on the next fold's documents (tags on >= "
            f"{cf['min_docs']} of them), so no token is selected by its own document's "
            f"losses. Tags by fold: {folds}.")
    if not top.get("computed", True):
        head += " No fold found such a tag, so the filter is not computed."
    return head


_Section = tuple[str, str | list[str], list[tuple[pd.DataFrame, list[str]]], str | None]


def _sections(res: AnalysisResult, probes: pd.DataFrame | None) -> list[_Section]:
    """(title, prose, [(table, columns)], figure name) of every report section; prose is
    a list of items for the warnings."""
    n, f = res.numbers, res.frames
    f = {k: _with_sig(v) for k, v in f.items()}
    a, b = n["meta"]["a"], n["meta"]["b"]
    cf = n["content_function"]["diff"]
    slope = n["vocab_slope"]
    test = ["p", "p_adj", "sig"]
    secs = [
        ("Overview",
         f"A = `{a}`, B = `{b}`. {n['meta']['sign']}. {n['meta']['n_tokens']:,} tokens in "
         f"{n['meta']['n_windows']:,} windows of {n['meta']['n_docs']:,} documents; tagger "
         f"{n['meta']['tagger']}.",
         [(f["domains"], ["name", "n", "n_docs", "mean", "lo", "hi", *test])], None),
        ("Statistics", statistics_prose(n), [], None),
        ("Paired filtered gaps",
         "Gap loss_A − loss_B (nats; > 0: B better) of every two models under every filter "
         "at every step both have, with its paired interval: documents are resampled "
         "jointly for both models, so what the two share (the same hard documents) cancels. "
         "Read differences between models here, not from whether the marginal intervals "
         "of the filtered losses below overlap.",
         [(f["paired_filtered"], ["a", "b", "step", "filter", "n", "n_docs", "gap", "lo",
                                  "hi", *test])], "paired_filtered"),
        ("Gap by category",
         "Mean gap of the tokens of each category (a token carries every category of the "
         "words and code/markup spans it overlaps).",
         [(f["families"], ["name", "group", "n", "n_docs", "mean", "lo", "hi", *test,
                           "loss_a", "loss_b"])], "families"),
        ("Gap by open-class tag",
         f"Mean gap of the tokens of each open-class tag: the tagger's own tags whose "
         f"family is a content family, Brown's decorations removed (NN-TL is NN); a token "
         f"overlapping several words counts for each of their tags. The "
         f"{min(TAG_ROWS, len(f['tags']))} largest gaps of {len(f['tags'])} tags "
         f"(report.json `tags` has them all; one family of the correction). The tags "
         f"TOP-10∩NO-COPY keeps are listed under Statistics.",
         [(f["tags"].head(TAG_ROWS), ["name", "family", "n", "n_docs", "mean", "lo", "hi",
                                      *test])], None),
        ("Content vs function",
         f"content − function = {_fmt(cf['diff'])} nats [{_fmt(cf['lo'])}, {_fmt(cf['hi'])}], "
         f"p = {_fmt(cf['p'])} (one test).",
         [(f["content_function"], ["name", "n", "n_docs", "mean", "lo", "hi", *test])], None),
        ("Opening vs closing brackets",
         "gap(open) − gap(close) per domain; brackets are `([{`/`)]}`, HTML open/close tags "
         "and LaTeX `\\begin`/`\\end`. n_docs: documents with both.",
         [(f["open_close"], ["domain", "n_a", "n_b", "n_docs", "mean_a", "mean_b", "diff",
                             "lo", "hi", *test])], "open_close"),
        ("Gap vs repeat length",
         "n = the longest n-gram (≤ 16 tokens) the token completes that occurred earlier "
         "in its context; 0 = the token is new there.",
         [(f["repeat_length"], ["n", "tokens", "n_docs", "mean", "lo", "hi", *test])],
         "repeat_length"),
        ("Recall cliff",
         "Gap of repeated-5-gram tokens by distance to the 5-gram's previous occurrence; "
         "then all repeated tokens by distance to the token's previous occurrence.",
         [(f["recall_cliff"], ["name", "n", "n_docs", "mean", "lo", "hi", *test]),
          (f["recall_cliff_token"], ["name", "n", "n_docs", "mean", "lo", "hi", *test])],
         "recall_cliff"),
        ("Gap vs family vocabulary size",
         f"Slope of family mean gap on log |V| (word types per family) over "
         f"{slope['n_families']} families: {_fmt(slope['slope'])} nats per e-fold "
         f"[{_fmt(slope['lo'])}, {_fmt(slope['hi'])}], p = {_fmt(slope.get('p'))}.", [], None),
    ]
    reg_tables = []
    for key in ("content_function", "families"):
        r = n["regression"].get(key)
        if r:
            reg_tables.append((_with_sig(pd.DataFrame(r["terms"])),
                               ["term", "coef", "se", "lo", "hi", "p", "p_adj", "sig"]))
    ref = "; ".join(f"{k}: n = {v['n']:,}, R² = {_fmt(v['r2'])}, intercept = {v['reference']}, "
                    f"SEs {v.get('cluster', '')}"
                    for k, v in n["regression"].items() if isinstance(v, dict))
    secs.append(("Regression with controls",
                 "OLS of the gap on category indicators with controls (difficulty, log "
                 "frequency, log position, subword, repeat length, previous-occurrence "
                 "distance, domain); the category terms of each regression are one family "
                 f"of the correction (the controls are not tested). {ref}", reg_tables, None))
    secs.append(("Filtered losses",
                 "Mean loss of every table under the filters (`filters.py`): ALL, "
                 "content-not-repeated, TOP-10∩NO-COPY (its tags: Statistics above), "
                 "repeated-5-gram; and the A − B gap under each. Each table's interval is "
                 "its own (marginal); paired gaps are above.",
                 [(f["filtered_losses"], ["table", "model", "step", "filter", "n", "n_docs",
                                          "mean", "lo", "hi"]),
                  (f["filtered_gaps"], ["name", "n", "n_docs", "mean", "lo", "hi", *test])],
                 "filtered"))
    if probes is not None and not probes.empty:
        cols = ["probe", "model", "distance", "metric", "value"]
        cols += [c for c in ("lo", "hi") if c in probes] + ["n"]
        secs.append(("Probes", "Synthetic probes (`probes.py`), mean per distance; intervals "
                     "resample the probe items.", [(probes, cols)], "probes"))
    if n["warnings"]:
        shown = n["warnings"][:50]
        more = len(n["warnings"]) - len(shown)
        secs.append(("Warnings", [*shown, *([f"... and {more} more (report.json)"]
                                           if more > 0 else [])], [], None))
    return secs


def paired_lines(paired: pd.DataFrame, steps: str = "all") -> list[str]:
    """Printable lines of the paired filtered gaps (`steps="last"`: each pair's last
    step only): pair, step, filter, gap [lo, hi], documents, significance."""
    if paired is None or paired.empty:
        return []
    t = paired
    if steps == "last":
        key = t["step"].fillna(np.iinfo(np.int64).max) if t["step"].notna().any() else None
        if key is not None:
            t = t.assign(_k=key)
            t = t[t["_k"] == t.groupby(["a", "b"])["_k"].transform("max")]
    out = []
    for r in t.to_dict("records"):
        step = "final" if pd.isna(r["step"]) else f"step {int(r['step'])}"
        mark = ("flagged" if r.get("flagged") else "significant" if r.get("significant")
                else "n.s.")
        out.append(f"{r['a'] + ' - ' + r['b']:<26} {step:<11} {r['filter']:<22} "
                   f"{r['gap']:+.4f} [{r['lo']:+.4f}, {r['hi']:+.4f}]  "
                   f"({r['n_docs']} docs, {r['n']:,} tokens; {mark})")
    return out


def make_figures(res: AnalysisResult, probes: pd.DataFrame | None) -> dict[str, bytes]:
    """{name: PNG bytes} of every figure that has data."""
    f, m = res.frames, res.numbers["meta"]
    figs = {
        "families": figures.family_bars(f["families"], m["a"], m["b"],
                                        m["correction"]["min_docs"]),
        "repeat_length": figures.repeat_curve(f["repeat_length"], m["a"], m["b"]),
        "open_close": figures.open_close_bars(f["open_close"]),
        "recall_cliff": figures.recall_cliff_plot(f["recall_cliff"], f["recall_cliff_token"]),
        "filtered": figures.filtered_curves(f["filtered_losses"]),
        "paired_filtered": figures.paired_curves(f["paired_filtered"]),
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
        if isinstance(prose, list):  # a list of items (the warnings), one per line
            md += [f"## {sec_title}", "", *(f"- {w}" for w in prose), ""]
            items = "".join(f"<li>{html.escape(str(w))}</li>" for w in prose)
            body.append(f"<h2>{html.escape(sec_title)}</h2><ul>{items}</ul>")
        else:
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
