"""Every `hybrid-jax-*` command line: its --help, its example, and the one error rule.

The console scripts are those of setup.py; each is started the way its script starts it
(`sys.argv[0]` = the script's name, then `run()`), and as `python -m`. Each test runs
its tool in a child process: absl's flags are process-global.
- `--help` exits 0, prints the docstring and every flag of the tool with its description,
  and imports none of the heavy modules (that is what makes it fast; the wall time is
  measured by benchmarks/cli_help.py, not here).
- The docstring's example parses (`--only_check_args`).
- A bad input (missing path, bad config field, existing output, misaligned table, bad
  tensor name) exits 2 with exactly one line on stderr, `<tool>: error: <message>`,
  naming what is wrong; a bug keeps its traceback and exits 1.
"""

from __future__ import annotations

import ast
import json
import os
import pathlib
import re
import shlex
import sys

import pytest

from .. import processes

ROOT = processes.ROOT
SCRIPTS = dict(re.findall(r'"(hybrid-jax-[\w-]+)=(hybrid_jax\.apps\.\w+):run"',
                          (ROOT / "setup.py").read_text()))
HEAVY = {"jax", "jaxlib", "flax", "optax", "orbax", "grain", "transformers", "torch",
         "tokenizers", "safetensors", "matplotlib", "statsmodels", "scipy", "spacy", "nltk",
         "pandas", "pyarrow", "sentencepiece", "tensorboardX"}

# Starts a tool as its console script does, then reports (to the file in argv[1]) the
# exit status, the tool's own flags and the heavy modules imported.
CONSOLE = """
import json, sys
report, sys.argv[:] = sys.argv[1], [{script!r}, *sys.argv[2:]]
from {module} import run
try:
    code = run()
except SystemExit as e:
    code = e.code
from absl import flags
import {module} as app
own = {{f.name: f.help for f in flags.FLAGS.get_key_flags_for_module(app)}}
heavy = sorted({{k.split('.')[0] for k in sys.modules}} & {heavy!r})
open(report, 'w').write(json.dumps(dict(code=code, own=own, heavy=heavy)))
sys.exit(code)
"""


def env() -> dict[str, str]:
    out = dict(os.environ, JAX_PLATFORMS="cpu")
    out["PYTHONPATH"] = str(ROOT) + os.pathsep + out.get("PYTHONPATH", "")
    out.pop("HYBRID_JAX_TRACEBACK", None)
    return out


def console(script: str, *args: str, tmp_path: pathlib.Path, extra_env=None):
    """(completed process, report) of `script args` started as its console script."""
    report = tmp_path / f"report-{script}.json"
    code = CONSOLE.format(script=script, module=SCRIPTS[script], heavy=HEAVY)
    proc = processes.run([sys.executable, "-c", code, str(report), *args],
                         env={**env(), **(extra_env or {})}, timeout=240)
    assert report.exists(), proc.stderr[-3000:]
    return proc, json.loads(report.read_text())


def squash(text: str) -> str:
    # Whitespace dropped altogether: absl's help wraps lines after a hyphen too.
    return "".join(text.split())


def docstring(script: str) -> str:
    path = ROOT / (SCRIPTS[script].replace(".", "/") + ".py")
    return ast.get_docstring(ast.parse(path.read_text()), clean=True)


def example(script: str) -> list[str]:
    """The docstring's first example command, continuation lines joined, as argv."""
    return example_in(docstring(script), script)


def example_in(text: str, script: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(script))
    cmd = ""
    for line in lines[start:]:
        cmd += line.strip()
        if not cmd.endswith("\\"):
            break
        cmd = cmd[:-1] + " "
    return shlex.split(cmd)


