"""Augmentation and normalisation parameters of ``ImageRecordIter`` (spec §3.2), validated like MXNet.

:class:`AugmentParams` gathers MXNet's ``DefaultImageAugmentParam`` and ``ImageNormalizeParam`` fields
plus ``data_shape``, the output ``dtype`` and ``seed_aug``, with MXNet's defaults. Construction runs the
checks MXNet makes (some of which MXNet only makes when the first affected image is processed) and
raises :class:`ValueError` with MXNet's message where MXNet has one. Checks that depend on an image's
size ("input image size smaller than ...") are made by the planner.

Float parameters are C++ ``float`` in MXNet; the planner converts them to float32 where it computes.

recordgpu's intensity options (no MXNet counterpart; see :class:`recordgpu.augment.plan.FloatIntensity` for
the exact arithmetic), at most one of:

* ``window=(level, width)``: the range ``[level - width / 2, level + width / 2]`` onto ``[0, 1]``;
* ``intensity_range=(a_min, a_max, b_min, b_max)``: MONAI's ``ScaleIntensityRange``;
* ``normalize='zscore'`` (per image: ``(v - mean) / std``) or ``normalize='percentile'`` with
  ``percentiles=(lo, hi)`` or ``(lo, hi, b_min, b_max)`` (MONAI's ``ScaleIntensityRangePercentiles``;
  ``b_min, b_max`` default to 0, 1).

``clip`` clips the result to ``[b_min, b_max]``; its default (None) means True for ``window`` and False for
``intensity_range`` and ``percentile`` (MONAI's default); it does not apply to ``zscore``. Values are in
stored units, or with ``intensity_units='modality'`` in each record's modality units (its
``RescaleSlope``/``RescaleIntercept`` metadata, e.g. Hounsfield units for CT). The result is float32, so the
output ``dtype`` must be float32 or float16. ``fill_value`` stays in stored units (it fills before the
intensity stage), and MXNet's ``mean_*``/``std_*``/``scale`` apply to the intensity stage's output.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .plan import FloatIntensity, intensity_output_error

OUTPUT_DTYPES = ("float32", "uint8", "int8", "uint16", "int16", "float16")
NORMALIZE_MODES = ("zscore", "percentile")
INTENSITY_UNITS = ("stored", "modality")
VALID_INTER_METHODS = (0, 1, 2, 3, 4, 9, 10)
INTER_MESSAGE = "invalid inter_method: valid value 0,1,2,3,9,10"

_F32_1E10 = np.float32(1e10)


def _as_bool(name: str, v: Any) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "1", "false", "0"):
        return v.strip().lower() in ("true", "1")
    raise ValueError(f"{name} must be a boolean, got {v!r}")


def _as_int(name: str, v: Any) -> int:
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            pass
    raise ValueError(f"{name} must be an integer, got {v!r}")


def _as_float(name: str, v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {v!r}") from None


def _parse_rotate_list(v: Any) -> tuple[int, ...]:
    """MXNet reads ``rotate_list`` as ``"a,b,c"`` with ``sscanf("%[^,]") + atoi``; a sequence is also fine."""
    if v is None or v == "":
        return ()
    if isinstance(v, str):
        out = []
        for tok in v.split(","):
            tok = tok.strip()
            if not tok:
                continue
            try:
                out.append(int(tok))
            except ValueError:
                raise ValueError(f"rotate_list must be comma-separated integers, got {v!r}") from None
        return tuple(out)
    if isinstance(v, (int, np.integer)):
        return (int(v),)
    return tuple(_as_int("rotate_list", x) for x in v)


def _parse_shape(v: Any) -> tuple[int, int, int]:
    if isinstance(v, str):
        v = [t for t in v.strip().strip("()[]").split(",") if t.strip()]
    try:
        shape = tuple(_as_int("data_shape", x) for x in v)
    except TypeError:
        raise ValueError(f"data_shape must be (C, H, W), got {v!r}") from None
    if len(shape) != 3:
        raise ValueError(f"data_shape must have 3 dimensions (C, H, W), got {shape}")
    if any(d <= 0 for d in shape):
        raise ValueError(f"data_shape must be positive in every dimension, got {shape}")
    if shape[0] not in (1, 3, 4):
        raise ValueError(f"Invalid output shape {shape}: data_shape[0] (channels) must be 1, 3 or 4")
    return shape


def _float_tuple(name: str, v: Any, sizes: tuple[int, ...]) -> tuple[float, ...] | None:
    """None, or a tuple of ``sizes`` finite floats from a sequence or a string like ``"(40, 400)"``."""
    if v is None or (isinstance(v, str) and v.strip() in ("", "None")):
        return None
    if isinstance(v, str):
        v = [t for t in v.strip().strip("()[]").split(",") if t.strip()]
    try:
        vals = tuple(_as_float(name, x) for x in v)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of {' or '.join(map(str, sizes))} numbers, "
                         f"got {v!r}") from None
    if len(vals) not in sizes:
        raise ValueError(f"{name} must have {' or '.join(map(str, sizes))} numbers, got {len(vals)}: {vals}")
    if not all(np.isfinite(vals)):
        raise ValueError(f"{name} must hold finite numbers, got {vals}")
    return vals


def _parse_dtype(v: Any) -> str:
    if v is None:
        return "float32"
    try:
        name = np.dtype(v).name
    except TypeError:
        name = str(v)
    if name not in OUTPUT_DTYPES:
        raise ValueError(f"unknown dtype {v!r} for ImageRecordIter: use one of {', '.join(OUTPUT_DTYPES)}")
    return name


@dataclass(frozen=True, kw_only=True)
class AugmenterFields:
    """MXNet's ``DefaultImageAugmentParam`` and ``ImageNormalizeParam`` fields with MXNet's defaults, declared
    once for :class:`AugmentParams` and for the iterator's parameters (``imageiter.params.IterParams``)."""

    # DefaultImageAugmentParam
    resize: int = -1
    rand_crop: bool = False
    random_resized_crop: bool = False
    max_rotate_angle: int = 0
    max_aspect_ratio: float = 0.0
    min_aspect_ratio: float | None = None
    max_shear_ratio: float = 0.0
    max_crop_size: int = -1
    min_crop_size: int = -1
    max_random_scale: float = 1.0
    min_random_scale: float = 1.0
    max_random_area: float = 1.0
    min_random_area: float = 1.0
    max_img_size: float = 1e10
    min_img_size: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    pca_noise: float = 0.0
    random_h: int = 0
    random_s: int = 0
    random_l: int = 0
    rotate: int = -1
    fill_value: int = 255
    inter_method: int = 1
    pad: int = 0
    rotate_list: tuple[int, ...] = ()
    # ImageNormalizeParam
    mirror: bool = False
    rand_mirror: bool = False
    mean_img: str = ""
    mean_r: float = 0.0
    mean_g: float = 0.0
    mean_b: float = 0.0
    mean_a: float = 0.0
    std_r: float = 1.0
    std_g: float = 1.0
    std_b: float = 1.0
    std_a: float = 1.0
    scale: float = 1.0
    max_random_contrast: float = 0.0
    max_random_illumination: float = 0.0


