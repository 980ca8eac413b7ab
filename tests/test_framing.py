"""RecordIO framing: the spec's worked examples byte for byte (mxnet-1.9.1.md §1.1, §1.2, §1.4)."""
import struct

import numpy as np
import pytest

from recordgpu import recordio
from recordgpu.framing import MAGIC_BYTES as M, MAX_RECORD_BYTES, encode_record
from recordgpu.recfile import RecordFile

WRITES = [b"abc", b"", b"abcd", M, b"XXXX" + M + b"YYYYZ", b"XX" + M + b"YY", M + M + b"Q", b"AAAA" + M]
PARTS = [(0, 0, 3), (12, 0, 0), (20, 0, 4), (32, 1, 0), (40, 3, 0), (48, 1, 4), (60, 3, 5), (76, 0, 8),
         (92, 1, 0), (100, 2, 0), (108, 3, 1), (120, 1, 4), (132, 3, 0)]


def parts_of(data: bytes):
    o, out = 0, []
    while o < len(data):
        _, lrec = struct.unpack("<II", data[o:o + 8])
        n = lrec & ((1 << 29) - 1)
        out.append((o, lrec >> 29, n))
        o += 8 + ((n + 3) & ~3)
    return out


def test_worked_example_writes_the_140_byte_file(tmp_path):
    p = tmp_path / "x.rec"
    w = recordio.MXRecordIO(p, "w")
    for x in WRITES:
        w.write(x)
    w.close()
    data = p.read_bytes()
    assert len(data) == 140
    assert data[:20].hex() == "0a23d7ce" "03000000" "61626300" "0a23d7ce" "00000000"
    assert parts_of(data) == PARTS
    assert b"".join(encode_record(x) for x in WRITES) == data


def test_worked_example_reads_back_sequentially_and_by_table(tmp_path):
    p = tmp_path / "x.rec"
    p.write_bytes(b"".join(encode_record(x) for x in WRITES))
    r = recordio.MXRecordIO(p, "r")
    got = []
    while (x := r.read()) is not None:
        got.append(x)
    assert got == WRITES
    assert r.read() is None
    rf = RecordFile(p)
    assert [bytes(rf.payload(i)) for i in range(len(rf))] == WRITES
    assert rf.table.nparts.tolist() == [1, 1, 1, 2, 2, 1, 3, 2]
    assert rf.table.length.tolist() == [len(x) for x in WRITES]


def test_unaligned_magic_is_not_split():
    payload = b"X" + M + b"YYY"
    assert parts_of(encode_record(payload)) == [(0, 0, 8)]


def test_idx_text_matches_mxnet(tmp_path):
    w = recordio.MXIndexedRecordIO(tmp_path / "a.idx", tmp_path / "a.rec", "w")
    for k, n in [(5, 4), (3, 8), (10, 12)]:
        w.write_idx(k, b"z" * n)
    w.close()
    assert (tmp_path / "a.idx").read_text() == "5\t0\n3\t12\n10\t28\n"


def test_pack_examples():
    H = recordio.IRHeader
    assert recordio.pack(H(0, 3.5, 7, 0), b"IMG").hex() == (
        "00000000" "00006040" "0700000000000000" "0000000000000000" "494d47")
    assert recordio.pack(H(9, 3.5, 7, 1), b"IMG")[:4] == b"\0\0\0\0"
    assert recordio.pack(H(0, [1, 2.5, -1], 7, 0), b"IMG").hex() == (
        "03000000" "00000000" "0700000000000000" "0000000000000000"
        "0000803f" "00002040" "000080bf" "494d47")
    # an array label of size 1 gives flag 1, numpy scalars count as scalars
    assert recordio.pack(H(0, np.array([2.0]), 1, 0), b"")[:4] == b"\x01\0\0\0"
    assert recordio.pack(H(5, np.float32(2.0), 1, 0), b"")[:4] == b"\0\0\0\0"
    with pytest.raises(struct.error):
        recordio.pack(H(0, 1.0, -1, 0), b"")


def test_unpack_roundtrip_and_errors():
    h, s = recordio.unpack(recordio.pack((0, [1, 2.5, -1], 7, 0), b"IMG"))
    assert h.flag == 3 and h.id == 7 and s == b"IMG"
    assert h.label.dtype == np.float32 and h.label.tolist() == [1, 2.5, -1]
    h, s = recordio.unpack(recordio.pack((0, 4.0, 9, 0), b""))
    assert isinstance(h.label, float) and h.label == 4.0 and s == b""
    assert repr(recordio.IRHeader(0, 1.0, 2, 0)) == "HEADER(flag=0, label=1.0, id=2, id2=0)"
    with pytest.raises(struct.error):
        recordio.unpack(b"short")
    with pytest.raises(ValueError):
        recordio.unpack(struct.pack("<IfQQ", 3, 0, 1, 0) + b"\0" * 8)


def test_oversized_record_refused(monkeypatch):
    class Big(bytes):
        def __len__(self):
            return MAX_RECORD_BYTES

    with pytest.raises(ValueError, match="2\\^29"):
        encode_record(Big(b""))
