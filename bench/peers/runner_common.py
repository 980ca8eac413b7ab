"""What every loader runner shares: its config, the epoch timing loop, RSS sampling, the result line.

Runners are scripts executed by the harness in the loader's own interpreter (a peer's virtualenv), so
this module uses the standard library only and is imported as a sibling (``import runner_common``).
Protocol: ``python RUNNER.py CONFIG.json``; the runner prints exactly one line ``BENCH_RESULT {json}``
on stdout (anything else goes to stderr) and exits 0, also when it skips (``{"skipped": reason}``).
"""
from __future__ import annotations

import json
import struct
import sys
import threading
import time
from typing import Callable, Iterable

RESULT_PREFIX = "BENCH_RESULT "
MB = 1 << 20


def load_config() -> dict:
    """The config dict from the JSON file named on the command line."""
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} CONFIG.json")
    with open(sys.argv[1]) as f:
        return json.load(f)


def emit(result: dict) -> None:
    """Print the result line the harness reads."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def skip(reason: str) -> None:
    emit({"skipped": reason})
    raise SystemExit(0)


def rss_anon_bytes() -> int:
    """This process's anonymous resident memory (``RssAnon`` in /proc/self/status); 0 if unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class RssSampler:
    """Samples RssAnon in a daemon thread; keeps the overall peak and the peak of each epoch."""

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.baseline = rss_anon_bytes()
        self.peak = self.baseline
        self._epoch_peak = self.baseline
        self.epoch_peaks: list[int] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        v = rss_anon_bytes()
        with self._lock:
            self.peak = max(self.peak, v)
            self._epoch_peak = max(self._epoch_peak, v)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def end_epoch(self) -> None:
        self._sample()
        with self._lock:
            self.epoch_peaks.append(self._epoch_peak)
            self._epoch_peak = 0

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        self._sample()
        return {"baseline_mb": self.baseline / MB, "peak_mb": self.peak / MB,
                "epoch_peak_mb": [p / MB for p in self.epoch_peaks]}


def run_epochs(epochs: int, epoch_batches: Callable[[int], Iterable[tuple[int, object]]],
               t_construct: float, sampler: RssSampler) -> dict:
    """Drive ``epochs`` epochs and time them.

    ``epoch_batches(e)`` yields ``(images_in_batch, batch_array)`` for epoch ``e``; the array has already
    been materialised on the host. Throughput is measured from the end of the first batch (after
    start-up) to the end of the last one; ``t_construct`` is when the loader's construction began.
    ``cpu_ms_per_img`` is the process's CPU time (user + system, all its threads) over the same span per
    image: on a shared machine it moves less than the throughput does.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    total = steady_images = 0
    t_first = None
    epoch_rates = []
    shape = dtype = None
    for e in range(epochs):
        n_epoch = 0
        t0 = time.perf_counter()
        for n, arr in epoch_batches(e):
            n_epoch += n
            if t_first is None:
                t_first = time.perf_counter()
                cpu_first = time.process_time()  # user + system of every thread, ns resolution
                shape, dtype = list(getattr(arr, "shape", ())), str(getattr(arr, "dtype", ""))
            else:
                steady_images += n
        dt = time.perf_counter() - t0
        total += n_epoch
        epoch_rates.append(n_epoch / dt if dt > 0 else 0.0)
        sampler.end_epoch()
    t_end = time.perf_counter()
    cpu_end = time.process_time()
    if t_first is None:
        raise RuntimeError("the loader produced no batch")
    steady_s = t_end - t_first
    return {
        "images": total,
        "img_s": steady_images / steady_s if steady_s > 0 and steady_images else total / (t_end - t_construct),
        "epoch_img_s": epoch_rates,
        "cpu_ms_per_img": 1000 * (cpu_end - cpu_first) / steady_images if steady_images else None,
        "startup_s": t_first - t_construct,
        "batch_shape": shape,
        "batch_dtype": dtype,
    }


def image_view(payload: memoryview) -> memoryview:
    """The image bytes of a record payload: after the 24-byte IRHeader and its packed float32 labels."""
    return payload[24 + 4 * struct.unpack_from("<I", payload, 0)[0]:]


def checksum(arr) -> float:
    """Read a strided sample of a materialised batch so nothing can be skipped lazily."""
    flat = arr.reshape(-1)
    return float(flat[:: max(1, flat.size // 4096)].sum())
