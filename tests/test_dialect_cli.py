"""Dialect detection and the `recordgpu info` / `recordgpu index` commands."""
import subprocess
import sys

import cv2
import numpy as np

from conftest import oracle_path
from recordgpu import recordio
from recordgpu.cli import main
from recordgpu.dialect import detect_dialect
from recordgpu.recfile import RecordFile


def jpeg(v: int) -> bytes:
    return cv2.imencode(".jpg", np.full((8, 10, 3), v, np.uint8))[1].tobytes()


def make_insightface(tmp_path):
    """Layout of insightface rec_builder: images keys 1..n, identity records after, header (key 0) last."""
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    w = recordio.MXIndexedRecordIO(idx, rec, "w")
    key = 1
    ranges = []
    for ident, count in enumerate([3, 2]):
        start = key
        for _ in range(count):
            w.write_idx(key, recordio.pack((0, float(ident), key, 0), jpeg(10 * key)))
            key += 1
        ranges.append((start, key))
    first_ident = key
    for r in ranges:
        w.write_idx(key, recordio.pack((0, list(r), key, 0), b""))
        key += 1
    w.write_idx(0, recordio.pack((0, [first_ident, key], 0, 0), b""))
    w.close()
    return rec, idx, ranges, first_ident


def test_insightface_dialect(tmp_path):
    rec, idx, ranges, first = make_insightface(tmp_path)
    d = detect_dialect(RecordFile(rec, idx))
    assert d.kind == "insightface"
    assert d.id2range == {first: ranges[0], first + 1: ranges[1]}
    rf = RecordFile(rec, idx)
    assert sorted(rf.table.key[d.image_records].tolist()) == [1, 2, 3, 4, 5]
    # without the .idx, the header ids identify the records
    assert detect_dialect(RecordFile(rec)).kind == "insightface"


def test_plain_multilabel_detection_raw(tmp_path):
    assert detect_dialect(RecordFile(oracle_path("color8.rec"))).kind == "plain"
    d = detect_dialect(RecordFile(oracle_path("multilabel.rec")))
    assert d.kind == "multilabel" and d.label_widths == (3,)
    rec = tmp_path / "det.rec"
    w = recordio.MXRecordIO(rec, "w")
    for i in range(3):  # header_len 2, label_width 5, i+1 boxes
        lab = [2, 5] + [v for b in range(i + 1) for v in (b, 0.1, 0.2, 0.3, 0.4)]
        w.write(recordio.pack((0, lab, i, 0), jpeg(i)))
    w.close()
    d = detect_dialect(RecordFile(rec))
    assert (d.kind, d.header_len, d.label_width) == ("detection", 2, 5)
    raw = tmp_path / "raw.rec"
    w = recordio.MXRecordIO(raw, "w")
    w.write(b"protobuf!")
    w.close()
    assert detect_dialect(RecordFile(raw)).kind == "raw"


def test_info_command(tmp_path, capsys):
    assert main(["info", oracle_path("gray16.rec")]) == 0
    out = capsys.readouterr().out
    assert "records:     8" in out and "uint16 x8" in out and "png x8" in out and "plain" in out
    rec, idx, _, _ = make_insightface(tmp_path)
    assert main(["info", str(rec), "--idx", str(idx)]) == 0
    assert "insightface (5 image records of 8), 2 identities" in capsys.readouterr().out


def test_info_reports_corruption(tmp_path, capsys):
    data = bytearray(open(oracle_path("color8.rec"), "rb").read())
    data[RecordFile(oracle_path("color8.rec")).table.start[2]] ^= 1
    bad = tmp_path / "bad.rec"
    bad.write_bytes(bytes(data))
    assert main(["info", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "problems:    1" in out and "byte offset" in out


def test_index_command_rebuilds_mxnet_idx(tmp_path):
    rec = tmp_path / "c.rec"
    rec.write_bytes(open(oracle_path("multipart.rec"), "rb").read())
    assert main(["index", str(rec)]) == 0
    assert (tmp_path / "c.idx").read_text() == open(oracle_path("multipart.idx")).read()
    assert main(["index", str(rec)]) == 1  # refuses to overwrite
    assert main(["index", str(rec), "--force", "--keys", "seq"]) == 0


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "recordgpu", "info", oracle_path("png8.rec")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "records:     7" in r.stdout


def test_info_progress_only_on_a_terminal_or_when_forced(capsys, monkeypatch):
    monkeypatch.delenv("RECORDGPU_PROGRESS", raising=False)
    assert main(["info", oracle_path("color8.rec")]) == 0
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RECORDGPU_PROGRESS", "1")
    assert main(["info", oracle_path("color8.rec")]) == 0
    assert "11/11" in capsys.readouterr().err
