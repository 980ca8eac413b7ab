"""Faster decoders for the common payloads, used only where they give OpenCV's pixels exactly.

OpenCV's ``imdecode`` is the reference decoder (it is what MXNet used), but for the two formats that fill
almost every ``.rec`` it is not the fastest way to the same pixels: imagecodecs (optional extra ``codecs``)
calls libjpeg-turbo with the same settings as OpenCV (accurate integer IDCT, fancy upsampling) and writes BGR
straight from the decoder, 10-25% faster on one core, and its libpng build is ~30% faster on 16-bit PNGs.
Both release the GIL.

:func:`decode` takes only the cases where the result is the same array as OpenCV's, and returns None for
everything else, so the caller decodes with OpenCV:

* JPEG: complete (ending with its EOI marker) 8-bit Huffman DCT (baseline, extended, progressive) with 1 or
  3 components, asked for 1 or 3 channels, and no Exif orientation to apply (no Exif block, or orientation 1);
* PNG: complete (ending with IEND) 8/16-bit gray, RGB or RGBA whose chunks before the image data change no
  sample (no transparency, palette, significant-bits or unknown chunks), asked for gray from gray, BGR from
  gray/RGB/RGBA (alpha dropped) or BGRA from RGBA.

Any error of the fast decoder also returns None: OpenCV then decides, error behaviour included. Set the
environment variable ``RECORDGPU_FAST_DECODE=0`` (read at import) to always decode with OpenCV.
"""
from __future__ import annotations

import functools
import os

import cv2
import numpy as np

from .imgheaders import HUFFMAN_DCT, JpegFrame, jpeg_frame, png_header

ENABLED = os.environ.get("RECORDGPU_FAST_DECODE", "1").strip().lower() not in ("0", "false", "no", "off")

# PNG chunks that libpng does not apply to the samples unless asked to (OpenCV and imagecodecs do not ask)
_PASSIVE_PNG_CHUNKS = frozenset({b"pHYs", b"tEXt", b"zTXt", b"iTXt", b"tIME", b"gAMA", b"cHRM", b"sRGB",
                                 b"iCCP"})
_PNG_GRAY, _PNG_RGB, _PNG_RGBA = 0, 2, 6
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


@functools.lru_cache(maxsize=1)
def _imagecodecs():
    """imagecodecs when it is installed with its JPEG and PNG codecs, else None (looked up once)."""
    from .codecs import _imagecodecs as load  # noqa: PLC0415 (codecs imports this module)

    ic = load()
    return ic if ic is not None and ic.JPEG8.available and ic.PNG.available else None


def available() -> bool:
    """Whether :func:`decode` can take any payload here (imagecodecs installed and not switched off)."""
    return ENABLED and _imagecodecs() is not None


def decode(raw: np.ndarray, kind: str, channels: int, frame: JpegFrame | None = None) -> np.ndarray | None:
    """``raw`` (a uint8 array of an encoded ``kind`` = 'jpeg' / 'png' payload) decoded for ``channels`` as
    :func:`recordgpu.codecs.decode_image` would with OpenCV, or None when OpenCV must do it. ``frame``: the
    JPEG's frame header when the caller has already read it."""
    if not ENABLED:
        return None
    ic = _imagecodecs()
    if ic is None:
        return None
    try:
        if kind == "jpeg":
            return _jpeg(ic, raw, channels, frame)
        if kind == "png":
            return _png(ic, raw, channels)
    except Exception:  # noqa: BLE001 (corrupt or unusual data: OpenCV decides what happens)
        return None
    return None


def _jpeg(ic, raw: np.ndarray, channels: int, frame: JpegFrame | None) -> np.ndarray | None:
    if raw[-2:].tobytes() != b"\xff\xd9":
        return None  # no end-of-image marker: libjpeg pads a truncated stream where OpenCV refuses it
    frame = frame if frame is not None else jpeg_frame(raw)
    if (frame is None or frame.marker not in HUFFMAN_DCT or frame.precision != 8
            or frame.components not in (1, 3) or channels not in (1, 3)
            or (frame.has_exif and frame.orientation != 1)):
        return None
    cs = ic.JPEG8.CS.EXT_BGR if channels == 3 else ic.JPEG8.CS.GRAYSCALE
    img = ic.jpeg8_decode(raw, outcolorspace=cs)
    if img.shape[:2] != (frame.height, frame.width):
        return None
    return img


def _png(ic, raw: np.ndarray, channels: int) -> np.ndarray | None:
    if raw[-12:].tobytes() != _PNG_IEND:
        return None  # truncated, or trailing data: OpenCV's call
    hdr = png_header(raw)
    if (hdr is None or hdr.bit_depth not in (8, 16) or not set(hdr.chunks) <= _PASSIVE_PNG_CHUNKS
            or (hdr.colour_type, channels) not in _PNG_CASES):
        return None
    img = ic.png_decode(raw)
    stored = {_PNG_GRAY: (), _PNG_RGB: (3,), _PNG_RGBA: (4,)}[hdr.colour_type]
    if img.shape != (hdr.height, hdr.width) + stored or img.dtype != np.dtype(hdr.dtype):
        return None
    return _PNG_CASES[(hdr.colour_type, channels)](img)


_PNG_CASES = {
    (_PNG_GRAY, 1): lambda g: g,
    (_PNG_GRAY, 3): lambda g: cv2.cvtColor(g, cv2.COLOR_GRAY2BGR),
    (_PNG_RGB, 3): lambda c: cv2.cvtColor(c, cv2.COLOR_RGB2BGR),
    (_PNG_RGBA, 3): lambda c: cv2.cvtColor(c, cv2.COLOR_RGBA2BGR),
    (_PNG_RGBA, 4): lambda c: cv2.cvtColor(c, cv2.COLOR_RGBA2BGRA),
}
