"""The `convert` app end to end: HF -> hybrid_jax with --verify, and back to HF."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from .. import processes

ROOT = pathlib.Path(__file__).resolve().parents[2]


def char_tokenizer(directory: pathlib.Path) -> pathlib.Path:
    """A character-level tokenizer.json whose ids fit the tiny models' 256-token vocab."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {"<unk>": 0, "<|pad|>": 1, "<|endoftext|>": 2}
    vocab.update({c: i + 3 for i, c in enumerate(chars)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(["<|endoftext|>", "<|pad|>"])
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    return directory


def run_app(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return processes.run([sys.executable, "-m", "hybrid_jax.apps.convert", *args], env=env,
                         timeout=300)


@pytest.fixture
def hf_with_tokenizer(hybrid_dir, tmp_path) -> pathlib.Path:
    d = tmp_path / "hf"
    d.mkdir()
    for f in hybrid_dir.iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    char_tokenizer(d)
    return d


def test_convert_verify_and_export(hf_with_tokenizer, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("The quick brown fox jumps over the lazy dog, twice over.\n\n"
                       "def f(x):\n    return 2 * x + 1  # a second document, EOS before it\n")
    ckpt = tmp_path / "ckpt"
    p = run_app(f"--input_dir={hf_with_tokenizer}", f"--output_dir={ckpt}", "--dtype=float32",
                f"--verify={prompts}")
    assert p.returncode == 0, p.stdout + p.stderr[-4000:]
    assert "parity: OK" in p.stdout and "peak host memory" in p.stdout
    assert json.loads((ckpt / "model_config.json").read_text())["model"]["vocab_size"] == 256

    hf_out = tmp_path / "hf_out"
    p = run_app("--direction=jax_to_hf", f"--input_dir={ckpt}", f"--output_dir={hf_out}",
                f"--tokenizer_dir={hf_with_tokenizer}", f"--verify={prompts}")
    assert p.returncode == 0, p.stdout + p.stderr[-4000:]
    assert "parity: OK" in p.stdout
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        f.name for f in hf_out.iterdir()}

    p = run_app(f"--input_dir={hf_with_tokenizer}", f"--output_dir={ckpt}")
    assert p.returncode != 0 and "exists" in p.stderr  # no silent overwrite
