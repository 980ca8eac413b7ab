"""Per-record metadata inside image payloads (recordgpu.meta) and recordio.unpack_meta."""
from __future__ import annotations

import io
import json
import struct
import zlib

import cv2
import numpy as np
import pytest

from recordgpu import codecs, recordio
from recordgpu.errors import DecodeError
from recordgpu.meta import NPY_TRAILER_MAGIC, PNG_KEYWORD, attach_meta, meta_text, read_meta
from recordgpu.probe import probe_image

META = {"RescaleSlope": 1.0, "RescaleIntercept": -1024.0, "WindowCenter": [40.0, 400.0], "WindowWidth": 350.0,
        "PixelSpacing": [0.661468, 0.661468], "PhotometricInterpretation": "MONOCHROME2", "BitsStored": 12,
        "SOPInstanceUID": "1.2.3.4.5"}


def _img(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is None:
        return rng.normal(0, 1000, size=shape).astype(dtype)
    return rng.integers(info.min, int(info.max) + 1, size=shape).astype(dtype)


def _has_imagecodecs() -> bool:
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        return False
    return True


CASES = [(".png", np.uint8, (9, 7)), (".png", np.uint16, (9, 7, 3)), (".tiff", np.uint16, (9, 7)),
         (".tiff", np.int16, (9, 7)), (".tiff", np.float32, (9, 7)), (".npy", np.int16, (9, 7)),
         (".npy", np.float32, (9, 7, 3)), (".jpg", np.uint8, (16, 16, 3))]
if _has_imagecodecs():
    CASES += [(".j2k", np.uint16, (9, 7)), (".j2k", np.int16, (9, 7, 3)), (".ljpeg", np.uint16, (9, 7))]


@pytest.mark.parametrize("ext,dtype,shape", CASES, ids=[f"{e}-{np.dtype(d).name}-{len(s)}d" for e, d, s in CASES])
def test_round_trip_keeps_pixels(ext, dtype, shape):
    img = _img(dtype, shape)
    plain = codecs.encode(img, ext)
    assert read_meta(plain) == {}
    tagged = attach_meta(plain, META)
    assert read_meta(tagged) == META
    assert read_meta(memoryview(tagged)) == META and read_meta(np.frombuffer(tagged, np.uint8)) == META
    for flag in (codecs.IMREAD_UNCHANGED,):
        np.testing.assert_array_equal(codecs.decode(tagged, flag), codecs.decode(plain, flag))
    for c in (1, 3):
        np.testing.assert_array_equal(codecs.decode_image(tagged, c), codecs.decode_image(plain, c))
    if ext != ".jpg":  # lossless containers: the stored values themselves
        np.testing.assert_array_equal(codecs.decode(tagged, -1), img)


@pytest.mark.parametrize("ext", [".png", ".tiff", ".jpg"])
def test_opencv_and_so_mxnet_ignore_it(ext):
    img = _img(np.uint8, (12, 10, 3), seed=3)
    plain = codecs.encode(img, ext)
    tagged = attach_meta(plain, META)
    for flag in (-1, 0, 1):  # MXNet decodes with cv2.imdecode and these flags
        np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(tagged, np.uint8), flag),
                                      cv2.imdecode(np.frombuffer(plain, np.uint8), flag))


@pytest.mark.parametrize("ext", [".png", ".jpg", ".npy"])
def test_header_probe_still_reads_size(ext):
    plain = codecs.encode(_img(np.uint8, (13, 11, 3)), ext)
    assert probe_image(attach_meta(plain, META)) == probe_image(plain) == (13, 11, "uint8")


def test_replacing_metadata_keeps_one_copy():
    for ext in (".png", ".jpg", ".npy", ".tiff"):
        plain = codecs.encode(_img(np.uint8, (8, 8)), ext)
        once = attach_meta(plain, {"a": 1})
        twice = attach_meta(once, {"b": 2})
        assert read_meta(twice) == {"b": 2}
        if ext != ".tiff":  # TIFF leaves the old IFD behind
            assert len(twice) == len(attach_meta(plain, {"b": 2}))


def test_text_format_is_versioned_json():
    text = meta_text({"z": 1, "a": [1.5, "x"]})
    assert text.startswith(b'{"recordgpu":1,')
    assert json.loads(text) == {"recordgpu": 1, "meta": {"z": 1, "a": [1.5, "x"]}}


