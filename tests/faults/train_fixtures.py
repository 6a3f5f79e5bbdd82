"""A training config small enough for fault-injection runs: seconds per run on CPU.

One full-attention layer of the tiny preset (compiles in half the time of a GDN +
attention pair; what is tested here does not depend on the layers), byte tokens,
32-token windows, 4 windows per step, no tagger, no in-loop evals, on the shared
corpus's Python documents.
"""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / ".." / "shared" / "data" / "corpus"


def load_lm_config(arg: str = "arch=hybrid,size=tiny"):
    spec = importlib.util.spec_from_file_location("lm_config", ROOT / "configs" / "lm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def fault_config(**sections):
    """The small config, with `sections` ({"train": {...}, ...}) applied on top."""
    if not CORPUS.is_dir():
        pytest.fail(f"the shared corpus is missing: {CORPUS} (../shared beside the checkout)")
    config = load_lm_config()
    config.model.layer_types = ("full",)
    config.data.sources = f"jsonl:{CORPUS}/python.jsonl"
    config.data.tokenizer = "bytes"
    config.data.seq_len = 32
    config.mesh.devices = 1
    config.train.update(steps=4, batch_size=4, warmup_steps=1, log_every=1,
                        checkpoint_every=2, learning_rate=3e-3)
    config.eval.update(every=0, tagger="none", max_windows=4, batch_size=4)
    for section, values in sections.items():
        config[section].update(values)
    return config
