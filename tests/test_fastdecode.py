"""The fast decoders (imagecodecs) must give OpenCV's arrays exactly, take the common payloads, and hand
everything else (and every error) back to OpenCV."""
from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from recordgpu import codecs, fastdecode
from recordgpu.errors import DecodeError
from recordgpu.recfile import RecordFile

from conftest import oracle_path

pytest.importorskip("imagecodecs")

FLAGS = {1: cv2.IMREAD_ANYDEPTH | cv2.IMREAD_GRAYSCALE, 3: cv2.IMREAD_ANYDEPTH | cv2.IMREAD_COLOR,
         4: cv2.IMREAD_UNCHANGED}


def _reference(raw: np.ndarray, channels: int) -> np.ndarray | None:
    img = cv2.imdecode(raw, FLAGS[channels])
    if img is not None and img.ndim == 2:
        img = img[:, :, None]
    return img


def _fast(raw: np.ndarray, channels: int) -> np.ndarray | None:
    img = fastdecode.decode(raw, codecs.sniff(raw), channels)
    if img is not None and img.ndim == 2:
        img = img[:, :, None]
    return img


def _photo(h: int, w: int, c: int, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    yy, xx = np.mgrid[0:h, 0:w]
    base = (np.sin(xx / 7.0) + np.cos(yy / 5.0) + 2) / 4 * top
    img = np.stack([base * (0.5 + 0.5 * k / max(c, 1)) for k in range(c)], axis=-1)
    img += rng.normal(0, top / 40, img.shape)
    return np.clip(img, 0, top).astype(dtype)


def _u8(b: bytes) -> np.ndarray:
    return np.frombuffer(b, np.uint8)


def _jpeg(img: np.ndarray, *params: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90, *params])
    assert ok
    return buf.ravel()


def _png(img: np.ndarray) -> np.ndarray:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.ravel()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _insert_chunk(png: np.ndarray, kind: bytes, body: bytes) -> np.ndarray:
    b = png.tobytes()
    return _u8(b[:33] + _chunk(kind, body) + b[33:])  # right after IHDR


def _exif_jpeg(jpeg: np.ndarray, orientation: int) -> np.ndarray:
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + \
        struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    seg = b"Exif\x00\x00" + tiff
    b = jpeg.tobytes()
    return _u8(b[:2] + b"\xff\xe1" + struct.pack(">H", len(seg) + 2) + seg + b[2:])


# (name, payload, channels) that the fast path must take
TAKEN = [
    ("jpeg 4:2:0", lambda: _jpeg(_photo(37, 53, 3)), 3),
    ("jpeg 4:2:0 to gray", lambda: _jpeg(_photo(37, 53, 3)), 1),
    ("jpeg 4:4:4", lambda: _jpeg(_photo(40, 31, 3), cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                                 cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444), 3),
    ("jpeg 4:2:2", lambda: _jpeg(_photo(40, 31, 3), cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                                 cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422), 3),
    ("jpeg progressive", lambda: _jpeg(_photo(64, 48, 3), cv2.IMWRITE_JPEG_PROGRESSIVE, 1), 3),
    ("jpeg optimised", lambda: _jpeg(_photo(64, 48, 3), cv2.IMWRITE_JPEG_OPTIMIZE, 1), 3),
    ("jpeg restart", lambda: _jpeg(_photo(64, 48, 3), cv2.IMWRITE_JPEG_RST_INTERVAL, 2), 3),
    ("jpeg gray", lambda: _jpeg(_photo(33, 35, 1)[:, :, 0]), 1),
    ("jpeg gray to bgr", lambda: _jpeg(_photo(33, 35, 1)[:, :, 0]), 3),
    ("jpeg exif orientation 1", lambda: _exif_jpeg(_jpeg(_photo(20, 30, 3)), 1), 3),
    ("png gray8", lambda: _png(_photo(21, 17, 1)[:, :, 0]), 1),
    ("png gray16", lambda: _png(_photo(21, 17, 1, np.uint16)[:, :, 0]), 1),
    ("png gray16 to bgr", lambda: _png(_photo(21, 17, 1, np.uint16)[:, :, 0]), 3),
    ("png bgr8", lambda: _png(_photo(19, 23, 3)), 3),
    ("png bgr16", lambda: _png(_photo(19, 23, 3, np.uint16)), 3),
    ("png bgra8", lambda: _png(_photo(19, 23, 4)), 4),
    ("png bgra16", lambda: _png(_photo(19, 23, 4, np.uint16)), 4),
    ("png bgra8 to bgr", lambda: _png(_photo(19, 23, 4)), 3),
    ("png with text", lambda: _insert_chunk(_png(_photo(19, 23, 1, np.uint16)[:, :, 0]), b"tEXt",
                                            b"RescaleSlope\x001.0"), 1),
    ("png with gamma", lambda: _insert_chunk(_png(_photo(19, 23, 3)), b"gAMA", struct.pack(">I", 45455)), 3),
    ("png with pHYs", lambda: _insert_chunk(_png(_photo(19, 23, 3)), b"pHYs", struct.pack(">IIB", 1, 1, 0)), 3),
]

