"""MXNet's ``mxnet.recordio`` without MXNet: same names, signatures and bytes.

``MXRecordIO`` / ``MXIndexedRecordIO`` read and write dmlc RecordIO files byte for byte as MXNet does
(multi-part records included), ``pack`` / ``unpack`` handle the 24-byte ``IRHeader`` and packed labels,
``pack_img`` / ``unpack_img`` add image encoding (at full bit depth: ``unpack_img`` defaults to
``IMREAD_UNCHANGED``). Replace ``from mxnet import recordio`` with ``from recordgpu import recordio``.
``unpack_meta`` (recordgpu only) returns a record's header and the metadata its image carries
(:mod:`recordgpu.meta`, e.g. DICOM rescale and window values written by ``im2rec``).

Deliberate differences from MXNet 1.9.1 (all where MXNet is unsafe or surprising):

* corrupt files raise :class:`~recordgpu.errors.RecordIOError` naming file, byte offset and key;
* a reader used in a forked child reopens the file and continues from its position (MXNet raises);
* ``seek`` after the end of file works (MXNet's end-of-stream flag was sticky);
* ``pack_img`` refuses encodings that would silently cut the data to 8 bits (e.g. uint16 as JPEG);
* pickling does not close the original object, and a writer cannot be pickled (reopening one truncates).
"""
from __future__ import annotations

import numbers
import os
import struct
from collections import namedtuple
from typing import Any

import numpy as np

from . import codecs
from .errors import RecordIOError
from .meta import read_meta
from .framing import encode_record, read_record

__all__ = ["MXRecordIO", "MXIndexedRecordIO", "IRHeader", "pack", "unpack", "pack_img", "unpack_img", "unpack_meta"]

IRHeader = namedtuple("HEADER", ["flag", "label", "id", "id2"])
IRHeader.__doc__ = """Image record header: ``flag`` (number of packed float32 labels, 0 for a scalar label),
``label`` (float, or the label array when flag > 0), ``id`` (uint64 image id), ``id2`` (uint64, unused)."""
_IR_FORMAT = "<IfQQ"
_IR_SIZE = struct.calcsize(_IR_FORMAT)  # 24


class MXRecordIO:
    """Sequential RecordIO reader (``flag='r'``) or writer (``flag='w'``)."""

    def __init__(self, uri: str | os.PathLike, flag: str) -> None:
        self.uri = os.fspath(uri)
        self.flag = flag
        self.is_open = False
        self.handle = None
        self.pid: int | None = None
        self._pos = 0
        self.open()

    def open(self) -> None:
        if self.flag == "w":
            self.handle = open(self.uri, "wb")
            self.writable = True
        elif self.flag == "r":
            self.handle = open(self.uri, "rb")
            self.writable = False
        else:
            raise ValueError("Invalid flag %s" % self.flag)
        self.pid = os.getpid()
        self.is_open = True
        self._pos = 0

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __getstate__(self) -> dict:
        if self.is_open and self.writable:
            raise TypeError(f"cannot pickle {type(self).__name__} open for writing ({self.uri}): reopening "
                            "it elsewhere would truncate the file")
        d = {k: v for k, v in self.__dict__.items() if k not in ("handle",)}
        d["handle"] = None
        return d

    def __setstate__(self, d: dict) -> None:
        was_open, pos = d["is_open"], d["_pos"]
        self.__dict__.update(d)
        self.is_open = False
        if was_open:
            self._reopen_at(pos)

    def _reopen_at(self, pos: int) -> None:
        self.open()
        self.handle.seek(pos)
        self._pos = pos

    def _check_pid(self, allow_reset: bool = False) -> None:
        if self.pid == os.getpid():
            return
        if allow_reset:
            # A forked child shares the parent's file offset; give it its own descriptor.
            pos = self._pos
            try:
                self.handle = None  # the inherited file object belongs to the parent
            finally:
                self._reopen_at(pos)
        else:
            raise RuntimeError("Forbidden operation in multiple processes")

    def close(self) -> None:
        """Close the file (idempotent)."""
        if not self.is_open:
            return
        if self.handle is not None and self.pid == os.getpid():
            self.handle.close()
        self.handle = None
        self.is_open = False
        self.pid = None

    def reset(self) -> None:
        """Back to the start (``close(); open()``). In write mode this truncates the file, as in MXNet."""
        self.close()
        self.open()

    def write(self, buf: bytes) -> None:
        """Append one record."""
        assert self.writable
        self._check_pid(allow_reset=False)
        data = encode_record(buf)
        self.handle.write(data)
        self._pos += len(data)

    def read(self) -> bytes | None:
        """The next record's payload, or None at the end of the file."""
        assert not self.writable
        self._check_pid(allow_reset=True)
        payload, self._pos = read_record(self.handle, self._pos, self.uri)
        return payload

    def tell(self) -> int:
        """Byte offset where the next record will be written (or read)."""
        return self._pos