def test_png_chunk_is_text_with_valid_crc():
    tagged = attach_meta(codecs.encode(_img(np.uint16, (5, 6)), ".png"), META)
    pos, found = 8, []
    while pos < len(tagged):
        (length,) = struct.unpack(">I", tagged[pos:pos + 4])
        ctype, data = tagged[pos + 4:pos + 8], tagged[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", tagged[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(ctype + data), ctype
        found.append((ctype, data))
        pos += 12 + length
    assert [c for c, _ in found][:2] == [b"IHDR", b"tEXt"]
    key, _, text = found[1][1].partition(b"\0")
    assert key == PNG_KEYWORD and json.loads(text)["meta"] == META


def test_tiff_image_description_is_standard():
    img = _img(np.int16, (6, 5))
    tagged = attach_meta(codecs.encode(img, ".tiff"), META)
    tifffile = pytest.importorskip("tifffile")
    with tifffile.TiffFile(io.BytesIO(tagged)) as tf:
        page = tf.pages[0]
        assert json.loads(page.description)["meta"] == META
        np.testing.assert_array_equal(page.asarray(), img)


def _big_endian_tiff(img: np.ndarray) -> bytes:
    """A minimal big-endian ('MM') uncompressed 8-bit gray TIFF, written by hand."""
    h, w = img.shape
    entries = [(256, 3, 1, w << 16), (257, 3, 1, h << 16), (258, 3, 1, 8 << 16), (259, 3, 1, 1 << 16),
               (262, 3, 1, 1 << 16), (273, 4, 1, 8), (277, 3, 1, 1 << 16), (278, 3, 1, h << 16),
               (279, 4, 1, h * w)]
    ifd_off = 8 + h * w + (h * w) % 2
    out = b"MM\x00\x2a" + struct.pack(">I", ifd_off) + img.tobytes() + b"\0" * ((h * w) % 2)
    out += struct.pack(">H", len(entries)) + b"".join(struct.pack(">HHII", *e) for e in entries) + b"\0" * 4
    return out


def test_big_endian_tiff():
    img = _img(np.uint8, (5, 7), seed=9)
    plain = _big_endian_tiff(img)
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(plain, np.uint8), -1), img)
    tagged = attach_meta(plain, META)
    assert read_meta(tagged) == META
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(tagged, np.uint8), -1), img)


def test_jpeg_keeps_jfif_first():
    plain = codecs.encode(_img(np.uint8, (16, 16)), ".jpg")
    assert plain[2:4] == b"\xff\xe0"
    tagged = attach_meta(plain, META)
    assert tagged[2:4] == b"\xff\xe0"  # JFIF APP0 must directly follow SOI
    app0_end = 4 + struct.unpack(">H", tagged[4:6])[0]
    assert tagged[app0_end:app0_end + 2] == b"\xff\xfe"  # then the COM segment


def test_npy_trailer_layout_and_np_load():
    img = _img(np.int16, (7, 9))
    plain = codecs.encode(img, ".npy")
    tagged = attach_meta(plain, META)
    tail = tagged[len(plain):]
    assert tail[:8] == NPY_TRAILER_MAGIC
    (n,) = struct.unpack("<I", tail[8:12])
    assert len(tail) == 12 + n and json.loads(tail[12:])["meta"] == META
    np.testing.assert_array_equal(np.load(io.BytesIO(tagged), allow_pickle=False), img)
    np.testing.assert_array_equal(codecs.load_npy_payload(tagged), img)


@pytest.mark.skipif(not _has_imagecodecs(), reason="imagecodecs not installed")
def test_j2k_com_after_siz_and_jp2_box_length():
    import imagecodecs

    img = _img(np.uint16, (6, 8))
    cs = attach_meta(codecs.encode(img, ".j2k"), META)
    siz_len = struct.unpack(">H", cs[4:6])[0]
    assert cs[4 + siz_len:4 + siz_len + 2] == b"\xff\x64"
    np.testing.assert_array_equal(imagecodecs.jpeg2k_decode(cs), img)

    jp2 = imagecodecs.jpeg2k_encode(img, level=0, codecformat="JP2", reversible=True)
    tagged = attach_meta(jp2, META)
    assert read_meta(tagged) == META and len(tagged) > len(jp2)
    np.testing.assert_array_equal(imagecodecs.jpeg2k_decode(tagged), img)
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(tagged, np.uint8), -1), img)


def test_attach_errors():
    png = codecs.encode(_img(np.uint8, (4, 4)), ".png")
    with pytest.raises(ValueError, match="PNG, TIFF, JPEG"):
        attach_meta(cv2.imencode(".bmp", _img(np.uint8, (4, 4)))[1].tobytes(), META)
    with pytest.raises(ValueError, match="JSON"):
        attach_meta(png, {"a": {1, 2}})
    with pytest.raises(ValueError, match="finite"):
        attach_meta(png, {"a": float("nan")})
    with pytest.raises(TypeError):
        attach_meta(png, [("a", 1)])
    with pytest.raises(ValueError, match="COM segment"):
        attach_meta(codecs.encode(_img(np.uint8, (4, 4)), ".jpg"), {"a": "x" * 70000})


def test_read_errors_are_clear():
    jpg = codecs.encode(_img(np.uint8, (4, 4)), ".jpg")
    bad = attach_meta(jpg, {"a": 1}).replace(b'"meta":{"a":1}', b'"meta":{"a":1 ')
    with pytest.raises(DecodeError, match="corrupt recordgpu metadata"):
        read_meta(bad)
    future = attach_meta(jpg, {"a": 1}).replace(b'{"recordgpu":1,', b'{"recordgpu":9,')
    with pytest.raises(DecodeError, match="version 9"):
        read_meta(future)
    npy = codecs.encode(_img(np.uint8, (4, 4)), ".npy")
    with pytest.raises(DecodeError, match="unexpected bytes"):
        read_meta(npy + b"junk")
    assert read_meta(b"") == {} and read_meta(b"not an image") == {}


