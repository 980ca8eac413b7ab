"""Read and write MXNet's NDArray file format (``mx.nd.save`` / ``mx.nd.load``) without MXNet.

This is the format of ``ImageRecordIter``'s ``mean_img`` file and of ``.params`` files. Layout (all
little-endian; ``NDArray::Save/Load`` in ``src/ndarray/ndarray.cc``, dmlc ``Stream`` vectors)::

    uint64 0x112 (list magic)   uint64 0 (reserved)
    uint64 n                    n NDArray records
    uint64 k                    k names, each uint64 length + bytes (k == 0: a list, k == n: a dict)

An NDArray record (V2, what MXNet 1.x writes, and V3, its "np shape" variant)::

    uint32 magic 0xF993FAC9 (V2) / 0xF993FACA (V3)   int32 storage type (0 = dense)
    shape: int32 ndim + ndim * int64                 context: int32 dev_type + int32 dev_id
    int32 type flag                                  raw C-order data

V1 (magic 0xF993FAC8: shape, context, type flag, data) and the pre-V1 layout (the first uint32 *is* ndim,
followed by uint32 dims) are read as well. Arrays always load onto the CPU, whatever context they were
saved from; :func:`save` writes V2 records with context ``cpu(0)``, byte-identical to ``mx.nd.save``.
Sparse (row_sparse/CSR) records and bfloat16 data are not supported and raise :class:`ValueError`.
"""
from __future__ import annotations

import os
import struct
from typing import Mapping, Sequence, Union

import numpy as np

LIST_MAGIC = 0x112
V1_MAGIC = 0xF993FAC8
V2_MAGIC = 0xF993FAC9
V3_MAGIC = 0xF993FACA

_DEV_CPU = 1

# mshadow TypeFlag -> numpy dtype (kBfloat16 = 12 has no numpy equivalent).
_FLAG_TO_DTYPE: dict[int, np.dtype] = {
    0: np.dtype("<f4"), 1: np.dtype("<f8"), 2: np.dtype("<f2"), 3: np.dtype("u1"),
    4: np.dtype("<i4"), 5: np.dtype("i1"), 6: np.dtype("<i8"), 7: np.dtype("?"),
    8: np.dtype("<i2"), 9: np.dtype("<u2"), 10: np.dtype("<u4"), 11: np.dtype("<u8"),
}
_DTYPE_TO_FLAG: dict[str, int] = {dt.name: flag for flag, dt in _FLAG_TO_DTYPE.items()}
_STORAGE_NAMES = {1: "row_sparse", 2: "csr"}

PathLike = Union[str, "os.PathLike[str]"]
Arrays = Union[Mapping[str, np.ndarray], Sequence[np.ndarray]]

__all__ = ["load", "loads", "save", "saves", "load_mean_img", "save_mean_img"]


class _Reader:
    """Bounded little-endian reader that reports where a truncated or bad file went wrong."""

    def __init__(self, buf: bytes, source: str) -> None:
        self.buf = memoryview(buf)
        self.pos = 0
        self.source = source

    def fail(self, why: str, at: int | None = None) -> ValueError:
        at = self.pos if at is None else at
        return ValueError(f"Invalid NDArray file format: {self.source}, byte offset {at}: {why}")

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise self.fail(f"truncated while reading {what} ({n} bytes needed, "
                            f"{len(self.buf) - self.pos} left)")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))


def _read_shape_i64(r: _Reader) -> tuple[int, ...] | None:
    """``TShape::Load``: int32 ndim then int64 dims; ndim -1 (unknown, np semantics) gives None."""
    (ndim,) = r.unpack("<i", "shape ndim")
    if ndim < 0:
        return None
    return tuple(r.unpack(f"<{ndim}q", "shape dims")) if ndim else ()


def _read_payload(r: _Reader, shape: tuple[int, ...], start: int) -> np.ndarray:
    r.unpack("<ii", "context")  # dev_type, dev_id: everything loads onto the CPU
    (flag,) = r.unpack("<i", "type flag")
    dtype = _FLAG_TO_DTYPE.get(flag)
    if dtype is None:
        what = "bfloat16" if flag == 12 else f"type flag {flag}"
        raise r.fail(f"unsupported element type ({what})", start)
    if any(d < 0 for d in shape):
        raise r.fail(f"negative dimension in shape {shape}", start)
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    raw = r.take(count * dtype.itemsize, f"array data of shape {shape}")
    # copy: the result must own writeable memory, not alias the file buffer
    return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape).astype(dtype.newbyteorder("="))


def _read_ndarray(r: _Reader) -> np.ndarray | None:
    start = r.pos
    (magic,) = r.unpack("<I", "NDArray magic")
    if magic in (V2_MAGIC, V3_MAGIC):
        (stype,) = r.unpack("<i", "storage type")
        if stype != 0:
            name = _STORAGE_NAMES.get(stype, f"storage type {stype}")
            raise r.fail(f"sparse NDArray ({name}) is not supported", start)
        shape = _read_shape_i64(r)
        # V2: ndim 0 is MXNet's "none" array; V3 (np semantics): ndim 0 is a scalar, unknown dims are none
        if shape is None or (magic == V2_MAGIC and not shape) or any(d < 0 for d in shape):
            return None
        return _read_payload(r, shape, start)
    if magic == V1_MAGIC:
        shape = _read_shape_i64(r)
    else:  # pre-V1 record: the magic is ndim, followed by uint32 dims
        shape = tuple(r.unpack(f"<{magic}I", "legacy shape dims")) if magic else ()
    if not shape:
        return None
    return _read_payload(r, shape, start)