@dataclass(frozen=True)
class AugmentParams(AugmenterFields):
    """Every parameter of MXNet's default augmenter and normaliser, with MXNet's defaults.

    ``mean_*``, ``std_*``, ``fill_value`` and the mean image are in source units (0-255 for 8-bit images,
    0-65535 for 16-bit ones). ``dtype`` is the output dtype (None means float32).
    """

    data_shape: tuple[int, int, int]
    # output and RNG
    dtype: str = "float32"
    seed_aug: int | None = None
    # recordgpu intensity options (module docstring)
    window: tuple[float, float] | None = None
    intensity_range: tuple[float, float, float, float] | None = None
    clip: bool | None = None
    normalize: str | None = None
    percentiles: tuple[float, ...] | None = None
    intensity_units: str = "stored"

    _INT_FIELDS = ("resize", "max_rotate_angle", "max_crop_size", "min_crop_size", "random_h", "random_s",
                   "random_l", "rotate", "fill_value", "inter_method", "pad")
    _BOOL_FIELDS = ("rand_crop", "random_resized_crop", "mirror", "rand_mirror")
    _FLOAT_FIELDS = ("max_aspect_ratio", "max_shear_ratio", "max_random_scale", "min_random_scale",
                     "max_random_area", "min_random_area", "max_img_size", "min_img_size", "brightness",
                     "contrast", "saturation", "pca_noise", "mean_r", "mean_g", "mean_b", "mean_a", "std_r",
                     "std_g", "std_b", "std_a", "scale", "max_random_contrast", "max_random_illumination")

    def __post_init__(self) -> None:
        put = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass coercion)
        put("data_shape", _parse_shape(self.data_shape))
        for k in self._INT_FIELDS:
            put(k, _as_int(k, getattr(self, k)))
        for k in self._BOOL_FIELDS:
            put(k, _as_bool(k, getattr(self, k)))
        for k in self._FLOAT_FIELDS:
            put(k, _as_float(k, getattr(self, k)))
        for k, conv in (("min_aspect_ratio", _as_float), ("seed_aug", _as_int)):  # dmlc::optional fields
            v = getattr(self, k)
            put(k, None if v is None or (isinstance(v, str) and v.strip() == "None") else conv(k, v))
        put("rotate_list", _parse_rotate_list(self.rotate_list))
        put("mean_img", "" if self.mean_img is None else str(self.mean_img))
        put("dtype", _parse_dtype(self.dtype))
        put("window", _float_tuple("window", self.window, (2,)))
        put("intensity_range", _float_tuple("intensity_range", self.intensity_range, (4,)))
        put("percentiles", _float_tuple("percentiles", self.percentiles, (2, 4)))
        if self.clip is not None:
            put("clip", _as_bool("clip", self.clip))
        if isinstance(self.normalize, str) and self.normalize.strip() in ("", "None"):
            put("normalize", None)
        self._check()
        self._check_intensity()

    # --- derived switches (which stages run), shared by the planner and the checks -------------------
    @property
    def channels(self) -> int:
        return self.data_shape[0]

    @property
    def aspect_bounds(self) -> tuple[np.float32, np.float32]:
        """``(amin, amax)`` as MXNet computes them (float32)."""
        if self.min_aspect_ratio is not None:
            return np.float32(self.min_aspect_ratio), np.float32(self.max_aspect_ratio)
        m = np.float32(self.max_aspect_ratio)
        return np.float32(np.float32(1) - m), np.float32(np.float32(1) + m)

    @property
    def warp_enabled(self) -> bool:
        amin, amax = self.aspect_bounds
        return (self.max_rotate_angle > 0 or np.float32(self.max_shear_ratio) > 0 or self.rotate > 0
                or len(self.rotate_list) > 0
                or np.float32(self.max_random_scale) != 1 or np.float32(self.min_random_scale) != 1
                or (not self.random_resized_crop and (amin != 1 or amax != 1))
                or np.float32(self.max_img_size) != _F32_1E10 or np.float32(self.min_img_size) != 0)

    @property
    def rrc_active(self) -> bool:
        """random_resized_crop set and with something to randomise (else MXNet falls through)."""
        if not self.random_resized_crop:
            return False
        amin, amax = self.aspect_bounds
        return (np.float32(self.max_random_area) != 1 or np.float32(self.min_random_area) != 1
                or amin != 1 or amax != 1)

    @property
    def crop_size_enabled(self) -> bool:
        return not self.random_resized_crop and (self.max_crop_size != -1 or self.min_crop_size != -1)

    @property
    def jitter_enabled(self) -> bool:
        return self.brightness > 0 or self.contrast > 0 or self.saturation > 0

    @property
    def hsl_enabled(self) -> bool:
        return self.random_h != 0 or self.random_s != 0 or self.random_l != 0

    @property
    def pca_enabled(self) -> bool:
        return self.pca_noise > 0

    @property
    def intensity_enabled(self) -> bool:
        """A :class:`~recordgpu.augment.plan.FloatIntensity` stage runs (window, intensity_range or normalize)."""
        return self.window is not None or self.intensity_range is not None or self.normalize is not None

    def intensity_stage(self, slope: float = 1.0, intercept: float = 0.0) -> FloatIntensity | None:
        """The intensity stage for a record whose modality transform is ``v * slope + intercept`` (only used
        with ``intensity_units='modality'``), or None when no intensity option is set."""
        if not self.intensity_enabled:
            return None
        if self.intensity_units != "modality":
            slope, intercept = 1.0, 0.0
        clip = self.clip
        if self.window is not None:
            level, width = self.window
            return FloatIntensity("range", level - width / 2, level + width / 2, 0.0, 1.0,
                                  True if clip is None else clip, slope=slope, intercept=intercept)
        if self.intensity_range is not None:
            a0, a1, b0, b1 = self.intensity_range
            return FloatIntensity("range", a0, a1, b0, b1, bool(clip), slope=slope, intercept=intercept)
        if self.normalize == "zscore":
            return FloatIntensity("zscore", slope=slope, intercept=intercept)
        q = self.percentiles
        b0, b1 = (q[2], q[3]) if len(q) == 4 else (0.0, 1.0)
        return FloatIntensity("percentile", b_min=b0, b_max=b1, clip=bool(clip), q_lo=q[0], q_hi=q[1],
                              slope=slope, intercept=intercept)

    @property
    def raw_output(self) -> bool:
        """uint8 / uint16 outputs are the raw pixel values: no mean, std, scale or contrast draws."""
        return self.dtype in ("uint8", "uint16")

    def _check(self) -> None:
        if self.inter_method not in VALID_INTER_METHODS:
            raise ValueError(INTER_MESSAGE)
        if self.resize != -1 and self.resize <= 0:
            raise ValueError(f"resize must be -1 (off) or a positive size, got {self.resize}")
        if self.warp_enabled and self.inter_method == 0:
            # MXNet's affine step accepts 1-4, 9, 10 only (verified: inter_method=0 is rejected there).
            raise ValueError(INTER_MESSAGE + " (nearest neighbour, 0, is not accepted by the affine "
                             "transform that rotation/shear/scale/aspect/img_size options enable)")
        if self.random_resized_crop:
            if not (np.float32(self.min_random_scale) == 1 and np.float32(self.max_random_scale) == 1
                    and self.min_crop_size == -1 and self.max_crop_size == -1 and not self.rand_crop):
                raise ValueError("random_resized_crop cannot be combined with min_random_scale/"
                                 "max_random_scale != 1, min_crop_size/max_crop_size or rand_crop")
            if self.rrc_active:
                amin, amax = self.aspect_bounds
                if not (amin > 0 and np.float32(self.min_random_area) <= np.float32(self.max_random_area)
                        and amin <= amax):
                    raise ValueError("random_resized_crop needs min_aspect_ratio > 0, "
                                     "min_aspect_ratio <= max_aspect_ratio and "
                                     "min_random_area <= max_random_area")
        if self.crop_size_enabled:
            if self.max_crop_size == -1 or self.min_crop_size == -1:
                raise ValueError("set both min_crop_size and max_crop_size (MXNet crashes when only one is set)")
            if self.min_crop_size < 1 or self.max_crop_size < self.min_crop_size:
                raise ValueError("input image size smaller than max_crop_size "
                                 f"(need 1 <= min_crop_size <= max_crop_size, got {self.min_crop_size}, "
                                 f"{self.max_crop_size})")
        c = self.channels
        for on, what in ((self.jitter_enabled, "colour jitter (brightness/contrast/saturation)"),
                         (self.hsl_enabled, "HSL jitter (random_h/random_s/random_l)"),
                         (self.pca_enabled, "PCA lighting noise (pca_noise)")):
            if on and c != 3:
                raise ValueError(f"{what} needs 3 channels (data_shape[0] == 3), got data_shape[0] == {c}")
        if self.warp_enabled and self.max_rotate_angle < 0:
            raise ValueError(f"max_rotate_angle must be >= 0, got {self.max_rotate_angle}")

    def _check_intensity(self) -> None:
        given = [k for k in ("window", "intensity_range", "normalize") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"{' and '.join(given)} are alternatives: set at most one of window, "
                             "intensity_range and normalize")
        if self.intensity_units not in INTENSITY_UNITS:
            raise ValueError(f"intensity_units must be one of {', '.join(map(repr, INTENSITY_UNITS))}, "
                             f"got {self.intensity_units!r}")
        if self.normalize is not None and self.normalize not in NORMALIZE_MODES:
            raise ValueError(f"normalize must be one of {', '.join(map(repr, NORMALIZE_MODES))} (or None), "
                             f"got {self.normalize!r}")
        if (self.percentiles is not None) != (self.normalize == "percentile"):
            raise ValueError("normalize='percentile' needs percentiles=(lo, hi) (or (lo, hi, b_min, b_max)), "
                             "and percentiles needs normalize='percentile'")
        if self.window is not None and not self.window[1] > 0:
            raise ValueError(f"window=(level, width) needs a positive width, got {self.window}")
        if self.intensity_range is not None and self.intensity_range[0] == self.intensity_range[1]:
            raise ValueError(f"intensity_range=(a_min, a_max, b_min, b_max) needs a_min != a_max, "
                             f"got {self.intensity_range}")
        if self.percentiles is not None and not 0 <= self.percentiles[0] <= self.percentiles[1] <= 100:
            raise ValueError(f"percentiles=(lo, hi, ...) needs 0 <= lo <= hi <= 100, got {self.percentiles}")
        if self.clip is not None and not (self.window is not None or self.intensity_range is not None
                                          or self.normalize == "percentile"):
            raise ValueError("clip applies to window, intensity_range and normalize='percentile' only")
        if self.intensity_units == "modality" and not self.intensity_enabled:
            raise ValueError("intensity_units='modality' applies to window, intensity_range and normalize; "
                             "set one of them")
        if self.intensity_enabled:
            why = intensity_output_error(self.dtype)
            if why is not None:
                raise ValueError(why)

    # --- construction helpers ------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> "AugmentParams":
        """Pick this class's fields out of ``ImageRecordIter`` keyword arguments; others are ignored."""
        names = set(cls.field_names())
        return cls(**{k: v for k, v in kwargs.items() if k in names})

    def replace(self, **changes: Any) -> "AugmentParams":
        return dataclasses.replace(self, **changes)

    @property
    def mean_rgba(self) -> tuple[float, float, float, float]:
        return (self.mean_r, self.mean_g, self.mean_b, self.mean_a)

    @property
    def std_rgba(self) -> tuple[float, float, float, float]:
        return (self.std_r, self.std_g, self.std_b, self.std_a)


__all__ = ["AugmentParams", "AugmenterFields", "OUTPUT_DTYPES", "VALID_INTER_METHODS", "INTER_MESSAGE",
           "NORMALIZE_MODES", "INTENSITY_UNITS"]
