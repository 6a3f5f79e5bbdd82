"""Stage 2, `train --arch=X`: one architecture on the prepared tokens, exports included.

The run lives in `<workdir>/<arch>/` and is the trainer's own (`train/loop.py`): it
resumes from its newest checkpoint when started again, and writes its parameter exports
there (`stable_<b>x/` and `anneal_<b>x/` at each WSD-S budget, `step_<n>/` every
`train.export_every` steps, `final/`). The study sets only what makes the architectures
comparable: the layer pattern of `arch` at the config's depth, the pre-tokenised
training tokens (`data.tokens`: the same tokens in the same order for every
architecture, `data/token_batches.py`), the study's tokenizer, and the eval pack's
documents for the in-loop evals.

`<arch>/study_train.json` records the digests the run was started with (written before
training, so a resumed run on other data is refused), then, when the run completes, the
token-stream digest (`TokenBatches.stream_digest`: which instances it read, in which
order), the steps and tokens, training tokens/s and the exports.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import pathlib
import statistics
import time
from typing import Any

import ml_collections

from hybrid_jax.models.presets import layer_pattern
from hybrid_jax.study.manifest import (
    Layout,
    StudyError,
    check_digests,
    diff_fields,
    logged_rates,
    read_record,
    write_record,
)
from hybrid_jax.study.prepare import current_digests, tokenizer_spec

log = logging.getLogger("hybrid_jax.study")

# Preference when two exports hold the same step (an annealed model is also the stable
# model the next budget branches from when the decays touch; `final` repeats the last).
_KIND_ORDER = ("anneal", "step", "stable", "final")


@dataclasses.dataclass(frozen=True)
class Export:
    name: str  # the export's directory name: anneal_2x, step_400, final, ...
    step: int  # training steps behind it
    kind: str  # anneal | stable | step | final
    path: pathlib.Path


def list_exports(run_dir: pathlib.Path) -> list[Export]:
    """Every complete parameter export of a run, one per step, by step."""
    found: dict[int, Export] = {}
    for d in sorted(run_dir.iterdir()) if run_dir.is_dir() else []:
        meta_file = d / "model_config.json"
        if not meta_file.is_file():
            continue
        kind = d.name.split("_")[0]
        if kind not in _KIND_ORDER:
            continue
        step = int(json.loads(meta_file.read_text())["source"]["step"])
        e = Export(d.name, step, kind, d)
        old = found.get(step)
        if old is None or _KIND_ORDER.index(kind) < _KIND_ORDER.index(old.kind):
            found[step] = e
    return [found[s] for s in sorted(found)]


def train_config(config: ml_collections.ConfigDict, layout: Layout, arch: str
                 ) -> ml_collections.ConfigDict:
    """The trainer's config for `arch`: the study's data, tokenizer and layer pattern."""
    cfg = copy.deepcopy(config)
    cfg.model.layer_types = layer_pattern(arch, len(config.model.layer_types))
    with cfg.unlocked():
        cfg.data.tokens = str(layout.tokens)
        cfg.data.eval_docs = str(layout.pack / "docs.jsonl")
        cfg.data.tokenizer = tokenizer_spec(layout, config.data.tokenizer)
    return cfg


def _run_settings(cfg: ml_collections.ConfigDict) -> dict[str, Any]:
    """What makes two runs of one architecture the same run, flat ("train.steps": 2289):
    the model and the training settings (not logging, checkpoint count or kill hook)."""
    flat = {f"model.{k}": v for k, v in cfg.model.to_dict().items()}
    flat.update({f"train.{k}": v for k, v in cfg.train.to_dict().items()
                 if k not in ("log_every", "kill_at_step", "keep_checkpoints")})
    flat["data.seq_len"] = cfg.data.seq_len
    return json.loads(json.dumps(flat, default=list))  # as the record will hold it


def _stream_state(run_dir: pathlib.Path) -> dict[str, Any]:
    """The token stream's state in the run's newest checkpoint (`TokenBatches.get_state`'s
    one shard, as `train/checkpoints.py` writes it): what the run has read."""
    files = sorted(run_dir.glob("checkpoints/*/data/shard_*-of-*.json"),
                   key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else -1)
    if not files:
        raise StudyError(f"{run_dir}: no checkpoint with a data state")
    state = json.loads(files[-1].read_text())
    if "stream_digest" not in state:
        raise StudyError(f"{files[-1]}: not a token-store stream's state")
    return state


def _throughput(run_dir: pathlib.Path) -> dict[str, float | None]:
    """Training tokens/s from metrics.jsonl: the median logging interval (after the
    first, which holds the compilation) and the best one."""
    _, rates = logged_rates(run_dir)
    if not rates:
        return {"median": None, "max": None, "intervals": 0}
    return {"median": statistics.median(rates), "max": max(rates), "intervals": len(rates)}


def train_arch(config: ml_collections.ConfigDict, workdir: str, arch: str) -> dict[str, Any]:
    """Train `arch` (or resume it, or skip it when complete); its record."""
    from hybrid_jax.train.loop import train

    layout = Layout.of(workdir)
    prep = read_record(layout.prepare_record, "prepare", needed_by="train")
    check_digests(prep["digests"],
                  current_digests(layout, config.data.tokenizer, verify=False),
                  what=f"the prepared data in {layout.workdir}",
                  where="files changed since prepare.json was written")
    run_dir, rec_path = layout.run(arch), layout.train_record(arch)
    cfg = train_config(config, layout, arch)
    settings_now = _run_settings(cfg)
    if rec_path.exists():
        rec = read_record(rec_path, "train")
        check_digests(prep["digests"], rec["digests"], what=f"the {arch} run in {run_dir}",
                      where=str(rec_path))
        changed = diff_fields(rec.get("settings", {}), settings_now)
        if changed:
            raise StudyError(f"the {arch} run in {run_dir} was started with other settings ("
                             + "; ".join(changed) + "): use another --workdir or move it away")
        if rec.get("complete") and (run_dir / "final" / "model_config.json").exists():
            log.info("train %s: complete in %s (%d steps)", arch, run_dir, rec["steps"])
            return rec
    elif (run_dir / "checkpoints").exists():
        raise StudyError(f"{run_dir} holds checkpoints of a run this study did not start "
                         f"(no {rec_path.name}): move it away")
    else:
        write_record(rec_path, "train", {"arch": arch, "digests": prep["digests"],
                                          "settings": settings_now, "complete": False})
    log.info("training %s in %s", arch, run_dir)
    t0 = time.perf_counter()
    summary = train(cfg, run_dir)
    wall = time.perf_counter() - t0
    stream = _stream_state(run_dir)
    tc = cfg.train
    record = {
        "arch": arch, "digests": prep["digests"], "settings": settings_now, "complete": True,
        "layer_types": list(cfg.model.layer_types), "steps": summary.steps,
        "tokens": summary.steps * tc.batch_size * cfg.data.seq_len,
        "seq_len": cfg.data.seq_len, "batch_size": tc.batch_size, "seed": tc.seed,
        "stream_digest": stream["stream_digest"], "stream_batches": stream["batches"],
        "wall_s": wall, "tokens_per_s": _throughput(run_dir), "final_eval": summary.final_eval,
        "exports": [{"name": e.name, "step": e.step, "kind": e.kind}
                    for e in list_exports(run_dir)],
    }
    try:  # parameters and device from the trainer's summary
        extra = json.loads((run_dir / "summary.json").read_text())
        record["params"] = extra.get("params")
    except (OSError, ValueError):
        pass
    import jax

    record["device"] = str(jax.devices()[0].device_kind)
    log.info("train %s: %d steps, %s tokens in %.0f s (median %s tokens/s)", arch,
             summary.steps, f"{record['tokens']:,}", wall,
             f"{record['tokens_per_s']['median'] or 0:,.0f}")
    return write_record(rec_path, "train", record)

