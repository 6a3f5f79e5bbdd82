"""The per-token feature table: everything the gap analysis conditions on.

One row per row of the (aligned) score tables, same order. Columns added to the keys
(`doc_id, domain, window, position, token_id, char_start, char_end`):

    syntax       prose | python | html | latex (from the domain, `syntax.SYNTAX_OF_DOMAIN`)
    tags         int64 category mask: POS families of the overlapped words (multi-tag)
                 OR code/markup categories (`families.CATEGORIES`)
    label        the tagger's raw tag(s) of the overlapped words, "+"-joined ("" if none)
    n_words      words the token overlaps
    subword      the token's word is split over several tokens
    continues    the token is not the first token of its word
    bracket      int64 bracket bits (`syntax.OPEN_*`, `syntax.CLOSE_*`)
    is_open, is_close   opening / closing bracket of any kind (char, HTML tag, LaTeX env)
    rep          longest repeated n-gram (<= 16) the token completes in its context
    prev_dist    tokens since the same token id last occurred in the context (-1: new)
    copy_dist    tokens since the 5-gram ending here last occurred (-1: not a repeat)
    ref_count    the token's count in the reference count table
    log_freq     log((ref_count + 1) / (total + 1)), natural log of relative frequency
    log_position log(1 + position)

Difficulty (the mean loss of the compared models) needs losses, so `gaps.py` adds it.
"""

from __future__ import annotations

import contextlib
import pathlib

import numpy as np
import pandas as pd

from hybrid_jax.analysis import syntax as syn
from hybrid_jax.analysis.align import align_words, overlap_or
from hybrid_jax.analysis.repeats import MAX_N, repeat_stats
from hybrid_jax.analysis.table import Document, TableError
from hybrid_jax.analysis.tagging import Tagger, check_language
from hybrid_jax.errors import UserError

KEYS = ("doc_id", "domain", "window", "position", "token_id", "char_start", "char_end")


def context_ids(frame: pd.DataFrame) -> np.ndarray:
    """int64 [n]: one id per (window, doc_id) block of rows: what a token's model saw.

    Rows must be in (window, position) order; a document that stops and restarts inside
    one window would be one context, which packing never produces."""
    w = frame["window"].to_numpy()
    d = pd.factorize(frame["doc_id"])[0]
    new = np.ones(len(frame), bool)
    new[1:] = (w[1:] != w[:-1]) | (d[1:] != d[:-1])
    return np.cumsum(new) - 1


def load_ref_counts(path: str | pathlib.Path) -> np.ndarray:
    """Reference token counts as a dense int64 array indexed by token id, from `.npy`
    (the array itself) or parquet/CSV with columns `token_id`, `count`."""
    path = pathlib.Path(path)
    if path.suffix == ".npy":
        return np.asarray(np.load(path), np.int64)
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    for col in ("token_id", "count"):
        if col not in frame.columns:
            raise TableError(f"{path}: reference counts need column {col!r}")
    out = np.zeros(int(frame["token_id"].max()) + 1, np.int64)
    out[frame["token_id"].to_numpy()] = frame["count"].to_numpy()
    return out


@contextlib.contextmanager
def naming_document(doc_id: str, what: str):
    """Re-raises any exception of the block as a one-line TableError naming the
    document (the cause stays chained for a traceback), so that one bad document among
    thousands is found at once. An expected error that already names it passes as is."""
    try:
        yield
    except UserError as e:
        if repr(doc_id) in str(e):
            raise
        raise TableError(f"document {doc_id!r}: {what} failed: {e}") from e
    except Exception as e:
        raise TableError(f"document {doc_id!r}: {what} failed: {type(e).__name__}: {e}"
                         ) from e


def tag_documents(docs: list[Document], tagger: Tagger, syntax_of: dict[str, str]
                  ) -> tuple[dict[str, syn.Structure], dict[str, object]]:
    """Structure and word tags of every document (one batched tagger call; when it
    fails, the documents are tagged one by one to name the one at fault)."""
    structures, texts = {}, []
    for d in docs:
        check_language(tagger, d.id, d.lang)
        with naming_document(d.id, "scanning its structure"):
            st = syn.scan(d.text, syntax_of.get(d.domain, "prose"))
            texts.append(syn.prose_text(d.text, st.prose))
        structures[d.id] = st
    try:
        tagged = tagger.tag(texts)
    except Exception:
        for d, t in zip(docs, texts, strict=True):
            with naming_document(d.id, f"tagging ({tagger.name})"):
                tagger.tag([t])
        raise  # the batch failed but no single document does
    if len(tagged) != len(docs):
        raise TableError(f"the {tagger.name} tagger returned {len(tagged)} results for "
                         f"{len(docs)} documents")
    return structures, {d.id: w for d, w in zip(docs, tagged, strict=True)}


