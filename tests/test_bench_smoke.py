"""Smoke test of the benchmark harness: each entry runs on a tiny generated dataset and prints a
well-formed table with positive numbers. No timing is asserted (speed lives in ``python -m bench``)."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

# bench/ is not an installed package: make the checkout importable under a bare `pytest` too
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.__main__ import main as bench_main  # noqa: E402
from bench.datasets import build_ct16, build_photos  # noqa: E402
from bench.read_throughput import METHODS  # noqa: E402
from recordgpu.recfile import RecordFile  # noqa: E402
from recordgpu.recordio import unpack_img  # noqa: E402

NUM = re.compile(r"^[\d,]+(\.\d+)?%?$")


def _table(out: str, first_header: str) -> tuple[list[str], list[list[str]]]:
    """The header cells and data rows of the table whose header line starts with ``first_header``."""
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(first_header + " "))
    rule = lines[start + 1]
    assert set(rule) <= {"-", " "} and "-" in rule, f"no rule under the header:\n{out}"
    spans = [m.span() for m in re.finditer(r"-+", rule)]
    header = [lines[start][a:b].strip() for a, b in spans]
    rows = []
    for ln in lines[start + 2:]:
        if not ln.strip():
            break
        rows.append([ln[a:b].strip() if i < len(spans) - 1 else ln[a:].strip() for i, (a, b) in enumerate(spans)])
    return header, rows


def _positive(cell: str) -> float:
    assert NUM.match(cell), f"not a number: {cell!r}"
    v = float(cell.rstrip("%").replace(",", ""))
    assert v > 0, cell
    return v


def _check_rate_cells(row: list[str]) -> None:
    """img/s, its min-max range over runs, % of decode, CPU ms/img, start-up and peak RSS are positive numbers."""
    rate = _positive(row[2])
    lo, hi = (_positive(c) for c in row[3].split("-"))
    assert lo <= rate <= hi
    for cell in row[4:8]:
        _positive(cell)


def test_read_bench_table(tmp_path, capsys):
    js = tmp_path / "read.json"
    assert bench_main(["read", "--size-gb", "0.003", "--data", str(tmp_path), "--repeat", "1",
                       "--json", str(js)]) == 0
    out = capsys.readouterr().out
    machine = next(ln for ln in out.splitlines() if ln.startswith("machine:"))
    assert re.search(r"\d+ (of \d+ )?cores", machine), machine
    for touch in ("page", "sum"):
        assert f"touch={touch}:" in out
    header, rows = _table(out, "method")
    assert header == ["method", "MB/s", "best MB/s", "records/s", "% of plain"]
    assert [r[0] for r in rows] == [name for name, _ in METHODS]
    for r in rows:
        for cell in r[1:]:
            _positive(cell)
    assert rows[0][4] == "100%"
    doc = json.loads(js.read_text())
    assert doc["records"] > 1
    assert len(doc["results"]) == 2 * len(METHODS)
    assert all(r["mb_s"] > 0 and r["records_s"] > 0 for r in doc["results"])
    # the generated file is reused, not rewritten, on a second run
    rec = next(tmp_path.glob("read_*.rec"))
    mtime = rec.stat().st_mtime_ns
    bench_main(["read", "--size-gb", "0.003", "--data", str(tmp_path), "--repeat", "1", "--touch", "page"])
    assert rec.stat().st_mtime_ns == mtime
    assert "generating" not in capsys.readouterr().out


def test_iter_bench_table(tmp_path, capsys):
    js = tmp_path / "iter.json"
    assert bench_main(["iter", "--data", str(tmp_path), "--peers", "none", "--n-photos", "12", "--n-gray", "4",
                       "--gray-size", "128", "--batch-size", "4", "--epochs", "2", "--photo-source", "synthetic",
                       "--rounds", "1", "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "machine:" in out and "threads=2" in out
    header, rows = _table(out, "setting")
    assert header == ["setting", "loader", "img/s", "range", "% of decode", "CPU ms/img", "startup s",
                      "peak RssAnon MB", "output", "version / note"]
    assert [r[0] for r in rows] == ["eval"] * 2 + ["train"] * 2 + ["gray16"] * 2
    by = {(r[0], r[1]): r for r in rows}
    for setting in ("eval", "train", "gray16"):
        dec = by[(setting, "decode only (cv2.imdecode)")]
        _check_rate_cells(dec)
        assert dec[4] == "100%"
        rg = by[(setting, "recordgpu ImageRecordIter")]
        if rg[2] == "-":  # the iterator is not there yet: reported as skipped, not as an error
            assert rg[-1].startswith("skipped:"), rg
        else:
            _check_rate_cells(rg)
            expect = "4x1x128x128 float32" if setting == "gray16" else "4x3x224x224 float32"
            assert rg[8] == expect
    doc = json.loads(js.read_text())
    assert {r["setting"] for r in doc["results"]} == {"eval", "train", "gray16"}
    for r in doc["results"]:
        res = r["result"]
        assert "error" not in res, res
        if "img_s" in res:
            n_records = 4 if r["setting"] == "gray16" else 12
            assert res["images"] >= 2 * n_records  # two epochs delivered
            assert res["rss"]["peak_mb"] > 0 and len(res["rss"]["epoch_peak_mb"]) == 2


def test_all_runs_both_benches(tmp_path, capsys):
    js = tmp_path / "all.json"
    assert bench_main(["all", "--data", str(tmp_path), "--size-gb", "0.002", "--repeat", "1", "--touch", "page",
                       "--peers", "none", "--settings", "gray16", "--n-gray", "3", "--gray-size", "64",
                       "--batch-size", "2", "--epochs", "1", "--rounds", "2", "--json", str(js)]) == 0
    out = capsys.readouterr().out
    _, read_rows = _table(out, "method")
    _, iter_rows = _table(out, "setting")
    assert len(read_rows) == len(METHODS) and [r[0] for r in iter_rows] == ["gray16", "gray16"]
    doc = json.loads(js.read_text())
    assert doc["read"]["bench"] == "read" and doc["iter"]["bench"] == "iter"
    assert all(r["mb_s"] > 0 for r in doc["read"]["results"])
    decode = next(r for r in doc["iter"]["results"] if r["loader"] == "decode")
    assert len(decode["runs"]) == 2 and all(run["img_s"] > 0 for run in decode["runs"])


def test_unknown_peer_is_rejected(capsys):
    with pytest.raises(SystemExit):
        bench_main(["iter", "--peers", "tensorflow"])
    assert "unknown peer" in capsys.readouterr().err


def test_generated_datasets_decode(tmp_path):
    photos = build_photos(tmp_path, 6, source="synthetic", log=lambda s: None)
    ct = build_ct16(tmp_path, 3, size=64, log=lambda s: None)
    with RecordFile(photos.rec, photos.idx) as rf:
        assert len(rf) == 6
        for i in range(6):
            _, img = unpack_img(bytes(rf.payload(i)), 1)
            assert img.dtype == np.uint8 and 300 <= img.shape[0] <= 500 and 400 <= img.shape[1] <= 640
    with RecordFile(ct.rec, ct.idx) as rf:
        assert len(rf) == 3
        _, img = unpack_img(bytes(rf.payload(0)), -1)
        assert img.dtype == np.uint16 and img.shape == (64, 64)
        assert 255 < int(img.max()) <= 4095  # 12-bit content, beyond 8 bits


def test_iter_bench_gpu_mode(tmp_path, capsys):
    """``--device gpu`` runs the GPU loaders; on a machine without a CUDA GPU (or CuPy) each one reports
    itself skipped with the reason, and the table still renders."""
    assert bench_main(["iter", "--device", "gpu", "--data", str(tmp_path), "--peers", "dali,mxnet",
                       "--no-install", "--settings", "eval,gray16", "--n-photos", "4", "--n-gray", "2",
                       "--gray-size", "64", "--batch-size", "2", "--epochs", "1", "--rounds", "1",
                       "--photo-source", "synthetic"]) == 0
    out = capsys.readouterr().out
    assert "mxnet: has no GPU pipeline to compare; left out" in out
    assert out.count("Iterator throughput on the GPU") == 1
    _, rows = _table(out, "setting")
    assert {r[1] for r in rows} == {"decode only (nvImageCodec)", "recordgpu ImageRecordIter (GPU)",
                                    "DALI GPU pipeline (mixed)"}
    for r in rows:
        if r[2] == "-":
            assert r[-1].startswith("skipped:") and ("GPU" in r[-1] or "CuPy" in r[-1] or ".venv-dali" in r[-1]
                                                     or "nvImageCodec" in r[-1]), r
        else:
            _check_rate_cells(r)


def test_dali_gpu_pipeline_is_defined_for_every_setting():
    """The DALI peer of the GPU bench: mixed decoders on GPU 0 for each setting (defined, not built: building
    needs a GPU)."""
    pytest.importorskip("nvidia.dali")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "peers"))
    import dali_runner
    from bench.iterators import SETTINGS

    for name, st in SETTINGS.items():
        cfg = {"setting": {**st, "name": name}, "batch_size": 4, "threads": 1, "rec": "x.rec", "idx": "x.idx",
               "device": "gpu"}
        assert dali_runner.build(cfg).device_id == 0
        assert dali_runner.build({**cfg, "device": "cpu"}).device_id is None


def test_iter_bench_compares_with_the_fast_path_off(tmp_path, capsys):
    js = tmp_path / "iter.json"
    assert bench_main(["iter", "--data", str(tmp_path), "--peers", "opencv", "--settings", "eval", "--n-photos", "8",
                       "--batch-size", "4", "--epochs", "1", "--photo-source", "synthetic", "--rounds", "1",
                       "--json", str(js)]) == 0
    _, rows = _table(capsys.readouterr().out, "setting")
    by = {r[1]: r for r in rows}
    assert set(by) == {"decode only (cv2.imdecode)", "recordgpu ImageRecordIter", "recordgpu, fast path off"}
    assert by["recordgpu, fast path off"][-1].endswith("CPU fast path off: RECORDGPU_NATIVE=0")
    for r in json.loads(js.read_text())["results"]:
        assert "img_s" in r["result"], r
