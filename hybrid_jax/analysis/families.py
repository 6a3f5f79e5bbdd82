"""The study's token categories, as bits of one int64 mask per token.

Part-of-speech *families* follow the study's Appendix A Table 1 (as encoded by the
open replication, `../shared/reference/token_analysis_method.md` §3):

    content   noun verb adjective adverb interjection qualifier
    function  existential pronoun determiner preposition conjunction
              aux_be aux_have aux_do modal to wh
    other     numeral particle punctuation open close

Code and markup get their own categories (`py_*`, `html_*`, `tex_*`), assigned by
`syntax.py`. A token may carry several categories at once (multi-tag attribution: a
token overlapping two words inherits both words' families), so categories are bits of
an int64, not one label. Bit numbers are fixed here and are part of the on-disk format
of the feature table, so new categories are appended, never inserted.

This module also maps the two tagsets the taggers emit (Brown, Penn Treebank) to the
families; the mapping decisions that the study leaves open are written next to them.
"""

from __future__ import annotations

import numpy as np

CONTENT = ("noun", "verb", "adjective", "adverb", "interjection", "qualifier")
FUNCTION = ("existential", "pronoun", "determiner", "preposition", "conjunction",
            "aux_be", "aux_have", "aux_do", "modal", "to", "wh")
OTHER = ("numeral", "particle", "punctuation", "open", "close")
# Words the tagger could not place in any family (foreign words, symbols, Brown "nil").
UNKNOWN = ("pos_other",)
POS_FAMILIES = CONTENT + FUNCTION + OTHER

PYTHON = ("py_keyword", "py_name", "py_number", "py_string", "py_comment", "py_operator",
          "py_layout")
HTML = ("html_tag", "html_attr", "html_value", "html_text", "html_comment", "html_punct",
        "html_entity", "html_script")
LATEX = ("tex_command", "tex_env", "tex_math", "tex_text", "tex_comment", "tex_punct")
STRUCTURE = PYTHON + HTML + LATEX

CATEGORIES: tuple[str, ...] = POS_FAMILIES + UNKNOWN + STRUCTURE
"""Every category, in bit order: `CATEGORIES[i]` is bit `1 << i`."""
assert len(CATEGORIES) <= 63, "categories must fit the positive bits of an int64"

BIT: dict[str, int] = {name: 1 << i for i, name in enumerate(CATEGORIES)}


def mask_of(names: tuple[str, ...] | list[str]) -> int:
    """The OR of the bits of `names` (unknown names raise KeyError naming them)."""
    unknown = [n for n in names if n not in BIT]
    if unknown:
        raise KeyError(f"unknown categories {unknown}; known: {list(CATEGORIES)}")
    out = 0
    for n in names:
        out |= BIT[n]
    return out


CONTENT_MASK = mask_of(CONTENT)
FUNCTION_MASK = mask_of(FUNCTION)
POS_MASK = mask_of(POS_FAMILIES + UNKNOWN)
STRUCTURE_MASK = mask_of(STRUCTURE)


def group_of(name: str) -> str:
    """'content' | 'function' | 'other' | 'unknown' | 'python' | 'html' | 'latex'."""
    for group, names in (("content", CONTENT), ("function", FUNCTION), ("other", OTHER),
                         ("unknown", UNKNOWN), ("python", PYTHON), ("html", HTML),
                         ("latex", LATEX)):
        if name in names:
            return group
    raise KeyError(f"unknown category {name!r}")


def has(tags: np.ndarray, name: str) -> np.ndarray:
    """Boolean [n]: which int64 masks in `tags` carry category `name`."""
    return (np.asarray(tags, np.int64) & BIT[name]) != 0


def names_of(mask: int) -> list[str]:
    """Category names set in one int64 mask, in bit order."""
    return [n for n in CATEGORIES if mask & BIT[n]]


# --- Brown tagset -> families -------------------------------------------------------
# Brown tags carry decorations that do not change the word class: "-tl" (title), "-hl"
# (headline), "-nc" (cited word), a "fw-" prefix (foreign word: classed by what follows),
# a trailing "*" (negation: "isn't" = bez*), and "+" joins contractions ("he's" =
# pps+bez), which give the word both families. Forms of be/have/do are always their own
# tags in Brown (be*, hv*, do*), main verb or not, and so always aux families here.
_BROWN_BASE: dict[str, str] = {}
for _fam, _tags in {
    "noun": "nn nns nn$ nns$ np np$ nps nps$ nr nr$ nrs",
    "verb": "vb vbd vbg vbn vbz",
    "adjective": "jj jjr jjs jjt",
    # "*" is the negator "not"/"n't"; Penn tags it RB, so both tagsets agree.
    "adverb": "rb rbr rbt rn rb$ *",
    "interjection": "uh",
    "qualifier": "ql qlp",
    "existential": "ex",
    "pronoun": "pp$ pp$$ ppl ppls ppo pps ppss pn pn$",
    "determiner": "at dt dti dts dtx dt$ abn abx abl ap ap$",
    "preposition": "in",
    "conjunction": "cc cs",
    "aux_be": "be bed bedz beg bem ben ber bez",
    "aux_have": "hv hvd hvg hvn hvz",
    "aux_do": "do dod doz",
    "modal": "md",
    "to": "to",
    "wh": "wdt wp$ wpo wps wql wrb",
    "numeral": "cd od cd$",
    "particle": "rp",
    "punctuation": ". , : ; -- ' '' `` ?",
    "open": "(",
    "close": ")",
    "pos_other": "nil",
}.items():
    for _t in _tags.split():
        _BROWN_BASE[_t] = _fam


