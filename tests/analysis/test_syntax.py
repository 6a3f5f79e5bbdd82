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
