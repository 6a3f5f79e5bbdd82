"""Issue 24, defect 5: a score table comes from one checkpoint and one pack, complete.

Before: scoring into a directory that held another model's shards continued them (a
table mixed from two models, while scores.json named one); `read_table` took 3 of 5
shards without a side-car as a whole table; a killed write left a 0-byte temp shard.
Now the side-car names the pack digest, the checkpoint (path + parameter digest) and
every shard (size + sha256); a rerun from another checkpoint or pack is refused (or
starts over with `restart=True`); `read_table` reads only complete, unchanged shard sets.
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from flax import nnx

from hybrid_jax.analysis.table import TableError, read_table
from hybrid_jax.data.sources import Document
from hybrid_jax.data.tokenizers import load_tokenizer
from hybrid_jax.errors import UserError
from hybrid_jax.models.lm import LM
from hybrid_jax.models.presets import research_model
from hybrid_jax.scoring import writer as writer_lib
from hybrid_jax.scoring.eval_pack import EvalPack, build_eval_pack
from hybrid_jax.scoring.writer import score_pack

TEXTS = [
    "The quick brown fox jumps over the lazy dog. (It was not amused.)",
    "def area(r):\n    return 3.14159 * r ** 2  # naive pi, fine\n",
    "<p class=\"x\">Hello <b>world</b></p> and more words after the markup.",
    "Ein Übergrößenträger aß Äpfel; 東京 is a city with many people in it.",
]
SHARD = dict(batch_size=2, windows_per_shard=4, vocab_chunk=128)  # 5 shards


class Killed(Exception):
    """Stands for the process being killed mid-run."""


def make_pack(texts=TEXTS, seq_len=16) -> EvalPack:
    docs = [Document(f"d{i}", "code" if i % 2 else "prose", t) for i, t in enumerate(texts)]
    return build_eval_pack(docs, load_tokenizer("bytes"), seq_len, tokenizer_spec="bytes")


def model(seed: int):
    lm = LM(research_model("transformer", "tiny", vocab_size=257), rngs=nnx.Rngs(seed))
    return nnx.split(lm, nnx.Param)


def score(params_of, pack, out, **kwargs):
    graphdef, params = params_of
    return score_pack(graphdef, params, pack, out, model_name="m",
                      source={"checkpoint": f"/ckpt/{id(params_of)}"}, **{**SHARD, **kwargs})


def killed_after(monkeypatch, shards: int) -> None:
    """The next scoring run dies while computing shard `shards` (0-based)."""
    real, calls = writer_lib.shard_rows, []

    def rows(*args, **kwargs):
        calls.append(1)
        if len(calls) > shards:
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(writer_lib, "shard_rows", rows)


@pytest.fixture(scope="module")
def models():
    return model(0), model(1)


@pytest.fixture(scope="module")
def pack():
    p = make_pack()
    assert -(-p.num_windows // SHARD["windows_per_shard"]) == 5, p.num_windows
    return p


@pytest.fixture
def interrupted(models, pack, tmp_path, monkeypatch):
    """Model A's scoring, killed after 3 shards."""
    out = tmp_path / "scores"
    killed_after(monkeypatch, 3)
    with pytest.raises(Killed):
        score(models[0], pack, out)
    monkeypatch.undo()
    assert len(list(out.glob("shard-*.parquet"))) == 3
    return out


def test_continuing_with_another_checkpoint_is_refused(models, pack, interrupted, tmp_path):
    with pytest.raises(UserError, match=r"params_sha256 .* there, .* now") as info:
        score(models[1], pack, interrupted)
    assert "\n" not in str(info.value) and "restart" in str(info.value)
    # With restart the table is all model B's, as if scored into a fresh directory.
    fresh = read_table(score(models[1], pack, tmp_path / "fresh"))
    again = read_table(score(models[1], pack, interrupted, restart=True))
    pd.testing.assert_frame_equal(again.frame, fresh.frame)
    assert again.provenance == fresh.provenance
    b = again.provenance["checkpoint"]["params_sha256"]
    assert b == writer_lib.params_sha256(models[1][1]) != writer_lib.params_sha256(models[0][1])


def test_continuing_the_same_checkpoint_matches_one_run(models, pack, interrupted, tmp_path):
    whole = score(models[0], pack, tmp_path / "whole")
    resumed = score(models[0], pack, interrupted)
    for shard in sorted(whole.glob("shard-*.parquet")):
        assert (resumed / shard.name).read_bytes() == shard.read_bytes()
    assert read_table(resumed).provenance == read_table(whole).provenance


def test_continuing_with_another_pack_is_refused(models, interrupted):
    other = make_pack(TEXTS[::-1])
    with pytest.raises(UserError, match=r"pack_digest"):
        score(models[0], other, interrupted)


