"""Learning-rate schedules: cosine, warmup-stable-decay (WSD) and WSD-S.

All start with a linear warmup from 0 to the peak over `warmup_steps`.

    cosine  cosine decay from the peak to `final_fraction` x peak at `steps`.
    wsd     the peak until the last `decay_fraction` of the run, then a linear decay to 0.
    wsd_s   the study's schedule (OH section 4.1; Wen et al. 2024, arXiv 2410.05192):
            one run at the peak, with a decay to 0 over the last `decay_fraction` of
            each token budget (e.g. 0.5x, 1x, 2x, 4x, 8x Chinchilla). At each budget the
            annealed model is saved as its own checkpoint; the run then goes back to the
            peak learning rate from the annealed weights. The step where a decay starts
            is the "stable" point the annealed checkpoint branched from.

Steps count completed optimizer updates: the update that turns step s into s + 1 uses
lr(s). A decay window [start, end) ends with the annealed model after `end` updates.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class DecayWindow:
    """Updates start..end-1 decay linearly from the peak towards 0."""

    start: int  # the stable checkpoint is the model after `start` updates
    end: int  # the annealed checkpoint is the model after `end` updates
    budget: float  # the budget's multiple of the unit (e.g. 2.0 = 2x Chinchilla)


def budget_steps(budgets: tuple[float, ...], unit_tokens: float, tokens_per_step: int) -> list[int]:
    """Update counts at which each budget (multiple of `unit_tokens`) is reached."""
    if unit_tokens <= 0 or tokens_per_step <= 0:
        raise ValueError(f"unit_tokens and tokens_per_step must be > 0, got {unit_tokens}, "
                         f"{tokens_per_step}")
    steps = [max(1, round(b * unit_tokens / tokens_per_step)) for b in budgets]
    if sorted(set(steps)) != steps:
        raise ValueError(f"budgets {budgets} give steps {steps}: they must be increasing and "
                         "distinct (raise the unit or lower the batch)")
    return steps


def decay_windows(ends: list[int], budgets: tuple[float, ...], decay_fraction: float,
                  warmup_steps: int) -> list[DecayWindow]:
    """WSD-S windows: the last `decay_fraction` of each budget, after warmup, disjoint."""
    windows, previous_end = [], warmup_steps
    for end, budget in zip(ends, budgets, strict=True):
        length = max(1, math.ceil(decay_fraction * end))
        start = max(end - length, previous_end)
        if start >= end:
            raise ValueError(f"budget {budget}x ends at step {end}, inside the warmup or the "
                             f"previous decay (ending at {previous_end}): no room to decay")
        windows.append(DecayWindow(start, end, budget))
        previous_end = end
    return windows


def make_schedule(
    kind: str,
    *,
    peak: float,
    steps: int,
    warmup_steps: int,
    decay_fraction: float = 0.05,
    final_fraction: float = 0.1,
    windows: list[DecayWindow] | None = None,
):
    """lr(step) as a jnp function of an integer step (for optax)."""
    if kind not in ("cosine", "wsd", "wsd_s"):
        raise ValueError(f"schedule {kind!r} is not one of cosine, wsd, wsd_s")
    if steps < 1 or not 0 <= warmup_steps < steps:
        raise ValueError(f"need 0 <= warmup_steps ({warmup_steps}) < steps ({steps})")
    if kind == "wsd":
        windows = [DecayWindow(max(warmup_steps, steps - max(1, math.ceil(decay_fraction * steps))),
                               steps, 1.0)]
    elif kind == "wsd_s" and not windows:
        raise ValueError("wsd_s needs its decay windows (from the token budgets)")
    starts = np.asarray([w.start for w in windows or []], np.float32)
    ends = np.asarray([w.end for w in windows or []], np.float32)

    def schedule(step):
        s = jnp.asarray(step, jnp.float32)
        warm = peak * jnp.minimum(1.0, (s + 1.0) / max(warmup_steps, 1))
        if kind == "cosine":
            frac = jnp.clip((s - warmup_steps) / max(steps - warmup_steps, 1), 0.0, 1.0)
            cos = final_fraction + (1 - final_fraction) * 0.5 * (1 + jnp.cos(jnp.pi * frac))
            return jnp.where(s < warmup_steps, warm, peak * cos)
        lr = jnp.where(s < warmup_steps, warm, peak)
        for a, b in zip(starts, ends):
            inside = (s >= a) & (s < b)
            lr = jnp.where(inside, peak * (b - s) / (b - a + 1.0), lr)
        return lr

    return schedule
