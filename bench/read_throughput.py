"""RecordIO read throughput: recordgpu's mmap reader vs a plain file read of the same bytes vs ``MXRecordIO``.

``python -m bench read [--size-gb 1.0] [--data bench/data]`` generates (or reuses) a ``.rec`` + ``.idx`` of
random payloads of realistic image-record sizes, warms the page cache, then times, interleaved over
``--repeat`` rounds:

* plain read: large sequential ``readinto`` of the whole file (the bandwidth ceiling);
* ``RecordFile(rec)``: scan the file for the record table, then every payload view in order;
* ``RecordFile(rec, idx)``: table from the ``.idx``, payloads in order and in a shuffled order;
* ``MXRecordIO.read()`` in order and ``MXIndexedRecordIO.read_idx()`` in the shuffled order.

Every method touches what it reads the same way (``--touch page``: one byte per 4 KiB page plus the
last byte, so mmap'd pages really get faulted in; ``--touch sum``: every byte summed) and opens its
files inside the timed region. Run as ``python -m bench read`` or ``python -m bench.read_throughput``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from recordgpu.recfile import RecordFile
from recordgpu.recordio import IRHeader, MXIndexedRecordIO, MXRecordIO, pack

from .common import fmt_num, format_table, machine_summary, write_json

PAGE = 4096
CHUNK = 16 << 20  # plain-read buffer
MIN_PAYLOAD, MAX_PAYLOAD = 50_000, 200_000
TARGET_PCT = 80.0
_DATA_VERSION = 1


# --- data ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReadDataset:
    rec: Path
    idx: Path
    records: int
    file_bytes: int


def make_read_dataset(data_dir: str | os.PathLike, size_gb: float, seed: int = 0,
                      log: Callable[[str], None] = print) -> ReadDataset:
    """Create (or reuse, when its manifest matches) ``read_<size>gb.rec/.idx`` in ``data_dir``.

    Payloads are an IRHeader plus ``MIN_PAYLOAD..MAX_PAYLOAD`` random bytes (incompressible, like
    JPEG data), written with ``recordgpu.recordio.MXIndexedRecordIO``; about ``size_gb`` GB in all.
    """
    if size_gb <= 0:
        raise ValueError(f"--size-gb must be positive, got {size_gb}")
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    stem = f"read_{size_gb:g}gb".replace(".", "p")
    rec, idx, manifest = (data_dir / (stem + ext) for ext in (".rec", ".idx", ".json"))
    want = {"version": _DATA_VERSION, "size_gb": size_gb, "seed": seed,
            "payload_bytes": [MIN_PAYLOAD, MAX_PAYLOAD]}
    if manifest.exists() and rec.exists() and idx.exists():
        try:
            have = json.loads(manifest.read_text())
        except ValueError:
            have = {}
        if {k: have.get(k) for k in want} == want and have.get("file_bytes") == rec.stat().st_size:
            return ReadDataset(rec, idx, int(have["records"]), int(have["file_bytes"]))
    log(f"generating {rec} (~{size_gb:g} GB of {MIN_PAYLOAD // 1000}-{MAX_PAYLOAD // 1000} KB records) ...")
    t0 = time.perf_counter()
    target = int(size_gb * 1e9)
    rng = np.random.default_rng(seed)
    tmp_rec, tmp_idx = rec.with_name(rec.name + ".tmp"), idx.with_name(idx.name + ".tmp")
    writer = MXIndexedRecordIO(tmp_idx, tmp_rec, "w")
    n = 0
    try:
        while writer.tell() < target:
            body = rng.bytes(int(rng.integers(MIN_PAYLOAD, MAX_PAYLOAD + 1)))
            writer.write_idx(n, pack(IRHeader(0, float(n % 1000), n, 0), body))
            n += 1
    finally:
        writer.close()
    os.replace(tmp_rec, rec)
    os.replace(tmp_idx, idx)
    size = rec.stat().st_size
    manifest.write_text(json.dumps({**want, "records": n, "file_bytes": size}, indent=2) + "\n")
    log(f"  {n} records, {size / 1e6:,.0f} MB in {time.perf_counter() - t0:.1f} s")
    return ReadDataset(rec, idx, n, size)


# --- touching -----------------------------------------------------------------------------------------
def touch_pages(buf) -> int:
    """Read one byte per 4 KiB page and the last byte (faults in every page of an mmap'd view)."""
    a = np.frombuffer(buf, np.uint8)
    if a.size == 0:
        return 0
    return int(a[::PAGE].sum()) + int(a[-1])


def touch_sum(buf) -> int:
    """Read every byte."""
    return int(np.frombuffer(buf, np.uint8).sum())


TOUCHES = {"page": touch_pages, "sum": touch_sum}
TOUCH_HELP = {"page": "one byte per 4 KiB page + the last byte (the bytes are made available, mmap pages "
                      "faulted in)",
              "sum": "every byte summed with numpy (a consumer that reads all of it, like a decoder)"}


def warm_page_cache(path: Path) -> None:
    """Read the whole file once so that every method starts from a warm page cache."""
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(CHUNK)
        while f.readinto(buf):
            pass


# --- methods: each returns (payload bytes delivered, records delivered) -------------------------------
def plain_read(ds: ReadDataset, touch, order) -> tuple[int, int]:
    total = 0
    buf = bytearray(CHUNK)
    mv = memoryview(buf)
    with open(ds.rec, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            touch(mv[:n])
            total += n
    return total, ds.records


def _iterate_recordfile(rf: RecordFile, touch, order: Iterable[int]) -> tuple[int, int]:
    total = nrec = 0
    for i in order:
        p = rf.payload(i)
        touch(p)
        total += len(p)
        nrec += 1
    return total, nrec


def recfile_scan_seq(ds: ReadDataset, touch, order) -> tuple[int, int]:
    with RecordFile(ds.rec) as rf:
        return _iterate_recordfile(rf, touch, range(len(rf)))


def recfile_idx_seq(ds: ReadDataset, touch, order) -> tuple[int, int]:
    with RecordFile(ds.rec, ds.idx) as rf:
        return _iterate_recordfile(rf, touch, range(len(rf)))


def recfile_idx_shuffled(ds: ReadDataset, touch, order) -> tuple[int, int]:
    with RecordFile(ds.rec, ds.idx) as rf:
        if len(rf) != len(order):
            raise RuntimeError(f"{ds.idx} lists {len(rf)} records, expected {len(order)}")
        return _iterate_recordfile(rf, touch, order)


def mxrecordio_seq(ds: ReadDataset, touch, order) -> tuple[int, int]:
    total = nrec = 0
    r = MXRecordIO(ds.rec, "r")
    try:
        while (p := r.read()) is not None:
            touch(p)
            total += len(p)
            nrec += 1
    finally:
        r.close()
    return total, nrec


def mxindexed_shuffled(ds: ReadDataset, touch, order) -> tuple[int, int]:
    total = nrec = 0
    r = MXIndexedRecordIO(ds.idx, ds.rec, "r")
    try:
        keys = r.keys
        for i in order:
            p = r.read_idx(keys[i])
            touch(p)
            total += len(p)
            nrec += 1
    finally:
        r.close()
    return total, nrec


METHODS: list[tuple[str, Callable]] = [
    ("plain read (readinto 16 MiB)", plain_read),
    ("recordgpu RecordFile(rec) sequential, incl. scan", recfile_scan_seq),
    ("recordgpu RecordFile(rec, idx) sequential", recfile_idx_seq),
    ("recordgpu RecordFile(rec, idx) shuffled", recfile_idx_shuffled),
    ("MXRecordIO.read() sequential", mxrecordio_seq),
    ("MXIndexedRecordIO.read_idx() shuffled", mxindexed_shuffled),
]


@dataclass
class MethodResult:
    method: str
    seconds: list[float] = field(default_factory=list)
    bytes: int = 0
    records: int = 0

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    def mb_s(self, seconds: float | None = None) -> float:
        return self.bytes / 1e6 / (seconds if seconds is not None else self.median_s)

    def records_s(self) -> float:
        return self.records / self.median_s


def measure(ds: ReadDataset, repeat: int = 5, touch: str = "page", seed: int = 0) -> list[MethodResult]:
    """Time every method ``repeat`` times, interleaved round-robin, after warming the page cache."""
    if repeat < 1:
        raise ValueError(f"--repeat must be at least 1, got {repeat}")
    touch_fn = TOUCHES[touch]
    order = np.random.default_rng(seed).permutation(ds.records).tolist()
    warm_page_cache(ds.rec)
    results = [MethodResult(name) for name, _ in METHODS]
    for rnd in range(repeat):
        for res, (name, fn) in zip(results, METHODS):
            t0 = time.perf_counter()
            nbytes, nrec = fn(ds, touch_fn, order)
            dt = time.perf_counter() - t0
            if nrec != ds.records:
                raise RuntimeError(f"{name} read {nrec} records, expected {ds.records}")
            res.seconds.append(dt)
            res.bytes, res.records = nbytes, nrec
    return results


def render(ds: ReadDataset, by_touch: dict[str, list[MethodResult]]) -> str:
    """The report: machine, file, then one table per touch mode and the target verdicts."""
    nrounds = len(next(iter(by_touch.values()))[0].seconds)
    lines = [
        "RecordIO read throughput (page cache warm)",
        f"machine: {machine_summary()}",
        f"file: {ds.rec} ({ds.file_bytes / 1e6:,.0f} MB, {ds.records:,} records of "
        f"{MIN_PAYLOAD // 1000}-{MAX_PAYLOAD // 1000} KB); MB/s = median of {nrounds} runs; "
        "files are opened inside the timed region",
    ]
    for touch, results in by_touch.items():
        plain = results[0].mb_s()
        rows = [[r.method, fmt_num(r.mb_s()), fmt_num(r.mb_s(min(r.seconds))), fmt_num(r.records_s()),
                 f"{100 * r.mb_s() / plain:.0f}%"] for r in results]
        lines += ["", f"touch={touch}: {TOUCH_HELP[touch]}",
                  format_table(["method", "MB/s", "best MB/s", "records/s", "% of plain"], rows,
                               right=[False, True, True, True, True])]
    lines.append("")
    for touch, results in by_touch.items():
        plain = results[0].mb_s()
        for r in results[1:4]:
            pct = 100 * r.mb_s() / plain
            verdict = "met" if pct >= TARGET_PCT else "NOT met"
            lines.append(f"target >= {TARGET_PCT:.0f}% of plain read, touch={touch}: {r.method}: "
                         f"{pct:.0f}% ({verdict})")
    return "\n".join(lines)


def _touch_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in names if t not in TOUCHES]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"--touch takes a comma list of {', '.join(TOUCHES)}; got {text!r}")
    return names


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size-gb", type=float, default=1.0, help="size of the generated .rec (default 1.0)")
    p.add_argument("--data", default="bench/data", help="where bench data lives (default bench/data)")
    p.add_argument("--repeat", type=int, default=5, help="timed rounds per method (default 5)")
    p.add_argument("--touch", type=_touch_list, default=["page", "sum"],
                   help="how each method reads what it got, comma list: page (one byte per 4 KiB page), "
                        "sum (every byte); default page,sum")
    p.add_argument("--seed", type=int, default=0, help="data and shuffle seed")
    p.add_argument("--json", help="also write the results to this JSON file")


def run(args: argparse.Namespace) -> dict:
    """Run part A and print its tables; returns the results as a dict."""
    ds = make_read_dataset(args.data, args.size_gb, args.seed)
    by_touch: dict[str, list[MethodResult]] = {}
    for touch in args.touch:
        print(f"measuring {len(METHODS)} methods x {args.repeat} rounds, touch={touch} ...", flush=True)
        by_touch[touch] = measure(ds, args.repeat, touch, args.seed)
    print(render(ds, by_touch), flush=True)
    out = {"bench": "read", "file": str(ds.rec), "file_bytes": ds.file_bytes, "records": ds.records,
           "results": [{"touch": touch, "method": r.method, "seconds": r.seconds, "mb_s": r.mb_s(),
                        "records_s": r.records_s(), "pct_of_plain": 100 * r.mb_s() / results[0].mb_s()}
                       for touch, results in by_touch.items() for r in results]}
    if args.json:
        write_json(args.json, out)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.read_throughput", description=__doc__.splitlines()[0])
    add_arguments(p)
    run(p.parse_args(argv))


if __name__ == "__main__":
    main()
