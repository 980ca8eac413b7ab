"""DICOM files into .rec (recordgpu.dicom + im2rec): exact stored values, modality LUT, metadata, frames."""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.pixels import apply_modality_lut, get_decoder  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402

from recordgpu import ImageRecordIter, codecs, recordio  # noqa: E402
from recordgpu.dicom import DicomError, frame_key, is_dicom, read_frames, split_frame_key  # noqa: E402
from recordgpu.im2rec import Im2RecError, PackOptions, encode_item, encode_records, pack_list  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ACCEPTANCE = ["CT_small", "MR_small", "MR_small_RLE", "MR_small_bigendian", "MR_small_jp2klossless",
              "liver_1frame"]


def _testfile(name: str) -> str:
    path = get_testdata_file(name + ".dcm")
    if path is None:
        pytest.skip(f"pydicom test file {name}.dcm is not shipped with this pydicom")
    return path


def _native(dtype: np.dtype) -> np.dtype:
    return dtype.newbyteorder("=")


def _im2rec(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "recordgpu.im2rec", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> dict[bool, Path]:
    """The acceptance files packed by the command line, one .rec each, without and with --dicom-rescale."""
    base = tmp_path_factory.mktemp("dicom")
    root = base / "root"
    root.mkdir()
    for name in ACCEPTANCE:
        shutil.copy(_testfile(name), root / f"{name}.dcm")
    out = {}
    for rescale in (False, True):
        work = base / ("hu" if rescale else "stored")
        work.mkdir()
        for k, name in enumerate(ACCEPTANCE):
            (work / f"dcm_{name}.lst").write_text(f"{k}\t{k + 0.5:f}\t{name}.dcm\n")
        args = [str(work / "dcm_"), str(root), "--color", "-1", "--encoding", ".tiff"]
        proc = _im2rec(*args, *(["--dicom-rescale"] if rescale else []), cwd=base)
        assert proc.returncode == 0, proc.stderr
        out[rescale] = work
    return out


def _read_one(rec: Path, shape: tuple[int, int], dtype) -> np.ndarray:
    it = ImageRecordIter(path_imgrec=str(rec), data_shape=(1, *shape), batch_size=1, dtype=dtype)
    batch = next(iter(it))
    data = batch.data[0].asnumpy()
    assert data.dtype == np.dtype(dtype or "float32")
    return data[0, 0]


@pytest.mark.parametrize("name", ACCEPTANCE)
def test_iterator_returns_pixel_array_exactly(packed, name):
    ds = pydicom.dcmread(_testfile(name))
    expected = ds.pixel_array
    for dtype in (_native(expected.dtype).name, "float32"):
        out = _read_one(packed[False] / f"dcm_{name}.rec", expected.shape, dtype)
        np.testing.assert_array_equal(out, expected.astype(dtype))


@pytest.mark.parametrize("name", ACCEPTANCE)
def test_rescale_returns_modality_lut_exactly(packed, name):
    ds = pydicom.dcmread(_testfile(name))
    expected = apply_modality_lut(ds.pixel_array, ds)
    rec = packed[True] / f"dcm_{name}.rec"
    (payload,) = _records(rec)
    stored = codecs.decode(recordio.unpack(payload)[1], -1)
    transformed = "RescaleSlope" in ds or "ModalityLUTSequence" in ds
    if not transformed:
        assert stored.dtype == _native(ds.pixel_array.dtype)  # no modality transform: values and dtype kept
    elif np.all(expected == np.round(expected)) and expected.min() >= -32768 and expected.max() <= 32767:
        assert stored.dtype == np.int16
    else:
        assert stored.dtype == np.float32
    for dtype in (stored.dtype.name, "float32"):
        out = _read_one(rec, expected.shape, dtype)
        np.testing.assert_array_equal(out, np.asarray(expected).astype(stored.dtype).astype(dtype))
        np.testing.assert_array_equal(out.astype(np.float64), np.asarray(expected, np.float64))


def _records(rec: Path) -> list[bytes]:
    r = recordio.MXRecordIO(str(rec), "r")
    try:
        return list(iter(r.read, None))
    finally:
        r.close()


@pytest.mark.parametrize("name", ACCEPTANCE)
def test_header_and_metadata(packed, name):
    ds = pydicom.dcmread(_testfile(name))
    k = ACCEPTANCE.index(name)
    for rescale in (False, True):
        (payload,) = _records(packed[rescale] / f"dcm_{name}.rec")
        header, meta = recordio.unpack_meta(payload)
        assert (header.flag, header.label, header.id, header.id2) == (0, np.float32(k + 0.5), k, 0)
        assert meta["SOPInstanceUID"] == ds.SOPInstanceUID
        assert meta["BitsStored"] == ds.BitsStored
        assert meta["PhotometricInterpretation"] == ds.PhotometricInterpretation
        spacing = ds.get("PixelSpacing") or \
            ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        assert meta["PixelSpacing"] == [float(v) for v in spacing]
        for key in ("WindowCenter", "WindowWidth"):
            if key in ds:
                assert meta[key] == float(ds[key].value)
            else:
                assert key not in meta
        if "RescaleSlope" in ds:
            if rescale:
                assert (meta["RescaleSlope"], meta["RescaleIntercept"], meta["Rescaled"]) == (1.0, 0.0, True)
                assert meta["SourceRescaleSlope"] == float(ds.RescaleSlope)
                assert meta["SourceRescaleIntercept"] == float(ds.RescaleIntercept)
            else:
                assert meta["RescaleSlope"] == float(ds.RescaleSlope)
                assert meta["RescaleIntercept"] == float(ds.RescaleIntercept)
                assert "Rescaled" not in meta
        else:
            assert "RescaleSlope" not in meta and "Rescaled" not in meta


# -- synthetic files ------------------------------------------------------------------------------------
def _mr(**changes) -> Dataset:
    ds = pydicom.dcmread(_testfile("MR_small"))
    for k, v in changes.items():
        setattr(ds, k, v)
    return ds


def _save(ds: Dataset, path: Path) -> str:
    ds.save_as(str(path), enforce_file_format=True)
    return str(path)


def _lst(path: Path, *entries: tuple[int, str]) -> str:
    path.write_text("".join(f"{k}\t{k:f}\t{rel}\n" for k, rel in entries))
    return str(path)


def test_multi_frame_records_keys_and_per_frame_rescale(tmp_path):
    ds = _mr()
    base = ds.pixel_array.astype(np.int16)
    frames = np.stack([base, base + 1, base + 2])
    ds.NumberOfFrames = 3
    ds.PixelData = frames.tobytes()
    groups = Sequence()
    for f in range(3):
        t = Dataset()
        t.RescaleSlope, t.RescaleIntercept, t.RescaleType = str(f + 1), str(-10 * f), "US"
        g = Dataset()
        g.PixelValueTransformationSequence = Sequence([t])
        groups.append(g)
    ds.PerFrameFunctionalGroupsSequence = groups
    _save(ds, tmp_path / "mf.dcm")
    _save(_mr(), tmp_path / "single.dcm")
    lst = _lst(tmp_path / "m.lst", (7, "mf.dcm"), (8, "single.dcm"))

    for rescale in (False, True):
        prefix = tmp_path / f"m{int(rescale)}"
        res = pack_list(lst, str(tmp_path), str(prefix), PackOptions(color=-1, encoding=".tiff",
                                                                       dicom_rescale=rescale))
        assert res.written == 4
        rec = recordio.MXIndexedRecordIO(str(prefix) + ".idx", str(prefix) + ".rec", "r")
        assert rec.keys == [7, (1 << 32) + 7, (2 << 32) + 7, 8]
        for f in range(3):
            key = frame_key(7, f)
            assert split_frame_key(key) == (7, f)
            header, img = recordio.unpack_img(rec.read_idx(key))
            _, meta = recordio.unpack_meta(rec.read_idx(key))
            assert (header.id, header.id2) == (7, f)
            assert (meta["Frame"], meta["NumberOfFrames"]) == (f, 3)
            if rescale:  # each frame's own functional group: value * (f + 1) - 10 f
                np.testing.assert_array_equal(img, (frames[f].astype(np.float64) * (f + 1) - 10 * f).astype(np.int16))
                assert img.dtype == np.int16
                assert (meta["SourceRescaleSlope"], meta["SourceRescaleIntercept"]) == (f + 1.0, -10.0 * f)
            else:
                np.testing.assert_array_equal(img, frames[f])
                assert (meta["RescaleSlope"], meta["RescaleIntercept"]) == (f + 1.0, -10.0 * f)
        header, meta = recordio.unpack_meta(rec.read_idx(8))
        assert (header.id, header.id2) == (8, 0) and "Frame" not in meta
        rec.close()
    with pytest.raises(Im2RecError, match="encode_records"):
        encode_item([7, "mf.dcm", 7.0], str(tmp_path), PackOptions(color=-1, encoding=".tiff"))
    # threads keep the list and frame order
    pack_list(lst, str(tmp_path), str(tmp_path / "t"), PackOptions(color=-1, encoding=".tiff", num_thread=3))
    assert (tmp_path / "t.rec").read_bytes() == (tmp_path / "m0.rec").read_bytes()
    assert (tmp_path / "t.idx").read_bytes() == (tmp_path / "m0.idx").read_bytes()


def test_rgb_multi_frame_is_bgr(tmp_path):
    src = _testfile("SC_rgb_rle_16bit_2frame")
    shutil.copy(src, tmp_path / "rgb.dcm")
    expected = pydicom.dcmread(src).pixel_array
    records = encode_records([3, "rgb.dcm", 0.0], str(tmp_path), PackOptions(color=-1, encoding=".png"))
    assert [k for k, _ in records] == [frame_key(3, 0), frame_key(3, 1)]
    for f, (_, payload) in enumerate(records):
        _, img = recordio.unpack_img(payload)
        np.testing.assert_array_equal(img, expected[f][:, :, ::-1])
        assert recordio.unpack_meta(payload)[1]["PhotometricInterpretation"] == "RGB"


def test_rescale_dtype_rule(tmp_path):
    """int16 when every value is integral and fits, float32 otherwise (values exactly as pydicom's)."""
    for slope, intercept, dtype in (("0.5", "0.25", np.float32), ("20", "0", np.float32), ("2", "-7", np.int16)):
        ds = _mr(RescaleSlope=slope, RescaleIntercept=intercept)
        path = _save(ds, tmp_path / "r.dcm")
        (frame,) = read_frames(path, rescale=True)
        expected = apply_modality_lut(ds.pixel_array, ds)
        assert frame.image.dtype == dtype
        np.testing.assert_array_equal(frame.image, expected.astype(dtype))
        # and through the iterator (float32 source included)
        lst = _lst(tmp_path / "r.lst", (0, "r.dcm"))
        pack_list(lst, str(tmp_path), str(tmp_path / "r"),
                  PackOptions(color=-1, encoding=".tiff", dicom_rescale=True))
        out = _read_one(tmp_path / "r.rec", expected.shape, np.dtype(dtype).name)
        np.testing.assert_array_equal(out, expected.astype(dtype))


def test_modality_lut_sequence(tmp_path):
    ds = _mr()
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.LUTData = [(v * 3) % 5000 for v in range(4096)]
    item["LUTData"].VR = "US"
    ds.ModalityLUTSequence = Sequence([item])
    path = _save(ds, tmp_path / "lut.dcm")
    (stored,) = read_frames(path)
    (mapped,) = read_frames(path, rescale=True)
    assert stored.meta["ModalityLUT"] is True and "RescaleSlope" not in stored.meta
    expected = apply_modality_lut(ds.pixel_array, ds)
    np.testing.assert_array_equal(mapped.image, expected.astype(mapped.image.dtype))
    assert mapped.image.dtype == np.int16 and mapped.meta["Rescaled"] is True


@pytest.mark.parametrize("signed", [False, True])
def test_monochrome1_inversion(tmp_path, signed):
    ds = _mr(PhotometricInterpretation="MONOCHROME1", WindowCenter="600", WindowWidth="1600",
             RescaleSlope="2", RescaleIntercept="-100")
    if not signed:
        ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 0, 12, 11
    path = _save(ds, tmp_path / "m1.dcm")
    stored = ds.pixel_array
    lo, hi = (-32768, 32767) if signed else (0, 4095)

    (plain,) = read_frames(path)
    np.testing.assert_array_equal(plain.image, stored)
    assert plain.meta["PhotometricInterpretation"] == "MONOCHROME1" and "InvertedMonochrome1" not in plain.meta

    (inv,) = read_frames(path, invert_monochrome1=True)
    np.testing.assert_array_equal(inv.image, (lo + hi - stored.astype(np.int64)).astype(stored.dtype))
    assert inv.image.dtype == stored.dtype
    assert inv.meta["PhotometricInterpretation"] == "MONOCHROME2" and inv.meta["InvertedMonochrome1"] is True
    f_lo, f_hi = 2.0 * lo - 100, 2.0 * hi - 100
    assert inv.meta["WindowCenter"] == f_lo + f_hi + 1 - 600 and inv.meta["WindowWidth"] == 1600

    # the DICOM linear window shows the inverted MONOCHROME2 frame as the original MONOCHROME1 one
    def window(x, c, w):
        return np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1)

    m = stored * 2.0 - 100
    m_inv = inv.image * 2.0 - 100
    np.testing.assert_allclose(window(m_inv, inv.meta["WindowCenter"], 1600), 1 - window(m, 600, 1600), atol=1e-12)

    (both,) = read_frames(path, invert_monochrome1=True, rescale=True)  # mirrored within the rescaled range
    np.testing.assert_array_equal(both.image, (f_lo + f_hi - m).astype(both.image.dtype))


