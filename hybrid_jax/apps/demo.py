"""Demo: train the tiny transformer, hybrid and recurrent models on identical data and
compare their per-token losses on held-out text.

    python -m hybrid_jax.apps.demo                       # defaults: configs/lm.py, tiny
    python -m hybrid_jax.apps.demo --config.train.steps=50

Corpus: the embedded standard-library corpus (Python source + docstring prose), byte
tokens, 1 in 10 documents held out. Prints each model's held-out loss per domain and a
per-token comparison of one held-out snippet.
"""

from __future__ import annotations

import pathlib

import numpy as np
from absl import app, flags
from ml_collections import config_flags

from hybrid_jax.configlib import model_config
from hybrid_jax.data.byte_tokenizer import ByteTokenizer
from hybrid_jax.data.packing import pack_documents
from hybrid_jax.data.stdlib_corpus import stdlib_documents
from hybrid_jax.models.presets import ARCHITECTURES, layer_pattern
from hybrid_jax.scoring.score import score_rows
from hybrid_jax.train.loop import train_on_rows

_CONFIG_FILE = pathlib.Path(__file__).resolve().parents[2] / "configs" / "lm.py"
_CONFIG = config_flags.DEFINE_config_file("config", f"{_CONFIG_FILE}:size=tiny")
_DOCS = flags.DEFINE_integer("docs_per_domain", 120, "Documents per domain.")


def main(argv: list[str]) -> None:
    del argv
    config, tok = _CONFIG.value, ByteTokenizer()
    docs = stdlib_documents(max_docs_per_domain=_DOCS.value, max_chars=6000)
    train_docs = [d for i, d in enumerate(docs) if i % 10]
    held = [d for i, d in enumerate(docs) if i % 10 == 0]
    t = config.train.seq_len
    rows, segs = pack_documents([tok.encode(d.text) for d in train_docs], t, tok.eos_id)
    print(f"corpus: {len(train_docs)} train / {len(held)} held-out documents, "
          f"{rows.size:,} train tokens in {rows.shape[0]} windows of {t}")

    results = {}
    for arch in ARCHITECTURES:
        n_layers = len(config.model.layer_types)
        cfg = model_config(config).replace(
            vocab_size=tok.vocab_size, layer_types=layer_pattern(arch, n_layers))
        run = train_on_rows(cfg, rows, segs, desc=arch, **{
            k: config.train[k] for k in ("steps", "batch_size", "learning_rate", "warmup_steps",
                                         "weight_decay", "grad_clip", "seed")})
        per_domain = {}
        for domain in sorted({d.domain for d in held}):
            h_rows, h_segs = pack_documents(
                [tok.encode(d.text) for d in held if d.domain == domain], t, tok.eos_id)
            nll, mask = score_rows(run.graphdef, run.params, h_rows, h_segs)
            per_domain[domain] = float(nll[mask].mean())
        snippet = tok.encode(held[0].text[:200])
        nll, _ = score_rows(run.graphdef, run.params, snippet[None], np.ones((1, snippet.size)))
        results[arch] = (run.losses, per_domain, nll[0])

    print("\nheld-out loss (nats/byte), by domain")
    domains = list(next(iter(results.values()))[1])
    print(f"{'model':<12}" + "".join(f"{d:>10}" for d in domains) + f"{'train':>10}")
    for arch, (losses, per_domain, _) in results.items():
        print(f"{arch:<12}" + "".join(f"{per_domain[d]:>10.3f}" for d in domains)
              + f"{np.mean(losses[-10:]):>10.3f}")
    print(f"\nper-token loss on held-out {held[0].id} (first 60 bytes)")
    print(f"{'token':>8}" + "".join(f"{a:>13}" for a in results))
    for i in range(min(60, snippet.size - 1)):
        print(f"{tok.token_text(int(snippet[i + 1]))!r:>8}"
              + "".join(f"{r[2][i]:>13.3f}" for r in results.values()))


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
