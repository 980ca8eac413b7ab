"""Host build of the kernels vs the host reference executor (``recordgpu.augment.cpu``).

Random plans cover every source dtype, output dtype, interpolation, crop, mirror, warp, pad and colour
step. The contract is per stage: each stage's result equals the reference's on the same input within one
source unit (OpenCV's own SIMD/IPP paths differ from its scalar code by that much), so random plans are
checked stage by stage; plans with a single resampling (the common path) are also checked end to end.
Skipped when no C++ compiler exists.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from recordgpu.augment.plan import (HSL, Brightness, Contrast, Crop, CropResize, Intensity, MeanImage,
                                    Normalize, Pad, PCANoise, Resize, Saturation, SamplePlan, Warp,
                                    colour_unit, stage_output_size)
from recordgpu.augment import cpu
from recordgpu.kernels import params as kparams
from recordgpu.kernels.params import compile_batch, resize_params

from recordgpu.kernels.host import find_compiler, run_plans_host

pytestmark = pytest.mark.skipif(find_compiler() is None, reason="no C++ compiler for the host build")

SRC_DTYPES = ("uint8", "uint16", "int16", "float32")
OUT_DTYPES = {"uint8": ("float32", "float16", "uint8", "int8", "uint16", "int16"),
              "uint16": ("float32", "float16", "uint16", "int16"),
              "int16": ("float32", "float16", "int16"),
              "float32": ("float32", "float16")}
SWAP = {1: (0,), 3: (2, 1, 0), 4: (2, 1, 0, 3)}


def random_image(rng: np.random.Generator, h: int, w: int, c: int, dtype: str) -> np.ndarray:
    if dtype == "float32":
        return (rng.random((h, w, c), dtype=np.float32) * 255).astype(np.float32)
    info = np.iinfo(dtype)
    lo, hi = (0, 4096) if dtype == "uint16" and rng.random() < 0.3 else (info.min, info.max + 1)
    return rng.integers(lo, hi, (h, w, c)).astype(dtype)


def _warp_matrix(rng, w, h, ow, oh):
    ang = math.radians(rng.uniform(-180, 180))
    s = rng.uniform(0.6, 1.5)
    shear = rng.uniform(-0.3, 0.3) if rng.random() < 0.4 else 0.0
    a, b = math.cos(ang) * s, math.sin(ang) * s
    m = np.array([[a, b + shear, 0], [-b, a, 0]], dtype=np.float64)
    # centre the source in the output, with a small random shift
    m[0, 2] = ow / 2 - (m[0, 0] * w / 2 + m[0, 1] * h / 2) + rng.uniform(-3, 3)
    m[1, 2] = oh / 2 - (m[1, 0] * w / 2 + m[1, 1] * h / 2) + rng.uniform(-3, 3)
    return tuple(float(v) for v in m.astype(np.float32).reshape(-1))


def _random_normalize(rng, dt: str, c: int, H: int, W: int, od: str | None = None) -> Normalize:
    unit = colour_unit(dt) if dt != "float32" else 1 / 255
    od = od or OUT_DTYPES[dt][rng.integers(len(OUT_DTYPES[dt]))]
    mirror = bool(rng.random() < 0.5)
    if od in ("uint8", "uint16"):
        return Normalize(od, SWAP[c], mirror, (0.0,) * c, (1.0,) * c, (0.0,) * c)
    mean = tuple(float(np.float32(rng.uniform(-10, 140) * unit)) for _ in range(c))
    if od in ("int8", "int16"):
        norm = Normalize(od, SWAP[c], mirror, mean, (1.0,) * c, (0.0,) * c)
    else:
        mult = tuple(float(np.float32(rng.uniform(0.2, 2.0) / (unit * 255))) for _ in range(c))
        bias = tuple(float(np.float32(rng.uniform(-1, 1))) for _ in range(c))
        norm = Normalize(od, SWAP[c], mirror, mean, mult, bias)
    if rng.random() < 0.15:
        mi = MeanImage((rng.random((c, H, W)) * 255 * unit).astype(np.float32))
        norm = Normalize(od, norm.swap, mirror, (0.0,) * c, norm.mult, norm.bias, mi)
    return norm


def random_common_plan(rng: np.random.Generator, src_dtype: str | None = None) -> tuple[SamplePlan, np.ndarray]:
    """The common plan: one resampling (resize then crop, or crop then resize), mirror, normalise, cast."""
    dt = src_dtype or SRC_DTYPES[rng.integers(len(SRC_DTYPES))]
    c = int(rng.choice([1, 3, 4]))
    h, w = (int(v) for v in rng.integers(1, 64, 2))
    H, W = (int(v) for v in rng.integers(1, 33, 2))
    interp = int(rng.integers(5))
    if rng.random() < 0.5:
        rw, rh = int(rng.integers(W, W + 40)), int(rng.integers(H, H + 40))
        if rng.random() < 0.2 and h % 2 == 0 and w % 2 == 0 and h // 2 >= H and w // 2 >= W:
            rw, rh = w // 2, h // 2
        x, y = int(rng.integers(0, rw - W + 1)), int(rng.integers(0, rh - H + 1))
        geo = (Resize(rw, rh, interp), Crop(x, y, W, H))
    else:
        ch, cw = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
        geo = (CropResize(int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1)), cw, ch, W, H, interp),)
    plan = SamplePlan((h, w, c), dt, (c, H, W), geo + (_random_normalize(rng, dt, c, H, W),))
    return plan, random_image(rng, h, w, c, dt)


def random_plan(rng: np.random.Generator, src_dtype: str | None = None, out_dtype: str | None = None,
                max_side: int = 48, channels: int | None = None,
                out_hw: tuple[int, int] | None = None) -> tuple[SamplePlan, np.ndarray]:
    """A random plan in MXNet's stage order and an image for it."""
    dt = src_dtype or SRC_DTYPES[rng.integers(len(SRC_DTYPES))]
    c = channels or int(rng.choice([1, 3, 3, 4]))
    h, w = (int(v) for v in rng.integers(1, max_side, 2))
    img = random_image(rng, h, w, c, dt)
    fillv = float(rng.integers(0, 256)) * (colour_unit(dt) if dt != "float32" else 1 / 255)
    fill = {1: (fillv,), 3: (fillv,) * 3, 4: (fillv,) * 3 + (0.0,)}[c]
    stages = []
    ch, cw = h, w
    if rng.random() < 0.6:  # shorter-edge resize
        nw, nh = (int(v) for v in rng.integers(1, max_side + 16, 2))
        if rng.random() < 0.15 and ch % 2 == 0 and cw % 2 == 0:
            nw, nh = cw // 2, ch // 2  # exact halving: OpenCV's INTER_LINEAR -> INTER_AREA switch
        stages.append(Resize(nw, nh, int(rng.integers(5))))
        ch, cw = nh, nw
    if rng.random() < 0.4:
        ow, oh = (int(v) for v in rng.integers(1, max_side + 8, 2))
        stages.append(Warp(_warp_matrix(rng, cw, ch, ow, oh), ow, oh, int(rng.integers(5)), fill))
        ch, cw = oh, ow
    if rng.random() < 0.3:
        p = int(rng.integers(1, 6))
        stages.append(Pad(p, fill))
        ch, cw = ch + 2 * p, cw + 2 * p
    H, W = out_hw or (int(v) for v in rng.integers(1, 33, 2))
    if rng.random() < 0.35:  # random_resized_crop / crop_size
        y_area, x_area = int(rng.integers(1, ch + 1)), int(rng.integers(1, cw + 1))
        y, x = int(rng.integers(0, ch - y_area + 1)), int(rng.integers(0, cw - x_area + 1))
        stages.append(CropResize(x, y, x_area, y_area, W, H, int(rng.integers(5))))
    else:  # upscale a too small image, then crop
        m = int(rng.integers(5))
        if ch < H:
            cw = int(np.float32(np.float32(np.float32(H) / np.float32(ch)) * np.float32(cw)))
            ch = H
            stages.append(Resize(cw, ch, m))
        if cw < W:
            ch = int(np.float32(np.float32(np.float32(W) / np.float32(cw)) * np.float32(ch)))
            cw = W
            stages.append(Resize(cw, ch, m))
        y, x = int(rng.integers(0, ch - H + 1)), int(rng.integers(0, cw - W + 1))
        stages.append(Crop(x, y, W, H))
    unit = colour_unit(dt) if dt != "float32" else 1 / 255
    if c == 3:
        if rng.random() < 0.4:
            steps = [Brightness(float(np.float32(1 + rng.uniform(-0.4, 0.4)))),
                     Contrast(float(np.float32(1 + rng.uniform(-0.4, 0.4)))),
                     Saturation(float(np.float32(1 + rng.uniform(-0.4, 0.4))))]
            for i in rng.permutation(3):
                stages.append(steps[i])
        if dt in ("uint8", "uint16") and rng.random() < 0.3:
            dh, ds, dl = (int(v) for v in rng.integers(-20, 21, 3))
            stages.append(HSL(dh, float(ds * unit), float(dl * unit)))
        if rng.random() < 0.3:
            stages.append(PCANoise(tuple(float(np.float32(rng.normal(0, 3) * unit)) for _ in range(3))))
    elif rng.random() < 0.2:
        stages.append(Brightness(float(np.float32(1 + rng.uniform(-0.4, 0.4)))))
    if rng.random() < 0.15:
        stages.append(Intensity(float(np.float32(rng.uniform(0.5, 1.5))), float(np.float32(rng.uniform(-20, 20)))))
    norm = _random_normalize(rng, dt, c, H, W, out_dtype)
    stages.append(norm)
    return SamplePlan((h, w, c), dt, (c, H, W), tuple(stages)), img


