"""What each stage of a study did, from its records: commands, wall times, tokens/s.

`stages_markdown(workdir)` is the table `analyze` writes to `report/study.md` beside the
report: for every stage, the exact command line it was started with, where it ran, its
wall time and throughput, and the digests that tie them together. `python -m
hybrid_jax.study.summary WORKDIR ARCH` prints one architecture's call summary (what
`launch/study_gpu.sh` returns from a GPU call). Reads JSON only: no JAX, no tables.
"""

from __future__ import annotations

import json
import pathlib
import shlex
import statistics
import sys
from typing import Any

from hybrid_jax.study.manifest import Layout, logged_rates


def _read(path: pathlib.Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _cmd(rec: dict[str, Any]) -> str:
    argv = rec.get("argv") or []
    if argv and argv[0].endswith(("apps/study.py", "hybrid-jax-study")):
        argv = ["hybrid-jax-study", *argv[1:]]
    return shlex.join(argv) if argv else "(not recorded)"


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def stages_markdown(workdir: str | pathlib.Path) -> str:
    """The stages table of a study workdir (records that are absent are skipped)."""
    layout = Layout.of(workdir)
    prep = _read(layout.prepare_record)
    lines = ["# The study's stages", ""]
    d = prep.get("digests", {})
    lines += [f"- data digest `{d.get('data')}`", f"- tokenizer digest `{d.get('tokenizer')}`",
              f"- eval pack digest `{d.get('pack')}`", ""]
    lines += ["| stage | where | wall s | throughput | command |", "|---|---|---|---|---|"]
    if prep:
        tp = prep.get("tokens", {}).get("throughput", {})
        t = prep.get("timings_s", {})
        lines.append(
            f"| prepare | {prep.get('host')} ({prep.get('cpus')} CPUs) | {t.get('total', 0):.1f} "
            f"(corpus {t.get('corpus', 0):.1f}, tokenizer {t.get('tokenizer', 0):.1f}, "
            f"tokenise {t.get('tokenize', 0):.1f}, pack {t.get('pack', 0):.1f}) | "
            f"{_rate(tp.get('tokens_per_s'))} tokens/s tokenising ({tp.get('workers')} workers) "
            f"| `{_cmd(prep)}` |")
    archs = sorted({p.parent.name for p in layout.workdir.glob("*/study_train.json")})
    for arch in archs:
        rec = _read(layout.train_record(arch))
        if not rec.get("complete"):
            lines.append(_unfinished_row(layout, arch, rec))
            continue
        rate = (rec.get("tokens_per_s") or {}).get("median")
        lines.append(f"| train {arch} | {rec.get('device')} | {rec.get('wall_s', 0):.1f} | "
                     f"{_rate(rate)} tokens/s (median interval), {rec.get('tokens', 0):,} "
                     f"tokens, {rec.get('steps')} steps | `{_cmd(rec)}` |")
    for path in sorted(layout.scores.glob("*@*/study_score.json")):
        rec = _read(path)
        lines.append(f"| score {path.parent.name} ({rec.get('export')}) | {rec.get('device')} "
                     f"| {rec.get('wall_s', 0):.1f} | {_rate(rec.get('tokens_per_s'))} tokens/s"
                     f", {rec.get('rows', 0):,} tokens | `{_cmd(rec)}` |")
    for path in sorted(layout.probes.glob("*.json")):
        rec = _read(path)
        lines.append(f"| probes {path.stem} ({rec.get('export')}) | {rec.get('host')} | "
                     f"{rec.get('wall_s', 0):.1f} | | `{_cmd(rec)}` |")
    rec = _read(layout.report / "study_analyze.json")
    if rec:
        lines.append(f"| analyze | {rec.get('host')} ({rec.get('cpus')} CPUs) | "
                     f"{rec.get('wall_s', 0):.1f} | {len(rec.get('tables', []))} tables | "
                     f"`{_cmd(rec)}` |")
    corpus = prep.get("corpus", {})
    if corpus:
        dup = corpus.get("duplicates_removed", {})
        lines += ["", f"Corpus: {corpus.get('train_documents', 0):,} training documents "
                  f"({corpus.get('train_chars', 0):,} characters), "
                  f"{corpus.get('held_out_documents', 0):,} held out "
                  f"({100 * corpus.get('held_out_share_chars', 0):.1f}% of characters), "
                  f"{dup.get('documents', 0):,} exact duplicates removed "
                  f"({dup.get('chars', 0):,} characters), {corpus.get('packages', 0)} "
                  f"installed distributions; {prep.get('tokens', {}).get('tokens', 0):,} "
                  "training tokens."]
    return "\n".join(lines) + "\n"


def _unfinished_row(layout: Layout, arch: str, rec: dict[str, Any]) -> str:
    """A run that has not finished (stopped, or still going): how far its metrics.jsonl
    got and at what rate; no wall time exists for it yet."""
    last, rates = logged_rates(layout.run(arch))
    rate = statistics.median(rates) if rates else None
    return (f"| train {arch} (not finished) | - | - | {_rate(rate)} tokens/s (median interval) "
            f"up to step {last}, the last logged; rerun to resume | `{_cmd(rec)}` |")


def call_summary(workdir: str | pathlib.Path, arch: str) -> str:
    """One architecture's records in a few lines (digests, timings, rates, exports)."""
    layout = Layout.of(workdir)
    prep, train = _read(layout.prepare_record), _read(layout.train_record(arch))
    out = [f"digests {json.dumps(prep.get('digests'))}",
           f"prepare_s {json.dumps(prep.get('timings_s'))}",
           f"tokens {json.dumps(prep.get('tokens'))}",
           "train " + json.dumps({k: train.get(k) for k in (
               "complete", "steps", "tokens", "wall_s", "tokens_per_s", "stream_digest",
               "params", "device", "final_eval")})]
    for path in sorted(layout.scores.glob(f"{arch}@*/study_score.json")):
        rec = _read(path)
        out.append(f"score {path.parent.name} " + json.dumps(
            {k: rec.get(k) for k in ("export", "rows", "wall_s", "tokens_per_s")}))
    return "\n".join(out) + "\n" + stages_markdown(workdir)


if __name__ == "__main__":
    print(call_summary(sys.argv[1], sys.argv[2]), end="")
