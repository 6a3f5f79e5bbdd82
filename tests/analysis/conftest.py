"""Shared fixtures: the corpus and NLTK data under ../shared/data beside the repository."""

from __future__ import annotations

import pathlib

import pytest

from hybrid_jax.analysis.table import read_documents

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
CORPUS = SHARED_DATA / "corpus"
BROWN_ZIP = SHARED_DATA / "nltk" / "brown.zip"


@pytest.fixture(scope="session")
def corpus_docs():
    files = sorted(CORPUS.glob("*.jsonl"))
    if not files:
        pytest.fail(f"no corpus at {CORPUS} (../shared/data/corpus beside the checkout)")
    return read_documents(files)


@pytest.fixture(scope="session")
def brown_tagger():
    if not BROWN_ZIP.is_file():
        pytest.fail(f"Brown corpus not found at {BROWN_ZIP} (../shared/data beside the checkout)")
    from hybrid_jax.analysis.tagging import BrownTagger

    return BrownTagger.from_zip(BROWN_ZIP)


@pytest.fixture(scope="session")
def spacy_tagger():
    from hybrid_jax.analysis.tagging import SpacyTagger, TaggingError

    try:
        return SpacyTagger()
    except TaggingError as e:
        pytest.fail(f"spaCy English model not installed (the `analysis` extra): {e}")
