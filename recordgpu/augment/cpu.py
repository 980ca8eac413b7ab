"""Host reference executor: run a :class:`SamplePlan` on one decoded image with OpenCV and numpy.

At 8 bits this is bit-exact with MXNet 1.9.1 (cubic interpolation: ±1 between OpenCV versions). At full
depth the same stages run on the source dtype (uint16, int16, float32) and each stage's result is rounded
to it and saturated, exactly as MXNet does at 8 bits; there is no 8-bit step anywhere.

Colour steps at every depth (the amounts in the plan are already in source units). Where OpenCV 4.11+
rounds differently from the OpenCV 3.4 inside MXNet, the 3.4 arithmetic is reproduced in numpy:

* Brightness / Contrast: ``saturate(rint(float32(v) * a + b))`` (OpenCV's ``convertTo``); the contrast
  mean is the mean of the RGB2GRAY image of the BGR data (MXNet's channel mix-up kept), gray computed with
  OpenCV 3.4's 14-bit fixed point for integer images. 8-bit images go through a 256-entry lookup table
  holding the same numbers.
* Saturation: ``addWeighted(v, a, gray3, 1 - a, 0)`` = ``saturate(rint(float32(v)*a + gray*(1-a) + 0))``.
* HSL: OpenCV 3.4's float HLS algorithm (``RGB2HLS_f`` / ``HLS2RGB_f``; for 8-bit images also its SSE2 /
  scalar split, which rounds saturation differently; OpenCV 4.11+ differs on ~0.03% of 8-bit colours).
  8 bits: H in half degrees and L, S in 0-255 are rounded to integers, shifted, clipped to [0, 180] and
  [0, 255], converted back, as MXNet does. OpenCV has no 16-bit HLS; uint16 images use the same float
  algorithm on ``v / 65535`` without rounding the intermediate H, L, S: H keeps its 8-bit meaning (half
  degrees, shifted by ``dh``, clipped to [0, 180]), L and S are in [0, 1] and shifted by ``dl / 65535``,
  ``ds / 65535`` (``dl``, ``ds`` are already in 16-bit units, i.e. the 8-bit amount x 257), clipped to
  [0, 1]; the result is scaled by 65535, rounded and saturated. int16 / float32 images have no defined
  lightness range: HSL raises for them.
* PCA noise: ``saturate(trunc(float32(v) + add[k]))`` (float32 images: ``v + add[k]``, no clipping).

Affine warps use the fixed-point coordinate maps of OpenCV 3.4's ``warpAffine`` (see
:func:`affine_remap_maps`) through ``cv2.remap``; resizes are ``cv2.resize`` (nearest is OpenCV's
``INTER_NEAREST``, ``src = floor(dst * src_size / dst_size)``).

Rounding/saturation per source dtype: uint8 [0, 255], uint16 [0, 65535], int16 [-32768, 32767] with
round-half-even; float32 is kept as computed.

Output (``Normalize``): planar RGB(A), mirror flips W. float32 ``(p - mean) * mult + bias`` in float32;
float16 that rounded once; int8/int16 ``saturate(p - round_half_away(mean))``; uint8/uint16 raw ``p``.

The plans :mod:`recordgpu.augment.fused` covers (bilinear resize and crop of uint8 images, crops of 16-bit
images, to float32) run there by default: one native pass with the same numbers (``execute(..., fast=False)``
runs the stages here).

``FloatIntensity`` (window, intensity range, zscore, percentile; :mod:`recordgpu.augment.intensity`) turns
the sample into float32 right before ``Normalize``; nothing is rounded to the source dtype after it.

``execute(..., mode="mask")`` replays only the geometric stages with nearest sampling and fill 0, then
writes the (mirrored) channels as they are: the path for label masks paired with images.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from . import fused, intensity
from .plan import (invert_affine,
                   HSL, Brightness, Contrast, Crop, CropResize, FloatIntensity, Intensity, Normalize, Pad,
                   PCANoise, Resize, Saturation, SamplePlan, Warp, check_float_intensity, check_output_dtype,
                   geometric_stages)

F32 = np.float32
_INT_RANGE = {"uint8": (0, 255), "uint16": (0, 65535), "int16": (-32768, 32767), "int8": (-128, 127)}


# --- helpers -----------------------------------------------------------------------------------------
def _hwc(img: np.ndarray) -> np.ndarray:
    return img[:, :, None] if img.ndim == 2 else img


def _round_sat(v: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float32 -> ``dtype`` with round-half-even and saturation (OpenCV's ``saturate_cast``)."""
    if dtype == np.float32:
        return v.astype(np.float32, copy=False)
    lo, hi = _INT_RANGE[dtype.name]
    v = np.rint(v)
    np.clip(v, lo, hi, out=v)
    return v.astype(dtype)


