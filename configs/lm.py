"""The study's language models: transformer, hybrid or recurrent, at any ladder size.

    python -m hybrid_jax.apps.train --config=configs/lm.py:arch=hybrid,size=tiny \
        --workdir=runs/hybrid_tiny
    python -m hybrid_jax.apps.train --config=configs/lm.py:arch=transformer,size=60m \
        --config.data.sources=corpus:../shared/data/corpus --workdir=runs/tr60m

Variants (`arg`): arch in transformer | hybrid | recurrent; size in tiny | 60m | 100m |
190m | 370m | 600m | 760m | 1b. Every field can be overridden with
`--config.<section>.<field>=...`. `model.vocab_size` is raised to fit the tokenizer
(padded to a multiple of 128) when the tokenizer is larger.
"""

from hybrid_jax.configlib import model_config_dict, parse_arg
from hybrid_jax.models.presets import research_model


def get_config(arg: str = ""):
    config = parse_arg(arg, arch="hybrid", size="tiny")
    tiny = config.size == "tiny"
    # bf16 compute with fp32 parameters and optimizer state, except on the CPU size.
    dtype = "float32" if tiny else "bfloat16"
    config.model = model_config_dict(research_model(config.arch, config.size, dtype=dtype))

    # Mesh axes: data (replicated params), fsdp (sharded params), tensor. -1 = the rest.
    # devices: 0 = every device, N = the first N.
    config.mesh = dict(data=-1, fsdp=1, tensor=1, devices=0)

    config.data = dict(
        # stdlib, corpus:<dir>, jsonl:<glob>, text:<glob>, packages[:<dir>;...]; comma-separated
        sources="stdlib",
        # 1 in 10 documents held out: hybrid_jax.apps.train takes every 10th of each
        # domain; the study takes those whose text hash is divisible by 10 (data/corpus.py),
        # or by held_out_by_domain[domain] where given.
        held_out_every=10,
        held_out_by_domain={},
        tokenizer="sentencepiece",  # trained on the train split; or bytes, hf:<file>, ...
        vocab_size=4096 if tiny else 32_768,
        tokenizer_chars=5_000_000,
        seq_len=256 if tiny else 4096,
        # Independent shard streams (0: one per process). Fix it (to a multiple of every
        # process count you will use) to resume on a different number of hosts.
        shards=0,
        # Pre-tokenised training tokens (a data/token_store.py directory; the study's
        # prepare stage writes one) and the held-out JSONL for in-loop evals; set, they
        # replace sources / held_out_every for training and nothing is tokenised then.
        tokens="",
        eval_docs="",
        workers=0,  # study prepare: processes walking and tokenising (0: one per CPU)
        shard_chars=32_000_000,  # study prepare: characters per corpus shard
    )

    config.train = dict(
        seed=0,
        steps=300 if tiny else 20_000,
        batch_size=8 if tiny else 256,  # global, in windows
        microbatches=1,  # gradient accumulation
        learning_rate=3e-3 if tiny else 6e-4,
        warmup_steps=30 if tiny else 2000,
        schedule="cosine",  # cosine | wsd | wsd_s
        decay_fraction=0.05,  # wsd / wsd_s: share of each budget spent decaying
        budgets=(0.5, 1.0, 2.0, 4.0, 8.0),  # wsd_s: multiples of budget_unit_tokens
        budget_unit_tokens=0.0,  # 0: Chinchilla, 20 tokens per parameter
        weight_decay=0.1,
        grad_clip=1.0,
        z_loss=0.0,
        loss_chunk=256,  # LM-head positions per piece (recomputed in the backward); 0: whole
        log_every=10 if tiny else 50,
        checkpoint_every=100 if tiny else 1000,
        keep_checkpoints=3,
        export_every=0,  # > 0: also export parameters every N steps (step_<N>/)
        kill_at_step=0,  # testing hook: SIGKILL the process after this step
    )

    config.eval = dict(
        every=100 if tiny else 1000,
        batch_size=8 if tiny else 32,
        max_windows=64 if tiny else 512,
        tagger="auto",  # auto | brown | spacy | none (no content filter)
    )

    # The study (hybrid_jax/study/, hybrid-jax-study): what is compared and how.
    config.study = dict(
        archs="transformer,hybrid,recurrent",
        pack_docs_per_domain=30,  # held-out documents of each domain in the eval pack,
        pack_max_chars=6000,  # each cut to this many characters
        probe_distances=(32, 64, 128, 256),  # synthetic probes; () for none
        probes_per_distance=4,
        score_exports="*",  # globs of the export names to score (e.g. anneal_*)
        tagger="auto",
        n_boot=1000,
        # TOP-10∩NO-COPY ranking: "" cross-fitted on the A - B gap, "a,b,..." families
        # or tags (NN,JJ,noun), or "report:<report.json>" (its tags table)
        top_families="",
        top_k=10,  # how many tags the ranking takes; 0 with top_families "": no filter
    )
    return config
