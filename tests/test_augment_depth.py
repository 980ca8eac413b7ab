"""Full-depth augmentation: 16-bit (and int16 / float32) images keep their values through every stage.

Sources: ``tests/data/oracle/gray16.rec`` / ``color16.rec`` (16-bit PNGs) and ``sources/*.npz`` (the exact
values those PNGs hold). Expected values are derived from the spec's formulas (centre crop offsets,
normalisation) or from OpenCV run on the 16-bit image itself: never from an 8-bit step.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from recordgpu.augment import (HSL, AugmentParams, Brightness, Contrast, Crop, Normalize, PCANoise, Planner,
                               SamplePlan, Saturation, execute)
from recordgpu.augment.cpu import affine_remap_maps
from recordgpu.codecs import decode_image
from recordgpu.recfile import RecordFile
from recordgpu.recordio import unpack
from recordgpu.rng import MT19937

ORACLE = Path(__file__).parent / "data" / "oracle"
SWAP = {1: [0], 3: [2, 1, 0]}


def decoded(name: str, channels: int) -> list[np.ndarray]:
    with RecordFile(ORACLE / f"{name}.rec", ORACLE / f"{name}.idx") as rf:
        return [decode_image(unpack(bytes(rf.payload(i)))[1], channels) for i in range(len(rf))]


def sources(name: str) -> list[np.ndarray]:
    z = np.load(ORACLE / "sources" / f"{name}.npz")
    return [z[f"arr_{i}"] for i in range(len(z.files))]


def run(params: AugmentParams, img: np.ndarray, seed: int = 111, mean_image=None) -> np.ndarray:
    plan = Planner(params, mean_image=mean_image).plan_sample(*img.shape, MT19937(seed), src_dtype=img.dtype)
    out = np.empty(params.data_shape, dtype=params.dtype)
    execute(plan, img, out)
    return out


def centre(img: np.ndarray, h: int, w: int) -> np.ndarray:
    y, x = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return img[y:y + h, x:x + w]


def chw(img_hwc: np.ndarray) -> np.ndarray:
    img_hwc = img_hwc if img_hwc.ndim == 3 else img_hwc[:, :, None]
    return img_hwc[:, :, SWAP[img_hwc.shape[2]]].transpose(2, 0, 1)


@pytest.fixture(scope="module")
def gray16():
    imgs = decoded("gray16", 1)
    for img, src in zip(imgs, sources("gray16")):  # precondition: the decoder keeps the stored values
        assert img.dtype == np.uint16
        np.testing.assert_array_equal(img[:, :, 0], src)
    return imgs


@pytest.fixture(scope="module")
def color16():
    imgs = decoded("color16", 3)
    for img, src in zip(imgs, sources("color16")):
        np.testing.assert_array_equal(img, src)
    return imgs


# --- raw values and exact float32 ----------------------------------------------------------------------
@pytest.mark.parametrize("mirror", [False, True])
def test_uint16_crop_only_returns_stored_values(gray16, color16, mirror):
    for imgs, c in ((gray16, 1), (color16, 3)):
        params = AugmentParams(data_shape=(c, 20, 20), dtype="uint16", mirror=mirror)
        for img in imgs:
            out = run(params, img)
            want = chw(centre(img, 20, 20))
            if mirror:
                want = want[:, :, ::-1]
            assert out.dtype == np.uint16
            np.testing.assert_array_equal(out, want)
            assert (out % 256 != 0).any()  # really 16-bit data, not v >> 8 << 8


def test_float32_holds_16bit_values_exactly(gray16, color16):
    for imgs, c in ((gray16, 1), (color16, 3)):
        params = AugmentParams(data_shape=(c, 20, 20))
        for img in imgs:
            np.testing.assert_array_equal(run(params, img), chw(centre(img, 20, 20)).astype(np.float32))


def test_float32_normalisation_in_source_units(color16):
    params = AugmentParams(data_shape=(3, 20, 20), mean_r=30000.5, mean_g=20000, mean_b=10000,
                           std_r=1000, std_g=2000, std_b=4000, scale=0.5)
    img = color16[0]
    p = chw(centre(img, 20, 20)).astype(np.float32)
    mean = np.array([30000.5, 20000, 10000], np.float32)[:, None, None]
    mult = (np.float32(0.5) / np.array([1000, 2000, 4000], np.float32))[:, None, None]
    np.testing.assert_array_equal(run(params, img), (p - mean) * mult + np.float32(0))


def test_float16_is_the_float32_result_rounded(color16):
    kw = dict(data_shape=(3, 20, 20), mean_r=123.25, std_r=3.0, scale=1 / 65535)
    f32 = run(AugmentParams(**kw), color16[1])
    f16 = run(AugmentParams(**kw, dtype="float16"), color16[1])
    assert f16.dtype == np.float16
    np.testing.assert_array_equal(f16, f32.astype(np.float16))


def test_int16_output_subtracts_rounded_mean_and_saturates(gray16):
    img = gray16[0]
    out = run(AugmentParams(data_shape=(1, 20, 20), dtype="int16", mean_r=1000.5), img)
    want = np.clip(centre(img, 20, 20)[:, :, 0].astype(np.int64) - 1001, -32768, 32767)[None]
    np.testing.assert_array_equal(out, want)
    assert out.max() == 32767  # values above 33768 saturate


def test_mean_image_in_source_units(color16):
    rng = np.random.default_rng(0)
    mean = rng.uniform(0, 65535, (3, 20, 20)).astype(np.float32)
    img = color16[2]
    out = run(AugmentParams(data_shape=(3, 20, 20), mean_img="m.bin"), img, mean_image=mean)
    np.testing.assert_array_equal(out, chw(centre(img, 20, 20)).astype(np.float32) - mean)


def test_pad_fill_value_in_source_units(gray16):
    img = gray16[4]  # 23 x 41
    out = run(AugmentParams(data_shape=(1, 27, 45), pad=2, fill_value=40000, dtype="uint16"), img)
    np.testing.assert_array_equal(out[0, 2:-2, 2:-2], img[:, :, 0])
    border = np.ones(out.shape[1:], bool)
    border[2:-2, 2:-2] = False
    assert (out[0][border] == 40000).all()


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_8bit_output_from_16bit_source_raises(gray16, dtype):
    params = AugmentParams(data_shape=(1, 20, 20), dtype=dtype)
    img = gray16[0]
    with pytest.raises(ValueError, match="uint16.*float32|float32.*uint16"):
        Planner(params).plan_sample(*img.shape, MT19937(111), src_dtype=img.dtype)
    # a plan made for an 8-bit source refuses a 16-bit image too
    plan = Planner(params).plan_sample(*img.shape, MT19937(111), src_dtype="uint8")
    with pytest.raises(ValueError, match="uint16"):
        execute(plan, img, np.empty(params.data_shape, dtype))


# --- resampling runs at the source depth ----------------------------------------------------------------
@pytest.mark.parametrize("inter", [0, 1, 2, 3, 4])
def test_resize_at_16_bits_is_opencv_on_the_uint16_image(gray16, color16, inter):
    for imgs, c in ((gray16, 1), (color16, 3)):
        params = AugmentParams(data_shape=(c, 24, 24), resize=30, inter_method=inter, dtype="uint16")
        for img in imgs:
            h, w = img.shape[:2]
            nh, nw = (30 * h // w, 30) if h > w else (30, 30 * w // h)
            ref = cv2.resize(img, (nw, nh), interpolation=inter)
            np.testing.assert_array_equal(run(params, img), chw(centre(ref, 24, 24)))


def test_upscale_of_small_16bit_image(gray16):
    img = gray16[4]  # 23 rows: smaller than 32, upscaled keeping the aspect, then centre-cropped
    out = run(AugmentParams(data_shape=(1, 32, 32), dtype="uint16"), img)
    nw = int(np.float32(np.float32(32) / np.float32(23)) * np.float32(41))
    ref = cv2.resize(img, (nw, 32), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(out, chw(centre(ref, 32, 32)))


def test_rotate_90_moves_16bit_values_exactly(gray16):
    """rotate=90 keeps the canvas; MXNet's matrix puts source column n - i on output row i (row 0: fill)."""
    src = gray16[0][:40, :40]
    out = run(AugmentParams(data_shape=(1, 40, 40), rotate=90, fill_value=7, dtype="uint16"), src)
    np.testing.assert_array_equal(out[0, 1:], np.rot90(src[:, :, 0])[:-1])
    assert (out[0, 0] == 7).all()


