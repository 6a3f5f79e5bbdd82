"""A byte-level tokenizer: every UTF-8 byte is a token, plus an end-of-document token.

Needs no training and no files, so tests and the CPU demo can run anywhere. Every
token maps back to the characters it came from: the bytes of one multi-byte character
all map to that character's span.
"""

from __future__ import annotations

import numpy as np


class ByteTokenizer:
    """ids 0..255 = bytes, 256 = EOS (appended between documents by the packer)."""

    vocab_size = 257
    eos_id = 256

    def encode(self, text: str) -> np.ndarray:
        """Token ids [n] int32 of `text` (its UTF-8 bytes); no EOS added."""
        return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)

    def encode_with_offsets(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, char_start, char_end): token i came from text[char_start[i]:char_end[i]]."""
        ids, starts, ends = [], [], []
        for i, ch in enumerate(text):
            b = ch.encode("utf-8")
            ids.extend(b)
            starts.extend([i] * len(b))
            ends.extend([i + 1] * len(b))
        return (np.asarray(ids, np.int32), np.asarray(starts, np.int64),
                np.asarray(ends, np.int64))

    def decode(self, ids: np.ndarray) -> str:
        """Text of byte ids (EOS dropped); malformed UTF-8 shows as U+FFFD."""
        data = bytes(int(i) for i in np.asarray(ids).ravel() if 0 <= int(i) < 256)
        return data.decode("utf-8", errors="replace")

    def token_text(self, token_id: int) -> str:
        """A printable rendering of one token (bytes that are not ASCII shown as hex)."""
        if token_id == self.eos_id:
            return "<eos>"
        ch = chr(token_id)
        return ch if ch.isprintable() and token_id < 128 else f"<{token_id:02x}>"
