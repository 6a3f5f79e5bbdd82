r"""Score synthetic probes (bracket closing, verbatim repeats, pronoun and entity
tracking at controlled distances) with one or more checkpoints.

    hybrid-jax-probe \
        --checkpoints=transformer=runs/demo/transformer/final,hybrid=runs/demo/hybrid/final \
        --tokenizer=sentencepiece:runs/demo/tokenizer.model --out=runs/demo/probes

(`python -m hybrid_jax.apps.probe` is the same; these checkpoints are those that
`hybrid-jax-demo` writes.) Writes <out>/probes.parquet (one row per probe item and
model) and <out>/summary.csv (mean metric per probe, model and distance), and prints
the summary.
"""

from __future__ import annotations

import logging
import pathlib

from absl import app, flags

from hybrid_jax.apps import cli

_CKPTS = flags.DEFINE_list("checkpoints", None, "name=checkpoint_dir, comma-separated.",
                           required=True)
_TOK = flags.DEFINE_string("tokenizer", None, "Tokenizer spec the models were trained with: "
                           "bytes, sentencepiece:<file> or hf:<tokenizer.json>.",
                           required=True)
_OUT = flags.DEFINE_string("out", None, "Output directory (probes.parquet, summary.csv).",
                           required=True)
_DIST = flags.DEFINE_list("distances", ["32", "64", "128", "256", "512"],
                          "Distances (in words) between the cue and the probed token.")
_PER = flags.DEFINE_integer("per_distance", 6, "Items per probe kind and distance.")
_SEED = flags.DEFINE_integer("seed", 0, "Probe generation seed.")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Texts per batch.")
_DTYPE = flags.DEFINE_string("dtype", None, "Compute/param dtype override (bfloat16).")


def _named_checkpoints(specs: list[str]) -> dict[str, str]:
    named = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise app.UsageError(f"--checkpoints entry {spec!r} is not name=directory")
        if not pathlib.Path(path).is_dir():
            raise cli.InputPathError(f"--checkpoints entry {spec!r}: no such directory")
        named[name] = path
    return named


def _distances(values: list[str]) -> tuple[int, ...]:
    try:
        out = tuple(int(d) for d in values)
    except ValueError:
        out = ()
    if not out or min(out) < 1:
        raise app.UsageError(f"--distances={','.join(values)}: need positive integers")
    return out


def main(argv: list[str]) -> None:
    del argv
    checkpoints = _named_checkpoints(_CKPTS.value)
    distances = _distances(_DIST.value)
    from hybrid_jax.data.tokenizers import load_tokenizer

    with cli.reading("tokenizer", _TOK.value, ValueError):
        tokenizer = load_tokenizer(_TOK.value)  # (before jax: a bad spec fails at once)

    import pandas as pd

    from hybrid_jax.analysis.probes import make_probes, score_probes, summarize_probes
    from hybrid_jax.scoring.loading import load_for_scoring
    from hybrid_jax.scoring.texts import text_score_fn
    from hybrid_jax.sharding import make_mesh

    logging.getLogger("hybrid_jax").setLevel(logging.INFO)
    mesh = make_mesh({"data": -1})
    score_fns = {}
    for name, path in checkpoints.items():
        # (orbax / tensorstore report a corrupt or truncated file as ValueError)
        with cli.reading("checkpoints", f"{name}={path}", ValueError):
            _, graphdef, params = load_for_scoring(path, mesh=mesh, dtype=_DTYPE.value)
        score_fns[name] = text_score_fn(graphdef, params, tokenizer, batch_size=_BATCH.value)
    items = make_probes(seed=_SEED.value, distances=distances, per_distance=_PER.value)
    scores = score_probes(items, score_fns)
    out = pathlib.Path(_OUT.value)
    out.mkdir(parents=True, exist_ok=True)
    scores.to_parquet(out / "probes.parquet")
    summary = summarize_probes(scores)
    summary.to_csv(out / "summary.csv", index=False)
    wide = summary.pivot_table(index=["probe", "metric", "distance"], columns="model",
                               values="value")
    with pd.option_context("display.width", 160, "display.float_format", "{:.3f}".format):
        print(wide)
    print(f"probe scores: {out / 'probes.parquet'}; summary: {out / 'summary.csv'}")


def run() -> None:
    cli.run(main)


if __name__ == "__main__":
    run()
