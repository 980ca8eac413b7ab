"""Image size and sample type from the encoded header, without decoding the pixels.

The planner needs every image's decoded ``(height, width)`` before it draws that image's random
parameters, and MXNet draws them in parse order for whole chunks at a time. Reading the size from the
header keeps planning cheap and lets decoding happen later, in parallel or on the GPU.

``probe_image`` returns the ``(height, width, dtype)`` a full-depth decode will produce — for JPEG after the
EXIF orientation OpenCV applies — or None when it cannot be sure (other formats, PNG with EXIF data, JPEG
with more than 8 bits), in which case the caller decodes to find out.
"""
from __future__ import annotations

import struct

import numpy as np

from .codecs import NPY_MAGIC, load_npy_payload

_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _exif_orientation(seg: bytes) -> int | None:
    """Orientation tag (1-8) of an APP1 Exif segment body, or None."""
    if seg[:6] != b"Exif\0\0" or len(seg) < 14:
        return None
    tiff = seg[6:]
    if tiff[:2] == b"II":
        e = "<"
    elif tiff[:2] == b"MM":
        e = ">"
    else:
        return None
    try:
        (ifd,) = struct.unpack(e + "I", tiff[4:8])
        (n,) = struct.unpack(e + "H", tiff[ifd:ifd + 2])
        for k in range(n):
            ent = tiff[ifd + 2 + 12 * k: ifd + 14 + 12 * k]
            tag, typ, cnt = struct.unpack(e + "HHI", ent[:8])
            if tag == 0x0112 and typ == 3 and cnt >= 1:
                return struct.unpack(e + "H", ent[8:10])[0]
    except struct.error:
        return None
    return None


def _jpeg_size(b: bytes) -> tuple[int, int, str] | None:
    pos, n = 2, len(b)
    orientation = None
    seen_app1 = False
    while pos + 4 <= n:
        if b[pos] != 0xFF:
            return None
        marker = b[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", b[pos + 2:pos + 4])
        if marker == 0xE1 and not seen_app1 and b[pos + 4:pos + 10] == b"Exif\0\0":
            seen_app1 = True  # OpenCV reads the first Exif block only
            orientation = _exif_orientation(b[pos + 4:pos + 2 + length])
        elif marker in _SOF_MARKERS:
            if pos + 9 > n:
                return None
            precision = b[pos + 4]
            h, w = struct.unpack(">HH", b[pos + 5:pos + 9])
            if h == 0 or w == 0 or precision != 8:
                return None
            if orientation in (5, 6, 7, 8):
                h, w = w, h
            return h, w, "uint8"
        elif marker == 0xDA:  # start of scan before any SOF
            return None
        pos += 2 + length
    return None


def _png_size(mv: memoryview) -> tuple[int, int, str] | None:
    if len(mv) < 33 or bytes(mv[12:16]) != b"IHDR":
        return None
    w, h = struct.unpack(">II", mv[16:24])
    dtype = "uint16" if mv[24] == 16 else "uint8"
    pos = 8
    while pos + 8 <= len(mv):  # walk the chunk headers: an eXIf chunk may carry an orientation OpenCV applies
        (length,) = struct.unpack(">I", mv[pos:pos + 4])
        ctype = bytes(mv[pos + 4:pos + 8])
        if ctype == b"eXIf":
            return None
        if ctype == b"IEND":
            break
        pos += 12 + length
    return h, w, dtype


def probe_image(buf) -> tuple[int, int, str] | None:
    """``(height, width, dtype name)`` of the full-depth decoded image, or None when only a decode can tell."""
    mv = memoryview(buf).cast("B")
    head = bytes(mv[:8])
    if head[:3] == b"\xff\xd8\xff":
        return _jpeg_size(bytes(mv))
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return _png_size(mv)
    if head[:6] == NPY_MAGIC:
        try:
            a = load_npy_payload(np.frombuffer(buf, np.uint8))
        except ValueError:
            return None
        return int(a.shape[0]), int(a.shape[1]), a.dtype.name
    return None