def tolerance(plan: SamplePlan, image: np.ndarray) -> np.ndarray:
    """Per output channel: the contract's ±1 source unit, in output units (float: times |mult|)."""
    n = plan.normalize
    c = plan.out_shape[0]
    if plan.src_dtype == "float32":
        # float sources have no rounding step: allow float32 arithmetic differences on their scale
        unit = 2e-5 * max(1.0, float(np.abs(image).max()) if image.size else 1.0)
    else:
        unit = 1.0
    if n.out_dtype in ("float32", "float16"):
        return np.array([unit * abs(np.float32(m)) + 1e-6 for m in n.mult], dtype=np.float64).reshape(c, 1, 1)
    return np.full((c, 1, 1), unit, dtype=np.float64)


def max_excess(out: np.ndarray, ref: np.ndarray, tol: np.ndarray, out_dtype: str) -> float:
    """Largest amount by which |out - ref| exceeds the tolerance (<= 0 when within)."""
    a = out.astype(np.float64)
    b = ref.astype(np.float64)
    t = np.broadcast_to(tol, a.shape).copy()
    if out_dtype == "float16":
        t = t + np.spacing(np.abs(b).astype(np.float16)).astype(np.float64)
    d = np.abs(a - b) - t
    both_nan = np.isnan(a) & np.isnan(b)
    d[both_nan] = -1
    return float(np.nanmax(d)) if d.size else -1.0


