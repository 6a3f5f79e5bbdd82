"""Tag-family mappings and both taggers on a sentence whose tags are known."""

import pytest

from hybrid_jax.analysis import families
from hybrid_jax.analysis.families import brown_families, mask_of, names_of, penn_families
from hybrid_jax.analysis.tagging import TaggingError, check_language

SENTENCE = "There is a very old cat. He was running to the store (sadly)."


def test_brown_tags_with_decorations_and_contractions():
    assert names_of(brown_families("pps+bez")) == ["pronoun", "aux_be"]
    assert names_of(brown_families("fw-jj-tl")) == ["adjective"]
    assert names_of(brown_families("md*")) == ["modal"]
    assert names_of(brown_families("*")) == ["adverb"]
    assert names_of(brown_families("NN$-HL")) == ["noun"]
    assert names_of(brown_families("(")) == ["open"]
    assert names_of(brown_families("zzz")) == ["pos_other"]


def test_penn_tags_follow_brown_conventions():
    assert names_of(penn_families("VBZ", "is")) == ["aux_be"]
    assert names_of(penn_families("VBD", "had")) == ["aux_have"]
    assert names_of(penn_families("VB", "run")) == ["verb"]
    assert names_of(penn_families("IN", "because", "SCONJ")) == ["conjunction"]
    assert names_of(penn_families("IN", "of", "ADP")) == ["preposition"]
    assert names_of(penn_families("RB", "very")) == ["qualifier"]
    assert names_of(penn_families("-LRB-", "(")) == ["open"]


def test_family_groups_and_masks():
    assert families.group_of("existential") == "function"
    assert families.CONTENT_MASK & mask_of(["noun"])
    with pytest.raises(KeyError, match="unknown categories"):
        mask_of(["nounish"])


def _families_of(tagger, text):
    w = tagger.tag([text])[0]
    return {text[s:e]: names_of(int(t)) for s, e, t in zip(w.start, w.end, w.tags,
                                                          strict=True)}


EXPECTED = {"There": ["existential"], "is": ["aux_be"], "a": ["determiner"],
            "very": ["qualifier"], "old": ["adjective"], "cat": ["noun"], "He": ["pronoun"],
            "was": ["aux_be"], "running": ["verb"], "the": ["determiner"],
            "store": ["noun"], "(": ["open"], "sadly": ["adverb"], ")": ["close"],
            ".": ["punctuation"]}


def test_brown_tagger_families(brown_tagger):
    got = _families_of(brown_tagger, SENTENCE)
    assert {k: got[k] for k in EXPECTED} == EXPECTED
    assert got["to"] == ["to"]


def test_spacy_tagger_families(spacy_tagger):
    got = _families_of(spacy_tagger, SENTENCE)
    assert {k: got[k] for k in EXPECTED} == EXPECTED


def test_brown_tagger_offsets_skip_blanked_text(brown_tagger):
    w = brown_tagger.tag(["      cat   dogs"])[0]
    assert w.start.tolist() == [6, 12] and w.end.tolist() == [9, 16]


def test_unsupported_language_is_an_error(brown_tagger):
    with pytest.raises(TaggingError, match="'doc7' has language 'de'"):
        check_language(brown_tagger, "doc7", "de")
