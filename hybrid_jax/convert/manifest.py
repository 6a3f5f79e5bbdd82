"""Content digests of a directory we wrote: every file's size and sha256, written last.

Both kinds of output carry one:

    hybrid_jax checkpoint   <dir>/manifest.json: model_config.json and every file of the
                            orbax tree under params/, checked before a restore
                            (`checkpoint.restore_state`) and, for model_config.json
                            alone, whenever the config is read.
    HF export               <dir>/hybrid_jax_export.json: the small files (config.json,
                            index, tokenizer, generation_config.json) and the size of
                            each shard, plus a sha256 per tensor, which `safetensors_io`
                            checks as it reads a tensor whole (see there).

Why per file for checkpoints: a restore onto a mesh reads each device's slice only, so
a digest of each parameter's full array would force a full read (and orbax casts on
read, so the restored bytes need not be the stored ones). The files themselves are
dtype- and layout-independent; checking them is one sequential read of the checkpoint
(sha256 in threads: hashlib releases the GIL), the cost measured by
benchmarks/checkpoint_restore.py. In a multi-process job each process checks every
P-th file and the processes agree on the outcome, so no host reads the whole
checkpoint for the check and none restores while another has found a bad file.

A file that is absent, of another size or of another digest raises `CheckpointError`
naming it. Files not listed are ignored: what the readers read is listed (orbax's
manifest.ocdbt names its data files and is itself listed).
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

from hybrid_jax import digests
from hybrid_jax.errors import UserError

FORMAT = "hybrid_jax.manifest/1"


class DigestError(UserError, ValueError):
    """A file differs from the digest written with it (or is gone); base of the
    CheckpointError raised by the readers, which add what was being read."""


# One implementation of file digests for the whole package (`hybrid_jax.digests`);
# this module adds the conversion outputs' manifest file and its errors.
digest_file = digests.file_digest
list_files = digests.list_files
digest_files = digests.digest_files


def write_manifest(directory: str | os.PathLike, name: str, *,
                   files: Mapping[str, Mapping[str, Any]] | None = None,
                   extra: Mapping[str, Any] | None = None) -> pathlib.Path:
    """Write `directory/name` listing `files` ({relative name: {"bytes", "sha256"}});
    when None, every file now under `directory` is hashed. Written via a temporary
    name and renamed, so a manifest is complete or absent."""
    directory = pathlib.Path(directory)
    if files is None:
        files = digest_files(directory, list_files(directory, exclude=(name,)))
    body = {"format": FORMAT, **(extra or {}), "files": dict(sorted(files.items()))}
    tmp = directory / f".{name}.tmp"
    tmp.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, directory / name)
    return directory / name


def read_manifest(directory: str | os.PathLike, name: str) -> dict[str, Any] | None:
    """The parsed manifest, or None when the directory has none."""
    path = pathlib.Path(directory) / name
    if not path.is_file():
        return None
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        if body.get("format") != FORMAT or not isinstance(body.get("files"), dict):
            raise ValueError(f"format {body.get('format')!r}")
    except (ValueError, AttributeError) as e:
        raise DigestError(f"{path}: not a {FORMAT} manifest ({e})") from None
    return body


def check_files(directory: str | os.PathLike, listed: Mapping[str, Mapping[str, Any]],
                names: Iterable[str] | None = None, *, hash_contents: bool = True,
                workers: int | None = None) -> None:
    """Check `names` (default: all listed) against their entries: present, same size,
    and (with `hash_contents`) same sha256. Raises DigestError naming every bad file."""
    problems = digests.manifest_problems(directory, listed, names,
                                         hash_contents=hash_contents, workers=workers)
    if problems:
        raise DigestError(f"{directory}: {len(problems)} file(s) changed since they were "
                          f"written: {'; '.join(sorted(problems))}")


def check_files_distributed(directory: str | os.PathLike,
                            listed: Mapping[str, Mapping[str, Any]]) -> None:
    """`check_files` of every listed file, split over the processes of a multi-process
    job (process p hashes files p, p + P, ...); every process raises if any found a bad
    file, so none goes on to a collective restore alone."""
    import jax

    names = sorted(listed)
    count, index = jax.process_count(), jax.process_index()
    if count == 1:
        check_files(directory, listed, names)
        return
    import numpy as np
    from jax.experimental import multihost_utils

    error = None
    try:
        check_files(directory, listed, names[index::count])
    except DigestError as e:
        error = e
    failed = multihost_utils.process_allgather(np.array([error is not None]))
    if error is not None:
        raise error
    bad = [int(p) for p in np.flatnonzero(np.asarray(failed).reshape(-1))]
    if bad:
        raise DigestError(f"{directory}: the digest check failed on process(es) {bad} "
                          "(their message names the file)")
