"""In-loop evaluation: held-out loss and the study's filtered losses.

An `EvalSet` is built once per run from held-out documents: they are packed into fixed
windows (every token after the first scored exactly once), and each target token gets
the masks of the filters defined in `hybrid_jax.analysis.filters` (the one definition
the analysis uses too):

    all                   every scored target
    content_not_repeated  content words (tagger families) not seen before in the window
    repeated_5gram        targets that complete a 5-gram seen earlier in the window

Content words need a part-of-speech tagger (Brown-trained NLTK or spaCy). When none is
available the content filter is left out and the log says so; the others need none.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

import numpy as np

from hybrid_jax.analysis.filters import filter_masks_batch, filtered_counts, filtered_means
from hybrid_jax.data.batch import Batch
from hybrid_jax.data.packing import pack_documents
from hybrid_jax.data.sources import Document
from hybrid_jax.data.tokenizers import Tokenizer

log = logging.getLogger("hybrid_jax.train")

ContentFn = Callable[[Sequence[Document], Sequence[tuple[np.ndarray, np.ndarray]]],
                     list[np.ndarray]]


@dataclasses.dataclass
class EvalSet:
    tokens: np.ndarray  # [r, t + 1]
    segment_ids: np.ndarray  # [r, t + 1]
    masks: dict[str, np.ndarray]  # filter name -> bool [r, t] over targets

    @property
    def num_targets(self) -> int:
        return int(self.masks["all"].sum())


def tagger_content_fn(kind: str = "auto") -> ContentFn | None:
    """Content-word flags from the analysis taggers, or None if no tagger can load."""
    try:
        from hybrid_jax.analysis.align import align_words
        from hybrid_jax.analysis.filters import content_flags
        from hybrid_jax.analysis.tagging import make_tagger

        tagger = make_tagger(kind)
    except Exception as e:  # missing spaCy model, NLTK, Brown corpus ...
        log.warning("no part-of-speech tagger (%s): the content filter is left out", e)
        return None

    def content(docs, offsets):
        tagged = tagger.tag([d.text for d in docs])
        out = []
        for words, (start, end) in zip(tagged, offsets, strict=True):
            aligned = align_words(start, end, words.start, words.end, words.tags)
            out.append(content_flags(aligned.tags))
        return out

    return content


def build_eval_set(
    docs: Sequence[Document],
    tokenizer: Tokenizer,
    seq_len: int,
    *,
    content_fn: ContentFn | None = None,
    max_windows: int | None = None,
) -> EvalSet:
    """Pack `docs` into windows of `seq_len` targets and attach the filter masks.

    `max_windows` keeps that many windows, evenly spaced over the packed documents.
    """
    if not docs:
        raise ValueError("no held-out documents to evaluate on")
    encoded = [tokenizer.encode_with_offsets(d.text) for d in docs]
    keep = [i for i, (ids, _, _) in enumerate(encoded) if ids.size]
    docs = [docs[i] for i in keep]
    encoded = [encoded[i] for i in keep]
    packed = pack_documents([ids for ids, _, _ in encoded], seq_len, tokenizer.eos_id)
    if max_windows is not None and packed.tokens.shape[0] > max_windows:
        # Evenly spaced windows, so a capped eval set still spans every document.
        keep = np.unique(np.linspace(0, packed.tokens.shape[0] - 1, max_windows).round()
                         .astype(int))
        packed = type(packed)(*(x[keep] for x in packed))
    targets = packed.tokens[:, 1:]
    batch = Batch.from_rows(packed.tokens, packed.segment_ids)
    if content_fn is not None:
        flags = content_fn(docs, [(s, e) for _, s, e in encoded])
        # EOS and padding are never content words.
        flat = [np.append(f.astype(bool), False) for f in flags]
        doc, idx = packed.doc_index[:, 1:], packed.token_index[:, 1:]
        content = np.zeros(targets.shape, bool)
        real = doc >= 0
        content[real] = [flat[d][i] for d, i in zip(doc[real], idx[real])]
    else:
        content = np.zeros(targets.shape, bool)
    masks = filter_masks_batch(targets, packed.segment_ids[:, 1:], content,
                               valid_bt=np.asarray(batch.loss_mask))
    if content_fn is None:
        del masks["content_not_repeated"]
    log.info("eval set: %d windows, tokens per filter %s", packed.tokens.shape[0],
             filtered_counts(masks))
    return EvalSet(packed.tokens, packed.segment_ids, masks)


def evaluate(
    nll_fn: Callable[[Batch], np.ndarray], eval_set: EvalSet, *, batch_size: int
) -> dict[str, float]:
    """Mean loss (nats) per filter: {"loss": all, "content_not_repeated": .., ...}.

    `nll_fn(batch) -> [b, t]` per-token losses. The last batch is padded with empty
    rows (segment id 0, no targets) so every batch has one shape: one compilation.
    """
    r = eval_set.tokens.shape[0]
    losses = []
    for start in range(0, r, batch_size):
        tokens = eval_set.tokens[start : start + batch_size]
        segs = eval_set.segment_ids[start : start + batch_size]
        n = tokens.shape[0]
        if n < batch_size:
            tokens = np.pad(tokens, ((0, batch_size - n), (0, 0)))
            segs = np.pad(segs, ((0, batch_size - n), (0, 0)))
        losses.append(np.asarray(nll_fn(Batch.from_rows(tokens, segs)))[:n])
    nll = np.concatenate(losses)
    means = filtered_means(nll, eval_set.masks)
    means["loss"] = means.pop("all")
    return means