def loads(data: bytes, source: str = "<bytes>") -> dict[str, np.ndarray | None] | list[np.ndarray | None]:
    """Parse the bytes of an NDArray file; see :func:`load`."""
    r = _Reader(data, source)
    header, _reserved = r.unpack("<QQ", "file header")
    if header != LIST_MAGIC:
        raise r.fail(f"bad list magic 0x{header:x} (expected 0x{LIST_MAGIC:x})", 0)
    (n,) = r.unpack("<Q", "array count")
    if n > len(data):  # each record takes at least 4 bytes; refuse absurd counts before allocating
        raise r.fail(f"array count {n} exceeds the file size", r.pos - 8)
    arrays = [_read_ndarray(r) for _ in range(n)]
    (k,) = r.unpack("<Q", "name count")
    if k not in (0, n):
        raise r.fail(f"{k} names for {n} arrays", r.pos - 8)
    names = []
    for _ in range(k):
        (length,) = r.unpack("<Q", "name length")
        at = r.pos
        try:
            names.append(bytes(r.take(length, "name")).decode("utf-8"))
        except UnicodeDecodeError:
            raise r.fail("name is not valid UTF-8", at) from None
    if not names:
        return arrays
    return dict(zip(names, arrays))


def load(path: PathLike) -> dict[str, np.ndarray | None] | list[np.ndarray | None]:
    """Load an ``mx.nd.save`` file: a dict name -> array if it was saved with names, else a list.

    Arrays come back as writeable, native-byte-order numpy arrays on the CPU. An entry MXNet stores as an
    empty "none" NDArray loads as ``None``. A malformed or truncated file raises :class:`ValueError`
    starting with MXNet's "Invalid NDArray file format" and naming the file and byte offset.
    """
    with open(path, "rb") as f:
        data = f.read()
    return loads(data, os.fspath(path))


def _record(arr: np.ndarray) -> bytes:
    a = np.asarray(arr)
    flag = _DTYPE_TO_FLAG.get(a.dtype.name)
    if flag is None:
        raise TypeError(f"cannot save an array of dtype {a.dtype} in MXNet's NDArray format "
                        f"(supported: {', '.join(sorted(_DTYPE_TO_FLAG))})")
    if a.ndim == 0:
        # a V2 record of ndim 0 is MXNet's "none" array: the value would be lost on load
        raise ValueError("MXNet's NDArray format cannot hold a 0-d array; reshape it to (1,)")
    data = np.ascontiguousarray(a, dtype=_FLAG_TO_DTYPE[flag]).tobytes()
    return (struct.pack("<Iii", V2_MAGIC, 0, a.ndim) + struct.pack(f"<{a.ndim}q", *a.shape)
            + struct.pack("<iii", _DEV_CPU, 0, flag) + data)


def saves(data: Arrays) -> bytes:
    """The bytes :func:`save` writes."""
    if isinstance(data, Mapping):
        names = list(data.keys())
        if any(not isinstance(k, str) for k in names):
            raise TypeError("save only accepts a dict of str -> array or a list of arrays")
        values = list(data.values())
    elif isinstance(data, (list, tuple)):
        names, values = [], list(data)
    elif isinstance(data, np.ndarray):
        names, values = [], [data]
    else:
        raise TypeError("save only accepts a dict of str -> array, a list of arrays or one array")
    if any(not isinstance(v, np.ndarray) and not hasattr(v, "__array__") for v in values):
        raise TypeError("save only accepts numpy arrays (or objects exposing __array__)")
    parts = [struct.pack("<QQQ", LIST_MAGIC, 0, len(values))]
    parts += [_record(v) for v in values]
    parts.append(struct.pack("<Q", len(names)))
    for name in names:
        raw = name.encode("utf-8")
        parts.append(struct.pack("<Q", len(raw)) + raw)
    return b"".join(parts)


def save(path: PathLike, data: Arrays) -> None:
    """Write arrays the way ``mx.nd.save`` does: a dict keeps its names (in order), a list has none.

    Records are V2 with context ``cpu(0)``; dtypes float16/32/64, (u)int8/16/32/64 and bool are supported.
    """
    blob = saves(data)
    with open(path, "wb") as f:
        f.write(blob)


def load_mean_img(path: PathLike) -> np.ndarray:
    """Load an ``ImageRecordIter`` mean image: exactly one float32 array of shape (C, H, W), RGB order.

    MXNet raises "Invalid mean image file format" unless the file holds exactly one array. It never
    checks the shape against ``data_shape``: the caller must (MXNet would read out of bounds).
    """
    content = load(path)
    arrays = list(content.values()) if isinstance(content, dict) else content
    if len(arrays) != 1:
        raise ValueError(f"Invalid mean image file format: {os.fspath(path)} holds {len(arrays)} arrays, "
                         "expected exactly 1")
    mean = arrays[0]
    if mean is None or mean.dtype != np.float32 or mean.ndim != 3:
        raise ValueError(f"Invalid mean image file format: {os.fspath(path)} holds "
                         f"{_describe(mean)}, expected a float32 (C, H, W) array")
    return mean


def _describe(a: np.ndarray | None) -> str:
    return "an empty (none) NDArray" if a is None else f"a {a.dtype} array of shape {a.shape}"


def save_mean_img(path: PathLike, mean: np.ndarray) -> None:
    """Save a computed mean image as MXNet does: ``{"mean_img": float32 (C, H, W)}``."""
    mean = np.asarray(mean)
    if mean.ndim != 3:
        raise ValueError(f"a mean image must have shape (C, H, W), got {mean.shape}")
    save(path, {"mean_img": mean.astype(np.float32, copy=False)})
