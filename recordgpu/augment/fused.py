"""The host executor's fast path: resize + crop + normalise of an 8-bit image in one native pass.

The most common plans (ImageNet-style eval: ``Resize`` then a centre ``Crop``; train: ``CropResize`` or a
plain ``Crop``; bilinear, uint8 source with 1 or 3 channels, float32 output, no mean image, optional mirror)
run through ``kernels/cpu_fused.cpp``: it computes only the resized pixels the crop keeps, with OpenCV's
fixed-point bilinear arithmetic, and writes them normalised into the planar output in the same pass. The
numbers are those of the OpenCV path of :mod:`recordgpu.augment.cpu` (tested pixel for pixel); every other
plan, or a machine without a C++ compiler, takes that path.

The library is compiled on first use with the system C++ compiler and cached like the kernels' host build
(:mod:`recordgpu.kernels.host`). ``RECORDGPU_NATIVE=0`` turns the fast path off.
"""
from __future__ import annotations

import ctypes
import functools
import os
import threading
from typing import Any

import numpy as np

from .plan import INTER_LINEAR, Crop, CropResize, Normalize, Resize, SamplePlan

_lock = threading.Lock()
_state: dict[str, Any] = {}  # "lib": the CDLL or None, "why": why it is off


def _load() -> ctypes.CDLL | None:
    from ..kernels.host import HostBuildError, build_cpu_library  # noqa: PLC0415 (lazy: needs a compiler)

    try:
        lib = ctypes.CDLL(str(build_cpu_library()))
    except (HostBuildError, OSError) as e:
        _state["why"] = str(e).splitlines()[0]
        return None
    vp, i, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
    fn = lib.rg_cpu_resize_normalize_u8
    fn.argtypes = [vp, i64, i, i, i, i, i, i, i, i, i, i, i, i, vp, vp, vp, vp, vp, i64, i]
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


def run(plan: SamplePlan, img: np.ndarray, out: np.ndarray) -> bool:
    """Execute ``plan`` on ``img`` ((H, W, C) uint8) into ``out`` ((C, H, W) float32) if the fast path can;
    False (nothing written) when it cannot: the caller then runs the OpenCV path."""
    norm: Normalize = plan.normalize
    c = img.shape[2]
    if (img.dtype != np.uint8 or c not in (1, 3) or norm.out_dtype != "float32" or norm.mean_image is not None
            or out.dtype != np.float32 or not out.flags.c_contiguous
            or img.strides[2] != 1 or img.strides[1] != c or img.strides[0] < img.shape[1] * c):
        return False
    win = _window(plan, img.shape[0], img.shape[1])
    if win is None:
        return False
    lib = library()
    if lib is None:
        return False
    oh, ow = out.shape[1:]
    _, (swap, mean, mult, bias) = _constants(norm)
    rc = lib.rg_cpu_resize_normalize_u8(img.ctypes.data, img.strides[0], img.shape[1], c, *win, ow, oh,
                                        swap, mean, mult, bias, out.ctypes.data, oh * ow, int(norm.mirror))
    return rc == 0


@functools.lru_cache(maxsize=64)
def _constants(norm: Normalize) -> tuple[tuple[np.ndarray, ...], tuple[int, ...]]:
    """The channel map and the float32 mean / mult / bias of ``norm`` as arrays, with their addresses."""
    arrays = (np.asarray(norm.swap, np.int32), np.asarray(norm.mean, np.float32),
              np.asarray(norm.mult, np.float32), np.asarray(norm.bias, np.float32))
    return arrays, tuple(a.ctypes.data for a in arrays)


__all__ = ["run", "library", "status"]
