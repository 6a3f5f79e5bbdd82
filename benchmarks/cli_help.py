"""Wall time of every `hybrid-jax-* --help`, this tree against a baseline tree, on CPU.

    git archive 274948b | tar -x -C /tmp/cli_base
    python benchmarks/cli_help.py --baseline=/tmp/cli_base --baseline_name=274948b \
        --out=benchmarks/results/cpu_cli_help.json

Each tool is started the way its console script starts it (`sys.argv[0]` = the
script's name, then the entry point of setup.py), in a fresh process with the tree on
PYTHONPATH and as its working directory; the runs of the two trees alternate, so a
change in the machine's load falls on both. Per tool and tree: the median wall time
(seconds), the exit status, and how many flag lines (`  --name: ...`) the help printed.
The ratio is baseline / this tree. The machine's load average is recorded with it:
the 2-core machine is shared, so absolute seconds vary with the load, ratios less.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONSOLE = "import sys; sys.argv[0] = {script!r}; from {module} import run; sys.exit(run())"


def scripts(tree: pathlib.Path) -> dict[str, str]:
    """console script name -> app module, from the tree's setup.py."""
    return dict(re.findall(r'"(hybrid-jax-[\w-]+)=(hybrid_jax\.apps\.\w+):run"',
                           (tree / "setup.py").read_text()))


def time_help(tree: pathlib.Path, script: str, module: str, timeout: float) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), JAX_PLATFORMS="cpu")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CONSOLE.format(script=script, module=module),
                           "--help"], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=timeout)
    wall = time.perf_counter() - t0
    flag_lines = sum(bool(re.match(r"^  -(-|\?)", line)) for line in proc.stdout.splitlines())
    return {"wall_s": wall, "rc": proc.returncode, "flag_lines": flag_lines}


def _commit(tree: pathlib.Path) -> str | None:
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree,
                          capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           cwd=tree, capture_output=True, text=True).stdout.strip()
    return proc.stdout.strip() + ("+changes" if dirty else "") if proc.returncode == 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=pathlib.Path, help="A checkout to compare with.")
    parser.add_argument("--baseline_name", help="What the baseline is, e.g. its commit.")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--timeout_s", type=float, default=300)
    parser.add_argument("--out", type=pathlib.Path)
    args = parser.parse_args()
    trees = {"this": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    tools = scripts(ROOT)
    runs: dict[tuple[str, str], list[dict]] = {}
    load_before = os.getloadavg()
    for _ in range(args.repeats):
        for script, module in tools.items():
            for label, tree in trees.items():
                runs.setdefault((script, label), []).append(
                    time_help(tree, script, module, args.timeout_s))
    rows = []
    for script in tools:
        row: dict = {"tool": script}
        for label in trees:
            rs = runs[(script, label)]
            row[label] = {"median_s": statistics.median(r["wall_s"] for r in rs),
                          "max_s": max(r["wall_s"] for r in rs),
                          "rc": sorted({r["rc"] for r in rs}),
                          "flag_lines": sorted({r["flag_lines"] for r in rs})}
        if "baseline" in trees:
            row["ratio"] = row["baseline"]["median_s"] / row["this"]["median_s"]
        rows.append(row)
    result = {"benchmark": "cli_help", "repeats": args.repeats, "python": sys.version.split()[0],
              "cpus": len(os.sched_getaffinity(0)), "loadavg_before": load_before,
              "loadavg_after": os.getloadavg(), "date": time.strftime("%Y-%m-%d"),
              "trees": {k: str(v) for k, v in trees.items()}, "commit": _commit(ROOT),
              "baseline_name": args.baseline_name, "rows": rows}
    head = f"{'tool':<20}" + "".join(f"{k + ' s (rc, flags)':>26}" for k in trees)
    print(head + ("   ratio" if "baseline" in trees else ""))
    for row in rows:
        line = f"{row['tool']:<20}"
        for k in trees:
            r = row[k]
            rc, n = ",".join(map(str, r["rc"])), ",".join(map(str, r["flag_lines"]))
            line += f"{r['median_s']:.2f} ({rc}, {n})".rjust(26)
        print(line + (f"{row['ratio']:>8.1f}" if "ratio" in row else ""))
    print(f"load average before {load_before}, after {result['loadavg_after']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
