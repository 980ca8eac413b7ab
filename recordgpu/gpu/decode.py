"""Batch image decoding for the GPU path: nvImageCodec by default, with exact CPU fallbacks.

Every decoder here follows the :class:`Decoder` protocol: ``decode_batch(bufs, channels)`` returns one
:class:`DecodedImage` per encoded record, in order: a host ``(H, W, C)`` numpy array at the stored depth, or a
device array (anything exposing ``__cuda_array_interface__``), or the :class:`DecodeError` of that record
alone. Channels follow :func:`recordgpu.codecs.decode_image` exactly (``data_shape[0]``: 1 gray, 3 BGR,
4 BGRA unchanged), so the executor can mix GPU- and CPU-decoded records in one batch.

:func:`route` decides per record: ``'gpu'`` for 8-bit JPEG, JPEG 2000 / HTJ2K, and lossless JPEG that the
installed nvJPEG decodes correctly; ``'cpu'`` for PNG, TIFF, ``.npy``, 12-bit JPEG and everything else.
nvJPEG before 13.0.2 silently returns zeros for lossless JPEG with 9-15-bit precision or with a Huffman
table ahead of the frame header (nvImageCodec issue #50), so those records go to the CPU.

:class:`NvImageCodecDecoder` uses nvImageCodec's own Python API with ``allow_any_depth=True``: it reports
failures per sample (a record it refuses is decoded by the CPU decoder and counted in ``stats.fallbacks``)
and keeps 12-bit values as stored, where DALI's GPU decoder rescales them by 65535/4095.
:class:`CPUDecoder` is OpenCV (:mod:`recordgpu.codecs`) plus imagecodecs for lossless / 12-bit JPEG and
JPEG 2000 variants OpenCV cannot read. nvImageCodec, CuPy and imagecodecs are imported only when used.
"""
from __future__ import annotations

import ctypes
import functools
import glob
import importlib.util
import os
import threading
import warnings
from collections import Counter
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import cv2
import numpy as np

from .. import codecs
from ..errors import DecodeError
from ..imgheaders import (HUFFMAN_DCT, JpegFrame, apply_exif_orientation,  # noqa: F401 (re-exported)
                          jpeg_frame)

GPU = "gpu"
CPU = "cpu"
#: first nvJPEG release that decodes 9-15-bit and DHT-before-SOF3 lossless JPEG instead of zero-filling it
NVJPEG_LOSSLESS_FIXED = (13, 0, 2)

_JPEG2000 = ("jp2", "j2k")
#: route reason of lossless JPEG that the installed nvJPEG would silently decode to zeros
UNSAFE_LOSSLESS = "lossless-jpeg-nvjpeg<13.0.2"


class DecoderUnavailable(RuntimeError):
    """The decoder cannot run on this machine (for example no CUDA driver or no GPU)."""


# -- nvJPEG version -------------------------------------------------------------------------------------
def nvjpeg_version() -> tuple[int, int, int] | None:
    """(major, minor, patch) of the nvJPEG library this process has loaded, else of the one it would load.

    Reads ``nvjpegGetProperty`` (no GPU needed). None when no nvJPEG library can be found.
    """
    for path in _nvjpeg_candidates():
        try:
            lib = ctypes.CDLL(path)
            get = lib.nvjpegGetProperty
        except (OSError, AttributeError):
            continue
        parts = []
        for prop in range(3):  # MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL
            value = ctypes.c_int(-1)
            if get(prop, ctypes.byref(value)) != 0:
                break
            parts.append(value.value)
        if len(parts) == 3:
            return parts[0], parts[1], parts[2]
    return None


def _nvjpeg_candidates() -> list[str]:
    found: list[str] = []
    try:  # the library nvImageCodec actually loaded, if it did
        with open("/proc/self/maps") as f:
            for line in f:
                fields = line.split(None, 5)
                if len(fields) == 6 and os.path.basename(fields[5].strip()).startswith("libnvjpeg.so"):
                    path = fields[5].strip()
                    if path not in found:
                        found.append(path)
    except OSError:
        pass
    try:  # the nvidia-nvjpeg-cu* wheel
        spec = importlib.util.find_spec("nvidia.nvjpeg")
    except (ImportError, ValueError):
        spec = None
    for d in (spec.submodule_search_locations or []) if spec else []:
        found += sorted(glob.glob(os.path.join(d, "lib", "libnvjpeg.so*")), reverse=True)
    return found + ["libnvjpeg.so.13", "libnvjpeg.so.12", "libnvjpeg.so"]


