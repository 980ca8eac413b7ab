"""Optional DALI decoder: ``fn.decoders.image`` in a DALI pipeline fed encoded records by ``fn.external_source``.

``DaliDecoder(device_id=None)`` runs DALI's CPU decoder (works without a CUDA driver); ``device_id=N`` its
``mixed`` (GPU) decoder. It follows the :class:`recordgpu.gpu.decode.Decoder` protocol. The output dtype is
chosen per record from its stored depth (UINT8 or UINT16 pipelines), so values come out as stored. Gray
sources decode as GRAY (repeated into BGR here, as OpenCV does), colour sources as BGR, 4-channel sources
as ANY_DATA reordered to BGRA, each in its own pipeline: DALI 2.4's CPU decoder with ``ANY_DATA`` kills the
process (segfault) when consecutive JPEGs in one pipeline differ in channel count.

nvImageCodec's own API is the default decoder because of DALI's limits, which this class works around by
decoding the affected records with the CPU fallback (counted in ``stats.routed`` / ``stats.fallbacks``):

- one undecodable sample fails the whole pipeline run, and the pipeline must be rebuilt: such a batch is
  decoded on the CPU instead (``stats.fallbacks['dali-batch-failed']``), with per-record errors;
- lossless and 12-bit JPEG do not decode on DALI's CPU backend;
- the ``mixed`` backend rescales data below 16 bits (12-bit JPEG 2000) by 65535/4095 while the CPU backend
  keeps the stored values: such records go to the CPU;
- DALI's RGB-to-gray arithmetic differs from OpenCV's: colour records asked as gray go to the CPU.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import codecs
from .decode import (CPUDecoder, DecodedImage, Decoder, DecodeStats, _as_u8, _cupy, check_channels,
                     jpeg_frame)


def _import_dali():
    try:
        from nvidia import dali  # noqa: PLC0415 (optional dependency)
        import nvidia.nvimgcodec as nv  # noqa: PLC0415 (a DALI dependency; parses headers here)
    except ImportError as e:
        raise ImportError("DALI is not installed: pip install nvidia-dali-cuda120 (it brings nvImageCodec)") from e
    return dali, nv


class DaliDecoder:
    """Decode record batches with DALI's ``fn.decoders.image`` (see the module docstring for its limits)."""

    backend = "dali"

    def __init__(self, *, device_id: int | None = None, max_batch_size: int = 64, num_threads: int = 2,
                 fallback: Decoder | None = None) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, not {max_batch_size}")
        self._dali, self._nv = _import_dali()
        self.device_id = device_id
        self.max_batch_size = max_batch_size
        self.num_threads = num_threads
        self.fallback: Decoder = fallback if fallback is not None else CPUDecoder()
        self.stats = DecodeStats()
        self._pipes: dict[tuple[str, str, bool], Any] = {}

    def _pipeline(self, key: tuple[str, str, bool]):
        pipe = self._pipes.get(key)
        if pipe is not None:
            return pipe
        from nvidia.dali import fn, types  # noqa: PLC0415
        dtype, output_type, orient = key
        mixed = self.device_id is not None
        # synchronous and unprefetched: each run decodes exactly the batch just fed
        pipe = self._dali.Pipeline(batch_size=self.max_batch_size, num_threads=self.num_threads,
                                   device_id=self.device_id, prefetch_queue_depth=1, exec_async=False,
                                   exec_pipelined=False)
        extra = {"jpeg_fancy_upsampling": True} if mixed else {}  # libjpeg's upsampling, as OpenCV
        with pipe:
            enc = fn.external_source(name="encoded", device="cpu", dtype=types.UINT8, ndim=1)
            img = fn.decoders.image(enc, device="mixed" if mixed else "cpu",
                                    dtype=types.UINT16 if dtype == "uint16" else types.UINT8,
                                    output_type=getattr(types, output_type), adjust_orientation=orient, **extra)
            pipe.set_outputs(img)
        pipe.build()
        self._pipes[key] = pipe
        return pipe

    def _plan(self, raw: np.ndarray, channels: int) -> tuple[tuple[str, str, bool] | None, str | None]:
        """``((dtype, output_type, orient), None)`` to decode with DALI, or ``(None, reason)`` for the CPU."""
        fmt = codecs.sniff(raw)
        if fmt in ("npy", "unknown"):
            return None, fmt
        if fmt == "jpeg":
            frame = jpeg_frame(raw)
            if frame is None:
                return None, "jpeg-unparsed"
            if frame.lossless:
                return None, "lossless-jpeg"
            if frame.precision != 8:
                return None, f"jpeg-{frame.precision}bit"
        try:
            stream = self._nv.CodeStream(raw)
            dtype, n, precision = np.dtype(stream.dtype).name, int(stream.num_channels), int(stream.precision)
        except (RuntimeError, ValueError, TypeError):
            return None, "unparsed"
        if dtype not in ("uint8", "uint16"):
            return None, dtype
        if self.device_id is not None and precision not in (0, 8, 16):
            return None, "dali-gpu-rescale"
        if channels == 1 and n > 1:
            return None, "color-to-gray"
        if (channels == 4 and (n != 4 or fmt == "jpeg")) or n == 2 or (fmt == "jpeg" and n not in (1, 3)):
            return None, "channels"
        output_type = "GRAY" if n == 1 else "ANY_DATA" if channels == 4 else "BGR"
        return (dtype, output_type, channels != 4), None  # IMREAD_UNCHANGED (C=4) ignores EXIF orientation

    def decode_batch(self, bufs: Sequence[memoryview], channels: int) -> list[DecodedImage]:
        check_channels(channels)
        out: list[DecodedImage | None] = [None] * len(bufs)
        to_cpu: list[tuple[int, str | None, str | None]] = []  # (index, routed reason, fallback reason)
        groups: dict[tuple[str, str, bool], list[tuple[int, np.ndarray]]] = {}
        for i, buf in enumerate(bufs):
            raw = _as_u8(buf)
            key, why = self._plan(raw, channels)
            if key is None:
                to_cpu.append((i, why, None))
            else:
                groups.setdefault(key, []).append((i, raw))
        for key, items in groups.items():
            for start in range(0, len(items), self.max_batch_size):
                chunk = items[start:start + self.max_batch_size]
                arrays = self._run(key, channels, [raw for _, raw in chunk])
                if arrays is None:
                    to_cpu += [(i, None, "dali-batch-failed") for i, _ in chunk]
                    continue
                for (i, _), arr in zip(chunk, arrays):
                    if arr.ndim != 3 or arr.shape[2] != channels:
                        to_cpu.append((i, None, "unexpected-output"))
                        continue
                    out[i] = DecodedImage.of(arr, self.backend)
                    self.stats.add(out[i])
        if to_cpu:
            results = self.fallback.decode_batch([bufs[i] for i, _, _ in to_cpu], channels)
            for (i, routed, fallback), res in zip(to_cpu, results):
                out[i] = res
                self.stats.add(res, routed=routed, fallback=fallback)
        return out  # type: ignore[return-value]

    def _run(self, key: tuple[str, str, bool], channels: int, raws: list[np.ndarray]) -> list[Any] | None:
        """Decoded arrays in decode_image's layout (copies: DALI reuses its buffers); None if the run failed."""
        try:
            pipe = self._pipeline(key)
            pipe.feed_input("encoded", raws)
            (batch,) = pipe.run()
        except RuntimeError:
            self._pipes.pop(key, None)  # "Current pipeline object is no longer valid"
            return None
        if self.device_id is None:
            xp = np
            arrays = [np.array(batch[k]) for k in range(len(raws))]
        else:
            xp = _cupy()
            if xp is None:
                raise ImportError("DaliDecoder(device_id=...) returns CuPy arrays: pip install cupy-cuda12x")
            arrays = [xp.array(batch[k]) for k in range(len(raws))]
        return [_to_layout(xp, a, channels) for a in arrays]


def _to_layout(xp, a, channels: int):
    """GRAY / BGR / ANY_DATA (RGBA) output in OpenCV's layout for ``channels``; unchanged if it does not fit."""
    if a.ndim != 3:
        return a
    n = a.shape[2]
    if channels == 3 and n == 1:
        a = xp.broadcast_to(a, (a.shape[0], a.shape[1], 3))
    elif channels == 4 and n == 4:
        a = a[:, :, [2, 1, 0, 3]]
    else:
        return a
    return xp.ascontiguousarray(a)