def test_unpack_meta_and_mxnet_style_reads():
    img = _img(np.uint16, (10, 12))
    payload = attach_meta(codecs.encode(img, ".png"), META)
    for label in (3.0, [1.0, 2.0, 3.0]):
        s = recordio.pack(recordio.IRHeader(0, label, 17, 0), payload)
        header, meta = recordio.unpack_meta(s)
        assert meta == META and header.id == 17
        np.testing.assert_array_equal(np.atleast_1d(header.label), np.atleast_1d(np.float32(label)))
        h2, decoded = recordio.unpack_img(s)  # the image still decodes as before
        np.testing.assert_array_equal(decoded, img)
    header, meta = recordio.unpack_meta(recordio.pack_img(recordio.IRHeader(0, 1.0, 2, 0), img, img_fmt=".png"))
    assert meta == {}


def _meta_rec(tmp_path, n=7, with_meta=lambda k: k % 3 != 1):
    """A .rec of n 16-bit PNGs; records with_meta(k) carry {"SOPInstanceUID": "uid-k", "k": k}."""
    rec, idx = tmp_path / "m.rec", tmp_path / "m.idx"
    w = recordio.MXIndexedRecordIO(str(idx), str(rec), "w")
    for k in range(n):
        png = codecs.encode(np.full((6, 5), 100 * k, np.uint16), ".png")
        if with_meta(k):
            png = attach_meta(png, {"SOPInstanceUID": f"uid-{k}", "k": k})
        w.write_idx(k, recordio.pack(recordio.IRHeader(0, float(k), k, 0), png))
    w.close()
    return str(rec), str(idx)


def test_iterator_returns_metadata_per_slot(tmp_path):
    from recordgpu import ImageRecordIter

    rec, idx = _meta_rec(tmp_path)
    kw = dict(path_imgrec=rec, path_imgidx=idx, data_shape=(1, 6, 5), batch_size=3, dtype="uint16")
    with ImageRecordIter(**kw) as it:
        assert it.next().meta is None  # off by default
    for shuffle, round_batch in ((False, False), (True, True)):
        with ImageRecordIter(**kw, return_meta=True, shuffle=shuffle, round_batch=round_batch, seed=4) as it:
            seen = 0
            for b in it:
                assert len(b.meta) == 3
                real = 3 - b.pad if not round_batch else 3
                for slot in range(3):
                    m = b.meta[slot]
                    if slot >= real:
                        assert m is None  # a zero filler slot
                        continue
                    k = int(b.index[slot])
                    assert int(b.data[0][slot, 0, 0, 0]) == 100 * k  # the slot's own record
                    assert m == ({"SOPInstanceUID": f"uid-{k}", "k": k} if k % 3 != 1 else {})
                    seen += 1
            assert seen >= 7


def test_unreadable_metadata_is_a_located_error_only_when_asked(tmp_path):
    from recordgpu import ImageRecordIter, RecordIOError

    rec, idx = tmp_path / "bad.rec", tmp_path / "bad.idx"
    w = recordio.MXIndexedRecordIO(str(idx), str(rec), "w")
    png = codecs.encode(np.zeros((4, 4), np.uint16), ".png")
    bad = png[:33] + _png_text_chunk(b"recordgpu", b"{\"recordgpu\":1,\"meta\":{broken") + png[33:]
    for k in range(2):
        w.write_idx(k, recordio.pack(recordio.IRHeader(0, 0.0, k, 0), bad if k == 1 else png))
    w.close()
    kw = dict(path_imgrec=str(rec), path_imgidx=str(idx), data_shape=(1, 4, 4), batch_size=2, dtype="uint16")
    with ImageRecordIter(**kw) as it:
        assert it.next().data[0].shape == (2, 1, 4, 4)  # not asked: the pixels are fine
    with pytest.raises(RecordIOError, match="record id 1: corrupt recordgpu metadata"):
        with ImageRecordIter(**kw, return_meta=True) as it:
            it.next()


def _png_text_chunk(keyword: bytes, text: bytes) -> bytes:
    body = keyword + b"\0" + text
    return struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))


def test_torch_iter_passes_metadata(tmp_path):
    pytest.importorskip("torch")
    from recordgpu import ImageRecordIter
    from recordgpu.torch import TorchIter

    rec, idx = _meta_rec(tmp_path, n=5, with_meta=lambda k: True)
    it = ImageRecordIter(path_imgrec=rec, path_imgidx=idx, data_shape=(1, 6, 5), batch_size=2, dtype="uint16",
                         return_meta=True, round_batch=False)
    metas = [m for _, _, meta in TorchIter(it, meta=True) for m in meta]
    assert [m["k"] for m in metas] == [0, 1, 2, 3, 4]  # the filler slot of the last batch trimmed with it
    with pytest.raises(ValueError, match="return_meta"):
        TorchIter(ImageRecordIter(path_imgrec=rec, data_shape=(1, 6, 5), batch_size=2, dtype="uint16"), meta=True)
    it.close()
