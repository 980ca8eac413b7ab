"""The batch engine: record numbers in, data/label/index arrays out.

Stages, each testable on its own:

1. **order** (:mod:`.order`): which records form the next batch, and which records MXNet parses (and so
   draws random parameters for) while making it;
2. **parse + plan** (here, sequential, cheap): read each parsed record's header and label, probe the
   image size from its header (:mod:`recordgpu.probe`) and draw its :class:`~recordgpu.augment.plan.SamplePlan`
   from the single MXNet-order RNG stream — so plans, and hence outputs, do not depend on thread count.
   On the CPU path the next batch is parsed while the workers decode this one (same calls, same order),
   and with ``on_error='raise'`` it is also handed to the workers before this one is collected, so they
   never wait at a batch boundary (:class:`_Lookahead`; errors still surface with their own batch);
3. **decode + execute**: an executor object. The CPU one (the host reference) runs per sample in a thread
   pool, each sample decoded at full depth and written into its slot of a batch array (a new one, or a
   pooled one that nothing references any more: :mod:`.buffers`). A *batch*
   executor (the GPU path, ``batched = True``) gets the whole batch: ``prepare`` decodes and uploads it
   (per-sample errors come back as exceptions), ``execute`` runs the plans into a fresh device batch and
   returns it with an event that marks it ready. Either way the same samples fill the same slots.

With paired masks (:mod:`.masks`) each parsed record also gets its mask's row (a missing mask is an error
naming the record id); execution replays the image's geometric stages on the mask (nearest, fill 0) into a
second batch array, on the CPU per sample or on the device with the image batch.

The engine can snapshot its state at the start of an epoch and replay batches without decoding, which is
how a mid-epoch ``reset()`` or a resume lands exactly where a synchronous iterator would be.
"""
from __future__ import annotations

import copy
import functools
import math
import struct
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .. import codecs
from ..augment.plan import SamplePlan
from ..augment.planner import Planner
from ..errors import DecodeError, RecordIOError
from ..headers import IR_SIZE
from ..meta import read_meta
from ..probe import probe_image
from ..rng import MT19937
from .buffers import BatchBuffers
from .labels import ImageLabelMap, select_label
from .masks import MaskSource
from .order import BatchOrder
from .source import RecordSource

RAND_MAGIC = 111  # MXNet's per-thread engine seed: (thread id + 1) * 111
_HDR = struct.Struct("<IfQ")
_ID2 = struct.Struct("<Q")  # IRHeader.id2, at byte 16


def _modality_rescale(meta: dict) -> tuple[float, float]:
    """``(RescaleSlope, RescaleIntercept)`` from a payload's metadata (:mod:`recordgpu.meta`), (1, 0) without;
    :class:`DecodeError` when the values are not finite numbers."""
    try:
        slope = float(meta.get("RescaleSlope", 1.0))
        intercept = float(meta.get("RescaleIntercept", 0.0))
    except (TypeError, ValueError):
        slope = intercept = math.nan
    if not (math.isfinite(slope) and math.isfinite(intercept)):
        raise DecodeError(f"RescaleSlope/RescaleIntercept metadata {meta.get('RescaleSlope')!r}, "
                          f"{meta.get('RescaleIntercept')!r} are not finite numbers")
    return slope, intercept


class SkippedRecord(Exception):
    """A record that ``on_error='skip'`` dropped (carries the located error)."""


@dataclass
class Parsed:
    """One parsed record waiting for its batch: its label, id, plan and, if decoding was needed to plan
    it, its decoded image."""

    record: int
    image_id: int
    label: np.ndarray
    plan: SamplePlan | None
    image: np.ndarray | None = None
    error: Exception | None = None
    mask_row: int | None = None  # row of its mask in the masks' .rec (paired masks only)
    meta: dict | None = None  # the payload's metadata (return_meta only)


@dataclass
class Slot:
    """One sample of the sample stream: a parse number, and whether it was borrowed from the next pass."""

    parse_seq: int
    wrapped: bool


