"""Iterator throughput: recordgpu's ImageRecordIter vs DALI's CPU pipeline vs MXNet vs decode only.

``python -m bench iter [--threads 2] [--peers dali,mxnet] [--epochs 3] [--rounds 3]`` builds (or reuses) the datasets
of :mod:`bench.datasets` and runs three settings with the same thread count for every loader:

* **eval**: ``resize=256``, centre crop to ``(3, 224, 224)``, mean/std, float32, batch 64 (photos);
* **train**: ``random_resized_crop`` (area 0.08-1, aspect 3/4-4/3), ``rand_mirror``, mean/std,
  shuffled (photos);
* **gray16**: ``(1, 512, 512)`` from 16-bit PNGs to float32 with mean/std (CT-like slices).

Each loader runs ``--rounds`` times (rounds interleaved across loaders), each run in its own subprocess
(see :mod:`bench.peers`) for ``--epochs`` epochs; img/s counts from the end of the first batch to the
end of the last (start-up is reported separately), and the table shows the median run. For
recordgpu the peak anonymous RSS (``RssAnon``, sampled every 10 ms) is checked against
``(prefetch_buffer + 2) x batch bytes + 300 MB`` and for flatness across epochs (``epoch_growth``).
"""
from __future__ import annotations

import argparse
import math
import statistics
from typing import Callable

from . import datasets
from .common import fmt_num, format_table, machine_summary, write_json
from .peers import DEVICE_LOADERS, LOADERS, PEER_CHOICES, PEERS, LoaderUnavailable, interpreter, run_loader

IMAGENET_MEAN = [123.68, 116.779, 103.939]
IMAGENET_STD = [58.393, 57.12, 57.375]
CT_MEAN, CT_STD = [1024.0], [512.0]  # 12-bit CT-like values (HU + 1024)
RSS_ALLOWANCE_MB = 300.0
# Growth of the per-epoch RSS peak still called flat: the prefetch queue's fill level at the moment of the
# peak moves it by whole batches, so one batch (or this much, if more) is noise rather than a leak.
FLAT_TOLERANCE_MB = 16.0