def test_dicom_found_by_preamble_and_spacing_follows_resize(tmp_path):
    src = _testfile("CT_small")
    shutil.copy(src, tmp_path / "scan.img")  # no .dcm name: recognised by the DICM prefix
    assert is_dicom(tmp_path / "scan.img") and not is_dicom(__file__)
    ds = pydicom.dcmread(src)
    (key, payload), = encode_records([0, "scan.img", 0.0], str(tmp_path),
                                     PackOptions(color=-1, encoding=".npy", resize=64))
    _, meta = recordio.unpack_meta(payload)
    _, img = recordio.unpack_img(payload)
    assert img.shape == (64, 64) and img.dtype == np.int16
    assert meta["PixelSpacing"] == [float(v) * ds.Rows / 64 for v in ds.PixelSpacing]
    np.testing.assert_array_equal(np.load(io.BytesIO(recordio.unpack(payload)[1])), img)  # trailer ignored


def test_j2k_records_of_signed_ct_read_exactly(tmp_path):
    pytest.importorskip("imagecodecs")
    shutil.copy(_testfile("CT_small"), tmp_path / "ct.dcm")
    lst = _lst(tmp_path / "c.lst", (0, "ct.dcm"))
    pack_list(lst, str(tmp_path), str(tmp_path / "c"), PackOptions(color=-1, encoding=".j2k", dicom_rescale=True))
    (payload,) = _records(tmp_path / "c.rec")
    assert codecs.sniff(recordio.unpack(payload)[1]) == "j2k"
    assert recordio.unpack_meta(payload)[1]["Rescaled"] is True
    ds = pydicom.dcmread(tmp_path / "ct.dcm")
    expected = apply_modality_lut(ds.pixel_array, ds)
    np.testing.assert_array_equal(_read_one(tmp_path / "c.rec", expected.shape, "int16"), expected.astype(np.int16))


