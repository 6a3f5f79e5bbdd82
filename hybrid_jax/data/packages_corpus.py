"""Real text every machine has: the installed Python packages and the standard library.

Each root directory (default: this interpreter's standard library and its
site-packages) is walked in sorted path order and every text file of a known kind
becomes documents of three domains:

    code   Python source: .py .pyi .pyx .pxd
    c      C / C++ / CUDA source and headers: .h .hpp .cuh .c .cc .cpp .cu
    prose  the docstrings of each .py file (module, class and function docstrings
           longer than 80 characters, joined), and .rst / .md / .txt files

Document ids are `<root label>/<path relative to the root>` (docstrings: `...#doc`),
so they do not depend on where the interpreter is installed. Files are read and parsed
by a pool of worker processes (`workers`), in chunks, and the documents come back in the
sorted order whatever the number of workers: the same installation gives the same
corpus on any machine. Files that are not UTF-8, shorter than `min_chars` or larger than
`max_bytes` (generated data, not text) are skipped and counted; nothing is held in
memory beyond one chunk per worker.

`package_versions(roots)` lists the distributions installed in the roots (name and
version, sorted), which the corpus manifest records: two machines with the same
versions build the same corpus.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import importlib.metadata
import multiprocessing
import os
import pathlib
import site
import sysconfig
import time
import warnings
from collections.abc import Iterator, Sequence

from hybrid_jax.data.stdlib_corpus import Document, docstrings_of

CODE_SUFFIXES = frozenset({".py", ".pyi", ".pyx", ".pxd"})
C_SUFFIXES = frozenset({".h", ".hpp", ".cuh", ".c", ".cc", ".cpp", ".cu"})
PROSE_SUFFIXES = frozenset({".rst", ".md", ".txt"})
# Directories that hold no source text, or another root's files (a venv's site-packages
# inside the standard library directory).
_SKIP_DIRS = frozenset({"__pycache__", "site-packages", "dist-packages", ".git"})
_CHUNK_FILES = 64  # files per task handed to a worker


@dataclasses.dataclass
class PackageStats:
    """What the walk read: files listed, files skipped by reason, worker CPU seconds."""

    files: int = 0
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    cpu_s: float = 0.0


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; a container may have fewer than
    the host's `os.cpu_count()`)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_roots() -> list[tuple[str, pathlib.Path]]:
    """(label, directory) of this interpreter's standard library and site-packages."""
    roots: list[tuple[str, pathlib.Path]] = []
    stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
    if stdlib.is_dir():
        roots.append(("stdlib", stdlib))
    seen = {stdlib.resolve()}
    candidates = [*site.getsitepackages(), sysconfig.get_paths()["purelib"],
                  sysconfig.get_paths()["platlib"]]
    for i, p in enumerate(sorted(set(candidates))):
        path = pathlib.Path(p)
        if path.is_dir() and path.resolve() not in seen:
            seen.add(path.resolve())
            roots.append(("site-packages" if i == 0 else f"site-packages{i}", path))
    return roots


def parse_roots(arg: str) -> list[tuple[str, pathlib.Path]]:
    """Roots from a spec argument: '' = `default_roots()`, else ';'-separated dirs."""
    if not arg:
        return default_roots()
    roots = []
    for p in arg.split(";"):
        path = pathlib.Path(p).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"packages source: {path} is not a directory")
        roots.append((path.name, path))
    return roots


def _domain(suffix: str) -> str | None:
    if suffix in CODE_SUFFIXES:
        return "code"
    if suffix in C_SUFFIXES:
        return "c"
    if suffix in PROSE_SUFFIXES:
        return "prose"
    return None


def list_files(roots: Sequence[tuple[str, pathlib.Path]]) -> list[tuple[str, str]]:
    """(document id stem, absolute path) of every candidate file, in sorted order."""
    out: list[tuple[str, str]] = []
    for label, root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
            rel = os.path.relpath(dirpath, root)
            for name in sorted(filenames):
                if _domain(os.path.splitext(name)[1]) is not None:
                    rel_name = name if rel == "." else f"{rel}/{name}"
                    out.append((f"{label}/{rel_name}", os.path.join(dirpath, name)))
    return out


