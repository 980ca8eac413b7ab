"""Random access to the image records of a ``.rec``, with their labels, safe in worker processes.

:class:`RecordReader` reads the same records as ``ImageRecordIter`` (``path_imgrec`` resolved the same way;
on an InsightFace ``.rec`` only the image records, header and identity records skipped) and gives each
record's label by the iterator's rules: the ``path_imglist`` map, else the packed labels, else the scalar
header label (:func:`recordgpu.imageiter.labels.select_label`), and on InsightFace files the identity.

It is picklable (files are reopened by path, the record table travels with it) and reopens its memory
maps when used in a process other than the one that opened them, so it can be handed to forked or spawned
``DataLoader`` workers. Nothing here imports torch.
"""
from __future__ import annotations

import copy
import os
import struct
from dataclasses import dataclass

import numpy as np

from ..errors import RecordIOError
from ..headers import IR_SIZE
from ..imageiter.labels import ImageLabelMap, LabelNotFoundError, select_label
from ..imageiter.source import RecordSource
from ..recfile import RecordFile

__all__ = ["RecordReader", "RecordHeader"]

_HDR = struct.Struct("<IfQ")


@dataclass(frozen=True)
class RecordHeader:
    """The ``IRHeader`` fields of one record: packed label count, scalar label, image id."""

    flag: int
    label: float
    image_id: int


def _reopen(rf: RecordFile) -> RecordFile:
    """A fresh map of the same file, reusing the record table (no rescan)."""
    fresh = RecordFile.__new__(RecordFile)
    fresh.__setstate__(rf.__getstate__())
    return fresh


class RecordReader:
    """The image records of ``path_imgrec`` (optionally with its ``.idx``), addressed ``0 .. len - 1``.

    ``path_imglist`` and ``label_width`` mean what they mean for ``ImageRecordIter``.
    """

    def __init__(self, path_imgrec: str | os.PathLike, path_imgidx: str | os.PathLike | None = None, *,
                 path_imglist: str | os.PathLike | None = None, label_width: int = 1) -> None:
        label_width = int(label_width)
        if label_width < 1:
            raise ValueError(f"value {label_width} for Parameter label_width should be greater equal to 1")
        self.label_width = label_width
        self._source = RecordSource(os.fspath(path_imgrec), os.fspath(path_imgidx) if path_imgidx else "")
        self._pid = os.getpid()
        self.insightface = self._source.insightface
        if self.insightface and label_width != 1:
            raise ValueError("an InsightFace .rec has one label (the identity) per image: use label_width=1")
        self.label_map = ImageLabelMap.from_file(path_imglist, label_width) if path_imglist else None

    @property
    def paths(self) -> list[str]:
        """The ``.rec`` files read, in order."""
        return list(self._source.paths)

    def __len__(self) -> int:
        return len(self._source)

    def _here(self) -> RecordSource:
        """The source, with its files reopened if this is not the process that opened them."""
        pid = os.getpid()
        if pid != self._pid:
            src = copy.copy(self._source)
            src.files = [_reopen(rf) for rf in self._source.files]
            self._source, self._pid = src, pid
        return self._source

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_pid"] = None  # whoever unpickles this reopens (RecordFile pickles by path anyway)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._pid = os.getpid()

    def check_index(self, i: int) -> int:
        """``i`` as a position in ``0 .. len - 1`` (negative counts from the end); IndexError if out of range."""
        n = len(self._source)
        k = int(i)
        if k < 0:
            k += n
        if not 0 <= k < n:
            raise IndexError(f"record index {i} is out of range for {n} image records")
        return k

    def payload(self, i: int) -> memoryview | bytes:
        """The whole record payload (header, packed labels, image bytes) of image record ``i``."""
        return self._here().payload(self.check_index(i))

    def error(self, i: int, reason: str) -> RecordIOError:
        """A :class:`RecordIOError` naming the file and byte offset of image record ``i``."""
        return self._here().error(self.check_index(i), reason)

    def _split(self, i: int) -> tuple[RecordHeader, np.ndarray | None, np.ndarray]:
        payload = self.payload(i)
        n = len(payload)
        if n < IR_SIZE:
            raise self.error(i, f"record payload has {n} bytes, fewer than the 24-byte image header")
        flag, label, image_id = _HDR.unpack_from(payload, 0)
        if IR_SIZE + 4 * flag > n:
            raise self.error(i, f"header announces {flag} float32 labels but only {n - IR_SIZE} bytes "
                                "follow the header")
        packed = np.frombuffer(payload, np.float32, flag, IR_SIZE) if flag else None
        image = np.frombuffer(payload, np.uint8)[IR_SIZE + 4 * flag:]
        return RecordHeader(int(flag), float(label), int(image_id)), packed, image

    def header(self, i: int) -> RecordHeader:
        """The ``IRHeader`` of image record ``i``."""
        return self._split(i)[0]

    def image_bytes(self, i: int) -> np.ndarray:
        """The encoded image of record ``i`` as a uint8 array (a view of the file where possible)."""
        return self._split(i)[2]

    def label(self, i: int) -> np.ndarray:
        """The float32 label vector (``label_width`` values) ``ImageRecordIter`` gives record ``i``."""
        hdr, packed, _ = self._split(i)
        return self._label(i, hdr, packed)

    def raw_labels(self, i: int) -> np.ndarray:
        """The labels record ``i`` itself carries, whatever ``label_width`` says: its ``flag`` packed floats,
        or its scalar header label."""
        hdr, packed, _ = self._split(i)
        return packed.copy() if hdr.flag else np.array([hdr.label], np.float32)

    def read(self, i: int) -> tuple[RecordHeader, np.ndarray, np.ndarray]:
        """``(header, label, image bytes)`` of record ``i`` in one pass."""
        hdr, packed, image = self._split(i)
        return hdr, self._label(i, hdr, packed), image

    def _label(self, i: int, hdr: RecordHeader, packed: np.ndarray | None) -> np.ndarray:
        if self.insightface:
            return np.array([packed[0] if hdr.flag else hdr.label], np.float32)
        try:
            return select_label(hdr.flag, hdr.label, packed, hdr.image_id, self.label_width, self.label_map)
        except LabelNotFoundError:
            raise  # already names the id and the list file
        except ValueError as e:
            where = self.error(i, "").args[0].rstrip(": ")
            raise ValueError(f"{e} (record id {hdr.image_id}, {where})") from None

    def close(self) -> None:
        """Release the memory maps (a later access in another process reopens them there)."""
        self._source.close()
