"""The study end to end: train the three architectures on identical data, score one
frozen eval pack with every checkpoint, run the gap analysis and write the report.

    <workdir>/tokenizer.model          one SentencePiece model shared by all architectures
    <workdir>/<arch>/                  a training workdir per architecture (resumable)
    <workdir>/pack/                    the eval pack: held-out documents in fixed windows
    <workdir>/scores/<arch>@<step>/    per-token tables, one per exported checkpoint
    <workdir>/probes.parquet           synthetic probes scored by every final model
    <workdir>/report/                  report.html, report.md, report.json, figures/

Every stage skips work that is already on disk, so an interrupted study resumes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import pathlib
from collections.abc import Sequence

import jax
import ml_collections
import pandas as pd

from hybrid_jax.analysis.pipeline import analyze
from hybrid_jax.analysis.probes import make_probes, score_probes, summarize_probes
from hybrid_jax.analysis.report import write_report
from hybrid_jax.analysis.table import read_documents, read_table
from hybrid_jax.analysis.tagging import make_tagger
from hybrid_jax.convert.checkpoint import load_checkpoint_config
from hybrid_jax.data.sources import load_documents, split_held_out
from hybrid_jax.data.tokenizers import SentencePieceTokenizer, train_sentencepiece
from hybrid_jax.models.presets import ARCHITECTURES, layer_pattern
from hybrid_jax.scoring.eval_pack import EvalPack, build_eval_pack
from hybrid_jax.scoring.loading import load_for_scoring
from hybrid_jax.scoring.texts import text_score_fn
from hybrid_jax.scoring.writer import SIDE_CAR, score_pack
from hybrid_jax.sharding import make_mesh
from hybrid_jax.train.loop import train

log = logging.getLogger("hybrid_jax.study")


@dataclasses.dataclass
class StudyResult:
    report: dict[str, pathlib.Path]
    filtered: pd.DataFrame  # filtered losses (nats) of every model at its last step
    gap: dict[str, float]  # overall gap A - B with its CI
    # Paired filtered gaps of every two architectures at every shared step, with
    # document-level intervals (= analysis frames["paired_filtered"]).
    paired: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)


def _exports(run_dir: pathlib.Path) -> list[tuple[int, pathlib.Path]]:
    """(step, directory) of a run's periodic exports and its final export, by step."""
    found = [(int(d.name.removeprefix("step_")), d) for d in run_dir.glob("step_*")
             if (d / "model_config.json").exists()]
    final = run_dir / "final"
    if (final / "model_config.json").exists():
        meta = json.loads((final / "model_config.json").read_text())
        found.append((int(meta["source"]["step"]), final))
    if not found:
        raise FileNotFoundError(f"{run_dir} has no exported checkpoint")
    return sorted(found)


def run_study(
    config: ml_collections.ConfigDict,
    workdir: str | pathlib.Path,
    *,
    archs: Sequence[str] = ARCHITECTURES,
    pack_docs_per_domain: int = 30,
    pack_max_chars: int = 6000,
    probe_distances: tuple[int, ...] = (32, 64, 128, 256),
    probes_per_distance: int = 4,
    tagger: str = "auto",
    n_boot: int = 1000,
) -> StudyResult:
    workdir = pathlib.Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    docs, _ = load_documents(config.data.sources)
    train_docs, held = split_held_out(docs, config.data.held_out_every)

    # ------------------------------------------------------------------ shared tokenizer
    tok_path = workdir / "tokenizer.model"
    if not tok_path.exists():
        log.info("training a %d-token SentencePiece model", config.data.vocab_size)
        train_sentencepiece((d.text for d in train_docs), config.data.vocab_size,
                            max_chars=config.data.tokenizer_chars).save(tok_path)
    tokenizer = SentencePieceTokenizer.load(tok_path)

    # ------------------------------------------------------------------ train
    n_layers = len(config.model.layer_types)
    for arch in archs:
        cfg = copy.deepcopy(config)
        cfg.model.layer_types = layer_pattern(arch, n_layers)
        cfg.data.tokenizer = f"sentencepiece:{tok_path}"
        if not (workdir / arch / "final" / "model_config.json").exists():
            log.info("training %s", arch)
            train(cfg, workdir / arch)

    # ------------------------------------------------------------------ eval pack
    pack_dir = workdir / "pack"
    if (pack_dir / "pack.json").exists():
        pack = EvalPack.load(pack_dir)
    else:
        by_domain: dict[str, list] = {}
        for d in held:
            by_domain.setdefault(d.domain, []).append(d)
        chosen = [dataclasses.replace(d, text=d.text[:pack_max_chars])
                  for ds in by_domain.values() for d in ds[:pack_docs_per_domain]]
        pack = build_eval_pack(chosen, tokenizer, config.data.seq_len,
                               tokenizer_spec=f"sentencepiece:{tok_path}")
        pack.save(pack_dir)

    # ------------------------------------------------------------------ score
    mesh = make_mesh({"data": 1}, jax.devices()[:1])  # tiny models: one device
    tables, finals, score_fns = [], {}, {}
    for arch in archs:
        exports = _exports(workdir / arch)
        for step, ckpt in exports:
            out = workdir / "scores" / f"{arch}@{step}"
            if not (out / SIDE_CAR).exists():
                _, graphdef, params = load_for_scoring(ckpt, mesh=mesh)
                score_pack(graphdef, params, pack, out, model_name=arch, step=step,
                           source={"checkpoint": str(ckpt)},
                           batch_size=config.eval.batch_size)
            tables.append(read_table(out, f"{arch}@{step}"))
            tables[-1].model, tables[-1].step = arch, step
        finals[arch] = tables[-1]
        final_ckpt = exports[-1][1]
        _, graphdef, params = load_for_scoring(final_ckpt, mesh=mesh)
        score_fns[arch] = text_score_fn(graphdef, params, tokenizer,
                                        batch_size=config.eval.batch_size)
        assert load_checkpoint_config(final_ckpt).vocab_size >= tokenizer.vocab_size

    # ------------------------------------------------------------------ probes
    probes_file = workdir / "probes.parquet"
    if not probes_file.exists():
        items = make_probes(seed=0, distances=probe_distances, per_distance=probes_per_distance)
        score_probes(items, score_fns).to_parquet(probes_file)
    probes = summarize_probes(pd.read_parquet(probes_file))

    # ------------------------------------------------------------------ analysis + report
    a, b = ("transformer", "hybrid") if {"transformer", "hybrid"} <= set(archs) else archs[:2]
    final_tables = [finals[x] for x in archs]
    for t in final_tables:
        t.name = t.model  # the final tables are the comparison; steps give the curves
    curve_tables = [t for t in tables if t not in final_tables]
    result = analyze(final_tables + curve_tables, read_documents([pack_dir / "docs.jsonl"]),
                     make_tagger(tagger), a=a, b=b, n_boot=n_boot)
    report = write_report(result, workdir / "report", probes=probes)
    overall = result.frames["domains"].iloc[0]
    filtered = result.frames["filtered_losses"]
    return StudyResult(report, filtered, {"a": a, "b": b, "mean": float(overall["mean"]),
                                          "lo": float(overall["lo"]), "hi": float(overall["hi"])},
                       paired=result.frames["paired_filtered"])
