"""Runner: MXNet 1.9.1's ``mx.io.ImageRecordIter`` (executed by the harness in ``bench/.venv-mxnet``).

Config: ``iter_kwargs`` (the same MXNet keyword arguments recordgpu gets), ``threads``, ``epochs``.
MXNet's default ``ctx='gpu'`` flavour caps ``preprocess_threads`` at cores/2 (1 on a 2-core machine) and
``ctx='cpu'`` ignores it in favour of OpenMP's thread count (spec mxnet-1.9.1.md §3.10), so the runner
uses ``ctx='cpu'`` with ``OMP_NUM_THREADS`` set to ``threads`` by the harness: the same number of
decoding threads as every other loader. MXNet decodes 16-bit PNGs to 8 bits (its known limitation).
"""
from __future__ import annotations

import time

import runner_common as rc


def main() -> None:
    cfg = rc.load_config()
    try:
        import mxnet as mx
    except Exception as e:  # ImportError, or numpy/ABI errors inside mxnet's import
        rc.skip(f"mxnet not importable: {type(e).__name__}: {e}")
    sampler = rc.RssSampler(cfg.get("rss_interval_s", 0.01))
    kw = dict(cfg["iter_kwargs"])
    kw.setdefault("ctx", cfg.get("mxnet_ctx", "cpu"))
    kw.setdefault("verbose", False)
    t0 = time.perf_counter()
    it = mx.io.ImageRecordIter(**kw)

    def epoch(e: int):
        if e:
            it.reset()
        for batch in it:
            arr = batch.data[0].asnumpy()
            rc.checksum(arr)
            yield arr.shape[0], arr  # pad images included: they were decoded too

    res = rc.run_epochs(int(cfg["epochs"]), epoch, t0, sampler)
    res["rss"] = sampler.stop()
    res["version"] = f"MXNet {mx.__version__} (ctx={kw['ctx']})"
    if cfg.get("kind") == "gray16":
        res["note"] = "decodes the 16-bit PNGs to 8 bits"
    rc.emit(res)


if __name__ == "__main__":
    main()
