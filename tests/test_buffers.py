"""Pooled batch arrays: reused only when nothing references them, so a batch the caller keeps stays valid."""
import gc

import numpy as np
import pytest

from conftest import ORACLE
from recordgpu import ImageRecordIter
from recordgpu.imageiter.buffers import BatchBuffers

SHAPE = (4, 3, 8, 8)


class SubArray(np.ndarray):
    pass


def test_reused_after_the_caller_drops_it():
    pool = BatchBuffers(keep=2)
    a = pool.empty(SHAPE, np.float32)
    ptr = a.__array_interface__["data"][0]
    del a
    b = pool.empty(SHAPE, np.float32)
    assert b.__array_interface__["data"][0] == ptr and pool.reused == 1


@pytest.mark.parametrize("hold", ["view", "slice", "copy-free asarray", "dlpack", "subclass view"])
def test_not_reused_while_anything_made_from_it_is_alive(hold):
    pool = BatchBuffers(keep=2)
    a = pool.empty(SHAPE, np.float32)
    a[...] = 7
    ptr = a.__array_interface__["data"][0]
    held = {"view": lambda x: x.view(), "slice": lambda x: x[1:, 0], "copy-free asarray": np.asarray,
            "dlpack": lambda x: x.__dlpack__(), "subclass view": lambda x: x.view(SubArray)}[hold](a)
    del a
    for _ in range(3):
        other = pool.empty(SHAPE, np.float32)
        assert other.__array_interface__["data"][0] != ptr
        other[...] = -1
    assert held is not None
    del held, other
    gc.collect()


@pytest.mark.parametrize("share", ["from_numpy", "from_dlpack"])
def test_torch_tensor_keeps_it_alive(share):
    torch = pytest.importorskip("torch")
    pool = BatchBuffers(keep=1)
    a = pool.empty(SHAPE, np.float32)
    a[...] = 3
    t = getattr(torch, share)(a)
    del a
    gc.collect()
    b = pool.empty(SHAPE, np.float32)
    b[...] = 0
    assert float(t.sum()) == 3 * np.prod(SHAPE)


def test_pool_is_bounded_and_other_shapes_evict_idle_ones():
    pool = BatchBuffers(keep=2)
    held = [pool.empty(SHAPE, np.float32) for _ in range(5)]  # 2 pooled + 3 plain
    assert pool.allocated == 5 and len(pool._arrays) == 2
    del held
    pool.empty((2, 2), np.uint8)  # a new shape replaces an idle pooled array
    assert len(pool._arrays) == 2 and {a.shape for a in pool._arrays} == {SHAPE, (2, 2)}
    assert pool.empty(SHAPE, np.float32).shape == SHAPE and pool.reused == 1


def test_keep_zero_never_pools():
    pool = BatchBuffers(keep=0)
    a = pool.empty(SHAPE, np.float32)
    ptr = a.__array_interface__["data"][0]
    del a
    assert pool.empty(SHAPE, np.uint8).dtype == np.uint8 and pool.reused == 0 and not pool._arrays
    assert ptr  # (nothing kept: no reuse possible)


def test_batches_kept_by_the_caller_are_never_overwritten():
    kw = dict(path_imgrec=str(ORACLE / "color8.rec"), data_shape=(3, 16, 16), batch_size=3, shuffle=True,
              rand_mirror=True, seed=3, prefetch_buffer=1)
    kept, copies = [], []
    with ImageRecordIter(**kw) as it:
        for epoch in range(4):
            if epoch:
                it.reset()
            for b in it:
                kept.append(b.data[0])
                copies.append(np.array(b.data[0]))
    assert len(kept) > 3 + 2  # more batches than the pool keeps
    for k, c in zip(kept, copies):
        assert np.array_equal(np.asarray(k), c)


def test_dropped_batches_are_recycled_by_the_iterator():
    kw = dict(path_imgrec=str(ORACLE / "color8.rec"), data_shape=(3, 16, 16), batch_size=2, prefetch_buffer=1)
    with ImageRecordIter(**kw) as it:
        n = 0
        for _ in range(3):
            for b in it:
                n += 1
                del b
            it.reset()
        pool = it._engine._buffers
        assert pool.reused >= n - (1 + 2) - 1 and pool.allocated <= 1 + 2 + 1