def test_eight_bit_color_modes(tmp_path):
    shutil.copy(_testfile("liver_1frame"), tmp_path / "l.dcm")
    stored = pydicom.dcmread(tmp_path / "l.dcm").pixel_array
    (_, p1), = encode_records([0, "l.dcm", 0.0], str(tmp_path), PackOptions(color=1, encoding=".png"))
    np.testing.assert_array_equal(recordio.unpack_img(p1)[1], np.repeat(stored[:, :, None], 3, axis=2))
    (_, p0), = encode_records([0, "l.dcm", 0.0], str(tmp_path), PackOptions(color=0, encoding=".png"))
    np.testing.assert_array_equal(recordio.unpack_img(p0)[1], stored)


def test_errors_name_the_file_and_the_fix(tmp_path, monkeypatch):
    shutil.copy(_testfile("CT_small"), tmp_path / "ct.dcm")
    root = str(tmp_path)
    with pytest.raises(Im2RecError, match="--color -1") as e:
        encode_records([4, "ct.dcm", 0.0], root, PackOptions(color=1))
    assert e.value.key == 4 and e.value.path.endswith("ct.dcm")
    with pytest.raises(Im2RecError, match="pass-through"):
        encode_records([4, "ct.dcm", 0.0], root, PackOptions(pass_through=True))
    with pytest.raises(Im2RecError, match="int16.*'.tiff'"):
        encode_records([4, "ct.dcm", 0.0], root, PackOptions(color=-1, encoding=".png"))
    shutil.copy(_testfile("rtplan"), tmp_path / "plan.dcm")
    with pytest.raises(Im2RecError, match="no pixel data"):
        encode_records([5, "plan.dcm", 0.0], root, PackOptions(color=-1))
    (tmp_path / "junk.dcm").write_bytes(b"\0" * 10)
    with pytest.raises(Im2RecError):
        encode_records([6, "junk.dcm", 0.0], root, PackOptions(color=-1))

    monkeypatch.setitem(sys.modules, "pydicom", None)  # as if pydicom were not installed
    with pytest.raises(DicomError, match=r"pip install 'recordgpu\[dicom\]'"):
        list(read_frames(tmp_path / "ct.dcm"))


def test_missing_plugin_names_what_to_install(tmp_path):
    src = get_testdata_file("SC_rgb_jpeg_gdcm.dcm")  # JPEG Lossless SV1
    if src is None:
        pytest.skip("test file not shipped")
    decoder = get_decoder(pydicom.dcmread(src).file_meta.TransferSyntaxUID)
    if decoder.is_available:
        pytest.skip("a JPEG Lossless plugin is installed here")
    shutil.copy(src, tmp_path / "jl.dcm")
    (tmp_path / "j.lst").write_text("0\t0.000000\tjl.dcm\n")
    proc = _im2rec(str(tmp_path / "j"), str(tmp_path), "--color", "-1", "--encoding", ".tiff", cwd=tmp_path)
    assert proc.returncode == 1
    assert "jl.dcm" in proc.stderr and "JPEG Lossless" in proc.stderr
    assert "python-gdcm" in proc.stderr and "pylibjpeg-libjpeg" in proc.stderr
    assert not (tmp_path / "j.rec").exists()
