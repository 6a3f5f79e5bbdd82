r"""Convert Olmo 3 / Olmo Hybrid checkpoints between Hugging Face and hybrid_jax.

    hybrid-jax-convert --input_dir=Olmo-Hybrid-7B --output_dir=ckpt/hybrid7b \
        --dtype=bfloat16 --verify=prompts.txt
    hybrid-jax-convert --direction=jax_to_hf --input_dir=ckpt/hybrid7b \
        --output_dir=hf/hybrid7b --tokenizer_dir=Olmo-Hybrid-7B

(`python -m hybrid_jax.apps.convert` is the same.) `--verify` runs transformers and
hybrid_jax on the prompt file (documents separated by blank lines, tokenised with the
checkpoint's tokenizer.json, EOS after each, no BOS) and prints max |dlogit| and
per-layer differences; in float32 it fails above 1e-4, and then nothing is published
(an existing output stays). The output may not be, contain or lie inside an input, and
`--overwrite` replaces only an output of ours (hybrid_jax/convert/pipeline.py).
Verifying needs both models in host memory at once (about 2 x 15 GB at 7B in bf16).
"""

from __future__ import annotations

import logging

from absl import flags

from hybrid_jax.apps import cli

_INPUT = flags.DEFINE_string("input_dir", None, "The HF directory (hf_to_jax) or the "
                             "hybrid_jax checkpoint (jax_to_hf) to convert.", required=True)
_OUTPUT = flags.DEFINE_string("output_dir", None, "Where to write the result; it must not "
                              "exist unless --overwrite.", required=True)
_DIRECTION = flags.DEFINE_enum("direction", "hf_to_jax", ["hf_to_jax", "jax_to_hf"],
                               "Conversion direction: Hugging Face -> hybrid_jax or back.")
_DTYPE = flags.DEFINE_enum("dtype", None, ["float32", "bfloat16", "float16"],
                           "Parameter dtype of the output (default: bfloat16 for hf_to_jax, "
                           "each tensor's own dtype for jax_to_hf).")
_VERIFY = flags.DEFINE_string("verify", None, "Prompt file (documents separated by blank "
                              "lines): check parity with transformers after converting.")
_TOKENIZER = flags.DEFINE_string("tokenizer_dir", None, "Directory with tokenizer.json "
                                 "(default: the HF side's directory).")
_MAX_TOKENS = flags.DEFINE_integer("verify_tokens", 2048, "Tokens of the --verify prompt "
                                   "file to use.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing output_dir.")
_SHARD_GB = flags.DEFINE_float("max_shard_gb", 5.0, "Largest safetensors shard in GiB "
                               "(jax_to_hf).")


def main(argv: list[str]) -> None:
    del argv
    cli.require_dir("input_dir", _INPUT.value)
    if not _OVERWRITE.value:
        cli.refuse_existing("output_dir", _OUTPUT.value)
    if _VERIFY.value:
        cli.require_file("verify", _VERIFY.value)
    if _TOKENIZER.value:
        cli.require_dir("tokenizer_dir", _TOKENIZER.value)
    logging.getLogger("hybrid_jax").setLevel(logging.INFO)
    from hybrid_jax.convert import pipeline

    pipeline.run_conversion(
        _DIRECTION.value, _INPUT.value, _OUTPUT.value, dtype=_DTYPE.value,
        overwrite=_OVERWRITE.value, tokenizer_dir=_TOKENIZER.value,
        max_shard_bytes=int(_SHARD_GB.value * 2**30), verify=_VERIFY.value,
        verify_tokens=_MAX_TOKENS.value)


def run() -> None:
    cli.run(main)


if __name__ == "__main__":
    run()
