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


# One colour and marker per model in every figure: the study's three architectures get
# fixed ones, other models the next free colours in first-seen order.
_MODEL_STYLE = {"transformer": ("#1f77b4", "o"), "hybrid": ("#d62728", "s"),
                "recurrent": ("#2ca02c", "^")}
_SPARE_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
_SPARE_MARKERS = ("D", "v", "P", "X", "<", ">")

# Panel titles: what each filter and probe kind is, in words.
TITLES = {
    "all": "All tokens",
    "content_not_repeated": "Content words, not in a repeat",
    "repeated_5gram": "Tokens completing a repeated 5-gram",
    "top10_no_copy": "TOP-10 open-class tags, not in a repeat",
    "bracket": "Closing a bracket after filler",
    "repeat": "Repeating a 32-word span",
    "pronoun": "Choosing the pronoun",
    "entity": "Tracking an entity's container",
}


def title(name: str) -> str:
    """The readable title of a filter or probe kind (the identifier if unknown)."""
    return TITLES.get(name, name.replace("_", " "))


def model_styles(models) -> dict[str, tuple[str, str]]:
    """{model: (colour, marker)}: fixed for transformer / hybrid / recurrent (a label
    like "hybrid@300" takes its architecture's), spare ones for the rest in order."""
    out, spare = {}, 0
    for m in dict.fromkeys(models):
        base = str(m).split("@")[0]
        if base in _MODEL_STYLE:
            out[m] = _MODEL_STYLE[base]
        else:
            out[m] = (_SPARE_COLORS[spare % len(_SPARE_COLORS)],
                      _SPARE_MARKERS[spare % len(_SPARE_MARKERS)])
            spare += 1
    return out


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