@dataclass
class BatchArrays:
    data: Any  # numpy on the CPU path, the backend's array on the GPU path
    label: np.ndarray
    index: np.ndarray
    pad: int
    records: np.ndarray  # record numbers (into the source) of the real samples
    ready: Any = None  # batch executors: the event after which ``data`` (and ``masks``) hold the batch
    masks: Any = None  # paired masks: (N, 1, H, W) in the masks' dtype, like ``data``
    meta: list[dict | None] | None = None  # return_meta: each slot's record metadata, None for filler slots


@dataclass
class BatchSample:
    """One sample as a batch executor gets it: its plan and either the encoded image bytes or, when
    planning had to decode it, the decoded (H, W, C) image; with paired masks, ``mask`` loads its (H, W, 1)
    mask (raising :class:`RecordIOError` for a bad one)."""

    plan: SamplePlan
    encoded: np.ndarray | None
    image: np.ndarray | None = None
    mask: Callable[[], np.ndarray] | None = None


class SampleFailure(Exception):
    """Raised by a batch executor's ``execute`` when sample ``index`` of the batch cannot be run."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(f"sample {index}: {error}")
        self.index = index
        self.error = error


@dataclass
class _Lookahead:
    """The next batch, taken from the stream and already running in the workers while the current one
    finishes (CPU path, ``on_error='raise'``); or the error that taking it raised, due at the next call."""

    taken: list[tuple[Slot, Parsed]]
    data: np.ndarray | None = None
    masks: np.ndarray | None = None
    futures: list = field(default_factory=list)
    error: Exception | None = None


@dataclass
class EngineState:
    order: dict
    rng: dict
    pending: dict[int, Parsed]
    stream: list[Slot]
    batches: int = 0


class CPUExecutor:
    """Runs a plan on the CPU with the host reference executor."""

    def __init__(self) -> None:
        from ..augment import cpu, fused

        self._execute = cpu.execute
        fused.library()  # build (first use on this machine) or load the fast path now, not in a worker

    def run(self, plan: SamplePlan, image: np.ndarray, out: np.ndarray) -> None:
        self._execute(plan, image, out)

    def run_mask(self, plan: SamplePlan, mask: np.ndarray, out: np.ndarray) -> None:
        self._execute(plan, mask, out, mode="mask")


@dataclass
class EngineConfig:
    batch_size: int
    channels: int
    out_shape: tuple[int, int, int]
    out_dtype: np.dtype
    label_width: int
    on_error: str = "raise"
    threads: int = 1
    seed_aug: int | None = None
    insightface: bool = False
    rescale_from_meta: bool = False  # intensity_units='modality': read each record's RescaleSlope/Intercept
    pooled_batches: int = 0  # CPU path: batch arrays kept for reuse once the consumer drops them
    return_meta: bool = False  # read each record's metadata (recordgpu.meta) and hand it out with its batch
    extra: dict[str, Any] = field(default_factory=dict)


class BatchEngine:
    """Makes batches for one iterator. Not thread-safe: one producer thread drives it."""

    def __init__(self, source: RecordSource, order: BatchOrder, planner: Planner, cfg: EngineConfig,
                 label_map: ImageLabelMap | None = None, executor=None, masks: MaskSource | None = None) -> None:
        self.source = source
        self.masks = masks
        self.order = order
        self.planner = planner
        self.cfg = cfg
        self.label_map = label_map
        self.executor = executor or CPUExecutor()
        self._batched = bool(getattr(self.executor, "batched", False))
        self.rng = MT19937(RAND_MAGIC)
        self.pending: dict[int, Parsed] = {}
        self.stream: deque[Slot] = deque()
        self.bad_records: set[int] = set()  # records that failed to decode (on_error='skip')
        self.skipped = 0
        self.batches_this_epoch = 0
        self._pull_error: Exception | None = None  # raised by a parse-ahead, due at the next pull
        self._ahead: _Lookahead | None = None
        # Start the next batch before this one is collected: only where nothing about this batch's outcome can
        # change which samples the next one takes (on_error='skip' refills failed slots from the stream).
        self._lookahead = cfg.on_error == "raise"
        self._buffers = BatchBuffers(cfg.pooled_batches * (2 if masks is not None else 1))
        self._pool = None if self._batched else ThreadPoolExecutor(max(1, cfg.threads),
                                                                   thread_name_prefix="recordgpu-worker")

    # -- state ----------------------------------------------------------------------------------------
    def snapshot(self) -> EngineState:
        return EngineState(order=copy.deepcopy(self.order.state_dict()), rng=self.rng.getstate(),
                           pending={k: copy.copy(v) for k, v in self.pending.items()},
                           stream=list(self.stream), batches=self.batches_this_epoch)

    def restore(self, st: EngineState) -> None:
        self.order.load_state_dict(copy.deepcopy(st.order))
        self.rng.setstate(st.rng)
        self.pending = {k: copy.copy(v) for k, v in st.pending.items()}
        self.stream = deque(st.stream)
        self.batches_this_epoch = st.batches
        self._pull_error = None
        self.discard_lookahead()

    def discard_lookahead(self) -> None:
        """Drop the batch started ahead (its samples were taken from the stream: callers restore or clear it)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            for f in ahead.futures:
                f.cancel()

    def close(self) -> None:
        """Stop the worker threads and close the executor (the engine owns it)."""
        try:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
        finally:
            close = getattr(self.executor, "close", None)
            if close is not None:
                close()

    # -- stage 2: parse and plan ------------------------------------------------------------------------
    def _parse(self, rec: int, slot: int) -> Parsed:
        payload = self.source.payload(rec)
        n = len(payload)
        if n < IR_SIZE:
            raise self.source.error(rec, f"record payload has {n} bytes, fewer than the 24-byte image header")
        flag, label, image_id = _HDR.unpack_from(payload, 0)
        if IR_SIZE + 4 * flag > n:
            raise self.source.error(rec, f"header announces {flag} float32 labels but only {n - IR_SIZE} "
                                         "bytes follow the header")
        packed = np.frombuffer(payload, np.float32, flag, IR_SIZE) if flag else None
        if self.cfg.insightface:
            lab = np.array([packed[0] if flag else label], np.float32)
            if self.cfg.label_width != 1:
                raise ValueError("an InsightFace .rec has one label (the identity) per image: use label_width=1")
        else:
            try:
                lab = select_label(flag, label, packed, image_id, self.cfg.label_width, self.label_map)
            except (KeyError, ValueError) as e:
                where = f"record id {image_id} at byte offset {int(self.source.start[rec])} of the stream"
                raise ValueError(f"{e} ({where})") from None
        mask_row = None
        if self.masks is not None:
            where = f"image record at byte offset {int(self.source.start[rec])} of the stream"
            mask_row = self.masks.row_of(image_id, _ID2.unpack_from(payload, 16)[0], where)
        buf = np.frombuffer(payload, np.uint8)[IR_SIZE + 4 * flag:]
        rescale = meta = None
        if self.cfg.rescale_from_meta or self.cfg.return_meta:
            try:
                meta = read_meta(buf)
                if self.cfg.rescale_from_meta:
                    rescale = _modality_rescale(meta)
            except DecodeError as e:
                return Parsed(rec, image_id, lab, None, error=self._located(rec, image_id, e), mask_row=mask_row)
            if not self.cfg.return_meta:
                meta = None
        shape = probe_image(buf)
        image = None
        if shape is None:
            try:
                image = codecs.decode_image(buf, self.cfg.channels)
            except DecodeError as e:
                return Parsed(rec, image_id, lab, None, error=self._located(rec, image_id, e), mask_row=mask_row)
            h, w, dtype = image.shape[0], image.shape[1], image.dtype.name
        else:
            h, w, dtype = shape
        plan = self.planner.plan_sample(h, w, self.cfg.channels, self.rng, slot=slot, src_dtype=dtype,
                                        rescale=rescale)
        return Parsed(rec, image_id, lab, plan, image, mask_row=mask_row, meta=meta)

    def _located(self, rec: int, image_id: int, e: Exception) -> RecordIOError:
        err = self.source.error(rec, f"record id {image_id}: {e}")
        err.key = image_id
        return err

    def _pull(self, yield_gil: bool = False) -> bool:
        """Take the next batch from the order, parse and plan what MXNet parses with it. False at the end.

        ``yield_gil``: let other threads run between records (see :meth:`_parse_ahead`)."""
        if self._pull_error is not None:
            err, self._pull_error = self._pull_error, None
            raise err
        b = self.order.next_batch()
        if b is None:
            return False
        for k, (rec, slot) in enumerate(zip(b.parsed.tolist(), b.parsed_slot.tolist())):
            self.pending[b.first_parse_seq + k] = self._parse(rec, slot)
            if yield_gil:
                time.sleep(0)
        n = len(b.records)
        wrapped_from = n - b.pad if n == self.cfg.batch_size else n
        for k, seq in enumerate(b.parse_seq.tolist()):
            self.stream.append(Slot(seq, k >= wrapped_from))
        return True

    def _parse_ahead(self) -> None:
        """Parse and plan the next batch while the workers run this one: the same calls in the same order,
        made earlier. An error is kept and raised by the pull that would have made it.

        Parsing is Python and holds the GIL; a worker back from OpenCV would wait for it up to the interpreter's
        switch interval (5 ms), idling ~10% of the time. Yielding the GIL after each record keeps them busy."""
        try:
            while len(self.stream) < self.cfg.batch_size and self._pull(yield_gil=True):
                pass
        except Exception as e:  # noqa: BLE001 (re-raised by the next _pull)
            self._pull_error = e

    # -- stage 3: decode and execute ---------------------------------------------------------------------
    def _run_one(self, p: Parsed, out: np.ndarray, mask_out: np.ndarray | None = None) -> None:
        if p.error is not None:
            raise p.error
        image = p.image
        if image is None:
            payload = self.source.payload(p.record)
            flag = _HDR.unpack_from(payload, 0)[0]
            try:
                image = codecs.decode_image(np.frombuffer(payload, np.uint8)[IR_SIZE + 4 * flag:],
                                            self.cfg.channels)
            except DecodeError as e:
                raise self._located(p.record, p.image_id, e) from None
            if image.shape[:2] != p.plan.src_shape[:2] or image.dtype != p.plan.src_dtype:
                raise self._located(p.record, p.image_id, DecodeError(
                    f"decoded {image.shape} {image.dtype}, header said {p.plan.src_shape} {p.plan.src_dtype}"))
        try:
            self.executor.run(p.plan, image, out)
        except ValueError as e:
            raise self._located(p.record, p.image_id, e) from None
        if mask_out is not None:
            mask = self._load_mask(p)
            try:
                self.executor.run_mask(p.plan, mask, mask_out)
            except ValueError as e:
                raise self.masks.error(p.mask_row, f"mask of record id {p.image_id}: {e}") from None

    def _load_mask(self, p: Parsed) -> np.ndarray:
        h, w = p.plan.src_shape[:2]
        return self.masks.load(p.mask_row, h, w)

    def _mask_array(self, shape: tuple[int, ...]) -> np.ndarray | None:
        if self.masks is None:
            return None
        return self._buffers.empty(shape + (1,) + self.cfg.out_shape[1:], self.masks.dtype)

    def _take(self, n: int) -> list[tuple[Slot, Parsed]]:
        """Up to ``n`` samples from the stream, dropping those already known to be unreadable."""
        out: list[tuple[Slot, Parsed]] = []
        while len(out) < n and (self.stream or self._pull()):
            slot = self.stream.popleft()
            p = self.pending.pop(slot.parse_seq)
            if p.record in self.bad_records or (p.error is not None and self.cfg.on_error == "skip"):
                self._skip(p)
                continue
            out.append((slot, p))
        return out

    def next_batch(self, plan_only: bool = False) -> BatchArrays | None:
        """The next batch of the epoch, or None at its end. ``plan_only``: advance without decoding."""
        cfg = self.cfg
        bs = cfg.batch_size
        ahead, self._ahead = self._ahead, None
        if ahead is not None and plan_only:
            raise RuntimeError("a batch is running ahead: restore() the engine before replaying")
        if ahead is not None and ahead.error is not None:
            raise ahead.error
        taken = ahead.taken if ahead is not None else self._take(bs)
        if not taken:
            return None
        self.batches_this_epoch += 1
        if plan_only:
            return BatchArrays(None, None, None, 0, np.array([p.record for _, p in taken], np.int64))
        if self._batched:
            done, data, masks, ready = self._run_batched(taken)
        else:
            done, data, masks = self._run_per_sample(taken, ahead)
            ready = None
        n = len(done)
        label_shape = (bs,) if cfg.label_width == 1 else (bs, cfg.label_width)
        label = np.zeros(label_shape, np.float32)
        index = np.zeros(bs, np.uint64)
        for k, (_, p) in enumerate(done):
            label[k] = p.label[0] if cfg.label_width == 1 else p.label
            index[k] = p.image_id
        pad = (bs - n) + sum(1 for s, _ in done if s.wrapped)
        meta = [p.meta for _, p in done] + [None] * (bs - n) if cfg.return_meta else None
        return BatchArrays(data, label, index, pad, np.array([p.record for _, p in done], np.int64), ready,
                           masks, meta)

    # the CPU path: per sample, in the thread pool
    def _run_per_sample(self, taken: list[tuple[Slot, Parsed]], ahead: _Lookahead | None = None
                        ) -> tuple[list[tuple[Slot, Parsed]], np.ndarray, np.ndarray | None]:
        cfg = self.cfg
        bs = cfg.batch_size
        if ahead is not None:  # started by the previous call
            data, masks, futures = ahead.data, ahead.masks, ahead.futures
        else:
            data, masks = self._batch_arrays()
            futures = self._submit(taken, data, masks)
        done: list[tuple[Slot, Parsed]] = []
        new = taken
        while new:
            span = slice(len(done), len(done) + len(new))
            sub, msub = data[span], (masks[span] if masks is not None else None)
            if futures is None:
                futures = self._submit(new, sub, msub)
            self._parse_ahead()
            if self._lookahead and not done:
                self._start_next()
            failed = self._collect(new, futures)  # raises unless on_error='skip'
            futures = None
            ok = [k for k in range(len(new)) if k not in failed]
            if failed:  # move the good samples together, then refill the freed slots
                sub[:len(ok)] = sub[ok]
                if msub is not None:
                    msub[:len(ok)] = msub[ok]
            done += [new[k] for k in ok]
            new = self._take(bs - len(done)) if failed else []
        data[len(done):] = 0
        if masks is not None:
            masks[len(done):] = 0
        return done, data, masks

    def _batch_arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self._buffers.empty((self.cfg.batch_size,) + self.cfg.out_shape, self.cfg.out_dtype), \
            self._mask_array((self.cfg.batch_size,))

    def _submit(self, taken: list[tuple[Slot, Parsed]], data: np.ndarray, masks: np.ndarray | None) -> list:
        return [self._pool.submit(self._run_one, p, data[k], None if masks is None else masks[k])
                for k, (_, p) in enumerate(taken)]

    def _collect(self, taken: list[tuple[Slot, Parsed]], futures: list) -> set[int]:
        errors = {k: f.exception() for k, f in enumerate(futures)}
        return self._failures(taken, {k: e for k, e in errors.items() if e is not None})

    def _start_next(self) -> None:
        """Take the next batch and hand it to the workers now, so they go on to it without waiting for this
        batch to be collected (the same ``_take`` as the next call would make, made earlier; an error it
        raises is due at that call)."""
        try:
            nxt = self._take(self.cfg.batch_size)
        except Exception as e:  # noqa: BLE001 (raised by the next next_batch)
            self._ahead = _Lookahead([], error=e)
            return
        if nxt:
            data, masks = self._batch_arrays()
            self._ahead = _Lookahead(nxt, data, masks, self._submit(nxt, data, masks))

    # the GPU path: the whole batch at once
    def _run_batched(self, taken: list[tuple[Slot, Parsed]]) -> tuple[list[tuple[Slot, Parsed]], Any, Any, Any]:
        cfg = self.cfg
        bs = cfg.batch_size
        done: list[tuple[Slot, Parsed, Any]] = []
        new = taken
        while True:
            while new:
                prepared = self._prepare(new)
                failed = self._failures(new, {k: r for k, r in enumerate(prepared) if isinstance(r, Exception)})
                done += [(s, p, r) for k, ((s, p), r) in enumerate(zip(new, prepared)) if k not in failed]
                new = self._take(bs - len(done)) if failed else []
            masks = None
            try:
                prepared, plans = [r for _, _, r in done], [p.plan for _, p, _ in done]
                if self.masks is None:
                    data, ready = self.executor.execute(prepared, plans, (bs,) + cfg.out_shape, cfg.out_dtype)
                else:
                    data, masks, ready = self.executor.execute_masked(
                        prepared, plans, (bs,) + cfg.out_shape, cfg.out_dtype,
                        (bs, 1) + cfg.out_shape[1:], self.masks.dtype)
            except SampleFailure as f:  # the kernels cannot run this sample's plan
                s, p, _ = done.pop(f.index)
                err = f.error if isinstance(f.error, RecordIOError) else \
                    self._located(p.record, p.image_id, f.error)
                self._failures([(s, p)], {0: err})  # raises unless on_error='skip'
                new = self._take(bs - len(done))
                continue
            return [(s, p) for s, p, _ in done], data, masks, ready

    def _prepare(self, items: list[tuple[Slot, Parsed]]) -> list[Any]:
        samples = []
        for _, p in items:
            if p.error is not None:
                raise p.error
            mask = functools.partial(self._load_mask, p) if self.masks is not None else None
            if p.image is not None:
                samples.append(BatchSample(p.plan, None, p.image, mask))
                continue
            payload = self.source.payload(p.record)
            flag = _HDR.unpack_from(payload, 0)[0]
            samples.append(BatchSample(p.plan, np.frombuffer(payload, np.uint8)[IR_SIZE + 4 * flag:], mask=mask))
        results = self.executor.prepare(samples)
        return [self._located(p.record, p.image_id, r) if isinstance(r, Exception) and
                not isinstance(r, RecordIOError) else r for (_, p), r in zip(items, results)]

    def _failures(self, taken: list[tuple[Slot, Parsed]], errors: dict[int, BaseException]) -> set[int]:
        """Skip the failed samples that ``on_error='skip'`` may skip (returned); raise the first other error."""
        failed: set[int] = set()
        first_error = None
        for k in sorted(errors):
            exc = errors[k]
            if self.cfg.on_error == "skip" and isinstance(exc, (RecordIOError, DecodeError)):
                failed.add(k)
                self.bad_records.add(taken[k][1].record)
                self._skip(taken[k][1], exc)
            elif first_error is None:
                first_error = exc
        if first_error is not None:
            raise first_error
        return failed

    def _skip(self, p: Parsed, exc: Exception | None = None) -> None:
        self.skipped += 1
        err = exc or p.error or self._located(p.record, p.image_id, DecodeError("unreadable (seen before)"))
        warnings.warn(f"skipping unreadable record: {err}", RuntimeWarning, stacklevel=2)
