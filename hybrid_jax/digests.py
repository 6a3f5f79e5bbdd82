"""Content digests of files and directories: what was written is what is read back.

A manifest maps every file under a directory (relative POSIX path) to its size in bytes
and its sha256. It is computed after a write has completed (a training checkpoint, the
shards of a score table) and checked before the files are used, so flipped or truncated
bytes are reported as such instead of restoring silently or failing somewhere deeper.

Cost: sha256 runs at about 1-2 GB/s per core; files are hashed on a thread pool
(hashlib releases the GIL on large buffers), so a 100 GB checkpoint takes about
10 s on 8 cores of a GPU host, once per save and once per restore.

Standard library only: the analysis side (which never imports JAX) uses it too. The one
implementation of file digests in the package: training checkpoints (`digests.json`,
`train/checkpoints.py`), score shards (`scoring/writer.py`), the token store
(`data/token_store.py`) and conversion outputs (`manifest.json` /
`hybrid_jax_export.json`, `convert/manifest.py`, which adds its file and error types)
all hash and check through these functions.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import pathlib
from collections.abc import Iterable, Mapping

MANIFEST_FORMAT = "hybrid_jax.digests/1"
_BLOCK = 8 << 20  # bytes read per call


def document_digest(text: str) -> str:
    """The digest of a document's text that per-token tables store and the analysis
    checks (`analysis.table`): the first 16 hex digits of the sha256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def file_digest(path: str | os.PathLike) -> dict[str, int | str]:
    """{"bytes": size, "sha256": hex} of one file, read in 8 MiB blocks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(_BLOCK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
            size += n
    return {"bytes": size, "sha256": h.hexdigest()}


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of the file's bytes."""
    return str(file_digest(path)["sha256"])


def list_files(root: str | os.PathLike, exclude: Iterable[str] = ()) -> list[str]:
    """Relative POSIX paths of every regular file under `root` (symlinks not followed
    or listed), sorted, except the relative paths in `exclude`."""
    root = pathlib.Path(root)
    skip = set(exclude)
    out = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            p = pathlib.Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if rel not in skip and p.is_file() and not p.is_symlink():
                out.append(rel)
    return sorted(out)


def _workers(workers: int | None = None) -> int:
    return max(1, workers or min(8, os.cpu_count() or 1))


def digest_files(root: str | os.PathLike, names: Iterable[str], workers: int | None = None
                 ) -> dict[str, dict[str, int | str]]:
    """`file_digest` of each relative name under `root`, hashed on a thread pool."""
    root = pathlib.Path(root)
    names = list(names)
    with concurrent.futures.ThreadPoolExecutor(_workers(workers)) as pool:
        return dict(zip(names, pool.map(lambda rel: file_digest(root / rel), names),
                        strict=True))


def directory_manifest(root: str | os.PathLike, *, exclude: Iterable[str] = ()
                       ) -> dict[str, dict[str, int | str]]:
    """{relative path: {"bytes": size, "sha256": hex}} for every regular file under
    `root` except the relative paths in `exclude`."""
    return digest_files(root, list_files(root, exclude))


def manifest_problems(root: str | os.PathLike, files: Mapping[str, Mapping[str, int | str]],
                      names: Iterable[str] | None = None, *, hash_contents: bool = True,
                      workers: int | None = None) -> list[str]:
    """What differs between `root` and its manifest `files` (for `names`, default all
    listed), one phrase per file: missing, size, and (with `hash_contents`) content;
    empty when everything matches. Files that are not in the manifest are not looked at."""
    root = pathlib.Path(root)
    names = sorted(files) if names is None else list(names)
    problems: list[str] = []
    present = []
    for rel in names:
        path, want = root / rel, files[rel]
        if not path.is_file():
            problems.append(f"{rel} is missing")
        elif path.stat().st_size != want["bytes"]:
            problems.append(f"{rel} has {path.stat().st_size} bytes, {want['bytes']} were "
                            "written")
        else:
            present.append(rel)
    if hash_contents and present:
        got = digest_files(root, present, workers)
        problems += [f"{rel}: sha256 differs from the one written (the bytes changed)"
                     for rel in present if got[rel]["sha256"] != files[rel]["sha256"]]
    return problems


def write_manifest(path: str | os.PathLike, files: Mapping[str, Mapping[str, int | str]],
                   **extra) -> None:
    """Write a manifest as JSON, through a temporary file renamed into place."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps({"format": MANIFEST_FORMAT, **extra, "files": files},
                                  indent=1) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_manifest(path: str | os.PathLike) -> dict[str, dict[str, int | str]]:
    """The `files` of a manifest written by `write_manifest`; ValueError if unreadable."""
    path = pathlib.Path(path)
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable digest manifest ({e})") from e
    if not isinstance(obj, dict) or obj.get("format") != MANIFEST_FORMAT or not isinstance(
            obj.get("files"), dict):
        raise ValueError(f"{path}: not a {MANIFEST_FORMAT} manifest")
    return obj["files"]
