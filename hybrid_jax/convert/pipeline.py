"""One conversion as `python -m hybrid_jax.apps.convert` runs it, output published last.

    1. every path is checked before any work (`outputs.check_output`): the output is not
       an input (model directory, tokenizer directory, prompt file), does not contain
       one, is not inside one, and is replaced only when it is an output of ours and
       `overwrite` is given;
    2. the result is written into a hidden staging directory beside the output;
    3. with `verify`, transformers and hybrid_jax run the prompt file on the staged
       result; in float32 a difference beyond the tolerances raises `ParityError`, the
       staged result is deleted and the output (new or old) is left as it was;
    4. the staged directory is renamed into place.

So a failed conversion or a failed --verify never leaves a directory behind, and an
existing output is replaced only by a verified one.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import resource
import shutil
import time
from collections.abc import Callable
from typing import Any

from hybrid_jax.convert.outputs import MissingInputError, check_output, publish, staging_dir
from hybrid_jax.errors import UserError

DIRECTIONS = ("hf_to_jax", "jax_to_hf")


class ParityError(UserError, RuntimeError):
    """--verify found that the converted model computes something else than its source;
    nothing was published."""


@dataclasses.dataclass
class Conversion:
    """What one conversion did."""

    direction: str
    output: pathlib.Path
    cfg: Any  # ModelConfig
    seconds: float  # conversion alone, verification excluded
    peak_rss_gib: float
    report: Any = None  # parity.ParityReport when verified


def run_conversion(
    direction: str,
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    dtype: str | None = None,
    overwrite: bool = False,
    tokenizer_dir: str | os.PathLike | None = None,
    max_shard_bytes: int = 5 * 2**30,
    verify: str | os.PathLike | None = None,
    verify_tokens: int = 2048,
    echo: Callable[[str], None] = print,
) -> Conversion:
    """Convert `input_dir` to `output_dir` (module docstring), printing through `echo`.

    Args:
      direction: "hf_to_jax" (HF directory -> hybrid_jax checkpoint, default dtype
        bfloat16) or "jax_to_hf" (checkpoint -> HF directory, default: each tensor's
        own dtype).
      tokenizer_dir: tokenizer.json for --verify (default: the HF side's directory);
        for jax_to_hf also copied into the export.
      verify: prompt file (documents separated by blank lines) to check parity on.
    Raises:
      UserError subclasses naming the path, tensor or field at fault; ParityError when
      the float32 verification fails.
    """
    from hybrid_jax.convert import checkpoint, export

    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r} is not one of {DIRECTIONS}")
    out = check_output(output_dir, [input_dir, tokenizer_dir, verify], overwrite=overwrite)
    for path, what in ((input_dir, "input_dir"), (tokenizer_dir, "tokenizer_dir"),
                       (verify, "verify")):
        if path is not None and not pathlib.Path(path).exists():
            raise MissingInputError(f"--{what}={path} does not exist")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = staging_dir(out, "staging")
    t0 = time.perf_counter()
    try:
        if direction == "hf_to_jax":
            cfg, _ = checkpoint.convert_hf_checkpoint(input_dir, stage,
                                                      dtype=dtype or "bfloat16")
            hf_dir, ckpt = pathlib.Path(input_dir), stage
        else:
            export.export_checkpoint(input_dir, stage, dtype=dtype, tokenizer_dir=tokenizer_dir,
                                     max_shard_bytes=max_shard_bytes)
            cfg = checkpoint.load_checkpoint_config(input_dir)
            hf_dir, ckpt = stage, pathlib.Path(input_dir)
        seconds = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
        echo(f"{direction}: {input_dir} -> {output_dir} ({cfg.n_layers} layers, "
             f"{cfg.param_dtype}) in {seconds:.1f} s, peak host memory {rss:.2f} GiB")
        done = Conversion(direction, out, cfg, seconds, rss)
        if verify is not None:
            done.report = _verify(hf_dir, ckpt, cfg.param_dtype, verify, verify_tokens,
                                  tokenizer_dir, out, echo)
        publish(stage, out)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return done


def _verify(hf_dir: pathlib.Path, ckpt: pathlib.Path, dtype: str, prompts: str | os.PathLike,
            max_tokens: int, tokenizer_dir: str | os.PathLike | None, out: pathlib.Path,
            echo: Callable[[str], None]) -> Any:
    """Parity of the staged result; raises ParityError (float32) when it fails."""
    from hybrid_jax.convert import checkpoint, parity
    from hybrid_jax.data.hf_tokenizer import HfTokenizer

    tok = HfTokenizer(tokenizer_dir or hf_dir)
    tokens = parity.prompt_tokens(prompts, tok, max_tokens=max_tokens)
    report = parity.verify(hf_dir, checkpoint.load_model(ckpt), tokens, hf_dtype=dtype)
    echo(report.format())
    if dtype != "float32":
        echo(f"({dtype}: no pass/fail; the 1e-4 logit tolerance is for float32)")
        return report
    if report.ok():
        echo("parity: OK")
        return report
    worst = max(range(len(report.per_layer_isolated)),
                key=lambda i: report.per_layer_isolated[i])
    kept = "the existing output is kept" if out.exists() else "nothing was written"
    layer = report.per_layer_isolated[worst]
    raise ParityError(
        f"--verify failed: max |dlogit| {report.max_abs_logit:.3e} (tolerance "
        f"{parity.LOGIT_TOL_FP32:g}), layer {worst} isolated {layer:.3e} (tolerance "
        f"{parity.HIDDEN_TOL_FP32:g}); {out} not published, {kept}")
