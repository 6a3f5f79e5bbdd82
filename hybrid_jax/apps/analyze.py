r"""Analyze: explain the per-token loss gap between models by token category.

    hybrid-jax-analyze \
        --tables=transformer=scores/tr.parquet,hybrid=scores/hy.parquet \
        --docs=eval/docs.jsonl --out=reports/tr_vs_hy

(`python -m hybrid_jax.apps.analyze` is the same.) Tables are `path`, `model=path` or
`model@step=path` (checkpoints of one model give filtered-loss curves over steps); all
must be scored on the same eval pack. A and B default to the first two tables; gap =
loss_A - loss_B in nats (> 0: B better). Writes report.html, report.md, report.json,
figures/ and tokens/ under --out. Needs no JAX: `pip install hybrid_jax[analysis]`.
"""

from __future__ import annotations

import time

from absl import app, flags, logging

from hybrid_jax.apps import cli

_TABLES = flags.DEFINE_list("tables", None, "Per-token tables: path | model=path | "
                            "model@step=path (two or more).", required=True)
_DOCS = flags.DEFINE_list("docs", None, "Documents JSONL file(s) (id, domain, text).",
                          required=True)
_OUT = flags.DEFINE_string("out", "analysis_report", "Output directory.")
_TAGGER = flags.DEFINE_enum("tagger", "auto", ["auto", "brown", "spacy"],
                            "POS tagger: NLTK Brown-trained, spaCy en_core_web_sm, or auto "
                            "(Brown when its corpus is found).")
_BROWN = flags.DEFINE_string("brown_zip", None, "NLTK brown.zip (default: searched).")
_A = flags.DEFINE_string("a", None, "Name of table A (default: the first).")
_B = flags.DEFINE_string("b", None, "Name of table B (default: the second).")
_REF = flags.DEFINE_string("ref_counts", None, "Reference token counts (.npy, or parquet/"
                           "csv with token_id,count); default: counts of the eval pack.")
_BOOT = flags.DEFINE_integer("n_boot", 2000, "Cluster-bootstrap resamples.")
_SEED = flags.DEFINE_integer("seed", 0, "Bootstrap seed.")
_MIN = flags.DEFINE_integer("min_tokens", 20, "Fewest tokens for a family in the "
                            "regression and the vocabulary slope.")
_VIEW_IDS = flags.DEFINE_list("token_docs", [], "Documents for token views (default: "
                              "the largest |mean gap| per domain).")
_VIEW_N = flags.DEFINE_integer("token_docs_per_domain", 2, "Token views per domain.")
_PROBES = flags.DEFINE_string("probe_scores", None, "Parquet of probes.score_probes "
                              "output to include in the report.")


def main(argv: list[str]) -> None:
    del argv
    if len(_TABLES.value) < 2:
        raise app.UsageError("--tables needs at least two tables")
    if _REF.value:
        cli.require_file("ref_counts", _REF.value)
    if _PROBES.value:
        cli.require_file("probe_scores", _PROBES.value)
    import pandas as pd

    from hybrid_jax.analysis.features import load_ref_counts
    from hybrid_jax.analysis.pipeline import analyze
    from hybrid_jax.analysis.probes import summarize_probes
    from hybrid_jax.analysis.report import write_report
    from hybrid_jax.analysis.table import (
        check_aligned,
        check_documents,
        load_tables,
        read_documents,
    )
    from hybrid_jax.analysis.tagging import make_tagger

    t0 = time.perf_counter()
    tables = load_tables(_TABLES.value)
    docs = read_documents(_DOCS.value)
    check_aligned(tables)  # (analyze checks again) before the tagger takes its seconds
    check_documents(tables[0].frame, docs, tables[0].name)
    tagger = make_tagger(_TAGGER.value, _BROWN.value)
    ref = None
    if _REF.value:
        with cli.reading("ref_counts", _REF.value, ValueError):
            ref = load_ref_counts(_REF.value)
    probes = None
    if _PROBES.value:
        with cli.reading("probe_scores", _PROBES.value, ValueError):
            probe_frame = pd.read_parquet(_PROBES.value)
        probes = summarize_probes(probe_frame)
    logging.info("loaded %d tables (%s), %d documents, tagger %s", len(tables),
                 ", ".join(t.name for t in tables), len(docs), tagger.name)
    result = analyze(tables, docs, tagger, a=_A.value, b=_B.value, ref_counts=ref,
                     n_boot=_BOOT.value, seed=_SEED.value, min_tokens=_MIN.value)
    paths = write_report(result, _OUT.value, probes=probes, token_docs=_VIEW_IDS.value or None,
                         token_docs_per_domain=_VIEW_N.value)
    meta = result.numbers["meta"]
    overall = result.frames["domains"].iloc[0]
    print(f"{meta['n_tokens']:,} tokens, gap {meta['a']} - {meta['b']} = "
          f"{overall['mean']:+.4f} nats [{overall['lo']:+.4f}, {overall['hi']:+.4f}] "
          f"in {time.perf_counter() - t0:.1f} s")
    for kind, path in paths.items():
        print(f"{kind}: {path}")


def run() -> None:
    cli.run(main)


if __name__ == "__main__":
    run()
