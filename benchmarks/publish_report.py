"""Copy a study report into docs/ without the eval documents' text.

    python benchmarks/publish_report.py --report=runs/study_gpu/report \
        --out=docs/study/h100_60m

Copies report.md, report.json, study.md and figures/*.png. The per-token views (the
report's "Token views" section and report.json's `token_views`) show the eval
documents' text, which is third-party (../shared/data, the GPU machine's installed
packages) and never committed here: the section's body is replaced by a note saying so,
and the json key is dropped. report.html and the per-token tables are not copied.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import shutil
import sys

SECTION = "## Token views"
NOTE = ("Not committed: the per-token views show the eval documents' text, which comes "
        "from ../shared/data and the GPU machine's installed packages (third-party text, "
        "never committed here). `--stage=analyze` writes them beside report.html.")


def strip_token_views(markdown: str) -> str:
    """report.md with the body of its "Token views" section replaced by `NOTE` (the
    text unchanged when there is no such section)."""
    m = re.search(rf"^{re.escape(SECTION)}[ \t]*$", markdown, flags=re.M)
    if m is None:
        return markdown
    nxt = re.search(r"^## ", markdown[m.end():], flags=re.M)
    tail = markdown[m.end() + nxt.start():] if nxt else ""
    return f"{markdown[:m.end()]}\n\n{NOTE}\n" + (f"\n{tail}" if tail else "")


def publish(report: pathlib.Path, out: pathlib.Path) -> list[pathlib.Path]:
    """Copy `report` into `out` (see the module docstring); the files written."""
    missing = [n for n in ("report.md", "report.json") if not (report / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{report}: no {', '.join(missing)} (run --stage=analyze)")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    md = out / "report.md"
    md.write_text(strip_token_views((report / "report.md").read_text()))
    written.append(md)
    data = json.loads((report / "report.json").read_text())
    data.pop("token_views", None)
    js = out / "report.json"
    js.write_text(json.dumps(data, indent=1) + "\n")
    written.append(js)
    if (report / "study.md").is_file():
        written.append(pathlib.Path(shutil.copy2(report / "study.md", out / "study.md")))
    figs = sorted((report / "figures").glob("*.png"))
    if figs:
        (out / "figures").mkdir(exist_ok=True)
        for f in figs:
            written.append(pathlib.Path(shutil.copy2(f, out / "figures" / f.name)))
    return written


def main() -> None:
    # argparse, not absl flags: the tests load this module beside the apps' absl flags.
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--report", required=True, help="the analyze stage's report folder")
    p.add_argument("--out", required=True, help="where the published copy goes (created)")
    args = p.parse_args()
    try:
        written = publish(pathlib.Path(args.report), pathlib.Path(args.out))
    except (FileNotFoundError, json.JSONDecodeError) as e:
        sys.exit(f"publish_report.py: {e}")
    print(f"wrote {len(written)} files under {args.out}")


if __name__ == "__main__":
    main()
