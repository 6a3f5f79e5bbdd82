"""Issue 24, defect 3 (outputs): --overwrite never deletes an input or a directory that is
not ours, a failed --verify publishes nothing, and the round trip HF -> hybrid_jax -> HF
keeps the token ids, max_position_embeddings and generation_config.json.

Before (274948b): `--input_dir=X --output_dir=X --overwrite` replaced the source, a
failed --verify left its output behind, the round trip wrote bos null, max_position
65536 / the YaRN product and no generation_config.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import sys

import pytest

from hybrid_jax.convert import checkpoint, parity, pipeline
from hybrid_jax.convert.outputs import OutputExistsError, UnsafeOutputError
from hybrid_jax.errors import UserError
from tests import processes
from tests.convert.test_app import ROOT, char_tokenizer

from .convert_models import build, edit_config, save

PROMPTS = "The quick brown fox jumps over the lazy dog.\n\nA second document, shorter.\n"


def tree_digest(directory: pathlib.Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under `directory` (its exact content)."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def hf_src(tmp_path_factory) -> pathlib.Path:
    """A tiny Olmo 3 HF directory with tokenizer, token ids and a generation config of
    its own (values no default would give)."""
    d = save(build("olmo3", seed=6, max_position_embeddings=1024, bos_token_id=0),
             tmp_path_factory.mktemp("olmo3_src"))
    char_tokenizer(d)
    (d / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 0, "eos_token_id": [2, 5], "pad_token_id": 1, "max_new_tokens": 7,
         "do_sample": True, "temperature": 0.6}))
    return d


@pytest.fixture(scope="module")
def ckpt_src(hf_src, tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("ckpt") / "ckpt"
    checkpoint.convert_hf_checkpoint(hf_src, out, dtype="float32")
    return out


@pytest.fixture
def prompts(tmp_path) -> pathlib.Path:
    p = tmp_path / "prompts.txt"
    p.write_text(PROMPTS)
    return p


# ---------------------------------------------------------------------------- refusals
def test_app_refuses_output_equal_to_input(hf_src, tmp_path):
    """The issue's reproduction: the source survives byte for byte, exit != 0."""
    src = tmp_path / "src"
    shutil.copytree(hf_src, src)
    before = tree_digest(src)
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = processes.run([sys.executable, "-m", "hybrid_jax.apps.convert", f"--input_dir={src}",
                       f"--output_dir={src}", "--overwrite"], env=env, timeout=300)
    assert p.returncode != 0
    assert "is the input" in p.stderr
    assert tree_digest(src) == before


@pytest.mark.parametrize("case", ["same", "symlink", "contains", "inside", "prompt inside"])
@pytest.mark.parametrize("direction", ["hf_to_jax", "jax_to_hf"])
def test_output_overlapping_an_input_is_refused(hf_src, ckpt_src, tmp_path, prompts, case,
                                                direction):
    src = tmp_path / "in" / "model"
    shutil.copytree(hf_src if direction == "hf_to_jax" else ckpt_src, src)
    before = tree_digest(tmp_path / "in")
    verify = None
    if case == "same":
        out = src
    elif case == "symlink":
        out = tmp_path / "link"
        out.symlink_to(src, target_is_directory=True)
    elif case == "contains":
        out = tmp_path / "in"
    elif case == "inside":
        out = src / "converted"
    else:
        out = tmp_path / "out"
        out.mkdir()
        verify = out / "prompts.txt"
        shutil.copy(prompts, verify)
    with pytest.raises(UnsafeOutputError, match="is the input|contains the input|inside the"):
        pipeline.run_conversion(direction, src, out, overwrite=True, verify=verify,
                                dtype="float32")
    assert tree_digest(tmp_path / "in") == before


def test_overwrite_replaces_only_outputs_of_ours(hf_src, ckpt_src, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("my thesis")
    with pytest.raises(UnsafeOutputError, match="not an output of hybrid_jax") as e:
        pipeline.run_conversion("hf_to_jax", hf_src, foreign, overwrite=True)
    assert isinstance(e.value, UserError) and "\n" not in str(e.value)
    assert (foreign / "notes.txt").read_text() == "my thesis"
    with pytest.raises(OutputExistsError, match="exists"):  # ours, but no --overwrite
        pipeline.run_conversion("hf_to_jax", hf_src, ckpt_src)
    # An empty directory and an output of ours (checkpoint / HF export) are replaced.
    empty = tmp_path / "empty"
    empty.mkdir()
    pipeline.run_conversion("hf_to_jax", hf_src, empty, overwrite=True, dtype="float32")
    assert checkpoint.load_checkpoint_config(empty).vocab_size == 256
    pipeline.run_conversion("hf_to_jax", hf_src, empty, overwrite=True, dtype="bfloat16")
    assert checkpoint.load_checkpoint_config(empty).param_dtype == "bfloat16"
    hf_out = tmp_path / "hf_out"
    pipeline.run_conversion("jax_to_hf", ckpt_src, hf_out)
    pipeline.run_conversion("jax_to_hf", ckpt_src, hf_out, overwrite=True, dtype="bfloat16")
    assert json.loads((hf_out / "config.json").read_text())["dtype"] == "bfloat16"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "foreign", "hf_out"]


