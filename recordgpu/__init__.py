"""recordgpu: MXNet RecordIO datasets without MXNet, at full bit depth, on CPU and GPU.

``recordgpu.recordio`` reads and writes ``.rec``/``.idx`` byte-compatibly with ``mxnet.recordio``;
``recordgpu.ImageRecordIter`` is a drop-in for ``mx.io.ImageRecordIter``; ``recordgpu im2rec`` packs folders.
GPU, PyTorch, DICOM and codec support are optional and imported only when used.
"""
from . import recordio
from ._version import __version__
from .errors import DecodeError, RecordIOError
from .imageiter.dataapi import DataBatch, DataDesc, DataIter
from .imageiter.iterator import ImageRecordIter
from .imageiter.masks import MissingMaskError

__all__ = ["__version__", "recordio", "ImageRecordIter", "DataBatch", "DataDesc", "DataIter",
           "RecordIOError", "DecodeError", "MissingMaskError"]
