"""Format-tagged JSON files (manifests, records, metadata): read with one kind of error.

Every such file is a JSON object whose "format" field names what it is. `read_tagged`
turns each way one can be wrong (unreadable, not JSON, not an object, another format)
into the caller's `UserError` subclass, naming the file.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

from hybrid_jax.errors import UserError


def read_tagged(path: str | os.PathLike, fmt: str, error: type[UserError], what: str
                ) -> dict[str, Any]:
    """The object in `path` if its "format" is `fmt`, else `error("<path>: not a <what>
    (<why>)")`."""
    path = pathlib.Path(path)
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # (UnicodeDecodeError is a ValueError)
        raise error(f"{path}: not a {what} (unreadable: {e})") from None
    if not isinstance(body, dict):
        raise error(f"{path}: not a {what} (a JSON {type(body).__name__}, not an object)")
    if body.get("format") != fmt:
        raise error(f"{path}: not a {what} (format {body.get('format')!r}, expected "
                    f"{fmt!r})")
    return body
