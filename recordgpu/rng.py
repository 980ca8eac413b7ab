"""MXNet's random numbers, bit for bit: std::mt19937 and the libstdc++ (pre-GCC 9) distributions.

MXNet 1.9.1 draws every random augmentation parameter and every shuffle from ``std::mt19937`` through
libstdc++'s distribution objects. Reproducing its batches for a given seed therefore means reproducing
those exact algorithms (spec ``mxnet-1.9.1.md`` §3.4, §3.12):

* ``uniform_int``: the downscaling/rejection rule of ``uniform_int_distribution`` (pre GCC 11);
* ``uniform_real`` / ``u01``: ``generate_canonical<float, 24>`` then ``u * (b - a) + a`` in float32;
* ``bernoulli_half``: ``generate_canonical<double, 53>`` (two draws) ``< 0.5``;
* ``NormalFloat``: Marsaglia's polar method, caching the second value;
* ``shuffle``: ``std::shuffle`` without the GCC >= 9 "two swaps per draw" optimisation.
"""
from __future__ import annotations

from typing import MutableSequence, TypeVar

import numpy as np

T = TypeVar("T")

_F32_ONE_BELOW = np.nextafter(np.float32(1.0), np.float32(0.0))
_TWO32 = np.float32(4294967296.0)


class MT19937:
    """``std::mt19937`` seeded with a 32-bit integer (numpy's legacy seeding is the same algorithm)."""

    __slots__ = ("_bg", "seed")

    def __init__(self, seed: int) -> None:
        self.seed = int(seed) & 0xFFFFFFFF
        self._bg = np.random.RandomState(self.seed)._bit_generator

    def __call__(self) -> int:
        """One raw 32-bit output."""
        return int(self._bg.random_raw())

    def raw(self, n: int) -> np.ndarray:
        """The next ``n`` raw outputs as a uint64 array (same stream as ``n`` calls)."""
        return self._bg.random_raw(n)

    def reseed(self, seed: int) -> None:
        self.seed = int(seed) & 0xFFFFFFFF
        self._bg = np.random.RandomState(self.seed)._bit_generator

    def getstate(self) -> dict:
        return {"seed": self.seed, "state": self._bg.state}

    def setstate(self, state: dict) -> None:
        self.seed = state["seed"]
        self._bg = np.random.RandomState(self.seed)._bit_generator
        self._bg.state = state["state"]


def uniform_int(g: MT19937, a: int, b: int) -> int:
    """``std::uniform_int_distribution<>(a, b)(g)`` for a 32-bit engine (always at least one draw)."""
    urange = b - a
    if urange < 0:
        raise ValueError(f"uniform_int: empty range [{a}, {b}]")
    if urange == 0xFFFFFFFF:
        return g() + a
    uerange = urange + 1
    scaling = 0xFFFFFFFF // uerange
    past = uerange * scaling
    while True:
        ret = g()
        if ret < past:
            return ret // scaling + a


def u01(g: MT19937) -> np.float32:
    """``std::uniform_real_distribution<float>(0, 1)(g)``: one draw, float32, always < 1."""
    r = np.float32(g()) / _TWO32
    if r >= np.float32(1.0):
        r = _F32_ONE_BELOW
    return np.float32(r)


def uniform_real(g: MT19937, a: float, b: float) -> np.float32:
    """``std::uniform_real_distribution<float>(a, b)(g)`` computed in float32."""
    a32 = np.float32(a)
    b32 = np.float32(b)
    return np.float32(u01(g) * (b32 - a32) + a32)


def canonical_double(g: MT19937) -> float:
    """``std::generate_canonical<double, 53>(g)``: two draws."""
    lo = float(g())
    hi = float(g())
    r = (lo + hi * 4294967296.0) / 18446744073709551616.0
    if r >= 1.0:
        r = float(np.nextafter(1.0, 0.0))
    return r


def bernoulli_half(g: MT19937) -> bool:
    """``std::bernoulli_distribution(0.5)(g)``: two draws."""
    return canonical_double(g) < 0.5


class NormalFloat:
    """``std::normal_distribution<float>(mean, std)``; MXNet creates a fresh one per image."""

    __slots__ = ("mean", "std", "_saved")

    def __init__(self, mean: float, std: float) -> None:
        self.mean = np.float32(mean)
        self.std = np.float32(std)
        self._saved: np.float32 | None = None

    def __call__(self, g: MT19937) -> np.float32:
        if self._saved is not None:
            ret, self._saved = self._saved, None
        else:
            while True:
                x = np.float32(np.float64(np.float32(2.0) * u01(g)) - 1.0)
                y = np.float32(np.float64(np.float32(2.0) * u01(g)) - 1.0)
                r2 = np.float32(x * x + y * y)
                if not (r2 > 1.0 or r2 == 0.0):
                    break
            mult = np.sqrt(np.float32(np.float32(-2) * np.log(r2)) / r2, dtype=np.float32)
            self._saved = np.float32(x * mult)
            ret = np.float32(y * mult)
        return np.float32(ret * self.std + self.mean)


def shuffle(seq: MutableSequence[T], g: MT19937) -> MutableSequence[T]:
    """In-place ``std::shuffle`` as in libstdc++ before GCC 9; returns ``seq``."""
    n = len(seq)
    if n < 256:
        for i in range(1, n):
            j = uniform_int(g, 0, i)
            seq[i], seq[j] = seq[j], seq[i]
        return seq
    js = _shuffle_draws(n, g)
    if isinstance(seq, np.ndarray):
        _apply_swaps_array(seq, js)
    else:
        for i, j in enumerate(js.tolist()):
            if i:
                seq[i], seq[j] = seq[j], seq[i]
    return seq


_WINDOW = 1 << 16


def _shuffle_draws(n: int, g: MT19937) -> np.ndarray:
    """``j_i = uniform_int(g, 0, i)`` for i = 1..n-1, vectorised, consuming exactly the draws a loop would."""
    js = np.zeros(n, np.int64)
    pos = 1
    buf = np.empty(0, np.uint64)
    while pos < n:
        if len(buf) == 0:
            buf = g.raw(n - pos)  # one draw per remaining position; rejections draw more later
        k = min(len(buf), _WINDOW)
        r = np.arange(pos + 1, pos + k + 1, dtype=np.uint64)  # range size i + 1 for position i
        scaling = np.uint64(0xFFFFFFFF) // r
        past = r * scaling
        rejected = np.flatnonzero(buf[:k] >= past)
        m = int(rejected[0]) if len(rejected) else k
        js[pos:pos + m] = (buf[:m] // scaling[:m]).astype(np.int64)
        pos += m
        buf = buf[m + 1:] if m < k else buf[k:]  # a rejected draw is consumed and skipped
    return js


def _apply_swaps_array(a: np.ndarray, js: np.ndarray) -> None:
    lst = a.tolist()
    for i, j in enumerate(js.tolist()):
        if i:
            lst[i], lst[j] = lst[j], lst[i]
    a[:] = lst
