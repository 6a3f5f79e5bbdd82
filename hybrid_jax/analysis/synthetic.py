"""Synthetic per-token tables: a deterministic word-piece tokenizer, packing into
windows, and losses with a planted gap. For tests, the throughput benchmark and the
`analyze --synthetic` demo; never for results.

The tokenizer imitates a BPE tokenizer's pre-tokenisation (a word keeps its leading
space, digits and punctuation are separate) and splits long words into pieces of at
most `max_piece` characters, so tables have subwords. No piece crosses a word boundary
of the taggers' word splitter, which makes planted per-category effects exactly
recoverable: a token never inherits the families of two words.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from hybrid_jax.analysis.table import Document

# A word's letters (with one optional leading space), digit runs, one other character,
# or a run of whitespace.
_PIECE_RE = re.compile(r" ?[^\W\d_]+| ?\d{1,3}|\s+|[^\s]", re.UNICODE)


class PieceTokenizer:
    """Word pieces with ids assigned in order of first appearance (deterministic for a
    fixed document order). Not a real tokenizer: it exists to make tables."""

    def __init__(self, max_piece: int = 6):
        self.max_piece = max_piece
        self.vocab: dict[str, int] = {}

    def pieces(self, text: str) -> list[tuple[int, int]]:
        """(start, end) char spans of the pieces of `text`, covering it entirely."""
        spans = []
        for m in _PIECE_RE.finditer(text):
            s, e = m.span()
            if text[s].isalpha() or (text[s] == " " and e - s > 1 and text[s + 1].isalpha()):
                # Split long words: the first piece keeps the leading space.
                while e - s > self.max_piece:
                    spans.append((s, s + self.max_piece))
                    s += self.max_piece
            spans.append((s, e))
        return spans

    def encode(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(token_ids, char_start, char_end), int64 [n] each."""
        spans = self.pieces(text)
        ids = np.empty(len(spans), np.int64)
        for i, (s, e) in enumerate(spans):
            ids[i] = self.vocab.setdefault(text[s:e], len(self.vocab))
        se = np.asarray(spans, np.int64).reshape(-1, 2)
        return ids, se[:, 0], se[:, 1]


def pack_table(docs: list[Document], tokenizer: PieceTokenizer | None = None, *,
               window: int = 512) -> pd.DataFrame:
    """Tokenizes documents and packs them back to back into windows of `window` tokens,
    like the scorer's eval pack. Rows are the scored tokens: every token but the first of
    each window (it has no prefix). Columns: the required ones minus `loss`."""
    tok = tokenizer or PieceTokenizer()
    cols: dict[str, list[np.ndarray]] = {k: [] for k in
                                         ("doc", "token_id", "char_start", "char_end")}
    for d_i, d in enumerate(docs):
        ids, s, e = tok.encode(d.text)
        cols["doc"].append(np.full(ids.size, d_i))
        cols["token_id"].append(ids)
        cols["char_start"].append(s)
        cols["char_end"].append(e)
    flat = {k: np.concatenate(v) for k, v in cols.items()}
    idx = np.arange(flat["doc"].size)
    frame = pd.DataFrame({
        "doc_id": np.asarray([d.id for d in docs], dtype=object)[flat["doc"]],
        "domain": np.asarray([d.domain for d in docs], dtype=object)[flat["doc"]],
        "window": idx // window,
        "position": idx % window,
        "token_id": flat["token_id"],
        "char_start": flat["char_start"],
        "char_end": flat["char_end"],
    })
    return frame[frame["position"] > 0].reset_index(drop=True)


def base_losses(n: int, seed: int = 0) -> np.ndarray:
    """Plausible per-token losses (nats, float64 [n]): 0.5 + Gamma(2, 1), mean 2.5.

    The floor of 0.5 nats lets a planted improvement of up to 0.5 nats keep every loss
    non-negative."""
    rng = np.random.default_rng(seed)
    return 0.5 + rng.gamma(2.0, 1.0, n)


def with_losses(pack: pd.DataFrame, loss: np.ndarray) -> pd.DataFrame:
    """A copy of the packed rows with a `loss` column (nats)."""
    out = pack.copy()
    out["loss"] = np.asarray(loss, np.float64)
    return out


def plant_gap(loss_a: np.ndarray, where: np.ndarray, amount: float) -> np.ndarray:
    """Model B's losses: A's minus `amount` nats on the tokens `where` (bool [n]), so
    the gap A - B is `amount` there and exactly 0 elsewhere."""
    out = np.asarray(loss_a, np.float64).copy()
    out[np.asarray(where, bool)] -= amount
    if (out < 0).any():
        raise ValueError(f"planting {amount} nats made a loss negative; use a smaller amount")
    return out


def sample_documents(docs: dict[str, Document], per_domain: int, *, max_chars: int | None = None,
                     seed: int = 0) -> list[Document]:
    """`per_domain` documents of every domain (seeded choice, sorted by id), each cut to
    `max_chars` characters when given."""
    rng = np.random.default_rng(seed)
    by_domain: dict[str, list[Document]] = {}
    for d in docs.values():
        by_domain.setdefault(d.domain, []).append(d)
    out = []
    for domain in sorted(by_domain):
        group = sorted(by_domain[domain], key=lambda d: d.id)
        pick = rng.choice(len(group), size=min(per_domain, len(group)), replace=False)
        for i in sorted(pick):
            d = group[i]
            text = d.text if max_chars is None else d.text[:max_chars]
            out.append(Document(id=d.id, domain=d.domain, text=text, lang=d.lang))
    return out
