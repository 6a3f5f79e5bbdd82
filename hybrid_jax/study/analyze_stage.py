"""Stage 4, `analyze`: every per-token table of the study, merged into one report.

Reads only what `score` wrote (`<workdir>/scores/*/`, `<workdir>/probes/`) plus the eval
pack's documents and prepare.json, so it runs on a machine without the checkpoints or
an accelerator (tables scored elsewhere are copied in with their records). Before any
statistic it checks that everything belongs to one study, and refuses otherwise with a
`StudyError` naming the table and what differs:

- every table's study_score.json carries prepare's data, tokenizer and pack digests,
  and the scorer's own scores.json names the same pack;
- the eval pack's pack.json and docs.jsonl are prepare's (pack sha256, document digest);
- the architectures read the same tokens in the same order: equal steps, batch, window
  and seed, and equal token-stream digests (`data/token_batches.py`).

The tables go to `analysis.pipeline.analyze` as the study always passed them: each
architecture's last export under the architecture's name (the comparison), then every
other export as `<arch>@<step>` (the curves), A / B = transformer / hybrid when present.
TOP-10∩NO-COPY's tags are `study.top_families` (a list of families or tags, or
`report:<report.json>`), else cross-fitted on the A - B gap at the last common export
(`analysis/ranking.py`); `study.top_k` = 0 with no list leaves the filter out.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import pathlib
import time
from typing import Any

import pandas as pd

from hybrid_jax.study.manifest import (
    Layout,
    StudyError,
    arch_list,
    check_digests,
    read_record,
    settings,
    write_record,
)

log = logging.getLogger("hybrid_jax.study")

_STREAM_KEYS = ("steps", "batch_size", "seq_len", "seed", "stream_digest")


@dataclasses.dataclass
class StudyResult:
    report: dict[str, pathlib.Path]
    filtered: pd.DataFrame  # filtered losses (nats) of every table (last exports by arch name)
    gap: dict[str, float]  # overall gap A - B (nats) with its CI
    # paired filtered gaps of every two models at every export (statistics branch:
    # AnalysisResult.frames["paired_filtered"]); None when the analysis has none
    paired: pd.DataFrame | None = None
    record: dict[str, Any] | None = None  # study_analyze.json


def score_records(layout: Layout, prep: dict[str, Any]) -> list[dict[str, Any]]:
    """Every table's study record, checked against prepare's digests (StudyError)."""
    from hybrid_jax.scoring.writer import SIDE_CAR

    dirs = sorted(d for d in layout.scores.glob("*@*") if d.is_dir()) \
        if layout.scores.is_dir() else []
    if not dirs:
        raise StudyError(f"{layout.scores}: no per-token table: run --stage=score first")
    records = []
    for d in dirs:
        rec_path = d / "study_score.json"
        if not rec_path.exists():
            raise StudyError(f"{d}: a table without study_score.json (not scored by this "
                             "study's score stage, or interrupted): rescore it or move it away")
        rec = read_record(rec_path, "score")
        check_digests(prep["digests"], rec["digests"], what=f"table {d.name}",
                      where=str(rec_path))
        side = json.loads((d / SIDE_CAR).read_text()) if (d / SIDE_CAR).exists() else {}
        if side.get("pack_sha256") != prep["digests"]["pack"]:
            raise StudyError(f"table {d.name}: its {SIDE_CAR} names pack "
                             f"{str(side.get('pack_sha256'))[:12]}, this study's pack is "
                             f"{prep['digests']['pack'][:12]} ({d / SIDE_CAR})")
        records.append({**rec, "dir": d})
    return records


def check_streams(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{arch: its run's training stream}; StudyError unless every architecture read
    the same stream (and every table of one architecture comes from one run)."""
    by_arch: dict[str, dict[str, Any]] = {}
    for rec in records:
        mine = {k: rec["train"].get(k) for k in _STREAM_KEYS}
        seen = by_arch.setdefault(rec["arch"], mine)
        if seen != mine:
            raise StudyError(f"table {rec['dir'].name} comes from another {rec['arch']} run "
                             f"than the other {rec['arch']} tables ({seen} vs {mine})")
    first = next(iter(by_arch.items()))
    for arch, stream in by_arch.items():
        diff = [k for k in _STREAM_KEYS if stream[k] != first[1][k]]
        if diff:
            raise StudyError(
                f"{arch} and {first[0]} were not trained on the same token stream: "
                + ", ".join(f"{k} {stream[k]!s:.16} vs {first[1][k]!s:.16}" for k in diff))
    return by_arch


def _pack_docs(layout: Layout, prep: dict[str, Any]) -> pathlib.Path:
    """The pack's docs.jsonl, checked against pack.json and prepare's pack digest."""
    from hybrid_jax.data.sources import load_documents
    from hybrid_jax.scoring.eval_pack import corpus_sha256

    meta_file, docs_file = layout.pack / "pack.json", layout.pack / "docs.jsonl"
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError) as e:
        raise StudyError(f"{meta_file}: no eval pack metadata ({e})") from None
    if meta.get("sha256") != prep["digests"]["pack"]:
        raise StudyError(f"{meta_file}: pack {str(meta.get('sha256'))[:12]} is not this "
                         f"study's pack {prep['digests']['pack'][:12]}")
    docs, _ = load_documents(f"jsonl:{docs_file}")
    if corpus_sha256(docs) != meta.get("corpus_sha256"):
        raise StudyError(f"{docs_file}: the documents differ from those the pack was built "
                         "from (pack.json corpus_sha256)")
    return docs_file