def family_bars(fam: pd.DataFrame, a: str, b: str, min_docs: int | None = None
                ) -> bytes | None:
    """Horizontal bars of the gap per category with 95% CIs, coloured by group. Each
    label carries the category's token and document counts; "*" marks a gap significant
    after the correction; flagged categories (fewer than `min_docs` documents) are
    hatched and faded, their labels marked "(few docs)". The legend sits outside the
    axes, so it covers no bar."""
    t = fam.dropna(subset=["mean"])
    if t.empty:
        return None
    t = t.iloc[::-1]
    flagged = t["flagged"].to_numpy(bool) if "flagged" in t else np.zeros(len(t), bool)
    sig = t["significant"].to_numpy(bool) if "significant" in t else np.zeros(len(t), bool)
    docs = t["n_docs"].to_numpy() if "n_docs" in t else np.full(len(t), -1)
    labels = [f"{name}{' *' if s_ else ''}  ({n:,} tok, {d} doc{'s' if d != 1 else ''}"
              f"{'; few docs' if f_ else ''})"
              for name, n, d, s_, f_ in zip(t["name"], t["n"], docs, sig, flagged,
                                             strict=True)]
    y = np.arange(len(t))
    fig, ax = plt.subplots(figsize=(9, 0.24 * len(t) + 1.4))
    colors = [_GROUP_COLORS[g] for g in t["group"]]
    bars = ax.barh(y, t["mean"], xerr=_yerr(t), color=colors,
                   error_kw={"lw": 0.8, "capsize": 2})
    for bar, f_ in zip(bars, flagged, strict=True):
        if f_:
            bar.set_alpha(0.35)
            bar.set_hatch("///")
    ax.set_yticks(y, labels, fontsize=7)
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlabel(f"gap = loss {a} - loss {b} (nats; > 0: {b} better)")
    ax.set_title("Loss gap by category (95% CI, documents resampled; * significant after "
                 "correction)", fontsize=9)
    groups = [g for g in _GROUP_COLORS if g in set(t["group"])]
    handles = [plt.Rectangle((0, 0), 1, 1, color=_GROUP_COLORS[g]) for g in groups]
    names = list(groups)
    if flagged.any():
        handles.append(plt.Rectangle((0, 0), 1, 1, facecolor="#cccccc", hatch="///",
                                     alpha=0.5))
        names.append(f"< {min_docs} documents: flagged" if min_docs else "flagged")
    ax.legend(handles, names, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0.0, frameon=False)
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
    else one point per table. Marginal intervals: whether two models differ is read
    from `paired_curves`, not from these overlapping or not."""
    if fl.empty:
        return None
    filt = list(dict.fromkeys(fl["filter"]))
    styles = model_styles(fl["model"])
    fig, axes = plt.subplots(1, len(filt), figsize=(4 * len(filt), 3.4), squeeze=False)
    for ax, f in zip(axes[0], filt, strict=True):
        sub = fl[fl["filter"] == f]
        for model, g in sub.groupby("model", sort=False):
            color, marker = styles[model]
            if g["step"].notna().all() and len(g) > 1:
                g = g.sort_values("step")
                ax.errorbar(g["step"].astype(float), g["mean"], yerr=_yerr(g),
                            marker=marker, ms=4, capsize=2, color=color, label=model)
                ax.set_xlabel("training step")
            else:
                ax.errorbar(g["table"], g["mean"], yerr=_yerr(g), marker=marker, ls="",
                            capsize=2, color=color, label=model)
        ax.set_title(title(f))
        ax.set_ylabel("mean loss (nats)")
        ax.legend(fontsize=7)
    return _png(fig)


def paired_curves(paired: pd.DataFrame) -> bytes | None:
    """Paired gaps loss_A - loss_B per filter over training: one panel per filter, one
    line per model pair with its 95% band (documents resampled jointly for both models);
    filled markers: significant after the correction. Pairs without steps are drawn as
    points with error bars."""
    if paired is None or paired.empty:
        return None
    filt = list(dict.fromkeys(paired["filter"]))
    fig, axes = plt.subplots(1, len(filt), figsize=(4 * len(filt), 3.6), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    pairs = list(dict.fromkeys(zip(paired["a"], paired["b"], strict=True)))
    for ax, f in zip(axes[0], filt, strict=True):
        sub = paired[paired["filter"] == f]
        stepped = sub[sub["step"].notna()]
        for i, (pa, pb) in enumerate(pairs):
            c = colors[i % len(colors)]
            g = stepped[(stepped["a"] == pa) & (stepped["b"] == pb)].sort_values("step")
            label = f"{pa} - {pb}"
            if len(g):
                x = g["step"].astype(float).to_numpy()
                ax.plot(x, g["gap"], color=c, lw=1.2, label=label)
                ax.fill_between(x, g["lo"].astype(float), g["hi"].astype(float), color=c,
                                alpha=0.2, lw=0)
                sig = g["significant"].to_numpy(bool) if "significant" in g else \
                    np.zeros(len(g), bool)
                ax.scatter(x[sig], g["gap"].to_numpy()[sig], color=c, s=14, zorder=3)
                ax.scatter(x[~sig], g["gap"].to_numpy()[~sig], facecolor="white",
                           edgecolor=c, s=14, zorder=3)
                ax.set_xlabel("training step")
            u = sub[sub["step"].isna() & (sub["a"] == pa) & (sub["b"] == pb)]
            if len(u):
                ax.errorbar([i], u["gap"], yerr=_yerr(u.rename(columns={"gap": "mean"})),
                            color=c, marker="o", ls="", capsize=3,
                            label=None if len(g) else label)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_title(title(f))
        ax.set_ylabel("paired gap A - B (nats; > 0: B better)")
    axes[0][0].legend(fontsize=7)  # the same pairs in every panel
    return _png(fig)


def probe_plot(summary: pd.DataFrame) -> bytes | None:
    """One panel per probe kind: its metric vs distance, a line per model with its 95%
    band (probe items resampled) where the summary has one. Models keep the colours and
    markers of the other figures; lines that coincide stay visible because each model
    has its own marker and dash and later models are drawn thinner on top."""
    if summary is None or summary.empty:
        return None
    kinds = list(dict.fromkeys(summary["probe"]))
    styles = model_styles(summary["model"])
    dashes = ("-", "--", ":", "-.")
    fig, axes = plt.subplots(1, len(kinds), figsize=(4 * len(kinds), 3.4), squeeze=False)
    for ax, k in zip(axes[0], kinds, strict=True):
        sub = summary[summary["probe"] == k]
        for i, (model, g) in enumerate(sub.groupby("model", sort=False)):
            g = g.sort_values("distance")
            color, marker = styles[model]
            n = int(g["n"].min()) if "n" in g else None
            ax.plot(g["distance"], g["value"], marker=marker, ms=5 - i, lw=2.2 - 0.5 * i,
                    ls=dashes[i % len(dashes)], color=color, zorder=3 + i,
                    label=model if n is None else f"{model} (n = {n} per point)")
            if "lo" in g and g["lo"].notna().any():  # probe items resampled
                ax.fill_between(g["distance"], g["lo"], g["hi"], color=color,
                                alpha=0.15, lw=0)
        ax.set_xscale("log", base=2)
        ax.set_title(title(k))
        ax.set_xlabel("distance (filler words)")
        ax.set_ylabel(str(sub["metric"].iloc[0]).replace("_", " "))
        ax.legend(fontsize=7)
    return _png(fig)
