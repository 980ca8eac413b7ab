"""ImageRecordIter keyword arguments parsed like MXNet 1.9.1 (spec §3.1, §3.2, §5; README differences)."""
from __future__ import annotations

import dataclasses
import pathlib
import warnings

import numpy as np
import pytest

from recordgpu.imageiter.params import (IterParams, UnknownArgumentWarning, known_parameters,
                                        parse_iter_kwargs)

BASE = dict(path_imgrec="x.rec", data_shape=(3, 32, 32), batch_size=4)


def parse(**kw):
    return parse_iter_kwargs(**{**BASE, **kw})


def f32(x: float) -> float:
    return float(np.float32(x))


# Every parameter of spec §3.2 with its MXNet default (owning structs in the comments).
SPEC_DEFAULTS = {
    # ImageRecParserParam
    "path_imglist": "", "path_imgidx": "", "aug_seq": "aug_default", "label_width": 1,
    "preprocess_threads": 4, "verbose": True, "num_parts": 1, "part_index": 0, "device_id": 0,
    "shuffle_chunk_size": 0, "shuffle_chunk_seed": 0, "seed_aug": None,
    # ImageRecordParam / BatchParam / PrefetcherParam
    "shuffle": False, "seed": 0, "round_batch": True, "prefetch_buffer": 4, "ctx": "gpu", "dtype": None,
    # DefaultImageAugmentParam
    "resize": -1, "rand_crop": False, "random_resized_crop": False, "max_rotate_angle": 0,
    "max_aspect_ratio": 0.0, "min_aspect_ratio": None, "max_shear_ratio": 0.0, "max_crop_size": -1,
    "min_crop_size": -1, "max_random_scale": 1.0, "min_random_scale": 1.0, "max_random_area": 1.0,
    "min_random_area": 1.0, "max_img_size": 1e10, "min_img_size": 0.0, "brightness": 0.0, "contrast": 0.0,
    "saturation": 0.0, "pca_noise": 0.0, "random_h": 0, "random_s": 0, "random_l": 0, "rotate": -1,
    "fill_value": 255, "inter_method": 1, "pad": 0, "rotate_list": (),
    # ImageNormalizeParam
    "mirror": False, "rand_mirror": False, "mean_img": "", "mean_r": 0.0, "mean_g": 0.0, "mean_b": 0.0,
    "mean_a": 0.0, "std_r": 1.0, "std_g": 1.0, "std_b": 1.0, "std_a": 1.0, "scale": 1.0,
    "max_random_contrast": 0.0, "max_random_illumination": 0.0,
    # recordgpu
    "device": "auto", "on_error": "raise", "data_name": "data", "label_name": "softmax_label",
    "intensity_units": "stored", "path_maskrec": "", "path_maskidx": "", "mask_name": "mask", "return_meta": False,
}
# recordgpu options whose default is None (type checked separately: None is not their value type)
NONE_DEFAULTS = ("window", "intensity_range", "clip", "normalize", "percentiles")


def test_every_parameter_and_default():
    p = parse()
    assert set(known_parameters()) == set(SPEC_DEFAULTS) | set(NONE_DEFAULTS) | {"path_imgrec", "data_shape",
                                                                                 "batch_size"}
    assert all(getattr(p, name) is None for name in NONE_DEFAULTS)
    for name, default in SPEC_DEFAULTS.items():
        assert getattr(p, name) == default, name
        assert type(getattr(p, name)) is type(default), name
    assert (p.path_imgrec, p.data_shape, p.batch_size) == ("x.rec", (3, 32, 32), 4)
    assert p.ignored == () and p.output_dtype == np.float32 and p.channels == 3


def test_params_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        parse().batch_size = 8


def test_oracle_cases_parse_without_warnings(oracle_cases):
    for name, case in oracle_cases.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            p = parse_iter_kwargs(**case["kwargs"])
        (_, data_shape), = case["provide_data"]
        (_, label_shape), = case["provide_label"]
        assert [p.batch_size, *p.data_shape] == data_shape, name
        assert label_shape == ([p.batch_size] if p.label_width == 1 else [p.batch_size, p.label_width]), name