def test_every_app_module_has_a_console_script():
    apps = {p.stem for p in (ROOT / "hybrid_jax" / "apps").glob("*.py")} - {"__init__", "cli"}
    assert {m.rsplit(".", 1)[1] for m in SCRIPTS.values()} == apps


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_lists_the_tools_flags_and_imports_nothing_heavy(script, tmp_path):
    proc, rep = console(script, "--help", tmp_path=tmp_path)
    assert rep["code"] == 0, proc.stderr[-3000:]
    assert rep["heavy"] == [], f"--help imported {rep['heavy']}"
    out = squash(proc.stdout)
    assert squash(docstring(script)) in out  # docstring whole: `\` continuations kept
    assert rep["own"], "no flags found for the tool"
    for name, help_ in rep["own"].items():
        assert help_ and help_ != "path to config file.", f"--{name} has no description"
        assert re.search(rf"--(\[no\])?{name}: ", proc.stdout), f"--{name} not listed"
        assert squash(help_) in out, f"--{name}'s description not shown"
    assert "--verbosity" not in proc.stdout  # absl's own flags wait for --helpfull
    # The example prints as written: each `\` continuation ends its line (not a run of
    # spaces, as non-raw docstrings printed them), so it can be copied as it is.
    assert example_in(proc.stdout, script) == example(script)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_python_m_help(script):
    proc = processes.run([sys.executable, "-m", SCRIPTS[script], "--help"], env=env(),
                         timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "flags:" in proc.stdout and squash(docstring(script)) in squash(proc.stdout)


def test_helpfull_adds_absl_flags_after_the_tools(tmp_path):
    proc, rep = console("hybrid-jax-score", "--helpfull", tmp_path=tmp_path)
    assert rep["code"] == 0 and rep["heavy"] == [], proc.stderr[-3000:]
    assert proc.stdout.index("--checkpoint:") < proc.stdout.index("--verbosity")


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_docstring_example_parses(script, tmp_path):
    argv = example(script)
    assert argv[0] == script
    proc, rep = console(script, *argv[1:], "--only_check_args", tmp_path=tmp_path)
    assert rep["code"] == 0, proc.stderr[-3000:]


# ---------------------------------------------------------------------------- bad input
def tables(tmp_path: pathlib.Path, *, misaligned: bool) -> list[str]:
    """Two per-token tables of one document and its JSONL; the second's token ids differ
    from the first's at row 2 when `misaligned`."""
    import pandas as pd

    from hybrid_jax.analysis.table import write_table

    text = "one two three four"
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"id": "d0", "domain": "prose", "text": text}) + "\n")
    specs = []
    for name in ("a", "b"):
        frame = pd.DataFrame(dict(
            doc_id="d0", domain="prose", window=0, position=range(4),
            token_id=[5, 6, 7 if name == "b" and misaligned else 8, 9],
            char_start=[0, 4, 8, 14], char_end=[3, 7, 13, 18], loss=[1.0, 2.0, 3.0, 4.0]))
        write_table(frame, tmp_path / f"{name}.parquet")
        specs.append(f"{name}={tmp_path / f'{name}.parquet'}")
    return [f"--tables={','.join(specs)}", f"--docs={docs}", f"--out={tmp_path / 'out'}"]


def hf_dir_with_a_bad_tensor_name(tmp_path: pathlib.Path) -> pathlib.Path:
    """A tiny Olmo 3 HF directory whose first q_proj weight is renamed q_prox (the
    header keeps its length, so the file stays valid safetensors)."""
    import numpy as np

    from hybrid_jax.convert.export import export_hf
    from hybrid_jax.convert.key_map import abstract_leaves
    from hybrid_jax.models.presets import research_model

    cfg = research_model("transformer", "tiny", dtype="float32")
    params = {p: np.zeros(a.shape, np.float32) for p, a in abstract_leaves(cfg).items()}
    out = export_hf(tmp_path / "hf", cfg, params)
    (file,) = out.glob("*.safetensors")
    raw = file.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = raw[8:8 + n].replace(b"layers.0.self_attn.q_proj", b"layers.0.self_attn.q_prox")
    assert len(header) == n and header != raw[8:8 + n]
    file.write_bytes(raw[:8] + header + raw[8 + n:])
    # A third-party directory: no export manifest of ours, whose digests would refuse
    # the edited file before its tensor names are read.
    (out / "hybrid_jax_export.json").unlink()
    return out


