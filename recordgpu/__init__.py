"""recordgpu: MXNet RecordIO datasets without MXNet, at full bit depth, on CPU and GPU.

``recordgpu.recordio`` reads and writes ``.rec``/``.idx`` byte-compatibly with ``mxnet.recordio``;
``recordgpu.ImageRecordIter`` is a drop-in for ``mx.io.ImageRecordIter``; ``recordgpu im2rec`` packs folders.
"""
from ._version import __version__
from .errors import DecodeError, RecordIOError
from . import recordio

__all__ = ["__version__", "recordio", "RecordIOError", "DecodeError"]
from .imageiter.iterator import ImageRecordIter
from .imageiter.dataapi import DataBatch, DataDesc, DataIter

__all__ += ["ImageRecordIter", "DataBatch", "DataDesc", "DataIter"]
