"""The study's language models: transformer, hybrid or recurrent, at any ladder size.

    python -m hybrid_jax.apps.demo --config=configs/lm.py:arch=hybrid,size=tiny
    ... --config=configs/lm.py:arch=transformer,size=60m --config.train.steps=20000

Variants (`arg`): arch in transformer | hybrid | recurrent; size in tiny | 60m | 100m |
190m | 370m | 600m | 760m | 1b. Every field below can be overridden with
`--config.<section>.<field>=...`.
"""

from hybrid_jax.configlib import model_config_dict, parse_arg
from hybrid_jax.models.presets import research_model


def get_config(arg: str = ""):
    config = parse_arg(arg, arch="hybrid", size="tiny")
    config.model = model_config_dict(research_model(config.arch, config.size))

    tiny = config.size == "tiny"
    config.train = dict(
        seed=0,
        steps=200 if tiny else 20_000,
        batch_size=8 if tiny else 256,
        seq_len=256 if tiny else 4096,
        learning_rate=3e-3 if tiny else 6e-4,
        warmup_steps=20 if tiny else 2000,
        weight_decay=0.1,
        grad_clip=1.0,
    )
    return config