# ---------------------------------------------------------------------------- --verify
@pytest.mark.parametrize("direction", ["hf_to_jax", "jax_to_hf"])
def test_failed_verify_publishes_nothing(hf_src, ckpt_src, tmp_path, prompts, monkeypatch,
                                         direction):
    src = hf_src if direction == "hf_to_jax" else ckpt_src
    tok = hf_src if direction == "jax_to_hf" else None
    monkeypatch.setattr(parity.ParityReport, "ok", lambda self, *a, **k: False)
    out = tmp_path / "out"
    with pytest.raises(pipeline.ParityError, match="not published, nothing was written") as e:
        pipeline.run_conversion(direction, src, out, dtype="float32", verify=prompts,
                                tokenizer_dir=tok)
    assert "\n" not in str(e.value) and isinstance(e.value, UserError)
    assert list(tmp_path.iterdir()) == [prompts]  # no output, no staging left over
    # An existing output of ours is kept, untouched, when the new one fails.
    monkeypatch.undo()
    pipeline.run_conversion(direction, src, out, dtype="float32", tokenizer_dir=tok)
    before = tree_digest(out)
    monkeypatch.setattr(parity.ParityReport, "ok", lambda self, *a, **k: False)
    with pytest.raises(pipeline.ParityError, match="existing output is kept"):
        pipeline.run_conversion(direction, src, out, dtype="float32",
                                verify=prompts, overwrite=True, tokenizer_dir=tok)
    assert tree_digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "prompts.txt"]


def test_app_failed_verify_exits_nonzero_and_leaves_nothing(hf_src, tmp_path, prompts):
    """Through the command line, with the parity check forced to fail."""
    out = tmp_path / "ckpt"
    code = ("import sys; from hybrid_jax.convert import parity; "
            "parity.ParityReport.ok = lambda self, *a, **k: False; "
            "from hybrid_jax.apps import convert; sys.argv[0] = 'convert'; convert.run()")
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = processes.run([sys.executable, "-c", code, f"--input_dir={hf_src}",
                       f"--output_dir={out}", "--dtype=float32", f"--verify={prompts}"],
                      env=env, timeout=300)
    assert p.returncode != 0, p.stdout
    assert "--verify failed" in p.stderr
    assert not out.exists() and sorted(tmp_path.iterdir()) == [prompts]


# ---------------------------------------------------------------------------- round trip
def test_round_trip_keeps_token_ids_positions_and_generation_config(hf_src, tmp_path):
    import transformers

    ckpt, back = tmp_path / "ckpt", tmp_path / "back"
    pipeline.run_conversion("hf_to_jax", hf_src, ckpt, dtype="float32")
    pipeline.run_conversion("jax_to_hf", ckpt, back)  # no --tokenizer_dir
    src_cfg = json.loads((hf_src / "config.json").read_text())
    got = json.loads((back / "config.json").read_text())
    for key in ("bos_token_id", "eos_token_id", "pad_token_id", "max_position_embeddings"):
        assert got[key] == src_cfg[key], key
    assert (src_cfg["bos_token_id"], src_cfg["max_position_embeddings"]) == (0, 1024)
    assert json.loads((back / "generation_config.json").read_text()) == json.loads(
        (hf_src / "generation_config.json").read_text())
    gen = transformers.GenerationConfig.from_pretrained(back)  # as transformers reads it
    assert (gen.eos_token_id, gen.max_new_tokens, gen.temperature) == ([2, 5], 7, 0.6)


def test_export_refuses_recorded_token_id_outside_vocab(ckpt_src, tmp_path):
    """What was recorded is written back as it is, or refused: never silently dropped."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(ckpt_src, ckpt)
    meta = json.loads((ckpt / "model_config.json").read_text())
    meta["hf"]["config"]["eos_token_id"] = 100257  # vocab is 256
    meta.pop("manifest")  # as a checkpoint without digests (else its digest fails first)
    (ckpt / "manifest.json").unlink()
    (ckpt / "model_config.json").write_text(json.dumps(meta))
    from hybrid_jax.convert.hf_config import HfConfigError

    with pytest.raises(HfConfigError, match="eos_token_id=100257"):
        pipeline.run_conversion("jax_to_hf", ckpt, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_absent_keys_stay_absent_in_what_import_records(hf_src, tmp_path):
    """A source config without bos_token_id: nothing is invented for it."""
    src = tmp_path / "src"
    shutil.copytree(hf_src, src)
    edit_config(src, bos_token_id=None)
    pipeline.run_conversion("hf_to_jax", src, tmp_path / "ckpt", dtype="float32")
    side = json.loads((tmp_path / "ckpt" / "model_config.json").read_text())["hf"]
    assert "bos_token_id" not in side["config"] and side["config"]["eos_token_id"] == 2
