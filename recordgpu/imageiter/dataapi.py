"""MXNet's Python data API (``mx.io.DataDesc``, ``DataBatch``, ``DataIter``) and the CPU array type.

The three classes behave as in ``mxnet/io/io.py`` (spec §4.1-4.3), so code written against MXNet's iterator
protocol (``provide_data``, ``batch.data[0]``, ``batch.pad``, ``for batch in it``) runs unchanged.

:class:`HostArray` is what CPU batches hold instead of NDArrays: a plain ``numpy.ndarray`` subclass that
also answers ``.asnumpy()`` (and ``.asscalar()``), so MXNet-style code keeps working, while everything
numpy offers, including DLPack export (``np.from_dlpack``, ``torch.from_dlpack``), works as usual.
"""
from __future__ import annotations

from collections import namedtuple
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["DataDesc", "DataBatch", "DataIter", "HostArray", "as_host_array"]


class DataDesc(namedtuple("DataDesc", ["name", "shape"])):
    """Name, shape, dtype and layout of one data or label array (``mx.io.DataDesc``).

    Only ``name`` and ``shape`` are tuple fields (``len(d) == 2``, ``tuple(d) == (name, shape)``);
    ``dtype`` and ``layout`` are plain attributes. MXNet iterators store the numpy *type*
    (``np.float32``), not a ``np.dtype`` instance, which is what ``repr`` shows:
    ``DataDesc[data,(4, 3, 32, 32),<class 'numpy.float32'>,NCHW]``.
    """

    def __new__(cls, name: str, shape: Any, dtype: Any = np.float32, layout: str | None = "NCHW"):
        ret = super().__new__(cls, name, shape)
        ret.dtype = dtype
        ret.layout = layout
        return ret

    def __repr__(self) -> str:
        return "DataDesc[%s,%s,%s,%s]" % (self.name, self.shape, self.dtype, self.layout)

    @staticmethod
    def get_batch_axis(layout: str | None) -> int:
        """The axis of the batch dimension: 0 when ``layout`` is None, else ``layout.find('N')`` (-1 if absent)."""
        if layout is None:
            return 0
        return layout.find("N")

    @staticmethod
    def get_list(shapes: Iterable[tuple[str, Any]], types: Iterable[tuple[str, Any]] | None) -> list["DataDesc"]:
        """``[DataDesc(name, shape, dtype)]`` from ``(name, shape)`` pairs and optional ``(name, dtype)`` pairs."""
        if types is not None:
            type_dict = dict(types)
            return [DataDesc(x[0], x[1], type_dict[x[0]]) for x in shapes]
        return [DataDesc(x[0], x[1]) for x in shapes]


class DataBatch:
    """One batch (``mx.io.DataBatch``): lists of data and label arrays, ``pad``, ``index`` and friends.

    ``data`` and ``label``, when given, must be lists or tuples (MXNet asserts the same). ``meta`` is
    recordgpu's addition: with ``ImageRecordIter(return_meta=True)``, one metadata dict per slot (the
    record's :mod:`recordgpu.meta`, ``{}`` when it has none; None for a filler slot), else None.
    """

    def __init__(self, data: Sequence[Any] | None, label: Sequence[Any] | None = None, pad: int | None = None,
                 index: Any = None, bucket_key: Any = None, provide_data: list[DataDesc] | None = None,
                 provide_label: list[DataDesc] | None = None, meta: list[dict | None] | None = None) -> None:
        if data is not None:
            assert isinstance(data, (list, tuple)), "Data must be list of NDArrays"
        if label is not None:
            assert isinstance(label, (list, tuple)), "Label must be list of NDArrays"
        self.data = data
        self.label = label
        self.pad = pad
        self.index = index
        self.bucket_key = bucket_key
        self.provide_data = provide_data
        self.provide_label = provide_label
        self.meta = meta

    def __str__(self) -> str:
        # MXNet raises TypeError here when data is None; showing None is the only change
        data_shapes = None if self.data is None else [d.shape for d in self.data]
        label_shapes = [lab.shape for lab in self.label] if self.label else None
        return "{}: data shapes: {} label shapes: {}".format(self.__class__.__name__, data_shapes, label_shapes)


class DataIter:
    """Base iterator (``mx.io.DataIter``): subclasses implement ``iter_next`` and the ``get*`` accessors.

    ``next()`` returns ``DataBatch(getdata(), getlabel(), getpad(), getindex())`` while ``iter_next()`` is
    true and raises ``StopIteration`` after; the iterator is its own Python iterator.
    """

    def __init__(self, batch_size: int = 0) -> None:
        self.batch_size = batch_size

    def __iter__(self) -> "DataIter":
        return self

    def reset(self) -> None:
        """Go back to the start of the data (nothing to do in the base class)."""

    def next(self) -> DataBatch:
        """The next batch; ``StopIteration`` at the end of the data."""
        if self.iter_next():
            return DataBatch(data=self.getdata(), label=self.getlabel(), pad=self.getpad(), index=self.getindex())
        raise StopIteration

    def __next__(self) -> DataBatch:
        return self.next()

    def iter_next(self) -> Any:
        """Advance to the next batch; true if there was one."""
        return None

    def getdata(self) -> Any:
        """The data of the current batch."""
        return None

    def getlabel(self) -> Any:
        """The label of the current batch."""
        return None

    def getindex(self) -> Any:
        """The indices of the current batch's examples."""
        return None

    def getpad(self) -> Any:
        """The number of padding examples in the current batch."""
        return None


class HostArray(np.ndarray):
    """A numpy array on the host that also speaks the bits of MXNet's NDArray API that data code uses.

    * It *is* a ``numpy.ndarray``: arithmetic, ufuncs, buffer protocol, pickling and DLPack export
      (``np.from_dlpack(a)`` shares its memory) behave exactly as for any ndarray.
    * ``asnumpy()`` returns a **copy** as a plain ``numpy.ndarray``, as MXNet's does, so writing to the
      result never changes the batch. Use the array itself (or ``np.asarray(a)``) for a zero-copy view.
    * Slices, views and arithmetic results stay ``HostArray`` (numpy's subclass rules), just as indexing
      an NDArray gives an NDArray, so ``batch.data[0][i].asnumpy()`` works. Integer indexing down to a
      single element gives a numpy scalar, not an array (MXNet would give a shape-(1,) NDArray).
    * ``dtype`` is numpy's ``np.dtype`` (MXNet's NDArray.dtype is the type, e.g. ``np.float32``; both
      compare equal to ``np.float32``). There is no ``context``/``ctx``: host arrays live on the CPU.
    """

    def asnumpy(self) -> np.ndarray:
        """A plain ``numpy.ndarray`` copy of the data (MXNet's ``NDArray.asnumpy`` also copies)."""
        return np.array(self, copy=True, subok=False)

    def asscalar(self) -> Any:
        """The single value of a one-element array as a numpy scalar (MXNet's ``NDArray.asscalar``)."""
        if self.size != 1:
            raise ValueError("The current array is not a scalar")
        return self.asnumpy().reshape(-1)[0]


def as_host_array(array: np.ndarray) -> HostArray:
    """View ``array`` as a :class:`HostArray` without copying (the same memory, flags and strides)."""
    if isinstance(array, HostArray):
        return array
    if not isinstance(array, np.ndarray):
        raise TypeError(f"as_host_array needs a numpy.ndarray, got {type(array).__name__}")
    return array.view(HostArray)