# payloads it must leave to OpenCV
LEFT = [
    ("jpeg exif orientation 6", lambda: _exif_jpeg(_jpeg(_photo(20, 30, 3)), 6), 3),
    ("jpeg asked for 4 channels", lambda: _jpeg(_photo(20, 30, 3)), 4),
    ("png gray to gray+alpha (4)", lambda: _png(_photo(21, 17, 1)[:, :, 0]), 4),
    ("png rgb to gray", lambda: _png(_photo(19, 23, 3)), 1),
    ("png with tRNS", lambda: _insert_chunk(_png(_photo(19, 23, 1)[:, :, 0]), b"tRNS", b"\x00\x07"), 3),
    ("png with sBIT", lambda: _insert_chunk(_png(_photo(19, 23, 1, np.uint16)[:, :, 0]), b"sBIT", b"\x0c"), 1),
    ("png with bKGD", lambda: _insert_chunk(_png(_photo(19, 23, 4)), b"bKGD", b"\x00\x01\x00\x02\x00\x03"), 3),
    ("png palette", lambda: _u8(_palette_png()), 3),
    ("png gray+alpha", lambda: _u8(_png_raw(np.zeros((4, 5, 2), np.uint8), colour_type=4)), 3),
    ("jpeg without EOI", lambda: _jpeg(_photo(20, 30, 3))[:-2], 3),
    ("jpeg with trailing bytes", lambda: np.concatenate([_jpeg(_photo(20, 30, 3)), _u8(b"junk")]), 3),
    ("png without IEND", lambda: _png(_photo(19, 23, 3))[:-12], 3),
    ("png 1-bit", lambda: _u8(_png_raw(np.zeros((4, 8), np.uint8), colour_type=0, depth=1)), 1),
]


def _png_raw(img: np.ndarray, colour_type: int, depth: int = 8, plte: bytes = b"") -> bytes:
    h, w = img.shape[:2]
    if depth < 8:
        rows = [b"\x00" + bytes((w * depth + 7) // 8) for _ in range(h)]
    else:
        rows = [b"\x00" + img[y].tobytes() for y in range(h)]
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + (_chunk(b"PLTE", plte) if plte else b"")
            + _chunk(b"IDAT", zlib.compress(b"".join(rows))) + _chunk(b"IEND", b""))


def _palette_png() -> bytes:
    idx = (np.arange(20).reshape(4, 5) % 3).astype(np.uint8)
    return _png_raw(idx, colour_type=3, plte=bytes([255, 0, 0, 0, 255, 0, 0, 0, 255]))


@pytest.mark.parametrize("name,make,channels", TAKEN, ids=[t[0] for t in TAKEN])
def test_fast_path_takes_common_payloads_and_matches_opencv(name, make, channels):
    raw = make()
    fast = _fast(raw, channels)
    assert fast is not None, f"{name}: the fast decoder should take this payload"
    ref = _reference(raw, channels)
    assert fast.dtype == ref.dtype and fast.shape == ref.shape
    assert np.array_equal(fast, ref)
    assert np.array_equal(codecs.decode_image(raw, channels), ref)


@pytest.mark.parametrize("name,make,channels", LEFT, ids=[t[0] for t in LEFT])
def test_fast_path_leaves_other_payloads_to_opencv(name, make, channels):
    assert _fast(make(), channels) is None


def test_errors_go_to_opencv(monkeypatch):
    """Truncated / corrupt data: whatever OpenCV does (a partial image or an error), decode_image does the
    same with and without the fast path."""
    good_jpeg, good_png = _jpeg(_photo(64, 64, 3)), _png(_photo(32, 32, 1, np.uint16)[:, :, 0])
    cases = [(good_jpeg[: len(good_jpeg) // 2], 3), (good_png[: len(good_png) // 2], 1),
             (np.concatenate([good_png[:40], np.full(64, 7, np.uint8)]), 1), (good_jpeg[:30], 3),
             (good_jpeg[:-2], 3), (good_png[:-12], 1), (np.concatenate([good_jpeg[:-200], good_jpeg[-2:]]), 3)]

    def run():
        out = []
        for raw, c in cases:
            try:
                out.append(codecs.decode_image(raw, c))
            except DecodeError as e:
                out.append(type(e))
        return out

    with_fast = run()
    monkeypatch.setattr(fastdecode, "ENABLED", False)
    without = run()
    for a, b in zip(with_fast, without):
        if isinstance(b, np.ndarray):
            assert isinstance(a, np.ndarray) and np.array_equal(a, b)
        else:
            assert a is b


@pytest.mark.parametrize("rec", ["color8", "gray16", "color16", "png8", "rgba8", "multilabel"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_oracle_payloads_decode_identically(rec, channels, monkeypatch):
    """Every image of the MXNet oracle fixtures decodes to the same array with and without the fast path,
    so the oracle tests (which run with it) vouch for the OpenCV-only install too."""
    rf = RecordFile(oracle_path(f"{rec}.rec"), oracle_path(f"{rec}.idx"))
    taken = 0
    for i in range(len(rf)):
        p = rf.payload(i)
        flag = struct.unpack_from("<I", p, 0)[0]
        raw = np.frombuffer(p, np.uint8)[24 + 4 * flag:]
        fast = _fast(raw, channels)
        ref = _reference(raw, channels)
        if fast is not None:
            taken += 1
            assert ref is not None and fast.dtype == ref.dtype and np.array_equal(fast, ref), (rec, i)
    if channels == 3 or (channels == 1 and rec in ("color8", "gray16", "png8", "multilabel")):
        assert taken > 0, f"{rec}: the fast path took none of its payloads"


def test_switch_off(monkeypatch):
    monkeypatch.setattr(fastdecode, "ENABLED", False)
    assert fastdecode.decode(_jpeg(_photo(20, 30, 3)), "jpeg", 3) is None
    assert not fastdecode.available()
