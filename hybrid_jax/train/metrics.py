"""Metrics out of a run: JSONL (one object per line) and TensorBoard, process 0 only.

`<workdir>/metrics.jsonl` is the record people and scripts read (it survives resumes:
lines are appended, and a resumed run first drops lines past its restored step so the
file never holds two values for one step). TensorBoard event files sit in
`<workdir>/tensorboard/` when tensorboardX is installed.
"""

from __future__ import annotations

import json
import logging
import math
import pathlib
from collections.abc import Mapping

import jax

log = logging.getLogger("hybrid_jax.train")


class MetricWriter:
    def __init__(self, workdir: str | pathlib.Path, *, resume_step: int = 0) -> None:
        self.enabled = jax.process_index() == 0
        self.path = pathlib.Path(workdir) / "metrics.jsonl"
        self._tb = None
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._truncate_after(resume_step)
        try:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(pathlib.Path(workdir) / "tensorboard"))
        except ImportError:
            log.info("tensorboardX not installed: metrics go to %s only", self.path)

    def _truncate_after(self, step: int) -> None:
        if not self.path.exists():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
        self.path.write_text("".join(x + "\n" for x in keep), encoding="utf-8")

    def write(self, step: int, values: Mapping[str, float], prefix: str = "") -> None:
        if not self.enabled:
            return
        row = {"step": int(step)}
        for k, v in values.items():
            v = float(v)
            row[prefix + k] = v if math.isfinite(v) else str(v)
            if self._tb is not None and math.isfinite(v):
                self._tb.add_scalar(prefix + k, v, int(step))
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()


def read_metrics(workdir: str | pathlib.Path) -> list[dict]:
    """All rows of a run's metrics.jsonl."""
    path = pathlib.Path(workdir) / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
