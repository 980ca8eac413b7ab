"""Runner: decode-only throughput, ``cv2.imdecode`` of every record with N threads (executed by the harness).

The floor every loader is compared with: records come from ``recordgpu.recfile.RecordFile`` (zero-copy
views), the IRHeader (and packed labels) is skipped, and each image is decoded the way the setting
needs it (``IMREAD_COLOR`` for 8-bit RGB, ``IMREAD_UNCHANGED`` for 16-bit gray) on a thread pool of
``threads`` workers (OpenCV releases the GIL while decoding). Nothing is resized or normalised.
Config: ``rec``, ``idx``, ``kind`` (rgb | gray16), ``threads``, ``batch_size``, ``epochs``.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

import runner_common as rc
from recordgpu.recfile import RecordFile

FLAGS = {"rgb": cv2.IMREAD_COLOR, "gray16": cv2.IMREAD_UNCHANGED}


def main() -> None:
    cfg = rc.load_config()
    sampler = rc.RssSampler(cfg.get("rss_interval_s", 0.01))
    flag = FLAGS[cfg["kind"]]
    bs = int(cfg["batch_size"])
    t0 = time.perf_counter()
    rf = RecordFile(cfg["rec"], cfg["idx"])
    n = len(rf)
    pool = ThreadPoolExecutor(int(cfg["threads"]))

    def decode(i: int) -> np.ndarray:
        p = rf.payload(i)
        img = cv2.imdecode(np.frombuffer(rc.image_view(p), np.uint8), flag)
        if img is None:
            raise RuntimeError(f"record {i} of {cfg['rec']} does not decode")
        return img

    def epoch(e: int):
        for s in range(0, n, bs):
            imgs = list(pool.map(decode, range(s, min(n, s + bs))))
            yield len(imgs), imgs[0]

    res = rc.run_epochs(int(cfg["epochs"]), epoch, t0, sampler)
    pool.shutdown()
    res["batch_shape"] = None  # decoded images keep their own sizes
    res["output"] = "decoded " + ("HxWx3 uint8" if cfg["kind"] == "rgb" else "HxW uint16") + ", not batched"
    res["rss"] = sampler.stop()
    res["version"] = f"opencv {cv2.__version__}"
    rc.emit(res)


if __name__ == "__main__":
    main()
