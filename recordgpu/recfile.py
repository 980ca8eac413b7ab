"""Fast read-only access to a ``.rec`` file: memory map, record table, zero-copy payload views.

:class:`RecordFile` is what the iterator and the CLI read through. The record table comes from the
``.idx`` when one is given (validated against the file: each listed offset must be a record head), or
from a vectorised scan of the whole file otherwise. Either way every record is checked for framing
errors before it is handed out, and every error names the file, the byte offset and, when known, the key.

Semantics of an ``.idx`` follow dmlc's ``IndexedRecordIOSplitter`` (spec §1.2): keys are not used for
reading, offsets are sorted, extent *j* is ``[off_j, off_{j+1})`` and a record not listed but lying inside
an extent is still read (it belongs to that extent).
"""
from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .errors import RecordIOError
from .framing import LEN_MASK, MAGIC, MAGIC_BYTES, round_up4

_SCAN_BLOCK_WORDS = 1 << 24  # 64 MiB of words per vectorised pass
_PROBE_PARTS = 4096  # parts walked before choosing between walking and a vectorised scan
_WALK_MIN_AVG_BYTES = 16384  # below this average part size the vectorised scan is faster
_HDR = struct.Struct("<II")


@dataclass(frozen=True)
class RecordTable:
    """One row per logical record, in file order.

    ``start``: byte offset of the record's first part header; ``end``: offset just past its last part;
    ``length``: reassembled payload size; ``nparts``: number of parts (1 for ordinary records);
    ``key``: the ``.idx`` key (int) of the record, or -1 when it has none; ``extent``: the ``.idx`` extent it
    belongs to (== record number without an ``.idx``); ``indexed``: built from an ``.idx``.
    """

    start: np.ndarray
    end: np.ndarray
    length: np.ndarray
    nparts: np.ndarray
    key: np.ndarray
    extent: np.ndarray
    indexed: bool
    n_extents: int

    def __len__(self) -> int:
        return len(self.start)


def read_idx_file(idx_path: str | os.PathLike) -> list[tuple[str, int]]:
    """``(key, offset)`` pairs of an ``.idx`` in file order (MXNet's ``line.strip().split('\\t')``)."""
    pairs: list[tuple[str, int]] = []
    with open(idx_path, "r") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.strip().split("\t")
            if parts == [""]:
                continue
            if len(parts) < 2:
                raise RecordIOError(idx_path, None, f"line {lineno}: expected 'key<TAB>offset', got {line!r}")
            try:
                off = int(parts[1])
            except ValueError:
                raise RecordIOError(idx_path, None, f"line {lineno}: offset {parts[1]!r} is not an integer",
                                    key=parts[0]) from None
            if off < 0:
                raise RecordIOError(idx_path, None, f"line {lineno}: negative offset {off}", key=parts[0])
            pairs.append((parts[0], off))
    return pairs


def _int_key(k: str) -> int:
    try:
        v = int(k)
    except ValueError:
        return -1
    return v if v >= 0 else -1


