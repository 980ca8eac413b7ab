"""Paired segmentation masks: a second ``.rec`` whose records pair with the images by header id.

The masks are packed like the images (``recordgpu im2rec`` from a mask list with the same indices, losslessly:
PNG, TIFF or ``.npy``; 8- or 16-bit label values), so any MXNet-compatible reader reads both files. A mask
pairs with the image whose record header has the same ``(id, id2)`` (``id2`` is 0 except for the frames of a
multi-frame DICOM file, see :mod:`recordgpu.dicom`); record order and ``.idx`` keys do not matter.

Every mask is one label map of the image's height and width (a multi-channel payload whose channels are all
equal is read as one channel). The batch dtype is the stored dtype of the file's first mask, uint8 or
uint16; a later mask of a narrower dtype is widened, one that does not fit is an error naming it.
"""
from __future__ import annotations

import struct

import numpy as np

from .. import codecs
from ..errors import DecodeError, RecordIOError
from ..headers import IR_SIZE, read_headers
from ..probe import probe_image
from ..recfile import RecordFile

MASK_DTYPES = ("uint8", "uint16")
_IDS = struct.Struct("<QQ")  # IRHeader.id and id2, at byte 8 of a record payload
_FLAG = struct.Struct("<I")


class MissingMaskError(LookupError):
    """An image record has no mask (``image_id``, ``id2``: its header ids; ``path``: the masks' ``.rec``)."""

    def __init__(self, image_id: int, id2: int, path: str, where: str) -> None:
        frame = f" (id2 {id2})" if id2 else ""
        super().__init__(f"no mask for record id {image_id}{frame} in {path} ({where}); masks pair with images "
                         "by record id: pack them from a mask list with the images' indices")
        self.image_id = image_id
        self.id2 = id2
        self.path = path


class MaskSource:
    """The masks' ``.rec`` (and optional ``.idx``) with its id table, read through a memory map."""

    def __init__(self, path_maskrec: str, path_maskidx: str = "") -> None:
        self.path = path_maskrec
        self.file = RecordFile(path_maskrec, path_maskidx or None)
        try:
            self._index(self.file)
            self.dtype = self._first_dtype()
        except BaseException:
            self.file.close()
            raise

    def _index(self, f: RecordFile) -> None:
        n = len(f)
        if n == 0:
            raise RecordIOError(self.path, None, "the masks' .rec holds no records")
        heads = read_headers(f)
        short = np.flatnonzero(f.table.length < IR_SIZE)
        if len(short):
            i = int(short[0])
            raise f.error(i, f"record payload has {int(f.table.length[i])} bytes, fewer than the 24-byte header")
        ids = heads.id
        id2s = np.zeros(n, np.uint64)
        single = f.table.nparts == 1
        if single.any():  # id2: the header's last 8 bytes, gathered like read_headers gathers id
            w = f._words
            base = (f.table.start[single] + 8) // 4
            id2s[single] = w[base + 4].astype(np.uint64) | (w[base + 5].astype(np.uint64) << np.uint64(32))
        for i in np.flatnonzero(~single):
            id2s[i] = _IDS.unpack_from(f.payload(int(i)), 8)[1]
        order = np.lexsort((id2s, ids))
        self._ids, self._id2s, self._rows = ids[order], id2s[order], order.astype(np.int64)
        dup = np.flatnonzero((self._ids[1:] == self._ids[:-1]) & (self._id2s[1:] == self._id2s[:-1]))
        if len(dup):
            k = int(dup[0])
            raise f.error(int(self._rows[k + 1]), f"two masks have record id {int(self._ids[k])} (id2 "
                                                  f"{int(self._id2s[k])}): a mask must be unique per image")

    def _first_dtype(self) -> str:
        buf = self._image_bytes(0)
        shape = probe_image(buf)
        if shape is not None:
            dtype = shape[2]
        else:
            dtype = self._decode(0).dtype.name
        if dtype not in MASK_DTYPES:
            raise self.file.error(0, f"mask dtype {dtype}: masks hold 8- or 16-bit label values "
                                     f"({' or '.join(MASK_DTYPES)})")
        return dtype

    def __len__(self) -> int:
        return len(self._rows)

    def row_of(self, image_id: int, id2: int, where: str) -> int:
        """The mask row of the image with header ids ``(image_id, id2)``; ``where`` locates the image in the
        message of the :class:`MissingMaskError` raised when there is none."""
        i = int(np.searchsorted(self._ids, np.uint64(image_id), "left"))
        j = int(np.searchsorted(self._ids, np.uint64(image_id), "right"))
        for k in range(i, j):
            if int(self._id2s[k]) == id2:
                return int(self._rows[k])
        raise MissingMaskError(image_id, id2, self.path, where)

    def _image_bytes(self, row: int) -> np.ndarray:
        payload = self.file.payload(row)
        flag = _FLAG.unpack_from(payload, 0)[0]
        if IR_SIZE + 4 * flag > len(payload):
            raise self.file.error(row, f"header announces {flag} float32 labels but only "
                                       f"{len(payload) - IR_SIZE} bytes follow the header")
        return np.frombuffer(payload, np.uint8)[IR_SIZE + 4 * flag:]

    def _decode(self, row: int) -> np.ndarray:
        try:
            m = codecs.decode(self._image_bytes(row), codecs.IMREAD_UNCHANGED)
        except DecodeError as e:
            raise self.file.error(row, f"cannot decode the mask: {e}") from None
        if m is None:
            raise self.file.error(row, "cannot decode the mask")
        if m.ndim == 3:
            if not all(np.array_equal(m[:, :, 0], m[:, :, k]) for k in range(1, m.shape[2])):
                raise self.file.error(row, f"mask has {m.shape[2]} different channels; a label map has one")
            m = m[:, :, 0]
        return m

    def load(self, row: int, height: int, width: int) -> np.ndarray:
        """Mask ``row`` as an ``(H, W, 1)`` array of :attr:`dtype`, checked against its image's size."""
        m = self._decode(row)
        if m.shape != (height, width):
            raise self.file.error(row, f"mask is {m.shape[1]}x{m.shape[0]}, its image is {width}x{height}")
        if m.dtype != self.dtype:
            if m.dtype.name not in MASK_DTYPES or not np.can_cast(m.dtype, self.dtype):
                raise self.file.error(row, f"mask is {m.dtype}, but the batch's masks are {self.dtype} (the "
                                           "dtype of the first mask): store every mask at the same depth")
            m = m.astype(self.dtype)
        return np.ascontiguousarray(m[:, :, None])

    def error(self, row: int, reason: str) -> RecordIOError:
        return self.file.error(row, reason)

    def close(self) -> None:
        self.file.close()


__all__ = ["MaskSource", "MissingMaskError", "MASK_DTYPES"]
