"""Structure of code and markup: categories of character spans, brackets, and which
parts are natural language (to be POS-tagged).

    python  the standard library's `tokenize`: keywords, names, numbers, strings,
            comments, operators, layout; brackets are the `([{` / `)]}` operators;
            comments and docstrings are prose.
    html    a scanner for tags, attributes, values, comments, entities and
            script/style bodies; an opening tag `<name` vs a closing `</name>` (void
            elements such as `<br>` and self-closing tags are neither); text is prose.
    latex   commands, `\\begin{env}` / `\\end{env}`, math, comments, grouping
            punctuation; `\\begin` opens and `\\end` closes; text is prose.
    prose   everything is prose; brackets are the characters `([{` and `)]}`.

Output spans are sorted and non-overlapping, so `align.overlap_or` can give every token
the OR of the spans it touches.
"""

from __future__ import annotations

import dataclasses
import keyword
import re
import tokenize

import numpy as np

from hybrid_jax.analysis.families import BIT

# Bracket kinds, as bits of one int64 per span.
OPEN_CHAR, CLOSE_CHAR, OPEN_TAG, CLOSE_TAG, OPEN_ENV, CLOSE_ENV = (1 << i for i in range(6))
OPEN_ANY = OPEN_CHAR | OPEN_TAG | OPEN_ENV
CLOSE_ANY = CLOSE_CHAR | CLOSE_TAG | CLOSE_ENV
BRACKET_KINDS = {"char": (OPEN_CHAR, CLOSE_CHAR), "html": (OPEN_TAG, CLOSE_TAG),
                 "latex": (OPEN_ENV, CLOSE_ENV)}

SYNTAX_OF_DOMAIN = {"python": "python", "html": "html", "latex": "latex", "arxiv": "latex"}
SYNTAXES = ("prose", "python", "html", "latex")
_OPEN_CHARS, _CLOSE_CHARS = "([{", ")]}"


@dataclasses.dataclass
class Structure:
    """Labelled character spans of one document.

    cat_start, cat_end, cat_bits: structure category spans (int64 [k]; bits of
      `families.BIT`), sorted and non-overlapping.
    br_start, br_end, br_bits: bracket spans (int64 [m]; OPEN_* / CLOSE_* bits).
    prose: (start, end) spans of natural-language text, sorted.
    warnings: what could not be parsed (e.g. a Python file that does not tokenize).
    """

    cat_start: np.ndarray
    cat_end: np.ndarray
    cat_bits: np.ndarray
    br_start: np.ndarray
    br_end: np.ndarray
    br_bits: np.ndarray
    prose: list[tuple[int, int]]
    warnings: list[str]


class _Spans:
    """Collects labelled spans, then sorts them."""

    def __init__(self):
        self.cat: list[tuple[int, int, int]] = []
        self.br: list[tuple[int, int, int]] = []
        self.prose: list[tuple[int, int]] = []
        self.warnings: list[str] = []

    def add(self, s: int, e: int, name: str) -> None:
        if e > s:
            self.cat.append((s, e, BIT[name]))

    def bracket(self, s: int, e: int, bits: int) -> None:
        if e > s:
            self.br.append((s, e, bits))

    def chars(self, text: str, offset: int = 0) -> None:
        """Bracket characters of a prose or string piece."""
        for m in _BRACKET_CHAR_RE.finditer(text):
            s = offset + m.start()
            self.bracket(s, s + 1, OPEN_CHAR if m.group() in _OPEN_CHARS else CLOSE_CHAR)

    def done(self) -> Structure:
        def arrays(rows):
            a = np.asarray(sorted(rows), np.int64).reshape(-1, 3)
            return a[:, 0].copy(), a[:, 1].copy(), a[:, 2].copy()

        cs, ce, cb = arrays(self.cat)
        bs, be, bb = arrays(self.br)
        return Structure(cs, ce, cb, bs, be, bb, sorted(self.prose), self.warnings)


_BRACKET_CHAR_RE = re.compile(r"[()\[\]{}]")


def scan(text: str, syntax: str) -> Structure:
    """The structure of `text` under `syntax` ('prose' | 'python' | 'html' | 'latex')."""
    if syntax == "prose":
        sp = _Spans()
        sp.prose.append((0, len(text)))
        sp.chars(text)
        return sp.done()
    if syntax == "python":
        return _scan_python(text)
    if syntax == "html":
        return _scan_html(text)
    if syntax == "latex":
        return _scan_latex(text)
    raise ValueError(f"unknown syntax {syntax!r}; choose from {SYNTAXES}")