# --- required parameters and MXNet's messages -------------------------------------------------------
def test_missing_path_imgrec():
    for kw in ({}, {"path_imgrec": ""}, {"path_imgrec": None}):
        with pytest.raises(ValueError, match="^ImageRecordIter2: must specify image_rec$"):
            parse_iter_kwargs(data_shape=(3, 4, 4), batch_size=2, **kw)


def test_missing_data_shape_and_batch_size():
    with pytest.raises(ValueError, match=r"^Required parameter data_shape of Shape\(tuple\) is not presented$"):
        parse_iter_kwargs(path_imgrec="x.rec", batch_size=2)
    with pytest.raises(ValueError, match=r"^Required parameter batch_size of int \(non-negative\) is not presented$"):
        parse_iter_kwargs(path_imgrec="x.rec", data_shape=(3, 4, 4))


# --- data_shape ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [(3, 224, 224), [3, 224, 224], "(3, 224, 224)", "[3,224,224]", "3,224,224",
                                   " ( 3 , 224 , 224 , ) ", "(3L, 224L, 224L)", np.array([3, 224, 224]),
                                   (np.int64(3), 224, 224)])
def test_data_shape_forms(value):
    p = parse(data_shape=value)
    assert p.data_shape == (3, 224, 224) and all(type(d) is int for d in p.data_shape)


def test_data_shape_errors():
    with pytest.raises(ValueError, match=r"^value \[4,4\]for Parameter data_shape has wrong dimensions, "
                                         r"expected dimension=3$"):
        parse(data_shape=(4, 4))
    with pytest.raises(ValueError, match=r"value \[3\]for Parameter data_shape has wrong dimensions"):
        parse(data_shape=3)
    with pytest.raises(ValueError, match=r"value \[\]for Parameter data_shape has wrong dimensions"):
        parse(data_shape="()")
    with pytest.raises(ValueError, match=r"^Invalid output shape \[2,4,4\]"):
        parse(data_shape=(2, 4, 4))
    with pytest.raises(ValueError, match=r"^value \[3,0,4\]for Parameter data_shape is invalid, the input "
                                         r"shape must be nonzero in all dimensions$"):
        parse(data_shape=(3, 0, 4))
    with pytest.raises(ValueError, match="positive"):
        parse(data_shape=(3, -1, 4))
    for bad in ("abc", "(3 224 224)", "(3,,4)", (3.0, 4, 4), (True, 4, 4)):
        with pytest.raises(ValueError, match=r"Invalid Parameter format for data_shape expect Shape\(tuple\)"):
            parse(data_shape=bad)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_valid_channel_counts(channels):
    assert parse(data_shape=(channels, 8, 8)).channels == channels


# --- booleans, integers, floats ----------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [(True, True), (False, False), ("True", True), ("true", True),
                                             ("FALSE", False), ("1", True), ("0", False), (1, True), (0, False),
                                             (np.bool_(True), True)])
def test_bool_forms(value, expected):
    assert parse(shuffle=value).shuffle is expected


@pytest.mark.parametrize("value", ["yes", 2, "", None, 1.0])
def test_bool_errors(value):
    with pytest.raises(ValueError, match=f"^Invalid Parameter format for rand_crop expect boolean but "
                                         f"value='{value}'$"):
        parse(rand_crop=value)


@pytest.mark.parametrize("value, expected", [(40, 40), ("40", 40), (" 40 ", 40), ("+40", 40), (np.int32(40), 40),
                                             ("-1", -1)])
def test_int_forms(value, expected):
    assert parse(resize=value).resize == expected


@pytest.mark.parametrize("value", [40.0, "4.5", True, "0x10", "abc", 2**31, "1e3"])
def test_int_errors(value):
    with pytest.raises(ValueError, match=f"^Invalid Parameter format for resize expect int but value='{value}'$"):
        parse(resize=value)


def test_lower_bounds():
    with pytest.raises(ValueError, match="^value 0 for Parameter label_width should be greater equal to 1$"):
        parse(label_width=0)
    with pytest.raises(ValueError, match="^value -2 for Parameter preprocess_threads should be greater equal to 1$"):
        parse(preprocess_threads=-2)


