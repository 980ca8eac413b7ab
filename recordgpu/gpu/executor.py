"""The GPU path's batch executor: decode, upload and run one batch of planned samples on a device backend.

:class:`GpuBatchExecutor` is :class:`~recordgpu.imageiter.engine.BatchEngine`'s batch-level hook. It runs
the plans the engine made; it never re-plans. Per batch:

1. ``prepare``: the decoder gets the encoded records (nvImageCodec: JPEG, JPEG 2000 and lossless JPEG on the
   GPU, on the backend's stream; PNG, TIFF, ``.npy`` on CPU threads). A record a GPU decoder refuses, or
   decodes to another shape or dtype than its header announced, is decoded again by the CPU decoder and
   counted in :attr:`fallbacks`. Host images are copied into pinned buffers on the worker threads and
   uploaded asynchronously.
2. ``execute``: the plans are packed once (:func:`recordgpu.kernels.params.compile_batch`) and launched
   (:func:`recordgpu.gpu.backend.run_program`) into a fresh zeroed batch array; an event marks it ready.
   ``execute_masked`` also replays each plan's geometric stages on the sample's paired mask (loaded on
   the worker threads in ``prepare``, uploaded with the images) into a second batch array, on the same
   stream, covered by the same event.

Nothing here waits for the device: the consumer waits on the event, so the CPU work of the next batch
overlaps this batch's copies and kernels. The inputs of a batch (pinned buffers, decoded device images,
scratch) stay referenced until its event has completed, and at most ``max_in_flight`` batches are
outstanding, which bounds memory.
"""
from __future__ import annotations

import threading
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..augment.plan import SamplePlan
from ..errors import DecodeError, RecordIOError
from ..imageiter.engine import BatchSample, SampleFailure
from ..kernels.params import compile_batch
from .backend import Backend, Event, run_program
from .decode import CPUDecoder, DecodedImage, Decoder

REFUSED = "refused"  # fallback reasons
MISMATCH = "mismatch"


@dataclass
class Prepared:
    """A sample's source pixels (and paired mask) on the device, and the buffers to keep until its batch
    has run."""

    image: Any
    keep: tuple
    mask: Any = None


