"""The host executor's fast path: resize + crop + normalise in one native pass.

The most common plans run through ``kernels/cpu_fused.cpp`` (1 or 3 channels, float32 output, no mean image,
optional mirror):

* uint8 images, ImageNet-style eval (``Resize`` then a centre ``Crop``) and train (``CropResize`` or a plain
  ``Crop``), bilinear: only the resized pixels the crop keeps are computed, with OpenCV's fixed-point bilinear
  arithmetic, and written normalised into the planar output in the same pass;
* uint16 / int16 images with at most a ``Crop`` (medical slices at their stored size): one pass from the stored
  values to the normalised float32 planes.

The numbers are those of the OpenCV/numpy path of :mod:`recordgpu.augment.cpu` (tested value for value); every
other plan, or a machine without a C++ compiler, takes that path.

The library is compiled on first use with the system C++ compiler and cached like the kernels' host build
(:mod:`recordgpu.kernels.host`). ``RECORDGPU_NATIVE=0`` turns the fast path off.
"""
from __future__ import annotations

import ctypes
import functools
import logging
import os
import threading
from typing import Any

import numpy as np

from .plan import INTER_LINEAR, Crop, CropResize, Normalize, Resize, SamplePlan

log = logging.getLogger(__name__)
_lock = threading.Lock()
_state: dict[str, Any] = {}  # "lib": the CDLL or None, "why": why it is off


def _load() -> ctypes.CDLL | None:
    from ..kernels.host import HostBuildError, build_cpu_library  # noqa: PLC0415 (lazy: needs a compiler)

    try:
        return bind(ctypes.CDLL(str(build_cpu_library())))
    except (HostBuildError, OSError, AttributeError) as e:  # AttributeError: an entry point is missing
        _state["why"] = str(e).splitlines()[0]
        log.info("CPU fast path off, OpenCV runs its stages (same numbers, slower): %s", _state["why"])
        return None


def bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Declare the argument types of the library's entry points; returns ``lib``."""
    vp, i, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
    fn = lib.rg_cpu_resize_normalize_u8
    fn.argtypes = [vp, i64, i, i, i, i, i, i, i, i, i, i, i, i, vp, vp, vp, vp, vp, i64, i]
    fn.restype = i
    fn = lib.rg_cpu_crop_normalize_16
    fn.argtypes = [vp, i64, i, i, i, i, i, i, vp, vp, vp, vp, vp, i64, i]
    fn.restype = i
    return lib


def library() -> ctypes.CDLL | None:
    """The fast path's library, built on first call; None when it is off (see :func:`status`)."""
    if "lib" not in _state:
        with _lock:
            if "lib" not in _state:
                if os.environ.get("RECORDGPU_NATIVE", "1") == "0":
                    _state["why"] = "RECORDGPU_NATIVE=0"
                    _state["lib"] = None
                else:
                    _state["lib"] = _load()
    return _state["lib"]


def status() -> str:
    """``'on'``, or ``'off: <reason>'``."""
    return "on" if library() is not None else f"off: {_state.get('why', 'unknown')}"


def _window(plan: SamplePlan, h: int, w: int) -> tuple[int, ...] | None:
    """(x0, y0, sw, sh, rw, rh, wx, wy) of the plan's geometry when the fast path can run it, else None:
    the source region (x0, y0, sw, sh) resized to rw x rh, and the top-left corner of the kept window."""
    geo = plan.stages[:-1]
    oh, ow = plan.out_shape[1:]
    if len(geo) == 1 and isinstance(geo[0], CropResize):
        st = geo[0]
        if st.interp != INTER_LINEAR:
            return None
        region, size, corner = (st.x, st.y, st.w, st.h), (st.out_w, st.out_h), None
    else:
        resize = crop = None
        rest = list(geo)
        if rest and isinstance(rest[0], Resize):
            resize = rest.pop(0)
            if resize.interp != INTER_LINEAR:
                return None
        if rest and isinstance(rest[0], Crop):
            crop = rest.pop(0)
        if rest:
            return None
        rw, rh = (resize.out_w, resize.out_h) if resize is not None else (w, h)
        region, size = (0, 0, w, h), (rw, rh)
        corner = None
        if crop is not None:
            if (crop.w, crop.h) != (ow, oh):
                return None
            corner = (crop.x, crop.y)
    x0, y0, sw, sh = region
    if x0 < 0 or y0 < 0 or sw <= 0 or sh <= 0 or x0 + sw > w or y0 + sh > h:
        return None  # the OpenCV path raises the error
    if corner is None:  # no crop: the resize makes the output
        if size != (ow, oh):
            return None
        corner = (0, 0)
    if corner[0] < 0 or corner[1] < 0 or corner[0] + ow > size[0] or corner[1] + oh > size[1]:
        return None
    return (x0, y0, sw, sh) + size + corner


def _crop(plan: SamplePlan, h: int, w: int) -> tuple[int, int] | None:
    """Top-left corner of the output window when the plan's geometry is at most a crop, else None."""
    geo = plan.stages[:-1]
    oh, ow = plan.out_shape[1:]
    if not geo:
        return (0, 0) if (h, w) == (oh, ow) else None
    if len(geo) != 1 or not isinstance(geo[0], Crop):
        return None
    st = geo[0]
    if (st.w, st.h) != (ow, oh) or st.x < 0 or st.y < 0 or st.x + ow > w or st.y + oh > h:
        return None
    return st.x, st.y


def run(plan: SamplePlan, img: np.ndarray, out: np.ndarray) -> bool:
    """Execute ``plan`` on ``img`` ((H, W, C)) into ``out`` ((C, H, W) float32) if the fast path can; False
    (nothing written) when it cannot: the caller then runs the OpenCV path."""
    norm: Normalize = plan.normalize
    h, w, c = img.shape
    item = img.itemsize
    if (c not in (1, 3) or norm.out_dtype != "float32" or norm.mean_image is not None
            or out.dtype != np.float32 or not out.flags.c_contiguous
            or (c > 1 and img.strides[2] != item) or img.strides[1] != c * item  # (H, W)[..., None]: any
            or img.strides[0] < w * c * item or img.strides[0] % item):
        return False
    if img.dtype == np.uint8:
        win = _window(plan, h, w)
    elif img.dtype in (np.uint16, np.int16):
        win = _crop(plan, h, w)
    else:
        return False
    if win is None:
        return False
    lib = library()
    if lib is None:
        return False
    oh, ow = out.shape[1:]
    _, (swap, mean, mult, bias) = _constants(norm)
    if img.dtype == np.uint8:
        rc = lib.rg_cpu_resize_normalize_u8(img.ctypes.data, img.strides[0], w, c, *win, ow, oh,
                                            swap, mean, mult, bias, out.ctypes.data, oh * ow, int(norm.mirror))
    else:
        rc = lib.rg_cpu_crop_normalize_16(img.ctypes.data, img.strides[0] // item, c, int(img.dtype == np.int16),
                                          *win, ow, oh, swap, mean, mult, bias, out.ctypes.data, oh * ow,
                                          int(norm.mirror))
    return rc == 0


@functools.lru_cache(maxsize=64)
def _constants(norm: Normalize) -> tuple[tuple[np.ndarray, ...], tuple[int, ...]]:
    """The channel map and the float32 mean / mult / bias of ``norm`` as arrays, with their addresses."""
    arrays = (np.asarray(norm.swap, np.int32), np.asarray(norm.mean, np.float32),
              np.asarray(norm.mult, np.float32), np.asarray(norm.bias, np.float32))
    return arrays, tuple(a.ctypes.data for a in arrays)


__all__ = ["run", "library", "status", "bind"]
