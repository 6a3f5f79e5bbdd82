"""Numerical parity of a converted model against `transformers`: logits and every layer.

Both models run the same tokens. The report gives max |delta logit| and, per decoder
layer, max |delta| of the layer's output (the residual stream after the block) in two
readings:

    chained    each model runs end to end; differences accumulate from layer to layer.
    isolated   every hybrid_jax block is fed the transformers input of that layer, so
               the number measures that layer's conversion alone.

Why both: a post-norm attention block normalises a small attention output, which
amplifies whatever difference its input already carries. In fp32 the chained numbers
of transformers itself, against its own float64 run, are as large as hybrid_jax's
(tests/convert measure this); the isolated numbers are the per-layer check.

transformers' `output_hidden_states` drops the last layer's raw output (its last entry
is already final-normed), so HF layer inputs and outputs are captured with hooks.
The HF model runs on CPU with `attn_implementation="eager"`. Keep `fla` and
`causal_conv1d` uninstalled where this runs: transformers would switch to their
Triton kernels (reference/olmo_architectures.md section 8).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hybrid_jax.typing import Tokens

LOGIT_TOL_FP32 = 1e-4
HIDDEN_TOL_FP32 = 1e-5


@dataclasses.dataclass
class LayerOutputs:
    """One model's activations on a batch: logits [b, t, vocab], per-layer inputs and
    outputs [b, t, d] (float32 numpy), final-normed hidden states [b, t, d]."""

    logits: np.ndarray
    inputs: list[np.ndarray]
    outputs: list[np.ndarray]
    final_norm: np.ndarray


@dataclasses.dataclass
class ParityReport:
    """Differences between hybrid_jax and transformers on one batch of tokens."""

    max_abs_logit: float
    per_layer: list[float]  # chained: max |delta| of each block's output
    per_layer_isolated: list[float]  # each block fed transformers' input of that layer
    final_norm: float  # chained, after the final RMSNorm
    layer_types: tuple[str, ...]
    tokens: int  # tokens compared (batch x sequence)
    logit_scale: float  # max |logit| of transformers, for a relative reading

    def ok(self, logit_tol: float = LOGIT_TOL_FP32, hidden_tol: float = HIDDEN_TOL_FP32) -> bool:
        """Logits within `logit_tol` and every isolated layer within `hidden_tol`."""
        return (self.max_abs_logit <= logit_tol
                and all(d <= hidden_tol for d in self.per_layer_isolated))

    def format(self) -> str:
        """A human-readable table."""
        lines = [f"parity over {self.tokens} tokens: max |dlogit| = {self.max_abs_logit:.3e} "
                 f"(max |logit| {self.logit_scale:.2f})",
                 "  layer type   max |dh| isolated   max |dh| chained"]
        for i, lt in enumerate(self.layer_types):
            lines.append(f"  {i:5d} {lt:<5} {self.per_layer_isolated[i]:17.3e}"
                         f" {self.per_layer[i]:18.3e}")
        lines.append(f"  final norm {'':17} {self.final_norm:18.3e}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------- hybrid_jax side
def jax_layer_outputs(model: Any, tokens: Tokens,
                      layer_inputs: list[np.ndarray] | None = None) -> LayerOutputs:
    """hybrid_jax activations of `model` (an `LM`) on unpacked rows `tokens` [b, t].

    Runs the blocks one by one, as `LM.hidden_states` does for rows without segment
    ids (positions 0..t-1). With `layer_inputs`, block i is fed `layer_inputs[i]`
    instead of block i-1's output (the isolated reading); logits and the final norm
    are then computed from the last block's output.
    """
    from flax import nnx

    tokens = jnp.asarray(tokens)
    graphdef, state = nnx.split(model)
    feed = None if layer_inputs is None else [jnp.asarray(x) for x in layer_inputs]

    @jax.jit
    def run(state, tokens, feed):
        m = nnx.merge(graphdef, state)
        positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
        x = jnp.take(m.embed[...], tokens, axis=0).astype(m.cfg.compute_dtype)
        ins, outs = [], []
        for i, block in enumerate(m.layers):
            if feed is not None:
                # "+ 0 * x" makes block i wait for block i-1 (the value is feed[i]
                # exactly while the activations are finite), so that XLA runs the
                # blocks one after another as in the chained reading. With the blocks
                # independent, XLA:CPU ran them concurrently and the execution hung
                # now and then (jax 0.10.2 on 2 cores: every worker thread idle, the
                # caller waiting; 2 of 3 runs of the hybrid parity test with
                # OMP_NUM_THREADS=1, 0 of 5 with this). An optimization_barrier does
                # not order them (6 of 6 hung).
                x = feed[i].astype(m.cfg.compute_dtype) + 0 * x
            ins.append(x)
            x = block(x, positions=positions, segment_ids=None)
            outs.append(x)
        h = m.final_norm(x)
        return m.logits(h), ins, outs, h

    logits, ins, outs, h = run(state, tokens, feed)

    def f32(a: jax.Array) -> np.ndarray:
        return np.asarray(a, np.float32)

    return LayerOutputs(f32(logits), [f32(a) for a in ins], [f32(a) for a in outs], f32(h))


# ---------------------------------------------------------------------------- transformers side
def load_transformers_model(hf_dir: str | os.PathLike, *, dtype: str = "float32") -> Any:
    """A transformers causal LM from a local directory (never the hub), eager attention."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        pathlib.Path(hf_dir), dtype=getattr(torch, dtype), attn_implementation="eager",
        local_files_only=True)
    return model.eval()


