"""The CUDA kernels on a GPU against their host build (same structs, same per-pixel code): equal, except one
source unit where the device's double-precision sin/cos (Lanczos-4 resize weights) round differently.
Needs CuPy and a GPU (``-m gpu``)."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


def _gpu_or_skip():
    cp = pytest.importorskip("cupy")
    if not cp.cuda.is_available():
        pytest.skip("no CUDA GPU")
    return cp


def test_gpu_matches_host_build_on_random_plans():
    _gpu_or_skip()
    from recordgpu.kernels.gpu import run_plans_gpu
    from recordgpu.kernels.host import run_plans_host
    from test_kernel_host import max_excess, random_common_plan, random_plan, tolerance

    rng = np.random.default_rng(99)
    for i in range(300):
        plan, img = random_common_plan(rng) if i % 2 else random_plan(rng)
        host = run_plans_host([plan], [img])[0]
        dev = run_plans_gpu([plan], [img])[0].get()
        assert max_excess(dev, host, tolerance(plan, img), plan.out_dtype) <= 0, plan


def test_gpu_batch_matches_host_batch():
    _gpu_or_skip()
    from recordgpu.kernels.gpu import run_plans_gpu
    from recordgpu.kernels.host import run_plans_host
    from test_kernel_host import random_plan

    rng = np.random.default_rng(4)
    pairs = [random_plan(rng, out_dtype="float32", channels=3, out_hw=(24, 20)) for _ in range(64)]
    plans, imgs = [p for p, _ in pairs], [im for _, im in pairs]
    np.testing.assert_allclose(run_plans_gpu(plans, imgs).get(), run_plans_host(plans, imgs), atol=0.05)
