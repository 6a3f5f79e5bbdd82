"""One study's numbers as one result file: stages, throughput, digests and its gaps.

    python benchmarks/study_result.py --workdir=runs/study_gpu --out=h100_study.json \
        --what="the GPU study, ..."

Reads the study workdir's records (prepare.json, <arch>/study_train.json and
metrics.jsonl, scores/*/study_score.json, report/study_analyze.json) and the report's
report.json (run `--stage=analyze` first), and writes what the docs quote:
the digests; prepare's timings and tokenisation throughput; per architecture the steps
trained (a run that a call stopped: the last logged step, marked unfinished), its
tokens and median logged tokens/s; every scored table's wall time; analyze's wall time;
and the report's filtered losses and paired filtered gaps (document-level intervals).
With `--throughput`, each architecture's training tokens/s over
benchmarks/train_throughput.py's at the same shape (`pipeline`). With `--call_log`, the
stage lines of each launch/study_gpu.sh call (when each stage began, and the time share
each training got). No per-token rows.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess

from hybrid_jax.study.manifest import logged_rates


def _read(path: pathlib.Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _train(workdir: pathlib.Path, arch: str) -> dict:
    rec = _read(workdir / arch / "study_train.json")
    last, rates = logged_rates(workdir / arch)
    settings = rec.get("settings", {})
    batch, seq = settings.get("train.batch_size"), settings.get("data.seq_len")
    out = {"arch": arch, "complete": bool(rec.get("complete")),
           "steps": rec.get("steps") if rec.get("complete") else last,
           "median_tokens_per_s": statistics.median(rates) if rates else None,
           "wall_s": rec.get("wall_s"), "device": rec.get("device"),
           "params": rec.get("params"), "layer_types": settings.get("model.layer_types"),
           "seq_len": seq, "batch": batch}
    if batch and seq:
        out["tokens"] = out["steps"] * batch * seq
    return out


def collect(workdir: pathlib.Path) -> dict:
    prep = _read(workdir / "prepare.json")
    report = _read(workdir / "report" / "report.json")
    if not prep or not report:
        raise SystemExit(f"study_result.py: {workdir} needs prepare.json and "
                         "report/report.json (run --stage=analyze first)")
    archs = sorted(p.parent.name for p in workdir.glob("*/study_train.json"))
    scores = []
    for path in sorted(workdir.glob("scores/*@*/study_score.json")):
        rec = _read(path)
        scores.append({k: rec.get(k) for k in ("arch", "step", "export", "rows", "load_s",
                                               "wall_s", "tokens_per_s", "device")})
    analyze = _read(workdir / "report" / "study_analyze.json")
    return {
        "digests": prep.get("digests"),
        "prepare": {"host": prep.get("host"), "cpus": prep.get("cpus"),
                    "timings_s": prep.get("timings_s"),
                    "tokenize": prep.get("tokens", {}).get("throughput"),
                    "training_tokens": prep.get("tokens", {}).get("tokens"),
                    "corpus": {k: prep.get("corpus", {}).get(k) for k in (
                        "train_documents", "train_chars", "held_out_documents",
                        "held_out_share_chars", "duplicates_removed", "packages")}},
        "train": [_train(workdir, a) for a in archs],
        "score": scores,
        "analyze": {"wall_s": analyze.get("wall_s"), "analysis_s": analyze.get("analysis_s"),
                    "host": analyze.get("host"), "cpus": analyze.get("cpus"),
                    "archs": analyze.get("archs")},
        "filtered_losses": report.get("filtered_losses"),
        "paired_filtered": report.get("paired_filtered"),
        "meta": {k: report.get("meta", {}).get(k) for k in ("a", "b", "tagger", "n_boot",
                                                            "cluster", "top_families")},
    }


def pipeline(train: list[dict], bench: list[dict]) -> list[dict]:
    """Each architecture's training tokens/s (median logged interval) against
    benchmarks/train_throughput.py's at the same shape (arch, seq_len, batch and
    parameter count, i.e. the same vocabulary): ratio >= 0.9 means the input pipeline did
    not hold the accelerator back. A benchmark of another shape is refused."""
    out = []
    for t in train:
        rows = [b for b in bench if b.get("arch") == t["arch"]]
        if not rows:
            raise SystemExit(f"study_result.py: --throughput has no row for {t['arch']}")
        b = rows[0]
        for key in ("seq_len", "batch", "params"):
            if b.get(key) != t.get(key):
                raise SystemExit(f"study_result.py: --throughput {t['arch']}: {key} "
                                 f"{b.get(key)} in the benchmark, {t.get(key)} in training: "
                                 "not the training shape")
        rate, ref = t.get("median_tokens_per_s"), b.get("tokens_per_s")
        out.append({"arch": t["arch"], "train_tokens_per_s": rate, "benchmark_tokens_per_s": ref,
                    "ratio": rate / ref if rate and ref else None,
                    "train_device": t.get("device"), "benchmark_device": b.get("device")})
    return out


def from_result(path: pathlib.Path) -> dict:
    """An earlier result file's fields, to extend (its `pipeline` and commit dropped)."""
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"study_result.py: --from_result {path}: {e}") from None
    if not isinstance(result, dict) or not isinstance(result.get("train"), list):
        raise SystemExit(f"study_result.py: --from_result {path} is not a study_result.py file "
                         "(no train rows)")
    result.pop("pipeline", None)
    result.pop("commit_here", None)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="runs/study_gpu")
    p.add_argument("--from_result", default="",
                   help="an earlier study_result.py file to start from instead of --workdir "
                        "(its fields and call lines are kept)")
    p.add_argument("--out", required=True)
    p.add_argument("--what", default="the study in --workdir")
    p.add_argument("--call_log", action="append", default=[],
                   help="a launch/study_gpu.sh call.log (repeatable): its '=== ...' stage "
                        "lines, with the seconds since the call began, are kept")
    p.add_argument("--throughput", default="",
                   help="benchmarks/train_throughput.py's JSON at the training shape "
                        "(launch/study_gpu.sh's throughput.json): adds `pipeline`, each "
                        "architecture's training tokens/s over the benchmark's")
    args = p.parse_args()
    if args.from_result:
        result = from_result(pathlib.Path(args.from_result))
        if args.what != p.get_default("what"):
            result["what"] = args.what
    else:
        result = {"what": args.what, **collect(pathlib.Path(args.workdir))}
    if args.throughput:
        bench = json.loads(pathlib.Path(args.throughput).read_text())
        result["pipeline"] = pipeline(result["train"], bench)
    if args.call_log or not args.from_result:
        result["calls"] = [[line for line in pathlib.Path(log).read_text().splitlines()
                            if line.startswith("=== ")] for log in args.call_log]
    try:
        result["commit_here"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                                               capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    pathlib.Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
