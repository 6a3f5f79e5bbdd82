"""Code/markup categories and brackets on hand-written snippets."""

from hybrid_jax.analysis import syntax as syn
from hybrid_jax.analysis.families import names_of


def spans(text, st, which="br"):
    s, e, b = (st.br_start, st.br_end, st.br_bits) if which == "br" else (
        st.cat_start, st.cat_end, st.cat_bits)
    return [(text[i:j], int(k) if which == "br" else names_of(int(k))[0])
            for i, j, k in zip(s, e, b, strict=True)]


def test_prose_brackets_are_characters():
    text = "a (b [c] {d}) e"
    st = syn.scan(text, "prose")
    assert spans(text, st) == [("(", syn.OPEN_CHAR), ("[", syn.OPEN_CHAR),
                               ("]", syn.CLOSE_CHAR), ("{", syn.OPEN_CHAR),
                               ("}", syn.CLOSE_CHAR), (")", syn.CLOSE_CHAR)]
    assert st.prose == [(0, len(text))]


def test_python_brackets_are_operators_only_and_comments_are_prose():
    text = 'x = f("(")  # see (1)\n'
    st = syn.scan(text, "python")
    # The "(" inside the string is not a bracket of the code; the comment's are prose
    # brackets.
    assert spans(text, st) == [("(", syn.OPEN_CHAR), (")", syn.CLOSE_CHAR),
                               ("(", syn.OPEN_CHAR), (")", syn.CLOSE_CHAR)]
    cats = spans(text, st, "cat")
    assert ("x", "py_name") in cats and ('"("', "py_string") in cats
    assert ("# see (1)", "py_comment") in cats and ("=", "py_operator") in cats
    assert syn.prose_text(text, st.prose) == " " * 14 + "see (1)" + "\n"


def test_python_docstring_is_prose_and_keywords_are_keywords():
    text = 'def f():\n    """Return it."""\n    return 1\n'
    st = syn.scan(text, "python")
    assert text[st.prose[0][0]:st.prose[0][1]] == '"""Return it."""'
    cats = spans(text, st, "cat")
    assert ("def", "py_keyword") in cats and ("return", "py_keyword") in cats
    assert ("1", "py_number") in cats


def test_html_open_close_and_void_tags():
    text = '<p class="x">Hi<br/><img src=a.png></p><script>if(a<b){}</script>'
    st = syn.scan(text, "html")
    assert spans(text, st) == [("<p", syn.OPEN_TAG), ("</p>", syn.CLOSE_TAG),
                               ("<script", syn.OPEN_TAG), ("</script>", syn.CLOSE_TAG)]
    cats = spans(text, st, "cat")
    assert ("class", "html_attr") in cats and ('"x"', "html_value") in cats
    assert ("Hi", "html_text") in cats and ("if(a<b){}", "html_script") in cats
    assert syn.prose_text(text, st.prose).strip() == "Hi"


def test_latex_environments_commands_and_math():
    text = r"See \cite{k}. \begin{align} x &= y \end{align} $a$ % note" + "\nEnd."
    st = syn.scan(text, "latex")
    assert spans(text, st) == [("{", syn.OPEN_CHAR), ("}", syn.CLOSE_CHAR),
                               (r"\begin{align}", syn.OPEN_ENV), (r"\end{align}", syn.CLOSE_ENV)]
    cats = spans(text, st, "cat")
    assert (r"\cite", "tex_command") in cats and (" x &= y ", "tex_math") in cats
    assert ("$a$", "tex_math") in cats and ("% note", "tex_comment") in cats
    assert ("See ", "tex_text") in cats and ("\nEnd.", "tex_text") in cats


def test_python_that_does_not_tokenize_gives_a_warning():
    st = syn.scan('x = """unterminated\n', "python")
    assert st.warnings and "tokenize" in st.warnings[0]


# Characters that str.splitlines treats as line breaks but Python's tokenizer does not
# (it breaks lines at "\n" only, "\r\n" being "\r" + "\n").
_ODD_BREAKS = "\x0c\x0b\x1c\x1d\x1e\x85\u2028\u2029\r"


def test_python_offsets_survive_characters_that_splitlines_breaks_at():
    import io
    import tokenize

    text = ("import os\n\x0c\n# form feed above; odd breaks in a comment: "
            + "|".join(_ODD_BREAKS) + "\n"
            "def f(x):\n    s = 'a\x0bb\u2028c'  # \x85\n    return x\r\n\nclass A:\n"
            "    pass\n")
    st = syn.scan(text, "python")
    s, e = st.cat_start, st.cat_end
    assert (s[1:] >= e[:-1]).all() and (e > s).all()  # sorted, non-overlapping
    assert e[-1] == len(text) and not st.warnings
    cats = spans(text, st, "cat")
    # Oracle: every NAME / STRING / COMMENT token of the standard tokenizer, in order,
    # is exactly one category span with its own text.
    want = [(t.string, {tokenize.NAME: None, tokenize.STRING: "py_string",
                        tokenize.COMMENT: "py_comment"}[t.type])
            for t in tokenize.generate_tokens(io.StringIO(text, newline="").readline)
            if t.type in (tokenize.NAME, tokenize.STRING, tokenize.COMMENT)]
    got = [(t, c) for t, c in cats if c in ("py_name", "py_keyword", "py_string",
                                            "py_comment")]
    assert [t for t, _ in got] == [t for t, _ in want]
    assert [c for (_, c), (_, w) in zip(got, want, strict=True) if w] == [
        w for _, w in want if w]
    assert ("f", "py_name") in cats and ("A", "py_name") in cats


def test_python_lines_are_the_tokenizers_lines():
    text = "a\x0cb\u2028c\r\nd\re\nf"
    assert syn.python_lines(text) == ["a\x0cb\u2028c\r\n", "d\re\n", "f"]
    assert "".join(syn.python_lines(text)) == text
    assert syn.python_lines("") == []


def test_a_failing_document_is_named(brown_tagger, monkeypatch):
    import pytest

    from hybrid_jax.analysis import synthetic
    from hybrid_jax.analysis.features import build_features
    from hybrid_jax.analysis.table import Document, TableError

    docs = [Document("ok", "books", "A plain sentence here."),
            Document("bad/doc.py", "python", "x = 1\n\x0cy = 2  # \u2028 comment\n")]
    pack = synthetic.pack_table(docs, window=64).assign(loss=1.0)
    feats, _ = build_features(pack, {d.id: d for d in docs}, brown_tagger)  # no crash
    assert (feats["tags"].to_numpy() != 0).all()

    def broken(text, syntax):
        raise IndexError("boom")

    monkeypatch.setattr(syn, "scan", broken)
    with pytest.raises(TableError, match=r"document 'ok': scanning its structure failed: "
                                         r"IndexError: boom") as info:
        build_features(pack, {d.id: d for d in docs}, brown_tagger)
    assert isinstance(info.value.__cause__, IndexError)
