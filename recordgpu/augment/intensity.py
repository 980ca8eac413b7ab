"""Host execution of the :class:`~recordgpu.augment.plan.FloatIntensity` stage (window, intensity range,
zscore, percentile), with the arithmetic the plan documents and the kernels compute.

Statistics are taken the way the GPU's statistics kernel takes them, so both paths give the same bits on
the same pixels: sums in double, each of 256 lanes adding the values of pixels ``t, t + 256, ...`` in order
(every channel of a pixel in turn), then a fixed pairwise tree; percentiles are numpy's 'linear' method on
the values in double at ``q = f32(q)`` (order statistics are exact whichever way they are found).
"""
from __future__ import annotations

import numpy as np

from .plan import FloatIntensity

F32 = np.float32
LANES = 256  # the GPU statistics kernel's block size


def lane_sum(values: np.ndarray) -> float:
    """Sum of a ``(pixels, channels)`` float64 array in the GPU block's order (see the module docstring)."""
    n, c = values.shape
    rows = -(-n // LANES)
    padded = np.zeros((rows * LANES, c), np.float64)  # adding +0.0 leaves every partial sum as it was
    padded[:n] = values
    # (rows, lanes, channels) -> (rows * channels, lanes): reducing axis 0 adds row after row
    per_lane = np.add.reduce(padded.reshape(rows, LANES, c).transpose(0, 2, 1).reshape(rows * c, LANES), axis=0)
    width = LANES // 2
    while width:
        per_lane[:width] = per_lane[:width] + per_lane[width:2 * width]
        width //= 2
    return float(per_lane[0])


def statistics(v: np.ndarray, st: FloatIntensity) -> tuple[np.float32, np.float32]:
    """``(A, D)`` of the stage for the float32 ``(H, W, C)`` input ``v`` (already in modality units)."""
    k = st.constants()
    if st.mode == "range":
        return k["A"], k["D"]
    flat = v.reshape(-1, v.shape[-1]).astype(np.float64)
    count = flat.size
    if st.mode == "zscore":
        mean = lane_sum(flat) / count
        dev = flat - mean
        var = lane_sum(dev * dev) / count
        sd = F32(np.sqrt(var))
        return F32(mean), (F32(1) if sd == 0 else sd)
    lo, hi = np.percentile(flat.reshape(-1), [float(F32(st.q_lo)), float(F32(st.q_hi))])
    return F32(lo), F32(hi - lo)


def apply(img: np.ndarray, st: FloatIntensity) -> np.ndarray:
    """The stage on an ``(H, W, C)`` image of any source dtype; returns float32 ``(H, W, C)``."""
    k = st.constants()
    v = img.astype(F32) * k["slope"] + k["intercept"]
    a, d = statistics(v, st)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        u = (v - a) + k["F"] if d == 0 else ((v - a) / d) * k["E"] + k["F"]
    if st.clip:
        u = np.where(u < k["lo"], k["lo"], np.where(u > k["hi"], k["hi"], u)).astype(F32)  # NaN stays NaN
    return u.astype(F32, copy=False)


__all__ = ["apply", "statistics", "lane_sum", "LANES"]
