r"""Analyze: explain the per-token loss gap between models by token category.

    hybrid-jax-analyze \
        --tables=transformer=scores/tr.parquet,hybrid=scores/hy.parquet \
        --docs=eval/docs.jsonl --out=reports/tr_vs_hy

(`python -m hybrid_jax.apps.analyze` is the same.) Tables are `path`, `model=path` or
`model@step=path` (checkpoints of one model give filtered-loss curves over steps, and
every two models paired filtered gaps at every step both have); all must be scored on
the same eval pack. A and B default to the first table and the first table of another
model; gap = loss_A - loss_B in nats (> 0: B better). Intervals resample documents
(--cluster), each table of tests is corrected for multiple comparisons (--correction),
categories on fewer than --min_docs documents are flagged. The TOP-10∩NO-COPY filter
keeps the non-repeated tokens of the --top_k most B-favoured open-class tags, ranked
on other documents than the ones they filter (cross-fitted, `analysis/ranking.py`)
unless --top_families or --top_families_from names them. Writes report.html,
report.md, report.json, figures/ and tokens/ under --out. Needs no JAX:
`pip install hybrid_jax[analysis]`.
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
_B = flags.DEFINE_string("b", None, "Name of table B (default: the first table of "
                         "another model).")
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
_CLUSTER = flags.DEFINE_enum("cluster", "document", ["document", "window"],
                             "Resampling unit of every interval (and of the regression's "
                             "cluster-robust SEs).")
_CORRECTION = flags.DEFINE_enum("correction", "holm", ["holm", "bh", "none"],
                                "Multiple-comparison correction within each table: Holm "
                                "(family-wise), Benjamini-Hochberg (FDR) or none.")
_ALPHA = flags.DEFINE_float("alpha", 0.05, "Significance level after the correction.")
_MIN_DOCS = flags.DEFINE_integer("min_docs", 5, "Rows resting on fewer documents are "
                                 "flagged and never significant.")
_TOP = flags.DEFINE_list("top_families", None, "Families or tags of the TOP-10∩NO-COPY "
                         "filter (e.g. NN,JJ,RB or noun,adverb); default: the "
                         "cross-fitted ranking of --top_k open-class tags.")
_TOP_FROM = flags.DEFINE_string("top_families_from", None, "A previous analysis' "
                                "report.json: its most hybrid-favoured open-class tags "
                                "(families, for a report without a tags table) make the "
                                "TOP-10∩NO-COPY filter.")
_TOP_K = flags.DEFINE_integer("top_k", 10, "How many tags the ranking takes "
                              "(--top_families_from, or the cross-fitted default); 0 "
                              "with neither ranking flag: no TOP-10∩NO-COPY filter.")
_VERIFY = flags.DEFINE_bool("verify_docs", True, "For tables without stored document "
                            "digests, check the documents against the tables by token "
                            "surfaces (a heuristic); off: the report says they were not "
                            "verified.")


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
    from hybrid_jax.analysis.ranking import from_report
    from hybrid_jax.analysis.report import paired_lines, write_report
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
    check_documents(tables[0].frame, docs, tables[0].name, verify_text=False)
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
    if _TOP.value and _TOP_FROM.value:
        raise app.UsageError("give --top_families or --top_families_from, not both")
    top, top_source = _TOP.value or None, "--top_families" if _TOP.value else None
    if _TOP_FROM.value:
        top, table = from_report(_TOP_FROM.value, _TOP_K.value)
        top_source = f"the {table} table of {_TOP_FROM.value} (top {_TOP_K.value} open-class)"
    result = analyze(tables, docs, tagger, a=_A.value, b=_B.value, ref_counts=ref,
                     n_boot=_BOOT.value, seed=_SEED.value, min_tokens=_MIN.value,
                     cluster=_CLUSTER.value, correction=_CORRECTION.value,
                     alpha=_ALPHA.value, min_docs=_MIN_DOCS.value, top_families=top,
                     top_families_source=top_source, top_k=_TOP_K.value,
                     verify_docs=_VERIFY.value)
    paths = write_report(result, _OUT.value, probes=probes, token_docs=_VIEW_IDS.value or None,
                         token_docs_per_domain=_VIEW_N.value)
    meta = result.numbers["meta"]
    overall = result.frames["domains"].iloc[0]
    print(f"{meta['n_tokens']:,} tokens, gap {meta['a']} - {meta['b']} = "
          f"{overall['mean']:+.4f} nats [{overall['lo']:+.4f}, {overall['hi']:+.4f}] "
          f"in {time.perf_counter() - t0:.1f} s")
    lines = paired_lines(result.frames["paired_filtered"], steps="last")
    if lines:
        print(f"paired filtered gaps A - B (nats, 95% CI over {meta['cluster']}s):")
        print("\n".join("  " + line for line in lines))
    for kind, path in paths.items():
        print(f"{kind}: {path}")


def run() -> None:
    cli.run(main)


if __name__ == "__main__":
    run()
