"""README.md: at most 300 lines, every command in its shell blocks runs as written (flags
parsed and the config loaded with absl's --only_check_args; launch scripts exist and
parse), and every relative link resolves, anchors included."""

import pathlib
import re
import shlex
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
APPS = {"train", "score", "probe", "analyze", "convert", "study", "demo"}


def shell_commands(text: str) -> list[list[str]]:
    """The commands of the ```bash blocks, continuation lines joined, comments dropped."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                out.append(shlex.split(line))
    return out


def app_argv(argv: list[str]) -> tuple[str, list[str]] | None:
    """(app, its arguments) of a command that runs one of our apps, else None."""
    if "--" in argv:  # a launcher: the app command follows "--"
        return app_argv(argv[argv.index("--") + 1:])
    if argv[0].startswith("hybrid-jax-"):
        return argv[0].removeprefix("hybrid-jax-"), argv[1:]
    if argv[:2] == ["python", "-m"] and argv[2].startswith("hybrid_jax.apps."):
        return argv[2].removeprefix("hybrid_jax.apps."), argv[3:]
    if argv[0] == "sbatch":  # launch/slurm.sbatch runs hybrid_jax.apps.train by default
        script = next(i for i, a in enumerate(argv) if a.endswith(".sbatch"))
        return "train", argv[script + 1:]
    return None


COMMANDS = shell_commands(README.read_text())


def test_readme_is_short():
    assert len(README.read_text().splitlines()) <= 300


def test_readme_has_the_two_commands_and_app_commands():
    flat = [" ".join(c) for c in COMMANDS]
    assert "make demo" in flat and "make test" in flat
    assert {app_argv(c)[0] for c in COMMANDS if app_argv(c)} >= {
        "train", "score", "probe", "analyze", "convert", "study"}


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(c)[:60] for c in COMMANDS])
def test_command_runs_as_written(argv):
    if argv[0] == "make":
        assert re.search(rf"^{argv[1]}:", (ROOT / "Makefile").read_text(), re.M), argv
        return
    if argv[:3] == ["pip", "install", "-e"]:
        extras = re.fullmatch(r"\.\[(.*)\]", argv[3]).group(1).split(",")
        setup = (ROOT / "setup.py").read_text()
        for extra in extras:
            assert f'"{extra}":' in setup, f"no extra {extra!r} in setup.py"
        return
    for word in argv:
        if word.startswith("launch/"):
            script = ROOT / word
            assert script.is_file(), word
            assert subprocess.run(["bash", "-n", script]).returncode == 0, word
    app = app_argv(argv)
    if app is None:
        assert argv[0].startswith("launch/"), f"a command the test does not know: {argv}"
        return
    name, args = app
    assert name in APPS, name
    r = subprocess.run([sys.executable, "-m", f"hybrid_jax.apps.{name}", *args,
                        "--only_check_args"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, (argv, r.stdout[-2000:], r.stderr[-2000:])


def _anchors(path: pathlib.Path) -> set[str]:
    """GitHub's heading anchors of a markdown file."""
    out = set()
    for h in re.findall(r"^#+ (.*)$", path.read_text(), flags=re.M):
        a = re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
        out.add(a)
    return out


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_links_resolve(doc):
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        assert dest.exists(), f"{doc.name}: link to missing {target}"
        if anchor:
            assert anchor in _anchors(dest), f"{doc.name}: no heading #{anchor} in {path}"