def test_warp_at_16_bits_uses_the_uint16_image(color16):
    img = color16[1]
    params = AugmentParams(data_shape=(3, 40, 40), max_rotate_angle=25, max_shear_ratio=0.1,
                           min_random_scale=0.8, max_random_scale=1.2, fill_value=50000, dtype="uint16")
    plan = Planner(params).plan_sample(*img.shape, MT19937(5), src_dtype="uint16")
    warp = plan.stages[0]
    map1, map2 = affine_remap_maps(warp.matrix_array, warp.out_w, warp.out_h)
    ref = cv2.remap(img, map1, map2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                    borderValue=(50000, 50000, 50000, 0))
    crop = plan.stages[1]
    out = np.empty(params.data_shape, np.uint16)
    execute(plan, img, out)
    np.testing.assert_array_equal(out, chw(ref[crop.y:crop.y + 40, crop.x:crop.x + 40]))
    # and it agrees with the 8-bit path on the high byte (within interpolation rounding)
    plan8 = Planner(params.replace(dtype="uint8", fill_value=50000 >> 8)).plan_sample(
        *img.shape, MT19937(5), src_dtype="uint8")
    out8 = np.empty(params.data_shape, np.uint8)
    execute(plan8, (img >> 8).astype(np.uint8), out8)
    assert np.abs((out >> 8).astype(int) - out8).max() <= 1
    assert (out % 256 != 0).mean() > 0.9


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_int16_and_float32_sources_resample_at_their_depth(dtype):
    rng = np.random.default_rng(3)
    img = (rng.normal(0, 3000, (37, 29)) if dtype == np.int16 else rng.normal(0, 1, (37, 29)))
    img = cv2.GaussianBlur(img, (5, 5), 1.5).astype(dtype)[:, :, None]
    params = AugmentParams(data_shape=(1, 16, 16), resize=20, inter_method=2)
    out = run(params, img)
    ref = cv2.resize(img, (20, 25), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(out, centre(ref, 16, 16)[None].astype(np.float32))
    if dtype == np.int16:
        raw = run(params.replace(dtype="int16"), img)
        np.testing.assert_array_equal(raw, centre(ref, 16, 16)[None])
        with pytest.raises(ValueError, match="int16"):
            run(params.replace(dtype="uint16"), img)


# --- colour steps at 16 bits ----------------------------------------------------------------------------
def colour_plan(img: np.ndarray, *stages, out_dtype: str = "uint16") -> np.ndarray:
    h, w, c = img.shape
    plan = SamplePlan((h, w, c), img.dtype.name, (c, h, w),
                      (Crop(0, 0, w, h), *stages, Normalize(out_dtype, (2, 1, 0), False, (0.0,) * 3,
                                                            (1.0,) * 3, (0.0,) * 3)))
    out = np.empty((c, h, w), out_dtype)
    execute(plan, img, out)
    return out.transpose(1, 2, 0)[:, :, ::-1]  # back to HWC BGR


def test_brightness_saturates_at_65535(color16):
    img = color16[0]
    got = colour_plan(img, Brightness(1.7))
    want = np.clip(np.rint(img.astype(np.float32) * np.float32(1.7)), 0, 65535).astype(np.uint16)
    np.testing.assert_array_equal(got, want)
    assert got.max() == 65535 and (got[img > 40000] == 65535).all()
    assert (got % 256 != 0).mean() > 0.9


def test_contrast_uses_16bit_gray_mean(color16):
    img = color16[2]
    c = img.astype(np.int64)
    gray = (c[:, :, 0] * 4899 + c[:, :, 1] * 9617 + c[:, :, 2] * 1868 + 8192) >> 14  # RGB2GRAY on BGR data
    a = np.float32(1.4)
    beta = np.float32(np.float32(1) - a) * np.float32(gray.mean())
    want = np.clip(np.rint(img.astype(np.float32) * a + beta), 0, 65535).astype(np.uint16)
    np.testing.assert_array_equal(colour_plan(img, Contrast(float(a))), want)


def test_saturation_at_16_bits(color16):
    img = color16[3]
    c = img.astype(np.int64)
    gray = ((c[:, :, 0] * 4899 + c[:, :, 1] * 9617 + c[:, :, 2] * 1868 + 8192) >> 14).astype(np.float32)
    a = np.float32(1.6)
    want = img.astype(np.float32) * a + gray[:, :, None] * np.float32(np.float32(1) - a)
    want = np.clip(np.rint(want), 0, 65535).astype(np.uint16)
    np.testing.assert_array_equal(colour_plan(img, Saturation(float(a))), want)


def test_pca_noise_truncates_and_saturates_at_16_bits(color16):
    img = color16[4]
    add = (30000.7, -20000.2, 1.9)
    want = np.clip(np.trunc(img.astype(np.float32) + np.array(add, np.float32)), 0, 65535).astype(np.uint16)
    got = colour_plan(img, PCANoise(add))
    np.testing.assert_array_equal(got, want)
    assert got[:, :, 0].max() == 65535 and got[:, :, 1].min() == 0


def test_hsl_lightness_on_gray_pixels_at_16_bits():
    v = np.linspace(0, 65535, 64 * 3).astype(np.uint16).reshape(8, 24)
    img = np.repeat(v[:, :, None], 3, axis=2)
    got = colour_plan(img, HSL(0, 0, 10000 * 257 // 255))
    want = np.clip(v.astype(np.int64) + 10000 * 257 // 255, 0, 65535)
    assert np.abs(got[:, :, 0].astype(np.int64) - want).max() <= 1
    assert (got == got[:, :, :1]).all() and got.max() == 65535


def test_hsl_identity_and_16bit_matches_8bit_meaning(color16):
    img = color16[0]
    same = colour_plan(img, HSL(0, 0, 0))
    assert np.abs(same.astype(np.int64) - img).max() <= 2
    img8 = (img // 257).astype(np.uint8)
    img16 = img8.astype(np.uint16) * 257
    got8 = colour_plan(img8, HSL(12, 30, -20), out_dtype="uint8")
    got16 = colour_plan(img16, HSL(12, 30 * 257, -20 * 257))
    # 8 bits quantise H, L and S to integers between the conversions; 16 bits do not
    assert np.abs(got16.astype(np.float64) / 257 - got8).max() <= 4
    assert np.abs(got16.astype(np.float64) / 257 - got8).mean() < 0.6


def test_hsl_8bit_equals_opencv_hls2bgr_and_nearly_bgr2hls():
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (64, 256, 3)).astype(np.uint8)
    got = colour_plan(img, HSL(0, 0, 0), out_dtype="uint8")
    ref = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2HLS), cv2.COLOR_HLS2BGR)
    # OpenCV >= 4.11 computes the hue of a few colours with FMA: rounding ties land elsewhere than 3.4's
    assert (got != ref).any(axis=2).mean() < 0.002


@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_hsl_refuses_sources_without_a_lightness_range(dtype):
    params = AugmentParams(data_shape=(3, 8, 8), random_l=10)
    with pytest.raises(ValueError, match="HSL"):
        Planner(params).plan_sample(10, 10, 3, MT19937(1), src_dtype=dtype)


def test_planner_scales_colour_amounts_to_16_bits():
    params = AugmentParams(data_shape=(3, 8, 8), pca_noise=0.5, random_l=20, random_s=20, random_h=10)
    p8 = Planner(params).plan_sample(10, 10, 3, MT19937(9), src_dtype="uint8")
    p16 = Planner(params).plan_sample(10, 10, 3, MT19937(9), src_dtype="uint16")
    h8, h16 = p8.stages[1], p16.stages[1]
    assert (h16.dh, h16.ds, h16.dl) == (h8.dh, h8.ds * 257, h8.dl * 257)
    pca8, pca16 = p8.stages[2], p16.stages[2]
    assert pca16.add_bgr == tuple(float(np.float32(np.float32(a) * np.float32(257))) for a in pca8.add_bgr)