class GpuBatchExecutor:
    """Runs whole batches on ``backend`` with ``decoder`` (default: the backend's, e.g. nvImageCodec with a
    CPU fallback on CuPy, the CPU decoder on the host backend). ``threads`` CPU threads decode and stage
    host images. The executor owns the decoder and its threads (``close``), not the backend.
    """

    batched = True

    def __init__(self, backend: Backend, decoder: Decoder | None = None, *, threads: int = 1,
                 max_in_flight: int = 2) -> None:
        self.backend = backend
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="recordgpu-gpu-worker")
        self._cpu = CPUDecoder(self._pool)
        self.decoder: Decoder = decoder if decoder is not None else backend.create_decoder(self._pool)
        self.max_in_flight = max(1, int(max_in_flight))
        self.fallbacks: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        self._in_flight: deque[tuple[Event, list, list]] = deque()
        self._closed = False

    @property
    def in_flight(self) -> int:
        """Batches whose inputs are still held (their event had not completed when last checked)."""
        return len(self._in_flight)

    @property
    def decode_stats(self) -> dict[str, Any]:
        """The decoder's counters and the records this executor sent back to the CPU decoder, by reason."""
        stats = getattr(self.decoder, "stats", None)
        with self._stats_lock:
            fallbacks = dict(self.fallbacks)
        return {"decoder": stats.as_dict() if stats is not None else {}, "fallbacks": fallbacks}

    # -- stage 1: decode and upload ------------------------------------------------------------------------
    def prepare(self, samples: Sequence[BatchSample]) -> list[Prepared | DecodeError | RecordIOError]:
        """Each sample's pixels (and mask) on the device, or the :class:`DecodeError` of that sample alone
        (a mask that cannot be loaded: its :class:`RecordIOError`)."""
        self._check_open()
        masks = self._load_masks(samples)
        out: list[Prepared | DecodeError | RecordIOError | None] = [None] * len(samples)
        for k, m in masks.items():
            if isinstance(m, Exception):  # a sample without its mask is not decoded at all
                out[k] = m
        live = [k for k in range(len(samples)) if out[k] is None]
        host: dict[int, np.ndarray] = {k: samples[k].image for k in live if samples[k].image is not None}
        device: dict[int, Any] = {}
        groups: dict[int, list[int]] = {}
        for k in live:
            if samples[k].image is None:
                groups.setdefault(samples[k].plan.src_shape[2], []).append(k)
        with self.backend.activate():
            for channels, ks in groups.items():
                for k, res in zip(ks, self._decode(samples, ks, channels)):
                    if isinstance(res, DecodeError):
                        out[k] = res
                    elif isinstance(res, np.ndarray):
                        host[k] = res
                    else:
                        device[k] = res
            for k, (pinned, dev) in self._upload(host).items():
                out[k] = Prepared(dev, (pinned,))
            for k, img in device.items():
                out[k] = Prepared(self.backend.as_image(img), (img,))
            ready = {k: masks[k] for k in masks if isinstance(out[k], Prepared)}
            for k, (pinned, dev) in self._upload(ready).items():
                out[k] = Prepared(out[k].image, out[k].keep + (pinned,), dev)
        return out  # type: ignore[return-value]

    def _load_masks(self, samples: Sequence[BatchSample]) -> dict[int, np.ndarray | RecordIOError]:
        """The paired masks, loaded on the worker threads (a bad mask is that sample's error)."""
        def load(k: int) -> np.ndarray | RecordIOError:
            try:
                return samples[k].mask()
            except (RecordIOError, DecodeError) as e:
                return e
        ks = [k for k, s in enumerate(samples) if s.mask is not None]
        return dict(zip(ks, self._pool.map(load, ks)))

    def _decode(self, samples: Sequence[BatchSample], ks: list[int], channels: int) -> list[Any]:
        """Decoded images (host or device) or errors for samples ``ks``, with the CPU fallback applied."""
        results = self.decoder.decode_batch([samples[k].encoded for k in ks], channels)
        if len(results) != len(ks):
            raise RuntimeError(f"the decoder returned {len(results)} images for {len(ks)} records")
        out: list[Any] = [None] * len(ks)
        retry: list[tuple[int, str]] = []
        for j, (k, res) in enumerate(zip(ks, results)):
            why = _problem(res, samples[k].plan)
            if why is None:
                out[j] = res.image
            elif res.backend != CPUDecoder.backend:  # a GPU decoder refused it: the CPU decoder may not
                retry.append((j, why))
            else:
                out[j] = _error(res, samples[k].plan)
        if retry:
            again = self._cpu.decode_batch([samples[ks[j]].encoded for j, _ in retry], channels)
            for (j, why), res in zip(retry, again):
                with self._stats_lock:
                    self.fallbacks[why] += 1
                plan = samples[ks[j]].plan
                out[j] = res.image if _problem(res, plan) is None else _error(res, plan)
        return out

    def _upload(self, host: dict[int, np.ndarray]) -> dict[int, tuple[np.ndarray, Any]]:
        """Stage host images in pinned buffers (copies on the worker threads) and upload them."""
        if not host:
            return {}
        imgs = {k: (im[:, :, None] if im.ndim == 2 else im) for k, im in host.items()}
        pinned = {k: self.backend.pinned_empty(im.shape, im.dtype) for k, im in imgs.items()}
        list(self._pool.map(lambda k: np.copyto(pinned[k], imgs[k]), list(imgs)))
        return {k: (pinned[k], self.backend.upload(pinned[k])) for k in imgs}

    # -- stage 2: run the plans ----------------------------------------------------------------------------
    def execute(self, prepared: Sequence[Prepared], plans: Sequence[SamplePlan], shape: Sequence[int],
                dtype: Any) -> tuple[Any, Event]:
        """Run ``plans[i]`` on ``prepared[i]`` into sample i of a fresh zeroed ``shape`` batch; returns the
        batch and the event after which it is complete. Raises :class:`SampleFailure` for a plan the
        kernels cannot run."""
        out, _, event = self._run(prepared, plans, shape, dtype, None, None)
        return out, event

    def execute_masked(self, prepared: Sequence[Prepared], plans: Sequence[SamplePlan], shape: Sequence[int],
                       dtype: Any, mask_shape: Sequence[int], mask_dtype: Any) -> tuple[Any, Any, Event]:
        """:meth:`execute`, plus each sample's mask (every ``prepared[i]`` has one) replayed through the
        geometric stages of ``plans[i]`` (nearest, fill 0) into sample i of a fresh zeroed ``mask_shape``
        batch of ``mask_dtype``. Returns the image batch, the mask batch and the event after which both
        are complete."""
        return self._run(prepared, plans, shape, dtype, mask_shape, mask_dtype)

    def _run(self, prepared, plans, shape, dtype, mask_shape, mask_dtype) -> tuple[Any, Any, Event]:
        self._check_open()
        prepared = list(prepared)
        plans = list(plans)
        if mask_shape is not None and any(p.mask is None for p in prepared):
            raise ValueError("execute_masked needs a mask for every sample (BatchSample.mask)")
        with self.backend.activate():
            self._retire()
            out = self.backend.zeros(shape, dtype)
            masks = self.backend.zeros(mask_shape, mask_dtype) if mask_shape is not None else None
            keep: list = []
            if prepared:
                prog = _compile(plans)
                mprog = None
                if masks is not None:
                    name = np.dtype(mask_dtype).name
                    mprog = _compile(plans, mode="mask", mask_dtypes=[name] * len(plans),
                                     mask_channels=[int(mask_shape[1])] * len(plans))
                keep = run_program(self.backend, prog, [p.image for p in prepared], out)
                if mprog is not None:
                    keep += run_program(self.backend, mprog, [p.mask for p in prepared], masks)
            event = self.backend.record()
            # the batch too: a consumer may drop it (a reset drains the prefetch queue) before it is written
            self._in_flight.append((event, prepared, keep + [out] + ([masks] if masks is not None else [])))
        return out, masks, event

    def _retire(self) -> None:
        """Release the inputs of completed batches; wait for the oldest while too many are outstanding."""
        while self._in_flight and (len(self._in_flight) >= self.max_in_flight or self._in_flight[0][0].done()):
            event, _, _ = self._in_flight[0]
            event.synchronize()
            self._in_flight.popleft()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the GPU batch executor is closed")

    def close(self) -> None:
        """Wait for outstanding batches, release their inputs, stop the threads and close the decoder."""
        if self._closed:
            return
        self._closed = True
        try:
            while self._in_flight:
                try:
                    self._in_flight[0][0].synchronize()  # the inputs stay referenced until then
                except Exception:  # a failed device: the batch that met the failure has reported it
                    pass
                self._in_flight.popleft()
        finally:
            self._in_flight.clear()
            self._pool.shutdown(wait=True, cancel_futures=True)
            close = getattr(self.decoder, "close", None)
            if close is not None:
                close()