# Loader-neutral descriptions of the settings; MXNet-style kwargs are derived by iter_kwargs().
SETTINGS: dict[str, dict] = {
    "eval": {"dataset": "photos", "kind": "rgb", "data_shape": [3, 224, 224], "resize": 256,
             "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "shuffle": False},
    "train": {"dataset": "photos", "kind": "rgb", "data_shape": [3, 224, 224],
              "random_resized_crop": {"area": [0.08, 1.0], "aspect": [3 / 4, 4 / 3]}, "rand_mirror": True,
              "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "shuffle": True},
    "gray16": {"dataset": "ct16", "kind": "gray16", "data_shape": [1, 512, 512],
               "mean": CT_MEAN, "std": CT_STD, "shuffle": False},
}


def iter_kwargs(setting: dict, rec: str, idx: str, batch_size: int, threads: int, seed: int = 0) -> dict:
    """The ``mx.io.ImageRecordIter`` keyword arguments for ``setting`` (used for recordgpu and MXNet)."""
    kw: dict = {"path_imgrec": rec, "path_imgidx": idx, "data_shape": tuple(setting["data_shape"]),
                "batch_size": batch_size, "preprocess_threads": threads, "shuffle": setting["shuffle"],
                "seed": seed}
    if "resize" in setting:
        kw["resize"] = setting["resize"]
    rrc = setting.get("random_resized_crop")
    if rrc:
        kw.update(random_resized_crop=True, min_random_area=rrc["area"][0], max_random_area=rrc["area"][1],
                  min_aspect_ratio=rrc["aspect"][0], max_aspect_ratio=rrc["aspect"][1])
    if setting.get("rand_mirror"):
        kw["rand_mirror"] = True
    for ch, m, s in zip("rgb", setting["mean"], setting["std"]):
        kw[f"mean_{ch}"] = m
        kw[f"std_{ch}"] = s
    return kw


def batch_bytes(setting: dict, batch_size: int) -> int:
    """Bytes of one float32 data batch."""
    return batch_size * math.prod(setting["data_shape"]) * 4


def epoch_growth(peaks: list[float]) -> float | None:
    """Growth of the per-epoch RSS peak, from the 2nd epoch on when there are 3 or more (the 1st warms
    up thread pools and allocator arenas), else from the 1st; None with fewer than 2 epochs."""
    if len(peaks) < 2:
        return None
    return peaks[-1] - (peaks[1] if len(peaks) >= 3 else peaks[0])


def rss_verdict(setting: dict, batch_size: int, res: dict) -> str:
    """Peak RssAnon against ``(prefetch_buffer + 2) x batch + 300 MB`` and the per-epoch peaks' flatness."""
    rss = res.get("rss") or {}
    peak = rss.get("peak_mb")
    if peak is None:
        return "no RSS samples"
    pb = int(res.get("prefetch_buffer", 4))
    bmb = batch_bytes(setting, batch_size) / 2**20
    bound = (pb + 2) * bmb + RSS_ALLOWANCE_MB
    ok = "ok" if peak <= bound else "OVER"
    peaks = rss.get("epoch_peak_mb") or []
    growth = epoch_growth(peaks)
    if growth is None:
        flat = "flatness needs --epochs >= 2"
    else:
        word = "flat" if growth <= max(FLAT_TOLERANCE_MB, bmb) else "GROWING"
        since = "the 2nd" if len(peaks) >= 3 else "the 1st"
        flat = (f"{word} ({growth:+.0f} MB from {since} to the last epoch; epoch peaks "
                + ", ".join(f"{p:.0f}" for p in peaks) + " MB)")
    return (f"peak RssAnon {peak:.0f} MB vs bound ({pb} + 2) x {bmb:.1f} MB + {RSS_ALLOWANCE_MB:.0f} MB = "
            f"{bound:.0f} MB: {ok}; {flat}")


def combine(runs: list[dict]) -> dict:
    """One result from a loader's runs: median img/s and start-up, the worst memory, failures noted."""
    ok = [r for r in runs if "img_s" in r]
    if not ok:
        return runs[0]
    rates = sorted(r["img_s"] for r in ok)
    out = dict(ok[0])
    out["img_s"] = statistics.median(rates)
    out["img_s_range"] = [rates[0], rates[-1]]
    out["startup_s"] = statistics.median(r["startup_s"] for r in ok)
    cpus = [r["cpu_ms_per_img"] for r in ok if r.get("cpu_ms_per_img") is not None]
    out["cpu_ms_per_img"] = statistics.median(cpus) if cpus else None

    worst = max(ok, key=lambda r: epoch_growth(r.get("rss", {}).get("epoch_peak_mb") or []) or 0.0)
    out["rss"] = {**worst.get("rss", {}), "peak_mb": max(r.get("rss", {}).get("peak_mb", 0.0) for r in ok)}
    failed = [r for r in runs if "img_s" not in r]
    if failed:
        why = failed[0].get("error") or failed[0].get("skipped")
        out["note"] = "; ".join(x for x in (out.get("note"), f"{len(failed)} of {len(runs)} runs failed: {why}")
                                if x)
    return out


def pct_of_decode(entry: dict, decode: dict | None) -> float | None:
    """Median over rounds of a run's img/s as a % of the same round's decode-only run (rounds pair up
    runs made close in time, which cancels much of a shared machine's drift)."""
    if decode is None:
        return None
    pairs = [(a["img_s"], b["img_s"]) for a, b in zip(entry.get("runs", []), decode.get("runs", []))
             if "img_s" in a and b.get("img_s")]
    if pairs:
        return statistics.median(100 * a / b for a, b in pairs)
    a, b = entry["result"].get("img_s"), decode["result"].get("img_s")
    return 100 * a / b if a and b else None


def _output_desc(res: dict) -> str:
    if res.get("output"):
        return res["output"]
    shape = res.get("batch_shape")
    return ("x".join(str(d) for d in shape) + " " + res.get("batch_dtype", "")).strip() if shape else ""


def render(results: list[dict], dsets: dict, threads: int, epochs: int, batch_size: int, rounds: int = 1,
           device: str = "cpu") -> str:
    """The side-by-side table (one row per setting and loader) plus recordgpu's memory check."""
    floor_name, rg_name, _ = DEVICE_LOADERS[device]
    rows = []
    for r in results:
        res = r["result"]
        floor = next((x for x in results if x["setting"] == r["setting"] and x["loader"] == floor_name), None)
        if "img_s" in res:
            rss = res.get("rss") or {}
            pct = pct_of_decode(r, floor)
            pct = f"{pct:.0f}%" if pct is not None else "-"
            lo, hi = res.get("img_s_range", [res["img_s"]] * 2)
            cpu = res.get("cpu_ms_per_img")
            rows.append([r["setting"], LOADERS[r["loader"]].label, fmt_num(res["img_s"]),
                         f"{fmt_num(lo)}-{fmt_num(hi)}", pct, "-" if cpu is None else f"{cpu:.2f}",
                         f"{res['startup_s']:.3f}", fmt_num(rss.get("peak_mb")), _output_desc(res),
                         "; ".join(x for x in (res.get("version"), res.get("note")) if x)])
        else:
            why = res.get("skipped") or res.get("error", "")
            status = "skipped" if "skipped" in res else "ERROR"
            rows.append([r["setting"], LOADERS[r["loader"]].label, "-", "-", "-", "-", "-", "-", "",
                         f"{status}: {why}"])
    gpus = sorted({r["result"]["gpu"] for r in results if r["result"].get("gpu")})
    lines = [
        "Iterator throughput" + (" on the GPU" if device == "gpu" else ""),
        f"machine: {machine_summary()}" + (f"; GPU: {', '.join(gpus)}" if gpus else ""),
        f"threads={threads} for every loader, batch={batch_size}, {epochs} epochs per run, {rounds} runs per loader "
        "(interleaved); img/s = median over runs of the images delivered in batches (pad included) from the end "
        "of the first batch to the end of the last; % of decode = median over rounds of run / same round's "
        "decode-only run; CPU ms/img = the loader process's CPU time (all threads, user + system) per image over "
        "the same span, median over runs (steadier than img/s on a shared machine); each run in its own process, "
        + ("batches kept on the GPU (device synchronised after each batch); " if device == "gpu"
           else "batches taken as numpy the cheapest way each loader offers (recordgpu, DALI: zero-copy; "
                "MXNet: asnumpy(), a copy); ")
        + "peak RssAnon = the highest over runs",
    ]
    for d in dsets.values():
        lines.append(f"data {d.name}: {d.rec} ({d.records} records, {d.file_bytes / 1e6:,.0f} MB; {d.source})")
    lines += ["", format_table(
        ["setting", "loader", "img/s", "range", "% of decode", "CPU ms/img", "startup s", "peak RssAnon MB",
         "output", "version / note"],
        rows, right=[False, False, True, True, True, True, True, True, False, False])]
    checks = [f"recordgpu {r['setting']}: {rss_verdict(r['spec'], batch_size, r['result'])}"
              for r in results if r["loader"] == rg_name and "img_s" in r["result"]]
    if checks:
        lines += ["", "memory (recordgpu):"] + ["  " + c for c in checks]
    return "\n".join(lines)


def parse_peers(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip() and t.strip() != "none"]
    bad = [n for n in names if n not in PEER_CHOICES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown peer(s) {', '.join(bad)}; known: {', '.join(PEER_CHOICES)}")
    return names


def parse_settings(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in SETTINGS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"settings must be a comma list of {', '.join(SETTINGS)}; got {text!r}")
    return names


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="cpu: CPU loaders (decode only, recordgpu, DALI CPU, MXNet); gpu: on CUDA GPU 0 "
                        "(nvImageCodec decode only, recordgpu device='gpu', DALI mixed pipeline)")
    p.add_argument("--threads", type=int, default=2, help="decoding threads for every loader (default 2)")
    p.add_argument("--peers", type=parse_peers, default=list(PEERS),
                   help=f"comma list of peers to compare (default {','.join(PEERS)}; also 'opencv': recordgpu "
                        "with its CPU fast path off; 'none' for none)")
    p.add_argument("--settings", type=parse_settings, default=list(SETTINGS),
                   help=f"comma list of settings (default {','.join(SETTINGS)})")
    p.add_argument("--epochs", type=int, default=3, help="epochs per loader run (default 3)")
    p.add_argument("--rounds", type=int, default=3,
                   help="runs of every loader, interleaved; the table shows the median (default 3)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--data", default="bench/data", help="where bench data lives (default bench/data)")
    p.add_argument("--n-photos", type=int, default=2000, help="JPEGs in the photos dataset (default 2000)")
    p.add_argument("--n-gray", type=int, default=600, help="16-bit PNGs in the ct16 dataset (default 600)")
    p.add_argument("--gray-size", type=int, default=512, help="side of the ct16 images (default 512)")
    p.add_argument("--photo-source", choices=("auto", "skimage", "synthetic"), default="auto",
                   help="photographs from scikit-image (auto falls back to synthetic scenes without it)")
    p.add_argument("--no-install", action="store_true",
                   help="do not create missing peer virtualenvs (skip those peers instead)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds allowed per loader run (default 1800)")
    p.add_argument("--seed", type=int, default=0, help="data and shuffle seed")
    p.add_argument("--json", help="also write the results to this JSON file")


def build_datasets(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict:
    """The datasets the chosen settings need, by name."""
    needed = {SETTINGS[s]["dataset"] for s in args.settings}
    out = {}
    if "photos" in needed:
        out["photos"] = datasets.build_photos(args.data, args.n_photos, args.seed, args.photo_source, log=log)
    if "ct16" in needed:
        out["ct16"] = datasets.build_ct16(args.data, args.n_gray, args.seed, args.gray_size, log=log)
    return out


def run(args: argparse.Namespace) -> dict:
    """Run part B and print its table; returns the results as a dict."""
    if min(args.threads, args.epochs, args.batch_size, args.rounds) < 1:
        raise SystemExit("--threads, --epochs, --batch-size and --rounds must be positive")
    dsets = build_datasets(args)
    device = getattr(args, "device", "cpu")
    floor_name, rg_name, peer_names = DEVICE_LOADERS[device]
    for peer in args.peers:
        if peer not in peer_names:
            print(f"{peer}: has no {device.upper()} pipeline to compare; left out", flush=True)
    pythons: dict[str, str | LoaderUnavailable] = {}
    for name in [floor_name, rg_name, *(peer_names[p] for p in args.peers if p in peer_names)]:
        try:
            pythons[name] = interpreter(LOADERS[name], install=not args.no_install)
        except LoaderUnavailable as e:
            print(f"{name}: skipped: {e}", flush=True)
            pythons[name] = e
    configs = {}
    for sname in args.settings:
        st = dict(SETTINGS[sname])
        if sname == "gray16":
            st["data_shape"] = [1, args.gray_size, args.gray_size]
        ds = dsets[st["dataset"]]
        kw = iter_kwargs(st, str(ds.rec.resolve()), str(ds.idx.resolve()), args.batch_size, args.threads,
                         args.seed)
        if device == "gpu":
            kw["device"] = "gpu"  # recordgpu only; DALI's runner builds its own pipeline from the setting
        configs[sname] = {"setting": {**st, "name": sname}, "iter_kwargs": kw, "rec": kw["path_imgrec"],
                          "device": device,
                          "idx": kw["path_imgidx"], "kind": st["kind"], "threads": args.threads,
                          "batch_size": args.batch_size, "epochs": args.epochs, "seed": args.seed}
    runs: dict[tuple[str, str], list[dict]] = {(s, n): [] for s in args.settings for n in pythons}
    # Rounds are the outer loop so that slow drifts of a shared machine hit every loader alike.
    for rnd in range(args.rounds):
        decoded: dict[str, dict] = {}  # decode-only result per dataset in this round
        for sname, config in configs.items():
            dataset = config["setting"]["dataset"]
            for name, py in pythons.items():
                if isinstance(py, LoaderUnavailable):
                    res = {"skipped": str(py)}
                elif name == floor_name and dataset in decoded:  # same work as for an earlier setting
                    res = decoded[dataset]
                else:
                    print(f"round {rnd + 1}/{args.rounds}, {sname}: running {LOADERS[name].label} ...", flush=True)
                    res = run_loader(LOADERS[name], py, config, args.timeout)
                    if name == floor_name:
                        decoded[dataset] = res
                runs[(sname, name)].append(res)
    results = [{"setting": s, "loader": n, "spec": configs[s]["setting"], "result": combine(rs), "runs": rs}
               for (s, n), rs in runs.items()]
    print(render(results, dsets, args.threads, args.epochs, args.batch_size, args.rounds, device), flush=True)
    out = {"bench": "iter", "device": device, "threads": args.threads, "epochs": args.epochs,
           "batch_size": args.batch_size, "rounds": args.rounds,
           "datasets": {k: {"rec": str(d.rec), "records": d.records, "file_bytes": d.file_bytes,
                            "source": d.source} for k, d in dsets.items()},
           "results": results}
    if args.json:
        write_json(args.json, out)
    return out

