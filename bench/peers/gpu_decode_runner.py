"""Runner: decode-only throughput on GPU 0 with recordgpu's nvImageCodec decoder (executed by the harness).

The GPU bench's floor: records come from ``recordgpu.recfile.RecordFile`` (zero-copy views), the IRHeader is
skipped, and each batch of ``batch_size`` payloads goes to ``NvImageCodecDecoder.decode_batch`` (8-bit JPEG on
the GPU: hardware decoder where present, CUDA otherwise; PNG with recordgpu's CPU decoder, as recordgpu routes it),
then the device is synchronised. Nothing is resized or normalised. Config: ``rec``, ``idx``, ``kind``,
``threads`` (nvImageCodec's CPU threads), ``batch_size``, ``epochs``.
"""
from __future__ import annotations

import time

import gpu_common
import runner_common as rc


def main() -> None:
    cfg = rc.load_config()
    cupy, gpu_name = gpu_common.require_gpu()
    try:
        from recordgpu.gpu.decode import NvImageCodecDecoder
        from recordgpu.recfile import RecordFile

        decoder = NvImageCodecDecoder(device_id=0, max_num_cpu_threads=int(cfg["threads"]))
    except Exception as e:  # noqa: BLE001 (nvImageCodec missing or not usable here)
        rc.skip(f"nvImageCodec decoder unavailable: {type(e).__name__}: {e}")
    sampler = rc.RssSampler(cfg.get("rss_interval_s", 0.01))
    channels = 1 if cfg["kind"] == "gray16" else 3
    bs = int(cfg["batch_size"])
    t0 = time.perf_counter()
    rf = RecordFile(cfg["rec"], cfg["idx"])
    n = len(rf)

    def epoch(e: int):
        for s in range(0, n, bs):
            out = decoder.decode_batch([rc.image_view(rf.payload(i)) for i in range(s, min(n, s + bs))], channels)
            bad = [r for r in out if not r.ok]
            if bad:
                raise RuntimeError(f"{len(bad)} records of batch {s // bs} do not decode: {bad[0].error}")
            cupy.cuda.runtime.deviceSynchronize()
            yield len(out), out[0].image

    res = rc.run_epochs(int(cfg["epochs"]), epoch, t0, sampler)
    res["batch_shape"] = None
    res["output"] = "decoded " + ("HxWx3 uint8" if channels == 3 else "HxW uint16") + ", not batched"
    res["rss"] = sampler.stop()
    res["gpu"] = gpu_name
    decoded = decoder.stats.as_dict()["decoded"]
    res["version"] = "nvImageCodec; decoded by " + ", ".join(f"{k}: {v}" for k, v in decoded.items())
    rc.emit(res)


if __name__ == "__main__":
    main()
