"""`train(config, workdir)`: sharded training with exact resume, evals and exports.

Sections follow the order a run goes through: Mesh, Input, Model and optimizer,
Checkpoint restore, Evals, Update step, Loop. Everything a run writes goes to `workdir`:

    config.json              the config the run was started with
    tokenizer.model          the SentencePiece model (when trained here)
    checkpoints/<step>/      resumable training state + data iterator (checkpoints.py)
    metrics.jsonl            train metrics every `log_every` steps, evals every `every`
    tensorboard/             the same metrics for TensorBoard
    stable_<b>x/, anneal_<b>x/, step_<n>/, final/   parameter exports for scoring

Running `train` again on the same workdir resumes from the newest readable checkpoint.

Every check of the config runs first, before anything is built or compiled
(`config_checks.py`: one-line `ConfigError`s naming the field). A full disk ends the run
with a `DiskFullError` naming the path, wherever the write was (metrics, checkpoints,
exports); a checkpoint that could not be written stops it (`CheckpointSaveError`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import pathlib
import signal
import time

import jax
import ml_collections
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from hybrid_jax.configlib import model_config
from hybrid_jax.data.batch import Batch
from hybrid_jax.data.pipeline import to_batch, training_batches
from hybrid_jax.data.sources import load_documents, split_held_out
from hybrid_jax.data.tokenizers import SentencePieceTokenizer, load_tokenizer, train_sentencepiece
from hybrid_jax.errors import DiskFullError, UserError, is_disk_full
from hybrid_jax.models.config import ConfigError
from hybrid_jax.models.lm import LM, abstract_lm, count_params
from hybrid_jax.sharding import (
    activation_sharding,
    batch_sharding,
    create_sharded_params,
    make_mesh,
)
from hybrid_jax.train import schedules
from hybrid_jax.train.checkpoints import Checkpointer, export_params
from hybrid_jax.train.config_checks import check_train_config
from hybrid_jax.train.evals import build_eval_set, evaluate, tagger_content_fn
from hybrid_jax.train.flops import peak_flops_per_device, training_flops_per_token
from hybrid_jax.train.metrics import MetricWriter
from hybrid_jax.train.optimizer import make_optimizer
from hybrid_jax.train.state import TrainState
from hybrid_jax.train.step import make_eval_step, make_train_step

log = logging.getLogger("hybrid_jax.train")


class NonFiniteLossError(UserError, RuntimeError):
    """Training produced a NaN or infinite loss; the message names the step, the batch
    and the checkpoint to go back to."""


@dataclasses.dataclass
class TrainSummary:
    workdir: pathlib.Path
    steps: int
    final_eval: dict[str, float]
    exports: list[pathlib.Path]


def _tokenizer(config: ml_collections.ConfigDict, workdir: pathlib.Path, texts):
    spec = config.data.tokenizer
    if spec != "sentencepiece":
        return load_tokenizer(spec)
    path = workdir / "tokenizer.model"
    if path.exists():
        return SentencePieceTokenizer.load(path)
    tok = train_sentencepiece(texts, config.data.vocab_size, max_chars=config.data.tokenizer_chars)
    if jax.process_index() == 0:
        tok.save(path)
    return tok


def _global_batch(element: dict[str, np.ndarray], sharding) -> Batch:
    """This process's rows -> one global Batch of jax arrays sharded over the mesh."""
    local = to_batch(element)
    if jax.process_count() == 1:
        return jax.device_put(local, sharding)
    return Batch(*(jax.make_array_from_process_local_data(sharding, np.asarray(x))
                   for x in local))


