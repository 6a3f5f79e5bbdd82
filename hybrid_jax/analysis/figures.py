"""Matplotlib figures of the report; each function returns PNG bytes (or None when its
data is empty). The Agg backend is forced: reports are made on headless machines."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

_GROUP_COLORS = {"content": "#1b9e77", "function": "#7570b3", "other": "#d95f02",
                 "unknown": "#999999", "python": "#e7298a", "html": "#66a61e",
                 "latex": "#e6ab02"}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _yerr(t: pd.DataFrame, mean: str = "mean") -> np.ndarray:
    lo = (t[mean] - t["lo"]).clip(lower=0).fillna(0)
    hi = (t["hi"] - t[mean]).clip(lower=0).fillna(0)
    return np.vstack([lo.to_numpy(), hi.to_numpy()])


def family_bars(fam: pd.DataFrame, a: str, b: str) -> bytes | None:
    """Horizontal bars of the gap per category with 95% CIs, coloured by group."""
    t = fam.dropna(subset=["mean"])
    if t.empty:
        return None
    t = t.iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.22 * len(t) + 1.2))
    ax.barh(t["name"], t["mean"], xerr=_yerr(t), color=[_GROUP_COLORS[g] for g in t["group"]],
            error_kw={"lw": 0.8, "capsize": 2})
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlabel(f"gap = loss {a} - loss {b} (nats; > 0: {b} better)")
    ax.set_title("Loss gap by category (95% cluster-bootstrap CI)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for g, c in _GROUP_COLORS.items()
               if g in set(t["group"])]
    ax.legend(handles, [g for g in _GROUP_COLORS if g in set(t["group"])], fontsize=7,
              loc="lower right")
    return _png(fig)


def repeat_curve(rep: pd.DataFrame, a: str, b: str) -> bytes | None:
    """Gap vs repeated n-gram length n = 0..16."""
    t = rep.dropna(subset=["mean"])
    if t.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.errorbar(t["n"], t["mean"], yerr=_yerr(t), marker="o", ms=3, capsize=2)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("repeated n-gram length n (0 = token new in its context)")
    ax.set_ylabel(f"gap {a} - {b} (nats)")
    ax.set_title("Gap vs repeat length")
    return _png(fig)


def open_close_bars(oc: pd.DataFrame) -> bytes | None:
    """Open - close gap per domain with CIs."""
    if oc.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.4))
    x = np.arange(len(oc))
    ax.bar(x, oc["diff"], yerr=_yerr(oc, "diff"), color="#386cb0", capsize=3)
    ax.set_xticks(x, oc["domain"], rotation=30, ha="right")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("gap(open) - gap(close) (nats)")
    ax.set_title("Opening vs closing brackets, by domain")
    return _png(fig)


def recall_cliff_plot(copy5: pd.DataFrame, token: pd.DataFrame) -> bytes | None:
    """Gap by distance to the previous occurrence (COPY-5 tokens and all repeats)."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    drawn = False
    for t, label in ((copy5, "repeated 5-gram (distance to its last occurrence)"),
                     (token, "repeated token (distance to its last occurrence)")):
        t = t.dropna(subset=["mean"])
        if t.empty:
            continue
        ax.errorbar(np.arange(len(t)), t["mean"], yerr=_yerr(t), marker="o", ms=3,
                    capsize=2, label=label)
        ax.set_xticks(np.arange(len(t)), t["name"])
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("distance (tokens)")
    ax.set_ylabel("gap (nats)")
    ax.set_title("Recall cliff")
    ax.legend(fontsize=7)
    return _png(fig)


def filtered_curves(fl: pd.DataFrame) -> bytes | None:
    """Filtered losses per model: lines over training steps where tables carry steps,
    else one point per table."""
    if fl.empty:
        return None
    filt = list(dict.fromkeys(fl["filter"]))
    fig, axes = plt.subplots(1, len(filt), figsize=(4 * len(filt), 3.4), squeeze=False)
    for ax, f in zip(axes[0], filt, strict=True):
        sub = fl[fl["filter"] == f]
        for model, g in sub.groupby("model", sort=False):
            if g["step"].notna().all() and len(g) > 1:
                g = g.sort_values("step")
                ax.errorbar(g["step"], g["mean"], yerr=_yerr(g), marker="o", ms=3,
                            capsize=2, label=model)
                ax.set_xlabel("training step")
            else:
                ax.errorbar(g["table"], g["mean"], yerr=_yerr(g), marker="o", ls="",
                            capsize=2, label=model)
        ax.set_title(f)
        ax.set_ylabel("mean loss (nats)")
        ax.legend(fontsize=7)
    return _png(fig)


def probe_plot(summary: pd.DataFrame) -> bytes | None:
    """One panel per probe kind: its metric vs distance, a line per model."""
    if summary is None or summary.empty:
        return None
    kinds = list(dict.fromkeys(summary["probe"]))
    fig, axes = plt.subplots(1, len(kinds), figsize=(4 * len(kinds), 3.4), squeeze=False)
    for ax, k in zip(axes[0], kinds, strict=True):
        sub = summary[summary["probe"] == k]
        for model, g in sub.groupby("model", sort=False):
            g = g.sort_values("distance")
            ax.plot(g["distance"], g["value"], marker="o", ms=3, label=model)
        ax.set_xscale("log", base=2)
        ax.set_title(k)
        ax.set_xlabel("distance (filler words)")
        ax.set_ylabel(sub["metric"].iloc[0])
        ax.legend(fontsize=7)
    return _png(fig)
