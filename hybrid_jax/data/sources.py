"""Document sources: JSONL files, plain-text globs, the embedded stdlib corpus, the
installed packages.

Every source yields `Document(id, domain, text)`; `iter_documents` streams them (the
corpus never has to fit in memory), `load_documents` collects them in a list. Bad
documents never crash a run and are never silently lost: empty texts and non-UTF-8
bytes are skipped and counted, and the counts are reported (`SourceStats`) so a run's
log says how much was dropped and why.

Spec strings (for configs and flags), comma-separated:
    jsonl:<glob>      one JSON object per line with `text`, optional `domain` and `id`
    text:<glob>       one document per file; the domain is the parent directory name
    stdlib            the embedded standard-library corpus (`stdlib_corpus.py`)
    corpus:<dir>      every <dir>/<domain>.jsonl (e.g. ../shared/data/corpus)
    packages          this interpreter's standard library and site-packages as code /
                      c / prose documents (`packages_corpus.py`); packages:<dir>;<dir>
                      for other roots
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import json
import logging
import pathlib
from collections.abc import Iterable, Iterator

from hybrid_jax.data.stdlib_corpus import Document, stdlib_documents
from hybrid_jax.errors import UserError

log = logging.getLogger("hybrid_jax.data")

__all__ = ["Document", "SourceError", "MissingSourceError", "SourceStats", "iter_documents",
           "load_documents", "iter_jsonl", "iter_text_files"]


class SourceError(UserError, ValueError):
    """A source spec or one of its files cannot be used; the message names the spec or
    the file and line."""


class MissingSourceError(SourceError, FileNotFoundError):
    """A source's path or glob matches no file."""


@dataclasses.dataclass
class SourceStats:
    """What a source read, and what it skipped, by reason."""

    read: int = 0
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    cpu_s: float = 0.0  # worker CPU seconds of parallel sources (packages)

    def skip(self, reason: str, where: str) -> None:
        if not self.skipped[reason]:
            log.warning("skipping a document (%s) at %s; further ones are counted", reason,
                        where)
        self.skipped[reason] += 1

    def summary(self) -> str:
        parts = [f"{self.read} documents read"]
        parts += [f"{n} skipped: {reason}" for reason, n in sorted(self.skipped.items())]
        return ", ".join(parts)


def _expand(pattern: str) -> list[pathlib.Path]:
    paths = sorted(pathlib.Path(p) for p in glob.glob(pattern, recursive=True))
    if not paths:
        raise MissingSourceError(f"no files match {pattern!r}")
    return paths


def iter_jsonl(pattern: str, stats: SourceStats) -> Iterator[Document]:
    """Documents of JSONL files; a line without a string `text` is an error naming it."""
    for path in _expand(pattern):
        default_domain = path.stem
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                where = f"{path}:{lineno}"
                if not raw.strip():
                    continue
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    stats.skip("not UTF-8", where)
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise SourceError(f"{where}: not valid JSON ({e.msg})") from None
                text = obj.get("text") if isinstance(obj, dict) else None
                if not isinstance(text, str):
                    raise SourceError(f"{where}: no string field 'text'")
                if not text.strip():
                    stats.skip("empty text", where)
                    continue
                stats.read += 1
                yield Document(str(obj.get("id", f"{path.name}:{lineno}")),
                               str(obj.get("domain", default_domain)), text)


def iter_text_files(pattern: str, stats: SourceStats) -> Iterator[Document]:
    """One document per file; domain = the parent directory's name."""
    for path in _expand(pattern):
        if not path.is_file():
            continue
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            stats.skip("not UTF-8", str(path))
            continue
        if not text.strip():
            stats.skip("empty text", str(path))
            continue
        stats.read += 1
        yield Document(str(path), path.parent.name, text)


def _iter_packages(arg: str, stats: SourceStats, workers: int) -> Iterator[Document]:
    from hybrid_jax.data.packages_corpus import (
        PackageStats,
        iter_package_documents,
        parse_roots,
    )

    walk = PackageStats()
    for doc in iter_package_documents(parse_roots(arg), workers=workers, stats=walk):
        stats.read += 1
        yield doc
    for reason, n in sorted(walk.skipped.items()):
        stats.skipped[f"package file {reason}"] += n
    stats.cpu_s += walk.cpu_s


def _iter_spec(spec: str, stats: SourceStats, workers: int = 0) -> Iterable[Document]:
    kind, _, arg = spec.partition(":")
    if kind == "jsonl":
        return iter_jsonl(arg, stats)
    if kind == "text":
        return iter_text_files(arg, stats)
    if kind == "corpus":
        return iter_jsonl(str(pathlib.Path(arg) / "*.jsonl"), stats)
    if kind == "stdlib":
        docs = stdlib_documents()
        stats.read += len(docs)
        return docs
    if kind == "packages":
        return _iter_packages(arg, stats, workers)
    raise SourceError(f"unknown document source {spec!r}; use jsonl:<glob>, text:<glob>, "
                      f"corpus:<dir>, stdlib or packages[:<dir>;...]")


def parse_specs(specs: str | Iterable[str]) -> list[str]:
    """Comma-separated spec strings as a list (an error if there is none)."""
    if isinstance(specs, str):
        specs = [s.strip() for s in specs.split(",") if s.strip()]
    specs = list(specs)
    if not specs:
        raise SourceError("no document source given")
    return specs


def iter_documents(specs: str | Iterable[str], stats: SourceStats, *, workers: int = 0
                   ) -> Iterator[Document]:
    """The documents of comma-separated source specs, streamed in a fixed order.

    `stats` counts what was read and skipped; `workers` is the process count of the
    `packages` source (0: one per CPU).
    """
    for spec in parse_specs(specs):
        yield from _iter_spec(spec, stats, workers)


def load_documents(specs: str | Iterable[str]) -> tuple[list[Document], SourceStats]:
    """All documents of comma-separated source specs, in a fixed order, with stats."""
    specs = parse_specs(specs)
    stats = SourceStats()
    docs = list(iter_documents(specs, stats))
    if not docs:
        raise SourceError(f"the sources {specs} hold no usable document ({stats.summary()})")
    log.info("documents: %s", stats.summary())
    return docs, stats


def split_held_out(docs: list[Document], every: int) -> tuple[list[Document], list[Document]]:
    """(train, held-out): every `every`-th document of each domain is held out."""
    if every < 2:
        raise ValueError(f"held-out stride must be >= 2, got {every}")
    seen: collections.Counter = collections.Counter()
    train, held = [], []
    for d in docs:
        (held if seen[d.domain] % every == every - 1 else train).append(d)
        seen[d.domain] += 1
    return train, held
