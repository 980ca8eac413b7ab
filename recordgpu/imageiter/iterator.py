"""``ImageRecordIter``: the drop-in for ``mx.io.ImageRecordIter``.

Same keyword arguments and the same batches as MXNet 1.9.1 (see the compatibility contract), with every
image at its stored bit depth. The deliberate differences: ``batch.index`` holds the record ids, ``pad`` is
right (0 on ordinary batches, the number of filler or borrowed samples otherwise; filler slots are zero),
``reset()`` is deterministic (MXNet's synchronous model) whatever the prefetch depth or thread count,
returned batches stay valid, errors are Python exceptions naming file, byte offset and record id,
``iter_next()`` advances, unknown keyword arguments are warned about, and ``dtype`` also takes
``'uint16'``, ``'int16'`` and ``'float16'``.

``device`` picks the path: ``'cpu'``; ``'gpu'`` (CuPy on GPU ``device_id``: decode and augmentation on the
GPU, batches as CuPy arrays there); ``'auto'`` (the default: the GPU when CuPy and a CUDA GPU are usable,
else the CPU). Both paths execute the same plans, so they give the same numbers within the contract's
tolerance. For tests without a GPU, ``RECORDGPU_GPU_BACKEND=host`` (or the private ``_gpu_backend='host'``)
runs the GPU path's code on the kernels' host build.

Medical imaging additions (recordgpu only): the intensity options ``window``, ``intensity_range``, ``clip``,
``normalize``, ``percentiles`` and ``intensity_units`` (:mod:`recordgpu.augment.params`; float32 results,
so ``dtype`` must be float32 or float16), and paired segmentation masks: with ``path_maskrec`` (and
optionally ``path_maskidx``) every batch has ``label = [masks, labels]``, the masks ``(N, 1, H, W)`` in
their stored dtype (uint8 or uint16, :mod:`.masks`), each mask put through exactly its image's geometric
stages with nearest sampling and fill 0 (no colour, intensity or normalisation), on either path.
"""
from __future__ import annotations

import os
import warnings
import weakref
from typing import Any

import numpy as np

from ..augment.params import AugmentParams
from ..augment.planner import Planner
from ..gpu.backend import select_backend
from ..ndarray_file import load_mean_img, save_mean_img
from .dataapi import DataBatch, DataDesc, DataIter, as_host_array
from .engine import BatchEngine, EngineConfig
from .labels import ImageLabelMap
from .masks import MaskSource
from .order import BatchOrder, RecordLayout
from .params import IterParams, parse_iter_kwargs
from .prefetch import Prefetcher
from .resume import iterator_state, load_iterator_state
from .source import RecordSource


def _shutdown(state: dict) -> None:
    """Finaliser: stop the producer and the worker threads, then release the files and the device
    (runs on close, del or garbage collection)."""
    try:
        pf = state.pop("prefetcher", None)
        if pf is not None:
            pf.close()
        eng = state.pop("engine", None)
        if eng is not None:
            eng.close()
    finally:
        for key in ("source", "masks"):
            src = state.pop(key, None)
            if src is not None:
                src.close()
        backend = state.pop("backend", None)
        if backend is not None:
            backend.close()