# Each of these fails before any heavy import. id: (script, args, words the line holds)
BAD = {
    "train-missing-config": ("hybrid-jax-train", ["--config=configs/nope.py",
                             "--workdir={tmp}/w"], ["--config=configs/nope.py",
                                                    "no such config file"]),
    "train-unknown-field": ("hybrid-jax-train", ["--config=configs/lm.py:size=tiny",
                            "--config.train.nope=1", "--workdir={tmp}/w"],
                            ["--config.train.nope=1", "no field 'nope'"]),
    "train-bad-config-arg": ("hybrid-jax-train", ["--config=configs/lm.py:arch=bogus",
                             "--workdir={tmp}/w"], ["ConfigError", "arch='bogus'"]),
    "train-bad-field-type": ("hybrid-jax-train", ["--config=configs/lm.py",
                             "--config.train.steps=many", "--workdir={tmp}/w"],
                             ["--config.train.steps=many"]),
    "train-no-workdir": ("hybrid-jax-train", ["--config=configs/lm.py"], ["--workdir"]),
    "demo-unknown-field": ("hybrid-jax-demo", ["--config.model.nope=1"],
                           ["--config.model.nope=1", "no field 'nope'"]),
    "demo-bad-enum": ("hybrid-jax-demo", ["--tagger=nope"], ["--tagger=nope"]),
    "score-missing-checkpoint": ("hybrid-jax-score", ["--checkpoint={tmp}/nope",
                                 "--pack={tmp}/pack", "--out={tmp}/out"],
                                 ["--checkpoint=", "nope: no such directory"]),
    "score-no-pack": ("hybrid-jax-score", ["--checkpoint={tmp}", "--pack={tmp}/pack",
                      "--out={tmp}/out"], ["--pack=", "pass --docs and --tokenizer"]),
    "score-docs-match-nothing": ("hybrid-jax-score", ["--checkpoint={tmp}",
                                 "--pack={tmp}/pack", "--out={tmp}/out",
                                 "--docs=jsonl:{tmp}/nope/*.jsonl", "--tokenizer=bytes"],
                                 ["no files match", "nope/*.jsonl"]),
    "score-bad-tokenizer": ("hybrid-jax-score", ["--checkpoint={tmp}", "--pack={tmp}/pack",
                            "--out={tmp}/out", "--docs=stdlib",
                            "--tokenizer=sentencepiece:{tmp}/nope.model"],
                            ["sentencepiece", "nope.model"]),
    "score-bad-mesh": ("hybrid-jax-score", ["--checkpoint={tmp}", "--pack={tmp}/pack",
                       "--out={tmp}/out", "--mesh=data=all"], ["--mesh=data=all"]),
    "probe-missing-checkpoint": ("hybrid-jax-probe", ["--checkpoints=tr={tmp}/nope",
                                 "--tokenizer=bytes", "--out={tmp}/out"],
                                 ["'tr=", "nope'", "no such directory"]),
    "probe-bad-tokenizer": ("hybrid-jax-probe", ["--checkpoints=tr={tmp}", "--tokenizer=bpe",
                            "--out={tmp}/out"], ["'bpe'", "unknown tokenizer"]),
    "convert-missing-input": ("hybrid-jax-convert", ["--input_dir={tmp}/nope",
                              "--output_dir={tmp}/out"], ["--input_dir=", "no such directory"]),
    "convert-existing-output": ("hybrid-jax-convert", ["--input_dir={tmp}",
                                "--output_dir={tmp}"], ["--output_dir=", "exists",
                                                        "--overwrite"]),
    "analyze-one-table": ("hybrid-jax-analyze", ["--tables={tmp}/a.parquet",
                          "--docs={tmp}/docs.jsonl"], ["at least two tables"]),
    "analyze-missing-docs": ("hybrid-jax-analyze", ["--tables=a,b"], ["--docs"]),
}


def assert_one_line(proc, script: str, words: list[str]) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"{script}: error: "), lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_and_exit_2(case, tmp_path):
    script, args, words = BAD[case]
    proc, rep = console(script, *(a.format(tmp=tmp_path) for a in args), tmp_path=tmp_path)
    assert_one_line(proc, script, words)
    assert rep["heavy"] == [], f"failed only after importing {rep['heavy']}"