@functools.lru_cache(maxsize=1)
def _installed_nvjpeg_version() -> tuple[int, int, int] | None:
    return nvjpeg_version()


def lossless_jpeg_gpu_safe(frame: JpegFrame, version: Sequence[int] | None) -> bool:
    """Whether nvJPEG ``version`` decodes this lossless JPEG correctly (None: unknown, assumed old)."""
    if version is not None and tuple(version) >= NVJPEG_LOSSLESS_FIXED:
        return True
    return not (9 <= frame.precision <= 15 or frame.dht_before_sof)


# -- routing --------------------------------------------------------------------------------------------
_AUTO: Any = object()


def route_reason(buf, *, nvjpeg_version: Sequence[int] | None = _AUTO) -> tuple[str, str]:
    """``(where, why)``: where is ``'gpu'`` or ``'cpu'``; why names the format or the rule that applied.

    ``nvjpeg_version`` defaults to the installed nvJPEG's (looked up once per process).
    """
    fmt = codecs.sniff(buf)
    if fmt in _JPEG2000:
        return GPU, "jpeg2000"
    if fmt != "jpeg":
        return CPU, fmt
    frame = jpeg_frame(buf)
    if frame is None:
        return CPU, "jpeg-unparsed"
    if frame.marker in HUFFMAN_DCT:
        return (GPU, "jpeg") if frame.precision == 8 else (CPU, f"jpeg-{frame.precision}bit")
    if frame.marker == 0xC3:
        if not 2 <= frame.precision <= 16:
            return CPU, "jpeg-unparsed"
        version = _installed_nvjpeg_version() if nvjpeg_version is _AUTO else nvjpeg_version
        if lossless_jpeg_gpu_safe(frame, version):
            return GPU, "lossless-jpeg"
        return CPU, UNSAFE_LOSSLESS
    return CPU, f"jpeg-sof{frame.marker - 0xC0}"  # arithmetic / hierarchical coding: no GPU decoder


def route(buf, *, nvjpeg_version: Sequence[int] | None = _AUTO) -> str:
    """``'gpu'`` or ``'cpu'``: where this encoded record should be decoded (see :func:`route_reason`)."""
    return route_reason(buf, nvjpeg_version=nvjpeg_version)[0]


# -- results and the protocol ---------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class DecodedImage:
    """One decoded record: ``image`` is a host ndarray or a device array of ``shape`` (H, W, C) and ``dtype``.

    On failure ``image`` is None and ``error`` holds the record's :class:`DecodeError`.
    """

    image: Any
    shape: tuple[int, int, int] | None
    dtype: np.dtype | None
    backend: str  # who decoded it: 'nvimgcodec', 'dali' or 'cpu'
    error: DecodeError | None = None

    @classmethod
    def of(cls, arr: Any, backend: str) -> DecodedImage:
        return cls(arr, tuple(int(s) for s in arr.shape), np.dtype(arr.dtype), backend)

    @classmethod
    def failed(cls, error: DecodeError, backend: str) -> DecodedImage:
        return cls(None, None, None, backend, error)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    @property
    def on_device(self) -> bool:
        return self.image is not None and not isinstance(self.image, np.ndarray)

    def to_host(self) -> np.ndarray:
        """The image as a host numpy array (a copy when it is on the device); raises the record's error."""
        if self.error is not None:
            raise self.error
        if isinstance(self.image, np.ndarray):
            return self.image
        if hasattr(self.image, "get"):  # CuPy
            return self.image.get()
        import cupy  # noqa: PLC0415 (optional dependency)
        return cupy.asnumpy(cupy.asarray(self.image))


