"""Throughput and peak memory of the whole token analysis on one CPU core, tagging
included.

    python benchmarks/analysis_throughput.py                       # Brown, whole corpus
    python benchmarks/analysis_throughput.py --tokens 5000000 --tables 3
    python benchmarks/analysis_throughput.py --taggers brown,spacy --per_domain 10

Builds `--tables` synthetic per-token tables over ../shared/data/corpus (the word-piece
tokenizer of `analysis/synthetic.py`, 2048-token windows; `--tokens` repeats the corpus
under new document ids until the tables have that many rows; making them is not timed),
then times `analyze` (validation, document check, structure scan, POS tagging,
alignment, repeats, features, every gap table, filtered losses and paired gaps with a
2000-resample cluster bootstrap, the regressions) and `write_report` (figures,
HTML/markdown/JSON, token views). Prints tokens/s per stage, the ratio to the 20k
tokens/s target and peak RSS per token; writes the numbers as JSON. Not a test.

It calls only `analyze(tables, docs, tagger, n_boot=...)` and `write_report(res, out)`,
so the same script times an older checkout side by side:

    git archive 274948b hybrid_jax | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python benchmarks/analysis_throughput.py --out old.json
    PYTHONPATH=$PWD     python benchmarks/analysis_throughput.py --out new.json
"""

from __future__ import annotations

import os

# One core: pin BLAS pools before numpy loads, and the process to one CPU.
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import hybrid_jax  # noqa: E402
from hybrid_jax.analysis import synthetic  # noqa: E402
from hybrid_jax.analysis.pipeline import analyze  # noqa: E402
from hybrid_jax.analysis.report import write_report  # noqa: E402
from hybrid_jax.analysis.table import ScoreTable, read_documents, validate_frame  # noqa: E402
from hybrid_jax.analysis.tagging import make_tagger  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
CORPUS = REPO / ".." / "shared" / "data" / "corpus"
TARGET = 20_000  # tokens/s on one core (issue 6)


def _rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def grow(docs: dict, tokens: int, tokens_per_pass: int) -> dict:
    """The documents, then copies under new ids ("<id>#<r>") one by one, until about
    `tokens` tokens (estimated from characters at the corpus' tokens per character)."""
    if tokens <= tokens_per_pass:
        return docs
    per_char = tokens_per_pass / sum(len(d.text) for d in docs.values())
    out, have, r = dict(docs), float(tokens_per_pass), 1
    while have < tokens:
        for k, d in docs.items():
            if have >= tokens:
                break
            out[f"{k}#{r}"] = dataclasses.replace(d, id=f"{k}#{r}")
            have += len(d.text) * per_char
        r += 1
    return out


def run_one(tagger_name: str, docs: dict, window: int, n_boot: int, n_tables: int) -> dict:
    pack = synthetic.pack_table(list(docs.values()), window=window)
    frame = validate_frame(synthetic.with_losses(pack, synthetic.base_losses(len(pack), 0)))
    names = ["transformer", "hybrid", "recurrent", "d", "e", "f"][:n_tables]
    tables = [ScoreTable(m, frame.assign(loss=synthetic.base_losses(len(pack), seed=i)), m)
              for i, m in enumerate(names)]
    del pack
    t0 = time.perf_counter()
    tagger = make_tagger(tagger_name)  # cached Brown tagger / spaCy model load
    t_load = time.perf_counter() - t0
    rss_before = _rss_mb()
    t0 = time.perf_counter()
    res = analyze(tables, docs, tagger, n_boot=n_boot)
    t_analyze = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        write_report(res, out)
        t_report = time.perf_counter() - t0
    n = len(frame)
    stages = {**res.timings, "report": t_report}
    total = t_analyze + t_report
    peak = _rss_mb()
    return {"tagger": tagger_name, "tokens": n, "tables": n_tables, "docs": len(docs),
            "chars": sum(len(d.text) for d in docs.values()), "tagger_load_s": t_load,
            "stages_s": stages, "total_s": total, "tokens_per_s": n / total,
            "us_per_token": 1e6 * total / n, "ratio_to_target": n / total / TARGET,
            "rss_before_analysis_mb": rss_before, "peak_rss_mb": peak,
            "peak_rss_bytes_per_token": peak * 2**20 / n,
            "analysis_rss_bytes_per_token": (peak - rss_before) * 2**20 / n}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--taggers", default="brown")
    p.add_argument("--per_domain", type=int, default=0, help="documents per domain (0: all)")
    p.add_argument("--tokens", type=int, default=0,
                   help="repeat the documents (new ids) up to about this many tokens")
    p.add_argument("--tables", type=int, default=3, help="tables analysed together (2-6)")
    p.add_argument("--window", type=int, default=2048)
    p.add_argument("--n_boot", type=int, default=2000)
    p.add_argument("--out", default="analysis_throughput.json")
    args = p.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    docs = read_documents(sorted(CORPUS.glob("*.jsonl")))
    if args.per_domain:
        docs = {d.id: d for d in synthetic.sample_documents(docs, args.per_domain)}
    if args.tokens:
        per_pass = len(synthetic.pack_table(list(docs.values()), window=args.window))
        docs = grow(docs, args.tokens, per_pass)
    results = [run_one(t, docs, args.window, args.n_boot, args.tables)
               for t in args.taggers.split(",")]

    stage_names = list(results[0]["stages_s"])
    print(f"{'tagger':<8}{'tokens':>10}" + "".join(f"{s:>12}" for s in stage_names)
          + f"{'total s':>10}{'us/tok':>8}{'/target':>9}{'peak B/tok':>11}")
    for r in results:
        print(f"{r['tagger']:<8}{r['tokens']:>10,}"
              + "".join(f"{r['stages_s'][s]:>12.2f}" for s in stage_names)
              + f"{r['total_s']:>10.2f}{r['us_per_token']:>8.1f}{r['ratio_to_target']:>9.2f}"
              + f"{r['peak_rss_bytes_per_token']:>11.0f}")
    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "cpu": platform.processor(), "cores_used": 1, "window": args.window,
            "n_boot": args.n_boot, "tables": args.tables, "target_tokens_per_s": TARGET,
            "package": str(pathlib.Path(hybrid_jax.__file__).parent)}
    pathlib.Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