def test_missing_input_through_python_m(tmp_path):
    proc = processes.run([sys.executable, "-m", "hybrid_jax.apps.convert",
                          f"--input_dir={tmp_path}/nope", f"--output_dir={tmp_path}/out"],
                         env=env(), timeout=240)
    assert_one_line(proc, "python -m hybrid_jax.apps.convert", ["no such directory"])


def test_missing_table(tmp_path):
    proc, _ = console("hybrid-jax-analyze", f"--tables={tmp_path}/a.parquet,{tmp_path}/b.parquet",
                      f"--docs={tmp_path}/docs.jsonl", tmp_path=tmp_path)
    assert_one_line(proc, "hybrid-jax-analyze", [f"{tmp_path}/a.parquet: no such table"])


def test_misaligned_tables(tmp_path):
    args = tables(tmp_path, misaligned=True)
    proc, _ = console("hybrid-jax-analyze", *args, tmp_path=tmp_path)
    assert_one_line(proc, "hybrid-jax-analyze", ["not row-aligned", "token_id", "sorted row 2"])


def test_bad_tensor_name_in_conversion(tmp_path):
    hf = hf_dir_with_a_bad_tensor_name(tmp_path)
    proc, _ = console("hybrid-jax-convert", f"--input_dir={hf}",
                      f"--output_dir={tmp_path}/ckpt", "--dtype=float32", tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    # The conversion may log before it fails; the error is the last line and the only one.
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert errors == proc.stderr.splitlines()[-1:], proc.stderr[-3000:]
    assert "model.layers.0.self_attn.q_prox.weight" in errors[0]
    assert "model.layers.0.self_attn.q_proj.weight" in errors[0]  # and what is missing
    assert not (tmp_path / "ckpt").exists()


def test_corrupt_checkpoint_names_the_buried_cause(tmp_path):
    """An orbax checkpoint whose OCDBT manifests are zeroed: today's 100-line trace hides
    tensorstore's DATA_LOSS message mid-way; the one line carries it."""
    from flax import nnx

    from hybrid_jax.convert.checkpoint import save_model
    from hybrid_jax.models.lm import LM
    from hybrid_jax.models.presets import research_model

    ckpt = save_model(tmp_path / "ckpt", LM(research_model("transformer", "tiny",
                                                           dtype="float32"), rngs=nnx.Rngs(0)))
    manifests = list((ckpt / "params").rglob("manifest.ocdbt"))
    assert manifests
    for f in manifests:
        f.write_bytes(b"\0" * 16 + f.read_bytes()[16:])
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"id": "d0", "text": "def f(x):\n    return x + 1\n"}) + "\n")
    args = (f"--checkpoint={ckpt}", f"--pack={tmp_path}/pack", f"--docs=jsonl:{docs}",
            "--tokenizer=bytes", "--seq_len=16", f"--out={tmp_path}/out")
    # With its digests (convert/manifest.py) the changed files are named before orbax reads.
    proc, _ = console("hybrid-jax-score", *args, tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "manifest.ocdbt" in errors[0], proc.stderr[-3000:]
    assert "changed since they were written" in errors[0]
    # A checkpoint from before digests: orbax's buried reason is carried on the one line.
    (ckpt / "manifest.json").unlink()
    meta = json.loads((ckpt / "model_config.json").read_text())
    del meta["manifest"]
    (ckpt / "model_config.json").write_text(json.dumps(meta))
    proc, _ = console("hybrid-jax-score", *args, tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    # orbax's abandoned reads finish into its closed event loop; their ~40 tracebacks
    # once split this line ("RuntimeErrorhybrid-jax-score: error: ..."). None may appear.
    assert "Traceback" not in proc.stderr and "never retrieved" not in proc.stderr, \
        proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith(f"hybrid-jax-score: error: --checkpoint="
                                                     f"{ckpt}: "), proc.stderr[-3000:]
    assert "[cause: ValueError: DATA_LOSS" in errors[0] and "manifest" in errors[0]
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- the runner
FAKE_APP = """
from absl import flags
from hybrid_jax.apps import cli
from hybrid_jax.errors import UserError

_WHAT = flags.DEFINE_enum("what", "ok", ["ok", "user", "bug"], "What main does.")


class CorruptError(UserError, ValueError):
    pass


def main(argv):
    if _WHAT.value == "user":
        try:
            raise OSError("tensorstore: checksum mismatch in\\n  params/d/0.1")
        except OSError as e:
            raise CorruptError("ckpt/8: cannot be restored") from e
    if _WHAT.value == "bug":
        raise RuntimeError("a bug")
    print("done")


if __name__ == "__main__":
    cli.run(main)
"""


@pytest.fixture
def fake_app(tmp_path) -> pathlib.Path:
    path = tmp_path / "fake_app.py"
    path.write_text(FAKE_APP)
    return path


def test_runner_line_carries_the_cause_and_env_var_shows_the_traceback(fake_app):
    proc = processes.run([sys.executable, fake_app, "--what=user"], env=env(), timeout=120)
    line = assert_one_line(proc, "fake_app.py", [])
    assert line == ("fake_app.py: error: ckpt/8: cannot be restored [cause: OSError: "
                    "tensorstore: checksum mismatch in; params/d/0.1]")
    proc = processes.run([sys.executable, fake_app, "--what=user"],
                         env={**env(), "HYBRID_JAX_TRACEBACK": "1"}, timeout=120)
    assert proc.returncode == 2 and "Traceback" in proc.stderr
    assert "OSError" in proc.stderr and proc.stderr.splitlines()[-1] == line


def test_runner_keeps_a_bugs_traceback(fake_app):
    proc = processes.run([sys.executable, fake_app, "--what=bug"], env=env(), timeout=120)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "RuntimeError: a bug" in proc.stderr
    assert ": error: " not in proc.stderr


def test_runner_runs_main_and_reports_flag_errors(fake_app):
    ok = processes.run([sys.executable, fake_app], env=env(), timeout=120)
    assert ok.returncode == 0 and ok.stdout == "done\n", ok.stderr[-2000:]
    bad = processes.run([sys.executable, fake_app, "--what=maybe"], env=env(), timeout=120)
    assert_one_line(bad, "fake_app.py", ["--what=maybe", "<ok|user|bug>"])
    unknown = processes.run([sys.executable, fake_app, "--wat=ok"], env=env(), timeout=120)
    assert_one_line(unknown, "fake_app.py", ["Unknown command line flag 'wat'"])


def test_error_line_formats():
    from hybrid_jax.apps.cli import error_line
    from hybrid_jax.convert.key_map import KeyMapError

    def chained(outer: BaseException, inner: BaseException, *, implicit=False):
        try:
            try:
                raise inner
            except BaseException as e:
                if implicit:
                    raise outer  # noqa: B904  (the handled error becomes the context)
                raise outer from e
        except BaseException as e:
            return e

    assert error_line("t", KeyError("no tensor 'x'\nsecond")) == "t: error: no tensor 'x'; second"
    assert error_line("t", KeyMapError("ckpt does not fit the model:\n  1 unknown: a")) == (
        "t: error: ckpt does not fit the model: 1 unknown: a")
    e = chained(ValueError("bad file f (truncated)"), OSError("truncated"))
    assert error_line("t", e) == "t: error: bad file f (truncated)"  # cause already in it
    e = chained(ValueError("bad file f"), OSError("EIO"), implicit=True)
    assert error_line("t", e) == "t: error: bad file f [cause: OSError: EIO]"
    try:
        try:
            raise OSError("hidden")
        except OSError:
            raise ValueError("shown") from None
    except ValueError as err:
        assert error_line("t", err) == "t: error: shown"
    # ml_collections puts the config file's traceback into its message: dropped, while
    # the exception it formatted (in the chain) is named.
    wrapped = "Error whilst parsing config file:\n\nTraceback (most recent call last):\n  x"
    e = chained(ValueError(wrapped), ValueError("arch='bogus' is not one of (...)"))
    assert error_line("t", e) == ("t: error: Error whilst parsing config file [cause: "
                                  "ValueError: arch='bogus' is not one of (...)]")
    long = chained(ValueError("top"), OSError("x" * 5000))
    assert len(error_line("t", long)) < 800 and "HYBRID_JAX_TRACEBACK=1" in error_line("t", long)
