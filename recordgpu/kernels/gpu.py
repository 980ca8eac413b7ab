"""GPU execution of plans with CuPy: the thin layer over :mod:`recordgpu.kernels.params`.

``run_plans_gpu(plans, images)`` packs the plans exactly as the host build does, binds device pointers and
launches ``rg_mean_*`` / ``rg_step_*`` from the module compiled once per process
(:func:`recordgpu.kernels.load_module`). Needs CuPy and a CUDA GPU.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..augment.plan import SamplePlan
from . import load_module
from .params import compile_batch
from .tables import interpolation_tables

MEAN_THREADS = 256  # RG_MEAN_THREADS in kernels/augment.cu
BLOCK = (32, 8, 1)

_tables_by_device: dict[int, object] = {}


def _device_tables(cp):
    dev = cp.cuda.Device().id
    if dev not in _tables_by_device:
        _tables_by_device[dev] = cp.asarray(interpolation_tables())
    return _tables_by_device[dev]


def run_plans_gpu(plans: Sequence[SamplePlan], images: Sequence, *, mode: str = "image"):
    """Execute ``plans[i]`` on ``images[i]`` (numpy or CuPy (H, W[, C]) arrays) on the current device and
    stream; returns the (N, C, H, W) CuPy batch."""
    import cupy as cp  # noqa: PLC0415 (optional dependency)

    plans = list(plans)
    if len(plans) != len(images):
        raise ValueError(f"{len(plans)} plans for {len(images)} images")
    imgs = []
    for im in images:
        a = cp.asarray(im)
        if a.ndim == 2:
            a = a[:, :, None]
        if a.ndim != 3:
            raise ValueError("images must be (H, W) or (H, W, C) arrays")
        imgs.append(cp.ascontiguousarray(a))
    for i, (p, im) in enumerate(zip(plans, imgs)):
        if tuple(im.shape[:2]) != tuple(p.src_shape[:2]):
            raise ValueError(f"image {i} is {im.shape[1]}x{im.shape[0]}, its plan was made for "
                             f"{p.src_shape[1]}x{p.src_shape[0]}")
        if mode == "image" and (im.shape[2] != p.src_shape[2] or im.dtype.name != p.src_dtype):
            raise ValueError(f"image {i} is {im.shape[2]}-channel {im.dtype}, its plan was made for "
                             f"{p.src_shape[2]}-channel {p.src_dtype}")
    if mode == "mask":
        prog = compile_batch(plans, mode="mask", mask_dtypes=[im.dtype.name for im in imgs],
                             mask_channels=[im.shape[2] for im in imgs])
    else:
        prog = compile_batch(plans)
    out = cp.zeros(prog.out_shape, dtype=prog.out_dtype)
    scratch = cp.empty(max(prog.scratch_bytes, 1), dtype=cp.uint8)
    means = [cp.asarray(m.data) for m in prog.mean_images]
    prog.bind([im.data.ptr for im in imgs], scratch.data.ptr, out.data.ptr, [m.data.ptr for m in means])
    tabs = _device_tables(cp)
    mod = load_module()
    for ln in prog.launches:
        n = len(ln.steps)
        steps = cp.asarray(np.ascontiguousarray(ln.steps).view(np.uint8))
        for slot in range(ln.n_contrast):
            mod.get_function(f"rg_mean_{ln.kernel_suffix}")((n,), (MEAN_THREADS,),
                                                             (steps, np.int32(n), np.int32(slot), tabs))
        grid = ((ln.max_w + BLOCK[0] - 1) // BLOCK[0], (ln.max_h + BLOCK[1] - 1) // BLOCK[1], n)
        mod.get_function(f"rg_step_{ln.kernel_suffix}")(grid, BLOCK, (steps, np.int32(n), tabs))
    return out


__all__ = ["run_plans_gpu"]