def train(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> TrainSummary:
    """Train (or resume) the run of `config` in `workdir`; see the module docstring."""
    check_train_config(config)  # before anything is written, built or compiled
    workdir = pathlib.Path(workdir).absolute()
    try:
        return _train(config, workdir)
    except UserError:
        raise
    except Exception as e:  # a full disk anywhere: one clear error naming the path
        if is_disk_full(e):
            where = getattr(e, "filename", None) or workdir
            raise DiskFullError(f"{where}: no space left on device ({type(e).__name__}); "
                                "free space, then rerun to resume from the last "
                                "checkpoint") from e
        raise


def _train(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> TrainSummary:
    workdir.mkdir(parents=True, exist_ok=True)
    tc, dc, ec = config.train, config.data, config.eval
    if jax.process_index() == 0:
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")

    # ------------------------------------------------------------------ Mesh
    mesh_shape = config.mesh.to_dict()
    num_devices = mesh_shape.pop("devices", 0)  # 0: every device; N: the first N
    mesh = make_mesh(mesh_shape, jax.devices()[:num_devices] if num_devices else None)
    rules = dict(config.get("sharding_rules", {})) or None
    rules_kw = {} if rules is None else {"rules": rules}

    # ------------------------------------------------------------------ Input
    seq_len = dc.seq_len
    if dc.get("tokens"):  # pre-tokenised (data/token_batches.py): nothing tokenised here
        from hybrid_jax.data.token_batches import pretokenized_input

        source = pretokenized_input(dc, seq_len=seq_len, batch_size=tc.batch_size,
                                    seed=tc.seed, process_index=jax.process_index(),
                                    process_count=jax.process_count())
        iterator, tokenizer = source.batches, source.tokenizer
        held_docs, stats = source.held_docs, source.stats
    else:
        docs, stats = load_documents(dc.sources)
        train_docs, held_docs = split_held_out(docs, dc.held_out_every)
        tokenizer = _tokenizer(config, workdir, (d.text for d in train_docs))
        iterator = training_batches(
            train_docs, tokenizer, seq_len=seq_len, batch_size=tc.batch_size, seed=tc.seed,
            num_shards=dc.shards, process_index=jax.process_index(),
            process_count=jax.process_count())
    cfg = model_config(config)
    vocab = cfg.vocab_size if cfg.vocab_size >= tokenizer.vocab_size else None
    if vocab is None:
        vocab = -(-tokenizer.vocab_size // 128) * 128  # pad to a multiple of 128
        log.info("model vocab_size set to %d for a tokenizer of %d", vocab, tokenizer.vocab_size)
        cfg = cfg.replace(vocab_size=vocab)

    # ------------------------------------------------------------------ Schedule
    n_params = count_params(abstract_lm(cfg))  # shapes only: nothing is compiled yet
    tokens_per_step = tc.batch_size * seq_len
    windows: list[schedules.DecayWindow] = []
    total_steps = tc.steps
    try:
        if tc.schedule == "wsd_s":
            unit = tc.budget_unit_tokens or 20.0 * n_params  # Chinchilla: 20 tokens / param
            ends = schedules.budget_steps(tuple(tc.budgets), unit, tokens_per_step)
            windows = schedules.decay_windows(ends, tuple(tc.budgets), tc.decay_fraction,
                                              tc.warmup_steps)
            total_steps = ends[-1]
        schedule = schedules.make_schedule(tc.schedule, peak=tc.learning_rate,
                                           steps=total_steps, warmup_steps=tc.warmup_steps,
                                           decay_fraction=tc.decay_fraction, windows=windows)
    except ValueError as e:  # budgets / warmup that leave no room for a schedule
        raise ConfigError(f"train.schedule={tc.schedule!r}, train.budgets={tuple(tc.budgets)}, "
                          f"train.warmup_steps={tc.warmup_steps}: {e}") from None

    # ------------------------------------------------------------------ Model and optimizer
    graphdef, params = create_sharded_params(lambda: LM(cfg, rngs=nnx.Rngs(tc.seed)), mesh,
                                             **rules_kw)
    tx = make_optimizer(schedule, weight_decay=tc.weight_decay, grad_clip=tc.grad_clip)
    state = jax.jit(lambda p: TrainState.create(p, tx))(params)
    state_sharding = jax.tree.map(lambda x: x.sharding, state)
    log.info("model: %s parameters, layers %s; %d steps of %d tokens on mesh %s",
             f"{n_params:,}", "".join(lt[0] for lt in cfg.layer_types), total_steps,
             tokens_per_step, dict(mesh.shape))

    # ------------------------------------------------------------------ Checkpoint restore
    ckpt = Checkpointer(workdir / "checkpoints", keep=tc.keep_checkpoints)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                            state)
    restored = ckpt.restore_latest(abstract, iterator)
    if restored is not None:
        state = restored
    start = int(jax.device_get(state.step))
    writer = MetricWriter(workdir, resume_step=start)

    # ------------------------------------------------------------------ Evals
    content_fn = None if ec.tagger == "none" else tagger_content_fn(ec.tagger)
    eval_set = build_eval_set(held_docs, tokenizer, seq_len, content_fn=content_fn,
                              max_windows=ec.max_windows)
    bsh = batch_sharding(mesh, **rules_kw)
    eval_nll = make_eval_step(graphdef, batch_sharding=bsh)

    def run_eval(params) -> dict[str, float]:
        with activation_sharding(mesh, **rules_kw):
            return evaluate(lambda b: eval_nll(params, b), eval_set, batch_size=ec.batch_size)

    # ------------------------------------------------------------------ Update step
    step_fn = make_train_step(graphdef, tx, schedule=schedule, z_loss=tc.z_loss,
                              microbatches=tc.microbatches, loss_chunk=tc.loss_chunk,
                              state_sharding=state_sharding,
                              batch_sharding=bsh)
    flops_per_token = training_flops_per_token(cfg, seq_len)
    peak = peak_flops_per_device()
    window_starts = {w.start: w for w in windows}
    window_ends = {w.end: w for w in windows}
    exports: list[pathlib.Path] = []

    def export(name: str, step: int, params, **info) -> None:
        path = workdir / name
        if (path / "model_config.json").exists():
            return  # written before a resume
        export_params(path, cfg, params, source={"workdir": str(workdir), "step": step, **info})
        exports.append(path)

    def eval_and_export(step: int, params, name: str | None, **info) -> dict[str, float]:
        results = run_eval(params)
        writer.write(step, results, prefix=f"eval/{name + '/' if name else ''}")
        if name:
            export(name, step, params, **info)
        return results

    # ------------------------------------------------------------------ Loop
    pending: list[tuple[int, dict[str, jax.Array]]] = []
    t_last, tokens_since = time.perf_counter(), 0
    bar = tqdm(total=total_steps, initial=start, desc="train", unit="step",
               disable=jax.process_index() != 0, dynamic_ncols=True)

    def flush(step: int) -> None:
        """Fetch buffered metrics, stop on a non-finite loss, write the last row."""
        nonlocal t_last, tokens_since
        if not pending:
            return
        fetched = jax.device_get(pending)
        pending.clear()
        for s, m in fetched:
            if not (math.isfinite(float(m["loss"])) and math.isfinite(float(m["grad_norm"]))):
                ckpt.wait()  # the last checkpoint may still be being written (and digested)
                raise NonFiniteLossError(
                    f"non-finite loss at step {s + 1} (loss {float(m['loss'])}, grad norm "
                    f"{float(m['grad_norm'])}), batch #{s} of the data stream (seed "
                    f"{tc.seed}); {ckpt.describe_latest()}")
        s, m = fetched[-1]
        now = time.perf_counter()
        tok_s = tokens_since / max(now - t_last, 1e-9)
        row = {k: float(v) for k, v in m.items()}
        row["tokens_per_s"] = tok_s
        if peak is not None:
            row["mfu"] = tok_s * flops_per_token / (peak * jax.device_count())
        writer.write(s + 1, row, prefix="train/")
        bar.set_postfix(loss=f"{row['loss']:.3f}", tok_s=f"{tok_s:,.0f}")
        t_last, tokens_since = now, 0

    final_eval: dict[str, float] = {}
    with activation_sharding(mesh, **rules_kw):
        for step in range(start, total_steps):
            if step in window_starts:  # the stable model a WSD-S decay branches from
                flush(step)
                eval_and_export(step, state.params, f"stable_{window_starts[step].budget:g}x",
                                budget=window_starts[step].budget)
            batch = _global_batch(next(iterator), bsh)
            state, metrics = step_fn(state, batch)
            pending.append((step, metrics))
            ckpt.poll()  # a background save that failed stops the run here
            tokens_since += tokens_per_step
            done = step + 1
            bar.update(1)
            if done % tc.log_every == 0 or done == total_steps:
                flush(done)
            if done in window_ends:
                flush(done)
                final_eval = eval_and_export(done, state.params,
                                             f"anneal_{window_ends[done].budget:g}x",
                                             budget=window_ends[done].budget)
            elif ec.every and done % ec.every == 0:
                flush(done)
                final_eval = eval_and_export(done, state.params, None)
            if tc.export_every and done % tc.export_every == 0 and done != total_steps:
                export(f"step_{done}", done, state.params)
            if done % tc.checkpoint_every == 0 or done == total_steps:
                flush(done)  # never checkpoint a state whose loss was not finite
                ckpt.save(state, iterator)
            if tc.kill_at_step and done == tc.kill_at_step:
                ckpt.wait()  # simulate preemption right after a checkpoint lands
                os.kill(os.getpid(), signal.SIGKILL)
    bar.close()
    flush(total_steps)
    if not final_eval and total_steps > start:
        final_eval = eval_and_export(total_steps, state.params, None)
    export("final", total_steps, state.params)
    ckpt.close()
    writer.close()
    summary = {"steps": total_steps, "final_eval": final_eval, "params": n_params,
               "source_stats": stats.summary()}
    if jax.process_index() == 0:
        (workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return TrainSummary(workdir, total_steps, final_eval, exports)

