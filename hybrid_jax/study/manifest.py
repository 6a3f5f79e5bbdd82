"""The study's workdir layout, its settings, its stage records and the digests in them.

    <workdir>/prepare.json                prepare's record: the data, tokenizer and pack
                                          digests, corpus numbers, throughput, timings
    <workdir>/data/corpus/                the corpus: JSONL shards + manifest (data/corpus.py)
    <workdir>/data/train/                 the training tokens, pre-tokenised (token_store.py)
    <workdir>/tokenizer.model             the SentencePiece model (when trained here)
    <workdir>/pack/                       the eval pack every model scores
    <workdir>/<arch>/                     one architecture's training run (resumable)
    <workdir>/<arch>/study_train.json     its record: digests, token-stream digest, tokens/s
    <workdir>/scores/<arch>@<step>/       one export's per-token table + study_score.json
    <workdir>/probes/<arch>.parquet       synthetic probes scored by the final export
    <workdir>/report/                     report.html / .md / .json, figures, study_analyze.json

Three digests tie the stages together (`DIGESTS`):
    tokenizer  sha256 of the tokenizer file's content
    data       the token store's digest: the exact training tokens (and so the corpus,
               the split and the tokenizer they came from)
    pack       `EvalPack.sha256()`: the exact windows every model scores
Each stage records the digests it used and refuses inputs whose digests differ from
prepare's, with a `StudyError` naming the digest, both values and the files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import platform
import sys
import time
from typing import TYPE_CHECKING, Any

from hybrid_jax.errors import UserError
from hybrid_jax.json_files import read_tagged

if TYPE_CHECKING:
    import ml_collections

RECORD_FORMAT = "hybrid_jax.study_record/1"
# Checked in this order: another tokenizer also means other tokens (data) and another
# pack, so the first difference named is the cause.
DIGESTS = ("tokenizer", "data", "pack")

# The study's own settings (`config.study`), with these defaults when absent.
STUDY_DEFAULTS: dict[str, Any] = dict(
    archs="transformer,hybrid,recurrent",
    pack_docs_per_domain=30,  # held-out documents per domain in the eval pack
    pack_max_chars=6000,  # each cut to this many characters
    probe_distances=(32, 64, 128, 256),  # () = no probes
    probes_per_distance=4,
    score_exports="*",  # comma-separated globs of export names (anneal_*, final, ...)
    tagger="auto",
    n_boot=1000,
    # TOP-10∩NO-COPY ranking: "" cross-fitted on the A - B gap, "a,b,c" families or
    # tags (NN,JJ,noun), or "report:<report.json>" (its tags table)
    top_families="",
    top_k=10,  # how many tags the ranking takes; 0 with top_families "": no filter
)


class StudyError(UserError, ValueError):
    """Study inputs that do not belong together: another corpus, tokenizer or eval pack
    than the one `prepare` recorded, a stage run before the one it needs, a changed
    config on a prepared workdir."""


def settings(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """`config.study` over `STUDY_DEFAULTS` (unknown keys are an error)."""
    given = dict(config.get("study", None) or {})
    unknown = sorted(set(given) - set(STUDY_DEFAULTS))
    if unknown:
        raise StudyError(f"config.study has unknown fields {unknown}; known: "
                         f"{sorted(STUDY_DEFAULTS)}")
    out = {**STUDY_DEFAULTS, **given}
    out["probe_distances"] = tuple(out["probe_distances"])
    return out


def arch_list(value: str | tuple[str, ...] | list[str]) -> list[str]:
    if isinstance(value, str):
        return [a.strip() for a in value.split(",") if a.strip()]
    return list(value)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Every path of a study workdir."""

    workdir: pathlib.Path

    @classmethod
    def of(cls, workdir: str | os.PathLike) -> Layout:
        return cls(pathlib.Path(workdir).absolute())

    @property
    def prepare_record(self) -> pathlib.Path:
        return self.workdir / "prepare.json"

    @property
    def corpus(self) -> pathlib.Path:
        return self.workdir / "data" / "corpus"

    @property
    def tokens(self) -> pathlib.Path:
        return self.workdir / "data" / "train"

    @property
    def tokenizer(self) -> pathlib.Path:
        return self.workdir / "tokenizer.model"

    @property
    def pack(self) -> pathlib.Path:
        return self.workdir / "pack"

    def run(self, arch: str) -> pathlib.Path:
        return self.workdir / arch

    def train_record(self, arch: str) -> pathlib.Path:
        return self.run(arch) / "study_train.json"

    @property
    def scores(self) -> pathlib.Path:
        return self.workdir / "scores"

    def score_dir(self, arch: str, step: int) -> pathlib.Path:
        return self.scores / f"{arch}@{step}"

    @property
    def probes(self) -> pathlib.Path:
        return self.workdir / "probes"

    @property
    def report(self) -> pathlib.Path:
        return self.workdir / "report"


def write_record(path: pathlib.Path, stage: str, record: dict[str, Any]) -> dict[str, Any]:
    """Write a stage record atomically (a killed write leaves the old one or none)."""
    full = {"format": RECORD_FORMAT, "stage": stage, **record,
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node(),
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(), "argv": sys.argv}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(full, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return full


def read_record(path: pathlib.Path, stage: str, *, needed_by: str | None = None
                ) -> dict[str, Any]:
    """A stage record, or a StudyError saying which stage to run first."""
    if not path.is_file():
        hint = f": run --stage={stage} first" if needed_by else ""
        raise StudyError(f"{path}: no {stage} record{hint}"
                         + (f" ({needed_by} needs it)" if needed_by else ""))
    record = read_tagged(path, RECORD_FORMAT, StudyError, f"{stage} record")
    if record.get("stage") != stage:
        raise StudyError(f"{path}: not a {stage} record (stage {record.get('stage')!r})")
    return record


def check_digests(expected: dict[str, str], found: dict[str, str], *, what: str,
                  where: str, keys: tuple[str, ...] = DIGESTS) -> None:
    """StudyError naming the first digest in `keys` where `found` differs."""
    for key in keys:
        want, got = expected.get(key), found.get(key)
        if want != got:
            raise StudyError(
                f"{what} was made with a different {key} ({key} digest "
                f"{str(got)[:12]}, this study's prepare.json has {str(want)[:12]}): {where}; "
                "score, train and analyze only inputs of one prepare")


def diff_fields(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'key: recorded -> current' for every field that differs (for error messages)."""
    keys = sorted(set(recorded) | set(current))
    return [f"{k}: {recorded.get(k)!r} -> {current.get(k)!r}" for k in keys
            if recorded.get(k) != current.get(k)]


def logged_rates(run_dir: str | os.PathLike) -> tuple[int, list[float]]:
    """(the last step with a logged rate, the logged training tokens/s after the first
    interval, which holds the compilation) from a run's metrics.jsonl; a line cut short
    by a kill is skipped, and no file gives (0, [])."""
    rows = []
    try:
        for line in (pathlib.Path(run_dir) / "metrics.jsonl").read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    except OSError:
        pass
    logged = [r for r in rows if "train/tokens_per_s" in r]
    return (max((r.get("step", 0) for r in logged), default=0),
            [r["train/tokens_per_s"] for r in logged[1:]])