RAW_OUT = {"uint8": "uint8", "uint16": "uint16", "int16": "int16", "float32": "float32"}


def raw_normalize(c: int, src_dtype: str) -> Normalize:
    """An output stage that writes the pixels unchanged (same dtype, same channel order, no mirror)."""
    return Normalize(RAW_OUT[src_dtype], tuple(range(c)), False, (0.0,) * c, (1.0,) * c, (0.0,) * c)


def prefix_plan(plan: SamplePlan, k: int) -> SamplePlan:
    """The first ``k`` stages of ``plan`` followed by a raw output of the image they produce."""
    h, w, c = plan.src_shape
    size = (h, w)
    if k:
        size = plan.sizes()[k - 1]
    return SamplePlan(plan.src_shape, plan.src_dtype, (c, size[0], size[1]),
                      tuple(plan.stages[:k]) + (raw_normalize(c, plan.src_dtype),))


def single_stage_plan(image_hwc: np.ndarray, plan: SamplePlan, k: int) -> SamplePlan:
    """Stage ``k`` of ``plan`` alone, on ``image_hwc`` (the image before it)."""
    h, w, c = image_hwc.shape
    st = plan.stages[k]
    if isinstance(st, Normalize):
        return SamplePlan((h, w, c), plan.src_dtype, plan.out_shape, (st,))
    oh, ow = stage_output_size(st, h, w)
    return SamplePlan((h, w, c), plan.src_dtype, (c, oh, ow), (st, raw_normalize(c, plan.src_dtype)))