def build_features(frame: pd.DataFrame, docs: dict[str, Document], tagger: Tagger, *,
                   ref_counts: np.ndarray | None = None, max_n: int = MAX_N,
                   syntax_of: dict[str, str] | None = None) -> tuple[pd.DataFrame, dict]:
    """The feature table for the rows of `frame` (a validated score table; its keys are
    used, its losses are not). Returns (features, extras) where extras holds
    `vocab`: {family: set of lower-cased word types} and `warnings`."""
    syntax_of = {**syn.SYNTAX_OF_DOMAIN, **(syntax_of or {})}
    n = len(frame)
    out = frame[list(KEYS)].copy()
    doc_codes, doc_names = pd.factorize(frame["doc_id"])
    used = [docs[d] for d in doc_names]
    structures, words = tag_documents(used, tagger, syntax_of)

    tags = np.zeros(n, np.int64)
    bracket = np.zeros(n, np.int64)
    n_words = np.zeros(n, np.int64)
    subword = np.zeros(n, bool)
    continues = np.zeros(n, bool)
    label = np.full(n, "", dtype=object)
    vocab: dict[int, set[str]] = {}
    warnings: list[str] = []
    cs = frame["char_start"].to_numpy()
    ce = frame["char_end"].to_numpy()
    order = np.argsort(doc_codes, kind="stable")
    bounds = np.searchsorted(doc_codes[order], np.arange(len(doc_names) + 1))
    for k, doc in enumerate(used):
        with naming_document(doc.id, "building its token features"):
            _doc_features(doc, order[bounds[k]:bounds[k + 1]], structures[doc.id],
                          words[doc.id], cs, ce, tags, bracket, n_words, subword,
                          continues, label, vocab)
        warnings += [f"{doc.id}: {w}" for w in structures[doc.id].warnings]

    out["syntax"] = frame["domain"].map(lambda d: syntax_of.get(d, "prose")).to_numpy()
    out["tags"] = tags
    out["label"] = label
    out["n_words"] = n_words
    out["subword"] = subword
    out["continues"] = continues
    out["bracket"] = bracket
    out["is_open"] = (bracket & syn.OPEN_ANY) != 0
    out["is_close"] = (bracket & syn.CLOSE_ANY) != 0

    ctx = context_ids(frame)
    rs = repeat_stats(frame["token_id"].to_numpy(), ctx, positions=frame["position"].to_numpy(),
                      max_n=max_n, dist_ns=(1, 5))
    out["rep"] = rs.rep
    out["prev_dist"] = rs.dist[1]
    out["copy_dist"] = rs.dist[5] if 5 in rs.dist else np.full(n, -1, np.int64)

    tok = frame["token_id"].to_numpy()
    if ref_counts is None:
        ref_counts = np.bincount(tok)
    counts = np.zeros(n, np.int64)
    inside = tok < ref_counts.size
    counts[inside] = ref_counts[tok[inside]]
    out["ref_count"] = counts
    out["log_freq"] = np.log((counts + 1.0) / (float(ref_counts.sum()) + 1.0))
    out["log_position"] = np.log1p(frame["position"].to_numpy().astype(np.float64))
    return out, {"vocab": _family_vocab(vocab), "warnings": warnings}


def _doc_features(doc: Document, rows: np.ndarray, st: syn.Structure, wt, cs: np.ndarray,
                  ce: np.ndarray, tags: np.ndarray, bracket: np.ndarray, n_words: np.ndarray,
                  subword: np.ndarray, continues: np.ndarray, label: np.ndarray,
                  vocab: dict[int, set[str]]) -> None:
    """Fills the feature arrays at one document's `rows` (in place)."""
    s, e = cs[rows], ce[rows]
    al = align_words(s, e, wt.start, wt.end, wt.tags)
    tags[rows] = al.tags | overlap_or(s, e, st.cat_start, st.cat_end, st.cat_bits)
    bracket[rows] = overlap_or(s, e, st.br_start, st.br_end, st.br_bits)
    n_words[rows], subword[rows], continues[rows] = al.n_words, al.subword, al.continues
    has = al.word >= 0
    labels = np.asarray(wt.labels, dtype=object)
    label[rows[has]] = labels[al.word[has]] if labels.size else ""
    multi = rows[al.n_words > 1]
    if multi.size:  # tokens spanning several words: every word's tag, "+"-joined
        for r in multi:
            w0 = np.searchsorted(wt.end, cs[r], side="right")
            w1 = np.searchsorted(wt.start, ce[r], side="left")
            label[r] = "+".join(wt.labels[w0:w1])
    for w_s, w_e, w_t in zip(wt.start.tolist(), wt.end.tolist(), wt.tags.tolist(),
                             strict=True):
        vocab.setdefault(w_t, set()).add(doc.text[w_s:w_e].lower())


def _family_vocab(by_mask: dict[int, set[str]]) -> dict[str, int]:
    """{family: number of distinct lower-cased word types tagged with it} (|V_tau|)."""
    from hybrid_jax.analysis.families import POS_FAMILIES, names_of

    sets: dict[str, set[str]] = {f: set() for f in POS_FAMILIES}
    for mask, words in by_mask.items():
        for name in names_of(mask):
            if name in sets:
                sets[name] |= words
    return {f: len(s) for f, s in sets.items()}
