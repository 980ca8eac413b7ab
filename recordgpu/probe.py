"""Image size and sample type from the encoded header, without decoding the pixels.

The planner needs every image's decoded ``(height, width)`` before it draws that image's random
parameters, and MXNet draws them in parse order for whole chunks at a time. Reading the size from the
header keeps planning cheap and lets decoding happen later, in parallel or on the GPU.

``probe_image`` returns the ``(height, width, dtype)`` a full-depth decode will produce — for JPEG after the
EXIF orientation OpenCV applies — or None when it cannot be sure (other formats, PNG with EXIF data, JPEG
with more than 8 bits), in which case the caller decodes to find out.
"""
from __future__ import annotations

import numpy as np

from .codecs import NPY_MAGIC, load_npy_payload
from .imgheaders import jpeg_frame, png_chunk_types, png_header


def _jpeg_size(buf) -> tuple[int, int, str] | None:
    frame = jpeg_frame(buf)
    if frame is None or frame.height == 0 or frame.width == 0 or frame.precision != 8:
        return None
    h, w = frame.height, frame.width
    if frame.orientation in (5, 6, 7, 8):
        h, w = w, h
    return h, w, "uint8"


def _png_size(mv: memoryview) -> tuple[int, int, str] | None:
    hdr = png_header(mv)
    if hdr is None or b"eXIf" in png_chunk_types(mv):  # an eXIf chunk may carry an orientation OpenCV applies
        return None
    return hdr.height, hdr.width, hdr.dtype


def probe_image(buf) -> tuple[int, int, str] | None:
    """``(height, width, dtype name)`` of the full-depth decoded image, or None when only a decode can tell."""
    mv = memoryview(buf).cast("B")
    head = bytes(mv[:8])
    if head[:3] == b"\xff\xd8\xff":
        return _jpeg_size(mv)
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return _png_size(mv)
    if head[:6] == NPY_MAGIC:
        try:
            a = load_npy_payload(np.frombuffer(buf, np.uint8))
        except ValueError:
            return None
        return int(a.shape[0]), int(a.shape[1]), a.dtype.name
    return None
