"""Stage 1, `prepare`: the corpus, the tokenizer, the training tokens and the eval pack.

    documents (config.data.sources, streamed)
      -> data/corpus/     deduplicated, held-out split by content hash (data/corpus.py)
      -> tokenizer.model  SentencePiece trained on a sample spread over the training split
                          (or the tokenizer that config.data.tokenizer names)
      -> data/train/      the training split tokenised by `data.workers` processes into a
                          memory-mapped token store (data/token_store.py)
      -> pack/            `pack_docs_per_domain` held-out documents of each domain, cut to
                          `pack_max_chars`, in windows of `data.seq_len` (scoring/eval_pack.py)
      -> prepare.json     the three digests, the corpus numbers, throughput and timings

Each step is skipped when its output is complete on disk (each is written under a
temporary name and renamed), so a killed prepare resumes. A workdir prepared with other
data settings is refused, naming what changed; an existing prepare is re-verified
(token file re-hashed, pack re-hashed) before it is reused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from typing import Any

import ml_collections

from hybrid_jax.data.corpus import build_corpus, iter_corpus, read_manifest, sample_texts
from hybrid_jax.data.sources import SourceStats, iter_documents, parse_specs
from hybrid_jax.data.token_store import MANIFEST as STORE_MANIFEST
from hybrid_jax.data.token_store import TokenStore, tokenize_corpus
from hybrid_jax.data.tokenizers import load_tokenizer, tokenizer_digest, train_sentencepiece
from hybrid_jax.scoring.eval_pack import EvalPack, build_eval_pack
from hybrid_jax.study.manifest import (
    Layout,
    StudyError,
    check_digests,
    diff_fields,
    read_record,
    settings,
    write_record,
)

log = logging.getLogger("hybrid_jax.study")


def prepare_inputs(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The settings that determine what prepare makes (recorded; a change is refused)."""
    dc, s = config.data, settings(config)
    return {
        "sources": dc.sources, "held_out_every": dc.held_out_every,
        "held_out_by_domain": _as_dict(dc.get("held_out_by_domain", None)),
        "shard_chars": dc.get("shard_chars", 32_000_000), "tokenizer": dc.tokenizer,
        "vocab_size": dc.vocab_size, "tokenizer_chars": dc.tokenizer_chars,
        "seq_len": dc.seq_len, "pack_docs_per_domain": s["pack_docs_per_domain"],
        "pack_max_chars": s["pack_max_chars"],
    }


def _as_dict(value: Any) -> dict[str, Any]:
    if not value:
        return {}
    return dict(value.to_dict() if hasattr(value, "to_dict") else value)


def tokenizer_spec(layout: Layout, given: str) -> str:
    """The spec the study's stages load: the workdir's own SentencePiece model when it
    was trained (or copied) here, else the spec as given (bytes, hf:<file>)."""
    kind = given.partition(":")[0]
    return f"sentencepiece:{layout.tokenizer}" if kind == "sentencepiece" else given


def current_digests(layout: Layout, given_tokenizer: str, *, verify: bool) -> dict[str, str]:
    """The digests of what is on disk now. `verify` re-hashes the token file (else its
    size and manifest are checked); the pack is always re-hashed."""
    store = TokenStore.open(layout.tokens, verify=verify)
    return {"data": store.digest,
            "tokenizer": tokenizer_digest(tokenizer_spec(layout, given_tokenizer)),
            "pack": EvalPack.load(layout.pack).sha256()}


