"""Batches as torch tensors, without copies: DLPack from numpy (CPU) or CuPy (GPU).

``to_tensor(a)`` shares memory with the batch array: ``torch.from_dlpack`` on a CPU batch (a numpy array),
and on a GPU batch (a CuPy array) ``torch.from_dlpack`` called with the producer's CUDA stream current in
CuPy, so torch's current stream waits for the work that made the batch (DLPack's stream handshake: CuPy
records an event on its current stream and makes the consumer's stream wait on it). ``ImageRecordIter``
makes CuPy's current stream wait for a GPU batch when ``next()`` returns it, so that stream (the default,
``stream=None``) is the right producer; pass ``stream=`` for arrays made on another stream.

``TorchIter(it)`` walks an ``ImageRecordIter`` and yields ``(data, label)`` tensors, one epoch per ``for``
loop (``reset()`` between them). With ``round_batch=False`` the zero filler slots of the last batch are cut
off (a short last batch, like a ``DataLoader`` with ``drop_last=False``); with ``round_batch=True`` (MXNet's
default) the last batch is kept whole: its ``pad`` samples are real ones borrowed from the next pass, and
the next epoch starts after them, so cutting them would skip those samples for good.

16-bit data: torch (2.3+, checked on 2.13) takes ``uint16`` and ``int16`` through DLPack and shares the
memory, but ``torch.uint16`` is a limited dtype: copying, indexing, ``stack``/``cat``, comparisons,
``sum`` and conversion work, while arithmetic such as ``t + 1`` or ``t.max()`` raises
``NotImplementedError`` on the CPU. Convert first, exactly: ``t.to(torch.int32)`` or ``t.float()`` (every
uint16 value is exact in float32), or ask the iterator for ``dtype='float32'``. ``int16`` is a full dtype.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np

__all__ = ["to_tensor", "TorchIter"]


def _is_cupy(a: Any) -> bool:
    return type(a).__module__.split(".")[0] == "cupy"


def _cupy_stream(stream: Any, device_id: int):
    """A CuPy stream object for ``stream``: a ``cupy.cuda.Stream``/``ExternalStream``, or a raw pointer."""
    import cupy

    if isinstance(stream, int):
        return cupy.cuda.ExternalStream(stream, device_id)
    return stream


def _from_cupy(array: Any, stream: Any):
    import cupy
    import torch

    device_id = int(array.device.id)
    with cupy.cuda.Device(device_id):
        ctx = contextlib.nullcontext() if stream is None else _cupy_stream(stream, device_id)
        with ctx:  # the producer stream of the DLPack handshake is CuPy's current stream
            return torch.from_dlpack(array)


def to_tensor(array: Any, *, stream: Any = None, device: Any = None):
    """A ``torch.Tensor`` over ``array`` (numpy/``HostArray`` on the CPU, CuPy on the GPU), no copy.

    ``stream``: for CuPy arrays, the CUDA stream after whose queued work the array is complete
    (``cupy.cuda.Stream`` or a raw pointer); None means CuPy's current stream. ``device``: move the tensor there afterwards (a copy only
    when it is elsewhere). A read-only numpy array is copied, since torch tensors are always writable.

    Lifetime: the tensor keeps the array's memory alive. A GPU batch's memory goes back to CuPy's pool
    (for reuse on the iterator's stream) when the tensor is freed; if torch kernels on another stream may
    still read it then, free it after ``torch.cuda.current_stream().synchronize()`` or keep it until then.
    """
    import torch

    if isinstance(array, torch.Tensor):
        t = array
    elif isinstance(array, np.ndarray):
        t = torch.from_dlpack(array if array.flags.writeable else array.copy())
    elif _is_cupy(array):
        t = _from_cupy(array, stream)
    elif hasattr(array, "__dlpack__"):
        t = torch.from_dlpack(array)
    else:
        raise TypeError(f"to_tensor needs a numpy, CuPy or DLPack array, got {type(array).__name__}")
    if device is not None and t.device != torch.device(device):
        t = t.to(device, non_blocking=True)
    return t


class TorchIter:
    """``for data, label in TorchIter(it)``: an ``ImageRecordIter`` (or any MXNet-style ``DataIter``) as
    torch tensors, one epoch per loop (the iterator is ``reset()`` after each complete epoch, and before
    the next loop if one was left early).

    ``device``: where the tensors should be (default: where the iterator made them: CPU tensors from a CPU
    iterator, CUDA tensors on the array's GPU from a GPU one). ``trim_pad``: drop the last ``batch.pad``
    samples of a batch; None (default) does so only when ``it.params.round_batch`` is False, where they are
    zero fillers (module docstring). ``stream``: passed to :func:`to_tensor` for GPU batches; default the
    iterator's ``stream`` attribute if it has one, else CuPy's current stream. ``meta=True`` yields
    ``(data, label, meta)`` with the batch's per-record metadata list (``ImageRecordIter(return_meta=True)``).
    """

    def __init__(self, it: Any, *, device: Any = None, trim_pad: bool | None = None, stream: Any = None,
                 meta: bool = False) -> None:
        if meta and getattr(getattr(it, "params", None), "return_meta", True) is False:
            raise ValueError("TorchIter(meta=True) needs an iterator made with return_meta=True")
        self.it = it
        self.meta = bool(meta)
        self.device = device
        if trim_pad is None:
            trim_pad = getattr(getattr(it, "params", None), "round_batch", True) is False
        self.trim_pad = bool(trim_pad)
        self.stream = stream
        self._mid_epoch = False

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        # MXNet's loop: consume an epoch, then reset(). A loop left early resets when the next one starts.
        if self._mid_epoch:
            self.it.reset()
        self._mid_epoch = True
        stream = self.stream if self.stream is not None else getattr(self.it, "stream", None)
        for batch in self.it:
            data, label, meta = batch.data[0], batch.label[0], getattr(batch, "meta", None)
            pad = int(batch.pad or 0)
            if self.trim_pad and pad:
                keep = data.shape[0] - pad
                data, label = data[:keep], label[:keep]
                meta = None if meta is None else meta[:keep]
            out = (to_tensor(data, stream=stream, device=self.device),
                   to_tensor(label, stream=stream, device=self.device))
            yield out + (meta,) if self.meta else out
        self.it.reset()
        self._mid_epoch = False
