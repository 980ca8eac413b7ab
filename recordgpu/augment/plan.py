"""The augmentation plan: what to do to one sample, as plain data.

A :class:`SamplePlan` is an ordered tuple of stages whose every parameter is resolved (random draws made,
interpolation codes concrete, fill values per channel, colour amounts in source units). Executors (the
host reference in :mod:`recordgpu.augment.cpu`, the kernels of the GPU path) run the stages in order and
round each stage's result to the source dtype, as MXNet does at 8 bits (``FloatIntensity`` alone hands
float32 on to ``Normalize``). Plans are frozen, hashable (a mean image
compares by identity) and picklable, so they can be made in one process and executed in another.

Stage order is MXNet's (spec §3.7, §3.8): ``Resize`` (shorter edge), ``Warp`` (affine), ``Pad``, then the
crop (``CropResize`` for random_resized_crop / crop_size; ``Resize``\\ s + ``Crop`` for the centre/random
crop that first upscales small images), the colour steps (``Brightness``/``Contrast``/``Saturation`` in
their drawn order, ``HSL``, ``PCANoise``), an ``Intensity`` slot, the optional ``FloatIntensity`` (intensity
windows and per-image normalisation: from there on the sample is float32), and last ``Normalize`` (channel
order, mirror, mean/std/scale, output dtype).

Interpolation codes are OpenCV's (0 nearest, 1 linear, 2 cubic, 3 area, 4 Lanczos-4), which are MXNet's
``inter_method`` codes after 9 (auto) and 10 (random) have been resolved.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

INTER_NEAREST, INTER_LINEAR, INTER_CUBIC, INTER_AREA, INTER_LANCZOS4 = 0, 1, 2, 3, 4
INTERP_CODES = (INTER_NEAREST, INTER_LINEAR, INTER_CUBIC, INTER_AREA, INTER_LANCZOS4)

SOURCE_DTYPES = ("uint8", "uint16", "int16", "float32")
# output dtypes each source dtype may produce without losing data or meaning
_OUTPUTS_FOR = {
    "uint8": ("float32", "float16", "uint8", "int8", "uint16", "int16"),
    "uint16": ("float32", "float16", "uint16", "int16"),
    "int16": ("float32", "float16", "int16"),
    "float32": ("float32", "float16"),
}
# nominal value range of each source dtype: colour amounts defined on 0-255 scale by this / 255
_NOMINAL_RANGE = {"uint8": 255.0, "uint16": 65535.0, "int16": 65535.0, "float32": 1.0}


def check_output_dtype(src_dtype: str, out_dtype: str) -> None:
    """Raise ValueError when ``out_dtype`` cannot hold a ``src_dtype`` image (never a silent 8-bit step)."""
    if src_dtype not in _OUTPUTS_FOR:
        raise ValueError(f"unsupported source image dtype {src_dtype!r}: expected one of {', '.join(SOURCE_DTYPES)}")
    if out_dtype in _OUTPUTS_FOR[src_dtype]:
        return
    if src_dtype == "uint16":
        hint = "use dtype='uint16' (raw values) or dtype='float32'"
    elif src_dtype == "int16":
        hint = "use dtype='int16' (raw values) or dtype='float32'"
    else:
        hint = "use dtype='float32'"
    raise ValueError(f"dtype={out_dtype!r} cannot hold {src_dtype} images without losing data; {hint}")


def colour_unit(src_dtype: str) -> float:
    """Factor that turns an amount on MXNet's 0-255 scale into source units (1 for uint8, 257 for 16 bits)."""
    return _NOMINAL_RANGE[src_dtype] / 255.0


# --- geometric stages --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Resize:
    """``cv::resize`` of the whole image to ``out_w`` x ``out_h``."""

    out_w: int
    out_h: int
    interp: int


