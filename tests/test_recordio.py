"""recordgpu.recordio: MXNet's Python API, on MXNet-written oracle files and on files we write."""
import os
import pickle

import numpy as np
import pytest

from conftest import load_sources, oracle_path
from recordgpu import recordio
from recordgpu.recfile import RecordFile

ORACLE_SETS = ["color8", "png8", "gray16", "color16", "rgba8", "multilabel", "multipart"]


@pytest.mark.parametrize("name", ORACLE_SETS)
def test_oracle_rec_reads_back_three_ways(name):
    rec, idx = oracle_path(f"{name}.rec"), oracle_path(f"{name}.idx")
    seq = recordio.MXRecordIO(rec, "r")
    sequential = []
    while (x := seq.read()) is not None:
        sequential.append(x)
    ir = recordio.MXIndexedRecordIO(idx, rec, "r")
    by_key = [ir.read_idx(k) for k in ir.keys]
    scanned = RecordFile(rec)
    indexed = RecordFile(rec, idx)
    assert len(sequential) == len(ir.keys) == len(scanned) == len(indexed)
    assert by_key == sequential
    assert [bytes(scanned.payload(i)) for i in range(len(scanned))] == sequential
    assert [bytes(indexed.payload(i)) for i in range(len(indexed))] == sequential
    lst = [line.split("\t") for line in open(oracle_path(f"{name}.lst")).read().splitlines()]
    for payload, row in zip(sequential, lst):
        h, _ = recordio.unpack(payload)
        assert h.id == int(row[0])
        labels = [float(v) for v in row[1:-1]]
        if h.flag:
            assert h.label.tolist() == pytest.approx(labels)
        else:
            assert h.label == pytest.approx(labels[0])


def test_multipart_oracle_is_really_multipart():
    rf = RecordFile(oracle_path("multipart.rec"))
    assert (rf.table.nparts > 1).all()


@pytest.mark.parametrize("name", ["png8", "gray16", "color16", "rgba8"])
def test_png_pixels_equal_sources_exactly(name):
    srcs = load_sources(name)
    r = recordio.MXIndexedRecordIO(oracle_path(f"{name}.idx"), oracle_path(f"{name}.rec"), "r")
    for k, src in zip(r.keys, srcs):
        _, img = recordio.unpack_img(r.read_idx(k))
        assert img.dtype == src.dtype and np.array_equal(img, src)


def test_unpack_img_flags_and_failures():
    r = recordio.MXIndexedRecordIO(oracle_path("gray16.idx"), oracle_path("gray16.rec"), "r")
    payload = r.read_idx(r.keys[1])
    _, full = recordio.unpack_img(payload)
    _, eight = recordio.unpack_img(payload, 0)
    assert full.dtype == np.uint16 and eight.dtype == np.uint8
    assert np.array_equal(eight, (full >> 8).astype(np.uint8))  # MXNet's 8-bit path: high byte
    assert recordio.unpack_img(recordio.pack((0, 1.0, 1, 0), b"not an image"))[1] is None


@pytest.mark.parametrize("fmt,dtype", [(".png", np.uint16), (".tiff", np.uint16), (".tiff", np.int16),
                                       (".tiff", np.float32), (".npy", np.int16), (".npy", np.float32),
                                       (".png", np.uint8), (".npy", np.uint16)])
def test_pack_img_lossless_round_trip(fmt, dtype):
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        img = rng.integers(info.min, info.max, (13, 17), endpoint=True).astype(dtype)
    else:
        img = rng.normal(0, 1000, (13, 17, 3)).astype(dtype)
    try:
        packed = recordio.pack_img((0, 2.0, 5, 0), img, img_fmt=fmt)
    except ValueError as e:  # never silently lossy: exact, or refused with the lossless alternative
        assert fmt == ".tiff" and "'.npy'" in str(e)
        return
    h, out = recordio.unpack_img(packed)
    assert h.id == 5 and out.dtype == img.dtype and np.array_equal(out, img)