def _top_families(s: dict[str, Any]) -> tuple[list[str] | None, str | None]:
    """(names, source) of `study.top_families`; (None, None): the cross-fitted default."""
    value = s["top_families"].strip()
    if not value:
        return None, None
    if value.startswith("report:"):
        from hybrid_jax.analysis.ranking import from_report

        path = value.removeprefix("report:")
        names, table = from_report(path, k=s["top_k"])
        return names, f"the {table} table of {path} (top {s['top_k']} open-class)"
    return [f.strip() for f in value.split(",") if f.strip()], "config list (study.top_families)"


def analyze_stage(config, workdir: str, *, archs: list[str] | None = None,
                  tagger: str | None = None) -> StudyResult:
    """Merge every table of the study and write `<workdir>/report/`."""
    from hybrid_jax.analysis.pipeline import analyze
    from hybrid_jax.analysis.probes import summarize_probes
    from hybrid_jax.analysis.report import write_report
    from hybrid_jax.analysis.table import read_documents, read_table
    from hybrid_jax.analysis.tagging import make_tagger

    t_start = time.perf_counter()
    layout = Layout.of(workdir)
    s = settings(config)
    prep = read_record(layout.prepare_record, "prepare", needed_by="analyze")
    docs_file = _pack_docs(layout, prep)
    records = score_records(layout, prep)
    present = {r["arch"] for r in records}
    if archs:
        missing = [a for a in archs if a not in present]
        if missing:
            raise StudyError(f"no table of {missing} in {layout.scores}: score them first")
        order = list(archs)
    else:
        order = [a for a in arch_list(s["archs"]) if a in present]
        order += sorted(present - set(order))
    records = [r for r in records if r["arch"] in order]
    streams = check_streams(records)
    if len(order) < 2:
        raise StudyError(f"{layout.scores}: tables of {order} only; the study compares two "
                         "or more architectures")

    tables, finals = [], {}
    for arch in order:
        mine = sorted((r for r in records if r["arch"] == arch), key=lambda r: r["step"])
        for r in mine:
            t = read_table(r["dir"], f"{arch}@{r['step']}")
            t.model, t.step = arch, r["step"]
            tables.append(t)
        finals[arch] = tables[-1]
    final_tables = [finals[a] for a in order]
    for t in final_tables:
        t.name = t.model  # the last exports are the comparison; the others give curves
    curve_tables = [t for t in tables if t not in final_tables]

    probe_frames = []
    for arch in order:
        path = layout.probes / f"{arch}.parquet"
        if path.exists():
            check_digests(prep["digests"],
                          read_record(layout.probes / f"{arch}.json", "probes")["digests"],
                          what=f"probe scores {path}", where=str(layout.probes / f"{arch}.json"))
            probe_frames.append(pd.read_parquet(path))
    probes = summarize_probes(pd.concat(probe_frames, ignore_index=True)) \
        if probe_frames else None

    a, b = ("transformer", "hybrid") if {"transformer", "hybrid"} <= set(order) else order[:2]
    extra: dict[str, Any] = {}
    top, top_source = _top_families(s)
    if top is not None:
        params = inspect.signature(analyze).parameters
        if "top_families" not in params:
            raise StudyError("study.top_families is set but this analysis has no "
                             "TOP-10∩NO-COPY filter (analyze() takes no top_families)")
        extra["top_families"] = top
        if "top_families_source" in params:
            extra["top_families_source"] = top_source
    if "top_k" in inspect.signature(analyze).parameters:
        extra["top_k"] = s["top_k"]
    t0 = time.perf_counter()
    result = analyze(final_tables + curve_tables, read_documents([docs_file]),
                     make_tagger(tagger or s["tagger"]), a=a, b=b, n_boot=s["n_boot"],
                     **extra)
    t_analyze = time.perf_counter() - t0
    used = result.numbers["meta"].get("top_families") or {}
    report = write_report(result, layout.report, probes=probes)
    overall = result.frames["domains"].iloc[0]
    gap = {"a": a, "b": b, "mean": float(overall["mean"]), "lo": float(overall["lo"]),
           "hi": float(overall["hi"])}
    record = write_record(layout.report / "study_analyze.json", "analyze", {
        "digests": prep["digests"], "archs": order, "a": a, "b": b,
        "tables": [{"name": t.name, "model": t.model, "step": t.step, "rows": len(t.frame)}
                   for t in final_tables + curve_tables],
        "streams": streams, "top_families": used.get("families"),
        "top_families_source": used.get("source"),
        "gap": gap, "analysis_s": t_analyze, "wall_s": time.perf_counter() - t_start,
        "timings": result.timings,
    })
    from hybrid_jax.study.summary import stages_markdown

    (layout.report / "study.md").write_text(stages_markdown(layout.workdir))
    report["study"] = layout.report / "study.md"
    log.info("analyze: %d tables of %s in %.1f s; report %s", len(tables), order,
             record["wall_s"], report.get("html"))
    return StudyResult(report, result.frames["filtered_losses"], gap,
                       result.frames.get("paired_filtered"), record)