@dataclass(frozen=True)
class Warp:
    """``cv::warpAffine`` with the 2x3 float32 ``matrix`` (row-major, forward map), constant border ``fill``."""

    matrix: tuple[float, float, float, float, float, float]
    out_w: int
    out_h: int
    interp: int
    fill: tuple[float, ...]

    @property
    def matrix_array(self) -> np.ndarray:
        return np.array(self.matrix, dtype=np.float32).reshape(2, 3)


def invert_affine(matrix) -> list[float]:
    """``cv::warpAffine``'s inversion (``invertAffineTransform``) of a float32 forward 2x3 matrix, in double;
    row-major ``[a11, a12, b1, a21, a22, b2]`` of the output-to-source map."""
    m = [float(v) for v in np.asarray(matrix, dtype=np.float32).reshape(6)]
    d = m[0] * m[4] - m[1] * m[3]
    d = 1.0 / d if d != 0 else 0.0
    a11, a22 = m[4] * d, m[0] * d
    m[0], m[4] = a11, a22
    m[1] *= -d
    m[3] *= -d
    b1 = -m[0] * m[2] - m[1] * m[5]
    b2 = -m[3] * m[2] - m[4] * m[5]
    m[2], m[5] = b1, b2
    return m


@dataclass(frozen=True)
class Pad:
    """``cv::copyMakeBorder`` of ``pad`` pixels on every side with the constant ``fill`` (per channel)."""

    pad: int
    fill: tuple[float, ...]


@dataclass(frozen=True)
class Crop:
    """Keep the ``w`` x ``h`` window whose top-left corner is (``x``, ``y``)."""

    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class CropResize:
    """Crop the ``w`` x ``h`` window at (``x``, ``y``), then ``cv::resize`` it to ``out_w`` x ``out_h``."""

    x: int
    y: int
    w: int
    h: int
    out_w: int
    out_h: int
    interp: int


# --- colour stages (3-channel BGR data) ----------------------------------------------------------------
@dataclass(frozen=True)
class Brightness:
    """``v = saturate(rint(v * alpha))`` (``convertTo(res, -1, alpha, 0)``)."""

    alpha: float


@dataclass(frozen=True)
class Contrast:
    """``v = saturate(rint(v * alpha + (1 - alpha) * mean(gray)))``, gray by RGB2GRAY weights on BGR data."""

    alpha: float


@dataclass(frozen=True)
class Saturation:
    """``addWeighted(v, alpha, gray3, 1 - alpha, 0)``, gray by RGB2GRAY weights on BGR data."""

    alpha: float


@dataclass(frozen=True)
class HSL:
    """Shift hue by ``dh`` (OpenCV 8-bit units: half degrees, clipped to [0, 180]) and saturation/lightness
    by ``ds``/``dl`` (source units, clipped to the source range)."""

    dh: int
    ds: float
    dl: float


@dataclass(frozen=True)
class PCANoise:
    """AlexNet lighting noise: add ``add_bgr[k]`` (source units) to channel k, truncate, saturate."""

    add_bgr: tuple[float, float, float]


@dataclass(frozen=True)
class Intensity:
    """Slot for an intensity transform before normalisation: ``v = saturate(round(v * scale + offset))``.

    The MXNet-compatible planner never emits it; it is the hook for intensity windowing of 16-bit data.
    """

    scale: float
    offset: float


INTENSITY_MODES = ("range", "zscore", "percentile")