def _reference(plan: SamplePlan, image: np.ndarray, mode: str = "image", out_dtype=None) -> np.ndarray:
    out = np.zeros(plan.out_shape, dtype=out_dtype or plan.out_dtype)
    cpu.execute(plan, image, out, mode=mode)
    return out


def _hwc(chw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(chw, 0, 2))


# --- the packing ---------------------------------------------------------------------------------------
def test_host_library_layout_matches_params():
    from recordgpu.kernels.host import load_host_library
    load_host_library()  # raises HostBuildError when a struct offset or size differs from params.py


@pytest.mark.parametrize("sw, sh, dw, dh, interp, mode", [
    (40, 30, 40, 30, 2, kparams.RZ_COPY),            # same size: OpenCV copies
    (40, 30, 20, 15, 1, kparams.RZ_AREA_FAST),       # bilinear halving is OpenCV's 2x2 area
    (40, 30, 20, 15, 3, kparams.RZ_AREA_FAST),
    (40, 30, 13, 10, 3, kparams.RZ_AREA),            # fractional shrink
    (40, 30, 80, 10, 3, kparams.RZ_LINEAR_AREA),     # area that enlarges one axis: bilinear, area weights
    (40, 30, 20, 15, 0, kparams.RZ_NEAREST),
    (40, 30, 50, 45, 2, kparams.RZ_CUBIC),
    (40, 30, 50, 45, 4, kparams.RZ_LANCZOS4),
    (40, 30, 30, 15, 1, kparams.RZ_LINEAR),
])
def test_resize_dispatch_follows_opencv(sw, sh, dw, dh, interp, mode):
    assert resize_params(sw, sh, dw, dh, interp)["mode"] == mode


def test_structs_hold_the_plan():
    norm = Normalize("float32", (2, 1, 0), True, (1.0, 2.0, 3.0), (0.5, 0.25, 2.0), (0.0, 1.0, -1.0))
    plan = SamplePlan((30, 40, 3), "uint8", (3, 8, 10), (Resize(20, 15, 1), Crop(3, 4, 10, 8), norm))
    prog = compile_batch([plan])
    assert len(prog.launches) == 1  # resize + crop + mirror + normalise + cast: one launch
    st = prog.launches[0].steps[0]
    g = st["geom"]
    assert (g["kind"], g["mode"], g["win_w"], g["win_h"], g["full_w"], g["full_h"]) == (
        kparams.GEOM_RESIZE, kparams.RZ_AREA_FAST, 40, 30, 20, 15)
    assert (g["crop_x"], g["crop_y"], g["out_w"], g["out_h"]) == (3, 4, 10, 8)
    assert st["out_kind"] == kparams.OUT_NORMALIZE and st["norm"]["mirror"] == 1
    assert list(st["norm"]["swap"][:3]) == [2, 1, 0]
    assert list(st["norm"]["mult"][:3]) == [0.5, 0.25, 2.0]


def test_two_resamplings_are_two_steps():
    norm = Normalize("uint8", (2, 1, 0), False, (0.0,) * 3, (1.0,) * 3, (0.0,) * 3)
    plan = SamplePlan((30, 40, 3), "uint8", (3, 8, 8),
                      (Resize(20, 15, 1), CropResize(2, 2, 10, 10, 8, 8, 2), Brightness(1.2), norm))
    prog = compile_batch([plan])
    assert [ln.steps[0]["out_kind"] for ln in prog.launches] == [kparams.OUT_IMAGE, kparams.OUT_NORMALIZE]
    assert prog.scratch_bytes >= 20 * 15 * 3


def test_unsupported_plans_raise():
    norm = Normalize("float32", (0,), False, (0.0,), (1.0,), (0.0,))
    with pytest.raises(ValueError, match="3-channel"):
        compile_batch([SamplePlan((4, 4, 1), "uint8", (1, 4, 4), (Saturation(1.1), norm))])
    with pytest.raises(ValueError, match="same output shape"):
        compile_batch([SamplePlan((4, 4, 1), "uint8", (1, 4, 4), (norm,)),
                       SamplePlan((4, 4, 1), "uint8", (1, 2, 2), (Crop(0, 0, 2, 2), norm))])
    with pytest.raises(ValueError, match="outside"):
        compile_batch([SamplePlan((4, 4, 1), "uint8", (1, 4, 4), (Crop(1, 1, 4, 4), norm))])
    with pytest.raises(ValueError, match="cannot hold"):
        compile_batch([SamplePlan((4, 4, 1), "uint16", (1, 4, 4),
                                  (Normalize("uint8", (0,), False, (0.0,), (1.0,), (0.0,)),))])
    with pytest.raises(ValueError, match="4x4"):
        run_plans_host([SamplePlan((4, 4, 1), "uint8", (1, 4, 4), (norm,))], [np.zeros((5, 4), np.uint8)])


