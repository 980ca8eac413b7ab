"""Device backends of the GPU path: where batch buffers live and how the plan kernels are launched.

The GPU path needs few device calls: allocate, stage host images in pinned memory and upload them, record
and wait on events, and launch ``rg_mean_*`` / ``rg_step_*`` over packed ``RgStep`` structs. A backend
provides exactly those:

* :class:`CupyBackend` (``device_id``): CuPy on one CUDA stream of that GPU, kernels from
  :func:`recordgpu.kernels.load_module`.
* :class:`HostBackend`: numpy buffers, ``ctypes`` addresses and the kernels' host build, launched with the
  same structs. With ``stream=True`` its work runs on one background thread in submission order, as on a
  CUDA stream, so stream-order and lifetime mistakes in the GPU path's Python show up in CI without a GPU.

:func:`run_program` is the one launch loop (bind addresses, upload the structs, launch), :func:`run_plans`
the checked entry point of :mod:`recordgpu.kernels.host` and :mod:`recordgpu.kernels.gpu`, and
:func:`select_backend` picks the backend for ``ImageRecordIter(device=...)``.
"""
from __future__ import annotations

import contextlib
import functools
import os
import queue
import threading
import warnings
import weakref
from typing import Any, Iterator, Protocol, Sequence

import numpy as np

from ..augment.plan import SamplePlan
from ..kernels.params import STEP_DTYPE, BatchProgram, Launch, compile_batch
from ..kernels.tables import interpolation_tables

MEAN_THREADS = 256  # RG_MEAN_THREADS in kernels/augment.cu
BLOCK = (32, 8, 1)
#: environment switch: 'host' runs the GPU path on HostBackend (CI without a GPU), 'cupy' the default
ENV_BACKEND = "RECORDGPU_GPU_BACKEND"


class GpuUnavailable(RuntimeError):
    """The GPU path cannot run here. ``absent`` is True when CuPy or a CUDA GPU is simply not there (as
    opposed to present but unusable, e.g. the kernels failing to build)."""

    def __init__(self, message: str, absent: bool = True) -> None:
        super().__init__(message)
        self.absent = absent


class Event(Protocol):
    """A point in a backend's stream."""

    def done(self) -> bool: ...

    def synchronize(self) -> None:
        """Block the calling thread until the work before the event has finished."""

    def wait(self) -> None:
        """Make the caller's later work wait for the event (its current CUDA stream, or the host)."""


class Backend(Protocol):
    """What the GPU path needs from a device. Arrays are the backend's own (CuPy or numpy)."""

    name: str
    device_id: int | None

    def activate(self) -> contextlib.AbstractContextManager: ...
    def zeros(self, shape: Sequence[int], dtype: Any) -> Any: ...
    def empty(self, shape: Sequence[int], dtype: Any) -> Any: ...
    def pinned_empty(self, shape: Sequence[int], dtype: Any) -> np.ndarray: ...
    def upload(self, host: np.ndarray) -> Any: ...
    def as_image(self, image: Any) -> Any: ...
    def constant(self, owner: Any, host: np.ndarray) -> Any: ...
    def address(self, array: Any) -> int: ...
    def tables(self) -> Any: ...
    def launch_mean(self, launch: Launch, steps: Any, slot: int, tables: Any) -> None: ...
    def launch_step(self, launch: Launch, steps: Any, tables: Any) -> None: ...
    def record(self) -> Event: ...
    def synchronize(self) -> None: ...
    def wrap_output(self, array: Any) -> Any: ...
    def to_output(self, host: np.ndarray) -> Any: ...
    def create_decoder(self, pool) -> Any: ...
    def close(self) -> None: ...