@dataclass(frozen=True)
class FloatIntensity:
    """Intensity window or per-image normalisation whose result stays float32 (never rounded back to the
    source dtype); it must be the last stage before ``Normalize``, whose output dtype must then be float32
    or float16. MXNet's mean/std/scale in ``Normalize`` apply to its result.

    Every step in float32 arithmetic, in this order, without fused multiply-add (``f32(x)`` rounds a double)::

        v = f32(source value) * f32(slope) + f32(intercept)       # modality units (slope 1, intercept 0: v exact)
        range:      A = f32(a_min),  D = f32(a_max - a_min)
        zscore:     A = f32(mean),   D = f32(std), or 1 when that is 0     # population std
        percentile: A = f32(P(q_lo)), D = f32(P(q_hi) - P(q_lo))          # P: numpy's 'linear' percentile
        u = ((v - A) / D) * E + F,   E = f32(b_max - b_min), F = f32(b_min)   (zscore: E = 1, F = 0)
        D == 0 (percentiles of a flat image):  u = (v - A) + F       # MONAI's a_min == a_max fallback
        clip:  u = min(max(u, f32(min(b_min, b_max))), f32(max(b_min, b_max)))   # NaN stays NaN

    This is MONAI's ``ScaleIntensityRange`` (range), ``NormalizeIntensity`` (zscore) and
    ``ScaleIntensityRangePercentiles`` (percentile). Differences of doubles are taken in double. The
    statistics (mean, std, percentiles) are of ``v`` over every pixel and channel of the sample as it is
    when the stage runs, after the geometric stages (so a crop's statistics are the crop's), computed in
    double on the executing device.
    """

    mode: str
    a_min: float = 0.0
    a_max: float = 1.0
    b_min: float = 0.0
    b_max: float = 1.0
    clip: bool = False
    q_lo: float = 0.0
    q_hi: float = 100.0
    slope: float = 1.0
    intercept: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in INTENSITY_MODES:
            raise ValueError(f"FloatIntensity mode must be one of {', '.join(INTENSITY_MODES)}, got {self.mode!r}")
        if self.mode == "range" and self.a_max == self.a_min:
            raise ValueError(f"an intensity range needs a_min != a_max, got {self.a_min} for both")
        if self.mode == "percentile" and not 0 <= self.q_lo <= self.q_hi <= 100:
            raise ValueError(f"percentiles need 0 <= lo <= hi <= 100, got ({self.q_lo}, {self.q_hi})")
        if self.mode == "zscore" and self.clip:
            raise ValueError("clip applies to intensity ranges and percentiles, not to zscore")

    @property
    def needs_statistics(self) -> bool:
        """True when the stage needs per-image statistics (zscore, percentile)."""
        return self.mode != "range"

    def constants(self) -> dict[str, np.float32]:
        """The float32 constants of the formula above: ``A``, ``D`` (range mode only), ``E``, ``F`` and the
        clip bounds ``lo``, ``hi``, ``slope``, ``intercept``."""
        f = np.float32
        out = {"slope": f(self.slope), "intercept": f(self.intercept)}
        if self.mode == "zscore":
            out.update(E=f(1), F=f(0), lo=f(-np.inf), hi=f(np.inf))
        else:
            out.update(E=f(self.b_max - self.b_min), F=f(self.b_min), lo=f(min(self.b_min, self.b_max)),
                       hi=f(max(self.b_min, self.b_max)))
        if self.mode == "range":
            out.update(A=f(self.a_min), D=f(self.a_max - self.a_min))
        return out


def intensity_output_error(out_dtype: str) -> str | None:
    """Why ``out_dtype`` cannot receive a :class:`FloatIntensity` result, or None when it can."""
    if out_dtype in ("float32", "float16"):
        return None
    return (f"dtype={out_dtype!r} cannot hold the float32 values that window / intensity_range / normalize "
            "produce; use dtype='float32' or dtype='float16'")


def check_float_intensity(plan: "SamplePlan") -> FloatIntensity | None:
    """The plan's :class:`FloatIntensity` stage (None without one); raises ValueError when it is not the last
    stage before ``Normalize`` or the output dtype is not a float."""
    found = [i for i, st in enumerate(plan.stages) if isinstance(st, FloatIntensity)]
    if not found:
        return None
    if found != [len(plan.stages) - 2]:
        raise ValueError("a FloatIntensity stage must be the last stage before Normalize (and appear once)")
    why = intensity_output_error(plan.out_dtype)
    if why is not None:
        raise ValueError(why)
    return plan.stages[found[0]]  # type: ignore[return-value]