# --- against the reference executor ---------------------------------------------------------------------
def test_common_path_end_to_end_matches_reference():
    """Resize/crop (or crop/resize), mirror, normalise, cast: every dtype, every interpolation."""
    rng = np.random.default_rng(20240611)
    seen = set()
    for _ in range(240):
        plan, img = random_common_plan(rng)
        got = run_plans_host([plan], [img])[0]
        ref = _reference(plan, img)
        assert max_excess(got, ref, tolerance(plan, img), plan.out_dtype) <= 0, plan
        seen.add((plan.src_dtype, plan.out_dtype))
        seen.add(("interp", plan.stages[0].interp))
    assert {("interp", i) for i in range(5)} <= seen
    assert {(s, o) for s, outs in OUT_DTYPES.items() for o in outs} <= seen


def test_random_plans_each_stage_matches_reference():
    """Each stage of random plans equals the reference's result on the same input within one source unit
    (every stage rounded to the source dtype; fused steps included: the prefix outputs come from the
    kernels' fused execution)."""
    rng = np.random.default_rng(7)
    kinds = set()
    for _ in range(220):
        plan, img = random_plan(rng)
        before = img
        for k, st in enumerate(plan.stages):
            sub = single_stage_plan(before, plan, k)
            ref = _reference(sub, before)
            last = k + 1 == len(plan.stages)
            got = run_plans_host([plan if last else prefix_plan(plan, k + 1)], [img])[0]
            assert max_excess(got, ref, tolerance(sub, before), sub.out_dtype) <= 0, (plan, k)
            kinds.add((type(st).__name__, plan.src_dtype))
            if not last:
                before = _hwc(got)
    names = {n for n, _ in kinds}
    assert {"Resize", "Warp", "Pad", "Crop", "CropResize", "Brightness", "Contrast", "Saturation", "HSL",
            "PCANoise", "Intensity", "Normalize"} <= names
    assert {d for _, d in kinds} == set(SRC_DTYPES)


def test_colour_stages_alone_are_exact():
    """Colour steps on the same input are bit-exact with the reference (no OpenCV SIMD ambiguity)."""
    rng = np.random.default_rng(3)
    for dt in ("uint8", "uint16", "int16", "float32"):
        unit = colour_unit(dt) if dt != "float32" else 1 / 255
        img = random_image(rng, 17, 23, 3, dt)
        stages = [Contrast(1.3), Brightness(0.8), Saturation(0.6), PCANoise((3.0 * unit, -2.5 * unit, 1.25 * unit)),
                  Intensity(1.1, 5.0 * unit)]
        if dt in ("uint8", "uint16"):
            stages.insert(3, HSL(9, 12 * unit, -7 * unit))
        for st in stages:
            plan = SamplePlan((17, 23, 3), dt, (3, 17, 23), (st, raw_normalize(3, dt)))
            got = run_plans_host([plan], [img])[0]
            np.testing.assert_array_equal(got, _reference(plan, img), err_msg=f"{dt} {st}")


def test_batch_of_mixed_plans_equals_single_runs():
    """Variable sizes, dtypes and stage counts in one batch give exactly the per-sample results."""
    rng = np.random.default_rng(11)
    plans, imgs = [], []
    for _ in range(24):
        plan, img = random_plan(rng, out_dtype="float32", channels=3, out_hw=(13, 17))
        plans.append(plan)
        imgs.append(img)
    assert len({p.src_dtype for p in plans}) == len(SRC_DTYPES)
    assert len({len(p.stages) for p in plans}) > 2
    batch = run_plans_host(plans, imgs)
    assert batch.shape == (len(plans),) + plans[0].out_shape
    for i, (p, im) in enumerate(zip(plans, imgs)):
        np.testing.assert_array_equal(batch[i], run_plans_host([p], [im])[0])


