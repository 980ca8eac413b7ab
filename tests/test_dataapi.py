"""MXNet's Python data API (spec §4.1-4.3) and the HostArray CPU output type."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from recordgpu.imageiter.dataapi import DataBatch, DataDesc, DataIter, HostArray, as_host_array


# --- DataDesc ----------------------------------------------------------------------------------------
def test_datadesc_is_a_two_field_namedtuple_with_attributes():
    d = DataDesc("data", (4, 1, 2, 2))
    assert tuple(d) == ("data", (4, 1, 2, 2)) and len(d) == 2
    assert d.name == "data" and d.shape == (4, 1, 2, 2)
    assert d.dtype is np.float32 and d.layout == "NCHW"
    name, shape = d
    assert (name, shape) == ("data", (4, 1, 2, 2))
    assert d == ("data", (4, 1, 2, 2))
    e = DataDesc("softmax_label", (4,), np.uint8, "N")
    assert e.dtype is np.uint8 and e.layout == "N"


def test_datadesc_repr_is_mxnets():
    assert repr(DataDesc("data", (4, 1, 2, 2))) == "DataDesc[data,(4, 1, 2, 2),<class 'numpy.float32'>,NCHW]"
    assert repr(DataDesc("softmax_label", (4,), np.float32, "NCHW")) == \
        "DataDesc[softmax_label,(4,),<class 'numpy.float32'>,NCHW]"
    assert repr([DataDesc("d", (2, 3), np.int8, None)]) == "[DataDesc[d,(2, 3),<class 'numpy.int8'>,None]]"


def test_datadesc_get_batch_axis():
    assert DataDesc.get_batch_axis(None) == 0
    assert DataDesc.get_batch_axis("NCHW") == 0
    assert DataDesc.get_batch_axis("TNC") == 1
    assert DataDesc.get_batch_axis("CHW") == -1


def test_datadesc_get_list():
    with_types = DataDesc.get_list([("data", (2, 3)), ("label", (2,))], [("label", np.int32), ("data", np.uint8)])
    assert [tuple(d) for d in with_types] == [("data", (2, 3)), ("label", (2,))]
    assert [d.dtype for d in with_types] == [np.uint8, np.int32]
    plain = DataDesc.get_list([("data", (2, 3))], None)
    assert plain[0].dtype is np.float32 and plain[0].layout == "NCHW"
    with pytest.raises(KeyError):
        DataDesc.get_list([("data", (2, 3))], [("other", np.uint8)])


# --- DataBatch ---------------------------------------------------------------------------------------
def test_databatch_str_is_mxnets():
    b = DataBatch(data=[np.zeros((4, 1, 2, 2))], label=[np.zeros((4,))])
    assert str(b) == "DataBatch: data shapes: [(4, 1, 2, 2)] label shapes: [(4,)]"
    assert str(DataBatch(data=[np.zeros((4, 1, 2, 2))])) == \
        "DataBatch: data shapes: [(4, 1, 2, 2)] label shapes: None"
    assert str(DataBatch(data=[np.zeros((2, 3))], label=[])) == "DataBatch: data shapes: [(2, 3)] label shapes: None"
    assert str(DataBatch(data=None)) == "DataBatch: data shapes: None label shapes: None"


def test_databatch_stores_every_field():
    idx = np.arange(4, dtype=np.uint64)
    b = DataBatch((np.ones(2),), [np.ones(2)], pad=1, index=idx, bucket_key=7,
                  provide_data=[DataDesc("data", (2,))], provide_label=[DataDesc("l", (2,))])
    assert isinstance(b.data, tuple) and b.pad == 1 and b.index is idx and b.bucket_key == 7
    assert b.provide_data[0].name == "data" and b.provide_label[0].name == "l"
    bare = DataBatch([np.ones(1)])
    assert (bare.label, bare.pad, bare.index, bare.bucket_key, bare.provide_data, bare.provide_label) == \
        (None,) * 6


def test_databatch_requires_lists():
    with pytest.raises(AssertionError, match="Data must be list of NDArrays"):
        DataBatch(np.zeros(3))
    with pytest.raises(AssertionError, match="Label must be list of NDArrays"):
        DataBatch([np.zeros(3)], label=np.zeros(3))


# --- DataIter ----------------------------------------------------------------------------------------
class _Counter(DataIter):
    def __init__(self, n: int) -> None:
        super().__init__(batch_size=2)
        self.n, self.i = n, 0

    def iter_next(self):
        self.i += 1
        return self.i <= self.n

    def getdata(self):
        return [np.full((2, 1), self.i)]

    def getlabel(self):
        return [np.full((2,), -self.i)]

    def getpad(self):
        return int(self.i == self.n)

    def getindex(self):
        return np.array([self.i, self.i], np.uint64)


def test_dataiter_next_builds_batches_from_the_accessors():
    it = _Counter(3)
    assert iter(it) is it and it.batch_size == 2
    batches = list(it)
    assert [b.data[0][0, 0] for b in batches] == [1, 2, 3]
    assert [b.label[0][0] for b in batches] == [-1, -2, -3]
    assert [b.pad for b in batches] == [0, 0, 1]
    assert batches[2].index.tolist() == [3, 3]
    with pytest.raises(StopIteration):
        it.next()
    with pytest.raises(StopIteration):
        next(it)


def test_dataiter_base_defaults():
    it = DataIter()
    assert it.batch_size == 0
    assert it.reset() is None
    assert it.iter_next() is None and it.getdata() is None and it.getlabel() is None
    assert it.getpad() is None and it.getindex() is None
    with pytest.raises(StopIteration):
        it.next()
    assert list(DataIter(5)) == []


# --- HostArray ---------------------------------------------------------------------------------------
def test_host_array_is_an_ndarray_with_asnumpy_copy():
    base = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    a = as_host_array(base)
    assert isinstance(a, np.ndarray) and isinstance(a, HostArray)
    assert np.shares_memory(a, base) and a.flags.writeable == base.flags.writeable
    out = a.asnumpy()
    assert type(out) is np.ndarray and out.dtype == np.float32
    np.testing.assert_array_equal(out, base)
    out[0, 0, 0] = 99
    assert a[0, 0, 0] == 0 and not np.shares_memory(out, a)


def test_host_array_slices_and_arithmetic_stay_host_arrays():
    a = as_host_array(np.arange(12, dtype=np.float32).reshape(3, 4))
    row = a[1]
    assert isinstance(row, HostArray) and np.shares_memory(row, a)
    assert row.asnumpy().tolist() == [4, 5, 6, 7]
    s = a * 2 + 1
    assert isinstance(s, HostArray) and s[2, 3] == 23
    assert isinstance(a[1, 2], np.floating) and not isinstance(a[1, 2], HostArray)
    assert float(a.sum()) == 66.0
    assert a.dtype == np.float32 and a.shape == (3, 4)
    assert not hasattr(a, "context") and not hasattr(a, "ctx")


def test_host_array_asscalar():
    assert as_host_array(np.array([2.5], np.float32)).asscalar() == np.float32(2.5)
    assert as_host_array(np.array(3, np.int8)).asscalar() == 3
    with pytest.raises(ValueError, match="The current array is not a scalar"):
        as_host_array(np.zeros(2)).asscalar()


def test_host_array_exports_dlpack_sharing_memory():
    a = as_host_array(np.zeros((2, 3), np.float32))
    view = np.from_dlpack(a)
    assert type(view) is np.ndarray and np.shares_memory(view, a)
    a[1, 2] = 7.0
    assert view[1, 2] == 7.0
    capsule = a.__dlpack__()
    assert type(capsule).__name__ == "PyCapsule"
    assert a.__dlpack_device__() == (1, 0)  # kDLCPU, device 0


@pytest.mark.skipif(np.lib.NumpyVersion(np.__version__) < "2.1.0",
                    reason="numpy < 2.1 cannot export read-only arrays through DLPack")
def test_read_only_host_array_still_exports_dlpack():
    base = np.arange(4, dtype=np.uint16)
    base.flags.writeable = False
    view = np.from_dlpack(as_host_array(base))
    assert np.shares_memory(view, base) and not view.flags.writeable


def test_as_host_array_does_not_copy_and_checks_type():
    a = as_host_array(np.ones(3))
    assert as_host_array(a) is a
    with pytest.raises(TypeError, match="numpy.ndarray"):
        as_host_array([1, 2, 3])


def test_host_array_pickles_as_host_array():
    a = as_host_array(np.arange(6, dtype=np.int16).reshape(2, 3))
    b = pickle.loads(pickle.dumps(a))
    assert isinstance(b, HostArray) and b.dtype == np.int16
    np.testing.assert_array_equal(b, a)
