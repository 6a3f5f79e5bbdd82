"""Issue 24, defect 7: config checks come first, name the field, and leave nothing behind.

Each bad value must raise a one-line `ConfigError` naming its field before the run
builds (compiles) anything or writes its workdir; the model's `layer_types` (and every
other field) can be overridden on the command line; a missing `hf:` tokenizer is named
as such, not blamed on a missing package.
"""

from __future__ import annotations

import sys

import jax
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from hybrid_jax.configlib import model_config
from hybrid_jax.errors import UserError
from hybrid_jax.models.config import ConfigError
from hybrid_jax.train import loop as loop_lib

from .train_fixtures import ROOT, fault_config

BAD = [  # (section, field, value, what the message must say)
    ("train", "learning_rate", 0.0, r"train\.learning_rate=0\.0: must be > 0"),
    ("train", "learning_rate", -1e-3, r"train\.learning_rate=-0\.001: must be > 0"),
    ("train", "log_every", 0, r"train\.log_every=0"),
    ("train", "checkpoint_every", 0, r"train\.checkpoint_every=0"),
    ("train", "keep_checkpoints", 0, r"train\.keep_checkpoints=0"),
    ("train", "export_every", -1, r"train\.export_every=-1"),
    ("train", "z_loss", -1.0, r"train\.z_loss=-1\.0"),
    ("train", "weight_decay", -0.1, r"train\.weight_decay=-0\.1"),
    ("train", "microbatches", 3, r"train\.batch_size=4 .*train\.microbatches=3"),
    ("train", "warmup_steps", 4, r"train\.warmup_steps=4 must be below train\.steps=4"),
    ("train", "schedule", "linear", r"train\.schedule='linear' is not one of"),
    ("eval", "batch_size", 0, r"eval\.batch_size=0"),
    ("eval", "tagger", "nltk", r"eval\.tagger='nltk'"),
    ("data", "held_out_every", 1, r"data\.held_out_every=1"),
    ("data", "tokenizer", "hf:/nonexistent/tokenizer.json",
     r"data\.tokenizer='hf:/nonexistent/tokenizer.json': no tokenizer.json"),
    ("data", "seq_len", 1_000_000, r"data\.seq_len=1000000 .*needs at least .* TB per device"),
    ("mesh", "tensor", 2, r"mesh \{.*'tensor': 2.*1 devices cannot fill"),
]


@pytest.fixture
def nothing_built(monkeypatch):
    """Fail the test if the run gets as far as building the model or reading data."""

    def built(*args, **kwargs):
        raise AssertionError("the run built its model (or read its data) before the "
                             "config was checked")

    monkeypatch.setattr(loop_lib, "create_sharded_params", built)
    monkeypatch.setattr(loop_lib, "load_documents", built)


@pytest.mark.parametrize("section,field,value,message", BAD,
                         ids=[f"{s}.{f}={v}" for s, f, v, _ in BAD])
def test_bad_value_is_named_before_anything_is_built(section, field, value, message,
                                                     nothing_built, tmp_path):
    config = fault_config(**{section: {field: value}})
    workdir = tmp_path / "run"
    with pytest.raises(ConfigError, match=message) as info:
        loop_lib.train(config, workdir)
    assert "\n" not in str(info.value)
    assert not workdir.exists()  # not even config.json was written


def test_wsd_s_budgets_and_process_count_are_checked():
    from hybrid_jax.train.config_checks import check_train_config

    config = fault_config(train=dict(schedule="wsd_s", budgets=(2.0, 1.0)))
    with pytest.raises(ConfigError, match=r"train\.budgets=\(2\.0, 1\.0\): need increasing"):
        check_train_config(config)
    with pytest.raises(ConfigError, match=r"train\.batch_size=4 is not divisible by the 3 "
                                          "processes"):
        check_train_config(fault_config(), process_count=3)
    assert check_train_config(fault_config()).layer_types == ("full",)


