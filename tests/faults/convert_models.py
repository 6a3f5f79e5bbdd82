"""Shared helpers of the conversion fault tests (tests/faults/test_convert_*.py).

The tiny transformers models are those of tests/convert/conftest.py (built locally,
perturbed so that every weight matters); this module adds directory helpers. Kept out
of a conftest.py so the other fault suites sharing tests/faults/ are not affected.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np

from tests.convert.conftest import VOCAB, build, tokens  # noqa: F401  (re-exported)

YARN = dict(rope_type="yarn", factor=8.0, original_max_position_embeddings=16,
            beta_fast=32.0, beta_slow=1.0, attention_factor=1.2079441541679836)


def save(model: Any, directory: pathlib.Path) -> pathlib.Path:
    """`save_pretrained` of a transformers model into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    return directory


def edit_config(directory: pathlib.Path, **changes: Any) -> dict[str, Any]:
    """Rewrite directory/config.json with `changes` (a value None deletes the key)."""
    path = directory / "config.json"
    cfg = json.loads(path.read_text())
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    path.write_text(json.dumps(cfg, indent=2))
    return cfg


def max_abs_logit(hf_model: Any, jax_model: Any, toks: np.ndarray) -> float:
    """max |logit(transformers) - logit(hybrid_jax)| on `toks` [b, t] (fp32)."""
    from hybrid_jax.convert import parity

    a = parity.hf_layer_outputs(hf_model, toks).logits
    b = parity.jax_layer_outputs(jax_model, toks).logits
    return float(np.max(np.abs(a.astype(np.float64) - b)))