@pytest.mark.parametrize("value, expected", [
    (123.68, f32(123.68)), ("123.68", f32(123.68)), (1 / 255, f32(1 / 255)), (2, 2.0), ("1e-3", f32(1e-3)),
    (" 7.5", 7.5), ("1.5f", 1.5), ("-0", -0.0), ("inf", float("inf")), ("Infinity", float("inf")),
    (np.float32(0.1), f32(0.1)), (".5", 0.5), ("5.", 5.0),
    # dmlc's own strtof: float(16777217) rounds to 16777216, + 0.5f rounds to even again -> 16777216,
    # where a correctly rounded parse of 16777217.5 would give 16777218
    ("16777217.5", 16777216.0),
])
def test_float_forms_hold_mxnets_float(value, expected):
    got = parse(mean_r=value).mean_r
    assert got == expected and np.copysign(1, got) == np.copysign(1, expected)


def test_float_nan():
    assert np.isnan(parse(scale="nan").scale)


def test_float_errors():
    with pytest.raises(ValueError, match="^Invalid Parameter format for mean_r expect float but value='abc'$"):
        parse(mean_r="abc")
    with pytest.raises(ValueError, match="^Invalid Parameter format for mean_r expect float but value=''$"):
        parse(mean_r="")
    with pytest.raises(ValueError, match="^Some trailing characters could not be parsed: 'abc'$"):
        parse(mean_r="1.5abc")
    with pytest.raises(ValueError, match="^Some trailing characters could not be parsed: ' '$"):
        parse(mean_r="1.5 ")
    with pytest.raises(ValueError, match="^Invalid Parameter format for mean_r expect float but value='True'$"):
        parse(mean_r=True)
    with pytest.raises(ValueError, match=r"^Out of range value for max_img_size, value='1e\+39'$"):
        parse(max_img_size=1e39)
    with pytest.raises(ValueError, match="^Out of range value for scale, value='5e38'$"):
        parse(scale="5e38")


def test_optional_values():
    assert parse(seed_aug=None).seed_aug is None
    assert parse(seed_aug="None").seed_aug is None
    assert parse(seed_aug=5).seed_aug == 5 and parse(seed_aug="5").seed_aug == 5
    with pytest.raises(ValueError, match="^Invalid Parameter format for seed_aug expect int or None but value='x'$"):
        parse(seed_aug="x")
    assert parse(min_aspect_ratio=0.75).min_aspect_ratio == 0.75
    assert parse(min_aspect_ratio="0.1").min_aspect_ratio == f32(0.1)
    assert parse(min_aspect_ratio="None").min_aspect_ratio is None
    with pytest.raises(ValueError, match="^Invalid Parameter format for min_aspect_ratio expect float or None "
                                         "but value='abc'$"):
        parse(min_aspect_ratio="abc")


def test_size_t_and_uint32():
    assert parse(shuffle_chunk_size="64").shuffle_chunk_size == 64
    assert parse(batch_size="8").batch_size == 8
    with pytest.raises(ValueError, match="^Invalid Parameter format for prefetch_buffer expect long "
                                         r"\(non-negative\) but value='x'$"):
        parse(prefetch_buffer="x")