# -- the launch loop ----------------------------------------------------------------------------------------
def run_program(backend: Backend, prog: BatchProgram, images: Sequence[Any], out: Any) -> list[Any]:
    """Launch ``prog`` on ``images`` (the backend's C-contiguous (H, W, C) arrays, in plan order), writing
    into ``out`` (the backend's (N', C, H, W) array, N' >= N: sample i goes to ``out[i]``).

    Call inside ``backend.activate()``. Returns the buffers the launches read and write: keep them until an
    event recorded after this call has completed.
    """
    if len(images) != prog.out_shape[0]:
        raise ValueError(f"{len(images)} images for a program of {prog.out_shape[0]} samples")
    scratch = backend.empty((max(prog.scratch_bytes, 1),), np.uint8)
    means = [backend.constant(mi, mi.data) for mi in prog.mean_images]
    prog.bind([backend.address(im) for im in images], backend.address(scratch), backend.address(out),
              [backend.address(m) for m in means])
    # every launch's structs in one upload (pageable: a small copy, safe to drop once it is issued)
    sizes = [ln.steps.nbytes for ln in prog.launches]
    packed = np.empty(sum(sizes), np.uint8)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist()
    for ln, off, size in zip(prog.launches, offsets, sizes):
        packed[off:off + size] = np.ascontiguousarray(ln.steps, dtype=STEP_DTYPE).view(np.uint8)
    steps = backend.upload(packed)
    tabs = backend.tables()
    for ln, off, size in zip(prog.launches, offsets, sizes):
        view = steps[off:off + size]
        for slot in range(ln.n_contrast):
            backend.launch_mean(ln, view, slot, tabs)
        backend.launch_step(ln, view, tabs)
    return [scratch, packed, steps, *means]


def run_plans(backend: Backend, plans: Sequence[SamplePlan], images: Sequence[Any], *,
              mode: str = "image") -> Any:
    """Execute ``plans[i]`` on ``images[i]`` ((H, W) or (H, W, C) host or backend arrays) and return the
    (N, C, H, W) batch as the backend's array, finished (the work is synchronised before returning).

    ``mode="mask"``: replay the geometric stages on label masks (nearest, fill 0) in the mask dtype.
    """
    plans = list(plans)
    if len(plans) != len(images):
        raise ValueError(f"{len(plans)} plans for {len(images)} images")
    with backend.activate():
        imgs = [backend.as_image(im) for im in images]
        for i, (p, im) in enumerate(zip(plans, imgs)):
            h, w, c = p.src_shape
            if tuple(im.shape[:2]) != (h, w):
                raise ValueError(f"image {i} is {im.shape[1]}x{im.shape[0]}, its plan was made for {w}x{h}")
            if mode == "image" and (im.shape[2] != c or np.dtype(im.dtype).name != p.src_dtype):
                raise ValueError(f"image {i} is {im.shape[2]}-channel {np.dtype(im.dtype).name}, its plan was "
                                 f"made for {c}-channel {p.src_dtype}")
        if mode == "mask":
            prog = compile_batch(plans, mode="mask", mask_dtypes=[np.dtype(im.dtype).name for im in imgs],
                                 mask_channels=[im.shape[2] for im in imgs])
        else:
            prog = compile_batch(plans)
        out = backend.zeros(prog.out_shape, prog.out_dtype)
        keep = run_program(backend, prog, imgs, out)
        backend.synchronize()
    del keep
    return out


# -- host backend -------------------------------------------------------------------------------------------
class _DoneEvent:
    """An event whose work has already run (synchronous host backend)."""

    def done(self) -> bool:
        return True

    def synchronize(self) -> None:
        pass

    def wait(self) -> None:
        pass


