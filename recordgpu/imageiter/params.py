"""``ImageRecordIter`` keyword arguments, parsed the way MXNet 1.9.1 parses them (spec §3.1, §3.2, §5).

MXNet turns every keyword value into ``str(value)`` and hands it to dmlc's parameter parser; this module
reproduces that, so what MXNet accepts is accepted here with the same value, and what MXNet rejects is
rejected with MXNet's message (as :class:`ValueError`):

* ints go through ``istream >> int`` (``4``, ``"4"``, ``" 4 "``; not ``4.0`` or ``True``); out-of-range or
  malformed values give "Invalid Parameter format for <key> expect <type> but value='<value>'".
* floats go through dmlc's own ``strtof`` (dmlc ``strtonum.h``: not correctly rounded in rare cases, and
  it accepts ``inf``, ``nan``, an ``f`` suffix and even ``"."``); the value kept is the C++ ``float``
  MXNet holds, as a Python float. ``min_aspect_ratio`` (an ``optional<float>``) uses ``istream``.
* bools accept ``True``/``False``, ``"true"``/``"false"`` in any case, ``1``/``0``.
* ``data_shape`` accepts a tuple, a list, or a string ``"(3, 224, 224)"``/``"[3,224,224]"``; recordgpu
  also takes ``"3,224,224"`` and numpy arrays, which MXNet does not.
* ``rotate_list`` (a hidden parameter MXNet reads from leftover kwargs with ``sscanf`` + ``atoi``) accepts
  ``"90,180"``; recordgpu also takes a sequence of ints.

Deliberate differences (spec README): ``batch_size=0`` is an error (MXNet hangs); unknown keyword
arguments are accepted with one :class:`UnknownArgumentWarning` naming them (MXNet ignores them
silently); ``dtype`` also accepts ``uint16``, ``int16`` and ``float16`` and numpy dtypes; ``None`` for a
path or ``mean_img`` means "not set". Augmenter checks (``inter_method``, crop sizes, ...) live in
:mod:`recordgpu.augment.params`; this module only carries those values.

recordgpu's own keywords (Python values; strings like ``"(40, 400)"`` are accepted for the tuples):
``device``, ``on_error``, ``data_name``, ``label_name``; the intensity options ``window``,
``intensity_range``, ``clip``, ``normalize``, ``percentiles``, ``intensity_units`` (meaning and checks in
:mod:`recordgpu.augment.params`); paired masks ``path_maskrec``, ``path_maskidx`` and ``mask_name``;
``return_meta`` (each batch's per-record metadata as ``batch.meta``).
"""
from __future__ import annotations

import math
import os
import re
import sys
import warnings
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import Any, Callable

import numpy as np

from ..augment.params import AugmenterFields
from .distributed import resolve_parts

__all__ = ["IterParams", "UnknownArgumentWarning", "parse_iter_kwargs", "known_parameters", "SUPPORTED_DTYPES"]

SUPPORTED_DTYPES = ("float32", "uint8", "int8", "uint16", "int16", "float16")
# MXNet's enum for ``dtype`` (PrefetcherParam) plus recordgpu's additions; a value outside it is a format
# error, a numpy dtype name inside it but unsupported is "unknown dtype for ImageRecordIter2."
_DTYPE_ENUM = ("float16", "float32", "float64", "int16", "int32", "int64", "int8", "uint16", "uint8")
_CTX_ENUM = ("cpu", "gpu")
_DEVICES = ("auto", "cpu", "gpu")
_ON_ERROR = ("raise", "skip")
_NORMALIZE_MODES = ("zscore", "percentile")
_INTENSITY_UNITS = ("stored", "modality")

