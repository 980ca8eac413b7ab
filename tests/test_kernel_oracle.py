"""Host build of the kernels on the MXNet oracle cases: the records decoded at full depth, planned by the
planner like MXNet, executed by the kernels' host build and by the host reference executor (end to end,
within one source unit), and, for the cases whose first batch is plain record order, against MXNet's own
output. Skipped when no C++ compiler exists."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recordgpu.augment import Planner, execute_batch
from recordgpu.augment.params import AugmentParams
from recordgpu.codecs import decode_image
from recordgpu.ndarray_file import load_mean_img
from recordgpu.recfile import RecordFile
from recordgpu.recordio import unpack
from recordgpu.rng import MT19937
from recordgpu.kernels.host import find_compiler, run_plans_host
from test_kernel_host import max_excess, tolerance

pytestmark = pytest.mark.skipif(find_compiler() is None, reason="no C++ compiler for the host build")

ORACLE = Path(__file__).parent / "data" / "oracle"
CASES = json.loads((ORACLE / "cases.json").read_text())
# cases whose first batch holds records 0..batch_size-1 in file order (no shuffle, no partition, no list)
IN_ORDER = [n for n, c in CASES.items()
            if not any(k in c["kwargs"] for k in ("shuffle", "num_parts", "path_imglist", "seed_aug"))
            and "path_imgidx" in c["kwargs"] and n != "gray16_mxnet"]


def _case_batch(name: str):
    kw = CASES[name]["kwargs"]
    params = AugmentParams.from_kwargs(kw)
    mean = load_mean_img(ORACLE / kw["mean_img"]) if kw.get("mean_img") else None
    planner = Planner(params, mean)
    rec = RecordFile(ORACLE / kw["path_imgrec"], ORACLE / kw["path_imgidx"] if "path_imgidx" in kw else None)
    images = []
    for i in range(len(rec)):
        _, payload = unpack(bytes(rec.payload(i)))
        images.append(decode_image(payload, params.channels))
    rng = MT19937(111)
    plans = [planner.plan_sample(im.shape[0], im.shape[1], im.shape[2], rng, slot=i, src_dtype=im.dtype)
             for i, im in enumerate(images)]
    return plans, images


@pytest.mark.parametrize("name", sorted(n for n in CASES if n != "gray16_mxnet"))
def test_oracle_case_matches_reference(name):
    plans, images = _case_batch(name)
    got = run_plans_host(plans, images)
    ref = np.zeros(got.shape, got.dtype)
    execute_batch(plans, images, ref)
    for i, (p, im) in enumerate(zip(plans, images)):
        assert max_excess(got[i], ref[i], tolerance(p, im), p.out_dtype) <= 0, (name, i)


@pytest.mark.parametrize("name", sorted(IN_ORDER))
def test_oracle_first_batch_matches_mxnet(name):
    plans, images = _case_batch(name)
    mx = np.load(ORACLE / "cases" / f"{name}.npz")["e0_b0_data"]
    got = run_plans_host(plans[:len(mx)], images[:len(mx)])
    assert got.dtype == mx.dtype and got.shape == mx.shape
    for i, p in enumerate(plans[:len(mx)]):
        # one 8-bit step (OpenCV 3.4 inside MXNet vs this OpenCV: cubic), in output units
        tol = tolerance(p, images[i])
        assert max_excess(got[i], mx[i], tol, p.out_dtype) <= 0, (name, i)
