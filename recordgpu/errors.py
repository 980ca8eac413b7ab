"""Exceptions raised by recordgpu.

Every error about a record names the file, the byte offset and, when known, the record key, so that a
corrupt archive can be located and repaired without guessing.
"""
from __future__ import annotations

from typing import Any


class RecordIOError(ValueError):
    """A ``.rec`` / ``.idx`` file (or one record in it) is malformed.

    Attributes: ``path`` (the file), ``offset`` (byte offset of the bad record or field, or None),
    ``key`` (the record key / image id when known, else None), ``reason`` (what was wrong).
    """

    def __init__(self, path: Any, offset: int | None, reason: str, key: Any = None) -> None:
        self.path = str(path) if path is not None else None
        self.offset = offset
        self.key = key
        self.reason = reason
        where = []
        if self.path is not None:
            where.append(self.path)
        if offset is not None:
            where.append(f"byte offset {offset}")
        if key is not None:
            where.append(f"record key {key}")
        super().__init__(f"{', '.join(where)}: {reason}" if where else reason)

    def __reduce__(self):
        return (type(self), (self.path, self.offset, self.reason, self.key))


class DecodeError(ValueError):
    """An image payload could not be decoded (or not into what was asked for)."""
