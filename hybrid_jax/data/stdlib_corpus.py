"""The embedded default corpus: real text every Python installation carries.

Two domains, read from the running interpreter's standard library:
    python  module source files (code)
    prose   module and function docstrings (English reference prose)
Documents are returned in a fixed order (sorted paths), so every machine with the same
Python version builds the same corpus. No network, no downloads.
"""

from __future__ import annotations

import ast
import dataclasses
import pathlib
import sysconfig


@dataclasses.dataclass(frozen=True)
class Document:
    id: str
    domain: str
    text: str


def _stdlib_files() -> list[pathlib.Path]:
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    skip = ("test", "idlelib", "site-packages", "lib2to3", "tkinter", "turtledemo")
    files = [p for p in root.glob("*.py")] + [p for p in root.glob("*/*.py")]
    return sorted(p for p in files if not any(part in skip for part in p.parts))


def docstrings_of(tree: ast.Module) -> list[str]:
    """The module, class and function docstrings of `tree` longer than 80 characters (the
    prose documents of both Python corpora: this one and `packages_corpus`)."""
    nodes = [tree] + [n for n in ast.walk(tree)
                      if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]
    out = []
    for node in nodes:
        doc = ast.get_docstring(node, clean=True)
        if doc and len(doc) > 80:
            out.append(doc)
    return out


def stdlib_documents(
    max_docs_per_domain: int = 400, max_chars: int = 20_000, min_chars: int = 500
) -> list[Document]:
    """Up to `max_docs_per_domain` documents of each domain, each cut to `max_chars`."""
    code: list[Document] = []
    prose: list[Document] = []
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    for path in _stdlib_files():
        if len(code) >= max_docs_per_domain and len(prose) >= max_docs_per_domain:
            break
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (UnicodeDecodeError, SyntaxError):
            continue  # a handful of files are not UTF-8 or not Python 3.11 syntax
        name = str(path.relative_to(root))
        if len(code) < max_docs_per_domain and len(source) >= min_chars:
            code.append(Document(f"python/{name}", "python", source[:max_chars]))
        text = "\n\n".join(docstrings_of(tree))
        if len(prose) < max_docs_per_domain and len(text) >= min_chars:
            prose.append(Document(f"prose/{name}", "prose", text[:max_chars]))
    return code + prose
