"""The probe app scores synthetic probes with saved checkpoints exactly as the library
does with the models in memory."""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pandas as pd
from flax import nnx

from hybrid_jax.analysis.probes import make_probes, score_probes
from hybrid_jax.convert.checkpoint import save_model
from hybrid_jax.data.tokenizers import load_tokenizer
from hybrid_jax.scoring.texts import text_score_fn

from .. import processes
from .test_scoring import small_model

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_probe_app_matches_the_library(tmp_path):
    tok = load_tokenizer("bytes")
    score_fns, specs = {}, []
    for seed, arch in enumerate(("transformer", "recurrent")):
        model = small_model(arch, tok.vocab_size, seed)
        save_model(tmp_path / arch, model)
        graphdef, params = nnx.split(model, nnx.Param)
        score_fns[arch] = text_score_fn(graphdef, params, tok)
        specs.append(f"{arch}={tmp_path / arch}")
    out = tmp_path / "probes"
    run = processes.run(
        [sys.executable, "-m", "hybrid_jax.apps.probe", f"--checkpoints={','.join(specs)}",
         "--tokenizer=bytes", f"--out={out}", "--distances=8,16", "--per_distance=1"],
        timeout=380)
    assert run.returncode == 0, run.stderr[-3000:]
    got = pd.read_parquet(out / "probes.parquet")
    want = score_probes(make_probes(seed=0, distances=(8, 16), per_distance=1), score_fns)
    assert len(got) == len(want) > 0
    numeric = want.select_dtypes("number").columns
    np.testing.assert_allclose(got[numeric].to_numpy(float), want[numeric].to_numpy(float),
                               rtol=1e-5, atol=1e-5)
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["model"]) == {"transformer", "recurrent"}
    assert "transformer" in run.stdout and "summary.csv" in run.stdout

    bad = processes.run(
        [sys.executable, "-m", "hybrid_jax.apps.probe", f"--checkpoints={tmp_path}",
         "--tokenizer=bytes", f"--out={out}"], timeout=300)
    assert bad.returncode != 0 and "is not name=directory" in bad.stderr
