"""Runner: ``recordgpu.ImageRecordIter`` with MXNet's keyword arguments (executed by the harness).

Config: ``iter_kwargs`` (passed as is; ``device='gpu'`` in the GPU bench), ``epochs``, ``rss_interval_s``.

CPU batches are numpy arrays already and are used as they are (``np.asarray``, no copy; ``asnumpy()`` would
copy, as MXNet's does); GPU batches stay on the device, which is synchronised after each one. Skips when the
installed recordgpu has no ``ImageRecordIter`` yet, or (GPU bench) when there is no CUDA GPU. See
``runner_common`` for the protocol.
"""
from __future__ import annotations

import time

import numpy as np

import runner_common as rc


def main() -> None:
    cfg = rc.load_config()
    import recordgpu

    if not hasattr(recordgpu, "ImageRecordIter"):
        rc.skip(f"recordgpu {recordgpu.__version__} has no ImageRecordIter yet")
    kw = dict(cfg["iter_kwargs"])
    on_gpu = kw.get("device") == "gpu"
    cupy = gpu_name = None
    if on_gpu:
        import gpu_common

        cupy, gpu_name = gpu_common.require_gpu()
    sampler = rc.RssSampler(cfg.get("rss_interval_s", 0.01))
    t0 = time.perf_counter()
    it = recordgpu.ImageRecordIter(**kw)

    def epoch(e: int):
        if e:
            it.reset()
        for batch in it:
            data = batch.data[0]
            if on_gpu:
                gpu_common.finish(cupy, data)
                arr = data
            else:
                arr = np.asarray(data)  # CPU batches are numpy arrays already: no copy
                rc.checksum(arr)
            yield arr.shape[0], arr  # pad images included: they were decoded too

    res = rc.run_epochs(int(cfg["epochs"]), epoch, t0, sampler)
    res["rss"] = sampler.stop()
    res["version"] = f"recordgpu {recordgpu.__version__}"
    res["prefetch_buffer"] = int(kw.get("prefetch_buffer", getattr(it, "prefetch_buffer", 4)))
    if not on_gpu:
        from recordgpu.augment import fused

        res["note"] = f"CPU fast path {fused.status()}"
    else:
        res["gpu"] = gpu_name
        res["note"] = f"CuPy pool {gpu_common.pool_mb(cupy):,.0f} MB after the run"
        stats = getattr(it, "decode_stats", None)
        if stats:
            res["note"] += f"; decode {stats}"
    rc.emit(res)


if __name__ == "__main__":
    main()
