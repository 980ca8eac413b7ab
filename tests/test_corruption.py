"""Corrupt input never crashes or hangs: it raises RecordIOError naming the file and the byte offset."""
import os
import struct

import numpy as np
import pytest

from recordgpu import recordio
from recordgpu.errors import RecordIOError
from recordgpu.framing import MAGIC_BYTES, encode_record
from recordgpu.recfile import RecordFile


def write_rec(tmp_path, payloads, name="c"):
    rec, idx = tmp_path / f"{name}.rec", tmp_path / f"{name}.idx"
    w = recordio.MXIndexedRecordIO(idx, rec, "w")
    for k, p in enumerate(payloads):
        w.write_idx(k, p)
    w.close()
    return rec, idx


PAYLOADS = [recordio.pack((0, float(i), i, 0), bytes([i]) * (10 + 7 * i)) for i in range(6)]


def read_all_sequential(rec):
    r = recordio.MXRecordIO(rec, "r")
    while r.read() is not None:
        pass


def assert_located(err: RecordIOError, path, offset=None):
    assert err.path == str(path)
    assert err.offset is not None
    assert str(path) in str(err) and f"byte offset {err.offset}" in str(err)
    if offset is not None:
        assert err.offset == offset


def test_bad_magic(tmp_path):
    rec, idx = write_rec(tmp_path, PAYLOADS)
    data = bytearray(rec.read_bytes())
    off = RecordFile(rec).table.start[3]
    data[off] ^= 0xFF
    rec.write_bytes(bytes(data))
    for fn in (lambda: RecordFile(rec), lambda: read_all_sequential(rec)):
        with pytest.raises(RecordIOError, match="bad magic") as e:
            fn()
        assert_located(e.value, rec, int(off))
    with pytest.raises(RecordIOError, match="not at a record head") as e:
        RecordFile(rec, idx)
    assert e.value.offset == int(off) and e.value.key == 3


def test_truncated_header_and_payload(tmp_path):
    rec, _ = write_rec(tmp_path, PAYLOADS)
    full = rec.read_bytes()
    last = int(RecordFile(rec).table.start[-1])
    rec.write_bytes(full[:last + 4])  # only half the last header
    with pytest.raises(RecordIOError, match="truncated record header") as e:
        RecordFile(rec)
    assert_located(e.value, rec, last)
    rec.write_bytes(full[:-8])  # payload cut at a 4-byte boundary
    with pytest.raises(RecordIOError, match="truncated payload") as e:
        RecordFile(rec)
    assert_located(e.value, rec, last)
    with pytest.raises(RecordIOError, match="truncated payload") as e:
        read_all_sequential(rec)
    assert_located(e.value, rec, last)


def test_size_not_multiple_of_4(tmp_path):
    rec, _ = write_rec(tmp_path, PAYLOADS)
    rec.write_bytes(rec.read_bytes()[:-1])
    with pytest.raises(RecordIOError, match="multiple of 4") as e:
        RecordFile(rec)
    assert_located(e.value, rec)


def test_idx_offset_past_end_and_unaligned(tmp_path):
    rec, idx = write_rec(tmp_path, PAYLOADS)
    size = os.path.getsize(rec)
    idx.write_text(f"0\t0\n1\t{size + 40}\n")
    with pytest.raises(RecordIOError, match="past the end") as e:
        RecordFile(rec, idx)
    assert e.value.path == str(idx) and e.value.offset == size + 40 and e.value.key == 1
    idx.write_text("0\t0\n1\t6\n")
    with pytest.raises(RecordIOError, match="aligned") as e:
        RecordFile(rec, idx)
    assert e.value.offset == 6


def test_empty_idx_with_nonempty_rec(tmp_path):
    rec, idx = write_rec(tmp_path, PAYLOADS)
    idx.write_text("")
    with pytest.raises(RecordIOError, match="index is empty"):
        RecordFile(rec, idx)