def _fill4(fill: tuple[float, ...]) -> tuple[float, float, float, float]:
    f = tuple(fill) + (0.0,) * (4 - len(fill))
    return f[:4]  # type: ignore[return-value]


def _gray(img: np.ndarray) -> np.ndarray:
    """``cvtColor(img, COLOR_RGB2GRAY)`` as OpenCV 3.4 (inside MXNet) computes it, on BGR data as MXNet does.

    Integer images: 14-bit fixed point ``(c0*4899 + c1*9617 + c2*1868 + 8192) >> 14`` (OpenCV >= 4.11
    rounds differently on ~0.3% of 8-bit colours); float32: ``c0*0.299 + c1*0.587 + c2*0.114``.
    """
    if img.dtype == np.float32:
        return img[:, :, 0] * F32(0.299) + img[:, :, 1] * F32(0.587) + img[:, :, 2] * F32(0.114)
    c = img.astype(np.int32)
    g = (c[:, :, 0] * 4899 + c[:, :, 1] * 9617 + c[:, :, 2] * 1868 + (1 << 13)) >> 14
    return g.astype(img.dtype)


def _gray_mean(img: np.ndarray) -> float:
    """``cv::mean`` of the gray image (a double)."""
    return float(np.mean(_gray(img), dtype=np.float64))


