"""Tokenizers behind one interface, with character offsets for every token.

    bytes                    `ByteTokenizer`: UTF-8 bytes + EOS, nothing to train
    sentencepiece:<file>     a SentencePiece model trained here (`train_sentencepiece`)
    hf:<tokenizer.json>      a Hugging Face tokenizer (e.g. dolma2 of the Olmo releases)

All of them: `vocab_size`, `eos_id`, `encode(text) -> ids`, `encode_with_offsets(text)
-> (ids, char_start, char_end)`, `decode(ids)`, `token_text(id)`. No BOS is ever added;
the packer appends EOS after each document. Offsets are character offsets into the
Python string, so `text[char_start:char_end]` is the token's source text (a token that
covers part of a multi-byte character gets that character's span).
"""

from __future__ import annotations

import hashlib
import io
import logging
import pathlib
from collections.abc import Iterable
from typing import Protocol

import numpy as np

from hybrid_jax.data.byte_tokenizer import ByteTokenizer
from hybrid_jax.errors import UserError

log = logging.getLogger("hybrid_jax.data")


class TokenizerError(UserError, ValueError):
    """A tokenizer spec or file that cannot be used; the message names it."""


class TokenizerNotFoundError(TokenizerError, FileNotFoundError):
    """The tokenizer file of a spec does not exist."""


class Tokenizer(Protocol):
    vocab_size: int
    eos_id: int

    def encode(self, text: str) -> np.ndarray: ...

    def encode_with_offsets(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def decode(self, ids: np.ndarray) -> str: ...

    def token_text(self, token_id: int) -> str: ...


def _byte_to_char_index(text: str) -> np.ndarray:
    """For every UTF-8 byte of `text` (and one past the end), the index of its character."""
    lengths = np.fromiter((len(c.encode("utf-8")) for c in text), np.int64, len(text))
    return np.append(np.repeat(np.arange(len(text)), lengths), len(text))


class SentencePieceTokenizer:
    """A BPE SentencePiece model with identity normalisation and byte fallback.

    Identity normalisation (no NFKC, no dummy prefix, whitespace kept) makes decoding
    exact and offsets map back to the original text; byte fallback means no token is
    ever unknown.
    """

    def __init__(self, model_proto: bytes, path: str | None = None) -> None:
        import sentencepiece as spm

        self.path = path
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self.vocab_size = int(self._sp.vocab_size())
        self.eos_id = int(self._sp.eos_id())
        if self.eos_id < 0:
            raise TokenizerError(f"{path or 'sentencepiece model'} has no EOS piece")
        self.model_proto = model_proto

    @classmethod
    def load(cls, path: str | pathlib.Path) -> SentencePieceTokenizer:
        path = pathlib.Path(path)
        if not path.is_file():
            raise TokenizerNotFoundError(f"no sentencepiece model at {path}")
        return cls(path.read_bytes(), str(path))

    def save(self, path: str | pathlib.Path) -> None:
        pathlib.Path(path).write_bytes(self.model_proto)

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self._sp.encode(text), np.int32)

    def encode_with_offsets(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        proto = self._sp.encode(text, return_type="proto")
        char_of = _byte_to_char_index(text)
        ids = np.fromiter((p.id for p in proto.pieces), np.int32)
        begin = np.fromiter((p.begin for p in proto.pieces), np.int64)
        end = np.fromiter((p.end for p in proto.pieces), np.int64)
        start_char = char_of[begin]
        # A byte-fallback piece inside a character has an empty byte span: give it the
        # span of the character its byte belongs to.
        end_char = np.where(end > begin, char_of[np.maximum(end - 1, 0)] + 1, start_char + 1)
        return ids, start_char, np.minimum(end_char, len(text))

    def decode(self, ids: np.ndarray) -> str:
        return self._sp.decode([int(i) for i in np.asarray(ids).ravel() if i != self.eos_id])

    def token_text(self, token_id: int) -> str:
        if token_id == self.eos_id:
            return "<eos>"
        return self._sp.id_to_piece(int(token_id)).replace("\u2581", " ")


def train_sentencepiece(
    texts: Iterable[str], vocab_size: int, *, max_chars: int = 20_000_000
) -> SentencePieceTokenizer:
    """Train a BPE SentencePiece model on `texts` (at most `max_chars` characters used).

    Ids: 0 = <unk> (never produced thanks to byte fallback), 1 = EOS, no BOS / PAD.
    Deterministic: every given sentence is used, in order (no sampling).
    """
    import sentencepiece as spm

    if vocab_size < 300:
        raise ValueError(f"vocab_size {vocab_size} is too small for byte fallback (>= 300)")

    def capped() -> Iterable[str]:
        used = 0
        for t in texts:
            if used >= max_chars:
                return
            t = t[: max_chars - used]
            used += len(t)
            yield t

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(capped()),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        normalization_rule_name="identity",
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        split_digits=True,
        max_sentence_length=1 << 22,
        unk_id=0,
        eos_id=1,
        bos_id=-1,
        pad_id=-1,
        num_threads=2,
        minloglevel=2,
    )
    return SentencePieceTokenizer(model.getvalue())


def load_tokenizer(spec: str) -> Tokenizer:
    """A tokenizer from its spec string (see the module docstring)."""
    kind, _, arg = spec.partition(":")
    if kind == "bytes":
        return ByteTokenizer()
    if kind == "sentencepiece":
        return SentencePieceTokenizer.load(arg)
    if kind == "hf":
        from hybrid_jax.data.hf_tokenizer import HfTokenizer

        return HfTokenizer(arg)
    raise TokenizerError(f"unknown tokenizer {spec!r}; use bytes, sentencepiece:<file> or "
                         f"hf:<tokenizer.json>")


def tokenizer_sha256(tokenizer: Tokenizer) -> str:
    """A digest of what the tokenizer does: its model file's bytes (SentencePiece,
    tokenizer.json plus the EOS token chosen), or the fixed byte layout; other
    tokenizers by their vocabulary renderings. Two tokenizers with one digest encode
    every text alike."""
    from hybrid_jax.data.hf_tokenizer import HfTokenizer

    h = hashlib.sha256()
    if isinstance(tokenizer, ByteTokenizer):
        h.update(b"bytes\0%d\0%d" % (tokenizer.vocab_size, tokenizer.eos_id))
    elif isinstance(tokenizer, SentencePieceTokenizer):
        h.update(b"sentencepiece\0" + tokenizer.model_proto)
    elif isinstance(tokenizer, HfTokenizer):
        h.update(b"hf\0" + pathlib.Path(tokenizer.path).read_bytes() + b"\0"
                 + str(tokenizer.eos_id).encode())
    else:
        h.update(type(tokenizer).__name__.encode() + b"\0%d\0" % tokenizer.eos_id)
        for i in range(tokenizer.vocab_size):
            h.update(tokenizer.token_text(i).encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


def tokenizer_digest(spec: str) -> str:
    """`tokenizer_sha256` of the tokenizer a spec names (bytes, sentencepiece:<file>,
    hf:<tokenizer.json or its directory>): the same content under another path has the
    same digest."""
    return tokenizer_sha256(load_tokenizer(spec))