class RecordFile:
    """A memory-mapped ``.rec`` (read-only) with its record table.

    ``RecordFile(path)`` scans the file; ``RecordFile(path, idx_path)`` trusts the ``.idx`` for where records
    start (after checking every offset). Picklable (reopens by path) and safe after ``fork`` (the map is
    read-only and shared).
    """

    def __init__(self, path: str | os.PathLike, idx_path: str | os.PathLike | None = None) -> None:
        self.path = os.fspath(path)
        self.idx_path = os.fspath(idx_path) if idx_path is not None else None
        self._open()
        self.table = self._build_table()

    # -- opening / pickling -------------------------------------------------------------------------
    def _open(self) -> None:
        with open(self.path, "rb") as f:
            self.size = os.fstat(f.fileno()).st_size
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if self.size else None
        self._mv = memoryview(self._mm) if self._mm is not None else memoryview(b"")
        if self.size % 4:
            raise RecordIOError(self.path, self.size - self.size % 4,
                                f"file size {self.size} is not a multiple of 4: truncated mid-record "
                                "or not a RecordIO file")
        self._words = np.frombuffer(self._mv, dtype="<u4") if self.size else np.empty(0, "<u4")

    def __getstate__(self) -> dict:
        return {"path": self.path, "idx_path": self.idx_path, "table": self.table}

    def __setstate__(self, state: dict) -> None:
        self.path = state["path"]
        self.idx_path = state["idx_path"]
        self._open()
        self.table = state["table"]

    def close(self) -> None:
        """Release the map. Views handed out earlier must not be used afterwards."""
        self._words = np.empty(0, "<u4")
        self._mv.release()
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:  # a payload view is still alive; the map goes when it does
                pass
            self._mm = None

    def __enter__(self) -> "RecordFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.table)

    # -- payload access -------------------------------------------------------------------------------
    def payload(self, i: int) -> memoryview | bytes:
        """Payload of record ``i``: a zero-copy view for single-part records, reassembled bytes otherwise."""
        t = self.table
        s = int(t.start[i])
        if t.nparts[i] == 1:
            return self._mv[s + 8: s + 8 + int(t.length[i])]
        return self._reassemble(s, int(t.end[i]))

    def _reassemble(self, pos: int, end: int) -> bytes:
        chunks = []
        w = self._words
        while pos < end:
            lrec = int(w[pos // 4 + 1])
            n = lrec & LEN_MASK
            chunks.append(self._mv[pos + 8: pos + 8 + n])
            pos += 8 + round_up4(n)
        return MAGIC_BYTES.join(chunks)

    def key_of(self, i: int) -> int | None:
        k = int(self.table.key[i])
        return None if k < 0 else k

    def error(self, i: int, reason: str) -> RecordIOError:
        """A :class:`RecordIOError` located at record ``i``."""
        return RecordIOError(self.path, int(self.table.start[i]), reason, key=self.key_of(i))

    def iter_payloads(self) -> Iterator[memoryview | bytes]:
        for i in range(len(self)):
            yield self.payload(i)

    # -- table building -------------------------------------------------------------------------------
    def _build_table(self) -> RecordTable:
        if self.idx_path is None:
            return self._scan_table()
        return self._idx_table()

    def _magic_positions(self) -> np.ndarray:
        w = self._words
        hits = []
        for b in range(0, len(w), _SCAN_BLOCK_WORDS):
            blk = w[b: b + _SCAN_BLOCK_WORDS]
            hits.append(np.flatnonzero(blk == MAGIC) + b)
        return (np.concatenate(hits) if hits else np.empty(0, np.int64)).astype(np.int64)

    def _scan_table(self) -> RecordTable:
        if self.size == 0:
            return _table_from_parts(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64),
                                     False, self.size)
        # Hop from header to header while records are large (cheap per record, touches 8 bytes each);
        # for files of many small records a vectorised search for the magic word is faster.
        starts, lrec, pos = self._walk_parts(0, self.size, max_parts=_PROBE_PARTS)
        if pos < self.size and pos / max(len(starts), 1) < _WALK_MIN_AVG_BYTES:
            return self._table_from_part_headers(*self._vector_scan())
        if pos < self.size:
            more_s, more_l, _ = self._walk_parts(pos, self.size)
            starts, lrec = np.concatenate([starts, more_s]), np.concatenate([lrec, more_l])
        return self._table_from_part_headers(starts, lrec)

    def _vector_scan(self) -> tuple[np.ndarray, np.ndarray]:
        w = self._words
        cand = self._magic_positions()
        # In a valid file every 4-aligned magic word is a part header (payloads are split at them), so the
        # candidates must chain exactly; anything else is corruption, located by walking the parts.
        ok = len(cand) > 0 and cand[0] == 0 and cand[-1] + 1 < len(w)
        if ok:
            lrec = w[cand + 1].astype(np.int64)
            nxt = cand * 4 + 8 + ((lrec & LEN_MASK) + 3 & ~3)
            ok = bool(np.array_equal(nxt[:-1], cand[1:] * 4)) and int(nxt[-1]) == self.size
        if not ok:
            starts, lrec, _ = self._walk_parts(0, self.size)
            return starts, lrec
        return cand * 4, lrec

    def _walk_parts(self, pos: int, stop: int, max_parts: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        """Walk part headers from ``pos`` towards ``stop``, raising at the first framing error.

        Returns the part starts, their LREC words and where the walk stopped (``stop``, or earlier when
        ``max_parts`` were read)."""
        mm, size = self._mm, self.size
        starts, lrecs = [], []
        unpack = _HDR.unpack_from
        while pos < stop and (max_parts is None or len(starts) < max_parts):
            if pos + 8 > size:
                raise RecordIOError(self.path, pos, f"truncated record header ({size - pos} of 8 bytes)")
            magic, lrec = unpack(mm, pos)
            if magic != MAGIC:
                raise RecordIOError(self.path, pos, f"bad magic 0x{magic:08x} (expected 0x{MAGIC:08x}): "
                                                    "corrupt record or not a RecordIO file")
            n = lrec & LEN_MASK
            if pos + 8 + round_up4(n) > size:
                raise RecordIOError(self.path, pos, f"truncated payload: header says {n} bytes but the file "
                                                    f"ends {size - pos - 8} bytes after the header")
            starts.append(pos)
            lrecs.append(lrec)
            pos += 8 + round_up4(n)
        return np.asarray(starts, np.int64), np.asarray(lrecs, np.int64), pos

    def _table_from_part_headers(self, starts: np.ndarray, lrec: np.ndarray) -> RecordTable:
        cflag = lrec >> 29
        n = lrec & LEN_MASK
        # Valid part sequences: 0 | 1 2* 3. Check with shifted flag arrays.
        prev = np.concatenate([[0], cflag[:-1]])
        bad = np.flatnonzero(((cflag >= 2) & ~((prev == 1) | (prev == 2)))
                             | (((cflag == 0) | (cflag == 1)) & ((prev == 1) | (prev == 2)))
                             | (cflag > 3))
        if len(bad):
            p = int(starts[bad[0]])
            raise RecordIOError(self.path, p, f"broken multi-part record: part with continuation flag "
                                              f"{int(cflag[bad[0]])} after a part with flag {int(prev[bad[0]])}")
        if len(cflag) and cflag[-1] in (1, 2):
            raise RecordIOError(self.path, int(starts[-1]), "multi-part record is cut off: its last part "
                                                            "(continuation flag 3) is missing")
        return _table_from_parts(starts, cflag, n, False, self.size)

    def _idx_table(self) -> RecordTable:
        pairs = read_idx_file(self.idx_path)
        if not pairs:
            if self.size:
                raise RecordIOError(self.idx_path, None, f"index is empty but {self.path} holds "
                                                         f"{self.size} bytes; rebuild it with "
                                                         "`recordgpu index`")
            return self._scan_table()
        offs = np.array([o for _, o in pairs], np.int64)
        keys = np.array([_int_key(k) for k, _ in pairs], np.int64)
        order = np.argsort(offs, kind="stable")
        offs, keys = offs[order], keys[order]
        uniq = np.ones(len(offs), bool)
        uniq[1:] = offs[1:] != offs[:-1]
        offs, keys = offs[uniq], keys[uniq]
        w = self._words
        bad = np.flatnonzero((offs % 4 != 0) | (offs + 8 > self.size))
        if len(bad):
            o = int(offs[bad[0]])
            why = "is past the end of" if o + 8 > self.size else "is not 4-byte aligned in"
            raise RecordIOError(self.idx_path, o, f"index offset {o} {why} {self.path} ({self.size} bytes)",
                                key=int(keys[bad[0]]) if keys[bad[0]] >= 0 else None)
        heads = w[offs // 4]
        lrec = w[offs // 4 + 1].astype(np.int64)
        notmagic = np.flatnonzero((heads != MAGIC) | ((lrec >> 29) > 1))
        if len(notmagic):
            j = int(notmagic[0])
            raise RecordIOError(self.idx_path, int(offs[j]),
                                f"index offset {int(offs[j])} is not at a record head in {self.path}",
                                key=int(keys[j]) if keys[j] >= 0 else None)
        ext_end = np.append(offs[1:], self.size)
        single_end = offs + 8 + ((lrec & LEN_MASK) + 3 & ~3)
        if (lrec >> 29 == 0).all() and np.array_equal(single_end, ext_end):
            # Fast path: one whole single-part record per extent.
            return _table_from_parts(offs, lrec >> 29, lrec & LEN_MASK, True, self.size,
                                     keys=keys, extent=np.arange(len(offs)), n_extents=len(offs))
        starts_l, lrec_l, ext_l = [], [], []
        for j in range(len(offs)):
            s, e = int(offs[j]), int(ext_end[j])
            if lrec[j] >> 29 == 0 and single_end[j] == e:
                starts_l.append(np.array([s]))
                lrec_l.append(lrec[j:j + 1])
            else:
                st, lr, _ = self._walk_parts(s, e)
                starts_l.append(st)
                lrec_l.append(lr)
            ext_l.append(np.full(len(starts_l[-1]), j))
        starts = np.concatenate(starts_l)
        lr = np.concatenate(lrec_l)
        part_ext = np.concatenate(ext_l)
        self._table_from_part_headers(starts, lr)  # validates part sequences
        cflag = lr >> 29
        head = (cflag == 0) | (cflag == 1)
        rec_start = starts[head]
        key_by_off = dict(zip(offs.tolist(), keys.tolist()))
        rkeys = np.array([key_by_off.get(int(s), -1) for s in rec_start], np.int64)
        return _table_from_parts(starts, cflag, lr & LEN_MASK, True, self.size, keys=rkeys,
                                 extent=part_ext[head], n_extents=len(offs))


def _table_from_parts(starts, cflag, n, indexed, size, keys=None, extent=None,
                      n_extents=None) -> RecordTable:
    """Group validated part headers into logical records."""
    head = (cflag == 0) | (cflag == 1)
    rec_start = starts[head]
    nrec = len(rec_start)
    rec_end = np.append(rec_start[1:], size) if nrec else np.empty(0, np.int64)
    if nrec == len(starts):  # no multi-part records
        length = n.astype(np.int64)
        nparts = np.ones(nrec, np.int64)
    else:
        rec_id = np.cumsum(head) - 1
        length = np.bincount(rec_id, weights=n, minlength=nrec).astype(np.int64)
        nparts = np.bincount(rec_id, minlength=nrec).astype(np.int64)
        length += 4 * (nparts - 1)
    if keys is None:
        keys = np.full(nrec, -1, np.int64)
    if extent is None:
        extent = np.arange(nrec, dtype=np.int64)
        n_extents = nrec
    return RecordTable(start=rec_start.astype(np.int64), end=rec_end.astype(np.int64), length=length,
                       nparts=nparts, key=keys.astype(np.int64), extent=extent.astype(np.int64),
                       indexed=indexed, n_extents=int(n_extents))
