"""The corpus builder: the packages walk, deduplication, the held-out split, shards."""

from __future__ import annotations

import hashlib
import json

import pytest

from hybrid_jax.data.corpus import (
    CorpusError,
    build_corpus,
    is_held_out,
    iter_corpus,
    read_manifest,
    sample_texts,
)
from hybrid_jax.data.packages_corpus import (
    PackageStats,
    docstrings,
    iter_package_documents,
    package_versions,
)
from hybrid_jax.data.sources import Document, SourceStats, iter_documents

MODULE = '''"""A module docstring that is long enough to count as prose: it explains what the
module does in a couple of sentences, like real documentation does."""


def f(x):
    """Return x plus one. This docstring is also long enough to be kept as prose text,
    since it has more than eighty characters in it."""
    return x + 1


def g():
    """Too short."""
'''


def _tree(root):
    """A fake site-packages: code, a C header, prose, a duplicate, junk."""
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "__pycache__").mkdir()
    (root / "pkg" / "mod.py").write_text(MODULE)
    (root / "pkg" / "sub" / "copy.py").write_text(MODULE)  # an exact duplicate
    (root / "pkg" / "sub" / "api.h").write_text("int f(int x);\n" * 60)
    (root / "pkg" / "README.md").write_text("# Title\n\n" + "Some prose here. " * 40)
    (root / "pkg" / "tiny.py").write_text("x = 1\n")  # shorter than min_chars
    (root / "pkg" / "latin1.txt").write_bytes(b"caf\xe9 " * 200)  # not UTF-8
    (root / "pkg" / "data.bin").write_bytes(b"\0" * 1000)  # not a text kind
    (root / "pkg" / "__pycache__" / "mod.py").write_text(MODULE + "# cache")
    return [("site", root)]


def test_package_walk_domains_order_and_skips(tmp_path):
    roots = _tree(tmp_path)
    stats = PackageStats()
    docs = list(iter_package_documents(roots, workers=1, min_chars=200, stats=stats))
    ids = [d.id for d in docs]
    # Sorted paths; the docstrings of a .py follow its code; __pycache__ is not walked.
    assert ids == ["site/pkg/README.md", "site/pkg/mod.py", "site/pkg/mod.py#doc",
                   "site/pkg/sub/api.h", "site/pkg/sub/copy.py", "site/pkg/sub/copy.py#doc"]
    assert [d.domain for d in docs] == ["prose", "code", "prose", "c", "code", "prose"]
    doc = docs[2].text
    assert doc.startswith("A module docstring") and "Return x plus one." in doc
    assert "Too short" not in doc
    assert stats.files == 6 and stats.skipped == {"not UTF-8": 1, "shorter than min_chars": 1}
    # Worker processes give the same documents in the same order.
    again = list(iter_package_documents(roots, workers=2, min_chars=200, chunk_files=2))
    assert again == docs
    assert docstrings("def (:\n") == ""


def test_package_versions_of_this_interpreter():
    versions = package_versions()
    assert "numpy" in versions and versions == dict(sorted(versions.items()))


def _docs(n=60):
    # Distinct texts, a few exact duplicates (every 10th repeats the previous text).
    out = []
    for i in range(n):
        text = f"document number {i - 1 if i % 10 == 9 else i} " * 5
        out.append(Document(f"d{i}", "ab"[i % 2], text))
    return out


def test_build_corpus_dedup_split_and_manifest(tmp_path):
    docs = _docs()
    m = build_corpus(docs, tmp_path / "c", held_out_every=4, shard_chars=300,
                     info={"sources": ["test"]})
    kept = [d for i, d in enumerate(docs) if i % 10 != 9]
    held = [d for d in kept
            if is_held_out(hashlib.sha256(d.text.encode()).digest(), 4)]
    train = [d for d in kept if d not in held]
    assert [d.id for d in iter_corpus(tmp_path / "c", "train")] == [d.id for d in train]
    assert [d.id for d in iter_corpus(tmp_path / "c", "held_out")] == [d.id for d in held]
    assert 0 < len(held) < len(kept)
    assert m["duplicates_removed"] == {"documents": 6, "chars": sum(len(docs[i].text)
                                                                    for i in range(9, 60, 10))}
    assert m["train_documents"] == len(train) and m["held_out_documents"] == len(held)
    assert m["train_chars"] == sum(len(d.text) for d in train)
    assert len(m["shards"]) > 1 and sum(s["documents"] for s in m["shards"]) == len(train)
    assert m["sources"] == ["test"] and read_manifest(tmp_path / "c") == m
    # The split is per document: removing other documents changes no document's side.
    m2 = build_corpus(kept[::2], tmp_path / "c2", held_out_every=4)
    held2 = {d.id for d in iter_corpus(tmp_path / "c2", "held_out")}
    assert held2 == {d.id for d in held} & {d.id for d in kept[::2]}
    assert m2["digest"] != m["digest"]
    # Same input, same corpus (digest), whatever the shard size.
    m3 = build_corpus(docs, tmp_path / "c3", held_out_every=4, shard_chars=10_000)
    assert m3["digest"] == m["digest"] and len(m3["shards"]) == 1
    # Per-domain strides.
    m4 = build_corpus(docs, tmp_path / "c4", held_out_every=1000, held_out_by_domain={"a": 2})
    assert m4["domains"]["a"].get("held_out_documents", 0) > 0
    assert m4["domains"]["b"].get("held_out_documents", 0) == 0


def test_build_corpus_errors_and_sampling(tmp_path):
    with pytest.raises(CorpusError, match="share the id 'x'"):
        build_corpus([Document("x", "a", "one"), Document("x", "a", "two")], tmp_path / "e",
                     held_out_every=1000)
    assert not (tmp_path / "e").exists()  # nothing half-built left under the real name
    with pytest.raises(ValueError, match="must be >= 2"):
        build_corpus(_docs(), tmp_path / "e", held_out_every=1)
    with pytest.raises(CorpusError, match="not a corpus manifest"):
        read_manifest(tmp_path / "nothing")
    build_corpus(_docs(), tmp_path / "c", held_out_every=1000)
    train = [d.text for d in iter_corpus(tmp_path / "c", "train")]
    sample = list(sample_texts(tmp_path / "c", max_chars=sum(map(len, train)) // 3))
    assert sample == train[::3]  # spread over the corpus, not its first documents


def test_iter_documents_streams_sources(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "text": f"text {i}"}) + "\n"
                            for i in range(3)))
    _tree(tmp_path / "site")
    stats = SourceStats()
    it = iter_documents(f"jsonl:{path},packages:{tmp_path / 'site'}", stats, workers=1)
    assert next(it).id == "0" and stats.read == 1  # lazily: one document read so far
    rest = list(it)
    assert [d.id for d in rest][:2] == ["1", "2"]
    assert rest[2].id == "site/pkg/README.md"
    assert stats.skipped["package file not UTF-8"] == 1
