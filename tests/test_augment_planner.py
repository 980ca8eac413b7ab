"""Planner: MXNet's geometry (spec §3.7) and RNG draw order (§3.12), plans as data, mask replay."""
from __future__ import annotations

import pickle
import typing

import cv2
import numpy as np
import pytest

from recordgpu.augment import (AugmentParams, Crop, CropResize, Intensity, Normalize, Pad, Planner, Resize,
                               SamplePlan, Warp, execute, geometric_stages)
from recordgpu.augment.plan import GEOMETRIC_STAGES, Stage
from recordgpu.rng import MT19937, bernoulli_half, u01, uniform_int


def draws_used(params: AugmentParams, h: int, w: int, c: int = 3, **kw) -> int:
    """How many raw 32-bit numbers planning one record consumes."""
    g = MT19937(111)
    Planner(params).plan_sample(h, w, c, g, **kw)
    ref = MT19937(111)
    target = g.getstate()["state"]["state"]
    for n in range(10_000):
        st = ref.getstate()["state"]["state"]
        if st["pos"] == target["pos"] and np.array_equal(st["key"], target["key"]):
            return n
        ref()
    raise AssertionError("engine states never met")


def plan(params: AugmentParams, h: int, w: int, c: int = 3, seed: int = 111, **kw) -> SamplePlan:
    return Planner(params).plan_sample(h, w, c, MT19937(seed), **kw)


# --- geometry --------------------------------------------------------------------------------------------
def test_upscale_then_centre_crop_of_a_small_image():
    # spec §3.7 [p04]: a 6x8 (rows x cols) image for data 10x10 resizes to 13x10 (w x h), crop x-offset 1
    st = plan(AugmentParams(data_shape=(3, 10, 10)), 6, 8).stages
    assert st[0] == Resize(13, 10, 1) and st[1] == Crop(1, 0, 10, 10)