class DecodeStats:
    """Counters of one decoder (thread-safe): who decoded what, and why records went to the CPU."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.decoded: Counter[str] = Counter()  # backend -> records decoded
            self.routed: Counter[str] = Counter()  # reason -> records sent to the CPU decoder by design
            self.fallbacks: Counter[str] = Counter()  # reason -> records the GPU decoder refused
            self.errors = 0  # records no decoder could decode

    def add(self, result: DecodedImage, *, routed: str | None = None, fallback: str | None = None) -> None:
        with self._lock:
            if result.error is not None:
                self.errors += 1
            else:
                self.decoded[result.backend] += 1
            if routed is not None:
                self.routed[routed] += 1
            if fallback is not None:
                self.fallbacks[fallback] += 1

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {"decoded": dict(self.decoded), "routed": dict(self.routed),
                    "fallbacks": dict(self.fallbacks), "errors": self.errors}


@runtime_checkable
class Decoder(Protocol):
    """Decodes encoded image records in batches; one :class:`DecodedImage` per input, in order."""

    stats: DecodeStats

    def decode_batch(self, bufs: Sequence[memoryview], channels: int) -> list[DecodedImage]: ...


def check_channels(channels: int) -> None:
    if channels not in (1, 3, 4):
        raise ValueError(f"channels must be 1, 3 or 4, not {channels!r}")


def _as_u8(buf) -> np.ndarray:
    return buf if isinstance(buf, np.ndarray) and buf.dtype == np.uint8 else np.frombuffer(buf, np.uint8)


# -- CPU ------------------------------------------------------------------------------------------------
class _ChannelMismatch(DecodeError):
    """The image decoded but has the wrong channel count for C=4 (decode_image's message)."""


def rgb_to_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """A decoded RGB(A) / gray array in ``decode_image``'s channel layout for ``data_shape[0] == channels``."""
    if img.ndim == 2:
        img = img[:, :, None]
    n = img.shape[2]
    if channels == 4:
        if n != 4:
            raise _ChannelMismatch(f"Expected 4 channels, got {n}")
        out = img[:, :, [2, 1, 0, 3]]
    elif channels == 3:
        out = np.repeat(img[:, :, :1], 3, axis=2) if n < 3 else img[:, :, 2::-1]
    elif n < 3:
        out = img[:, :, :1]
    else:
        try:
            out = cv2.cvtColor(np.ascontiguousarray(img[:, :, :3]), cv2.COLOR_RGB2GRAY)[:, :, None]
        except cv2.error as e:
            raise DecodeError(f"cannot convert a {img.dtype} colour image to gray: {e}") from None
    return np.ascontiguousarray(out)


class CPUDecoder:
    """The CPU decoder: :func:`recordgpu.codecs.decode_image` (OpenCV), plus imagecodecs for lossless and
    12-bit JPEG and for JPEG 2000 streams OpenCV cannot read. ``executor`` (optional) decodes in parallel;
    OpenCV and imagecodecs release the GIL while decoding.
    """

    backend = "cpu"

    def __init__(self, executor: Executor | None = None) -> None:
        self.executor = executor
        self.stats = DecodeStats()

    def decode_batch(self, bufs: Sequence[memoryview], channels: int) -> list[DecodedImage]:
        check_channels(channels)
        run = self.executor.map if self.executor is not None else map
        results = list(run(lambda b: self._decode_result(b, channels), bufs))
        for r in results:
            self.stats.add(r)
        return results

    def _decode_result(self, buf, channels: int) -> DecodedImage:
        try:
            return DecodedImage.of(self.decode_one(buf, channels), self.backend)
        except DecodeError as e:
            return DecodedImage.failed(e, self.backend)

    def decode_one(self, buf, channels: int) -> np.ndarray:
        """Decode one record to a host (H, W, C) array; raises :class:`DecodeError`."""
        check_channels(channels)
        raw = _as_u8(buf)
        fmt = codecs.sniff(raw)
        frame = jpeg_frame(raw) if fmt == "jpeg" else None
        ic = codecs._imagecodecs()
        # OpenCV builds differ on >8-bit JPEG (most refuse it); imagecodecs keeps it at full depth everywhere
        deep_jpeg = frame is not None and (frame.precision != 8 or frame.lossless)
        if deep_jpeg and ic is not None:
            return self._imagecodecs_decode(ic, raw, fmt, frame, channels)
        try:
            return codecs.decode_image(raw, channels)
        except DecodeError as e:
            if fmt not in ("jpeg",) + _JPEG2000:
                raise
            if ic is None:
                raise DecodeError(f"{e}; installing imagecodecs (pip install 'recordgpu[codecs]') adds lossless "
                                  "and 12-bit JPEG and more JPEG 2000 variants") from None
            try:
                return self._imagecodecs_decode(ic, raw, fmt, frame, channels)
            except _ChannelMismatch:
                raise
            except DecodeError as e2:
                raise DecodeError(f"{e}; imagecodecs: {e2}") from None

    @staticmethod
    def _imagecodecs_decode(ic, raw: np.ndarray, fmt: str, frame: JpegFrame | None, channels: int) -> np.ndarray:
        try:
            if fmt != "jpeg":
                img = ic.jpeg2k_decode(raw)
            elif channels == 1 and frame is not None and frame.components == 3 and not frame.lossless:
                img = ic.jpeg8_decode(raw, outcolorspace="GRAY")  # libjpeg's own gray, as OpenCV's imdecode
            else:
                try:
                    img = ic.jpeg8_decode(raw)
                except Exception:
                    if frame is None or not frame.lossless:
                        raise
                    img = ic.ljpeg_decode(raw)
        except Exception as e:  # imagecodecs raises its own DelayedImportError / *Error types
            raise DecodeError(f"cannot decode {fmt} payload ({raw.size} bytes): {e}") from None
        img = rgb_to_channels(np.asarray(img), channels)
        if fmt == "jpeg" and channels != 4 and frame is not None and frame.orientation not in (None, 1):
            img = apply_exif_orientation(img, frame.orientation)
        return img


# -- nvImageCodec ---------------------------------------------------------------------------------------
def _import_nvimgcodec():
    try:
        import nvidia.nvimgcodec as nv  # noqa: PLC0415 (optional dependency)
    except ImportError as e:
        raise ImportError("nvImageCodec is not installed: pip install 'recordgpu[gpu]' (nvidia-nvimgcodec-cu12, "
                          "nvidia-nvjpeg-cu12, nvidia-nvjpeg2k-cu12)") from e
    return nv


def _cupy():
    try:
        import cupy  # noqa: PLC0415 (optional dependency)
    except ImportError:
        return None
    return cupy


@dataclass(frozen=True)
class _Request:
    """What to ask nvImageCodec for, and how to finish its output into decode_image's layout."""

    color_spec: str
    sample_format: str
    exif: bool
    replicate: bool = False  # gray source decoded as 1 channel, repeated into BGR


def _request(codec: str, n: int, channels: int) -> _Request | str:
    """The decode request for a stream with ``n`` channels, or the reason to decode it on the CPU."""
    if channels == 4:  # IMREAD_UNCHANGED: no EXIF rotation; JPEG never yields 4 channels in OpenCV
        return _Request("UNCHANGED", "I_UNCHANGED", False) if n == 4 and codec != "jpeg" else "channels"
    if n == 1:  # gray: decode the one plane; BGR is that plane three times (cvtColor GRAY2BGR)
        return _Request("GRAY", "P_Y", True, replicate=channels == 3)
    if channels == 1:
        # a JPEG's gray is its decoded Y plane in libjpeg and nvJPEG alike; other decoders' RGB->gray
        # arithmetic differs from OpenCV's by up to 2 at 16 bits (measured on TIFF)
        return _Request("GRAY", "P_Y", True) if codec == "jpeg" and n == 3 else "color-to-gray"
    if n == 2 or (codec == "jpeg" and n != 3):
        return "channels"
    # nvJPEG writes BGR directly; nvJPEG2000 only RGB, reversed afterwards
    return _Request("SRGB", "I_BGR" if codec == "jpeg" else "I_RGB", True)


class NvImageCodecDecoder:
    """Decode with nvImageCodec (``allow_any_depth=True``) on GPU ``device_id``; ``cpu_only=True`` uses its CPU
    backend, the only mode that works without a CUDA driver.

    Records :func:`route` sends to the CPU, and records nvImageCodec refuses, are decoded by ``fallback``
    (a :class:`CPUDecoder` by default) and counted in ``stats.routed`` / ``stats.fallbacks``.
    ``routing=False`` hands every record to nvImageCodec first, except lossless JPEG the installed nvJPEG
    would decode to zeros. GPU results stay on the device (CuPy arrays when CuPy is installed, else they
    are copied to the host). One nvImageCodec call runs at a time per instance.
    """

    backend = "nvimgcodec"

    def __init__(self, device_id: int = 0, cpu_only: bool = False, *, fallback: Decoder | None = None,
                 routing: bool = True, max_num_cpu_threads: int = 0, hw_decoder_load: float | None = None,
                 cuda_stream: int = 0) -> None:
        nv = _import_nvimgcodec()
        self._nv = nv
        self.cpu_only = cpu_only
        self.device_id = device_id
        if cpu_only:
            kwargs = {"device_id": nv.NVIMGCODEC_DEVICE_CPU_ONLY, "backends": [nv.Backend(nv.BackendKind.CPU_ONLY)]}
        else:
            hw = (nv.Backend(nv.BackendKind.HW_GPU_ONLY) if hw_decoder_load is None
                  else nv.Backend(nv.BackendKind.HW_GPU_ONLY, load_hint=float(hw_decoder_load)))
            kwargs = {"device_id": device_id, "backends": [hw, nv.Backend(nv.BackendKind.GPU_ONLY),
                                                           nv.Backend(nv.BackendKind.HYBRID_CPU_GPU)]}
        try:
            # fancy (interpolating) chroma upsampling is what libjpeg-turbo, and so OpenCV, does
            self._decoder = nv.Decoder(max_num_cpu_threads=max_num_cpu_threads, options=":fancy_upsampling=1",
                                       **kwargs)
        except RuntimeError as e:
            raise DecoderUnavailable(f"nvImageCodec cannot decode on GPU {device_id} here ({e}); use "
                                     "NvImageCodecDecoder(cpu_only=True) or CPUDecoder() on machines without "
                                     "a CUDA driver") from e
        self.nvjpeg_version = nvjpeg_version()  # after the import above loaded nvImageCodec's nvJPEG
        self.routing = routing
        self.fallback: Decoder = fallback if fallback is not None else CPUDecoder()
        self.stats = DecodeStats()
        self._cuda_stream = cuda_stream
        self._lock = threading.Lock()
        self._params: dict[_Request, Any] = {}
        self._warned = False

    def _decode_params(self, req: _Request):
        p = self._params.get(req)
        if p is None:
            nv = self._nv
            p = self._params[req] = nv.DecodeParams(
                apply_exif_orientation=req.exif, color_spec=getattr(nv.ColorSpec, req.color_spec),
                allow_any_depth=True, sample_format=getattr(nv.SampleFormat, req.sample_format))
        return p

    def decode_batch(self, bufs: Sequence[memoryview], channels: int) -> list[DecodedImage]:
        check_channels(channels)
        out: list[DecodedImage | None] = [None] * len(bufs)
        to_cpu: list[tuple[int, str | None, str | None]] = []  # (index, routed reason, fallback reason)
        groups: dict[_Request, list[tuple[int, Any]]] = {}
        for i, buf in enumerate(bufs):
            raw = _as_u8(buf)
            where, why = route_reason(raw, nvjpeg_version=self.nvjpeg_version)
            if where == CPU and (self.routing or why == UNSAFE_LOSSLESS):  # the zero-fill guard always holds
                to_cpu.append((i, why, None))
                continue
            try:
                stream = self._nv.CodeStream(raw)
                req = _request(stream.codec_name, int(stream.num_channels), channels)
            except (RuntimeError, ValueError, TypeError):
                to_cpu.append((i, None, "unparsed"))
                continue
            if isinstance(req, str):
                to_cpu.append((i, req, None))
            else:
                groups.setdefault(req, []).append((i, stream))
        for req, items in groups.items():
            for (i, stream), img in zip(items, self._decode_group(req, [s for _, s in items])):
                res = None if img is None else self._finish(img, req, channels)
                if res is None:
                    to_cpu.append((i, None, f"refused:{stream.codec_name}"))
                else:
                    out[i] = res
                    self.stats.add(res)
        if to_cpu:
            results = self.fallback.decode_batch([bufs[i] for i, _, _ in to_cpu], channels)
            for (i, routed, fallback), res in zip(to_cpu, results):
                out[i] = res
                self.stats.add(res, routed=routed, fallback=fallback)
        return out  # type: ignore[return-value]

    def _decode_group(self, req: _Request, streams: list) -> list:
        try:
            with self._lock:
                return self._decoder.decode(streams, params=self._decode_params(req), cuda_stream=self._cuda_stream)
        except RuntimeError as e:  # a failure of the whole call (CUDA error): decode these on the CPU instead
            if not self._warned:
                self._warned = True
                warnings.warn(f"nvImageCodec failed on a batch ({e}); decoding it on the CPU", RuntimeWarning,
                              stacklevel=3)
            return [None] * len(streams)

    def _finish(self, img, req: _Request, channels: int) -> DecodedImage | None:
        """nvImageCodec's image in decode_image's layout (contiguous HWC, BGR order); None if unexpected."""
        xp = np
        if img.buffer_kind == self._nv.ImageBufferKind.STRIDED_DEVICE:
            cp = _cupy()
            if cp is not None:
                xp, arr = cp, cp.asarray(img)
            else:
                arr = np.asarray(img.cpu())
        else:
            arr = np.asarray(img)
        fmt = img.sample_format.name
        if fmt in ("P_Y", "I_Y"):
            if arr.ndim != 3 or (fmt == "P_Y" and arr.shape[0] != 1) or (fmt == "I_Y" and arr.shape[2] != 1):
                return None
            if fmt == "P_Y":
                arr = arr.reshape(arr.shape[1], arr.shape[2], 1)
            if req.replicate:
                arr = xp.broadcast_to(arr, (arr.shape[0], arr.shape[1], 3))
        elif arr.ndim != 3:
            return None
        elif fmt == "I_RGB":
            arr = arr[:, :, ::-1]
        elif fmt == "I_RGBA":
            arr = arr[:, :, [2, 1, 0, 3]]
        elif fmt != "I_BGR":
            return None
        if arr.shape[2] != channels:
            return None
        return DecodedImage.of(xp.ascontiguousarray(arr), self.backend)


def create_decoder(backend: str = "auto", *, device_id: int = 0, executor: Executor | None = None,
                   **kwargs: Any) -> Decoder:
    """A decoder by name: ``'auto'`` (nvImageCodec on the GPU when it can run here, else the CPU decoder),
    ``'nvimgcodec'``, ``'nvimgcodec-cpu'``, ``'dali'`` (GPU), ``'dali-cpu'`` or ``'cpu'``. ``executor``
    runs the CPU decoder's work; other keyword arguments go to the decoder's constructor.
    """
    cpu = CPUDecoder(executor)
    if backend == "cpu":
        return cpu
    if backend == "auto":
        try:
            return NvImageCodecDecoder(device_id, fallback=cpu, **kwargs)
        except (ImportError, DecoderUnavailable):
            return cpu
    if backend in ("nvimgcodec", "nvimgcodec-cpu"):
        return NvImageCodecDecoder(device_id, cpu_only=backend.endswith("-cpu"), fallback=cpu, **kwargs)
    if backend in ("dali", "dali-cpu"):
        from .dali_decode import DaliDecoder  # noqa: PLC0415 (optional dependency)
        return DaliDecoder(device_id=None if backend.endswith("-cpu") else device_id, fallback=cpu, **kwargs)
    raise ValueError(f"unknown decoder backend {backend!r}: use 'auto', 'nvimgcodec', 'nvimgcodec-cpu', "
                     "'dali', 'dali-cpu' or 'cpu'")