def test_memory_bound_is_below_what_the_compiled_step_uses():
    """The feasibility check must never refuse a config that fits: its bound stays
    below XLA's own accounting of the compiled training step (arguments + temporaries)
    and eval step, here for a window long enough that the [t, t] logits dominate."""
    import optax
    from flax import nnx

    from hybrid_jax.data.batch import Batch
    from hybrid_jax.models.lm import LM
    from hybrid_jax.train.config_checks import memory_lower_bound
    from hybrid_jax.train.optimizer import make_optimizer
    from hybrid_jax.train.state import TrainState
    from hybrid_jax.train.step import make_train_step

    seq_len, rows = 512, 4
    cfg = model_config(fault_config()).replace(vocab_size=384)
    terms = memory_lower_bound(cfg, seq_len=seq_len, rows=rows, eval_rows=rows,
                               loss_chunk=256, platform="cpu")
    assert set(terms) >= {"the xla attention's [t, t] float32 logits",
                          "block inputs kept for the backward pass"}
    graphdef, params = nnx.split(LM(cfg, rngs=nnx.Rngs(0)), nnx.Param)
    tx = make_optimizer(optax.constant_schedule(1e-3))
    state = jax.eval_shape(lambda p: TrainState.create(p, tx), params)
    tokens = np.zeros((rows, seq_len + 1), np.int32)
    batch = jax.eval_shape(lambda: Batch.from_rows(tokens, np.ones_like(tokens)))
    step = make_train_step(graphdef, tx, loss_chunk=256)
    stats = step.lower(state, batch).compile().memory_analysis()
    used = stats.argument_size_in_bytes + stats.temp_size_in_bytes
    bound = sum(terms.values())
    print(f"lower bound {bound / 1e6:.1f} MB, compiled step {used / 1e6:.1f} MB")
    assert 0 < bound <= used


def _parse(*overrides: str):
    argv = ["train", "--config=" + str(ROOT / "configs" / "lm.py"), *overrides]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=values, sys_argv=argv)
    values(argv)
    return values.config


@pytest.mark.parametrize("flag,want", [
    ("--config.model.layer_types=gggf", ("gdn", "gdn", "gdn", "full")),
    ("--config.model.layer_types=sssf", ("swa", "swa", "swa", "full")),
    ("--config.model.layer_types=gggg", ("gdn",) * 4),
    ("--config.model.layer_types=gdn,full", ("gdn", "full")),
    ("--config.model.layer_types=('gdn', 'swa', 'full')", ("gdn", "swa", "full")),
])
def test_layer_types_override_on_the_command_line(flag, want):
    assert model_config(_parse(flag)).layer_types == want


def test_every_field_of_the_lm_config_can_be_overridden():
    config = _parse()
    fields = [(f"{s}.{k}", v) for s, sec in config.items() if hasattr(sec, "items")
              for k, v in sec.items()]
    assert len(fields) > 50
    failed = []
    for name, value in fields:
        if name == "model.yarn":
            value = "{'factor': 8.0, 'original_max_position': 8192}"
        elif isinstance(value, (tuple, list)):
            value = repr(tuple(value))
        try:
            _parse(f"--config.{name}={value}")
        except Exception as e:  # ml_collections raises for types it cannot override
            failed.append(f"{name}: {str(e)[:120]}")
    assert not failed, failed
    yarn = model_config(_parse("--config.model.yarn={'factor': 8.0, "
                               "'original_max_position': 8192}")).yarn
    assert (yarn.factor, yarn.original_max_position) == (8.0, 8192)


def test_a_bad_layer_code_is_named():
    with pytest.raises(ConfigError, match=r"layer_types = 'ggxf' is neither"):
        model_config(_parse("--config.model.layer_types=ggxf"))


def test_missing_hf_tokenizer_is_named_not_blamed_on_the_package(monkeypatch, tmp_path):
    from hybrid_jax.data.tokenizers import load_tokenizer

    monkeypatch.setitem(sys.modules, "tokenizers", None)  # as without the package
    for missing in (tmp_path / "nope" / "tokenizer.json", tmp_path):
        with pytest.raises(UserError, match="no tokenizer.json") as info:
            load_tokenizer(f"hf:{missing}")
        assert isinstance(info.value, FileNotFoundError)
        assert str(tmp_path) in str(info.value)
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(UserError, match="needs the `tokenizers` package"):
        load_tokenizer(f"hf:{tmp_path}")
