"""Lossless JPEG 2000 (.j2k) and lossless JPEG (.ljpeg) payloads: bit-exact on the CPU at 16 bits."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from recordgpu import ImageRecordIter, codecs, recordio
from recordgpu.errors import DecodeError
from recordgpu.im2rec import PackOptions, pack_list

imagecodecs = pytest.importorskip("imagecodecs")


def _random(dtype, shape, seed=0):
    info = np.iinfo(dtype)
    img = np.random.default_rng(seed).integers(info.min, int(info.max) + 1, size=shape).astype(dtype)
    img.flat[:2] = info.min, info.max  # the extremes of the range are in every test image
    return img


def _segments(cs: bytes) -> dict[int, int]:
    """J2K main-header marker -> offset of its segment."""
    out, pos = {}, 2
    while pos + 4 <= len(cs):
        marker, length = struct.unpack(">HH", cs[pos:pos + 4])
        out.setdefault(marker, pos)
        if marker == 0xFF90:
            break
        pos += 2 + length
    return out


SHAPES = [(1, 1), (31, 17), (31, 17, 3), (12, 9, 4)]


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.uint8])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_j2k_round_trip_is_bit_exact(dtype, shape):
    img = _random(dtype, shape, seed=len(shape))
    buf = codecs.encode(img, ".j2k")
    assert codecs.sniff(buf) == "j2k"
    out = codecs.decode(buf, codecs.IMREAD_UNCHANGED)
    assert out.dtype == img.dtype
    np.testing.assert_array_equal(out, img)
    if img.ndim == 2:
        np.testing.assert_array_equal(codecs.decode_image(buf, 1)[:, :, 0], img)
        np.testing.assert_array_equal(codecs.decode_image(buf, 3), np.repeat(img[:, :, None], 3, axis=2))
    else:  # OpenCV layout in, OpenCV layout out
        np.testing.assert_array_equal(codecs.decode_image(buf, 3), img[:, :, :3])
        if shape[2] == 4:
            np.testing.assert_array_equal(codecs.decode_image(buf, 4), img)


@pytest.mark.parametrize("dtype", [np.uint16, np.int16])
def test_j2k_codestream_is_reversible_full_precision(dtype):
    img = _random(dtype, (16, 16, 3))
    cs = codecs.encode(img, ".j2k")
    seg = _segments(cs)
    siz, cod = seg[0xFF51], seg[0xFF52]
    (ncomp,) = struct.unpack(">H", cs[siz + 38:siz + 40])  # after marker, Lsiz, Rsiz and 8 sizes
    ssiz = [cs[siz + 40 + 3 * k] for k in range(ncomp)]
    assert ncomp == 3 and all((s & 0x7F) + 1 == 16 for s in ssiz)
    assert all(bool(s & 0x80) == (dtype == np.int16) for s in ssiz)
    assert cs[cod + 13] == 1  # wavelet transformation 1: reversible 5/3 (lossless)
    # the colour order in the codestream is RGB: what nvJPEG2000 and every other decoder return
    np.testing.assert_array_equal(imagecodecs.jpeg2k_decode(cs), img[:, :, ::-1])


def test_j2k_unsigned_decodes_without_imagecodecs(monkeypatch):
    img = _random(np.uint16, (21, 13))
    buf = codecs.encode(img, ".j2k")
    monkeypatch.setattr(codecs, "_imagecodecs", lambda: None)  # OpenCV's OpenJPEG path
    np.testing.assert_array_equal(codecs.decode(buf, -1), img)
    np.testing.assert_array_equal(codecs.decode_image(buf, 3), np.repeat(img[:, :, None], 3, axis=2))


def test_missing_imagecodecs_is_a_clear_error(monkeypatch):
    signed = codecs.encode(_random(np.int16, (8, 8)), ".j2k")
    lossless = codecs.encode(_random(np.uint16, (8, 8)), ".ljpeg")
    monkeypatch.setattr(codecs, "_imagecodecs", lambda: None)
    for buf in (signed, lossless):
        with pytest.raises(DecodeError, match=r"pip install 'recordgpu\[codecs\]'"):
            codecs.decode_image(buf, 1)
        with pytest.raises(DecodeError, match=r"pip install 'recordgpu\[codecs\]'"):
            codecs.decode(buf, -1)
    with pytest.raises(ValueError, match=r"pip install 'recordgpu\[codecs\]'"):
        codecs.encode(_random(np.uint16, (8, 8)), ".j2k")


def test_refuses_what_it_cannot_hold():
    with pytest.raises(ValueError, match="not float32"):
        codecs.encode(np.zeros((4, 4), np.float32), ".j2k")
    with pytest.raises(ValueError, match="not int16.*'.j2k'"):
        codecs.encode(np.zeros((4, 4), np.int16), ".ljpeg")


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8])
@pytest.mark.parametrize("shape", [(31, 17), (12, 9, 3)], ids=["gray", "bgr"])
def test_ljpeg_round_trip_is_bit_exact(dtype, shape):
    img = _random(dtype, shape)
    buf = codecs.encode(img, ".ljpeg")
    np.testing.assert_array_equal(codecs.decode(buf, -1), img)
    np.testing.assert_array_equal(codecs.decode_image(buf, shape[2] if len(shape) == 3 else 1).reshape(img.shape),
                                  img)


def test_ljpeg_stream_is_what_nvjpeg_decodes():
    """SOF3, full precision, predictor 1, Huffman tables after the frame header (nvJPEG before 13.0.2
    zero-fills streams with a DHT ahead of SOF3)."""
    buf = codecs.encode(_random(np.uint16, (10, 10)), ".ljpeg")
    markers, pos = [], 2
    while True:
        marker = buf[pos + 1]
        (length,) = struct.unpack(">H", buf[pos + 2:pos + 4])
        markers.append((marker, pos))
        if marker == 0xDA:
            break
        pos += 2 + length
    names = [m for m, _ in markers]
    assert 0xC3 in names and names.index(0xC3) < names.index(0xC4)
    sof = dict(markers)[0xC3]
    assert buf[sof + 4] == 16
    sos = dict(markers)[0xDA]
    ns = buf[sos + 4]
    assert buf[sos + 5 + 2 * ns] == 1  # Ss: the predictor


def test_pack_img_round_trip():
    img = _random(np.int16, (9, 11))
    s = recordio.pack_img(recordio.IRHeader(0, 2.0, 5, 0), img, img_fmt=".j2k")
    header, out = recordio.unpack_img(s)
    assert header.id == 5
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize("path", ["cpu", "host-gpu"])
@pytest.mark.parametrize("encoding,dtype", [(".j2k", np.uint16), (".j2k", np.int16), (".ljpeg", np.uint16)])
def test_im2rec_and_iterator_keep_every_value(tmp_path, encoding, dtype, path):
    """Bit-exact through im2rec and ImageRecordIter, on the CPU path and on the GPU path run with the
    host-built kernels standing in for the device."""
    gpu_kw = {"_gpu_backend": "host"} if path == "host-gpu" else {"device": "cpu"}
    root = tmp_path / "src"
    root.mkdir()
    imgs = [_random(dtype, (20, 24), seed=k) for k in range(3)]
    with open(tmp_path / "t.lst", "w") as f:
        for k, img in enumerate(imgs):
            np.save(root / f"{k}.npy", img)
            f.write(f"{k}\t{k}.000000\t{k}.npy\n")
    pack_list(str(tmp_path / "t.lst"), str(root), str(tmp_path / "t"), PackOptions(color=-1, encoding=encoding))
    for out_dtype in (np.dtype(dtype).name, "float32"):
        it = ImageRecordIter(path_imgrec=str(tmp_path / "t.rec"), data_shape=(1, 20, 24), batch_size=3,
                             dtype=out_dtype, **gpu_kw)
        assert it.device == ("gpu" if path == "host-gpu" else "cpu")
        batch = next(iter(it))
        data = batch.data[0].asnumpy()
        assert data.dtype == np.dtype(out_dtype)
        for k, img in enumerate(imgs):
            np.testing.assert_array_equal(data[k, 0], img.astype(out_dtype))
        np.testing.assert_array_equal(batch.label[0].asnumpy(), [0, 1, 2])
