"""Random parameter sets, image shapes and dtypes: planning and execution never crash.

Every combination either runs and fills the output slot with the right shape and dtype, or is refused with
a ValueError that names the problem (only image-size problems MXNet also refuses are expected here).
"""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from recordgpu.augment import AugmentParams, Planner, execute, geometric_stages
from recordgpu.augment.plan import _OUTPUTS_FOR
from recordgpu.rng import MT19937

SRC_DTYPES = ("uint8", "uint16", "int16", "float32")
TOP = {"uint8": 255, "uint16": 65535, "int16": 32767, "float32": 1.0}
SIZE_ERRORS = ("smaller than", "empty")


def random_params(r: np.random.Generator, src: str) -> AugmentParams:
    while True:
        c = int(r.choice([1, 3, 3, 4]))
        kw: dict = {"data_shape": (c, int(r.integers(1, 24)), int(r.integers(1, 24)))}
        if r.random() < 0.5:
            kw["resize"] = int(r.integers(1, 40))
        kw["inter_method"] = int(r.choice([0, 1, 2, 3, 4, 9, 10]))
        if r.random() < 0.3:
            kw.update(random_resized_crop=True, min_random_area=float(r.uniform(0.05, 1)),
                      min_aspect_ratio=float(r.uniform(0.3, 1)), max_aspect_ratio=float(r.uniform(1, 2)))
        else:
            if r.random() < 0.4:
                kw["rand_crop"] = True
            if r.random() < 0.2:
                lo = int(r.integers(1, 20))
                kw.update(min_crop_size=lo, max_crop_size=lo + int(r.integers(0, 10)))
            if r.random() < 0.3:
                kw.update(min_random_scale=float(r.uniform(0.3, 1)), max_random_scale=float(r.uniform(1, 2)))
        if r.random() < 0.4:
            kw.update(max_rotate_angle=int(r.integers(0, 180)), max_shear_ratio=float(r.uniform(0, 0.5)),
                      max_aspect_ratio=float(r.uniform(0, 0.5)))
            if r.random() < 0.3:
                kw["rotate"] = int(r.integers(1, 360))
            if r.random() < 0.2:
                kw["rotate_list"] = ",".join(str(int(a)) for a in r.integers(-90, 90, 3))
            if r.random() < 0.2:
                kw.update(min_img_size=float(r.uniform(0, 10)), max_img_size=float(r.uniform(10, 60)))
        if r.random() < 0.3:
            kw["pad"] = int(r.integers(1, 6))
        kw["fill_value"] = int(r.integers(0, int(TOP[src]) + 1)) if src != "float32" else int(r.integers(0, 2))
        if c == 3:
            if r.random() < 0.4:
                kw.update(brightness=float(r.uniform(0, 0.9)), contrast=float(r.uniform(0, 0.9)),
                          saturation=float(r.uniform(0, 0.9)))
            if r.random() < 0.3 and src in ("uint8", "uint16"):
                kw.update(random_h=int(r.integers(-90, 90)), random_s=int(r.integers(-255, 255)),
                          random_l=int(r.integers(-255, 255)))
            if r.random() < 0.3:
                kw["pca_noise"] = float(r.uniform(0, 2))
        kw["mirror"] = bool(r.random() < 0.2)
        kw["rand_mirror"] = bool(r.random() < 0.3)
        kw.update(mean_r=float(r.uniform(-10, 10) * TOP[src] / 10), std_r=float(r.uniform(0.1, 3)),
                  scale=float(r.uniform(0.01, 2)), max_random_contrast=float(r.uniform(0, 0.5)),
                  max_random_illumination=float(r.uniform(0, 10)))
        kw["dtype"] = str(r.choice(_OUTPUTS_FOR[src]))
        if r.random() < 0.2:
            kw["seed_aug"] = int(r.integers(0, 1000))
        try:
            return AugmentParams(**kw)
        except ValueError:
            continue  # an invalid combination MXNet also refuses; draw another


def random_image(r: np.random.Generator, h: int, w: int, c: int, src: str) -> np.ndarray:
    if src == "float32":
        return r.normal(0.5, 0.5, (h, w, c)).astype(np.float32)
    info = np.iinfo(src)
    return r.integers(info.min, int(info.max) + 1, (h, w, c)).astype(src)


def test_random_plans_never_crash():
    r = np.random.default_rng(20240601)
    ran = refused = 0
    for i in range(320):
        src = SRC_DTYPES[i % 4]
        params = random_params(r, src)
        c = params.channels
        h, w = int(r.integers(1, 60)), int(r.integers(1, 60))
        g = MT19937(int(r.integers(0, 2**32)))
        planner = Planner(params)
        try:
            plan = planner.plan_sample(h, w, c, g, slot=i % 7, src_dtype=src)
        except ValueError as e:
            assert any(s in str(e) for s in SIZE_ERRORS), str(e)
            refused += 1
            continue
        assert pickle.loads(pickle.dumps(plan)) == plan
        img = random_image(r, h, w, c, src)
        out = np.full(params.data_shape, 7, dtype=params.dtype)
        execute(plan, img, out)
        if out.dtype == np.float32:
            assert np.isfinite(out).all()
        mask = r.integers(1, 5, (h, w)).astype(np.uint8)
        mout = np.empty((1,) + params.data_shape[1:], np.uint8)
        execute(plan, mask, mout, mode="mask")
        assert set(np.unique(mout)) <= {0, 1, 2, 3, 4}
        if not geometric_stages(plan) or all(type(s).__name__ == "Crop" for s in geometric_stages(plan)):
            assert mout.min() >= 1  # a pure crop never samples outside the mask
        ran += 1
    assert ran >= 200, (ran, refused)


@pytest.mark.parametrize("src", SRC_DTYPES)
def test_same_plan_same_output(src):
    r = np.random.default_rng(5)
    params = random_params(r, src)
    while params.channels != 3:
        params = random_params(r, src)
    img = random_image(r, 40, 50, 3, src)
    try:
        plan = Planner(params).plan_sample(40, 50, 3, MT19937(3), slot=0, src_dtype=src)
    except ValueError:
        pytest.skip("drawn parameters do not fit a 40x50 image")
    a = np.empty(params.data_shape, params.dtype)
    b = np.empty(params.data_shape, params.dtype)
    execute(plan, img, a)
    execute(pickle.loads(pickle.dumps(plan)), img.copy(), b)
    np.testing.assert_array_equal(a, b)
