"""Stage 3, `score`: every export of every trained architecture on the one eval pack.

For each architecture with a train record (or those named), each export whose name
matches `study.score_exports` (globs; default every export) is scored on `<workdir>/pack`
into `<workdir>/scores/<arch>@<step>/` (the scorer's parquet shards and scores.json,
`scoring/writer.py`), and `study_score.json` beside them records the digests, the
export, its run's token-stream digest and the time it took. Named export directories
(`exports=[...]`) may come from elsewhere; their run's study_train.json must carry this
study's digests. The synthetic probes are scored with each architecture's last export
into `<workdir>/probes/<arch>.parquet`. Work already on disk is skipped (and a table
interrupted mid-way continues after its last complete shard).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import pathlib
import time
from typing import Any

import ml_collections

from hybrid_jax.study.manifest import (
    Layout,
    StudyError,
    arch_list,
    check_digests,
    read_record,
    settings,
    write_record,
)
from hybrid_jax.study.train_stage import Export, list_exports

log = logging.getLogger("hybrid_jax.study")


def _train_summary(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: rec.get(k) for k in ("arch", "steps", "tokens", "seq_len", "batch_size",
                                    "seed", "stream_digest", "stream_batches", "wall_s",
                                    "tokens_per_s", "params", "device")}


def _targets(layout: Layout, archs: list[str] | None, exports: list[str] | None,
             patterns: list[str], study_archs: list[str]
             ) -> list[tuple[str, Export, dict[str, Any]]]:
    """(arch, export, its run's train record) of everything to score: the exports named,
    else those of `archs`, else those of every architecture of `study_archs` trained."""
    out = []
    if exports:
        for entry in exports:
            path = pathlib.Path(entry)
            path = path if path.is_absolute() or path.exists() else layout.workdir / path
            found = [e for e in list_exports(path.parent) if e.path.name == path.name]
            if not found:
                raise StudyError(f"{path}: not a complete parameter export of a run (no "
                                 "model_config.json, or a step another export also holds)")
            rec = read_record(path.parent / "study_train.json", "train",
                              needed_by=f"scoring {path}")
            out.append((path.parent.name, found[0], rec))
        return out
    names = archs or [a for a in study_archs if layout.train_record(a).exists()]
    if not names:
        raise StudyError(f"{layout.workdir}: no trained architecture: run --stage=train first")
    for arch in names:
        rec = read_record(layout.train_record(arch), "train", needed_by="score")
        if not rec.get("complete"):
            raise StudyError(f"{layout.train_record(arch)}: the {arch} run is not complete: "
                             f"run --stage=train --arch={arch} (it resumes)")
        chosen = [e for e in list_exports(layout.run(arch))
                  if any(fnmatch.fnmatchcase(e.name, p) for p in patterns)]
        if not chosen:
            raise StudyError(f"{layout.run(arch)}: no export matches {patterns}")
        out += [(arch, e, rec) for e in chosen]
    return out


def score_stage(config: ml_collections.ConfigDict, workdir: str, *,
                archs: list[str] | None = None, exports: list[str] | None = None
                ) -> list[dict[str, Any]]:
    """Score the exports (see the module docstring); the score records, in order."""
    import jax

    from hybrid_jax.scoring.eval_pack import EvalPack
    from hybrid_jax.scoring.loading import load_for_scoring
    from hybrid_jax.scoring.writer import SIDE_CAR, score_pack
    from hybrid_jax.sharding import make_mesh

    layout = Layout.of(workdir)
    s = settings(config)
    prep = read_record(layout.prepare_record, "prepare", needed_by="score")
    pack = EvalPack.load(layout.pack)
    check_digests(prep["digests"], {**prep["digests"], "pack": pack.sha256()},
                  what=f"the eval pack {layout.pack}", where="pack changed since prepare")
    patterns = [p.strip() for p in s["score_exports"].split(",") if p.strip()]
    targets = _targets(layout, archs, exports, patterns, arch_list(s["archs"]))
    mesh = make_mesh({"data": 1}, jax.devices()[:1])  # study models: one device each
    records = []
    for arch, export, train_rec in targets:
        # The model must come from this study's tokens; which pack its run evaluated on
        # does not matter (evals do not change training).
        check_digests(prep["digests"], train_rec["digests"],
                      what=f"checkpoint {export.path}", where=f"its run's study_train.json "
                      f"({export.path.parent / 'study_train.json'})",
                      keys=("tokenizer", "data"))
        out = layout.score_dir(arch, export.step)
        rec_path = out / "study_score.json"
        if rec_path.exists() and (out / SIDE_CAR).exists():
            rec = read_record(rec_path, "score")
            check_digests(prep["digests"], rec["digests"], what=f"table {out}",
                          where=str(rec_path))
            records.append(rec)
            continue
        t0 = time.perf_counter()
        _, graphdef, params = load_for_scoring(export.path, mesh=mesh)
        t_load = time.perf_counter() - t0
        score_pack(graphdef, params, pack, out, model_name=arch, step=export.step,
                   source={"checkpoint": str(export.path), "export": export.name},
                   batch_size=config.eval.batch_size)
        side = json.loads((out / SIDE_CAR).read_text())
        record = {"arch": arch, "step": export.step, "export": export.name,
                  "kind": export.kind, "digests": prep["digests"],
                  "train": _train_summary(train_rec), "rows": side["rows"],
                  "load_s": t_load, "wall_s": time.perf_counter() - t0,
                  "tokens_per_s": side.get("tokens_per_s_last_run"),
                  "device": side.get("device")}
        log.info("scored %s@%d (%s): %s tokens in %.1f s", arch, export.step, export.name,
                 f"{side['rows']:,}", record["wall_s"])
        records.append(write_record(rec_path, "score", record))
    if s["probe_distances"]:
        last = {}
        for arch, _, train_rec in targets:
            last[arch] = (list_exports(layout.run(arch)) or [None])[-1], train_rec
        for arch, (export, train_rec) in last.items():
            if export is not None:
                _score_probes(config, layout, arch, export, train_rec, prep, mesh, s)
    return records


def _score_probes(config, layout: Layout, arch: str, export: Export,
                  train_rec: dict[str, Any], prep: dict[str, Any], mesh, s: dict[str, Any]
                  ) -> None:
    from hybrid_jax.analysis.probes import make_probes, score_probes
    from hybrid_jax.data.tokenizers import load_tokenizer
    from hybrid_jax.scoring.loading import load_for_scoring
    from hybrid_jax.scoring.texts import text_score_fn

    out = layout.probes / f"{arch}.parquet"
    rec_path = layout.probes / f"{arch}.json"
    if out.exists() and rec_path.exists():
        check_digests(prep["digests"], read_record(rec_path, "probes")["digests"],
                      what=f"probe scores {out}", where=str(rec_path))
        return
    t0 = time.perf_counter()
    _, graphdef, params = load_for_scoring(export.path, mesh=mesh)
    tokenizer = load_tokenizer(prep_tokenizer_spec(layout, config))
    fn = text_score_fn(graphdef, params, tokenizer, batch_size=config.eval.batch_size)
    items = make_probes(seed=0, distances=s["probe_distances"],
                        per_distance=s["probes_per_distance"])
    layout.probes.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    score_probes(items, {arch: fn}).to_parquet(tmp)
    tmp.replace(out)
    write_record(rec_path, "probes", {"arch": arch, "step": export.step,
                                      "export": export.name, "digests": prep["digests"],
                                      "train": _train_summary(train_rec),
                                      "wall_s": time.perf_counter() - t0})


def prep_tokenizer_spec(layout: Layout, config: ml_collections.ConfigDict) -> str:
    from hybrid_jax.study.prepare import tokenizer_spec

    return tokenizer_spec(layout, config.data.tokenizer)
