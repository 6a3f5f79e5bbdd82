"""The study's acceptance on CPU: the staged study of the tiny models writes bitwise the
same per-token tables as the one-shot study (`make demo`'s `run_study`), and every stage
refuses inputs from other data, tokenizers or eval packs."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import pathlib
import shutil

import jax
import pandas as pd
import pytest
from jax.experimental.compilation_cache import compilation_cache

from hybrid_jax.data.corpus import is_held_out
from hybrid_jax.study import (
    StudyError,
    analyze_stage,
    prepare,
    run_study,
    score_stage,
    train_arch,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / ".." / "shared" / "data" / "corpus"
ARCHS = ("transformer", "hybrid", "recurrent")


def _load(name: str, path: pathlib.Path):
    """The module at `path` (a config or a benchmark script: not on sys.path)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config(docs: pathlib.Path, **data):
    config = _load("lm_config", ROOT / "configs" / "lm.py").get_config("size=tiny")
    config.data.update({"sources": f"jsonl:{docs}", "vocab_size": 512,
                        "tokenizer_chars": 100_000, "seq_len": 64, "held_out_every": 3,
                        "workers": 1, **data})
    config.train.update(steps=4, batch_size=4, warmup_steps=1, log_every=2,
                        checkpoint_every=4, export_every=2)
    config.eval.update(every=0, tagger="none", max_windows=2, batch_size=32)  # one batch
    config.study.update(pack_docs_per_domain=1, pack_max_chars=500, probe_distances=(),
                        n_boot=20, tagger="brown")
    return config


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The one-shot study and the staged one (stages in another order) of the tiny
    models on a small slice of the shared corpus; compilations shared through a
    persistent cache, which changes no result (the same executables)."""
    if not CORPUS.is_dir():
        pytest.fail(f"the shared corpus is missing: {CORPUS} (../shared beside the checkout)")
    tmp = tmp_path_factory.mktemp("study")
    docs = tmp / "docs.jsonl"
    with open(docs, "w", encoding="utf-8") as f:
        for path in sorted(CORPUS.glob("*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines()[:3]:
                d = json.loads(line)
                f.write(json.dumps({"id": d["id"], "domain": d["domain"],
                                    "text": d["text"][:2500]}) + "\n")
    before = (jax.config.jax_compilation_cache_dir,
              jax.config.jax_persistent_cache_min_compile_time_secs)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    compilation_cache.set_cache_dir(str(tmp / "xla_cache"))
    compilation_cache.reset_cache()
    try:
        config = _config(docs)
        oneshot = tmp / "oneshot"
        run_study(config, str(oneshot))
        staged = tmp / "staged"
        prepare(config, str(staged))
        for arch in ("recurrent", "transformer", "hybrid"):
            train_arch(config, str(staged), arch)
        score_stage(config, str(staged), archs=["hybrid"])
        score_stage(config, str(staged))  # the others; hybrid's tables are kept
        result = analyze_stage(config, str(staged))
        yield {"tmp": tmp, "docs": docs, "config": config, "oneshot": oneshot,
               "staged": staged, "result": result}
    finally:
        jax.config.update("jax_compilation_cache_dir", before[0])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", before[1])
        compilation_cache.reset_cache()


def _tables(workdir: pathlib.Path) -> dict[str, list[pathlib.Path]]:
    return {d.name: sorted(d.glob("*.parquet")) for d in sorted((workdir / "scores").iterdir())}


def test_staged_study_writes_the_one_shot_tables_bitwise(study):
    one, staged = _tables(study["oneshot"]), _tables(study["staged"])
    # Every export of every architecture: step 2 and the final step 4.
    assert list(one) == [f"{a}@{s}" for a in sorted(ARCHS) for s in (2, 4)]
    assert list(staged) == list(one)
    for name, files in one.items():
        assert [f.name for f in files] == [f.name for f in staged[name]]
        for a, b in zip(files, staged[name], strict=True):
            fa, fb = pd.read_parquet(a), pd.read_parquet(b)
            pd.testing.assert_frame_equal(fa, fb, check_exact=True)
            assert (fa["loss"].to_numpy().view("u8") == fb["loss"].to_numpy().view("u8")).all()
            assert a.read_bytes() == b.read_bytes()
    # The models differ from each other (the comparison is not vacuous) ...
    loss = {n: pd.read_parquet(f[0])["loss"].to_numpy() for n, f in one.items()}
    assert (loss["hybrid@4"] != loss["transformer@4"]).any()
    # ... and read the same tokens in the same order.
    streams = {a: json.loads((study["staged"] / a / "study_train.json").read_text())
               for a in ARCHS}
    assert len({s["stream_digest"] for s in streams.values()}) == 1
    assert {s["stream_batches"] for s in streams.values()} == {4}
    # The reports agree too.
    ra = json.loads((study["oneshot"] / "report" / "report.json").read_text())
    rb = json.loads((study["staged"] / "report" / "report.json").read_text())
    assert ra["filtered_losses"] == rb["filtered_losses"]
    prep = json.loads((study["staged"] / "prepare.json").read_text())
    assert prep["digests"] == json.loads((study["oneshot"] / "prepare.json").read_text())[
        "digests"]
    assert study["result"].record["digests"] == prep["digests"]


def _copy_study(study, name: str) -> pathlib.Path:
    dst = study["tmp"] / name
    shutil.copytree(study["staged"], dst, ignore=shutil.ignore_patterns("checkpoints"))
    return dst


def _foreign_table(study, name: str, config, *, exports=None) -> pathlib.Path:
    """A transformer table of another prepare, in a copy of the staged study."""
    other = study["tmp"] / f"other_{name}"
    prepare(config, str(other))
    if exports is None:
        train_arch(config, str(other), "transformer")
    score_stage(config, str(other), archs=["transformer"], exports=exports)
    target = _copy_study(study, f"mixed_{name}")
    table = next((other / "scores").glob("transformer@*"))
    shutil.rmtree(target / "scores" / table.name)
    shutil.copytree(table, target / "scores" / table.name)
    return target


def test_analyze_refuses_another_tokenizer(study):
    config = _config(study["docs"], vocab_size=400)
    mixed = _foreign_table(study, "tokenizer", config)
    with pytest.raises(StudyError, match=r"transformer@\d was made with a different tokenizer"):
        analyze_stage(study["config"], str(mixed))


def test_analyze_and_score_refuse_other_data(study):
    # One training document more (not held out), the same tokenizer: other training
    # tokens, the same eval pack.
    extra = study["tmp"] / "extra.jsonl"
    text = next(t for i in range(100) if not is_held_out(
        hashlib.sha256((t := f"an extra training document {i}. " * 20).encode()).digest(), 3))
    extra.write_text(json.dumps({"id": "extra", "domain": "news", "text": text}) + "\n")
    given = f"sentencepiece:{study['staged'] / 'tokenizer.model'}"
    config = _config(study["docs"], tokenizer=given)
    config.data.sources += f",jsonl:{extra}"
    mixed = _foreign_table(study, "data", config)
    other_prep = json.loads((study["tmp"] / "other_data" / "prepare.json").read_text())
    staged_prep = json.loads((study["staged"] / "prepare.json").read_text())
    assert other_prep["digests"]["pack"] == staged_prep["digests"]["pack"]
    assert other_prep["digests"]["data"] != staged_prep["digests"]["data"]
    with pytest.raises(StudyError, match=r"table transformer@\d was made with a different data"):
        analyze_stage(study["config"], str(mixed))
    # score refuses the staged study's checkpoints in the other study ...
    with pytest.raises(StudyError, match=r"checkpoint .*final was made with a different data"):
        score_stage(config, str(study["tmp"] / "other_data"),
                    exports=[str(study["staged"] / "transformer" / "final")])
    # ... and train refuses to continue a run of the other data.
    target = _copy_study(study, "train_mix")
    shutil.rmtree(target / "transformer")
    shutil.copytree(study["tmp"] / "other_data" / "transformer", target / "transformer")
    with pytest.raises(StudyError, match=r"the transformer run .*different data"):
        train_arch(study["config"], str(target), "transformer")


def test_analyze_refuses_another_pack(study):
    # The same tokenizer and training tokens, another eval pack: the staged study's
    # own checkpoint is scored on it.
    given = f"sentencepiece:{study['staged'] / 'tokenizer.model'}"
    config = _config(study["docs"], tokenizer=given)
    config.study.pack_docs_per_domain = 2
    mixed = _foreign_table(study, "pack", config,
                           exports=[str(study["staged"] / "transformer" / "final")])
    with pytest.raises(StudyError, match=r"table transformer@4 was made with a different pack"):
        analyze_stage(study["config"], str(mixed))
    # A prepared workdir refuses other settings instead of mixing them.
    with pytest.raises(StudyError, match="pack_docs_per_domain: 1 -> 2"):
        prepare(config, str(study["staged"]))


def test_a_run_with_other_settings_is_refused(study):
    config = study["config"]
    config.train.steps = 5
    try:
        with pytest.raises(StudyError, match=r"train.steps: 4 -> 5"):
            train_arch(config, str(study["staged"]), "hybrid")
    finally:
        config.train.steps = 4


def test_study_result_condenses_the_workdir(study):
    # benchmarks/study_result.py: what the docs quote from a GPU study, read back from
    # the staged workdir's records and report.
    module = _load("study_result", ROOT / "benchmarks" / "study_result.py")
    out = module.collect(study["staged"])
    prep = json.loads((study["staged"] / "prepare.json").read_text())
    report = json.loads((study["staged"] / "report" / "report.json").read_text())
    assert out["digests"] == prep["digests"]
    assert out["prepare"]["training_tokens"] == prep["tokens"]["tokens"]
    assert [(t["arch"], t["complete"], t["steps"]) for t in out["train"]] == [
        (a, True, 4) for a in sorted(ARCHS)]
    rec = json.loads((study["staged"] / "hybrid" / "study_train.json").read_text())
    assert [t for t in out["train"] if t["arch"] == "hybrid"][0]["tokens"] == rec["tokens"]
    assert sorted((s["arch"], s["step"]) for s in out["score"]) == [
        (a, s) for a in sorted(ARCHS) for s in (2, 4)]
    assert out["paired_filtered"] == report["paired_filtered"]
    assert out["filtered_losses"] == report["filtered_losses"]
    # --throughput: training tokens/s over train_throughput.py's at the training shape
    bench = [{k: t[k] for k in ("arch", "seq_len", "batch", "params")}
             | {"tokens_per_s": 2.0 * t["median_tokens_per_s"], "device": "cpu"}
             for t in out["train"]]
    assert [round(r["ratio"], 12) for r in module.pipeline(out["train"], bench)] == [0.5] * 3
    hybrid = [b for b in bench if b["arch"] == "hybrid"][0]
    hybrid["batch"] += 1
    with pytest.raises(SystemExit, match=r"--throughput hybrid: batch \d+ in the benchmark"):
        module.pipeline(out["train"], bench)
    with pytest.raises(SystemExit, match="has no row for hybrid"):
        module.pipeline(out["train"], [b for b in bench if b is not hybrid])


def test_study_result_extends_an_earlier_result(study, tmp_path, monkeypatch):
    # --from_result: the benchmark ran after the workdir was gone; the earlier result file
    # stands in for it and gains `pipeline`, its other fields unchanged.
    module = _load("study_result", ROOT / "benchmarks" / "study_result.py")
    first = tmp_path / "first.json"
    monkeypatch.setattr("sys.argv", ["study_result.py", f"--workdir={study['staged']}",
                                     f"--out={first}", "--what=w"])
    module.main()
    earlier = json.loads(first.read_text())
    bench = tmp_path / "throughput.json"
    bench.write_text(json.dumps([{k: t[k] for k in ("arch", "seq_len", "batch", "params")}
                                 | {"tokens_per_s": 4.0 * t["median_tokens_per_s"]}
                                 for t in earlier["train"]]))
    second = tmp_path / "second.json"
    monkeypatch.setattr("sys.argv", ["study_result.py", f"--from_result={first}",
                                     f"--throughput={bench}", f"--out={second}"])
    module.main()
    later = json.loads(second.read_text())
    assert [round(r["ratio"], 12) for r in later.pop("pipeline")] == [0.25] * 3
    assert {k: v for k, v in later.items() if k != "commit_here"} == {
        k: v for k, v in earlier.items() if k != "commit_here"}
    first.write_text("{not json")
    with pytest.raises(SystemExit, match="--from_result .*first.json"):
        module.from_result(first)
    first.write_text("[]")
    with pytest.raises(SystemExit, match="not a study_result.py file"):
        module.from_result(first)


def test_publish_report_copies_the_report_without_the_documents_text(study, tmp_path):
    # benchmarks/publish_report.py: what goes under docs/study/ from a GPU study's report.
    module = _load("publish_report", ROOT / "benchmarks" / "publish_report.py")
    report = study["staged"] / "report"
    src_md = (report / "report.md").read_text()
    src_json = json.loads((report / "report.json").read_text())
    assert "## Token views" in src_md and src_json.get("token_views")
    out = tmp_path / "published"
    module.publish(report, out)
    md = (out / "report.md").read_text()
    head, _, rest = src_md.partition("## Token views")
    after = rest[rest.find("\n## "):] if "\n## " in rest else ""
    assert md == f"{head}## Token views\n\n{module.NOTE}\n" + (f"\n{after.lstrip(chr(10))}"
                                                             if after else "")
    src_json.pop("token_views")
    assert json.loads((out / "report.json").read_text()) == src_json
    assert sorted(p.name for p in (out / "figures").glob("*.png")) == sorted(
        p.name for p in (report / "figures").glob("*.png"))
    # Sections after Token views survive; a report without one is copied unchanged.
    text = "# r\n\n## Token views\n\n<pre>document text</pre>\n\n## Warnings\n\n- w\n"
    assert module.strip_token_views(text) == (
        f"# r\n\n## Token views\n\n{module.NOTE}\n\n## Warnings\n\n- w\n")
    assert module.strip_token_views("# r\n\n## Warnings\n") == "# r\n\n## Warnings\n"
    with pytest.raises(FileNotFoundError, match="report.md"):
        module.publish(tmp_path / "nowhere", out)