@pytest.mark.parametrize("fmt,dtype,hint", [(".png", np.int16, "tiff"), (".jpg", np.uint16, "png"),
                                            (".png", np.float32, "npy"), (".jpg", np.int16, "tiff")])
def test_pack_img_refuses_silent_8_bit(fmt, dtype, hint):
    with pytest.raises(ValueError, match=hint):
        recordio.pack_img((0, 0.0, 0, 0), np.zeros((4, 4), dtype), img_fmt=fmt)


def test_invalid_flag_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="Invalid flag x"):
        recordio.MXRecordIO(tmp_path / "a.rec", "x")
    with pytest.raises(FileNotFoundError):
        recordio.MXRecordIO(tmp_path / "missing.rec", "r")


def test_empty_file_reads_none(tmp_path):
    (tmp_path / "e.rec").write_bytes(b"")
    assert recordio.MXRecordIO(tmp_path / "e.rec", "r").read() is None


def test_reset_close_and_seek_after_eof(tmp_path):
    w = recordio.MXIndexedRecordIO(tmp_path / "a.idx", tmp_path / "a.rec", "w")
    for k in range(3):
        w.write_idx(k, b"rec%d" % k)
    assert w.tell() == 3 * 12  # 8-byte header + 4 bytes each
    w.close()
    w.close()  # idempotent
    r = recordio.MXIndexedRecordIO(tmp_path / "a.idx", tmp_path / "a.rec", "r")
    assert [r.read() for _ in range(4)] == [b"rec0", b"rec1", b"rec2", None]
    assert r.read_idx(1) == b"rec1"  # MXNet returned None here (sticky EOF)
    r.reset()
    assert r.read() == b"rec0"
    with pytest.raises(KeyError):
        r.seek(99)


def test_str_keys(tmp_path):
    w = recordio.MXIndexedRecordIO(tmp_path / "s.idx", tmp_path / "s.rec", "w", key_type=str)
    w.write_idx("a", b"A")
    w.write_idx("b", b"BB")
    w.close()
    r = recordio.MXIndexedRecordIO(tmp_path / "s.idx", tmp_path / "s.rec", "r", key_type=str)
    assert r.keys == ["a", "b"] and r.read_idx("b") == b"BB"


def test_pickle_reader_keeps_position_and_original_stays_open(tmp_path):
    w = recordio.MXIndexedRecordIO(tmp_path / "a.idx", tmp_path / "a.rec", "w")
    for k in range(3):
        w.write_idx(k, b"r%d" % k)
    with pytest.raises(TypeError, match="writing"):
        pickle.dumps(w)
    w.close()
    r = recordio.MXIndexedRecordIO(tmp_path / "a.idx", tmp_path / "a.rec", "r")
    assert r.read() == b"r0"
    r2 = pickle.loads(pickle.dumps(r))
    assert r2.read() == b"r1" and r.read() == b"r1"
    assert r2.read_idx(0) == b"r0" and r2.keys == [0, 1, 2]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_reader_is_safe_after_fork(tmp_path):
    w = recordio.MXIndexedRecordIO(tmp_path / "a.idx", tmp_path / "a.rec", "w")
    for k in range(50):
        w.write_idx(k, b"payload-%d" % k)
    w.close()
    r = recordio.MXIndexedRecordIO(tmp_path / "a.idx", tmp_path / "a.rec", "r")
    assert r.read() == b"payload-0"
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: reads on its own descriptor
        ok = all(r.read_idx(k) == b"payload-%d" % k for k in range(49, -1, -1))
        os.write(wfd, b"1" if ok else b"0")
        os._exit(0)
    os.close(wfd)
    assert os.read(rfd, 1) == b"1"
    os.waitpid(pid, 0)
    assert r.read() == b"payload-1"  # the parent's position was not disturbed


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_writer_refuses_other_process(tmp_path):
    w = recordio.MXRecordIO(tmp_path / "a.rec", "w")
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            w.write(b"x")
            os.write(wfd, b"0")
        except RuntimeError:
            os.write(wfd, b"1")
        os._exit(0)
    os.close(wfd)
    assert os.read(rfd, 1) == b"1"
    os.waitpid(pid, 0)
