"""Where a conversion may write, and how a finished output replaces an old one.

Rules, checked before any work is done (`check_output`):
  * the output is never an input, never contains one (replacing it would delete the
    input) and is never inside an input directory (it would change the input);
    inputs are every path the conversion reads: the model directory, the tokenizer
    directory, the prompt file of --verify. Paths are compared after resolving
    symbolic links.
  * an existing output is replaced only with `overwrite`, and only when it is empty or
    looks like an output of ours: a hybrid_jax checkpoint (`model_config.json` of
    format hybrid_jax.params/*) or an HF export of ours (`hybrid_jax_export.json`).
    Anything else is left alone, with an error saying why.

Outputs are assembled in a hidden directory beside the target and `publish`ed by
renames: the old output is moved aside, the new one moved in, then the old one is
deleted, so the target never holds a partial directory.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import time
from collections.abc import Iterable

from hybrid_jax.errors import UserError

CHECKPOINT_CONFIG = "model_config.json"
CHECKPOINT_FORMAT_PREFIX = "hybrid_jax.params/"
EXPORT_MANIFEST = "hybrid_jax_export.json"


class OutputExistsError(UserError, FileExistsError):
    """The output directory exists and overwriting was not asked for."""


class MissingInputError(UserError, FileNotFoundError):
    """An input path the conversion needs does not exist (or lacks a needed file)."""


class UnsafeOutputError(UserError, ValueError):
    """Writing or replacing the output would touch an input or a directory not ours."""


def _resolve(path: str | os.PathLike) -> pathlib.Path:
    return pathlib.Path(path).expanduser().resolve()


def _within(inner: pathlib.Path, outer: pathlib.Path) -> bool:
    return inner == outer or outer in inner.parents


def kind_of_output(directory: str | os.PathLike) -> str | None:
    """'checkpoint' or 'hf_export' when `directory` looks like an output of ours."""
    directory = pathlib.Path(directory)
    config = directory / CHECKPOINT_CONFIG
    if config.is_file():
        try:
            fmt = json.loads(config.read_text(encoding="utf-8")).get("format", "")
        except (ValueError, AttributeError, OSError):
            fmt = ""
        if isinstance(fmt, str) and fmt.startswith(CHECKPOINT_FORMAT_PREFIX):
            return "checkpoint"
    if (directory / EXPORT_MANIFEST).is_file():
        return "hf_export"
    return None


def check_output(output: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (),
                 *, overwrite: bool = False) -> pathlib.Path:
    """The absolute output path, if writing it is safe (module rules); raises
    OutputExistsError / UnsafeOutputError naming the paths otherwise."""
    out = _resolve(output)
    for given in inputs:
        if given is None:
            continue
        inp = _resolve(given)
        if inp == out:
            raise UnsafeOutputError(f"output {output} is the input {given}: write the "
                                    "result elsewhere")
        if _within(inp, out):
            raise UnsafeOutputError(f"output {output} contains the input {given}: "
                                    "replacing it would delete the input")
        if inp.is_dir() and _within(out, inp):
            raise UnsafeOutputError(f"output {output} is inside the input {given}: write "
                                    "the result outside it")
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise OutputExistsError(f"{output} exists; pass --overwrite (overwrite=True) "
                                    "to replace it")
        if not out.is_dir():
            raise UnsafeOutputError(f"output {output} exists and is not a directory; "
                                    "refusing to replace it")
        if any(out.iterdir()) and kind_of_output(out) is None:
            raise UnsafeOutputError(
                f"output {output} exists and is not an output of hybrid_jax (no "
                f"{CHECKPOINT_CONFIG} of format {CHECKPOINT_FORMAT_PREFIX}*, no "
                f"{EXPORT_MANIFEST}); refusing to delete it: remove it yourself if it is "
                "disposable")
    return out


def staging_dir(output: pathlib.Path, tag: str = "tmp") -> pathlib.Path:
    """A fresh hidden path beside `output` (same file system, so renames are atomic)."""
    return output.parent / f".{output.name}.{tag}-{os.getpid()}-{time.time_ns()}"


def publish(staged: pathlib.Path, output: pathlib.Path) -> pathlib.Path:
    """Move the complete directory `staged` to `output`, replacing what is there (the
    caller checked it with `check_output`); the old output is moved aside first and
    deleted last."""
    aside = None
    if output.exists() or output.is_symlink():
        aside = staging_dir(output, "old")
        os.replace(output, aside)
    try:
        os.replace(staged, output)
    except BaseException:
        if aside is not None:
            os.replace(aside, output)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return output
