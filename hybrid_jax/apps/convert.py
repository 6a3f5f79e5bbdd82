"""Convert Olmo 3 / Olmo Hybrid checkpoints between Hugging Face and hybrid_jax.

    python -m hybrid_jax.apps.convert --input_dir=Olmo-Hybrid-7B --output_dir=ckpt/hybrid7b \
        --dtype=bfloat16 [--verify=prompts.txt]
    python -m hybrid_jax.apps.convert --direction=jax_to_hf --input_dir=ckpt/mine \
        --output_dir=hf/mine [--tokenizer_dir=Olmo-Hybrid-7B] [--verify=prompts.txt]

`--verify` runs transformers and hybrid_jax on the prompt file (documents separated by
blank lines, tokenised with the checkpoint's tokenizer.json, EOS after each, no BOS)
and prints max |dlogit| and per-layer differences; in float32 it fails above 1e-4, and
then nothing is published (an existing output stays). The output may not be, contain or
lie inside an input, and `--overwrite` replaces only an output of ours
(hybrid_jax/convert/pipeline.py). Verifying needs both models in host memory at once
(about 2 x 15 GB at 7B in bf16).
"""

from __future__ import annotations

import logging

from absl import app, flags

_INPUT = flags.DEFINE_string("input_dir", None, "HF directory or hybrid_jax checkpoint.",
                             required=True)
_OUTPUT = flags.DEFINE_string("output_dir", None, "Where to write the result.", required=True)
_DIRECTION = flags.DEFINE_enum("direction", "hf_to_jax", ["hf_to_jax", "jax_to_hf"],
                               "Conversion direction.")
_DTYPE = flags.DEFINE_enum("dtype", None, ["float32", "bfloat16", "float16"],
                           "Parameter dtype of the output (default: bfloat16 for hf_to_jax, "
                           "each tensor's own dtype for jax_to_hf).")
_VERIFY = flags.DEFINE_string("verify", None, "Prompt file: check parity after converting.")
_TOKENIZER = flags.DEFINE_string("tokenizer_dir", None, "Directory with tokenizer.json "
                                 "(default: the HF side's directory).")
_MAX_TOKENS = flags.DEFINE_integer("verify_tokens", 2048, "Tokens of the prompt file to use.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing output_dir.")
_SHARD_GB = flags.DEFINE_float("max_shard_gb", 5.0, "Largest safetensors shard (jax_to_hf).")


def main(argv: list[str]) -> None:
    del argv
    logging.getLogger("hybrid_jax").setLevel(logging.INFO)
    from hybrid_jax.convert import pipeline

    pipeline.run_conversion(
        _DIRECTION.value, _INPUT.value, _OUTPUT.value, dtype=_DTYPE.value,
        overwrite=_OVERWRITE.value, tokenizer_dir=_TOKENIZER.value,
        max_shard_bytes=int(_SHARD_GB.value * 2**30), verify=_VERIFY.value,
        verify_tokens=_MAX_TOKENS.value)


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