def _corpus(config: ml_collections.ConfigDict, layout: Layout, workers: int
            ) -> tuple[dict[str, Any], float]:
    dc = config.data
    if (layout.corpus / "manifest.json").exists():
        return read_manifest(layout.corpus), 0.0
    t0 = time.perf_counter()
    stats = SourceStats()
    specs = parse_specs(dc.sources)
    info: dict[str, Any] = {"sources": specs}
    if any(s.partition(":")[0] == "packages" for s in specs):
        from hybrid_jax.data.packages_corpus import package_versions, parse_roots

        roots = [r for s in specs if s.partition(":")[0] == "packages"
                 for r in parse_roots(s.partition(":")[2])]
        info["package_roots"] = [f"{label}={path}" for label, path in roots]
        info["package_versions"] = package_versions(roots)
    manifest = build_corpus(
        iter_documents(specs, stats, workers=workers), layout.corpus,
        held_out_every=dc.held_out_every,
        held_out_by_domain=_as_dict(dc.get("held_out_by_domain", None)),
        shard_chars=dc.get("shard_chars", 32_000_000), info=info)
    elapsed = time.perf_counter() - t0
    manifest["source_stats"] = {"read": stats.read, "skipped": dict(stats.skipped),
                                "worker_cpu_s": stats.cpu_s, "wall_s": elapsed}
    (layout.corpus / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("corpus: %s train documents (%s chars), %s held out (%.1f%% of chars), %s "
             "duplicates removed, in %.1f s", f"{manifest['train_documents']:,}",
             f"{manifest['train_chars']:,}", f"{manifest['held_out_documents']:,}",
             100 * manifest["held_out_share_chars"],
             f"{manifest['duplicates_removed']['documents']:,}", elapsed)
    return manifest, elapsed


def _tokenizer(config: ml_collections.ConfigDict, layout: Layout) -> tuple[str, float]:
    """Train (or copy in) the tokenizer; its spec and the seconds it took."""
    given = config.data.tokenizer
    spec = tokenizer_spec(layout, given)
    if given.partition(":")[0] != "sentencepiece" or layout.tokenizer.exists():
        return spec, 0.0
    t0 = time.perf_counter()
    if given == "sentencepiece":
        log.info("training a %d-piece SentencePiece model on %s characters",
                 config.data.vocab_size, f"{config.data.tokenizer_chars:,}")
        tok = train_sentencepiece(sample_texts(layout.corpus, config.data.tokenizer_chars),
                                  config.data.vocab_size, max_chars=config.data.tokenizer_chars)
        tmp = layout.tokenizer.with_name(layout.tokenizer.name + ".partial")
        tok.save(tmp)
        tmp.replace(layout.tokenizer)
    else:  # sentencepiece:<file>: a copy, so that the workdir is self-contained
        shutil.copyfile(given.partition(":")[2], layout.tokenizer)
    return spec, time.perf_counter() - t0


def _pack(config: ml_collections.ConfigDict, layout: Layout, spec: str) -> tuple[EvalPack, float]:
    if (layout.pack / "pack.json").exists():
        return EvalPack.load(layout.pack), 0.0
    t0 = time.perf_counter()
    s = settings(config)
    by_domain: dict[str, list] = {}
    for d in iter_corpus(layout.corpus, "held_out"):
        if len(by_domain.setdefault(d.domain, [])) < s["pack_docs_per_domain"]:
            by_domain[d.domain].append(dataclasses.replace(d, text=d.text[: s["pack_max_chars"]]))
    chosen = [d for ds in by_domain.values() for d in ds]
    if not chosen:
        raise StudyError(f"{layout.corpus}: no held-out document to build the eval pack "
                         "from (lower data.held_out_every)")
    pack = build_eval_pack(chosen, load_tokenizer(spec), config.data.seq_len,
                           tokenizer_spec=spec)
    tmp = layout.pack.with_name("pack.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    pack.save(tmp)
    shutil.rmtree(layout.pack, ignore_errors=True)
    tmp.replace(layout.pack)
    return pack, time.perf_counter() - t0


def prepare(config: ml_collections.ConfigDict, workdir: str, *, workers: int | None = None
            ) -> dict[str, Any]:
    """Run (or verify and reuse) the prepare stage; its record (see module docstring).

    workers: processes for the corpus walk and tokenisation (default data.workers; 0:
    one per CPU). The result does not depend on it.
    """
    layout = Layout.of(workdir)
    layout.workdir.mkdir(parents=True, exist_ok=True)
    inputs = prepare_inputs(config)
    given = config.data.tokenizer
    if layout.prepare_record.exists():
        record = read_record(layout.prepare_record, "prepare")
        changed = diff_fields(record["inputs"], inputs)
        if changed:
            raise StudyError(f"{layout.workdir} was prepared with other data settings ("
                             + "; ".join(changed) + "): use another --workdir")
        t0 = time.perf_counter()
        check_digests(record["digests"], current_digests(layout, given, verify=True),
                      what=f"the prepared data in {layout.workdir}", where="files on disk "
                      "changed since prepare.json was written")
        log.info("prepare: reusing %s (digests verified in %.1f s)", layout.workdir,
                 time.perf_counter() - t0)
        return record
    # A prepare killed half-way resumes from its finished steps, but only with the
    # settings it was started with.
    started = layout.workdir / "prepare.started.json"
    if started.exists():
        changed = diff_fields(json.loads(started.read_text()), inputs)
        if changed:
            raise StudyError(f"{layout.workdir} holds a prepare started with other data "
                             "settings (" + "; ".join(changed) + "): use another --workdir")
    else:
        started.write_text(json.dumps(inputs, indent=2) + "\n")
    workers = config.data.get("workers", 0) if workers is None else workers
    t_start = time.perf_counter()
    corpus, t_corpus = _corpus(config, layout, workers)
    spec, t_tok = _tokenizer(config, layout)
    if (layout.tokens / STORE_MANIFEST).exists():
        store_manifest, t_ids = TokenStore.open(layout.tokens).manifest, 0.0
    else:
        t0 = time.perf_counter()
        store_manifest = tokenize_corpus(layout.corpus, spec, layout.tokens, workers=workers)
        t_ids = time.perf_counter() - t0
        tp = store_manifest["throughput"]
        log.info("tokenised %s tokens in %.1f s: %s tokens/s with %d workers (%s per worker, "
                 "%s per CPU-second)", f"{store_manifest['tokens']:,}", t_ids,
                 f"{tp['tokens_per_s']:,.0f}", tp["workers"],
                 f"{tp['tokens_per_s_per_worker']:,.0f}", f"{tp['tokens_per_cpu_s']:,.0f}")
    pack, t_pack = _pack(config, layout, spec)
    digests = {"data": store_manifest["digest"], "tokenizer": tokenizer_digest(spec),
               "pack": pack.sha256()}
    corpus_summary = {k: v for k, v in corpus.items()
                      if k not in ("shards", "package_versions", "format")}
    corpus_summary["packages"] = len(corpus.get("package_versions", {}))
    record = {
        "inputs": inputs, "digests": digests, "tokenizer_spec": spec,
        "corpus": corpus_summary,
        "tokens": {k: store_manifest[k] for k in ("tokens", "documents", "chars", "dtype",
                                                  "vocab_size", "throughput")},
        "pack": {k: pack.meta.get(k) for k in ("documents", "text_tokens", "scored_targets",
                                               "seq_len", "mode")} | {"windows": pack.num_windows},
        "timings_s": {"corpus": t_corpus, "tokenizer": t_tok, "tokenize": t_ids,
                      "pack": t_pack, "total": time.perf_counter() - t_start},
    }
    log.info("prepare: data %s, tokenizer %s, pack %s (%d windows, %s scored tokens)",
             digests["data"][:12], digests["tokenizer"][:12], digests["pack"][:12],
             pack.num_windows, f"{pack.meta['scored_targets']:,}")
    record = write_record(layout.prepare_record, "prepare", record)
    started.unlink()
    return record
