r"""Score a checkpoint on an eval pack: the per-token table (parquet shards + sidecar).

    hybrid-jax-score --checkpoint=runs/hybrid/final \
        --pack=runs/pack --docs=corpus:../shared/data/corpus \
        --tokenizer=sentencepiece:runs/hybrid/tokenizer.model --out=runs/scores/hybrid

(`python -m hybrid_jax.apps.score` is the same.) The pack is built (and saved) on first
use from --docs and --tokenizer, and read as is afterwards, so every model of a
comparison scores the same windows. Rerunning continues after the last complete shard,
if the shards there came from the same checkpoint and pack (else it stops; --restart
scores from the start).
"""

from __future__ import annotations

import logging
import pathlib
import re

from absl import app, flags

from hybrid_jax.apps import cli

_CKPT = flags.DEFINE_string("checkpoint", None, "Parameter checkpoint directory (a training "
                            "export such as runs/x/final, or a converted checkpoint).",
                            required=True)
_PACK = flags.DEFINE_string("pack", None, "Eval pack directory; built from --docs and "
                            "--tokenizer if it holds no pack.json.", required=True)
_OUT = flags.DEFINE_string("out", None, "Output directory of the table; a rerun continues "
                           "after its last complete shard.", required=True)
_DOCS = flags.DEFINE_string("docs", None, "Document sources to build the pack from: "
                            "jsonl:<glob>, text:<glob>, corpus:<dir> or stdlib, "
                            "comma-separated.")
_TOK = flags.DEFINE_string("tokenizer", None, "Tokenizer spec to build the pack with: "
                           "bytes, sentencepiece:<file> or hf:<tokenizer.json>.")
_SEQ = flags.DEFINE_integer("seq_len", 8192, "Targets per window when building the pack.")
_MODE = flags.DEFINE_enum("mode", "packed", ["packed", "document"], "Pack layout: documents "
                          "packed into windows, or windows within one document.")
_STRIDE = flags.DEFINE_integer("stride", None, "Document mode: window start stride.")
_NAME = flags.DEFINE_string("name", None, "Model name in the table (default: dir name).")
_STEP = flags.DEFINE_integer("step", None, "Training step of the checkpoint, if known.")
_DTYPE = flags.DEFINE_string("dtype", None, "Compute/param dtype override (bfloat16).")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Windows per device batch (global).")
_CHUNK = flags.DEFINE_integer("vocab_chunk", 8192, "Vocabulary slice of the LM head.")
_MESH = flags.DEFINE_string("mesh", "data=-1", "Mesh, e.g. data=-1 or data=2,tensor=4.")
_RESTART = flags.DEFINE_bool("restart", False, "Delete the shards already in --out and "
                             "score from the start (they came from another checkpoint or "
                             "pack).")


def mesh_axes(spec: str) -> dict[str, int]:
    """'data=2,tensor=4' -> {'data': 2, 'tensor': 4}; a malformed spec is a usage error."""
    axes = {}
    for item in spec.split(","):
        name, _, size = (s.strip() for s in item.partition("="))
        if not name or not re.fullmatch(r"-?\d+", size):
            raise app.UsageError(f"--mesh={spec}: {item!r} is not axis=size (e.g. data=-1)")
        axes[name] = int(size)
    return axes


def main(argv: list[str]) -> None:
    del argv
    cli.require_dir("checkpoint", _CKPT.value)
    axes = mesh_axes(_MESH.value)
    pack_dir = pathlib.Path(_PACK.value)
    has_pack = (pack_dir / "pack.json").exists()
    if not has_pack and not (_DOCS.value and _TOK.value):
        raise app.UsageError(f"--pack={pack_dir} holds no pack (pack.json): pass --docs and "
                             "--tokenizer to build it")

    from hybrid_jax.data.sources import load_documents
    from hybrid_jax.data.tokenizers import load_tokenizer
    from hybrid_jax.scoring.eval_pack import EvalPack, build_eval_pack

    logging.getLogger("hybrid_jax").setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.WARNING)
    # The pack first: it needs no jax, so a bad --docs or --tokenizer fails in a second.
    if has_pack:
        with cli.reading("pack", pack_dir, ValueError):
            pack = EvalPack.load(pack_dir)
    else:
        with cli.reading("tokenizer", _TOK.value, ValueError):
            tokenizer = load_tokenizer(_TOK.value)
        with cli.reading("docs", _DOCS.value):
            docs, _ = load_documents(_DOCS.value)
        pack = build_eval_pack(docs, tokenizer, _SEQ.value, tokenizer_spec=_TOK.value,
                               mode=_MODE.value, stride=_STRIDE.value)
        pack.save(pack_dir)

    from hybrid_jax.scoring.loading import load_for_scoring
    from hybrid_jax.scoring.writer import score_pack
    from hybrid_jax.sharding import (
        activation_sharding,
        batch_sharding,
        initialize_distributed,
        make_mesh,
    )

    initialize_distributed()
    mesh = make_mesh(axes)
    # (orbax / tensorstore report a corrupt or truncated file as ValueError)
    with cli.reading("checkpoint", _CKPT.value, ValueError):
        cfg, graphdef, params = load_for_scoring(_CKPT.value, mesh=mesh, dtype=_DTYPE.value)
    name = _NAME.value or pathlib.Path(_CKPT.value).name
    with activation_sharding(mesh):
        out = score_pack(graphdef, params, pack, _OUT.value, model_name=name, step=_STEP.value,
                         source={"checkpoint": str(pathlib.Path(_CKPT.value).absolute())},
                         batch_size=_BATCH.value, vocab_chunk=_CHUNK.value,
                         batch_sharding=batch_sharding(mesh), restart=_RESTART.value)
    print(f"per-token table of {name}: {out}")


def run() -> None:
    cli.run(main)


if __name__ == "__main__":
    run()