def hf_layer_outputs(model: Any, tokens: Tokens) -> LayerOutputs:
    """Activations of a transformers Olmo 3 / Olmo Hybrid model, captured by hooks."""
    import torch

    captured: dict[str, np.ndarray] = {}

    def as_np(t: Any) -> np.ndarray:
        t = t[0] if isinstance(t, tuple) else t
        return t.detach().float().cpu().numpy()

    def pre_hook(key: str):
        def hook(module, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            captured[key] = as_np(x)
        return hook

    def post_hook(key: str):
        def hook(module, args, output):
            captured[key] = as_np(output)
        return hook

    hooks = []
    for i, layer in enumerate(model.model.layers):
        hooks.append(layer.register_forward_pre_hook(pre_hook(f"in{i}"), with_kwargs=True))
        hooks.append(layer.register_forward_hook(post_hook(f"out{i}")))
    hooks.append(model.model.norm.register_forward_hook(post_hook("norm")))
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            out = model(torch.as_tensor(np.asarray(tokens), dtype=torch.long, device=device),
                        use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    n = len(model.model.layers)
    return LayerOutputs(out.logits.float().cpu().numpy(), [captured[f"in{i}"] for i in range(n)],
                        [captured[f"out{i}"] for i in range(n)], captured["norm"])


# ---------------------------------------------------------------------------- comparison
def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def compare(hf_model: Any, jax_model: Any, tokens: Tokens) -> ParityReport:
    """Run both models on `tokens` [b, t] and report their differences."""
    tokens = np.asarray(tokens)
    hf = hf_layer_outputs(hf_model, tokens)
    chained = jax_layer_outputs(jax_model, tokens)
    isolated = jax_layer_outputs(jax_model, tokens, layer_inputs=hf.inputs)
    if hf.logits.shape != chained.logits.shape:
        raise ValueError(f"logit shapes differ: transformers {hf.logits.shape}, "
                         f"hybrid_jax {chained.logits.shape}")
    return ParityReport(
        max_abs_logit=_max_abs(hf.logits, chained.logits),
        per_layer=[_max_abs(a, b) for a, b in zip(hf.outputs, chained.outputs, strict=True)],
        per_layer_isolated=[_max_abs(a, b) for a, b in zip(hf.outputs, isolated.outputs,
                                                           strict=True)],
        final_norm=_max_abs(hf.final_norm, chained.final_norm),
        layer_types=tuple(jax_model.cfg.layer_types),
        tokens=int(tokens.size),
        logit_scale=float(np.max(np.abs(hf.logits))),
    )


def prompt_tokens(prompt_file: str | os.PathLike, tokenizer: Any, *,
                  max_tokens: int = 2048) -> np.ndarray:
    """[1, t] token ids of a prompt file: documents separated by blank lines, each
    followed by EOS, no BOS; truncated to `max_tokens`."""
    text = pathlib.Path(prompt_file).read_text(encoding="utf-8")
    docs = [d.strip() for d in text.split("\n\n") if d.strip()]
    if not docs:
        raise ValueError(f"{prompt_file}: no text to verify on")
    ids = tokenizer.encode_documents(docs).ids
    return ids[None, :max_tokens]


def verify(
    hf_dir: str | os.PathLike,
    jax_model: Any,
    tokens: Tokens,
    *,
    hf_dtype: str = "float32",
) -> ParityReport:
    """Parity of `jax_model` against the transformers model stored in `hf_dir`."""
    return compare(load_transformers_model(hf_dir, dtype=hf_dtype), jax_model, tokens)