# --- recordgpu's deliberate differences --------------------------------------------------------------
def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        parse(batch_size=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer.*-1"):
        parse(batch_size=-1)
    with pytest.raises(ValueError, match=r"^Invalid Parameter format for batch_size expect int \(non-negative\) "
                                         "but value='4.0'$"):
        parse(batch_size=4.0)


def test_unknown_kwargs_warn_once_naming_them():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = parse(rand_mirorr=True, path_root="/data", mean_r=1)
    assert len(caught) == 1
    w = caught[0]
    assert w.category is UnknownArgumentWarning and issubclass(UnknownArgumentWarning, UserWarning)
    assert "'rand_mirorr'" in str(w.message) and "'path_root'" in str(w.message)
    assert pathlib.Path(w.filename).name == "test_params.py"  # points at the caller, not the library
    assert p.ignored == ("rand_mirorr", "path_root") and p.rand_mirror is False


def test_no_warning_for_known_kwargs():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse(ctx="cpu", data_name="img", label_name="lbl", device="cpu", on_error="skip", device_id=-1)


@pytest.mark.parametrize("value, expected", [(None, None), ("float32", "float32"), ("uint8", "uint8"),
                                             ("int8", "int8"), ("uint16", "uint16"), ("int16", "int16"),
                                             ("float16", "float16"), (np.float32, "float32"),
                                             (np.dtype("uint16"), "uint16"), ("None", None)])
def test_dtype_forms(value, expected):
    p = parse(dtype=value)
    assert p.dtype == expected
    assert p.output_dtype == np.dtype(expected or "float32")


@pytest.mark.parametrize("value", ["float64", "int32", "int64", np.float64])
def test_dtype_known_but_unsupported(value):
    with pytest.raises(ValueError, match=r"^unknown dtype for ImageRecordIter2\."):
        parse(dtype=value)


def test_dtype_not_a_dtype():
    with pytest.raises(ValueError, match=r"^Invalid Input: 'foo', valid values are: \{None, 'float16', 'float32', "
                                         r"'float64', 'int16', 'int32', 'int64', 'int8', 'uint16', 'uint8'\}$"):
        parse(dtype="foo")


def test_ctx_is_accepted_and_checked_like_mxnet():
    assert parse(ctx="cpu").ctx == "cpu" and parse(ctx="gpu").ctx == "gpu"
    with pytest.raises(ValueError, match=r"^Invalid Input: 'tpu', valid values are: \{'cpu', 'gpu'\}$"):
        parse(ctx="tpu")


def test_recordgpu_options():
    p = parse(device="gpu", on_error="skip", data_name="img", label_name="y", device_id=1)
    assert (p.device, p.on_error, p.data_name, p.label_name, p.device_id) == ("gpu", "skip", "img", "y", 1)
    with pytest.raises(ValueError, match="device must be one of"):
        parse(device="cuda:0")
    with pytest.raises(ValueError, match="on_error must be one of"):
        parse(on_error="ignore")
    with pytest.raises(ValueError, match="data_name must be a string"):
        parse(data_name=3)
    with pytest.raises(ValueError, match="device_id must be -1"):
        parse(device_id=-2)


def test_partition_checks():
    assert (parse(num_parts=3, part_index=2).part_index) == 2
    with pytest.raises(ValueError, match=r"part_index must be in \[0, num_parts\)"):
        parse(num_parts=2, part_index=2)
    with pytest.raises(ValueError, match="num_parts must be at least 1"):
        parse(num_parts=0)


def test_paths_accept_pathlike_and_none_means_unset(tmp_path):
    p = parse_iter_kwargs(path_imgrec=tmp_path / "a.rec", data_shape=(3, 4, 4), batch_size=1,
                          path_imgidx=tmp_path / "a.idx", path_imglist=None, mean_img=None)
    assert p.path_imgrec == str(tmp_path / "a.rec") and p.path_imgidx == str(tmp_path / "a.idx")
    assert p.path_imglist == "" and p.mean_img == ""


@pytest.mark.parametrize("value, expected", [("90", (90,)), ("90,180", (90, 180)), ("90,", (90,)),
                                             (" 45, -90", (45, -90)), ("abc", (0,)), ("12x,3", (12, 3)),
                                             ("", ()), (None, ()), ([90, 180], (90, 180)), (270, (270,))])
def test_rotate_list(value, expected):
    assert parse(rotate_list=value).rotate_list == expected


def test_rotate_list_errors():
    with pytest.raises(ValueError, match="empty entry"):
        parse(rotate_list="90,,180")
    with pytest.raises(ValueError, match="integers"):
        parse(rotate_list=[90.5])


def test_augment_kwargs_feed_augment_params():
    from recordgpu.augment.params import AugmentParams

    p = parse(resize=40, rand_crop="1", mean_r="123.68", rotate_list="90", dtype="uint16", seed_aug=3)
    a = AugmentParams(**p.augment_kwargs())
    assert set(p.augment_kwargs()) == set(AugmentParams.field_names())
    assert (a.resize, a.rand_crop, a.rotate_list, a.dtype, a.seed_aug, a.data_shape) == \
        (40, True, (90,), "uint16", 3, (3, 32, 32))
    assert np.float32(a.mean_r) == np.float32(123.68)


def test_iterparams_fields_match_the_table():
    assert {f.name for f in dataclasses.fields(IterParams)} == set(known_parameters()) | {"ignored"}
