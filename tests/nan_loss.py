"""A NaN loss injected at one step of the real training step, for the tests of the
loop's NaN handling (tests/train, tests/faults)."""

import jax

from hybrid_jax.train import loop as loop_lib


def poison_loss_at(monkeypatch, step: int) -> None:
    """Make `loop.make_train_step` build steps whose loss is NaN when the state reaches
    `step` (the update itself is the real one)."""
    real = loop_lib.make_train_step

    def poisoned(*args, **kwargs):
        step_fn = real(*args, **kwargs)

        def train_step(state, batch):
            state, metrics = step_fn(state, batch)
            bad = jax.numpy.where(state.step == step, jax.numpy.nan, 0.0)
            return state, {**metrics, "loss": metrics["loss"] + bad}

        return train_step

    monkeypatch.setattr(loop_lib, "make_train_step", poisoned)