def _linear(img: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """``img.convertTo(res, -1, alpha, beta)``: float32 ``v*alpha + beta``, rounded and saturated."""
    a, b = F32(alpha), F32(beta)
    if img.dtype == np.uint8:
        lut = _round_sat(np.arange(256, dtype=F32) * a + b, img.dtype)
        return cv2.LUT(np.ascontiguousarray(img), lut).reshape(img.shape)
    return _round_sat(img.astype(F32) * a + b, img.dtype)


# --- geometric stages ----------------------------------------------------------------------------------
def _resize(img: np.ndarray, st: Resize, interp: int) -> np.ndarray:
    return _hwc(cv2.resize(img, (st.out_w, st.out_h), interpolation=interp))


_AB_BITS, _INTER_BITS = 10, 5  # OpenCV's warpAffine fixed point: 1/1024 coordinates, 1/32 sub-pixel table


def affine_remap_maps(matrix: np.ndarray, out_w: int, out_h: int,
                      nearest: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """The fixed-point maps of OpenCV 3.4's ``cv::warpAffine`` (the one inside MXNet), for ``cv2.remap``.

    OpenCV 5's warpAffine (float coordinates) moves up to 10% of the pixels of a rotation by 1-2 levels
    against MXNet's (OpenCV 4.11 still agrees); the classic algorithm is reproduced here instead: invert the matrix in
    double, quantise source coordinates to 1/1024 with ``cvRound`` per column and per row, add the rounding
    delta, shift to 1/32 pixel. ``map1``: int16 ``(h, w, 2)`` integer source x, y; ``map2``: uint16 index
    ``(fy * 32 + fx)`` into OpenCV's interpolation tables (None for nearest).
    """
    m = invert_affine(matrix)
    scale = float(1 << _AB_BITS)
    xs = np.arange(out_w, dtype=np.float64)
    ys = np.arange(out_h, dtype=np.float64)

    def cv_round(v: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(v), -2.0 ** 31, 2.0 ** 31 - 1).astype(np.int64)

    adelta = cv_round(m[0] * xs * scale)
    bdelta = cv_round(m[3] * xs * scale)
    round_delta = (1 << _AB_BITS) // 2 if nearest else (1 << _AB_BITS) // (1 << _INTER_BITS) // 2
    x0 = cv_round((m[1] * ys + m[2]) * scale) + round_delta
    y0 = cv_round((m[4] * ys + m[5]) * scale) + round_delta
    shift = _AB_BITS if nearest else _AB_BITS - _INTER_BITS
    X = (x0[:, None] + adelta[None, :]) >> shift
    Y = (y0[:, None] + bdelta[None, :]) >> shift
    if nearest:
        return np.clip(np.stack([X, Y], axis=-1), -32768, 32767).astype(np.int16), None
    map1 = np.clip(np.stack([X >> _INTER_BITS, Y >> _INTER_BITS], axis=-1), -32768, 32767).astype(np.int16)
    mask = (1 << _INTER_BITS) - 1
    map2 = ((Y & mask) * (1 << _INTER_BITS) + (X & mask)).astype(np.uint16)
    return map1, map2


def _warp(img: np.ndarray, st: Warp, interp: int, fill: tuple[float, ...]) -> np.ndarray:
    if interp == cv2.INTER_AREA:  # warpAffine treats area as linear
        interp = cv2.INTER_LINEAR
    map1, map2 = affine_remap_maps(st.matrix_array, st.out_w, st.out_h, nearest=interp == cv2.INTER_NEAREST)
    return _hwc(cv2.remap(img, map1, map2, interp, borderMode=cv2.BORDER_CONSTANT, borderValue=_fill4(fill)))


def _pad(img: np.ndarray, st: Pad, fill: tuple[float, ...]) -> np.ndarray:
    p = st.pad
    return _hwc(cv2.copyMakeBorder(img, p, p, p, p, cv2.BORDER_CONSTANT, value=_fill4(fill)))


def _crop(img: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray:
    if x < 0 or y < 0 or w <= 0 or h <= 0 or y + h > img.shape[0] or x + w > img.shape[1]:
        raise ValueError(f"crop ({x}, {y}, {w}x{h}) lies outside the {img.shape[1]}x{img.shape[0]} image")
    return img[y:y + h, x:x + w]


def _geometric(img: np.ndarray, st, mask: bool) -> np.ndarray:
    interp = 0 if mask else getattr(st, "interp", 0)
    if isinstance(st, Resize):
        return _resize(img, st, interp)
    if isinstance(st, Warp):
        return _warp(img, st, interp, (0.0,) if mask else st.fill)
    if isinstance(st, Pad):
        return _pad(img, st, (0.0,) if mask else st.fill)
    if isinstance(st, Crop):
        return _crop(img, st.x, st.y, st.w, st.h)
    if isinstance(st, CropResize):
        roi = _crop(img, st.x, st.y, st.w, st.h)
        return _hwc(cv2.resize(roi, (st.out_w, st.out_h), interpolation=interp))
    raise TypeError(f"not a geometric stage: {st!r}")


# --- colour stages -----------------------------------------------------------------------------------
def _need3(img: np.ndarray, what: str) -> None:
    if img.shape[2] != 3:
        raise ValueError(f"{what} needs a 3-channel image, got {img.shape[2]} channels")


def _brightness(img: np.ndarray, st: Brightness) -> np.ndarray:
    return _linear(img, st.alpha, 0.0)


def _contrast(img: np.ndarray, st: Contrast) -> np.ndarray:
    _need3(img, "contrast jitter")
    a = F32(st.alpha)
    beta = F32(F32(1) - a) * F32(_gray_mean(img))
    return _linear(img, float(a), float(beta))


def _saturation(img: np.ndarray, st: Saturation) -> np.ndarray:
    """``addWeighted(v, a, gray3, 1 - a, 0)``: float32 ``v*a + g*(1-a) + 0``, rounded and saturated."""
    _need3(img, "saturation jitter")
    a = F32(st.alpha)
    g = _gray(img).astype(F32)[:, :, None]
    v = img.astype(F32) * a
    v += g * F32(F32(1) - a)
    v += F32(0)
    return _round_sat(v, img.dtype)


# --- HLS (OpenCV 3.4's float algorithm, hue in half degrees as for 8-bit images) ----------------------
def _simd_columns(width: int) -> np.ndarray:
    """Columns OpenCV 3.4's SSE2 RGB2HLS handles (per row: blocks of 256 pixels, 8 at a time; the rest
    of each block goes through the scalar code, whose saturation formula rounds differently)."""
    j = np.arange(width)
    block_len = np.minimum(width - (j // 256) * 256, 256)
    return (j % 256) < (block_len // 8) * 8


def _bgr_to_hls(b: np.ndarray, g: np.ndarray, r: np.ndarray,
                simd: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 B, G, R in [0, 1] -> H in [0, 180), L, S in [0, 1] (``RGB2HLS_f`` with hscale 0.5)."""
    vmax = np.maximum(np.maximum(r, g), b)
    vmin = np.minimum(np.minimum(r, g), b)
    diff = vmax - vmin
    vsum = vmax + vmin
    lum = vsum * F32(0.5)
    colourful = diff > np.finfo(np.float32).eps
    with np.errstate(divide="ignore", invalid="ignore"):
        sat = np.where(lum < F32(0.5), diff / vsum, diff / ((F32(2) - vmax) - vmin))
        if simd is not None:
            sat_simd = diff / np.where(lum >= F32(0.5), F32(2) - vsum, vsum)
            sat = np.where(simd, sat_simd, sat)
        k = F32(60) / diff
        hue = np.where(vmax == r, (g - b) * k,
                       np.where(vmax == g, (b - r) * k + F32(120), (r - g) * k + F32(240)))
    hue = np.where(hue < 0, hue + F32(360), hue) * F32(0.5)
    zero = F32(0)
    return (np.where(colourful, hue, zero).astype(F32), lum.astype(F32),
            np.where(colourful, sat, zero).astype(F32))


def _hls_to_bgr(h: np.ndarray, lum: np.ndarray, sat: np.ndarray) -> np.ndarray:
    """``HLS2RGB_f`` (H in half degrees, L, S in [0, 1]) -> float32 (..., 3) BGR in [0, 1]."""
    p2 = np.where(lum <= F32(0.5), lum * (F32(1) + sat), lum + sat - lum * sat).astype(F32)
    p1 = (F32(2) * lum - p2).astype(F32)
    hh = (h * F32(6.0 / 180.0)).astype(F32)
    hh = np.where(hh < 0, hh + F32(6), np.where(hh >= F32(6), hh - F32(6), hh))
    sector = np.floor(hh).astype(np.intp)
    frac = (hh - sector).astype(F32)
    tab = np.stack([p2, p1, p1 + (p2 - p1) * (F32(1) - frac), p1 + (p2 - p1) * frac], axis=-1)
    order = np.array([[1, 3, 0], [1, 0, 2], [3, 0, 1], [0, 2, 1], [0, 1, 3], [2, 1, 0]])
    bgr = np.take_along_axis(tab, order[np.clip(sector, 0, 5)], axis=-1)
    return np.where((sat == 0)[..., None], lum[..., None], bgr).astype(F32)


def _hsl(img: np.ndarray, st: HSL) -> np.ndarray:
    _need3(img, "HSL jitter")
    if img.dtype == np.uint8:
        x = img.astype(F32) * F32(1.0 / 255.0)
        h, lum, sat = _bgr_to_hls(x[..., 0], x[..., 1], x[..., 2], _simd_columns(img.shape[1]))
        hls = np.rint(np.stack([h, lum * F32(255), sat * F32(255)], axis=-1)).astype(np.int32)
        hls += np.array([st.dh, int(st.dl), int(st.ds)], dtype=np.int32)
        np.clip(hls, 0, np.array([180, 255, 255]), out=hls)
        bgr = _hls_to_bgr(hls[..., 0].astype(F32), hls[..., 1].astype(F32) * F32(1.0 / 255.0),
                          hls[..., 2].astype(F32) * F32(1.0 / 255.0))
        return _round_sat(bgr * F32(255), img.dtype)
    if img.dtype != np.uint16:
        raise ValueError(f"HSL jitter needs uint8 or uint16 images, got {img.dtype}")
    top = F32(65535)
    x = img.astype(F32) * F32(1.0 / 65535.0)
    h, lum, sat = _bgr_to_hls(x[..., 0], x[..., 1], x[..., 2], None)
    h = np.clip(h + F32(st.dh), 0, 180)
    lum = np.clip(lum + F32(st.dl / 65535.0), 0, 1)
    sat = np.clip(sat + F32(st.ds / 65535.0), 0, 1)
    return _round_sat(_hls_to_bgr(h.astype(F32), lum.astype(F32), sat.astype(F32)) * top, img.dtype)


def _pca(img: np.ndarray, st: PCANoise) -> np.ndarray:
    _need3(img, "PCA lighting noise")
    v = img.astype(F32) + np.array(st.add_bgr, dtype=F32)
    if img.dtype == np.float32:
        return v
    lo, hi = _INT_RANGE[img.dtype.name]
    v = np.trunc(v)
    np.clip(v, lo, hi, out=v)
    return v.astype(img.dtype)


def _intensity(img: np.ndarray, st: Intensity) -> np.ndarray:
    return _round_sat(img.astype(F32) * F32(st.scale) + F32(st.offset), img.dtype)


_COLOUR = {Brightness: _brightness, Contrast: _contrast, Saturation: _saturation, HSL: _hsl, PCANoise: _pca,
           Intensity: _intensity, FloatIntensity: intensity.apply}


# --- output ------------------------------------------------------------------------------------------
def _round_half_away(m: np.ndarray) -> np.ndarray:
    return np.sign(m) * np.floor(np.abs(m) + 0.5)


@functools.lru_cache(maxsize=32)
def _value_lut(src_dtype: str, out_dtype: str, mean: float, mult: float, bias: float) -> np.ndarray:
    """``Normalize`` applied to every value of an integer source dtype, computed exactly as the direct path
    (float32 arithmetic in the same order; int outputs saturate ``p - round_half_away(mean)``)."""
    p = np.arange(np.iinfo(src_dtype).max + 1, dtype=src_dtype)
    if out_dtype in ("int8", "int16"):
        lo, hi = _INT_RANGE[out_dtype]
        v = p.astype(np.int64) - np.int64(_round_half_away(F32(mean)))
        lut = np.clip(v, lo, hi).astype(out_dtype)
    else:
        lut = np.subtract(p, F32(mean), dtype=F32)
        lut *= F32(mult)
        lut += F32(bias)
        if out_dtype != "float32":
            with np.errstate(over="ignore"):
                lut = lut.astype(out_dtype)
    lut.setflags(write=False)
    return lut


def _write(img: np.ndarray, st: Normalize, out: np.ndarray) -> None:
    c = out.shape[0]
    dst = out[:, :, ::-1] if st.mirror else out
    od = st.out_dtype
    mi = st.mean_image.data if st.mean_image is not None else None
    if od in ("uint8", "uint16"):
        for k in range(c):
            dst[k] = img[:, :, st.swap[k]]
        return
    if mi is None and img.dtype == np.uint8:
        # 8-bit sources: the per-pixel formula only depends on the value, so look it up (one pass). float32
        # goes through cv2.LUT, plane by plane into the contiguous output rows (mirrored planes flipped first).
        # (16-bit sources take the direct path below: a 65536-entry table is slower than the arithmetic.)
        planes = cv2.split(img) if od == "float32" else None
        for k in range(c):
            lut = _value_lut("uint8", od, float(st.mean[k]), float(st.mult[k]), float(st.bias[k]))
            if planes is not None and out[k].flags.c_contiguous:
                plane = planes[st.swap[k]]
                cv2.LUT(cv2.flip(plane, 1) if st.mirror else plane, lut, dst=out[k])
            else:
                np.take(lut, img[:, :, st.swap[k]], out=dst[k], mode="clip")
        return
    if od in ("int8", "int16"):
        lo, hi = _INT_RANGE[od]
        for k in range(c):
            m = _round_half_away(mi[k]).astype(np.int64) if mi is not None \
                else np.int64(_round_half_away(np.float32(st.mean[k])))
            v = img[:, :, st.swap[k]].astype(np.int64) - m
            np.clip(v, lo, hi, out=v)
            dst[k] = v
        return
    tgt = dst if od == "float32" else np.empty(out.shape, dtype=F32)
    for k in range(c):
        mean = mi[k] if mi is not None else F32(st.mean[k])
        np.subtract(img[:, :, st.swap[k]], mean, out=tgt[k], dtype=F32)
        tgt[k] *= F32(st.mult[k])
        # x + 0.0 == x bit for bit unless x is -0.0, which (integer - mean) * (mult > 0) never is
        if st.bias[k] != 0 or not st.mult[k] > 0 or img.dtype.kind == "f":
            tgt[k] += F32(st.bias[k])
    if od != "float32":
        with np.errstate(over="ignore"):  # beyond float16's range is inf, as IEEE rounding gives
            dst[...] = tgt.astype(out.dtype)


# --- entry point -------------------------------------------------------------------------------------
def execute(plan: SamplePlan, image: np.ndarray, out: np.ndarray, *, mode: str = "image",
            fast: bool = True) -> None:
    """Run ``plan`` on ``image`` (decoded ``(H, W, C)``, or ``(H, W)`` for one channel) and write the sample
    into ``out``, a preallocated ``(C, H, W)`` array (typically one slot of a batch) of the plan's dtype.

    ``mode="mask"``: run only the geometric stages with nearest sampling and fill 0 on ``image`` (a label
    mask of the same height and width as the planned image, any channel count and dtype) and write its
    channels unchanged (mirrored with the image) into ``out`` of shape ``(K, H, W)``.
    """
    if mode not in ("image", "mask"):
        raise ValueError(f"mode must be 'image' or 'mask', got {mode!r}")
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
        raise ValueError("image must be an (H, W) or (H, W, C) numpy array")
    img = _hwc(image)
    h, w, c = plan.src_shape
    oc, oh, ow = plan.out_shape
    if img.shape[:2] != (h, w):
        raise ValueError(f"image is {img.shape[1]}x{img.shape[0]}, the plan was made for {w}x{h}")
    if not isinstance(out, np.ndarray) or out.ndim != 3 or out.shape[1:] != (oh, ow):
        raise ValueError(f"out must be a (C, {oh}, {ow}) array, got "
                         f"{getattr(out, 'shape', type(out).__name__)}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")

    if mode == "mask":
        if out.shape[0] != img.shape[2]:
            raise ValueError(f"out has {out.shape[0]} channels, the mask has {img.shape[2]}")
        for st in geometric_stages(plan):
            img = _geometric(img, st, mask=True)
        dst = out[:, :, ::-1] if plan.mirror else out
        chw = np.moveaxis(img, 2, 0)
        if not np.can_cast(chw.dtype, out.dtype):
            raise ValueError(f"a {chw.dtype} mask cannot be written into a {out.dtype} output without loss")
        np.copyto(dst, chw)
        return

    if img.shape[2] != c:
        raise ValueError(f"image has {img.shape[2]} channels, the plan was made for {c}")
    if img.dtype != plan.src_dtype:
        raise ValueError(f"image is {img.dtype}, the plan was made for {plan.src_dtype}")
    check_output_dtype(plan.src_dtype, plan.out_dtype)
    check_float_intensity(plan)
    if out.shape[0] != oc or out.dtype != plan.out_dtype:
        raise ValueError(f"out must be ({oc}, {oh}, {ow}) {plan.out_dtype}, got {out.shape} {out.dtype}")

    norm = plan.normalize
    if fast and fused.run(plan, img, out):
        return
    for st in plan.stages[:-1]:
        fn = _COLOUR.get(type(st))
        img = fn(img, st) if fn is not None else _geometric(img, st, mask=False)
    if img.shape[:2] != (oh, ow):
        raise ValueError(f"the plan produced a {img.shape[1]}x{img.shape[0]} image for a {ow}x{oh} output")
    if norm.mean_image is not None and norm.mean_image.shape != (oc, oh, ow):
        raise ValueError(f"mean image has shape {norm.mean_image.shape}, output is {(oc, oh, ow)}")
    _write(img, norm, out)


def execute_batch(plans: list[SamplePlan], images: list[np.ndarray], out: np.ndarray) -> None:
    """Execute plan *i* on image *i* into ``out[i]``."""
    if len(plans) != len(images) or len(plans) > out.shape[0]:
        raise ValueError(f"{len(plans)} plans, {len(images)} images, {out.shape[0]} output slots")
    for i, (p, im) in enumerate(zip(plans, images)):
        execute(p, im, out[i])


__all__ = ["execute", "execute_batch", "affine_remap_maps"]
