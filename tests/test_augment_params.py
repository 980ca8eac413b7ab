"""AugmentParams: MXNet's defaults (spec §3.2) and MXNet's parameter checks as ValueError."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from recordgpu.augment import AugmentParams


def test_defaults_are_mxnets():
    p = AugmentParams(data_shape=(3, 224, 224))
    assert (p.resize, p.rand_crop, p.random_resized_crop, p.max_rotate_angle) == (-1, False, False, 0)
    assert (p.max_aspect_ratio, p.min_aspect_ratio, p.max_shear_ratio) == (0.0, None, 0.0)
    assert (p.max_crop_size, p.min_crop_size) == (-1, -1)
    assert (p.max_random_scale, p.min_random_scale, p.max_random_area, p.min_random_area) == (1, 1, 1, 1)
    assert (p.max_img_size, p.min_img_size) == (1e10, 0.0)
    assert (p.brightness, p.contrast, p.saturation, p.pca_noise) == (0, 0, 0, 0)
    assert (p.random_h, p.random_s, p.random_l, p.rotate, p.fill_value, p.inter_method, p.pad) == \
        (0, 0, 0, -1, 255, 1, 0)
    assert p.mean_rgba == (0, 0, 0, 0) and p.std_rgba == (1, 1, 1, 1) and p.scale == 1
    assert (p.mirror, p.rand_mirror, p.mean_img, p.max_random_contrast, p.max_random_illumination) == \
        (False, False, "", 0, 0)
    assert p.dtype == "float32" and p.seed_aug is None and p.rotate_list == ()
    assert not (p.warp_enabled or p.rrc_active or p.crop_size_enabled or p.jitter_enabled
                or p.hsl_enabled or p.pca_enabled)


def test_from_kwargs_takes_augmenter_fields_and_ignores_the_rest():
    p = AugmentParams.from_kwargs({"path_imgrec": "a.rec", "batch_size": 4, "data_shape": "(3, 32, 32)",
                                   "resize": "40", "mirror": "True", "mean_r": 1.5, "dtype": None})
    assert p.data_shape == (3, 32, 32) and p.resize == 40 and p.mirror is True and p.mean_r == 1.5
    assert p.dtype == "float32"
    q = AugmentParams.from_kwargs({"data_shape": (3, 8, 8), "min_aspect_ratio": "None", "seed_aug": "None"})
    assert q.min_aspect_ratio is None and q.seed_aug is None


def test_rotate_list_parses_like_mxnet():
    assert AugmentParams(data_shape=(3, 8, 8), rotate_list="90,180,-30").rotate_list == (90, 180, -30)
    assert AugmentParams(data_shape=(3, 8, 8), rotate_list=[0, 90]).rotate_list == (0, 90)
    assert AugmentParams(data_shape=(3, 8, 8), rotate_list="90").warp_enabled


@pytest.mark.parametrize("dtype,name", [(None, "float32"), ("uint8", "uint8"), (np.uint16, "uint16"),
                                        ("int16", "int16"), ("float16", "float16"), ("int8", "int8")])
def test_output_dtypes(dtype, name):
    assert AugmentParams(data_shape=(3, 8, 8), dtype=dtype).dtype == name


@pytest.mark.parametrize("dtype", ["float64", "int32", "bogus"])
def test_unknown_dtype_raises(dtype):
    with pytest.raises(ValueError, match="unknown dtype"):
        AugmentParams(data_shape=(3, 8, 8), dtype=dtype)


@pytest.mark.parametrize("shape,match", [((2, 8, 8), "Invalid output shape"), ((3, 0, 8), "positive"),
                                         ((3, 8), "3 dimensions"), ((5, 8, 8), "Invalid output shape")])
def test_data_shape_checks(shape, match):
    with pytest.raises(ValueError, match=match):
        AugmentParams(data_shape=shape)


@pytest.mark.parametrize("inter", [5, 8, 11, -1])
def test_invalid_inter_method(inter):
    with pytest.raises(ValueError, match="invalid inter_method: valid value 0,1,2,3,9,10"):
        AugmentParams(data_shape=(3, 8, 8), inter_method=inter)


@pytest.mark.parametrize("kw", [dict(rotate=30), dict(max_rotate_angle=10), dict(max_shear_ratio=0.1),
                                dict(max_random_scale=1.2), dict(max_aspect_ratio=0.2), dict(max_img_size=100),
                                dict(min_img_size=10), dict(rotate_list="90")])
def test_affine_rejects_nearest(kw):
    with pytest.raises(ValueError, match="invalid inter_method"):
        AugmentParams(data_shape=(3, 8, 8), inter_method=0, **kw)
    assert AugmentParams(data_shape=(3, 8, 8), inter_method=1, **kw).warp_enabled


def test_nearest_is_fine_without_affine():
    assert AugmentParams(data_shape=(3, 8, 8), inter_method=0, resize=10).inter_method == 0


@pytest.mark.parametrize("kw", [dict(rand_crop=True), dict(min_random_scale=0.8), dict(max_random_scale=1.2),
                                dict(min_crop_size=4, max_crop_size=8)])
def test_random_resized_crop_conflicts(kw):
    with pytest.raises(ValueError, match="random_resized_crop"):
        AugmentParams(data_shape=(3, 8, 8), random_resized_crop=True, min_random_area=0.5, **kw)


@pytest.mark.parametrize("kw", [dict(min_aspect_ratio=0.0, max_aspect_ratio=1.3),
                                dict(min_random_area=0.9, max_random_area=0.5),
                                dict(min_aspect_ratio=1.5, max_aspect_ratio=1.2)])
def test_random_resized_crop_range_checks(kw):
    with pytest.raises(ValueError, match="random_resized_crop"):
        AugmentParams(data_shape=(3, 8, 8), random_resized_crop=True, **kw)


def test_random_resized_crop_without_randomness_is_inactive_and_does_not_enable_the_warp():
    p = AugmentParams(data_shape=(3, 8, 8), random_resized_crop=True)
    assert not p.rrc_active and not p.warp_enabled
    q = AugmentParams(data_shape=(3, 8, 8), random_resized_crop=True, max_aspect_ratio=0.25)
    assert q.rrc_active and not q.warp_enabled and q.aspect_bounds == (np.float32(0.75), np.float32(1.25))


def test_crop_size_checks():
    with pytest.raises(ValueError, match="both"):
        AugmentParams(data_shape=(3, 8, 8), max_crop_size=10)
    with pytest.raises(ValueError, match="input image size smaller than max_crop_size"):
        AugmentParams(data_shape=(3, 8, 8), min_crop_size=12, max_crop_size=10)
    assert AugmentParams(data_shape=(3, 8, 8), min_crop_size=6, max_crop_size=10).crop_size_enabled


@pytest.mark.parametrize("c", [1, 4])
@pytest.mark.parametrize("kw", [dict(brightness=0.1), dict(contrast=0.2), dict(saturation=0.3),
                                dict(random_h=10), dict(random_l=-5), dict(pca_noise=0.1)])
def test_colour_steps_need_three_channels(c, kw):
    with pytest.raises(ValueError, match="3 channels"):
        AugmentParams(data_shape=(c, 8, 8), **kw)
    AugmentParams(data_shape=(3, 8, 8), **kw)


def test_resize_must_be_positive_or_off():
    with pytest.raises(ValueError, match="resize"):
        AugmentParams(data_shape=(3, 8, 8), resize=0)


def test_type_errors_are_value_errors():
    with pytest.raises(ValueError, match="pad"):
        AugmentParams(data_shape=(3, 8, 8), pad="wide")
    with pytest.raises(ValueError, match="rand_crop"):
        AugmentParams(data_shape=(3, 8, 8), rand_crop="maybe")


def test_params_are_frozen_hashable_and_picklable():
    p = AugmentParams(data_shape=(3, 8, 8), rotate_list="1,2", seed_aug=3)
    with pytest.raises(AttributeError):
        p.resize = 3  # type: ignore[misc]
    assert hash(p) == hash(pickle.loads(pickle.dumps(p)))
    assert p.replace(resize=10).resize == 10 and p.resize == -1
