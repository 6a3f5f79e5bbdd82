"""The study on one H100: three 60M architectures, 150M tokens each, WSD-S exports.

    hybrid-jax-study --config=configs/study_gpu.py --stage=prepare --workdir=runs/study_gpu
    hybrid-jax-study --config=configs/study_gpu.py --stage=train --arch=hybrid \
        --workdir=runs/study_gpu
    hybrid-jax-study --config=configs/study_gpu.py --stage=score --workdir=runs/study_gpu
    hybrid-jax-study --config=configs/study_gpu.py --stage=analyze --workdir=runs/study_gpu

`launch/study_gpu.sh ARCH...` runs prepare + train + score of the named architectures in
one lent-GPU call and leaves the tables in $OUT (docs/study.md, "On a GPU").

Variants (`arg`): size (60m; 100m needs about 2x the 60m's time), shared (the shared
corpus directory: auto = <repo>/.shared/corpus, else ../shared/data/corpus beside the
checkout, else none). configs/lm.py gives every other field.

Why these numbers:
- Data: the shared corpus (7 domains) and the machine's installed Python packages
  (code, C / CUDA headers, docstring and rst/md prose: `data/packages_corpus.py`),
  1 in 50 package documents held out, 1 in 4 of the small shared domains (about 25
  documents each, enough for the eval pack), a 32k SentencePiece trained on 10M
  characters spread over the training split.
- Model: the preset at `size` with the tokenizer's 32768-entry vocabulary (44.1M / 45.9M /
  46.5M parameters: transformer / hybrid / recurrent).
- Batch: 64 windows of 1024 tokens (65,536 tokens a step), the issue's target shape.
- Schedule: WSD-S as in OH section 4.1: warmup, then the peak rate with a linear decay
  to 0 over the last 5% of each budget, at 0.5 / 1 / 2 / 4 / 8 x 18.75M tokens (the
  unit is fixed, not Chinchilla's 20 x params, so that the three architectures, whose
  parameter counts differ, run the same steps): steps 143, 286, 572, 1144, 2289, i.e.
  150.0M tokens. Each budget exports `anneal_<b>x/` (the annealed model) and
  `stable_<b>x/` (the model its decay branched from); the study scores the five
  annealed ones (`score_exports`).
- Eval pack: 24 held-out documents of each of the ten domains, cut to 4000 characters
  (about 250k scored tokens): a few seconds to score, about 5 MB of parquet a table.
- TOP-10∩NO-COPY: the ten open-class Brown tags (of 29: NN, NNS, NP, JJ, RB, VBD, ...)
  with the largest positive transformer - hybrid gap at the last common export,
  cross-fitted (`analysis/ranking.py`): the 240 documents are dealt into three folds of
  80 and each fold is filtered by the ranking of the next, so no token is selected by
  its own document's losses. Ranking the six open-class families instead would keep all
  of them, i.e. content_not_repeated again. `--config.study.top_families=report:<json>`
  takes the ranking of a previous analysis (its tags table) instead.
"""

import importlib.util
import pathlib

from hybrid_jax.configlib import parse_arg

_HERE = pathlib.Path(__file__).resolve().parent
_SHARED_DOMAINS = ("arxiv", "books", "html", "latex", "news", "python", "wikipedia")


def _lm_config(arg: str):
    spec = importlib.util.spec_from_file_location("lm_config", _HERE / "lm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def _shared_corpus(choice: str) -> str | None:
    if choice == "none":
        return None
    if choice != "auto":
        return choice
    for path in (_HERE.parent / ".shared" / "corpus",
                 _HERE.parent.parent / "shared" / "data" / "corpus"):
        if path.is_dir():
            return str(path)
    return None


def get_config(arg: str = ""):
    a = parse_arg(arg, size="60m", shared="auto")
    config = _lm_config(f"arch=hybrid,size={a.size}")
    shared = _shared_corpus(a.shared)
    config.mesh.devices = 1
    # The model's vocabulary is the tokenizer's: the preset's 100352 (dolma2, padded)
    # would give a 60M model an LM head larger than its body (2.6x the FLOPs of the
    # 32768 one) for ids the tokenizer never makes.
    config.model.vocab_size = 32_768

    config.data.sources = ",".join(([f"corpus:{shared}"] if shared else []) + ["packages"])
    config.data.held_out_every = 50
    config.data.held_out_by_domain = {d: 4 for d in _SHARED_DOMAINS}
    config.data.vocab_size = 32_768
    config.data.tokenizer_chars = 10_000_000
    config.data.seq_len = 1024
    config.data.workers = 0  # one per CPU
    config.data.shard_chars = 16_000_000  # ~40 shards: every core busy

    tc = config.train
    tc.batch_size = 64
    tc.schedule = "wsd_s"
    tc.budgets = (0.5, 1.0, 2.0, 4.0, 8.0)
    tc.budget_unit_tokens = 18_750_000.0
    tc.decay_fraction = 0.05
    tc.warmup_steps = 100
    tc.learning_rate = 2e-3
    tc.log_every = 50
    tc.checkpoint_every = 250  # a call cut short resumes losing at most 250 steps
    tc.keep_checkpoints = 1
    tc.export_every = 0

    config.eval.update(every=0, batch_size=32, max_windows=32, tagger="none")

    config.study.update(
        pack_docs_per_domain=24, pack_max_chars=4000, score_exports="anneal_*",
        probe_distances=(32, 64, 128, 256), probes_per_distance=4, n_boot=1000,
        tagger="auto", top_families="", top_k=10)  # "": TOP-10 tags cross-fitted
    return config