def _problem(res: DecodedImage, plan: SamplePlan) -> str | None:
    if res.error is not None or res.image is None:
        return REFUSED
    if _hwc(res.shape) != tuple(plan.src_shape) or np.dtype(res.dtype).name != plan.src_dtype:
        return MISMATCH
    return None


def _hwc(shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    return shape + (1,) if len(shape) == 2 else shape


def _error(res: DecodedImage, plan: SamplePlan) -> DecodeError:
    if res.error is not None:
        return res.error
    if res.image is None:
        return DecodeError("the decoder returned no image")
    return DecodeError(f"decoded {tuple(res.shape)} {np.dtype(res.dtype).name}, header said "
                       f"{tuple(plan.src_shape)} {plan.src_dtype}")


def _compile(plans: list[SamplePlan], **kw):
    try:
        return compile_batch(plans, **kw)
    except ValueError as e:  # find the sample whose plan the kernels reject
        one = {k: v[:1] for k, v in kw.items() if isinstance(v, list)}
        for k, plan in enumerate(plans):
            try:
                compile_batch([plan], **{**kw, **one})
            except ValueError as e1:
                raise SampleFailure(k, e1) from None
        raise e


__all__ = ["GpuBatchExecutor", "Prepared", "REFUSED", "MISMATCH"]
