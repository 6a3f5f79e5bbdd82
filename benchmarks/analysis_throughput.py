"""Throughput of the whole token analysis on one CPU core, tagging included.

    python benchmarks/analysis_throughput.py                       # Brown, whole corpus
    python benchmarks/analysis_throughput.py --taggers brown,spacy --per_domain 10

Builds two synthetic per-token tables over ../shared/data/corpus (the word-piece
tokenizer of `analysis/synthetic.py`, 2048-token windows; making them is not timed),
then times `analyze` (validation, structure scan, POS tagging, alignment, repeats,
features, every gap table with a 2000-resample cluster bootstrap, the regressions) and
`write_report` (figures, HTML/markdown/JSON, token views). Prints tokens/s per stage and
the ratio to the 20k tokens/s target; writes the numbers as JSON. Not a test.
"""

from __future__ import annotations

import os

# One core: pin BLAS pools before numpy loads, and the process to one CPU.
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from hybrid_jax.analysis import synthetic  # noqa: E402
from hybrid_jax.analysis.pipeline import analyze  # noqa: E402
from hybrid_jax.analysis.report import write_report  # noqa: E402
from hybrid_jax.analysis.table import ScoreTable, read_documents, validate_frame  # noqa: E402
from hybrid_jax.analysis.tagging import make_tagger  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
CORPUS = REPO / ".." / "shared" / "data" / "corpus"
TARGET = 20_000  # tokens/s on one core (issue 6)


def run_one(tagger_name: str, docs: dict, window: int, n_boot: int) -> dict:
    pack = synthetic.pack_table(list(docs.values()), window=window)
    loss_a = synthetic.base_losses(len(pack), seed=0)
    loss_b = synthetic.base_losses(len(pack), seed=1)
    tables = [ScoreTable("A", validate_frame(synthetic.with_losses(pack, loss_a)), "A"),
              ScoreTable("B", validate_frame(synthetic.with_losses(pack, loss_b)), "B")]
    t0 = time.perf_counter()
    tagger = make_tagger(tagger_name)  # cached Brown tagger / spaCy model load
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = analyze(tables, docs, tagger, n_boot=n_boot)
    t_analyze = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        write_report(res, out)
        t_report = time.perf_counter() - t0
    n = len(pack)
    stages = {**res.timings, "report": t_report}
    total = t_analyze + t_report
    return {"tagger": tagger_name, "tokens": n, "docs": len(docs),
            "chars": sum(len(d.text) for d in docs.values()), "tagger_load_s": t_load,
            "stages_s": stages, "total_s": total, "tokens_per_s": n / total,
            "ratio_to_target": n / total / TARGET}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--taggers", default="brown")
    p.add_argument("--per_domain", type=int, default=0, help="documents per domain (0: all)")
    p.add_argument("--window", type=int, default=2048)
    p.add_argument("--n_boot", type=int, default=2000)
    p.add_argument("--out", default="analysis_throughput.json")
    args = p.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    docs = read_documents(sorted(CORPUS.glob("*.jsonl")))
    if args.per_domain:
        docs = {d.id: d for d in synthetic.sample_documents(docs, args.per_domain)}
    results = [run_one(t, docs, args.window, args.n_boot) for t in args.taggers.split(",")]

    stage_names = list(results[0]["stages_s"])
    print(f"{'tagger':<8}{'tokens':>10}" + "".join(f"{s:>12}" for s in stage_names)
          + f"{'total s':>10}{'tok/s':>10}{'/target':>9}")
    for r in results:
        print(f"{r['tagger']:<8}{r['tokens']:>10,}"
              + "".join(f"{r['stages_s'][s]:>12.2f}" for s in stage_names)
              + f"{r['total_s']:>10.2f}{r['tokens_per_s']:>10,.0f}{r['ratio_to_target']:>9.2f}")
    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "cpu": platform.processor(), "cores_used": 1, "window": args.window,
            "n_boot": args.n_boot, "target_tokens_per_s": TARGET}
    pathlib.Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
