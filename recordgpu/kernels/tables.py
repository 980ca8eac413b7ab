"""OpenCV's warp interpolation tables (``initInterTab2D``), made in float32 exactly as OpenCV makes them.

``cv::remap`` with fixed-point maps (what warpAffine runs) weighs the taps around a source point with a
32 x 32 table of sub-pixel positions: float weights for 16-bit and float images, 15-bit integers summing to
exactly 32768 for 8-bit images (OpenCV moves the rounding error onto one centre tap). The kernels read the
tables from one buffer: the float tables (bilinear, bicubic, Lanczos-4), then the int16 ones, at the offsets
``RG_TAB_*`` in ``kernels/rg_warp.cuh``.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

F32 = np.float32
TAB_SIZE = 32
REMAP_COEF_SCALE = 1 << 15
FLT_EPSILON = F32(1.1920928955078125e-07)
_KSIZE = {1: 2, 2: 4, 4: 8}  # interpolation code -> taps per axis
F_OFFSETS = {1: 0, 2: 4096, 4: 20480}  # float offsets of each table (same in the int16 part)
F_COUNT = 86016


def _cubic(x: np.float32) -> list[np.float32]:
    a = F32(-0.75)
    c0 = ((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a
    c1 = ((a + 2) * x - (a + 3)) * x * x + 1
    c2 = ((a + 2) * (1 - x) - (a + 3)) * (1 - x) * (1 - x) + 1
    c3 = F32(1) - c0 - c1 - c2
    return [F32(c0), F32(c1), F32(c2), F32(c3)]


def _lanczos4(x: np.float32) -> list[np.float32]:
    """imgwarp.cpp's interpolateLanczos4 (double trigonometry, float weights normalised in float)."""
    if x < FLT_EPSILON:
        return [F32(0)] * 3 + [F32(1)] + [F32(0)] * 4
    s45 = 0.70710678118654752440084436210485
    cs = ((1, 0), (-s45, -s45), (0, 1), (s45, -s45), (-1, 0), (s45, s45), (0, -1), (-s45, s45))
    y0 = -float(x + 3) * math.pi * 0.25
    s0, c0 = math.sin(y0), math.cos(y0)
    out = []
    total = F32(0)
    for i in range(8):
        y = -float(x + 3 - i) * math.pi * 0.25
        v = F32((cs[i][0] * s0 + cs[i][1] * c0) / (y * y))
        out.append(v)
        total = F32(total + v)
    inv = F32(F32(1) / total)
    return [F32(v * inv) for v in out]


def _tab1d(interp: int) -> np.ndarray:
    k = _KSIZE[interp]
    tab = np.zeros((TAB_SIZE, k), dtype=F32)
    scale = F32(1) / F32(TAB_SIZE)
    for i in range(TAB_SIZE):
        x = F32(i * scale)
        if interp == 1:
            tab[i] = [F32(1) - x, x]
        elif interp == 2:
            tab[i] = _cubic(x)
        else:
            tab[i] = _lanczos4(x)
    return tab


def _tab2d(interp: int) -> tuple[np.ndarray, np.ndarray]:
    k = _KSIZE[interp]
    t1 = _tab1d(interp)
    ftab = np.zeros((TAB_SIZE * TAB_SIZE, k, k), dtype=F32)
    itab = np.zeros((TAB_SIZE * TAB_SIZE, k, k), dtype=np.int16)
    for i in range(TAB_SIZE):
        for j in range(TAB_SIZE):
            v = (t1[i][:, None] * t1[j][None, :]).astype(F32)  # float products, as OpenCV
            iv = np.clip(np.rint(v * F32(REMAP_COEF_SCALE)), -32768, 32767).astype(np.int32)
            isum = int(iv.sum())
            if isum != REMAP_COEF_SCALE and k > 2:  # bilinear weights are exact multiples of 1/1024
                # OpenCV's fix-up: put the error on the smallest / largest of taps [k/2, k/2 + 2)^2
                diff = isum - REMAP_COEF_SCALE
                flat = iv.reshape(-1)
                k2 = k // 2
                mk = Mk = (k2, k2)
                for k1 in range(k2, k2 + 2):
                    for kk in range(k2, k2 + 2):
                        val = flat[k1 * k + kk]
                        if val < flat[mk[0] * k + mk[1]]:
                            mk = (k1, kk)
                        elif val > flat[Mk[0] * k + Mk[1]]:
                            Mk = (k1, kk)
                if diff < 0:
                    flat[Mk[0] * k + Mk[1]] -= diff
                else:
                    flat[mk[0] * k + mk[1]] -= diff
            ftab[i * TAB_SIZE + j] = v
            itab[i * TAB_SIZE + j] = iv.astype(np.int16)
    return ftab, itab


@lru_cache(maxsize=1)
def interpolation_tables() -> np.ndarray:
    """The kernels' table buffer: float32 tables then int16 tables, as raw bytes (uint8, read-only)."""
    fpart = np.zeros(F_COUNT, dtype=F32)
    ipart = np.zeros(F_COUNT, dtype=np.int16)
    for interp, off in F_OFFSETS.items():
        f, i = _tab2d(interp)
        fpart[off:off + f.size] = f.reshape(-1)
        ipart[off:off + i.size] = i.reshape(-1)
    buf = np.concatenate([fpart.view(np.uint8), ipart.view(np.uint8)])
    buf.setflags(write=False)
    return buf


__all__ = ["interpolation_tables", "F_OFFSETS", "F_COUNT"]