# --- output stage -------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class MeanImage:
    """A mean image ``(C, H, W)`` float32 in output channel order (RGB(A)), in source units. Read-only;
    compared by identity (one object is shared by all plans of an iterator)."""

    data: np.ndarray

    def __post_init__(self) -> None:
        arr = np.array(self.data, dtype=np.float32, copy=True)
        if arr.ndim != 3:
            raise ValueError(f"mean image must be (C, H, W), got shape {arr.shape}")
        arr.setflags(write=False)
        object.__setattr__(self, "data", arr)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]


@dataclass(frozen=True)
class Normalize:
    """Write the sample as planar (C, H, W) ``out_dtype``.

    Output channel k reads source channel ``swap[k]`` (BGR(A) -> RGB(A)); ``mirror`` flips W. Per dtype:
    float32 ``(p - mean[k]) * mult[k] + bias[k]`` (float32 arithmetic, in this order; float16 rounds that);
    int8/int16 ``saturate(p - round_half_away(mean[k]))``; uint8/uint16 ``p``. With ``mean_image`` its
    pixel ``[k, i, j]`` replaces ``mean[k]``.
    """

    out_dtype: str
    swap: tuple[int, ...]
    mirror: bool
    mean: tuple[float, ...]
    mult: tuple[float, ...]
    bias: tuple[float, ...]
    mean_image: MeanImage | None = None


Stage = Union[Resize, Warp, Pad, Crop, CropResize, Brightness, Contrast, Saturation, HSL, PCANoise,
              Intensity, FloatIntensity, Normalize]
GEOMETRIC_STAGES = (Resize, Warp, Pad, Crop, CropResize)
COLOUR_STAGES = (Brightness, Contrast, Saturation, HSL, PCANoise, Intensity)


@dataclass(frozen=True)
class SamplePlan:
    """Everything needed to turn one decoded ``(H, W, C)`` source image into one output sample."""

    src_shape: tuple[int, int, int]   # (H, W, C) of the decoded image
    src_dtype: str
    out_shape: tuple[int, int, int]   # (C, H, W) of the output slot
    stages: tuple[Stage, ...]         # the last one is the Normalize

    @property
    def normalize(self) -> Normalize:
        last = self.stages[-1]
        if not isinstance(last, Normalize):
            raise ValueError("a SamplePlan must end with a Normalize stage")
        return last

    @property
    def mirror(self) -> bool:
        return self.normalize.mirror

    @property
    def out_dtype(self) -> str:
        return self.normalize.out_dtype

    def sizes(self) -> list[tuple[int, int]]:
        """``(h, w)`` of the image after each stage (for buffer planning)."""
        h, w = self.src_shape[0], self.src_shape[1]
        out = []
        for st in self.stages:
            h, w = stage_output_size(st, h, w)
            out.append((h, w))
        return out


def stage_output_size(st: Stage, h: int, w: int) -> tuple[int, int]:
    """``(h, w)`` after ``st`` given ``(h, w)`` before it."""
    if isinstance(st, (Resize, Warp, CropResize)):
        return st.out_h, st.out_w
    if isinstance(st, Pad):
        return h + 2 * st.pad, w + 2 * st.pad
    if isinstance(st, Crop):
        return st.h, st.w
    return h, w


def geometric_stages(plan: SamplePlan) -> tuple[Stage, ...]:
    """The stages that move pixels (what a paired mask replays with nearest sampling and fill 0).

    The horizontal mirror is part of the output stage; read it from ``plan.mirror``.
    """
    return tuple(st for st in plan.stages if isinstance(st, GEOMETRIC_STAGES))


__all__ = [
    "invert_affine", "Resize", "Warp", "Pad", "Crop", "CropResize", "Brightness", "Contrast", "Saturation", "HSL",
    "PCANoise", "Intensity", "FloatIntensity", "MeanImage", "Normalize", "Stage", "SamplePlan",
    "GEOMETRIC_STAGES", "COLOUR_STAGES", "INTENSITY_MODES", "geometric_stages", "stage_output_size",
    "check_output_dtype", "check_float_intensity", "intensity_output_error", "colour_unit", "SOURCE_DTYPES",
    "INTERP_CODES",
]
