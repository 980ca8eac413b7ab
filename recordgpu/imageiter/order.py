"""Which records go in which batch: MXNet 1.9.1's ``ImageRecordIter`` batch sequence, record for record.

This module knows nothing about images. From the byte layout of the records it reproduces what
``ImageRecordIOParser2::ParseNext``/``ParseChunk`` (mxnet ``src/io/iter_image_recordio_2.cc``) and the dmlc
input splits it reads through do (spec ``mxnet-1.9.1.md`` §3.3, §3.4, §3.9, §3.12):

* partitioning: by bytes without an ``.idx`` (a record whose first header starts at byte ``s`` belongs to
  part ``s // nstep``), by ``.idx`` extent count with one;
* the source's chunks: ``batch_size`` extents per chunk with an ``.idx`` (``IndexedRecordIOSplitter``, including
  its ``n_overflow_`` carry-over), otherwise what dmlc's ``InputSplitBase`` delivers per 8 MiB buffer read;
* shuffling: a fresh ``std::shuffle`` of the whole partition at every source ``BeforeFirst`` (indexed), the
  "legacy" shuffle inside each chunk (no ``.idx``), and the ``shuffle_chunk_size`` sub-part order;
* the ``round_batch`` wrap, its ``pad``, the next epoch continuing mid-pass, and ``reset()`` (synchronous model);
* per sample, the slot ``idx`` that ``seed_aug`` reseeding uses (``idx + seed_aug + 111``) and MXNet's parse
  order, which is the order the augmenter's random stream is consumed in.

Deliberate differences (spec ``README.md``): with ``round_batch=False`` the last partial batch reports
``pad`` = number of missing samples (MXNet reports 0 and leaves stale data); ``pad`` is 0 on ordinary batches.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ..rng import MT19937, shuffle as std_shuffle

__all__ = ["RecordLayout", "Batch", "BatchOrder", "partition_records", "num_shuffle_parts",
           "TOO_FEW_RECORDS"]

# dmlc InputSplitBase::kBufferSize: the read size of one chunk, in uint32 words (8 MiB).
_BUFFER_WORDS = 2 << 20
# Seed offsets used by MXNet / dmlc for their std::mt19937 engines.
_SHUFFLE_MAGIC = 111
_SUBPART_MAGIC = 666

#: MXNet's text when a wrap needs more records than the partition holds.
TOO_FEW_RECORDS = "number of input images must be bigger than the batch size"

_EMPTY = np.zeros(0, np.int64)


def _readonly_int64(a: Any, name: str) -> np.ndarray:
    arr = np.array(a, dtype=np.int64, copy=True)
    if arr.ndim != 1:
        raise ValueError(f"RecordLayout.{name} must be one-dimensional, got shape {arr.shape}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True)
class RecordLayout:
    """Where the records lie in the (concatenated) ``.rec`` byte stream; one entry per record, in file order.

    ``start``: byte offset of the record's first part header; ``end``: offset just past the record (padding
    included); ``total_bytes``: size of the whole stream (all files); ``indexed``: read through an ``.idx``;
    ``extent``: with an ``.idx``, the extent each record belongs to (extent *j* is ``[off_j, off_{j+1})`` of the
    sorted offsets; unlisted records inside an extent belong to it), non-decreasing; ``num_extents``: number of
    extents (default ``max(extent) + 1``; extents holding no record, e.g. from duplicate offsets, still count).
    """

    start: np.ndarray
    end: np.ndarray
    total_bytes: int
    indexed: bool = False
    extent: np.ndarray | None = None
    num_extents: int | None = None

    def __post_init__(self) -> None:
        start = _readonly_int64(self.start, "start")
        end = _readonly_int64(self.end, "end")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        object.__setattr__(self, "total_bytes", int(self.total_bytes))
        object.__setattr__(self, "indexed", bool(self.indexed))
        n = len(start)
        if len(end) != n:
            raise ValueError(f"RecordLayout: {n} starts but {len(end)} ends")
        if n and (start[0] < 0 or np.any(np.diff(start) <= 0)):
            raise ValueError("RecordLayout.start must be non-negative and strictly increasing (file order)")
        if n and (np.any(end <= start) or end[-1] > self.total_bytes):
            raise ValueError("RecordLayout.end must lie after each start and within total_bytes")
        if not self.indexed:
            if self.extent is not None or self.num_extents is not None:
                raise ValueError("RecordLayout.extent / num_extents are only meaningful with indexed=True")
            return
        if self.extent is None:
            raise ValueError("RecordLayout: indexed=True needs the extent of every record")
        ext = _readonly_int64(self.extent, "extent")
        if len(ext) != n:
            raise ValueError(f"RecordLayout: {n} records but {len(ext)} extents")
        if n and (ext[0] < 0 or np.any(np.diff(ext) < 0)):
            raise ValueError("RecordLayout.extent must be non-negative and non-decreasing in file order")
        n_ext = int(ext[-1]) + 1 if n else 0
        if self.num_extents is not None:
            if int(self.num_extents) < n_ext:
                raise ValueError(f"RecordLayout.num_extents={self.num_extents} but a record has extent "
                                 f"{n_ext - 1}")
            n_ext = int(self.num_extents)
        object.__setattr__(self, "extent", ext)
        object.__setattr__(self, "num_extents", n_ext)

    def __len__(self) -> int:
        return len(self.start)


@dataclass(frozen=True)
class Batch:
    """One batch of the sequence.

    ``records``: record numbers (into the layout) of the real samples, in slot order; ``len(records)`` is
    ``batch_size`` except for the last batch of an epoch with ``round_batch=False``. ``pad``: with the
    ``round_batch`` wrap, how many of the samples come from the next pass; on a short last batch
    (``round_batch=False``) how many slots are missing (the caller zero-fills them); 0 otherwise.
    ``aug_slot``: per sample, the ``idx`` MXNet reseeds the augmenter with under ``seed_aug``
    (``idx + seed_aug + 111``). ``parse_seq``: per sample, the position of the parse that produced it in the
    iterator's parse order (counted from construction, 0-based).

    ``parsed``: the records MXNet decodes and augments during this call, in that order (their
    ``parse_seq`` is ``first_parse_seq``, ``first_parse_seq + 1``, ...), with their ``parsed_slot``. With one
    preprocessing thread and no ``seed_aug``, MXNet draws the augmentation parameters in exactly this order;
    samples of a chunk that do not fit the batch wait in a buffer for later batches.
    """

    records: np.ndarray
    pad: int
    aug_slot: np.ndarray
    parse_seq: np.ndarray
    parsed: np.ndarray = field(default_factory=lambda: _EMPTY)
    parsed_slot: np.ndarray = field(default_factory=lambda: _EMPTY)
    first_parse_seq: int = 0

    def __len__(self) -> int:
        return len(self.records)


def _check_parts(num_parts: int, part_index: int) -> None:
    if int(num_parts) < 1:
        raise ValueError(f"num_parts must be >= 1, got {num_parts}")
    if not 0 <= int(part_index) < int(num_parts):
        raise ValueError(f"part_index must be in [0, num_parts={num_parts}), got {part_index} "
                         "(MXNet: invalid input parameter for InputSplit::Create)")


def num_shuffle_parts(layout: RecordLayout, num_parts: int, shuffle_chunk_size: int) -> int:
    """Number of byte sub-parts per partition that ``shuffle_chunk_size`` (MB) creates (1 = none).

    MXNet: ``ceil(total_bytes * 1.1 / (num_parts * (shuffle_chunk_size << 20)))``; only without an ``.idx``.
    """
    if shuffle_chunk_size < 0:
        raise ValueError(f"shuffle_chunk_size must be >= 0, got {shuffle_chunk_size}")
    if layout.indexed or shuffle_chunk_size == 0:
        return 1
    n = math.ceil(layout.total_bytes * 1.1 / (int(num_parts) * (int(shuffle_chunk_size) << 20)))
    return max(int(n), 1)


def _byte_split(layout: RecordLayout, nsplit: int) -> np.ndarray:
    """Byte partition of every record among ``nsplit`` parts (``InputSplitBase::ResetPartition``)."""
    nstep = -(-layout.total_bytes // nsplit)
    nstep = -(-nstep // 4) * 4
    if nstep == 0:
        return np.zeros(len(layout), np.int64)
    return layout.start // nstep


def _extent_range(layout: RecordLayout, num_parts: int, part_index: int) -> tuple[int, int]:
    """Extents ``[begin, end)`` of a count partition (``IndexedRecordIOSplitter::ResetPartition``)."""
    n = layout.num_extents
    nstep = -(-n // num_parts)
    begin = part_index * nstep
    return min(begin, n), min(begin + nstep, n)


def partition_records(layout: RecordLayout, num_parts: int = 1, part_index: int = 0,
                      shuffle_chunk_size: int = 0) -> np.ndarray:
    """Record numbers (file order) of partition ``part_index`` of ``num_parts``; may be empty.

    Without an ``.idx`` the split is by bytes; ``shuffle_chunk_size`` > 0 refines it into sub-parts, which
    can move the boundary by a few bytes. With an ``.idx`` it is by extent count.
    """
    _check_parts(num_parts, part_index)
    if layout.indexed:
        b, e = _extent_range(layout, num_parts, part_index)
        lo, hi = np.searchsorted(layout.extent, [b, e])
        return np.arange(lo, hi, dtype=np.int64)
    nsp = num_shuffle_parts(layout, num_parts, shuffle_chunk_size)
    part = _byte_split(layout, num_parts * nsp)
    lo, hi = np.searchsorted(part, [part_index * nsp, (part_index + 1) * nsp])
    return np.arange(lo, hi, dtype=np.int64)


def _chunk_bounds(starts: np.ndarray, part_end: int, buffer_words: int = _BUFFER_WORDS) -> np.ndarray:
    """Split a byte partition's records into the chunks dmlc's ``InputSplitBase`` reads.

    Each chunk starts at the first record not yet delivered and reads ``4 * buffer_words`` bytes. If the rest
    of the partition is shorter, the chunk is all of it; otherwise it is cut before the last record head in
    the buffer (``FindLastRecordBegin`` looks at ``(begin, end - 8]``). If no head other than the first is in
    the buffer, the buffer grows to ``2 * words + 1`` words and the read is retried (``Chunk::Load``).
    Returns indices into ``starts``: chunk k holds records ``[b[k], b[k+1])``.
    """
    m = len(starts)
    bounds = [0]
    i = 0
    while i < m:
        pos = int(starts[i])
        words = buffer_words
        while True:
            size = 4 * words
            if part_end - pos < size:
                i = m
                break
            j = int(np.searchsorted(starts, pos + size - 8, side="right")) - 1
            if j > i:
                i = j
                break
            words = 2 * words + 1
        bounds.append(i)
    return np.asarray(bounds, np.int64)


def _rng_state(g: MT19937 | None) -> dict | None:
    if g is None:
        return None
    st = g.getstate()
    inner = dict(st["state"])
    inner["state"] = {"key": [int(v) for v in inner["state"]["key"]], "pos": int(inner["state"]["pos"])}
    return {"seed": int(st["seed"]), "state": inner}


def _rng_from_state(d: dict | None) -> MT19937 | None:
    if d is None:
        return None
    g = MT19937(d["seed"])
    inner = dict(d["state"])
    inner["state"] = {"key": np.asarray(inner["state"]["key"], np.uint32), "pos": int(inner["state"]["pos"])}
    g.setstate({"seed": d["seed"], "state": inner})
    return g


class _IndexedSource:
    """dmlc ``IndexedRecordIOSplitter`` for one partition, in units of ``.idx`` extents."""

    def __init__(self, layout: RecordLayout, num_parts: int, part_index: int, shuffle: bool, seed: int,
                 ) -> None:
        self.begin, self.end = _extent_range(layout, num_parts, part_index)
        # records of extent e: [ptr[e], ptr[e+1])
        self.ptr = np.searchsorted(layout.extent, np.arange(layout.num_extents + 1)).astype(np.int64)
        self.count = np.diff(self.ptr)
        self.rng = MT19937(_SHUFFLE_MAGIC + seed) if shuffle else None
        self.perm: np.ndarray | None = None
        self._perm_rng: dict | None = None  # RNG state that drew ``perm``: a state dict stores this, not perm
        self.cur = self.begin
        self.n_overflow = 0
        self.before_first()

    def before_first(self) -> None:
        if self.rng is not None:
            self._perm_rng = _rng_state(self.rng)
            self.perm = self._shuffled(self.rng)
            self.cur = 0
        else:
            self.cur = self.begin

    def _shuffled(self, rng: MT19937) -> np.ndarray:
        perm = list(range(self.begin, self.end))
        std_shuffle(perm, rng)  # from the identity, every time
        return np.asarray(perm, np.int64)

    def _records(self, exts: np.ndarray) -> np.ndarray:
        counts = self.count[exts]
        if np.all(counts == 1):
            return self.ptr[exts]
        firsts = np.repeat(self.ptr[exts], counts)
        within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        return firsts + within

    def next_chunk(self, n_records: int) -> np.ndarray | None:
        """``NextBatch(chunk, n_records)``: the records of the next chunk, or None when exhausted."""
        n = self.n_overflow if self.n_overflow else n_records
        if self.perm is None:
            last = min(self.cur + n, self.end)
            self.n_overflow = self.cur + n - last
            lo, hi = int(self.ptr[self.cur]), int(self.ptr[last])
            self.cur = last
            if lo == hi:  # a zero-byte read fails, even mid-pass
                return None
            return np.arange(lo, hi, dtype=np.int64)
        exts = self.perm[self.cur:self.cur + n]
        empty = np.flatnonzero(self.count[exts] == 0)
        if len(empty):  # loading a zero-byte extent fails and ends the chunk there
            exts = exts[:empty[0]]
        if len(exts) == 0:
            return None
        self.cur += len(exts)
        self.n_overflow = n - len(exts)
        return self._records(exts)

    def state(self) -> dict:
        # the permutation is redrawn on load from the RNG state that drew it (a few KB instead of one number
        # per extent: ~9 MB of JSON for ImageNet)
        return {"cur": int(self.cur), "n_overflow": int(self.n_overflow),
                "perm_rng": None if self.perm is None else self._perm_rng, "rng": _rng_state(self.rng)}

    def load(self, st: dict) -> None:
        self.cur = int(st["cur"])
        self.n_overflow = int(st["n_overflow"])
        if st.get("perm") is not None:  # states saved before perm_rng existed
            self.perm, self._perm_rng = np.asarray(st["perm"], np.int64), None
        elif st.get("perm_rng") is not None:
            if self.perm is None or st["perm_rng"] != self._perm_rng:  # else: the permutation we hold
                self.perm = self._shuffled(_rng_from_state(st["perm_rng"]))
            self._perm_rng = st["perm_rng"]
        else:
            self.perm = self._perm_rng = None
        self.rng = _rng_from_state(st["rng"])


class _ByteSource:
    """dmlc ``RecordIOSplitter`` (via ``ThreadedInputSplit``), optionally under ``InputSplitShuffle``."""

    def __init__(self, layout: RecordLayout, num_parts: int, part_index: int, shuffle_chunk_size: int,
                 shuffle_chunk_seed: int) -> None:
        nsp = num_shuffle_parts(layout, num_parts, shuffle_chunk_size)
        part = _byte_split(layout, num_parts * nsp)
        self.subparts: list[tuple[int, np.ndarray]] = []  # (first record, chunk bounds relative to it)
        for j in range(nsp):
            g = part_index * nsp + j
            lo, hi = (int(v) for v in np.searchsorted(part, [g, g + 1]))
            part_end = int(layout.start[hi]) if hi < len(layout) else layout.total_bytes
            self.subparts.append((lo, lo + _chunk_bounds(layout.start[lo:hi], part_end)))
        self.order = list(range(nsp))
        self.rng: MT19937 | None = None
        if nsp > 1:
            self.rng = MT19937(_SUBPART_MAGIC + part_index + num_parts + nsp + shuffle_chunk_seed)
            std_shuffle(self.order, self.rng)
        self.sub = 0
        self.chunk = 0

    def before_first(self) -> None:
        if self.rng is not None:
            std_shuffle(self.order, self.rng)  # from the current order, not the identity
            self.sub = 0
        self.chunk = 0

    def next_chunk(self, n_records: int) -> np.ndarray | None:
        while True:
            _, bounds = self.subparts[self.order[self.sub]]
            if self.chunk < len(bounds) - 1:
                c = self.chunk
                self.chunk += 1
                return np.arange(bounds[c], bounds[c + 1], dtype=np.int64)
            if self.sub == len(self.order) - 1:
                return None
            self.sub += 1
            self.chunk = 0

    def state(self) -> dict:
        return {"order": list(self.order), "sub": int(self.sub), "chunk": int(self.chunk),
                "rng": _rng_state(self.rng)}

    def load(self, st: dict) -> None:
        self.order = [int(v) for v in st["order"]]
        self.sub = int(st["sub"])
        self.chunk = int(st["chunk"])
        self.rng = _rng_from_state(st["rng"])


class BatchOrder:
    """The batch sequence of one ``ImageRecordIter`` partition (``ImageRecordIOParser2``, synchronous model).

    ``next_batch()`` returns the next :class:`Batch`, or None at the end of the epoch; ``reset()`` starts the
    next epoch (after a ``round_batch`` wrap it continues in the pass the wrap started, as MXNet does).
    Raises ``ValueError`` for bad parameters or an empty partition, and ``RuntimeError`` with MXNet's text
    :data:`TOO_FEW_RECORDS` when a wrap needs more records than the partition has (every later call
    raises it again, as MXNet's iterator does after a producer error).
    """

    def __init__(self, layout: RecordLayout, batch_size: int, *, num_parts: int = 1, part_index: int = 0,
                 shuffle: bool = False, seed: int = 0, round_batch: bool = True,
                 shuffle_chunk_size: int = 0, shuffle_chunk_seed: int = 0) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        _check_parts(num_parts, part_index)
        self.layout = layout
        self.batch_size = int(batch_size)
        self.round_batch = bool(round_batch)
        self._config = {"batch_size": self.batch_size, "num_parts": int(num_parts),
                        "part_index": int(part_index), "shuffle": bool(shuffle), "seed": int(seed),
                        "round_batch": self.round_batch, "shuffle_chunk_size": int(shuffle_chunk_size),
                        "shuffle_chunk_seed": int(shuffle_chunk_seed), "indexed": layout.indexed,
                        "records": len(layout)}
        self.partition = partition_records(layout, num_parts, part_index, shuffle_chunk_size)
        if len(self.partition) == 0:
            what = (f"{layout.num_extents} .idx extents" if layout.indexed
                    else f"{layout.total_bytes} bytes, {len(layout)} records")
            hint = "; use fewer parts" if num_parts > 1 else ""
            raise ValueError(f"partition part_index={part_index} of num_parts={num_parts} holds no records "
                             f"(the data has {what}){hint}")
        self._legacy_shuffle = bool(shuffle) and not layout.indexed
        # the parser's own engine, used by the legacy (no .idx) shuffle only
        self._rng = MT19937(_SHUFFLE_MAGIC + int(seed)) if self._legacy_shuffle else None
        self._source: _IndexedSource | _ByteSource
        if layout.indexed:
            self._source = _IndexedSource(layout, num_parts, part_index, bool(shuffle), int(seed))
        else:
            self._source = _ByteSource(layout, num_parts, part_index, int(shuffle_chunk_size),
                                       int(shuffle_chunk_seed))
        self._overflow = False
        self._error: str | None = None
        self._started = False
        self._parsed_total = 0
        # parsed records not yet emitted (MXNet's temp_/inst_order_, n_parsed_), in emission order
        self._buf = _EMPTY
        self._buf_slot = _EMPTY
        self._buf_seq = _EMPTY

    @property
    def num_records(self) -> int:
        """Number of records in this partition."""
        return len(self.partition)

    def _parse(self, chunk: np.ndarray, first_slot: int) -> tuple[np.ndarray, np.ndarray]:
        slots = first_slot + np.arange(len(chunk), dtype=np.int64)
        seqs = self._parsed_total + np.arange(len(chunk), dtype=np.int64)
        self._parsed_total += len(chunk)
        return slots, seqs

    def next_batch(self) -> Batch | None:
        """The next batch of the current epoch, or None when the epoch is over (``ParseNext``)."""
        if self._error is not None:
            raise RuntimeError(self._error)
        self._started = True
        if self._overflow:
            return None
        bs = self.batch_size
        recs, slots, seqs = [], [], []
        parsed, parsed_slot = [], []
        first_seq = self._parsed_total
        current = 0
        pad = 0
        while current < bs:
            if len(self._buf):
                k = min(len(self._buf), bs - current)
                recs.append(self._buf[:k])
                slots.append(self._buf_slot[:k])
                seqs.append(self._buf_seq[:k])
                self._buf, self._buf_slot, self._buf_seq = self._buf[k:], self._buf_slot[k:], self._buf_seq[k:]
                current += k
                continue
            chunk = self._source.next_chunk(bs)
            if chunk is not None:
                if self._legacy_shuffle:
                    # every record goes to the buffer (slots from bs), then the buffer order is shuffled
                    c_slot, c_seq = self._parse(chunk, bs)
                    order = std_shuffle(list(range(len(chunk))), self._rng)
                    self._buf, self._buf_slot, self._buf_seq = chunk[order], c_slot[order], c_seq[order]
                    k = 0
                else:
                    c_slot, c_seq = self._parse(chunk, current)
                    k = min(bs - current, len(chunk))
                    self._buf, self._buf_slot, self._buf_seq = chunk[k:], c_slot[k:], c_seq[k:]
                parsed.append(chunk)
                parsed_slot.append(c_slot)
                recs.append(chunk[:k])
                slots.append(c_slot[:k])
                seqs.append(c_seq[:k])
                current += k
                continue
            # the source is exhausted
            if current == 0:
                return None
            if self._overflow:
                self._error = TOO_FEW_RECORDS
                raise RuntimeError(TOO_FEW_RECORDS)
            pad = bs - current
            if not self.round_batch:
                break
            self._overflow = True
            self._source.before_first()
        cat = (lambda parts: np.concatenate(parts) if parts else _EMPTY)
        return Batch(records=cat(recs), pad=pad, aug_slot=cat(slots), parse_seq=cat(seqs),
                     parsed=cat(parsed), parsed_slot=cat(parsed_slot), first_parse_seq=first_seq)

    def reset(self) -> None:
        """Start the next epoch (``BeforeFirst``): clear a wrap's overflow, or restart the source."""
        if self._error is not None:
            raise RuntimeError(self._error)
        if self.round_batch and self._overflow:
            self._overflow = False
        else:
            self._buf, self._buf_slot, self._buf_seq = _EMPTY, _EMPTY, _EMPTY
            self._source.before_first()

    def buffered_parse_seqs(self) -> np.ndarray:
        """Parse numbers of records parsed but not yet handed out (they belong to later batches)."""
        return self._buf_seq.copy()

    def epoch(self) -> Iterator[Batch]:
        """The batches until the end of the current epoch (does not call ``reset()``)."""
        while True:
            b = self.next_batch()
            if b is None:
                return
            yield b

    def mean_image_pass(self) -> Batch:
        """The pass MXNet makes to compute a missing ``mean_img`` (``CreateMeanImg``), then its rewind.

        Returns one pseudo-batch: ``records`` = ``parsed`` = every record of the partition in the order
        MXNet sums them (its ``parse_seq`` / ``aug_slot`` as in any parse), ``pad`` 0. Afterwards the source is
        rewound as MXNet does (``BeforeFirst``: an indexed shuffle draws its next permutation). Only valid
        before the first ``next_batch()``.
        """
        if self._started:
            raise RuntimeError("mean_image_pass() must run before the first batch (MXNet computes the "
                               "mean image while constructing the iterator)")
        self._started = True
        chunks, slots, seqs = [], [], []
        first_seq = self._parsed_total
        while (chunk := self._source.next_chunk(self.batch_size)) is not None:
            c_slot, c_seq = self._parse(chunk, self.batch_size)
            chunks.append(chunk)
            slots.append(c_slot)
            seqs.append(c_seq)
        self.reset()
        recs = np.concatenate(chunks) if chunks else _EMPTY
        sl = np.concatenate(slots) if slots else _EMPTY
        return Batch(records=recs, pad=0, aug_slot=sl, parse_seq=np.concatenate(seqs) if seqs else _EMPTY,
                     parsed=recs, parsed_slot=sl, first_parse_seq=first_seq)

    def state_dict(self) -> dict:
        """Everything needed to continue this sequence later, as plain JSON-able Python values."""
        return {"version": 1, "config": dict(self._config), "overflow": self._overflow, "error": self._error,
                "started": self._started, "parsed_total": self._parsed_total,
                "buffer": {"records": self._buf.tolist(), "slot": self._buf_slot.tolist(),
                           "seq": self._buf_seq.tolist()},
                "rng": _rng_state(self._rng), "source": self._source.state()}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict` taken on an order built with the same layout and parameters."""
        if state.get("version") != 1:
            raise ValueError(f"unsupported BatchOrder state version {state.get('version')!r}")
        if state["config"] != self._config:
            diff = {k: (state["config"].get(k), v) for k, v in self._config.items()
                    if state["config"].get(k) != v}
            raise ValueError(f"BatchOrder state was saved with other parameters (saved, current): {diff}")
        self._overflow = bool(state["overflow"])
        self._error = state["error"]
        self._started = bool(state["started"])
        self._parsed_total = int(state["parsed_total"])
        buf = state["buffer"]
        self._buf = np.asarray(buf["records"], np.int64)
        self._buf_slot = np.asarray(buf["slot"], np.int64)
        self._buf_seq = np.asarray(buf["seq"], np.int64)
        self._rng = _rng_from_state(state["rng"])
        self._source.load(state["source"])