def prose_text(text: str, prose: list[tuple[int, int]]) -> str:
    """`text` with every character outside the prose spans replaced by a space (newlines
    kept), so a tagger sees only natural language at the document's own offsets."""
    if prose == [(0, len(text))]:
        return text
    parts, last = [], 0
    for s, e in prose:
        if s > last:
            parts.append(re.sub(r"[^\n]", " ", text[last:s]))
        parts.append(text[s:e])
        last = max(last, e)
    if last < len(text):
        parts.append(re.sub(r"[^\n]", " ", text[last:]))
    return "".join(parts)


# --- Python ----------------------------------------------------------------------------
_SOFT_KEYWORDS = frozenset(getattr(keyword, "softkwlist", []))


_LINE_RE = re.compile(r"[^\n]*\n|[^\n]+\Z")


def python_lines(text: str) -> list[str]:
    """`text` cut into lines exactly as the tokenizer is fed them: after every "\n"
    only. (`str.splitlines` also cuts at "\r", form feed, "\v", "\x1c"-"\x1e",
    "\x85", U+2028 and U+2029, which the tokenizer treats as characters of the line, so
    offsets built from it drift by a line in documents holding any of them.)"""
    return _LINE_RE.findall(text)


def _scan_python(text: str) -> Structure:
    sp = _Spans()
    # The tokenizer's (row, col) positions index into the lines it was given, so the
    # offsets of their starts are computed from those very lines.
    lines = python_lines(text)
    line_starts = np.concatenate([[0], np.cumsum([len(x) for x in lines])]).astype(np.int64)

    def off(rc: tuple[int, int]) -> int:
        if rc[0] - 1 >= len(lines):  # the ENDMARKER / implicit NEWLINE past the end
            return len(text)
        return min(int(line_starts[rc[0] - 1]) + rc[1], len(text))

    last_sig = tokenize.NEWLINE  # type of the last significant token (for docstrings)
    covered = 0
    try:
        for tok in tokenize.generate_tokens(iter([*lines, ""]).__next__):
            s, e = off(tok.start), off(tok.end)
            if s > covered:
                sp.add(covered, s, "py_layout")  # whitespace between tokens
            covered = max(covered, e)
            kind = tok.type
            if kind == tokenize.NAME:
                kw = keyword.iskeyword(tok.string) or tok.string in _SOFT_KEYWORDS
                sp.add(s, e, "py_keyword" if kw else "py_name")
            elif kind == tokenize.NUMBER:
                sp.add(s, e, "py_number")
            elif kind == tokenize.STRING or tok.type in _FSTRING_TYPES:
                sp.add(s, e, "py_string")
                # A string standing alone as a statement is a docstring: prose.
                if kind == tokenize.STRING and last_sig in (tokenize.NEWLINE, tokenize.INDENT,
                                                            tokenize.DEDENT):
                    sp.prose.append((s, e))
                    sp.chars(tok.string, s)
            elif kind == tokenize.COMMENT:
                sp.add(s, e, "py_comment")
                sp.prose.append((s + 1, e))  # the text after "#"
                sp.chars(tok.string[1:], s + 1)
            elif kind == tokenize.OP:
                sp.add(s, e, "py_operator")
                if tok.string in _OPEN_CHARS:
                    sp.bracket(s, e, OPEN_CHAR)
                elif tok.string in _CLOSE_CHARS:
                    sp.bracket(s, e, CLOSE_CHAR)
            elif kind in (tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT):
                sp.add(s, e, "py_layout")
            if kind not in (tokenize.NL, tokenize.COMMENT):
                last_sig = kind
    except (tokenize.TokenError, IndentationError, SyntaxError) as e:
        sp.warnings.append(f"python tokenize stopped at char {covered}: {e}")
    return sp.done()


_FSTRING_TYPES = frozenset(getattr(tokenize, n) for n in
                           ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END")
                           if hasattr(tokenize, n))

# --- HTML ------------------------------------------------------------------------------
_VOID = frozenset("area base br col embed hr img input link meta param source track "
                  "wbr".split())
_HTML_RE = re.compile(
    r"(?P<comment><!--.*?(?:-->|\Z))"
    r"|(?P<decl><![^>]*>?)"
    r"|(?P<close></(?P<cname>[A-Za-z][\w:-]*)\s*>?)"
    r"|(?P<open><(?P<oname>[A-Za-z][\w:-]*)(?P<attrs>(?:[^>\"']|\"[^\"]*\"|'[^']*')*)>?)"
    r"|(?P<entity>&(?:#\d+|#x[0-9A-Fa-f]+|[A-Za-z]\w*);)",
    re.DOTALL)
_ATTR_RE = re.compile(r"(?P<name>[^\s=/>\"']+)"
                      r"(?:\s*(?P<eq>=)\s*(?P<value>\"[^\"]*\"|'[^']*'|[^\s>]+))?")