def test_mask_mode_matches_reference():
    """Masks replay the geometric stages with nearest sampling and fill 0, mirrored with the image."""
    rng = np.random.default_rng(5)
    for _ in range(60):
        plan, _ = random_plan(rng)
        h, w, _c = plan.src_shape
        mask = rng.integers(0, 6, (h, w, 1)).astype(np.uint8)
        got = run_plans_host([plan], [mask], mode="mask")[0]
        ref = np.zeros((1,) + plan.out_shape[1:], np.uint8)
        cpu.execute(plan, mask, ref, mode="mask")
        np.testing.assert_array_equal(got, ref)


def test_float16_output_rounds_like_numpy():
    """float16 output is the float32 result rounded to nearest even: ties, subnormals, overflow, signs."""
    h16 = np.arange(0, 0x7c00, dtype=np.uint16).view(np.float16).astype(np.float32)
    ties = (h16[:-1] + h16[1:]) / 2  # exactly between two halfs (representable in float32)
    vals = np.concatenate([h16, ties, np.nextafter(ties, 0), np.nextafter(ties, 1e9),
                           [65519.0, 65520.0, 1e6, 3e-8, 2.98e-8, 6e-8, 0.0]]).astype(np.float32)
    vals = np.concatenate([vals, -vals[vals != 0]])  # (-0 - mean) * mult + bias is +0
    n = vals.size
    img = vals.reshape(1, n, 1)
    norm = Normalize("float16", (0,), False, (0.0,), (1.0,), (0.0,))
    plan = SamplePlan((1, n, 1), "float32", (1, 1, n), (norm,))
    got = run_plans_host([plan], [img])[0]
    with np.errstate(over="ignore"):
        want = vals.astype(np.float16).reshape(1, 1, n)
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


def test_planner_batch_of_common_plans_is_one_launch():
    """resize + random crop + random mirror + normalise + cast for images of different sizes: one launch."""
    from recordgpu.augment import AugmentParams, Planner
    from recordgpu.rng import MT19937

    params = AugmentParams(data_shape=(3, 24, 24), resize=30, rand_crop=True, rand_mirror=True,
                           mean_r=123.68, mean_g=116.28, mean_b=103.53, std_r=58.4, std_g=57.1, std_b=57.4)
    rng = np.random.default_rng(2)
    shapes = [(int(h), int(w), 3) for h, w in rng.integers(20, 90, (16, 2))]
    plans = Planner(params).plan_batch(shapes, MT19937(111))
    imgs = [random_image(rng, h, w, 3, "uint8") for h, w, _ in shapes]
    prog = compile_batch(plans)
    assert len(prog.launches) == 1 and prog.launches[0].n_contrast == 0 and prog.scratch_bytes == 0
    assert len({tuple(s["geom"][["win_w", "win_h"]]) for s in prog.launches[0].steps}) > 1
    got = run_plans_host(plans, imgs)
    ref = np.zeros(got.shape, np.float32)
    cpu.execute_batch(plans, imgs, ref)
    np.testing.assert_array_equal(got, ref)


def test_plans_over_kernel_limits_are_refused():
    norm = Normalize("float32", (0,) * 5, False, (0.0,) * 5, (1.0,) * 5, (0.0,) * 5)
    with pytest.raises(kparams.PlanNotSupported, match="channels"):
        compile_batch([SamplePlan((4, 4, 5), "uint8", (5, 4, 4), (norm,))])
    norm1 = Normalize("float32", (0,), False, (0.0,), (1.0,), (0.0,))
    with pytest.raises(kparams.PlanNotSupported, match="interpolation"):
        compile_batch([SamplePlan((4, 4, 1), "uint8", (1, 2, 2), (Resize(2, 2, 7), norm1))])
    # more colour stages than one step holds: split into steps, same numbers
    img = np.arange(3 * 5 * 7, dtype=np.uint8).reshape(5, 7, 3)
    stages = tuple(Brightness(1.01 + k / 100) for k in range(kparams.MAX_COLOUR + 3))
    plan = SamplePlan((5, 7, 3), "uint8", (3, 5, 7), stages + (raw_normalize(3, "uint8"),))
    assert len(compile_batch([plan]).launches) == 2
    np.testing.assert_array_equal(run_plans_host([plan], [img])[0], _reference(plan, img))