def docstrings(source: str) -> str:
    """The module, class and function docstrings of `source` longer than 80 characters,
    joined by blank lines ('' if it does not parse)."""
    try:
        with warnings.catch_warnings():  # invalid escape sequences in old files
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ""
    return "\n\n".join(docstrings_of(tree))


def _read_chunk(args: tuple[list[tuple[str, str]], int, int]
                ) -> tuple[list[Document], collections.Counter, float]:
    """Worker: the documents of one chunk of files, in order, what it skipped, and the
    CPU seconds it took."""
    c0 = time.process_time()
    files, min_chars, max_bytes = args
    docs: list[Document] = []
    skipped: collections.Counter = collections.Counter()
    for doc_id, path in files:
        try:
            size = os.path.getsize(path)
            if size > max_bytes:
                skipped["larger than max_bytes"] += 1
                continue
            with open(path, "rb") as f:
                text = f.read().decode("utf-8")
        except UnicodeDecodeError:
            skipped["not UTF-8"] += 1
            continue
        except OSError:
            skipped["unreadable"] += 1
            continue
        text = text.replace("\x00", "")
        suffix = os.path.splitext(path)[1]
        domain = _domain(suffix)
        if len(text.strip()) >= min_chars:
            docs.append(Document(doc_id, domain, text))
        else:
            skipped["shorter than min_chars"] += 1
        if suffix == ".py":
            prose = docstrings(text)
            if len(prose) >= min_chars:
                docs.append(Document(f"{doc_id}#doc", "prose", prose))
    return docs, skipped, time.process_time() - c0


def iter_package_documents(
    roots: Sequence[tuple[str, pathlib.Path]] | None = None,
    *,
    workers: int = 0,
    min_chars: int = 500,
    max_bytes: int = 4_000_000,
    stats: PackageStats | None = None,
    chunk_files: int = _CHUNK_FILES,
) -> Iterator[Document]:
    """Every document of `roots` (default: `default_roots()`), in sorted order.

    workers: processes reading and parsing files (0: one per CPU, 1: this process).
    stats: receives the file count, the skipped files by reason and the CPU time.
    chunk_files: files per task handed to a worker.
    """
    roots = default_roots() if roots is None else list(roots)
    stats = PackageStats() if stats is None else stats
    files = list_files(roots)
    stats.files += len(files)
    chunks = [(files[i : i + chunk_files], min_chars, max_bytes)
              for i in range(0, len(files), chunk_files)]
    workers = workers or usable_cpus()
    if workers == 1 or len(chunks) <= 1:
        for docs, skipped, cpu_s in map(_read_chunk, chunks):
            stats.skipped.update(skipped)
            stats.cpu_s += cpu_s
            yield from docs
        return
    # spawn, not fork: the caller may have started JAX's threads, which fork would copy
    # in an unknown state. (So the calling script needs the `if __name__ == "__main__"`
    # guard, as every multiprocessing program does.)
    with multiprocessing.get_context("spawn").Pool(min(workers, len(chunks))) as pool:
        for docs, skipped, cpu_s in pool.imap(_read_chunk, chunks):  # in chunk order
            stats.skipped.update(skipped)
            stats.cpu_s += cpu_s
            yield from docs


def package_versions(roots: Sequence[tuple[str, pathlib.Path]] | None = None
                     ) -> dict[str, str]:
    """{distribution name: version} installed in `roots` (sorted by name)."""
    roots = default_roots() if roots is None else list(roots)
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions(path=[str(r) for _, r in roots]):
        name = dist.metadata.get("Name")
        if name:
            found.setdefault(name.lower(), dist.version)
    return dict(sorted(found.items()))