def test_a_partial_directory_is_not_a_table(models, interrupted):
    with pytest.raises(TableError, match=r"incomplete \(3 of 5 shards"):
        read_table(interrupted)
    (interrupted / "scores.partial.json").unlink(missing_ok=True)
    with pytest.raises(TableError, match="no scores.json"):
        read_table(interrupted)
    with pytest.raises(UserError, match="no side-car"):  # and not continued blindly
        score(models[0], make_pack(), interrupted)


def test_a_complete_directory_is_read_only_while_its_shards_are_unchanged(models, pack,
                                                                           tmp_path):
    out = score(models[0], pack, tmp_path / "t")
    table = read_table(out)
    prov = table.provenance
    assert prov["pack_digest"] == pack.digest()
    assert prov["checkpoint"]["path"] == f"/ckpt/{id(models[0])}"
    assert len(prov["checkpoint"]["params_sha256"]) == 64
    shards = sorted(out.glob("shard-*.parquet"))
    plain = read_table(shards[0])  # a single parquet file: any tool's table
    assert plain.provenance is None and len(plain.frame) > 0
    cases = {
        "missing": lambda d, sh: sh[1].unlink(),
        "differs": lambda d, sh: sh[1].write_bytes(sh[1].read_bytes()[:-8] + b"\0" * 8),
        "not one of": lambda d, sh: shutil.copy(sh[0], d / "shard-00099.parquet"),
        "no scores.json": lambda d, sh: (d / "scores.json").unlink(),
    }
    for message, damage in cases.items():
        case = tmp_path / message.replace(" ", "_")
        shutil.copytree(out, case)
        damage(case, sorted(case.glob("shard-*.parquet")))
        with pytest.raises(TableError, match=message):
            read_table(case)


def test_temporary_shards_never_stay_behind(models, pack, tmp_path, monkeypatch):
    out = tmp_path / "t"
    out.mkdir()
    stale = out / ".shard-00001.tmp-99999"
    stale.write_bytes(b"")  # what a kill during a write left
    real = writer_lib.write_table

    def full_disk(frame, path, **kwargs):
        if "00002" in str(path):
            path.write_bytes(b"PAR1 half a shard")
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(frame, path, **kwargs)

    monkeypatch.setattr(writer_lib, "write_table", full_disk)
    with pytest.raises(OSError) as info:
        score(models[0], pack, out)
    assert not stale.exists()
    assert not list(out.glob(".shard-*"))
    assert isinstance(info.value, UserError)  # DiskFullError: one line, named
    assert "shard-00002.parquet: no space left on device" in str(info.value)
    assert sorted(p.name for p in out.glob("shard-*")) == ["shard-00000.parquet",
                                                          "shard-00001.parquet"]


def test_documents_carry_digests_into_the_pack_and_every_shard(models, pack, tmp_path,
                                                                monkeypatch):
    want = {d.id: hashlib.sha256(d.text.encode("utf-8")).hexdigest()[:16] for d in pack.docs}
    assert pack.meta["doc_digests"] == want
    saved = pack.save(tmp_path / "pack")
    assert json.loads((saved / "pack.json").read_text())["doc_digests"] == want
    assert EvalPack.load(saved).digest() == pack.digest()
    seen = []
    real = writer_lib.write_table

    def spy(frame, path, **kwargs):
        seen.append((set(frame["doc_id"]), kwargs.get("doc_digests")))
        return real(frame, path, **kwargs)

    monkeypatch.setattr(writer_lib, "write_table", spy)
    score(models[0], pack, tmp_path / "t")
    assert len(seen) >= 4
    for ids, digests in seen:
        assert digests == {i: want[i] for i in ids}


def test_the_pack_digest_covers_documents_windows_and_tokenizer(tmp_path):
    pack = make_pack()
    base = pack.digest()
    saved = pack.save(tmp_path / "pack")
    lines = (saved / "docs.jsonl").read_text().splitlines()
    doc = json.loads(lines[0])
    doc["text"] = doc["text"].replace("fox", "cat")  # same length, same windows' shape
    (saved / "docs.jsonl").write_text("\n".join([json.dumps(doc), *lines[1:]]) + "\n")
    with pytest.raises(UserError, match="documents differ"):
        EvalPack.load(saved)
    other_tokenizer = EvalPack(**{**pack.__dict__, "meta": {**pack.meta,
                                                            "tokenizer_sha256": "0" * 64}})
    assert other_tokenizer.digest() != base
    shifted = EvalPack(**{**pack.__dict__, "tokens": np.roll(pack.tokens, 1)})
    assert shifted.digest() != base