def _scan_html(text: str) -> Structure:
    sp = _Spans()
    pos = 0
    while True:
        m = _HTML_RE.search(text, pos)
        if m is None:
            break
        s, e = m.span()
        if s > pos:
            sp.add(pos, s, "html_text")
            sp.prose.append((pos, s))
            sp.chars(text[pos:s], pos)
        pos = e
        if m.group("comment") or m.group("decl"):
            sp.add(s, e, "html_comment" if m.group("comment") else "html_tag")
        elif m.group("entity"):
            sp.add(s, e, "html_entity")
        elif m.group("close"):
            ns, ne = m.span("cname")
            sp.add(s, ns, "html_punct")
            sp.add(ns, ne, "html_tag")
            sp.add(ne, e, "html_punct")
            sp.bracket(s, e, CLOSE_TAG)
        else:
            name = m.group("oname").lower()
            ns, ne = m.span("oname")
            sp.add(s, ns, "html_punct")
            sp.add(ns, ne, "html_tag")
            attrs_s = m.start("attrs")
            cur = attrs_s
            for a in _ATTR_RE.finditer(m.group("attrs")):
                a_s, a_e = attrs_s + a.start("name"), attrs_s + a.end("name")
                sp.add(cur, a_s, "html_punct")
                sp.add(a_s, a_e, "html_attr")
                cur = a_e
                if a.group("value") is not None:
                    v_s, v_e = attrs_s + a.start("value"), attrs_s + a.end("value")
                    sp.add(cur, v_s, "html_punct")
                    sp.add(v_s, v_e, "html_value")
                    cur = v_e
            sp.add(cur, e, "html_punct")
            self_closing = m.group("attrs").rstrip().endswith("/")
            if name not in _VOID and not self_closing:
                sp.bracket(s, ne, OPEN_TAG)  # "<name": the part that must later be closed
            if name in ("script", "style") and not self_closing:
                # Script and style bodies are code up to their closing tag, which the
                # next search then finds; "<" inside them is not a tag.
                close = re.compile(r"</" + name + r"\s*>", re.IGNORECASE).search(text, e)
                body_end = len(text) if close is None else close.start()
                sp.add(e, body_end, "html_script")
                pos = body_end
    if pos < len(text):
        sp.add(pos, len(text), "html_text")
        sp.prose.append((pos, len(text)))
        sp.chars(text[pos:], pos)
    return sp.done()


# --- LaTeX -----------------------------------------------------------------------------
_MATH_ENVS = ("equation", "equation*", "align", "align*", "gather", "gather*", "multline",
              "multline*", "eqnarray", "eqnarray*", "displaymath", "math")
_TEX_RE = re.compile(
    r"(?P<comment>(?<!\\)%[^\n]*)"
    r"|(?P<env>\\(?P<be>begin|end)\s*\{(?P<ename>[^}]*)\})"
    r"|(?P<dmath>\$\$.*?\$\$|\\\[.*?\\\])"
    r"|(?P<imath>(?<!\\)\$(?:[^$\\]|\\.)*\$|\\\(.*?\\\))"
    r"|(?P<cmd>\\(?:[A-Za-z@]+\*?|.))"
    r"|(?P<punct>[{}\[\]&~^_])",
    re.DOTALL)


def _scan_latex(text: str) -> Structure:
    sp = _Spans()
    pos = 0  # everything before `pos` is labelled
    for m in _TEX_RE.finditer(text):
        s, e = m.span()
        if s < pos:
            continue  # inside a math environment already labelled
        if s > pos:
            sp.add(pos, s, "tex_text")
            sp.prose.append((pos, s))
            sp.chars(text[pos:s], pos)
        pos = e
        if m.group("comment"):
            sp.add(s, e, "tex_comment")
        elif m.group("env"):
            sp.add(s, e, "tex_env")
            begin = m.group("be") == "begin"
            sp.bracket(s, e, OPEN_ENV if begin else CLOSE_ENV)
            name = m.group("ename").strip()
            if begin and name in _MATH_ENVS:
                # The body of a display-math environment is math, up to its \end.
                end_tag = "\\end{" + name + "}"
                close = text.find(end_tag, e)
                close = len(text) if close < 0 else close
                sp.add(e, close, "tex_math")
                if close < len(text):
                    sp.add(close, close + len(end_tag), "tex_env")
                    sp.bracket(close, close + len(end_tag), CLOSE_ENV)
                pos = min(len(text), close + len(end_tag))
        elif m.group("dmath") or m.group("imath"):
            sp.add(s, e, "tex_math")
        elif m.group("cmd"):
            sp.add(s, e, "tex_command")
        else:
            sp.add(s, e, "tex_punct")
            ch = m.group()
            if ch in "{[":
                sp.bracket(s, e, OPEN_CHAR)
            elif ch in "}]":
                sp.bracket(s, e, CLOSE_CHAR)
    if pos < len(text):
        sp.add(pos, len(text), "tex_text")
        sp.prose.append((pos, len(text)))
        sp.chars(text[pos:], pos)
    return sp.done()
