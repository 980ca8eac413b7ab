"""GPU execution of plans with CuPy: the thin layer over :mod:`recordgpu.kernels.params`.

``run_plans_gpu(plans, images)`` is :func:`recordgpu.gpu.backend.run_plans` on a
:class:`~recordgpu.gpu.backend.CupyBackend` bound to the current device and stream: the plans are packed
exactly as for the host build, device pointers bound, and ``rg_mean_*`` / ``rg_step_*`` launched from the
module compiled once per process (:func:`recordgpu.kernels.load_module`). Needs CuPy and a CUDA GPU.
"""
from __future__ import annotations

from typing import Sequence

from ..augment.plan import SamplePlan
from ..gpu.backend import BLOCK, MEAN_THREADS, CupyBackend, run_plans


def run_plans_gpu(plans: Sequence[SamplePlan], images: Sequence, *, mode: str = "image"):
    """Execute ``plans[i]`` on ``images[i]`` (numpy or CuPy (H, W[, C]) arrays) on the current device and
    stream; returns the (N, C, H, W) CuPy batch (finished: the stream is synchronised)."""
    return run_plans(CupyBackend.current(), plans, images, mode=mode)


__all__ = ["run_plans_gpu", "MEAN_THREADS", "BLOCK"]
