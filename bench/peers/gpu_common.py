"""What the GPU runners share: finding the CUDA device (or skipping), and waiting for a batch on it.

Standard library plus CuPy, imported lazily: a machine without CuPy or without a CUDA GPU makes the runner
report itself as skipped (``runner_common.skip``), never fail.
"""
from __future__ import annotations

import runner_common as rc


def require_gpu():
    """The ``cupy`` module and the name of GPU 0; skips the run when there is no usable GPU."""
    try:
        import cupy
    except Exception as e:  # noqa: BLE001 (ImportError, or a broken CUDA install)
        rc.skip(f"CuPy is not importable ({e}); pip install 'recordgpu[gpu]'")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            rc.skip("no CUDA GPU")
        props = cupy.cuda.runtime.getDeviceProperties(0)
    except Exception as e:  # noqa: BLE001 (cudaErrorNoDevice, no driver, ...)
        rc.skip(f"no usable CUDA GPU ({type(e).__name__}: {e})")
    name = props["name"]
    return cupy, name.decode() if isinstance(name, bytes) else str(name)


def finish(cupy, arr) -> None:
    """Wait until every stream of the device is idle, then read a strided sample of ``arr`` (on the GPU)."""
    cupy.cuda.runtime.deviceSynchronize()
    rc.checksum(cupy.asarray(arr))


def pool_mb(cupy) -> float:
    """Bytes CuPy's default memory pool holds, in MiB."""
    return cupy.get_default_memory_pool().total_bytes() / rc.MB
