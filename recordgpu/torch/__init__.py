"""recordgpu for PyTorch users (torch is optional; only the tensor helpers import it, when called).

* :class:`TorchIter` walks an ``ImageRecordIter`` and yields ``(data, label)`` tensors that share the
  batch's memory (DLPack), on the iterator's device; :func:`to_tensor` converts one array.
* :class:`RecordDataset` is a map-style dataset for your own ``DataLoader``: random access, the iterator's
  decoding, augmentation and label rules, safe in worker processes, seeded per (seed, epoch, index).
* :class:`RecordReader` is the record/label layer under it (no decoding).

``torch.from_dlpack(batch.data[0])`` also works directly on CPU batches, uint16 and int16 included; see
:mod:`recordgpu.torch.tensors` for what ``torch.uint16`` tensors can and cannot do.
"""
from .dataset import RecordDataset, Sample
from .records import RecordHeader, RecordReader
from .tensors import TorchIter, to_tensor

__all__ = ["RecordDataset", "Sample", "RecordReader", "RecordHeader", "TorchIter", "to_tensor"]