class _HostStream:
    """Runs submitted callables one at a time, in order, on a daemon thread: a CUDA stream on the host.

    A failure is sticky, as on a CUDA stream: later work is skipped (events still fire) and the error is
    raised by the next submit or synchronize.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="recordgpu-hoststream", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, is_marker = item
            if is_marker or self.error is None:
                try:
                    fn()
                except BaseException as e:  # kept and re-raised on the caller's side
                    self.error = e

    def submit(self, fn, is_marker: bool = False) -> None:
        self.raise_error()
        if not self._thread.is_alive():
            raise RuntimeError("the host stream is closed")
        self._queue.put((fn, is_marker))

    def raise_error(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"an earlier operation on the host stream failed: {self.error}") from self.error

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            if self._thread is not threading.current_thread():
                self._thread.join()


class _HostEvent:
    def __init__(self, stream: _HostStream) -> None:
        self._stream = stream
        self._flag = threading.Event()

    def done(self) -> bool:
        return self._flag.is_set()

    def synchronize(self) -> None:
        self._flag.wait()
        self._stream.raise_error()

    wait = synchronize  # host consumers read the arrays directly: block until they are written


class HostBackend:
    """Numpy buffers and the kernels' host build, launched with the GPU's structs.

    ``stream=True`` runs uploads and launches on a background thread in submission order, as a CUDA stream
    does, so that reading a batch before its event completes gives wrong data here too; each launch then
    first checks that every buffer its structs address is still allocated (an error, not a crash, when a
    buffer was released before the stream used it). ``live_buffers`` counts the arrays it allocated that
    are still alive (a leak check for tests).
    """

    name = "host"
    device_id = None

    def __init__(self, stream: bool = False) -> None:
        from ..kernels.host import HostBuildError, load_host_library  # noqa: PLC0415 (it imports this module)

        self._lib = load_host_library()
        self._error = HostBuildError
        self._stream = _HostStream() if stream else None
        self._lock = threading.Lock()
        self._live = 0
        self._ranges: dict[int, int] = {}  # start -> end address of every live allocation
        self._consts: dict[int, tuple[Any, np.ndarray]] = {}

    # allocation
    def _track(self, arr: np.ndarray) -> np.ndarray:
        start = arr.ctypes.data if arr.nbytes else None
        with self._lock:
            self._live += 1
            if start is not None:
                self._ranges[start] = start + arr.nbytes
        weakref.finalize(arr, self._untrack, start)  # runs before numpy frees the data
        return arr

    def _untrack(self, start: int | None) -> None:
        with self._lock:
            self._live -= 1
            if start is not None:
                self._ranges.pop(start, None)

    def _check_addresses(self, steps: np.ndarray) -> None:
        """Raise when a struct addresses memory that is not (or no longer) allocated by this backend."""
        st = steps.view(STEP_DTYPE)
        addrs = np.concatenate([st["geom"]["src"], st["dst"], st["norm"]["dst"], st["norm"]["mean_img"]])
        addrs = addrs[addrs != 0]
        with self._lock:
            spans = sorted(self._ranges.items())
        starts = np.array([a for a, _ in spans], np.uint64)
        ends = np.array([b for _, b in spans], np.uint64)
        k = np.searchsorted(starts, addrs, side="right") - 1
        bad = addrs[(k < 0) | (addrs >= ends[np.maximum(k, 0)])] if len(spans) else addrs
        if len(bad):
            raise RuntimeError(f"a launch addresses memory at {int(bad[0]):#x} that is not allocated: a buffer "
                               "was released before the stream used it")

    @property
    def live_buffers(self) -> int:
        with self._lock:
            return self._live

    def activate(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext(self)

    def zeros(self, shape, dtype) -> np.ndarray:
        return self._track(np.zeros(tuple(shape), dtype))

    def empty(self, shape, dtype) -> np.ndarray:
        return self._track(np.empty(tuple(shape), dtype))

    def pinned_empty(self, shape, dtype) -> np.ndarray:
        return self._track(np.empty(tuple(shape), dtype))

    def upload(self, host: np.ndarray) -> np.ndarray:
        dev = self.empty(host.shape, host.dtype)
        self._run(lambda: np.copyto(dev, host))
        return dev

    def as_image(self, image) -> np.ndarray:
        if not isinstance(image, np.ndarray):
            image = np.asarray(image)
        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim != 3:
            raise ValueError("images must be (H, W) or (H, W, C) arrays")
        image = np.ascontiguousarray(image)
        return image if self._stream is None else self.upload(image)  # on a stream: a buffer of its own

    def constant(self, owner, host: np.ndarray) -> np.ndarray:
        hit = self._consts.get(id(owner))
        if hit is None or hit[0] is not owner:
            hit = self._consts[id(owner)] = (owner, self._track(np.ascontiguousarray(host).copy()))
        return hit[1]

    @staticmethod
    def address(array: np.ndarray) -> int:
        return array.ctypes.data

    def tables(self) -> np.ndarray:
        return interpolation_tables()

    # launches: the structs are the GPU's; the host library loops over the pixels
    def launch_mean(self, launch: Launch, steps: np.ndarray, slot: int, tables: np.ndarray) -> None:
        code, n, src = launch.dtype_code, len(launch.steps), launch.src_dtype

        def run(steps=steps, tables=tables) -> None:
            if self._stream is not None:
                self._check_addresses(steps)
            if self._lib.rg_host_mean(code, steps.ctypes.data, n, slot, tables.ctypes.data) != 0:
                raise self._error(f"rg_host_mean rejected dtype {src}")
        self._run(run)

    def launch_step(self, launch: Launch, steps: np.ndarray, tables: np.ndarray) -> None:
        code, n, src = launch.dtype_code, len(launch.steps), launch.src_dtype

        def run(steps=steps, tables=tables) -> None:
            if self._stream is not None:
                self._check_addresses(steps)
            if self._lib.rg_host_step(code, steps.ctypes.data, n, tables.ctypes.data) != 0:
                raise self._error(f"rg_host_step rejected dtype {src}")
        self._run(run)

    def _run(self, fn) -> None:
        if self._stream is None:
            fn()
        else:
            self._stream.submit(fn)

    # order
    def record(self) -> Event:
        if self._stream is None:
            return _DoneEvent()
        ev = _HostEvent(self._stream)
        self._stream.submit(ev._flag.set, is_marker=True)
        return ev

    def synchronize(self) -> None:
        self.record().synchronize()

    # what the consumer gets
    @staticmethod
    def wrap_output(array: np.ndarray):
        from ..imageiter.dataapi import as_host_array  # noqa: PLC0415

        return as_host_array(array)

    to_output = wrap_output

    @staticmethod
    def create_decoder(pool):
        from .decode import CPUDecoder  # noqa: PLC0415

        return CPUDecoder(pool)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        self._consts.clear()


# -- CuPy backend -------------------------------------------------------------------------------------------
def _import_cupy():
    try:
        import cupy  # noqa: PLC0415 (optional dependency)
    except ImportError as e:
        raise GpuUnavailable("the GPU path needs CuPy: pip install 'recordgpu[gpu]' (cupy-cuda12x), or use "
                             f"device='cpu' ({e})") from e
    return cupy


@functools.lru_cache(maxsize=1)
def device_array_type() -> type:
    """``DeviceArray``: the ``cupy.ndarray`` subclass GPU batches hold (made on first use: needs CuPy)."""
    cupy = _import_cupy()

    class DeviceArray(cupy.ndarray):
        """A CuPy array that also answers MXNet's ``asnumpy()`` and ``asscalar()``.

        Everything else is CuPy's: arithmetic, ``.device``, ``__cuda_array_interface__`` and DLPack
        (``torch.from_dlpack(a)`` shares the memory). ``asnumpy()`` returns a host copy.
        """

        def asnumpy(self) -> np.ndarray:
            return cupy.ndarray.get(self)

        def asscalar(self):
            if self.size != 1:
                raise ValueError("The current array is not a scalar")
            return self.asnumpy().reshape(-1)[0]

    return DeviceArray


class _CupyEvent:
    def __init__(self, cupy, event) -> None:
        self._cupy = cupy
        self.event = event

    def done(self) -> bool:
        return self.event.done

    def synchronize(self) -> None:
        self.event.synchronize()

    def wait(self) -> None:
        self._cupy.cuda.get_current_stream().wait_event(self.event)


class CupyBackend:
    """CuPy on GPU ``device_id``, all work on one CUDA stream; ``stream`` defaults to a new stream of that
    device. Raises :class:`GpuUnavailable` when CuPy, a CUDA driver, the device or the kernels' NVRTC
    build are missing.

    The stream is a blocking one: work a consumer issues on the legacy default stream (CuPy's and torch's
    default) is ordered with it both ways, so a batch dropped by such a consumer is reused by CuPy's
    stream-aware pool only after the consumer's reads. A consumer on its own non-blocking streams should
    synchronise before dropping a batch, as for any CuPy array shared across streams.
    """

    name = "cupy"

    def __init__(self, device_id: int = 0, stream: Any = None) -> None:
        cp = _import_cupy()
        try:
            count = cp.cuda.runtime.getDeviceCount()
        except Exception as e:  # CUDARuntimeError: no driver / no device
            raise GpuUnavailable(f"no usable CUDA GPU ({e}); use device='cpu'") from None
        if not 0 <= device_id < count:
            raise GpuUnavailable(f"device_id={device_id}, but this machine has {count} CUDA GPU(s)")
        self._cp = cp
        self.device_id = device_id
        self.device = cp.cuda.Device(device_id)
        self._functions: dict[str, Any] = {}
        self._consts: dict[int, tuple[Any, Any]] = {}
        self._tables = None
        with self.device:
            self.stream = stream if stream is not None else cp.cuda.Stream(non_blocking=False)
            try:
                self._function("rg_step_u8")  # compile (NVRTC) and load the kernels now, not mid-epoch
            except Exception as e:
                raise GpuUnavailable(f"cannot build the recordgpu CUDA kernels on GPU {device_id}: {e}",
                                     absent=False) from e

    @classmethod
    def current(cls) -> CupyBackend:
        """A backend on the calling thread's current device and stream."""
        cp = _import_cupy()
        return cls(cp.cuda.Device().id, cp.cuda.get_current_stream())

    @contextlib.contextmanager
    def activate(self) -> Iterator[CupyBackend]:
        with self.device, self.stream:
            yield self

    def _function(self, name: str):
        fn = self._functions.get(name)
        if fn is None:
            from ..kernels import load_module  # noqa: PLC0415

            fn = self._functions[name] = load_module().get_function(name)
        return fn

    def zeros(self, shape, dtype):
        return self._cp.zeros(tuple(shape), dtype)

    def empty(self, shape, dtype):
        return self._cp.empty(tuple(shape), dtype)

    def pinned_empty(self, shape, dtype) -> np.ndarray:
        shape = tuple(int(s) for s in shape)
        dtype = np.dtype(dtype)
        count = int(np.prod(shape))
        if count == 0:
            return np.empty(shape, dtype)
        mem = self._cp.cuda.alloc_pinned_memory(count * dtype.itemsize)
        return np.frombuffer(mem, dtype, count).reshape(shape)

    def upload(self, host: np.ndarray):
        """Copy ``host`` (C-contiguous; pinned for a truly asynchronous copy) on the backend's stream."""
        dev = self._cp.empty(host.shape, host.dtype)
        dev.set(np.ascontiguousarray(host), stream=self.stream)
        return dev

    def as_image(self, image):
        cp = self._cp
        a = self.upload(np.ascontiguousarray(image)) if isinstance(image, np.ndarray) else cp.asarray(image)
        if a.device.id != self.device_id:
            a = cp.array(a, copy=True)
        if a.ndim == 2:
            a = a[:, :, None]
        if a.ndim != 3:
            raise ValueError("images must be (H, W) or (H, W, C) arrays")
        return cp.ascontiguousarray(a)

    def constant(self, owner, host: np.ndarray):
        hit = self._consts.get(id(owner))
        if hit is None or hit[0] is not owner:
            hit = self._consts[id(owner)] = (owner, self._cp.asarray(np.ascontiguousarray(host)))
        return hit[1]

    @staticmethod
    def address(array) -> int:
        return array.data.ptr

    def tables(self):
        if self._tables is None:
            self._tables = self._cp.asarray(interpolation_tables())
        return self._tables

    def launch_mean(self, launch: Launch, steps, slot: int, tables) -> None:
        n = len(launch.steps)
        self._function(f"rg_mean_{launch.kernel_suffix}")((n,), (MEAN_THREADS,),
                                                           (steps, np.int32(n), np.int32(slot), tables))

    def launch_step(self, launch: Launch, steps, tables) -> None:
        n = len(launch.steps)
        grid = ((launch.max_w + BLOCK[0] - 1) // BLOCK[0], (launch.max_h + BLOCK[1] - 1) // BLOCK[1], n)
        self._function(f"rg_step_{launch.kernel_suffix}")(grid, BLOCK, (steps, np.int32(n), tables))

    def record(self) -> Event:
        ev = self._cp.cuda.Event(disable_timing=True)
        ev.record(self.stream)
        return _CupyEvent(self._cp, ev)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def wrap_output(self, array):
        cls = device_array_type()
        return cls(array.shape, array.dtype, array.data, array.strides)

    def to_output(self, host: np.ndarray):
        with self.device:
            return self.wrap_output(self._cp.asarray(host))

    def create_decoder(self, pool):
        from .decode import create_decoder  # noqa: PLC0415

        return create_decoder("auto", device_id=self.device_id, executor=pool, cuda_stream=self.stream.ptr)

    def close(self) -> None:
        try:
            self.stream.synchronize()
        finally:
            self._consts.clear()
            self._tables = None


# -- selection ----------------------------------------------------------------------------------------------
def select_backend(device: str, device_id: int = 0, override: Any = None) -> Backend | None:
    """The backend ``ImageRecordIter(device=...)`` runs on; None means the CPU path.

    ``'cpu'``: None. ``'gpu'``: :class:`CupyBackend` on ``device_id`` (:class:`GpuUnavailable` naming the
    reason when it cannot run). ``'auto'``: the GPU when CuPy and a CUDA GPU are usable, else None.
    ``override`` (default: ``$RECORDGPU_GPU_BACKEND``) is ``'cupy'``, ``'host'`` (the GPU path on
    :class:`HostBackend` with its stream thread: testing without a GPU) or a backend object.
    """
    if device not in ("auto", "cpu", "gpu"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'gpu', got {device!r}")
    if device == "cpu":
        return None
    if override is None:
        override = os.environ.get(ENV_BACKEND) or None
    if override is not None and not isinstance(override, str):
        return override
    kind = (override or "cupy").strip().lower()
    if kind == "host":
        return HostBackend(stream=True)
    if kind != "cupy":
        raise ValueError(f"GPU backend must be 'cupy' or 'host' (${ENV_BACKEND} / _gpu_backend), got {override!r}")
    if device_id < 0:
        if device == "gpu":
            raise GpuUnavailable("device='gpu' needs a GPU index: device_id=-1 means host memory")
        return None
    try:
        return CupyBackend(device_id)
    except GpuUnavailable as e:
        if device == "gpu":
            raise
        if not e.absent:
            warnings.warn(f"device='auto': using the CPU because {e}", RuntimeWarning, stacklevel=3)
        return None


__all__ = ["Backend", "Event", "HostBackend", "CupyBackend", "GpuUnavailable", "run_program", "run_plans",
           "select_backend", "device_array_type", "ENV_BACKEND"]
