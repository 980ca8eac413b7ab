"""Runner: ``recordgpu.ImageRecordIter`` with MXNet's keyword arguments (executed by the harness).

Config: ``iter_kwargs`` (passed as is), ``epochs``, ``rss_interval_s``. Skips when the installed
recordgpu has no ``ImageRecordIter`` yet. See ``runner_common`` for the protocol.
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
    sampler = rc.RssSampler(cfg.get("rss_interval_s", 0.01))
    kw = dict(cfg["iter_kwargs"])
    t0 = time.perf_counter()
    it = recordgpu.ImageRecordIter(**kw)

    def epoch(e: int):
        if e:
            it.reset()
        for batch in it:
            data = batch.data[0]
            arr = data.asnumpy() if hasattr(data, "asnumpy") else np.asarray(data)
            rc.checksum(arr)
            yield arr.shape[0], arr  # pad images included: they were decoded too

    res = rc.run_epochs(int(cfg["epochs"]), epoch, t0, sampler)
    res["rss"] = sampler.stop()
    res["version"] = f"recordgpu {recordgpu.__version__}"
    res["prefetch_buffer"] = int(kw.get("prefetch_buffer", getattr(it, "prefetch_buffer", 4)))
    rc.emit(res)


if __name__ == "__main__":
    main()
