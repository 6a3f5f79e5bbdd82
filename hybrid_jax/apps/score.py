"""Score a checkpoint on an eval pack: the per-token table (parquet shards + sidecar).

    python -m hybrid_jax.apps.score --checkpoint=runs/hybrid/final \
        --pack=runs/pack --docs=corpus:../shared/data/corpus \
        --tokenizer=sentencepiece:runs/hybrid/tokenizer.model --out=runs/scores/hybrid

The pack is built (and saved) on first use from --docs and --tokenizer, and read as is
afterwards, so every model of a comparison scores the same windows. Rerunning continues
after the last complete shard, if the shards there came from the same checkpoint and
pack (else it stops; --restart scores from the start).
"""

from __future__ import annotations

import logging
import pathlib

from absl import app, flags

from hybrid_jax.data.sources import load_documents
from hybrid_jax.data.tokenizers import load_tokenizer
from hybrid_jax.scoring.eval_pack import EvalPack, build_eval_pack
from hybrid_jax.scoring.loading import load_for_scoring
from hybrid_jax.scoring.writer import score_pack
from hybrid_jax.sharding import (
    activation_sharding,
    batch_sharding,
    initialize_distributed,
    make_mesh,
)

_CKPT = flags.DEFINE_string("checkpoint", None, "Parameter checkpoint directory.", required=True)
_PACK = flags.DEFINE_string("pack", None, "Eval pack directory (built if missing).", required=True)
_OUT = flags.DEFINE_string("out", None, "Output directory of the table.", required=True)
_DOCS = flags.DEFINE_string("docs", None, "Document sources to build the pack from.")
_TOK = flags.DEFINE_string("tokenizer", None, "Tokenizer spec to build the pack with.")
_SEQ = flags.DEFINE_integer("seq_len", 8192, "Targets per window when building the pack.")
_MODE = flags.DEFINE_enum("mode", "packed", ["packed", "document"], "Pack layout.")
_STRIDE = flags.DEFINE_integer("stride", None, "Document mode: window start stride.")
_NAME = flags.DEFINE_string("name", None, "Model name in the table (default: dir name).")
_STEP = flags.DEFINE_integer("step", None, "Training step of the checkpoint, if known.")
_DTYPE = flags.DEFINE_string("dtype", None, "Compute/param dtype override (bfloat16).")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Windows per device batch (global).")
_CHUNK = flags.DEFINE_integer("vocab_chunk", 8192, "Vocabulary slice of the LM head.")
_MESH = flags.DEFINE_string("mesh", "data=-1", "Mesh, e.g. data=-1 or data=2,tensor=4.")
_RESTART = flags.DEFINE_bool("restart", False, "Delete the shards already in --out and "
                             "score from the start (they came from another checkpoint or pack).")


def main(argv: list[str]) -> None:
    del argv
    logging.getLogger("hybrid_jax").setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.WARNING)
    initialize_distributed()
    pack_dir = pathlib.Path(_PACK.value)
    if (pack_dir / "pack.json").exists():
        pack = EvalPack.load(pack_dir)
    else:
        if not (_DOCS.value and _TOK.value):
            raise app.UsageError(f"{pack_dir} holds no pack: pass --docs and --tokenizer")
        docs, _ = load_documents(_DOCS.value)
        pack = build_eval_pack(docs, load_tokenizer(_TOK.value), _SEQ.value,
                               tokenizer_spec=_TOK.value, mode=_MODE.value,
                               stride=_STRIDE.value)
        pack.save(pack_dir)
    mesh = make_mesh({k: int(v) for k, v in (x.split("=") for x in _MESH.value.split(","))})
    cfg, graphdef, params = load_for_scoring(_CKPT.value, mesh=mesh, dtype=_DTYPE.value)
    name = _NAME.value or pathlib.Path(_CKPT.value).name
    with activation_sharding(mesh):
        out = score_pack(graphdef, params, pack, _OUT.value, model_name=name, step=_STEP.value,
                         source={"checkpoint": str(pathlib.Path(_CKPT.value).absolute())},
                         batch_size=_BATCH.value, vocab_chunk=_CHUNK.value,
                         batch_sharding=batch_sharding(mesh), restart=_RESTART.value)
    print(f"per-token table of {name}: {out}")


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
