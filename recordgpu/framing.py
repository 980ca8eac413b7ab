"""dmlc RecordIO framing: how one logical record is split into 4-byte-aligned parts and put back together.

Byte-compatible with ``dmlc::RecordIOWriter::WriteRecord`` / ``RecordIOReader::NextRecord`` (spec §1.1)::

    part  := MAGIC:u32le  LREC:u32le  DATA[len]  PAD[(4 - len % 4) % 4]
    LREC  := (cflag << 29) | len        cflag: 0 whole, 1 first, 2 middle, 3 last part

The writer splits a payload at every 4-aligned occurrence of the magic word (dropping the magic itself);
the reader re-inserts it between parts.
"""
from __future__ import annotations

import struct
from typing import BinaryIO

import numpy as np

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
LEN_MASK = (1 << 29) - 1
MAX_RECORD_BYTES = 1 << 29
_HDR = struct.Struct("<II")


def round_up4(n: int) -> int:
    return (n + 3) & ~3


def split_points(payload: bytes | memoryview) -> np.ndarray:
    """Offsets of the 4-aligned magic words inside ``payload`` (where the writer splits it)."""
    lower = len(payload) & ~3
    if lower == 0:
        return np.empty(0, np.int64)
    words = np.frombuffer(payload, dtype="<u4", count=lower // 4)
    return np.flatnonzero(words == MAGIC).astype(np.int64) * 4


def encode_record(payload: bytes | bytearray | memoryview) -> bytes:
    """The bytes dmlc's writer emits for one record (one or more parts, last one zero-padded)."""
    size = len(payload)
    if size >= MAX_RECORD_BYTES:
        raise ValueError(
            f"RecordIO only accepts records smaller than 2^29 bytes; this one has {size} bytes")
    mv = memoryview(payload).cast("B") if not isinstance(payload, bytes) else payload
    out = bytearray()
    dptr = 0
    for i in split_points(mv).tolist():
        cflag = 1 if dptr == 0 else 2
        n = i - dptr
        out += _HDR.pack(MAGIC, (cflag << 29) | n)
        out += mv[dptr:i]
        dptr = i + 4
    n = size - dptr
    cflag = 3 if dptr != 0 else 0
    out += _HDR.pack(MAGIC, (cflag << 29) | n)
    out += mv[dptr:size]
    out += b"\0" * (round_up4(n) - n)
    return bytes(out)


def decode_header(word0: int, word1: int) -> tuple[int, int]:
    """(cflag, len) of a part header; raises ValueError when ``word0`` is not the magic."""
    if word0 != MAGIC:
        raise ValueError(f"bad magic 0x{word0:08x} (expected 0x{MAGIC:08x})")
    return word1 >> 29, word1 & LEN_MASK


def read_record(f: BinaryIO, pos: int, path: str) -> tuple[bytes | None, int]:
    """Read the record whose first part header is at ``pos`` from a file positioned there.

    Returns ``(payload, next_pos)``; ``payload`` is None at a clean end of file. Raises
    :class:`~recordgpu.errors.RecordIOError` on truncation, bad magic or a broken part sequence.
    """
    from .errors import RecordIOError

    chunks: list[bytes] = []
    start = pos
    first = True
    while True:
        hdr = f.read(8)
        if not hdr and first:
            return None, pos
        if len(hdr) < 8:
            raise RecordIOError(path, pos, f"truncated record header ({len(hdr)} of 8 bytes)")
        magic, lrec = _HDR.unpack(hdr)
        if magic != MAGIC:
            raise RecordIOError(path, pos, f"bad magic 0x{magic:08x} (expected 0x{MAGIC:08x}); "
                                           "not a RecordIO file or corrupt")
        cflag, n = lrec >> 29, lrec & LEN_MASK
        if cflag > 3 or (first and cflag not in (0, 1)) or (not first and cflag not in (2, 3)):
            raise RecordIOError(path, pos, f"unexpected continuation flag {cflag} in record starting "
                                           f"at byte offset {start}")
        padded = round_up4(n)
        data = f.read(padded)
        if len(data) < padded:
            raise RecordIOError(path, pos, f"truncated payload: header says {n} bytes, "
                                           f"only {max(0, len(data))} of {padded} padded bytes present")
        chunks.append(data[:n] if padded != n else data)
        pos += 8 + padded
        if cflag in (0, 3):
            return (chunks[0] if len(chunks) == 1 else MAGIC_BYTES.join(chunks)), pos
        first = False
