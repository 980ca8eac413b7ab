"""What an encoded image's headers say, read without decoding a pixel.

* JPEG: the frame header (SOFn: coding process, sample precision, size, component count), whether a Huffman
  table comes before it, and the EXIF orientation of the first Exif APP1 segment, the one OpenCV reads.
* PNG: the IHDR fields and the chunk types before the first IDAT (which tell whether a decoder would have
  to transform the stored samples, e.g. for transparency).

The planner (:mod:`recordgpu.probe`), the CPU codecs (:mod:`recordgpu.codecs`, :mod:`recordgpu.fastdecode`)
and the GPU decode router (:mod:`recordgpu.gpu.decode`) all read headers through this module.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from itertools import takewhile
from typing import Iterator

import numpy as np

SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
HUFFMAN_DCT = frozenset({0xC0, 0xC1, 0xC2})  # baseline, extended, progressive
LOSSLESS = frozenset({0xC3, 0xC7, 0xCB, 0xCF})
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class JpegFrame:
    """What the JPEG frame header (SOFn) and the markers before it say."""

    marker: int  # 0xC0..0xCF
    precision: int
    height: int
    width: int
    components: int
    dht_before_sof: bool  # a Huffman table precedes the frame header
    orientation: int | None  # EXIF orientation (1-8) of the first Exif APP1 segment, as OpenCV reads it
    has_exif: bool = False  # there is an Exif APP1 segment before the frame header

    @property
    def lossless(self) -> bool:
        return self.marker in LOSSLESS


def jpeg_frame(buf) -> JpegFrame | None:
    """Parse a JPEG's markers up to its frame header; None when it is not a well-formed JPEG header."""
    mv = memoryview(buf).cast("B")
    n = len(mv)
    if n < 4 or mv[0] != 0xFF or mv[1] != 0xD8:
        return None
    pos, dht, orientation, seen_exif = 2, False, None, False
    while pos + 4 <= n:
        if mv[pos] != 0xFF:
            return None
        m = mv[pos + 1]
        if m == 0xFF:  # fill byte
            pos += 1
            continue
        if m == 0x01 or 0xD0 <= m <= 0xD7:  # markers without a length
            pos += 2
            continue
        if m in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        length = (mv[pos + 2] << 8) | mv[pos + 3]
        body = pos + 4
        if length < 2:
            return None
        if m == 0xC4:
            dht = True
        elif m == 0xE1 and not seen_exif and bytes(mv[body:body + 6]) == b"Exif\0\0":
            seen_exif = True  # OpenCV reads the first Exif block only
            orientation = exif_orientation(bytes(mv[body + 6:pos + 2 + length]))
        elif m in SOF_MARKERS:
            if length < 8 or body + 6 > n:
                return None
            h = (mv[body + 1] << 8) | mv[body + 2]
            w = (mv[body + 3] << 8) | mv[body + 4]
            return JpegFrame(m, mv[body], h, w, mv[body + 5], dht, orientation, seen_exif)
        pos += 2 + length
    return None


def exif_orientation(tiff: bytes) -> int | None:
    """Orientation tag (1-8) in IFD0 of an Exif TIFF structure, None when absent or unreadable."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return None
    try:
        (ifd,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, ifd)
        for k in range(count):
            tag, typ, num = struct.unpack_from(order + "HHI", tiff, ifd + 2 + 12 * k)
            if tag == 0x0112 and typ == 3 and num >= 1:
                (value,) = struct.unpack_from(order + "H", tiff, ifd + 10 + 12 * k)
                return value if 1 <= value <= 8 else None
    except struct.error:
        return None
    return None


def apply_exif_orientation(img: np.ndarray, orientation: int | None) -> np.ndarray:
    """Turn ``img`` (H, W[, C]) upright the way OpenCV's imdecode does for EXIF orientation 1-8."""
    if orientation in (5, 6, 7, 8):
        img = img.swapaxes(0, 1)
    if orientation in (2, 6):
        img = img[:, ::-1]
    elif orientation in (3, 7):
        img = img[::-1, ::-1]
    elif orientation in (4, 8):
        img = img[::-1]
    return np.ascontiguousarray(img)


@dataclass(frozen=True)
class PngHeader:
    """The IHDR of a PNG and the chunk types that come before its image data."""

    width: int
    height: int
    bit_depth: int
    colour_type: int  # 0 gray, 2 RGB, 3 palette, 4 gray + alpha, 6 RGBA
    interlace: int
    chunks: tuple[bytes, ...]  # types of the chunks between IHDR and the first IDAT (or IEND)

    @property
    def dtype(self) -> str:
        return "uint16" if self.bit_depth == 16 else "uint8"


def png_chunk_types(buf, start: int = 8) -> Iterator[bytes]:
    """The type of each chunk from byte ``start`` (a chunk boundary; 8 is the first chunk, IHDR) up to and
    including IEND, from the chunk headers alone; stops early where the data ends."""
    mv = memoryview(buf).cast("B")
    pos = start
    while pos + 8 <= len(mv):
        (length,) = struct.unpack(">I", mv[pos:pos + 4])
        kind = bytes(mv[pos + 4:pos + 8])
        yield kind
        if kind == b"IEND":
            return
        pos += 12 + length


def png_header(buf) -> PngHeader | None:
    """Parse a PNG's IHDR and walk its chunk headers up to the first IDAT; None when malformed."""
    mv = memoryview(buf).cast("B")
    if len(mv) < 33 or bytes(mv[:8]) != PNG_SIGNATURE or bytes(mv[12:16]) != b"IHDR":
        return None
    w, h, depth, ctype, _comp, _filt, interlace = struct.unpack(">IIBBBBB", mv[16:29])
    chunks = tuple(takewhile(lambda kind: kind not in (b"IDAT", b"IEND"), png_chunk_types(mv, 33)))
    return PngHeader(w, h, depth, ctype, interlace, chunks)