_C_SPACE = " \t\n\v\f\r"          # isspace() in the C locale (istream skipws, atoi)
_DMLC_SPACE = " \t\n\r\f"         # dmlc::isspace (strtonum.h) has no \v
_INT_RE = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")
_FLOAT_RE = re.compile(r"[ \t\n\v\f\r]*([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
_F32_MAX_SIG = np.float32(3.402823466)    # kMaxSignificandForMaxExponent
_F32_MIN_SIG = np.float32(1.175494351)    # kMaxSignificandForNegMaxExponent
_F32 = np.float32


class UnknownArgumentWarning(UserWarning):
    """``ImageRecordIter`` got keyword arguments it does not know (MXNet would ignore them silently)."""


# --------------------------------------------------------------------------------------------------
# value parsers: each takes (key, raw value) and returns the parsed value or raises ValueError
# --------------------------------------------------------------------------------------------------
def _bad(key: str, type_name: str, text: str) -> ValueError:
    return ValueError(f"Invalid Parameter format for {key} expect {type_name} but value='{text}'")


def _istream_int(key: str, value: Any, type_name: str, lo: int, hi: int, unsigned: bool = False,
                 allow_l_suffix: bool = False) -> int:
    """``istream >> T`` then dmlc's "only whitespace may follow" check."""
    text = str(value)
    m = _INT_RE.match(text)
    rest = text[m.end():] if m else text
    if allow_l_suffix and rest.startswith("L"):
        rest = rest[1:]
    if m is None or rest.strip(_C_SPACE):
        raise _bad(key, type_name, text)
    v = int(m.group(1))
    if unsigned and v < 0:
        v = -v
        if v > hi:
            raise _bad(key, type_name, text)
        return (-v) % (hi + 1)  # libstdc++ negates in the unsigned type
    if not lo <= v <= hi:
        raise _bad(key, type_name, text)
    return v


def _p_int(key: str, value: Any) -> int:
    return _istream_int(key, value, "int", -2**31, 2**31 - 1)


def _p_uint32(key: str, value: Any) -> int:
    return _istream_int(key, value, "int (non-negative)", 0, 2**32 - 1, unsigned=True)


def _p_size_t(key: str, value: Any) -> int:
    return _istream_int(key, value, "long (non-negative)", 0, 2**64 - 1, unsigned=True)


def _p_opt_int(key: str, value: Any) -> int | None:
    if value is None or str(value) == "None":
        return None
    return _istream_int(key, value, "int or None", -2**31, 2**31 - 1, allow_l_suffix=True)


def _p_bool(key: str, value: Any) -> bool:
    text = str(value)
    low = text.lower()
    if low in ("true", "1"):
        return True
    if low in ("false", "0"):
        return False
    raise _bad(key, "boolean", text)


def _nearest_f32(x: Fraction) -> float:
    """The float32 nearest to the exact rational ``x`` (ties to even), as a Python float; inf on overflow."""
    if x == 0:
        return 0.0
    with np.errstate(over="ignore"):
        c = _F32(float(x))  # float(Fraction) rounds correctly to double; the answer is c or a neighbour
    best, best_key = None, None
    for f in (c, np.nextafter(c, _F32(-np.inf)), np.nextafter(c, _F32(np.inf))):
        if not np.isfinite(f):
            continue
        key = (abs(Fraction(float(f)) - x), int(np.asarray(f).view(np.uint32)) & 1)
        if best_key is None or key < best_key:
            best, best_key = f, key
    limit = Fraction(float(np.finfo(np.float32).max)) + Fraction(2) ** 103  # max + half an ulp
    if abs(x) >= limit:
        return math.copysign(math.inf, x)
    return float(best)


def _dmlc_strtof(text: str) -> tuple[float, int, bool]:
    """dmlc ``ParseFloat<float, /*CheckRange=*/true>``: returns (value, characters used, ERANGE)."""
    n, p = len(text), 0
    at = lambda i: text[i] if i < n else "\0"  # noqa: E731 (C string: a NUL after the end)
    while at(p) in _DMLC_SPACE and p < n:
        p += 1
    positive = True
    if at(p) == "-":
        positive, p = False, p + 1
    elif at(p) == "+":
        p += 1
    i = 0
    while i < 8 and chr(ord(at(p + i)) | 32) == "infinity"[i]:
        i += 1
    if i in (3, 8):
        return (math.inf if positive else -math.inf), p + i, False
    i = 0
    while i < 3 and chr(ord(at(p + i)) | 32) == "nan"[i]:
        i += 1
    if i == 3:
        p += 3
        if at(p) == "(":
            p += 1
            while at(p).isascii() and (at(p).isalnum() or at(p) == "_"):
                p += 1
            if at(p) != ")":
                raise ValueError("Invalid NAN literal")
            p += 1
        return math.nan, p, False
    predec = 0
    while at(p).isdigit() and at(p).isascii():
        predec = (predec * 10 + int(at(p))) % 2**64
        p += 1
    with np.errstate(over="ignore", invalid="ignore"):
        value = _F32(_nearest_f32(Fraction(predec)))  # (float)uint64, correctly rounded
        if at(p) == ".":
            p += 1
            pow10, val2, digits = 1, 0, 0
            while at(p).isdigit() and at(p).isascii():
                if digits < 19:  # kStrtofMaxDigits: later digits are consumed but ignored
                    val2, pow10 = val2 * 10 + int(at(p)), pow10 * 10
                p, digits = p + 1, digits + 1
            value = _F32(value + _F32(float(val2) / float(pow10)))
        if at(p) in "eE" and p < n:
            p += 1
            frac = False
            if at(p) == "-":
                frac, p = True, p + 1
            elif at(p) == "+":
                p += 1
            expon = 0
            while at(p).isdigit() and at(p).isascii():
                expon = (expon * 10 + int(at(p))) % 2**32
                p += 1
            if expon > 38 or (expon == 38 and ((not frac and value > _F32_MAX_SIG)
                                               or (frac and value < _F32_MIN_SIG))):
                return math.inf, p, True
            scale = _F32(1)
            while expon >= 8:
                scale, expon = _F32(scale * _F32(1e8)), expon - 8
            while expon > 0:
                scale, expon = _F32(scale * _F32(10)), expon - 1
            value = _F32(value / scale) if frac else _F32(value * scale)
    if at(p) in "fF" and p < n:
        p += 1
    return (float(value) if positive else -float(value)), p, False


def _p_float(key: str, value: Any) -> float:
    """dmlc ``FieldEntry<float>::Set`` (``dmlc::stof`` plus the trailing-characters check)."""
    text = str(value)
    v, used, erange = _dmlc_strtof(text)
    if erange:
        raise ValueError(f"Out of range value for {key}, value='{text}'")
    if used == 0:
        raise _bad(key, "float", text)
    if used < len(text):
        raise ValueError(f"Some trailing characters could not be parsed: '{text[used:]}'")
    return v


def _p_opt_float(key: str, value: Any) -> float | None:
    """``optional<float>``: "None", or ``istream >> float`` (correctly rounded) with only spaces after."""
    if value is None or str(value) == "None":
        return None
    text = str(value)
    m = _FLOAT_RE.match(text)
    if m is None or text[m.end():].strip(_C_SPACE):
        raise _bad(key, "float or None", text)
    v = _nearest_f32(Fraction(m.group(1)))
    if math.isinf(v):
        raise _bad(key, "float or None", text)
    return -0.0 if v == 0 and m.group(1).startswith("-") else v


def _p_str(key: str, value: Any) -> str:
    if value is None:  # recordgpu: None means "not set" (MXNet would look for a file named "None")
        return ""
    if isinstance(value, (bytes, os.PathLike)):
        return os.fsdecode(value)
    return str(value)


def _p_name(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, got {value!r}")
    return value


def _choice(options: tuple[str, ...], mxnet_enum: bool) -> Callable[[str, Any], str]:
    def parse(key: str, value: Any) -> str:
        text = str(value)
        if text in options:
            return text
        if mxnet_enum:
            listed = ", ".join(f"'{o}'" for o in sorted(options))
            raise ValueError(f"Invalid Input: '{text}', valid values are: {{{listed}}}")
        raise ValueError(f"{key} must be one of {', '.join(repr(o) for o in options)}, got {value!r}")
    return parse


def _p_dtype(key: str, value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value == "None"):
        return None
    if isinstance(value, str):
        name = value
    else:  # recordgpu: numpy types and dtypes (MXNet would see "<class 'numpy.float32'>")
        try:
            name = np.dtype(value).name
        except TypeError:
            name = str(value)
    if name in SUPPORTED_DTYPES:
        return name
    supported = ", ".join(f"'{d}'" for d in SUPPORTED_DTYPES)
    try:
        known = name in _DTYPE_ENUM or np.dtype(name).name == name
    except TypeError:
        known = False
    if not known:
        listed = ", ".join(["None"] + [f"'{d}'" for d in sorted(_DTYPE_ENUM)])
        raise ValueError(f"Invalid Input: '{name}', valid values are: {{{listed}}}")
    raise ValueError(f"unknown dtype for ImageRecordIter2. (dtype={name!r}; recordgpu supports None, {supported})")


def _float_seq(*sizes: int) -> Callable[[str, Any], tuple[float, ...] | None]:
    """None, or ``sizes`` numbers from a sequence or a string such as ``"(40, 400)"`` / ``"40,400"``."""
    def parse(key: str, value: Any) -> tuple[float, ...] | None:
        if value is None or (isinstance(value, str) and value.strip() in ("", "None")):
            return None
        items = [t for t in value.strip().strip("()[]").split(",") if t.strip()] if isinstance(value, str) \
            else value
        try:
            out = tuple(float(v) for v in items)
        except (TypeError, ValueError):
            raise ValueError(f"{key} must be {' or '.join(map(str, sizes))} numbers, got {value!r}") from None
        if len(out) not in sizes:
            raise ValueError(f"{key} must be {' or '.join(map(str, sizes))} numbers, got {len(out)}: {value!r}")
        if not all(math.isfinite(v) for v in out):
            raise ValueError(f"{key} must hold finite numbers, got {value!r}")
        return out
    return parse


def _p_opt_bool(key: str, value: Any) -> bool | None:
    if value is None or (isinstance(value, str) and value == "None"):
        return None
    return _p_bool(key, value)


def _opt_choice(options: tuple[str, ...]) -> Callable[[str, Any], str | None]:
    plain = _choice(options, False)

    def parse(key: str, value: Any) -> str | None:
        if value is None or (isinstance(value, str) and value in ("", "None")):
            return None
        return plain(key, value)
    return parse


def _shape_str(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


_SHAPE_BRACKETED = re.compile(r"[ \t\n\v\f\r]*[(\[](.*)[)\]][ \t\n\v\f\r]*\Z", re.S)
_SHAPE_ITEM = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)L?[ \t\n\v\f\r]*\Z")


def _p_shape(key: str, value: Any) -> tuple[int, ...]:
    """``TShape``: MXNet's tuple syntax from a string, or (recordgpu) any sequence of integers."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value),)
    if not isinstance(value, str):
        try:
            items = list(value)
        except TypeError:
            raise _bad(key, "Shape(tuple)", str(value)) from None
        if not all(isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) for d in items):
            raise _bad(key, "Shape(tuple)", str(value))
        return tuple(int(d) for d in items)
    text = value
    m = _SHAPE_BRACKETED.match(text)
    inner = m.group(1) if m else text  # unbracketed "3,224,224" (recordgpu) or a single number
    parts = inner.split(",")
    if m and len(parts) > 1 and not parts[-1].strip(_C_SPACE):
        parts = parts[:-1]  # "(3,)" and "(3, 224, 224,)": MXNet allows a trailing comma
    if m and len(parts) == 1 and not parts[0].strip(_C_SPACE):
        return ()
    dims = []
    for part in parts:
        im = _SHAPE_ITEM.match(part)
        if im is None:
            raise _bad(key, "Shape(tuple)", text)
        dims.append(int(im.group(1)))
    return tuple(dims)


def _p_rotate_list(key: str, value: Any) -> tuple[int, ...]:
    """MXNet: ``sscanf(val, "%[^,]")`` + ``atoi`` per comma-separated field (one trailing comma is fine)."""
    if value is None:
        return ()
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value),)
    if not isinstance(value, str):  # recordgpu: a sequence; MXNet would atoi("[90") == 0
        try:
            items = list(value)
        except TypeError:
            raise ValueError(f"rotate_list must be \"a,b,c\" or a sequence of ints, got {value!r}") from None
        if not all(isinstance(a, (int, np.integer)) and not isinstance(a, (bool, np.bool_)) for a in items):
            raise ValueError(f"rotate_list must hold integers, got {value!r}")
        return tuple(int(a) for a in items)
    if value == "":
        return ()
    fields_ = value[:-1].split(",") if value.endswith(",") else value.split(",")
    if any(f == "" for f in fields_):
        # MXNet reuses the previous field (or uninitialised memory) for an empty one
        raise ValueError(f"rotate_list has an empty entry: {value!r}")
    return tuple(_atoi(f) for f in fields_)


def _atoi(text: str) -> int:
    m = _INT_RE.match(text)
    if m is None:
        return 0
    v = int(m.group(1))
    return v if -2**31 <= v < 2**31 else ((v + 2**31) % 2**32) - 2**31


# --------------------------------------------------------------------------------------------------
# the parameter table: (name, parser, default); MXNet's structs in the order MXNet initialises them
# --------------------------------------------------------------------------------------------------
_REQUIRED = object()
_f = _p_float
_PREFETCHER = (("prefetch_buffer", _p_size_t, 4), ("ctx", _choice(_CTX_ENUM, True), "gpu"),
               ("dtype", _p_dtype, None))
_REC_PARSER = (
    ("path_imglist", _p_str, ""), ("path_imgrec", _p_str, ""), ("path_imgidx", _p_str, ""),
    ("aug_seq", _p_str, "aug_default"), ("label_width", _p_int, 1), ("data_shape", _p_shape, _REQUIRED),
    ("preprocess_threads", _p_int, 4), ("verbose", _p_bool, True), ("num_parts", _p_int, 1),
    ("part_index", _p_int, 0), ("device_id", _p_int, 0), ("shuffle_chunk_size", _p_size_t, 0),
    ("shuffle_chunk_seed", _p_int, 0), ("seed_aug", _p_opt_int, None),
)
_RECORD = (("shuffle", _p_bool, False), ("seed", _p_int, 0), ("verbose", _p_bool, True))
_BATCH = (("batch_size", _p_uint32, _REQUIRED), ("round_batch", _p_bool, True))
_NORMALIZE = (
    ("seed", _p_int, 0), ("mirror", _p_bool, False), ("rand_mirror", _p_bool, False),
    ("mean_img", _p_str, ""), ("mean_r", _f, 0.0), ("mean_g", _f, 0.0), ("mean_b", _f, 0.0),
    ("mean_a", _f, 0.0), ("std_r", _f, 1.0), ("std_g", _f, 1.0), ("std_b", _f, 1.0), ("std_a", _f, 1.0),
    ("scale", _f, 1.0), ("max_random_contrast", _f, 0.0), ("max_random_illumination", _f, 0.0),
    ("verbose", _p_bool, True),
)
_AUGMENT = (
    ("resize", _p_int, -1), ("rand_crop", _p_bool, False), ("random_resized_crop", _p_bool, False),
    ("max_rotate_angle", _p_int, 0), ("max_aspect_ratio", _f, 0.0), ("min_aspect_ratio", _p_opt_float, None),
    ("max_shear_ratio", _f, 0.0), ("max_crop_size", _p_int, -1), ("min_crop_size", _p_int, -1),
    ("max_random_scale", _f, 1.0), ("min_random_scale", _f, 1.0), ("max_random_area", _f, 1.0),
    ("min_random_area", _f, 1.0), ("max_img_size", _f, 1e10), ("min_img_size", _f, 0.0),
    ("brightness", _f, 0.0), ("contrast", _f, 0.0), ("saturation", _f, 0.0), ("pca_noise", _f, 0.0),
    ("random_h", _p_int, 0), ("random_s", _p_int, 0), ("random_l", _p_int, 0), ("rotate", _p_int, -1),
    ("fill_value", _p_int, 255), ("inter_method", _p_int, 1), ("pad", _p_int, 0),
    ("data_shape", _p_shape, _REQUIRED), ("rotate_list", _p_rotate_list, ()),
)
_RECORDGPU = (
    ("device", _choice(_DEVICES, False), "auto"), ("on_error", _choice(_ON_ERROR, False), "raise"),
    ("data_name", _p_name, "data"), ("label_name", _p_name, "softmax_label"),
    ("window", _float_seq(2), None), ("intensity_range", _float_seq(4), None), ("clip", _p_opt_bool, None),
    ("normalize", _opt_choice(_NORMALIZE_MODES), None), ("percentiles", _float_seq(2, 4), None),
    ("intensity_units", _choice(_INTENSITY_UNITS, False), "stored"),
    ("path_maskrec", _p_str, ""), ("path_maskidx", _p_str, ""), ("mask_name", _p_name, "mask"),
    ("return_meta", _p_bool, False),
)
_INTENSITY_FIELDS = ("window", "intensity_range", "clip", "normalize", "percentiles", "intensity_units")
_GROUPS = (_PREFETCHER, _REC_PARSER, _RECORD, _BATCH, _NORMALIZE, _AUGMENT, _RECORDGPU)
_TYPE_NAMES = {"data_shape": "Shape(tuple)", "batch_size": "int (non-negative)"}
_LOWER_BOUND_1 = ("label_width", "preprocess_threads")

# fields handed to recordgpu.augment.params.AugmentParams
_AUGMENT_FIELDS = tuple(name for name, _, _ in _AUGMENT) + tuple(
    name for name, _, _ in _NORMALIZE if name not in ("seed", "verbose")) + ("dtype", "seed_aug") + _INTENSITY_FIELDS


@dataclass(frozen=True)
class IterParams(AugmenterFields):
    """Every ``ImageRecordIter`` parameter with MXNet's name and default, plus recordgpu's own.

    Build it with :func:`parse_iter_kwargs`. Float parameters hold the C++ ``float`` MXNet would hold.
    ``dtype`` is None (float32 output) or a dtype name; ``output_dtype`` gives the numpy dtype.
    ``ignored`` lists the unknown keyword arguments that were warned about.
    """

    # required: path_imgrec (ImageRecParserParam), data_shape, batch_size (BatchParam)
    path_imgrec: str
    data_shape: tuple[int, int, int]
    batch_size: int
    # ImageRecParserParam
    path_imglist: str = ""
    path_imgidx: str = ""
    aug_seq: str = "aug_default"
    label_width: int = 1
    preprocess_threads: int = 4
    verbose: bool = True
    num_parts: int = 1
    part_index: int = 0
    device_id: int = 0
    shuffle_chunk_size: int = 0
    shuffle_chunk_seed: int = 0
    seed_aug: int | None = None
    # ImageRecordParam (seed is shared with ImageNormalizeParam, where MXNet does not use it)
    shuffle: bool = False
    seed: int = 0
    # BatchParam
    round_batch: bool = True
    # PrefetcherParam: ctx is accepted and has no effect in recordgpu
    prefetch_buffer: int = 4
    ctx: str = "gpu"
    dtype: str | None = None
    # recordgpu
    device: str = "auto"
    on_error: str = "raise"
    data_name: str = "data"
    label_name: str = "softmax_label"
    window: tuple[float, float] | None = None
    intensity_range: tuple[float, float, float, float] | None = None
    clip: bool | None = None
    normalize: str | None = None
    percentiles: tuple[float, ...] | None = None
    intensity_units: str = "stored"
    path_maskrec: str = ""
    path_maskidx: str = ""
    mask_name: str = "mask"
    return_meta: bool = False
    ignored: tuple[str, ...] = ()

    @property
    def output_dtype(self) -> np.dtype:
        """The dtype of ``batch.data[0]``: float32 when ``dtype`` is None."""
        return np.dtype(self.dtype or "float32")

    @property
    def channels(self) -> int:
        return self.data_shape[0]

    def augment_kwargs(self) -> dict[str, Any]:
        """The values for :class:`recordgpu.augment.params.AugmentParams` (augmenter + normaliser fields)."""
        return {name: getattr(self, name) for name in _AUGMENT_FIELDS}


def known_parameters() -> tuple[str, ...]:
    """Every keyword :func:`parse_iter_kwargs` understands."""
    names = {name for group in _GROUPS for name, _, _ in group}
    return tuple(sorted(names))


def _user_stacklevel() -> int:
    """Stack level of the first frame outside the recordgpu package, so warnings point at user code."""
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    level, frame = 1, sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package_dir + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def parse_iter_kwargs(**kwargs: Any) -> IterParams:
    """Parse ``ImageRecordIter`` keyword arguments into :class:`IterParams`, validating like MXNet.

    ``num_parts``/``part_index`` also take ``"auto"``: the rank and world size of a distributed job
    (``torch.distributed`` if initialised, else ``RANK``/``WORLD_SIZE``, else one part).

    Raises :class:`ValueError` with MXNet's text where MXNet raises (plus recordgpu's checks: positive
    ``batch_size``, ``part_index`` in range, recordgpu options). Unknown names give one
    :class:`UnknownArgumentWarning`.
    """
    if any(isinstance(kwargs.get(k), str) and kwargs[k] == "auto" for k in ("num_parts", "part_index")):
        # recordgpu: this process's part of a distributed job (torch.distributed, else RANK/WORLD_SIZE)
        n, i = resolve_parts(kwargs.get("num_parts", 1), kwargs.get("part_index", 0))
        kwargs = {**kwargs, "num_parts": n, "part_index": i}
    known = set(known_parameters())
    unknown = [k for k in kwargs if k not in known]
    out: dict[str, Any] = {}
    for group in _GROUPS:
        for key in kwargs:  # MXNet sets the given values in the order given, then the defaults
            spec = next((s for s in group if s[0] == key), None)
            if spec is not None and key not in out:
                out[key] = spec[1](key, kwargs[key])
                _check_bounds(key, out[key])
        for name, _, default in sorted(group):
            if name not in out:
                if default is _REQUIRED:
                    type_name = _TYPE_NAMES[name]
                    raise ValueError(f"Required parameter {name} of {type_name} is not presented")
                out[name] = default
    _check_semantics(out, kwargs)
    if unknown:
        out["ignored"] = tuple(unknown)
        names = ", ".join(repr(k) for k in unknown)
        warnings.warn(f"ImageRecordIter: unknown keyword argument(s) {names} ignored (MXNet ignores them "
                      "silently; check the spelling)", UnknownArgumentWarning, stacklevel=_user_stacklevel())
    return IterParams(**out)


def _check_bounds(key: str, value: Any) -> None:
    if key in _LOWER_BOUND_1 and value < 1:
        raise ValueError(f"value {value} for Parameter {key} should be greater equal to 1")
    if key == "data_shape":
        shape = value
        if len(shape) != 3:
            raise ValueError(f"value {_shape_str(shape)}for Parameter data_shape has wrong dimensions, "
                             "expected dimension=3")
        if any(d == 0 for d in shape):
            raise ValueError(f"value {_shape_str(shape)}for Parameter data_shape is invalid, "
                             "the input shape must be nonzero in all dimensions")
        if any(d < 0 for d in shape):
            raise ValueError(f"data_shape must be positive in every dimension, got {tuple(shape)}")


def _check_semantics(p: dict[str, Any], raw: dict[str, Any]) -> None:
    """Checks MXNet makes after parsing (in the iterator's constructor), and recordgpu's own."""
    if not p["path_imgrec"]:
        raise ValueError("ImageRecordIter2: must specify image_rec")
    if p["data_shape"][0] not in (1, 3, 4):
        raise ValueError(f"Invalid output shape {_shape_str(p['data_shape'])} "
                         "(data_shape[0], the number of channels, must be 1, 3 or 4)")
    if p["batch_size"] == 0:
        raise ValueError("batch_size must be at least 1 (MXNet hangs on batch_size=0)")
    if p["batch_size"] >= 2**31:  # a negative batch_size wraps to a huge uint32 in MXNet
        raise ValueError(f"batch_size must be a positive integer below 2**31, got {raw['batch_size']!r}")
    if p["num_parts"] < 1:
        raise ValueError(f"num_parts must be at least 1, got {p['num_parts']}")
    if not 0 <= p["part_index"] < p["num_parts"]:
        raise ValueError(f"part_index must be in [0, num_parts) = [0, {p['num_parts']}), got {p['part_index']}")
    if p["path_maskidx"] and not p["path_maskrec"]:
        raise ValueError("path_maskidx is set but path_maskrec is not: give the masks' .rec too")
    if p["mask_name"] in (p["label_name"], p["data_name"]) and p["path_maskrec"]:
        raise ValueError(f"mask_name={p['mask_name']!r} must differ from data_name and label_name")
    if p["device_id"] < -1:
        raise ValueError(f"device_id must be -1 (plain host memory) or a GPU index, got {p['device_id']}")


# keep the dataclass and the parameter table in step
assert {f.name for f in fields(IterParams)} == set(known_parameters()) | {"ignored"}