def test_idx_subset_still_reads_unlisted_records_in_extent(tmp_path):
    rec, idx = write_rec(tmp_path, PAYLOADS)
    starts = RecordFile(rec).table.start
    idx.write_text(f"4\t{starts[4]}\n0\t{starts[0]}\n")  # unordered subset, as dmlc allows
    rf = RecordFile(rec, idx)
    assert len(rf) == 6
    assert rf.table.extent.tolist() == [0, 0, 0, 0, 1, 1]
    assert rf.table.key.tolist() == [0, -1, -1, -1, 4, -1]
    assert [bytes(rf.payload(i)) for i in range(6)] == PAYLOADS


def test_broken_multipart_sequences(tmp_path):
    p = tmp_path / "m.rec"
    lone_middle = struct.pack("<II", 0xCED7230A, (2 << 29) | 4) + b"abcd"
    p.write_bytes(encode_record(b"ok") + lone_middle)
    with pytest.raises(RecordIOError, match="continuation flag 2") as e:
        RecordFile(p)
    assert e.value.offset == 12
    with pytest.raises(RecordIOError, match="continuation flag 2"):
        read_all_sequential(p)
    cut = encode_record(b"AAAA" + MAGIC_BYTES + b"BBBB")[:12]  # first part only
    p.write_bytes(cut)
    with pytest.raises(RecordIOError, match="last part"):
        RecordFile(p)


def test_label_count_beyond_payload_is_located(tmp_path):
    from recordgpu.headers import check_record_header

    bad = struct.pack("<IfQQ", 50, 0.0, 7, 0) + b"\0" * 8
    rec, idx = write_rec(tmp_path, [PAYLOADS[0], bad])
    rf = RecordFile(rec, idx)
    with pytest.raises(RecordIOError, match="50 float32 labels") as e:
        check_record_header(rf, 1, int(rf.table.length[1]), 50)
    assert e.value.offset == int(rf.table.start[1]) and e.value.key == 1


def test_random_flips_and_truncations_never_crash_or_hang(tmp_path):
    rng = np.random.default_rng(1234)
    payloads = [rng.bytes(int(rng.integers(0, 300))) for _ in range(40)]
    payloads[5] = b"AAAA" + MAGIC_BYTES * 3 + b"tail"
    rec, idx = write_rec(tmp_path, payloads, "r")
    clean = rec.read_bytes()
    clean_idx = idx.read_text()
    for trial in range(300):
        data = bytearray(clean)
        if trial % 3 == 0:
            data = data[: int(rng.integers(0, len(data)))]
        else:
            for _ in range(int(rng.integers(1, 4))):
                data[int(rng.integers(0, len(data)))] ^= 1 << int(rng.integers(0, 8))
        rec.write_bytes(bytes(data))
        for use_idx in (False, True):
            try:
                rf = RecordFile(rec, idx if use_idx else None)
                for i in range(len(rf)):
                    rf.payload(i)
            except RecordIOError as e:
                assert e.path in (str(rec), str(idx))
                assert e.offset is not None or "empty" in str(e)
        try:
            read_all_sequential(rec)
        except RecordIOError as e:
            assert e.offset is not None and str(rec) in str(e)
    rec.write_bytes(clean)
    assert idx.read_text() == clean_idx
    assert [bytes(RecordFile(rec, idx).payload(i)) for i in range(40)] == payloads


def test_many_small_records_use_the_vectorised_scan_and_still_locate_errors(tmp_path):
    from recordgpu import recfile

    rng = np.random.default_rng(7)
    payloads = [rng.bytes(int(rng.integers(0, 40))) for _ in range(recfile._PROBE_PARTS + 900)]
    payloads[4500] = b"AAAA" + MAGIC_BYTES + b"BBBB"  # a multi-part record past the walked prefix
    rec, idx = write_rec(tmp_path, payloads, "many")
    scanned = RecordFile(rec)
    assert [bytes(scanned.payload(i)) for i in range(len(scanned))] == payloads
    assert np.array_equal(scanned.table.start, RecordFile(rec, idx).table.start)
    data = bytearray(rec.read_bytes())
    off = int(scanned.table.start[4700])
    data[off + 1] ^= 0x40
    rec.write_bytes(bytes(data))
    with pytest.raises(RecordIOError, match="bad magic") as e:
        RecordFile(rec)
    assert e.value.offset == off
