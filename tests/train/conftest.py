"""Shared fixtures for training tests: a small, fast config on the shared corpus."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / ".." / "shared" / "data" / "corpus"


def load_config(arg: str):
    spec = importlib.util.spec_from_file_location("lm_config", ROOT / "configs" / "lm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


@pytest.fixture
def small_config():
    """Hybrid tiny, byte tokens, 64-token windows, no tagger: seconds per run."""
    if not CORPUS.is_dir():
        pytest.fail(f"the shared corpus is missing: {CORPUS} (../shared beside the checkout)")

    def make(arch: str = "hybrid", **sections):
        config = load_config(f"arch={arch},size=tiny")
        config.data.sources = f"jsonl:{CORPUS}/python.jsonl"
        config.data.tokenizer = "bytes"
        config.data.seq_len = 64
        config.train.update(steps=20, batch_size=8, warmup_steps=5, log_every=1,
                            checkpoint_every=10, learning_rate=3e-3)
        config.eval.update(every=0, tagger="none", max_windows=8, batch_size=8)
        for section, values in sections.items():
            config[section].update(values)
        return config

    return make
