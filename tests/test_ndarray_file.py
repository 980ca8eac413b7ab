"""MXNet's NDArray file format (mx.nd.save / mx.nd.load): the mean_img file MXNet wrote, and round trips."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from recordgpu import ndarray_file as nf
from conftest import ORACLE

MEAN_FILE = ORACLE / "mean_color8.bin"


def _first_epoch_images(case: str) -> np.ndarray:
    """The distinct images of the first epoch of an oracle case (the wrapped tail is cut by its pad)."""
    z = np.load(ORACLE / "cases" / f"{case}.npz")
    out, b = [], 0
    while f"e0_b{b}_data" in z.files:
        data, pad = z[f"e0_b{b}_data"], int(z[f"e0_b{b}_pad"])
        out.append(data[: len(data) - pad])
        b += 1
    return np.concatenate(out)


def test_loads_the_mean_image_mxnet_wrote():
    content = nf.load(MEAN_FILE)
    assert isinstance(content, dict) and list(content) == ["mean_img"]
    mean = content["mean_img"]
    assert mean.shape == (3, 32, 32) and mean.dtype == np.float32
    assert mean.flags.writeable and mean.flags.c_contiguous
    assert 0.0 <= mean.min() and mean.max() <= 255.0


def test_save_reproduces_mxnets_file_byte_for_byte(tmp_path):
    original = MEAN_FILE.read_bytes()
    content = nf.load(MEAN_FILE)
    assert nf.saves(content) == original
    out = tmp_path / "again.bin"
    nf.save(out, content)
    assert out.read_bytes() == original
    nf.save(out, nf.load(out))
    assert out.read_bytes() == original


def test_mean_image_is_mxnets_float32_running_sum_times_reciprocal():
    # CreateMeanImg: meanimg = sum of the (RGB, float32) samples in record order; meanimg *= 1.0f / count.
    # With default mean/std/scale the samples are the `resize` case's outputs (same resize as mean_img).
    images = _first_epoch_images("resize")
    assert len(images) == 11
    total = np.zeros(images.shape[1:], np.float32)
    for im in images:
        total += im
    expected = total * np.float32(1.0 / len(images))
    np.testing.assert_array_equal(nf.load_mean_img(MEAN_FILE), expected)


def test_mean_image_is_rgb_and_subtracted_per_pixel():
    # The mean_img case outputs (p - meanimg[k][i][j]) exactly, with p the plain resize output.
    mean = nf.load_mean_img(MEAN_FILE)
    plain = _first_epoch_images("resize")
    with_mean = _first_epoch_images("mean_img")
    np.testing.assert_array_equal(with_mean, plain - mean)


def test_file_layout_matches_the_format_description():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    expected = (struct.pack("<QQQ", 0x112, 0, 1)
                + struct.pack("<IiI", 0xF993FAC9, 0, 2) + struct.pack("<qq", 2, 3)   # V2, dense, shape
                + struct.pack("<iii", 1, 0, 0)                                      # cpu(0), float32
                + a.tobytes()
                + struct.pack("<QQ", 1, 1) + b"w")
    assert nf.saves({"w": a}) == expected
    assert nf.saves([a]) == expected[:-len(struct.pack("<QQ", 1, 1) + b"w")] + struct.pack("<Q", 0)


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "uint8", "int8", "int32", "int64",
                                   "int16", "uint16", "uint32", "uint64", "bool"])
def test_round_trip_every_dtype(tmp_path, dtype):
    rng = np.random.default_rng(0)
    a = (rng.integers(0, 2, (3, 4, 5)) if dtype == "bool" else rng.integers(0, 100, (3, 4, 5))).astype(dtype)
    path = tmp_path / "x.params"
    nf.save(path, {"arg:a": a, "aux:b": a[:1]})
    back = nf.load(path)
    assert list(back) == ["arg:a", "aux:b"]
    for got, want in zip(back.values(), (a, a[:1])):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_list_single_array_and_non_contiguous_inputs():
    a = np.arange(12, dtype=np.int32).reshape(3, 4)
    assert nf.loads(nf.saves([a.T, a[:, ::2]]))[0].tolist() == a.T.tolist()
    assert nf.loads(nf.saves([a.T, a[:, ::2]]))[1].tolist() == a[:, ::2].tolist()
    single = nf.loads(nf.saves(a))
    assert isinstance(single, list) and len(single) == 1
    np.testing.assert_array_equal(single[0], a)
    empty = np.zeros((0, 3), np.float32)
    assert nf.loads(nf.saves([empty]))[0].shape == (0, 3)


def test_big_endian_input_is_written_little_endian():
    a = np.arange(4, dtype=">f4")
    assert nf.saves([a]) == nf.saves([a.astype("<f4")])
    np.testing.assert_array_equal(nf.loads(nf.saves([a]))[0], [0, 1, 2, 3])


def test_save_rejects_what_the_format_cannot_hold():
    with pytest.raises(ValueError, match="0-d"):
        nf.saves([np.float32(1.0) * np.ones(())])
    with pytest.raises(TypeError, match="complex64"):
        nf.saves([np.zeros(2, np.complex64)])
    with pytest.raises(TypeError, match="dict of str"):
        nf.saves({1: np.zeros(2)})
    with pytest.raises(TypeError):
        nf.saves("not arrays")


def _record_v1(a: np.ndarray, flag: int) -> bytes:
    return (struct.pack("<Ii", 0xF993FAC8, a.ndim) + struct.pack(f"<{a.ndim}q", *a.shape)
            + struct.pack("<iii", 1, 0, flag) + a.tobytes())


def _record_legacy(a: np.ndarray, flag: int) -> bytes:  # the first uint32 is ndim, dims are uint32
    return (struct.pack("<I", a.ndim) + struct.pack(f"<{a.ndim}I", *a.shape)
            + struct.pack("<iii", 1, 0, flag) + a.tobytes())


def _file(records: list[bytes], names: list[str] = ()) -> bytes:
    out = struct.pack("<QQQ", 0x112, 0, len(records)) + b"".join(records) + struct.pack("<Q", len(names))
    for n in names:
        out += struct.pack("<Q", len(n)) + n.encode()
    return out


def test_reads_v1_legacy_v3_none_and_gpu_records():
    a = np.arange(6, dtype=np.uint8).reshape(2, 3)
    b = np.arange(4, dtype=np.float64)
    v3_scalar = struct.pack("<Iii", 0xF993FACA, 0, 0) + struct.pack("<iii", 1, 0, 0) + np.float32(7).tobytes()
    v2_none = struct.pack("<Iii", 0xF993FAC9, 0, 0)
    v2_gpu = (struct.pack("<Iii", 0xF993FAC9, 0, 1) + struct.pack("<q", 2)
              + struct.pack("<iii", 2, 1, 5) + np.array([-1, 2], np.int8).tobytes())
    got = nf.loads(_file([_record_v1(a, 3), _record_legacy(b, 1), v3_scalar, v2_none, v2_gpu]))
    np.testing.assert_array_equal(got[0], a)
    np.testing.assert_array_equal(got[1], b)
    assert got[2].shape == () and got[2] == 7
    assert got[3] is None
    assert got[4].dtype == np.int8 and got[4].tolist() == [-1, 2]


@pytest.mark.parametrize("blob, why", [
    (b"", "truncated"),
    (struct.pack("<QQ", 0x113, 0), "bad list magic"),
    (_file([struct.pack("<Ii", 0xF993FAC9, 1)]), "row_sparse"),
    (_file([struct.pack("<Iii", 0xF993FAC9, 0, 1) + struct.pack("<qiii", 2, 1, 0, 12)]), "bfloat16"),
    (_file([struct.pack("<Iii", 0xF993FAC9, 0, 1) + struct.pack("<qiii", 4, 1, 0, 0) + b"\0" * 8]), "truncated"),
    (_file([], ["orphan"]), "1 names for 0 arrays"),
])
def test_malformed_files_raise_invalid_format_with_offset(blob, why):
    with pytest.raises(ValueError, match="Invalid NDArray file format") as exc:
        nf.loads(blob, "bad.bin")
    assert why in str(exc.value) and "bad.bin, byte offset" in str(exc.value)


def test_truncated_copy_of_the_real_file(tmp_path):
    path = tmp_path / "cut.bin"
    path.write_bytes(MEAN_FILE.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"Invalid NDArray file format: .*cut\.bin, byte offset 72"):
        nf.load(path)


def test_mean_img_helpers(tmp_path):
    mean = np.random.default_rng(1).random((3, 8, 8)).astype(np.float32)
    path = tmp_path / "m.bin"
    nf.save_mean_img(path, mean)
    assert list(nf.load(path)) == ["mean_img"]
    np.testing.assert_array_equal(nf.load_mean_img(path), mean)
    nf.save(path, {"a": mean, "b": mean})
    with pytest.raises(ValueError, match="Invalid mean image file format"):
        nf.load_mean_img(path)
    nf.save(path, [mean.astype(np.float64)])
    with pytest.raises(ValueError, match="Invalid mean image file format.*float64"):
        nf.load_mean_img(path)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        nf.save_mean_img(path, mean[0])