class MXIndexedRecordIO(MXRecordIO):
    """RecordIO with a text ``.idx`` (``key<TAB>offset`` lines) for random access by key."""

    def __init__(self, idx_path: str | os.PathLike, uri: str | os.PathLike, flag: str,
                 key_type: type = int) -> None:
        self.idx_path = os.fspath(idx_path)
        self.idx: dict = {}
        self.keys: list = []
        self.key_type = key_type
        self.fidx = None
        super().__init__(uri, flag)

    def open(self) -> None:
        super().open()
        self.idx = {}
        self.keys = []
        self.fidx = open(self.idx_path, self.flag)
        if not self.writable:
            for line in iter(self.fidx.readline, ""):
                line = line.strip().split("\t")
                if line == [""]:
                    continue
                key = self.key_type(line[0])
                self.idx[key] = int(line[1])
                self.keys.append(key)

    def close(self) -> None:
        if not self.is_open:
            return
        super().close()
        if self.fidx is not None:
            self.fidx.close()
        self.fidx = None

    def __getstate__(self) -> dict:
        d = super().__getstate__()
        d["fidx"] = None
        return d

    def seek(self, idx: Any) -> None:
        """Position the reader at the record with key ``idx`` (KeyError if absent)."""
        assert not self.writable
        self._check_pid(allow_reset=True)
        pos = self.idx[idx]
        self.handle.seek(pos)
        self._pos = pos

    def tell(self) -> int:
        return self._pos

    def read_idx(self, idx: Any) -> bytes | None:
        """The record with key ``idx``."""
        self.seek(idx)
        try:
            return self.read()
        except RecordIOError as e:
            raise RecordIOError(e.path, e.offset, e.reason, key=idx) from None

    def write_idx(self, idx: Any, buf: bytes) -> None:
        """Append a record under key ``idx`` and add its index line."""
        key = self.key_type(idx)
        pos = self.tell()
        self.write(buf)
        self.fidx.write("%s\t%d\n" % (str(key), pos))
        self.idx[key] = pos
        self.keys.append(key)


def pack(header, s: bytes) -> bytes:
    """Header + optional packed labels + ``s``. A scalar label forces ``flag=0``; an array label sets
    ``flag`` to its size and is stored as float32 before ``s`` (MXNet semantics)."""
    header = IRHeader(*header)
    if isinstance(header.label, numbers.Number):
        header = header._replace(flag=0)
    else:
        label = np.asarray(header.label, dtype=np.float32)
        header = header._replace(flag=label.size, label=0)
        s = label.tobytes() + bytes(s)
    return struct.pack(_IR_FORMAT, *header) + bytes(s)


def unpack(s: bytes) -> tuple[IRHeader, bytes]:
    """Split a record payload into ``(IRHeader, image bytes)``; packed labels become a float32 array."""
    header = IRHeader(*struct.unpack(_IR_FORMAT, s[:_IR_SIZE]))
    s = s[_IR_SIZE:]
    if header.flag > 0:
        header = header._replace(label=np.frombuffer(s, np.float32, header.flag))
        s = s[header.flag * 4:]
    return header, s


def unpack_img(s: bytes, iscolor: int = -1) -> tuple[IRHeader, np.ndarray | None]:
    """``unpack`` then decode the image (OpenCV BGR/BGRA order). ``iscolor=-1`` keeps depth and alpha;
    0 / 1 give MXNet's 8-bit gray / colour. The image is None when the bytes do not decode (as MXNet)."""
    header, s = unpack(s)
    img = codecs.decode(np.frombuffer(s, dtype=np.uint8), iscolor)
    return header, img


def unpack_meta(s: bytes) -> tuple[IRHeader, dict]:
    """``unpack`` then read the metadata embedded in the image bytes (``{}`` when there is none), without
    decoding the pixels. Raises :class:`~recordgpu.errors.DecodeError` for unreadable metadata."""
    header, img = unpack(s)
    return header, read_meta(img)


def pack_img(header, img: np.ndarray, quality: int = 95, img_fmt: str = ".jpg") -> bytes:
    """Encode ``img`` as ``img_fmt`` (.jpg, .png, .tiff, .npy, …) and ``pack`` it. ``quality`` is the JPEG
    quality or the PNG compression level (clamped to 0-9)."""
    buf = codecs.encode(img, img_fmt, quality)
    return pack(header, buf)