def _brown_base(part: str) -> str:
    """One Brown tag (no "+"), lower case, its decorations removed."""
    part = part.lower()
    if part.startswith("fw-"):
        part = part[3:]
    for suffix in ("-tl", "-hl", "-nc"):
        part = part.replace(suffix, "")
    if part != "*" and part.endswith("*"):
        part = part[:-1]
    return part


def brown_families(tag: str) -> int:
    """Family mask of one Brown tag (lower or upper case), decorations removed.

    Tags outside the map (symbols, unseen tags) give `pos_other`, never an error: the
    tagger is trained on Brown, so only its own tags reach here.
    """
    out = 0
    for part in tag.split("+"):
        out |= BIT[_BROWN_BASE.get(_brown_base(part), "pos_other")]
    return out


# --- Penn Treebank (spaCy `tag_`) -> families ---------------------------------------
_PENN_BASE: dict[str, str] = {}
for _fam, _tags in {
    "noun": "NN NNS NNP NNPS POS",  # POS: Brown folds the possessive into the noun (nn$)
    "verb": "VB VBD VBG VBN VBP VBZ",
    "adjective": "JJ JJR JJS",
    "adverb": "RB RBR RBS",
    "interjection": "UH",
    "existential": "EX",
    "pronoun": "PRP PRP$",
    "determiner": "DT PDT",
    "preposition": "IN",
    "conjunction": "CC",
    "modal": "MD",
    "to": "TO",
    "wh": "WDT WP WP$ WRB",
    "numeral": "CD",
    "particle": "RP",
    "punctuation": ". , : `` '' HYPH NFP",
    "open": "-LRB-",
    "close": "-RRB-",
    "pos_other": "FW SYM $ # LS XX ADD AFX _SP",
}.items():
    for _t in _tags.split():
        _PENN_BASE[_t] = _fam

# Brown gives be/have/do their own tags whatever their role; Penn tags them as verbs.
# Matching Brown by word form keeps the two taggers' families comparable.
_BE = frozenset("be am is are was were been being 's 'm 're ’s ’m ’re".split())
_HAVE = frozenset("have has had having 've ’ve".split())
_DO = frozenset("do does did doing done".split())
# Brown's qualifiers (QL) are adverbs in Penn; these are the frequent Brown QL words.
_QUALIFIERS = frozenset(
    "very too quite rather somewhat fairly extremely pretty so enough less least more "
    "most real awfully".split())


def penn_families(tag: str, word: str, pos: str = "") -> int:
    """Family mask of a Penn Treebank tag for `word` (spaCy's `tag_`, `pos_`).

    Penn's IN covers prepositions and subordinating conjunctions; Brown splits them
    (in / cs), so `pos == "SCONJ"` (spaCy's universal tag) maps IN to conjunction.
    """
    w = word.lower()
    if tag.startswith("VB"):
        if w in _BE:
            return BIT["aux_be"]
        if w in _HAVE:
            return BIT["aux_have"]
        if w in _DO:
            return BIT["aux_do"]
        return BIT["verb"]
    if tag == "IN" and pos == "SCONJ":
        return BIT["conjunction"]
    if tag.startswith("RB") and w in _QUALIFIERS:
        return BIT["qualifier"]
    if tag == "-LRB-":
        return BIT["open"] if w in "([{<" else BIT["punctuation"]
    if tag == "-RRB-":
        return BIT["close"] if w in ")]}>" else BIT["punctuation"]
    return BIT[_PENN_BASE.get(tag, "pos_other")]


def is_open_class(name: str) -> bool:
    """Content families are the open classes of the study's open/closed contrast."""
    return name in CONTENT


# --- raw tags -----------------------------------------------------------------------
# The tag tables and TOP-10∩NO-COPY rank the tagger's own tags, one level below the
# families (the study's "Brown POS families": NN, NNS, NP, JJ, RB, VBD, ...). A tag is
# named in upper case with Brown's decorations removed ("nn-tl", "fw-nn" -> NN: the same
# word class, as for the families); Penn tags keep their names. No name means different
# families in the two tagsets, so one table of names serves both.


def tag_name(tag: str) -> str:
    """The name of one raw tag (one "+"-part of a label): Penn tags as they are, Brown
    tags upper-cased without decorations (nn-tl -> NN, bez* -> BEZ, * stays *)."""
    if tag in _PENN_BASE:
        return tag
    return _brown_base(tag).upper()


def tag_family(name: str) -> str | None:
    """The family of a tag name (`tag_name`) by the tag alone, None for a tag neither
    tagset has. (Penn's family also depends on the word, `penn_families`: spaCy's VBZ
    "is" is aux_be; callers that count tokens intersect with the token's families.)"""
    if name in _PENN_BASE:
        return _PENN_BASE[name]
    return _BROWN_BASE.get(name.lower())


def open_class_tags() -> list[str]:
    """Every tag name whose family is a content family, Brown's then Penn's."""
    names = [t.upper() for t, f in _BROWN_BASE.items() if f in CONTENT]
    return names + [t for t, f in _PENN_BASE.items() if f in CONTENT and t not in names]
