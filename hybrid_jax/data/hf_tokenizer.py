"""The Hugging Face tokenizer of a checkpoint (`tokenizer.json`), for scoring and analysis.

Both Olmo releases use allenai/dolma2-tokenizer (BPE, 100278 entries): EOS
`<|endoftext|>` = 100257, PAD `<|pad|>` = 100277, no BOS (reference/
olmo_architectures.md section 7). Scoring follows OLMo-core's in-loop evals: no BOS is
prepended, and EOS separates documents, so each document's tokens are followed by EOS.

Every token carries the character span of the text it came from (`tokenizers` offsets
are in characters of the Python string), which the analysis uses to align tokens to
words. A byte-level BPE token can cover part of a multi-byte character; such tokens
share that character's span. The interface mirrors `data.byte_tokenizer.ByteTokenizer`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Sequence

import numpy as np

from hybrid_jax.data.tokenizers import TokenizerError, TokenizerNotFoundError

DOLMA2_EOS_ID = 100257
EOS_TOKEN = "<|endoftext|>"


@dataclasses.dataclass
class Encoding:
    """Token ids with their character spans; `doc` says which document each came from.

    EOS tokens get the empty span at the end of their document.
    """

    ids: np.ndarray  # [n] int32
    char_start: np.ndarray  # [n] int64, into the token's own document
    char_end: np.ndarray  # [n] int64
    doc: np.ndarray  # [n] int32 document index


class HfTokenizer:
    """A `tokenizers.Tokenizer` loaded from tokenizer.json, without BOS, EOS between docs."""

    def __init__(self, path: str | os.PathLike, *, eos_token: str | None = None) -> None:
        """Load `path` (tokenizer.json, or a directory holding it).

        The EOS token is `eos_token`, else tokenizer_config.json's `eos_token` beside it,
        else `<|endoftext|>`; it must be in the vocabulary.
        """
        path = pathlib.Path(path)
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():  # before the import: a wrong path is not a missing package
            raise TokenizerNotFoundError(f"{file}: no tokenizer.json (a Hugging Face "
                                         "tokenizer file, or a directory holding one)")
        try:
            from tokenizers import Tokenizer
        except ImportError as e:
            raise TokenizerError(f"{file}: reading a Hugging Face tokenizer needs the "
                                 "`tokenizers` package (pip install tokenizers, or the "
                                 "package's [convert] extra)") from e
        self.path = file
        try:
            self._tok = Tokenizer.from_file(str(file))
        except Exception as e:  # tokenizers raises a bare Exception for a bad file
            raise TokenizerError(f"{file}: not a readable tokenizer.json ({e})") from e
        if eos_token is None:
            eos_token = _configured_eos(file.parent) or EOS_TOKEN
        eos_id = self._tok.token_to_id(eos_token)
        if eos_id is None:
            raise TokenizerError(f"{file}: EOS token {eos_token!r} is not in the vocabulary")
        self.eos_token = eos_token
        self.eos_id = int(eos_id)

    @property
    def vocab_size(self) -> int:
        """Number of token ids, added (special) tokens included: 100278 for dolma2."""
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str) -> np.ndarray:
        """Token ids [n] int32 of `text`; no BOS, no EOS."""
        return np.asarray(self._tok.encode(text, add_special_tokens=False).ids, np.int32)

    def encode_with_offsets(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, char_start, char_end): token i came from text[char_start[i]:char_end[i]].

        No BOS or EOS is added (`add_special_tokens=False`, whatever post-processor the
        tokenizer.json configures).
        """
        enc = self._tok.encode(text, add_special_tokens=False)
        offsets = np.asarray(enc.offsets, np.int64).reshape(-1, 2)
        return np.asarray(enc.ids, np.int32), offsets[:, 0].copy(), offsets[:, 1].copy()

    def encode_documents(self, docs: Sequence[str]) -> Encoding:
        """All documents in order, each followed by EOS, with per-document char spans."""
        encs = self._tok.encode_batch(list(docs), add_special_tokens=False)
        ids, starts, ends, doc = [], [], [], []
        for i, (text, enc) in enumerate(zip(docs, encs, strict=True)):
            off = np.asarray(enc.offsets, np.int64).reshape(-1, 2)
            ids += [np.asarray(enc.ids, np.int32), np.asarray([self.eos_id], np.int32)]
            starts += [off[:, 0], np.asarray([len(text)], np.int64)]
            ends += [off[:, 1], np.asarray([len(text)], np.int64)]
            doc.append(np.full(len(enc.ids) + 1, i, np.int32))
        if not ids:
            empty_i, empty_l = np.zeros(0, np.int32), np.zeros(0, np.int64)
            return Encoding(empty_i, empty_l, empty_l, empty_i)
        return Encoding(np.concatenate(ids), np.concatenate(starts), np.concatenate(ends),
                        np.concatenate(doc))

    def decode(self, ids: np.ndarray) -> str:
        """Text of `ids`, special tokens (EOS) dropped."""
        return self._tok.decode([int(i) for i in np.asarray(ids).ravel()],
                                skip_special_tokens=True)

    def token_id(self, token: str) -> int | None:
        """The id of vocabulary entry `token` (None if absent)."""
        i = self._tok.token_to_id(token)
        return None if i is None else int(i)

    def token_text(self, token_id: int) -> str:
        """A printable rendering of one token (its vocabulary string)."""
        s = self._tok.id_to_token(int(token_id))
        return f"<{token_id}>" if s is None else s


def _configured_eos(directory: pathlib.Path) -> str | None:
    """tokenizer_config.json's eos_token (a string or {"content": ...}), if any."""
    cfg = directory / "tokenizer_config.json"
    if not cfg.is_file():
        return None
    eos = json.loads(cfg.read_text(encoding="utf-8")).get("eos_token")
    if isinstance(eos, dict):
        eos = eos.get("content")
    return eos if isinstance(eos, str) else None
