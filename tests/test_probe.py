"""probe_image gives exactly the size and dtype a full-depth decode produces, EXIF orientation included."""
import struct

import cv2
import numpy as np
import pytest

from conftest import oracle_path
from recordgpu import codecs
from recordgpu.probe import probe_image
from recordgpu.recfile import RecordFile


def exif_app1(orientation: int) -> bytes:
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd
    body = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_exif_orientation(orientation):
    img = np.random.default_rng(0).integers(0, 255, (30, 50, 3), dtype=np.uint8)
    jpg = cv2.imencode(".jpg", img)[1].tobytes()
    with_exif = jpg[:2] + exif_app1(orientation) + jpg[2:]
    for flag in (codecs.IMREAD_COLOR, codecs.IMREAD_GRAYSCALE):
        dec = cv2.imdecode(np.frombuffer(with_exif, np.uint8), flag)
        assert probe_image(with_exif) == (*dec.shape[:2], "uint8")
    assert probe_image(with_exif)[:2] == ((50, 30) if orientation >= 5 else (30, 50))


@pytest.mark.parametrize("name", ["color8", "png8", "gray16", "color16", "rgba8", "multipart"])
def test_oracle_records(name):
    rf = RecordFile(oracle_path(f"{name}.rec"))
    for i in range(len(rf)):
        p = bytes(rf.payload(i))
        flag = struct.unpack("<I", p[:4])[0]
        b = p[24 + 4 * flag:]
        dec = cv2.imdecode(np.frombuffer(b, np.uint8), -1)
        assert probe_image(b) == (*dec.shape[:2], dec.dtype.name)
        for c in (1, 3):
            full = codecs.decode_image(b, c)
            assert probe_image(b) == (*full.shape[:2], full.dtype.name)


def test_npy_and_unknown():
    a = np.zeros((7, 9, 3), np.int16)
    assert probe_image(codecs.encode(a, ".npy")) == (7, 9, "int16")
    assert probe_image(codecs.encode(a.astype(np.uint16), ".tiff")) is None  # TIFF: decode to be sure
    assert probe_image(b"garbage") is None
    assert probe_image(b"\xff\xd8\xff\xe0\x00") is None