def test_too_narrow_after_height_upscale_resizes_again_to_the_width():
    st = plan(AugmentParams(data_shape=(3, 10, 30)), 8, 12).stages
    assert st[0] == Resize(15, 10, 1)
    assert st[1] == Resize(30, int(np.float32(np.float32(30) / np.float32(15)) * np.float32(10)), 1)
    assert st[2] == Crop(0, (st[1].out_h - 10) // 2, 30, 10)


def test_centre_crop_offsets_floor():
    # spec §3.7: 6x8 -> 3x4 crop at (y=1, x=2)
    assert plan(AugmentParams(data_shape=(3, 3, 4)), 6, 8).stages[0] == Crop(2, 1, 4, 3)


def test_resize_shorter_edge_integer_arithmetic():
    # spec §3.7 [p11]: a portrait 17x7 image with resize=4 becomes 9 rows x 4 cols
    st = plan(AugmentParams(data_shape=(3, 4, 4), resize=4), 17, 7).stages
    assert st[0] == Resize(4, 9, 1)
    st = plan(AugmentParams(data_shape=(3, 4, 4), resize=40, inter_method=9), 67, 82).stages
    assert st[0] == Resize(40 * 82 // 67, 40, 3)  # 9 = auto: shrinking both sides -> area


def test_auto_interpolation():
    p = AugmentParams(data_shape=(3, 10, 10), inter_method=9)
    assert plan(p, 5, 6).stages[0].interp == 2  # upscale both -> cubic (chosen once, before the upscale)
    assert plan(p.replace(resize=20), 10, 30).stages[0] == Resize(60, 20, 2)
    assert plan(p.replace(resize=20), 20, 30).stages[0] == Resize(30, 20, 1)  # not larger in both -> linear


def test_pad_stage_and_fill_per_channel():
    assert plan(AugmentParams(data_shape=(3, 8, 8), pad=2, fill_value=9), 8, 8).stages[0] == Pad(2, (9.0,) * 3)
    assert plan(AugmentParams(data_shape=(4, 8, 8), pad=1), 8, 8, 4).stages[0] == Pad(1, (255.0,) * 3 + (0.0,))
    assert plan(AugmentParams(data_shape=(1, 8, 8), pad=1), 8, 8, 1).stages[0] == Pad(1, (255.0,))


def test_rotate_matrix_and_size():
    st = plan(AugmentParams(data_shape=(3, 10, 10), rotate=90), 20, 30).stages[0]
    assert isinstance(st, Warp) and (st.out_w, st.out_h) == (30, 20)
    m = st.matrix_array
    assert m.dtype == np.float32 and abs(m[0, 1] - 1) < 1e-6 and abs(m[1, 0] + 1) < 1e-6
    assert m[0, 2] == np.float32((30 - 20) / 2) and m[1, 2] == np.float32((20 + 30) / 2)


def test_max_img_size_caps_the_warp_output():
    st = plan(AugmentParams(data_shape=(3, 5, 5), max_img_size=5), 20, 30).stages
    assert (st[0].out_w, st[0].out_h) == (5, 5)


def test_crop_size_path():
    p = AugmentParams(data_shape=(3, 8, 8), min_crop_size=10, max_crop_size=10)
    assert plan(p, 20, 30).stages[0] == CropResize(10, 5, 10, 10, 8, 8, 1)
    with pytest.raises(ValueError, match="input image size smaller than max_crop_size"):
        plan(p, 9, 30)


def test_random_resized_crop_falls_through_to_centre_crop_when_no_try_fits():
    # full area with aspect 0.5-0.6 on a square image never fits (one side always exceeds it)
    p = AugmentParams(data_shape=(3, 8, 8), random_resized_crop=True, min_aspect_ratio=0.5,
                      max_aspect_ratio=0.6)
    st = plan(p, 20, 20).stages
    assert st[0] == Crop(6, 6, 8, 8)
    assert draws_used(p, 20, 20) == 10 * 3 + 2  # 10 tries of (area, ratio, coin) + contrast, illumination


# --- random draws (§3.12) ---------------------------------------------------------------------------------
def test_draw_counts():
    base = AugmentParams(data_shape=(3, 8, 8))
    assert draws_used(base, 20, 20) == 2  # contrast and illumination always drawn for float outputs
    assert draws_used(base.replace(dtype="uint8"), 20, 20) == 0
    assert draws_used(base.replace(dtype="int8"), 20, 20) == 2
    assert draws_used(base.replace(rand_mirror=True), 20, 20) == 4  # bernoulli takes two
    assert draws_used(base.replace(inter_method=10, resize=10), 20, 20) == 4  # resize + crop interp
    assert draws_used(base.replace(rotate=30), 20, 20) == 2 + 4  # shear, angle (range [0,0]), scale, ratio
    assert draws_used(base.replace(brightness=0.1), 20, 20) == 2 + 3 + 2  # ab, ac, as + shuffle(3)
    assert draws_used(base.replace(random_h=5), 20, 20) == 2 + 6
    assert draws_used(base.replace(rand_crop=True), 20, 20) == 2 + 2


def test_rand_crop_draws_y_then_x_then_mirror():
    p = AugmentParams(data_shape=(3, 8, 8), rand_crop=True, rand_mirror=True, dtype="uint8")
    g = MT19937(42)
    y = uniform_int(g, 0, 30 - 8)
    x = uniform_int(g, 0, 50 - 8)
    mirror = bernoulli_half(g)
    pl = plan(p, 30, 50, seed=42)
    assert pl.stages[0] == Crop(x, y, 8, 8) and pl.mirror == mirror


def test_contrast_and_illumination_draws():
    p = AugmentParams(data_shape=(3, 8, 8), max_random_contrast=0.3, max_random_illumination=20, scale=0.5,
                      std_r=2, std_g=4, std_b=8)
    g = MT19937(7)
    f = np.float32
    c = f(f(f(f(f(u01(g) * f(0.3)) * f(2)) - f(0.3)) + f(1)) * f(0.5))
    i = f(f(f(f(u01(g) * f(20)) * f(2)) - f(20)) * f(0.5))
    n = plan(p, 8, 8, seed=7).normalize
    assert n.mult == tuple(float(f(c / f(s))) for s in (2, 4, 8))
    assert n.bias == tuple(float(f(i / f(s))) for s in (2, 4, 8))


def test_seed_aug_needs_a_slot_and_reseeds():
    p = AugmentParams(data_shape=(3, 8, 8), rand_crop=True, seed_aug=5)
    with pytest.raises(ValueError, match="slot"):
        plan(p, 30, 30)
    g = MT19937(999)
    a = Planner(p).plan_sample(30, 30, 3, g, slot=1)
    g2 = MT19937(1 + 5 + 111)
    y, x = uniform_int(g2, 0, 22), uniform_int(g2, 0, 22)
    assert a.stages[0] == Crop(x, y, 8, 8)


def test_plan_batch_is_plan_sample_in_order():
    p = AugmentParams(data_shape=(3, 8, 8), rand_crop=True, brightness=0.2)
    shapes = [(20, 30, 3), (40, 12, 3), (9, 9, 3)]
    g1, g2 = MT19937(3), MT19937(3)
    batch = Planner(p).plan_batch(shapes, g1)
    assert batch == [Planner(p).plan_sample(*s, g2) for s in shapes]
    with pytest.raises(ValueError):
        Planner(p).plan_batch(shapes, g1, slots=[0, 1])


# --- plans as data ----------------------------------------------------------------------------------------
def test_plans_are_picklable_hashable_data():
    p = AugmentParams(data_shape=(3, 8, 8), rotate=20, pad=2, brightness=0.2, contrast=0.1, saturation=0.3,
                      random_h=10, pca_noise=0.1, rand_mirror=True, rand_crop=True)
    pl = plan(p, 30, 40)
    assert pickle.loads(pickle.dumps(pl)) == pl and hash(pl) == hash(pickle.loads(pickle.dumps(pl)))
    assert isinstance(pl.normalize, Normalize) and pl.sizes()[-1] == (8, 8)
    geo = geometric_stages(pl)
    assert [type(s) for s in geo] == [Warp, Pad, Crop]
    assert all(isinstance(s, GEOMETRIC_STAGES) for s in geo)


def test_intensity_slot_is_a_stage_and_runs():
    assert Intensity in typing.get_args(Stage)
    img = np.arange(12, dtype=np.uint16).reshape(2, 6, 1) * 5000
    pl = SamplePlan((2, 6, 1), "uint16", (1, 2, 6),
                    (Intensity(2.0, 1.0), Normalize("uint16", (0,), False, (0.0,), (1.0,), (0.0,))))
    out = np.empty((1, 2, 6), np.uint16)
    execute(pl, img, out)
    np.testing.assert_array_equal(out[0], np.minimum(img[:, :, 0].astype(np.int64) * 2 + 1, 65535))


def test_mean_image_checks():
    p = AugmentParams(data_shape=(3, 8, 8), mean_img="mean.bin")
    with pytest.raises(ValueError, match="mean_image"):
        Planner(p)
    with pytest.raises(ValueError, match="shape"):
        Planner(p, mean_image=np.zeros((3, 8, 9), np.float32))
    assert Planner(p.replace(dtype="uint8")).plan_sample(8, 8, 3, MT19937(1)).normalize.mean_image is None


@pytest.mark.parametrize("h,w,c,match", [(0, 5, 3, "empty"), (8, 8, 1, "channels")])
def test_bad_shapes(h, w, c, match):
    with pytest.raises(ValueError, match=match):
        plan(AugmentParams(data_shape=(3, 4, 4)), h, w, c)


def test_executor_checks_its_inputs():
    pl = plan(AugmentParams(data_shape=(3, 4, 4)), 8, 8)
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="plan was made for"):
        execute(pl, np.zeros((8, 9, 3), np.uint8), np.empty((3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="out must be"):
        execute(pl, img, np.empty((3, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="out must be"):
        execute(pl, img, np.empty((4, 4), np.float32))
    with pytest.raises(ValueError, match="plan was made for uint8"):
        execute(pl, img.astype(np.uint16), np.empty((3, 4, 4), np.float32))


# --- mask replay ------------------------------------------------------------------------------------------
def test_mask_mode_replays_geometry_with_nearest_and_zero_fill():
    p = AugmentParams(data_shape=(3, 16, 16), resize=20, pad=3, fill_value=200, mirror=True, brightness=0.3)
    pl = plan(p, 30, 25)
    rng = np.random.default_rng(0)
    mask = rng.integers(1, 6, (30, 25)).astype(np.uint8)
    out = np.empty((1, 16, 16), np.uint8)
    execute(pl, mask, out, mode="mask")
    r = pl.stages[0]
    ref = cv2.copyMakeBorder(cv2.resize(mask, (r.out_w, r.out_h), interpolation=cv2.INTER_NEAREST),
                             3, 3, 3, 3, cv2.BORDER_CONSTANT, value=0)
    cr = pl.stages[2]
    np.testing.assert_array_equal(out[0], ref[cr.y:cr.y + 16, cr.x:cr.x + 16][:, ::-1])


def test_mask_mode_with_warp_keeps_labels():
    p = AugmentParams(data_shape=(3, 24, 24), max_rotate_angle=40, max_shear_ratio=0.2, fill_value=255)
    pl = plan(p, 30, 30, seed=4)
    labels = np.repeat(np.arange(1, 7, dtype=np.int32), 150).reshape(30, 30)
    out = np.empty((2, 24, 24), np.int32)
    execute(pl, np.stack([labels, labels * 10], axis=-1), out, mode="mask")
    assert set(np.unique(out[0])) <= set(range(7)) and 0 in out[0]
    np.testing.assert_array_equal(out[1], out[0] * 10)
    with pytest.raises(ValueError, match="without loss"):
        execute(pl, labels, np.empty((1, 24, 24), np.uint8), mode="mask")
    with pytest.raises(ValueError, match="channels"):
        execute(pl, labels, np.empty((2, 24, 24), np.int32), mode="mask")
