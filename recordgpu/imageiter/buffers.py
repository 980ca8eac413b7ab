"""Batch arrays that are reused once nobody holds them any more.

A fresh 40 MB batch array per batch is a fresh mmap: page faults and kernel zeroing in every worker thread
that first writes to it. :class:`BatchBuffers` keeps up to ``keep`` arrays and hands
one out again only when its reference count shows that no batch, view, DLPack capsule or tensor made from
it is alive: a batch handed to the caller stays valid for as long as the caller keeps any reference to it.
On interpreters where reference counts are not exact (free-threaded builds) it always allocates.
"""
from __future__ import annotations

import sys

import numpy as np

# Free-threaded CPython defers reference counting, so sys.getrefcount cannot prove an array unused there.
_EXACT_REFCOUNTS = getattr(sys, "_is_gil_enabled", lambda: True)()


class BatchBuffers:
    """A small pool of ``np.empty`` arrays, keyed by shape and dtype. Used by one producer thread."""

    def __init__(self, keep: int) -> None:
        self.keep = max(0, int(keep))
        self._arrays: list[np.ndarray] = []
        self.reused = 0
        self.allocated = 0

    def empty(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        """An uninitialised array of ``shape`` and ``dtype``: a pooled one nobody references, else new."""
        dtype = np.dtype(dtype)
        if _EXACT_REFCOUNTS:
            for arr in self._arrays:  # (not enumerate: its cached tuple would hold one more reference)
                # references: the pool's list, ``arr`` and getrefcount's argument; any more is a live user
                if arr.shape == shape and arr.dtype == dtype and sys.getrefcount(arr) == 3:
                    self.reused += 1
                    return arr[...]  # a view: the pool tells its arrays apart from the ones handed out
        arr = np.empty(shape, dtype)
        self.allocated += 1
        if _EXACT_REFCOUNTS and self.keep:
            if len(self._arrays) >= self.keep:
                self._evict(shape, dtype)
            if len(self._arrays) < self.keep:
                self._arrays.append(arr)
                return arr[...]
        return arr

    def _evict(self, shape, dtype) -> None:
        """Make room for a new kind of array: drop an idle pooled array of another shape or dtype."""
        for i in range(len(self._arrays)):
            arr = self._arrays[i]
            if (arr.shape != shape or arr.dtype != dtype) and sys.getrefcount(arr) == 3:
                del self._arrays[i]
                return