class ImageRecordIter(DataIter):
    """Iterate a RecordIO image dataset in batches, as ``mx.io.ImageRecordIter`` does.

    All MXNet keyword arguments are accepted (see ``recordgpu.imageiter.params``); the essentials are
    ``path_imgrec``, ``data_shape=(C, H, W)`` and ``batch_size``. recordgpu adds ``device`` ('auto', 'cpu',
    'gpu'; ``device_id`` picks the GPU), ``on_error`` ('raise' or 'skip': an unreadable record is skipped
    with a warning and counted in :attr:`skipped`) and the output dtypes ``'uint16'``, ``'int16'``,
    ``'float16'``.

    Batches are :class:`~recordgpu.imageiter.dataapi.DataBatch` objects; each batch owns its arrays (the
    CPU path reuses an array only when nothing references it any more). On the CPU they are numpy arrays,
    on the GPU CuPy arrays on GPU ``device_id`` (data and label; ``index`` stays a host array); both also
    answer ``.asnumpy()`` and export DLPack. GPU batches are ready in the order of the consumer's current
    CUDA stream: the iterator makes that stream wait for the batch.
    :attr:`device` tells which path runs.

    With ``path_maskrec`` the batches carry ``label = [masks, labels]`` (``getlabel()`` returns the masks,
    as ``batch.label[0]``) and ``provide_label`` describes both, the masks under ``mask_name`` ('mask').
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args:
            raise TypeError("ImageRecordIter can only accept keyword arguments")
        # private switches for testing the GPU path without a GPU (see recordgpu.gpu.backend.select_backend)
        gpu_backend = kwargs.pop("_gpu_backend", None)
        gpu_decoder = kwargs.pop("_gpu_decoder", None)
        p = parse_iter_kwargs(**kwargs)
        self.params: IterParams = p
        super().__init__(p.batch_size)
        if p.aug_seq not in ("aug_default", ""):
            raise ValueError(f"aug_seq={p.aug_seq!r}: only the default augmenter ('aug_default') exists")
        self._state: dict = {}
        self._finalizer = weakref.finalize(self, _shutdown, self._state)
        backend = select_backend(p.device, p.device_id, gpu_backend)
        if backend is not None:
            self._state["backend"] = backend
        self._backend = backend
        self.device = "cpu" if backend is None else "gpu"
        source = RecordSource(p.path_imgrec, p.path_imgidx)
        self._state["source"] = source
        self.source = source
        layout = RecordLayout(start=source.start, end=source.end, total_bytes=source.total_bytes,
                              indexed=source.indexed, extent=source.extent if source.indexed else None,
                              num_extents=source.num_extents if source.indexed else None)
        order = BatchOrder(layout, p.batch_size, num_parts=p.num_parts, part_index=p.part_index,
                           shuffle=p.shuffle, seed=p.seed, round_batch=p.round_batch,
                           shuffle_chunk_size=p.shuffle_chunk_size, shuffle_chunk_seed=p.shuffle_chunk_seed)
        aug = AugmentParams(**p.augment_kwargs())
        masks = None
        if p.path_maskrec:
            masks = self._state["masks"] = MaskSource(p.path_maskrec, p.path_maskidx)
        label_map = ImageLabelMap.from_file(p.path_imglist, p.label_width) if p.path_imglist else None
        cfg = EngineConfig(batch_size=p.batch_size, channels=p.channels, out_shape=tuple(p.data_shape),
                           out_dtype=p.output_dtype, label_width=p.label_width, on_error=p.on_error,
                           threads=p.preprocess_threads, seed_aug=p.seed_aug, insightface=source.insightface,
                           rescale_from_meta=aug.intensity_enabled and aug.intensity_units == "modality",
                           pooled_batches=max(1, p.prefetch_buffer) + 2, return_meta=p.return_meta)
        mean_image = None
        if p.mean_img and not aug.raw_output:
            if os.path.exists(p.mean_img):
                mean_image = load_mean_img(p.mean_img)
            else:
                mean_image = self._compute_mean_image(source, order, aug, cfg, label_map)
        planner = Planner(aug, mean_image)
        executor = None
        if backend is not None:
            from ..gpu.executor import GpuBatchExecutor  # noqa: PLC0415

            executor = GpuBatchExecutor(backend, gpu_decoder, threads=p.preprocess_threads,
                                        max_in_flight=max(1, p.prefetch_buffer) + 1)
        self._engine = BatchEngine(source, order, planner, cfg, label_map, executor=executor, masks=masks)
        if getattr(self, "_mean_rng_state", None) is not None:  # the mean pass drew from the same stream
            self._engine.rng.setstate(self._mean_rng_state)
        self._state["engine"] = self._engine
        self._epoch_start = self._engine.snapshot()
        self._consumed = 0
        self._exhausted = False
        self._current: DataBatch | None = None
        self._start_prefetch()
        label_shape = (p.batch_size,) if p.label_width == 1 else (p.batch_size, p.label_width)
        self.provide_data = [DataDesc(p.data_name, (p.batch_size,) + tuple(p.data_shape),
                                      p.output_dtype.type, "NCHW")]
        self.provide_label = [DataDesc(p.label_name, label_shape, np.float32, "NCHW")]
        if masks is not None:
            mask_shape = (p.batch_size, 1) + tuple(p.data_shape[1:])
            self.provide_label.insert(0, DataDesc(p.mask_name, mask_shape, np.dtype(masks.dtype).type, "NCHW"))
        # MXNet parses the first batch in the constructor: its errors surface here, as there.
        self._first: DataBatch | None = self._fetch()
        if self._first is None:
            raise StopIteration("the partition holds no batch")

    # -- mean image -----------------------------------------------------------------------------------
    def _compute_mean_image(self, source, order, aug, cfg, label_map) -> np.ndarray:
        """MXNet computes a missing ``mean_img`` from one pass of already-normalised samples and saves it
        (spec §3.8, quirk included: with ``scale != 1`` the saved mean is in scaled units)."""
        import dataclasses

        p = self.params
        no_mean = dataclasses.replace(aug, mean_img="", dtype="float32")
        eng = BatchEngine(source, order, Planner(no_mean), dataclasses.replace(
            cfg, out_dtype=np.dtype(np.float32)), label_map)
        try:
            total = np.zeros(tuple(p.data_shape), np.float32)
            count = 0
            pass_batch = order.mean_image_pass()
            for rec_parse in range(len(pass_batch.parsed)):
                eng.pending[pass_batch.first_parse_seq + rec_parse] = eng._parse(
                    int(pass_batch.parsed[rec_parse]), int(pass_batch.parsed_slot[rec_parse]))
            out = np.empty(tuple(p.data_shape), np.float32)
            for seq in pass_batch.parse_seq.tolist():
                eng._run_one(eng.pending.pop(seq), out)
                total += out
                count += 1
            self._mean_rng_state = eng.rng.getstate()
        finally:
            eng.close()
        mean = total * np.float32(1.0 / count)
        save_mean_img(p.mean_img, mean)
        return mean

    # -- producer --------------------------------------------------------------------------------------
    def _start_prefetch(self) -> None:
        engine = self._engine  # the thread must not hold the iterator itself
        self._state["prefetcher"] = Prefetcher(engine.next_batch, max(1, self.params.prefetch_buffer))

    def _stop_prefetch(self) -> None:
        pf = self._state.pop("prefetcher", None)
        if pf is not None:
            pf.close()

    def _fetch(self) -> DataBatch | None:
        pf = self._state.get("prefetcher")
        if pf is None:
            raise RuntimeError("the iterator is closed")
        arrays = pf.get()
        if arrays is None:
            return None
        self._consumed += 1
        backend = self._backend
        if backend is None:
            data, label = as_host_array(arrays.data), as_host_array(arrays.label)
            masks = None if arrays.masks is None else as_host_array(arrays.masks)
        else:
            arrays.ready.wait()  # the consumer's stream (or, on the host backend, this thread) waits
            data, label = backend.wrap_output(arrays.data), backend.to_output(arrays.label)
            masks = None if arrays.masks is None else backend.wrap_output(arrays.masks)
        labels = [label] if masks is None else [masks, label]
        return DataBatch(data=[data], label=labels, pad=int(arrays.pad), index=arrays.index, meta=arrays.meta)

    @property
    def skipped(self) -> int:
        """How many unreadable records ``on_error='skip'`` has skipped so far."""
        return self._engine.skipped

    @property
    def decode_stats(self) -> dict | None:
        """GPU path: the decoder's counters (who decoded what, records routed to the CPU) and the records
        a GPU decoder refused that the CPU decoder decoded instead (``'fallbacks'``, by reason); None on
        the CPU path."""
        ex = self._engine.executor
        return ex.decode_stats if getattr(ex, "batched", False) else None

    # -- MXNet data API ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Start the next epoch (MXNet's synchronous semantics: after a ``round_batch`` wrap the next epoch
        continues where the wrap left off; otherwise a clean restart with a new shuffle)."""
        self._stop_prefetch()
        eng = self._engine
        if not self._exhausted:
            # The producer ran ahead: go back to where the consumer is. Records the replay skips were
            # counted and reported when the producer first met them.
            skipped = eng.skipped
            eng.restore(self._epoch_start)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                for _ in range(self._consumed):
                    eng.next_batch(plan_only=True)
            eng.skipped = skipped
        eng.discard_lookahead()  # (none after an exhausted epoch; restore() dropped one mid-epoch)
        eng.order.reset()
        eng.stream.clear()
        keep = set(eng.order.buffered_parse_seqs().tolist())  # a clean restart drops MXNet's parse buffer
        eng.pending = {k: v for k, v in eng.pending.items() if k in keep}
        eng.batches_this_epoch = 0
        self._epoch_start = eng.snapshot()
        self._consumed = 0
        self._exhausted = False
        self._first = None
        self._current = None
        self._start_prefetch()

    def next(self) -> DataBatch:
        """The next batch; raises StopIteration at the end of the epoch."""
        if self._first is not None:
            batch, self._first = self._first, None
            return batch
        if self._exhausted:
            raise StopIteration
        batch = self._fetch()
        if batch is None:
            self._exhausted = True
            raise StopIteration
        return batch

    def iter_next(self) -> bool:
        """Advance to the next batch (unlike MXNet's, which never consumed the first one)."""
        try:
            self._current = self.next()
        except StopIteration:
            self._current = None
            return False
        return True

    def _cur(self) -> DataBatch:
        if self._current is None:
            raise RuntimeError("no current batch: call iter_next() first (or the epoch has ended)")
        return self._current

    def getdata(self):
        return self._cur().data[0]

    def getlabel(self):
        return self._cur().label[0]

    def getpad(self) -> int:
        return self._cur().pad

    def getindex(self) -> np.ndarray:
        return self._cur().index

    # -- checkpointing ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """This iterator's position as plain JSON-able data (no pixels): :meth:`load_state_dict` on an
        iterator built with the same settings continues with exactly the batches this one gives next
        (see :mod:`recordgpu.imageiter.resume`). The iterator keeps running."""
        return iterator_state(self)

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict` taken on this or another iterator with the same settings
        (prefetch depth, threads, device and file paths may differ). Raises ValueError, leaving this
        iterator where it was, if the settings or the data differ."""
        load_iterator_state(self, state)

    def close(self) -> None:
        """Stop the background threads and release the files (also done on garbage collection)."""
        self._finalizer()

    def __enter__(self) -> "ImageRecordIter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
