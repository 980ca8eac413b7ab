"""The GPU path of ImageRecordIter on the host backend: everything but the CUDA driver calls, in CI.

``_gpu_backend='host'`` runs the GPU path (batch executor, decoder and CPU fallback, pinned staging and
uploads, packed launch structs, events, in-flight limits, shutdown) with the kernels' host build standing in
for the device, on a background "stream" thread that runs uploads and launches in submission order, as a
CUDA stream does. It must give the CPU path's batches on every oracle case and output dtype: labels, pad,
index, shapes and dtypes exactly; pixels exactly where the kernels reproduce OpenCV's 8-bit fixed-point
arithmetic, else within one source unit (the contract's tolerance). Skipped without a C++ compiler.
"""
from __future__ import annotations

import gc
import json
import struct
import sys
import threading
import time
import warnings

import numpy as np
import pytest

from conftest import ORACLE
from recordgpu import DecodeError, ImageRecordIter, RecordIOError, recordio
from recordgpu.augment.params import AugmentParams
from recordgpu.augment.planner import Planner
from recordgpu.gpu.backend import GpuUnavailable, HostBackend, select_backend
from recordgpu.gpu.decode import CPUDecoder, DecodedImage, DecodeStats
from recordgpu.gpu.executor import GpuBatchExecutor
from recordgpu.imageiter.dataapi import HostArray
from recordgpu.imageiter.engine import BatchSample, SampleFailure
from recordgpu.imageiter.params import parse_iter_kwargs
from recordgpu.kernels.host import find_compiler
from recordgpu.ndarray_file import load_mean_img
from recordgpu.recfile import RecordFile
from recordgpu.rng import MT19937
from test_kernel_host import max_excess, tolerance

pytestmark = pytest.mark.skipif(find_compiler() is None, reason="no C++ compiler for the host build")

CASES = json.loads((ORACLE / "cases.json").read_text())
DTYPES = ("float32", "float16", "uint8", "int8", "uint16", "int16")
SOURCE_DTYPE = {"gray16.rec": "uint16", "color16.rec": "uint16"}  # every other oracle set is 8-bit
HOST = {"_gpu_backend": "host"}
COLOR8 = dict(path_imgrec=str(ORACLE / "color8.rec"), path_imgidx=str(ORACLE / "color8.idx"),
              data_shape=(3, 16, 16), batch_size=4)


def case_kwargs(name: str, **extra) -> dict:
    kw = dict(CASES[name]["kwargs"])
    for k in ("path_imgrec", "path_imgidx", "path_imglist", "mean_img"):
        if k in kw:
            kw[k] = str(ORACLE / kw[k])
    kw.update(extra)
    return kw


def host(a) -> np.ndarray:
    """A batch array as a plain numpy copy (host arrays and CuPy arrays both answer ``asnumpy``)."""
    return a.asnumpy() if hasattr(a, "asnumpy") else np.array(a)


def collect(it, epochs: int = 2) -> list:
    out = []
    for epoch in range(epochs):
        if epoch:
            it.reset()
        out.append([(host(b.data[0]), host(b.label[0]), b.pad, np.array(b.index)) for b in it])
    return out


def run(kw: dict, epochs: int = 2) -> list:
    with ImageRecordIter(**kw) as it:
        return collect(it, epochs)


def our_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("recordgpu")]


def source_unit(kw: dict, src_dtype: str) -> np.ndarray:
    """One source unit in output units, per output channel (the contract's ±1), from the planner's
    normalisation for these arguments."""
    p = parse_iter_kwargs(**kw)
    aug = AugmentParams(**p.augment_kwargs())
    mean = load_mean_img(kw["mean_img"]) if kw.get("mean_img") and not aug.raw_output else None
    plan = Planner(aug, mean).plan_sample(64, 64, p.channels, MT19937(0), slot=0, src_dtype=src_dtype)
    return tolerance(plan, np.zeros((1, 1, p.channels), src_dtype))


def assert_same_batches(cpu: list, gpu: list, unit: np.ndarray | None, out_dtype: str) -> None:
    """Same epochs, batch counts, labels, pads, indices, shapes and dtypes; pixels exact (unit None) or
    within ``unit`` (per output channel)."""
    assert len(cpu) == len(gpu)
    for e_cpu, e_gpu in zip(cpu, gpu):
        assert len(e_cpu) == len(e_gpu)
        for (d1, l1, p1, i1), (d2, l2, p2, i2) in zip(e_cpu, e_gpu):
            assert d1.shape == d2.shape and d1.dtype == d2.dtype
            assert np.array_equal(l1, l2) and p1 == p2 and np.array_equal(i1, i2)
            if unit is None:
                assert np.array_equal(d1, d2, equal_nan=True)
            else:
                for s1, s2 in zip(d1, d2):
                    tol = unit
                    if out_dtype == "float32":  # a shifted input rounds the float32 result again
                        tol = unit + np.spacing(np.abs(s1)).astype(np.float64)
                    assert max_excess(s2, s1, tol, out_dtype) <= 0


# -- every oracle case, every output dtype ------------------------------------------------------------------
def check_case(name: str, dtype: str, gpu_kwargs: dict, array_type: type, kernel_exact: bool = True) -> None:
    """The GPU path (``gpu_kwargs``) gives the CPU path's batches on oracle case ``name`` at ``dtype``.

    ``kernel_exact``: both paths decode alike, so pixels are exact where the kernels reproduce OpenCV's
    arithmetic exactly; otherwise (and everywhere else) within one source unit.
    """
    kw = case_kwargs(name, dtype=dtype)
    try:
        cpu = run(dict(kw, device="cpu"))
    except ValueError as e:  # dtype not allowed for this source: the GPU path refuses it the same way
        with pytest.raises(type(e)) as e_gpu:
            run(dict(kw, **gpu_kwargs))
        assert str(e_gpu.value) == str(e)
        return
    with ImageRecordIter(**kw, **gpu_kwargs) as it:
        assert it.device == "gpu"
        gpu = collect(it)
        it.reset()
        first = it.next()
        assert isinstance(first.data[0], array_type) and isinstance(first.label[0], array_type)
    src_dtype = SOURCE_DTYPE.get(kw["path_imgrec"].rsplit("/", 1)[-1], "uint8")
    # the kernels reproduce OpenCV's 8-bit fixed-point resampling bit for bit; its cubic filter and the
    # float sums of 16-bit resampling may round one unit apart (kernels/rg_resize.cuh)
    exact = kernel_exact and src_dtype == "uint8" and kw.get("inter_method") != 2
    out_dtype = np.dtype(parse_iter_kwargs(**kw).output_dtype).name
    assert_same_batches(cpu, gpu, None if exact else source_unit(kw, src_dtype), out_dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_every_oracle_case_and_dtype_matches_the_cpu_path(name, dtype):
    check_case(name, dtype, HOST, HostArray)


COLOR16 = dict(path_imgrec=str(ORACLE / "color16.rec"), path_imgidx=str(ORACLE / "color16.idx"), batch_size=2,
               rand_crop=True, rand_mirror=True, shuffle=True, seed=7)


@pytest.mark.parametrize("dtype", ["uint16", "float32", "float16", "int16"])
def test_16_bit_colour_jitter_is_exact_without_resampling(dtype):
    # every color16 image is at least 20x20: a random crop, no resampling, so only the colour steps differ
    kw = dict(COLOR16, data_shape=(3, 20, 20), brightness=0.3, contrast=0.3, saturation=0.3, pca_noise=0.1,
              dtype=dtype)
    assert_same_batches(run(dict(kw, device="cpu")), run(dict(kw, **HOST)), None, dtype)


@pytest.mark.parametrize("dtype", ["uint16", "float32", "float16", "int16"])
def test_16_bit_resize_and_crop_within_one_unit(dtype):
    kw = dict(COLOR16, data_shape=(3, 24, 24), resize=30, dtype=dtype, mean_r=1000.0, std_r=300.0)
    assert_same_batches(run(dict(kw, device="cpu")), run(dict(kw, **HOST)), source_unit(kw, "uint16"), dtype)


# -- decoder fallback ---------------------------------------------------------------------------------------
class FlakyGpuDecoder:
    """Stands in for a GPU decoder: refuses every second record and returns every third one a row short.

    It counts what it did, so the executor's fallback counters can be checked against it.
    """

    backend = "fake-gpu"

    def __init__(self) -> None:
        self.stats = DecodeStats()
        self.seen = self.refused = self.wrong = 0
        self._cpu = CPUDecoder()

    def decode_batch(self, bufs, channels):
        out = []
        for buf in bufs:
            self.seen += 1
            if self.seen % 2 == 0:
                self.refused += 1
                res = DecodedImage.failed(DecodeError("not for this decoder"), self.backend)
            else:
                img = self._cpu.decode_one(buf, channels)
                if self.seen % 3 == 0:
                    self.wrong += 1
                    img = img[1:]
                res = DecodedImage.of(img, self.backend)
            self.stats.add(res)
            out.append(res)
        return out


def test_refused_and_misdecoded_records_fall_back_to_the_cpu_and_are_counted():
    kw = case_kwargs("rand_basic")
    cpu = run(dict(kw, device="cpu"))
    dec = FlakyGpuDecoder()
    with ImageRecordIter(**kw, **HOST, _gpu_decoder=dec) as it:
        gpu = collect(it)
        stats = it.decode_stats
    assert_same_batches(cpu, gpu, None, "float32")
    assert dec.refused > 0 and dec.wrong > 0
    assert stats["fallbacks"] == {"refused": dec.refused, "mismatch": dec.wrong}
    assert stats["decoder"]["errors"] == dec.refused
    assert stats["decoder"]["decoded"]["fake-gpu"] == dec.seen - dec.refused


def corrupt_png_rec(tmp_path, bad=(2,)):
    """png8 with the image data of records ``bad`` damaged: the header still probes, decoding fails."""
    rec, idx = tmp_path / "bad.rec", tmp_path / "bad.idx"
    src = recordio.MXIndexedRecordIO(str(ORACLE / "png8.idx"), str(ORACLE / "png8.rec"), "r")
    w = recordio.MXIndexedRecordIO(str(idx), str(rec), "w")
    for k in src.keys:
        payload = src.read_idx(k)
        if k in bad:
            h, img = recordio.unpack(payload)
            i = img.find(b"IDAT")
            n = struct.unpack(">I", img[i - 4:i])[0]
            img = bytearray(img)
            for j in range(i + 4 + n // 3, i + 4 + n // 3 + 16):
                img[j] ^= 0x5A
            payload = recordio.pack(h, bytes(img))
        w.write_idx(k, payload)
    w.close()
    return str(rec), str(idx)


def test_undecodable_record_is_located_as_on_the_cpu_path(tmp_path):
    rec, idx = corrupt_png_rec(tmp_path)
    kw = dict(path_imgrec=rec, path_imgidx=idx, data_shape=(3, 16, 16), batch_size=3)
    errors = []
    for extra in ({"device": "cpu"}, HOST):
        with pytest.raises(RecordIOError) as e:
            run(dict(kw, **extra))
        errors.append(e.value)
    assert errors[1].key == 2 and errors[1].offset == int(RecordFile(rec, idx).table.start[2])
    assert str(errors[1]) == str(errors[0])


def test_skip_mode_skips_the_same_records_as_the_cpu_path(tmp_path):
    rec, idx = corrupt_png_rec(tmp_path, bad=(1, 4))
    kw = dict(path_imgrec=rec, path_imgidx=idx, data_shape=(3, 16, 16), batch_size=3, on_error="skip")
    results = []
    for extra in ({"device": "cpu"}, HOST):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            with ImageRecordIter(**kw, **extra) as it:
                batches = collect(it)
                results.append((batches, it.skipped, sum("skipping" in str(x.message) for x in w)))
    (cpu, cpu_skipped, cpu_warned), (gpu, gpu_skipped, gpu_warned) = results
    assert_same_batches(cpu, gpu, None, "float32")
    assert gpu_skipped == cpu_skipped >= 2 and gpu_warned == cpu_warned == cpu_skipped
    ids = [i for b in gpu[0] for i in b[3][:len(b[3]) - b[2]].tolist()]
    assert 1 not in ids and 4 not in ids


def test_a_sample_the_kernels_reject_is_skipped_or_raised(monkeypatch):
    """``SampleFailure`` from execute: the engine drops that sample, refills the batch, and reports it
    like an undecodable record."""
    from recordgpu.gpu import executor as gpu_executor

    real = gpu_executor.GpuBatchExecutor.execute
    failed = []

    def execute_failing_once(self, prepared, plans, shape, dtype):
        if not failed:
            failed.append(1)
            raise SampleFailure(1, ValueError("unsupported plan"))
        return real(self, prepared, plans, shape, dtype)

    monkeypatch.setattr(gpu_executor.GpuBatchExecutor, "execute", execute_failing_once)
    cpu = run(dict(COLOR8, device="cpu"), epochs=1)[0]
    with pytest.warns(RuntimeWarning, match="unsupported plan"):
        with ImageRecordIter(**COLOR8, **HOST, on_error="skip") as it:
            gpu = collect(it, epochs=1)[0]
            assert it.skipped == 1
    by_id = {int(i): d for b in cpu for d, i in zip(b[0], b[3])}
    got = [(int(i), d) for b in gpu for d, i in list(zip(b[0], b[3]))[:len(b[3]) - b[2]]]
    assert [i for i, _ in got] == [0, 2, 3, 4, 5, 6, 7, 8, 9, 10]  # record 1 (second of batch 0) dropped
    assert all(np.array_equal(d, by_id[i]) for i, d in got)
    failed.clear()
    with pytest.raises(RecordIOError, match="unsupported plan") as e:
        run(dict(COLOR8, **HOST))
    assert e.value.key == 1


def test_executor_names_the_sample_whose_plan_the_kernels_reject():
    from recordgpu.augment.plan import Normalize, SamplePlan

    good = SamplePlan((4, 4, 1), "uint8", (1, 4, 4), (Normalize("float32", (0,), False, (0.0,), (1.0,), (0.0,)),))
    bad = SamplePlan((4, 4, 5), "uint8", (1, 4, 4), good.stages)  # 5 channels: the kernels take at most 4
    backend = HostBackend()
    ex = GpuBatchExecutor(backend)
    try:
        img = np.zeros((4, 4, 1), np.uint8)
        prepared = ex.prepare([BatchSample(good, None, img), BatchSample(good, None, img)])
        with pytest.raises(SampleFailure) as e:
            ex.execute(prepared, [good, bad], (2, 1, 4, 4), np.float32)
        assert e.value.index == 1 and "channels" in str(e.value.error)
    finally:
        ex.close()
        backend.close()


# -- stream order, memory, shutdown -------------------------------------------------------------------------
class SlowStreamBackend(HostBackend):
    """A host backend whose stream is slow: each launch waits first, so a batch read before its event
    completes would still be (partly) zero. Counts the batches outstanding on its stream."""

    def __init__(self) -> None:
        super().__init__(stream=True)
        self.events: list = []
        self.max_outstanding = 0

    def launch_step(self, launch, steps, tables) -> None:
        self._run(lambda: time.sleep(0.03))
        super().launch_step(launch, steps, tables)

    def record(self):
        self.max_outstanding = max(self.max_outstanding, 1 + sum(not e.done() for e in self.events))
        ev = super().record()
        self.events.append(ev)
        return ev


def test_batches_are_read_after_their_event_and_stay_valid():
    kw = case_kwargs("rand_color")
    cpu = run(dict(kw, device="cpu"), epochs=1)[0]
    backend = SlowStreamBackend()
    with ImageRecordIter(**kw, _gpu_backend=backend, prefetch_buffer=2) as it:
        batches = list(it)
        held = [host(b.data[0]) for b in batches]
        # later batches did not reuse the buffers of earlier ones
        assert all(np.array_equal(np.asarray(b.data[0]), h) for b, h in zip(batches, held))
        gpu = [(host(b.data[0]), host(b.label[0]), b.pad, np.array(b.index)) for b in batches]
    assert_same_batches([cpu], [gpu], None, "float32")
    # the producer ran ahead of the stream (work overlapped), but never more than max_in_flight batches
    assert 2 <= backend.max_outstanding <= it._engine.executor.max_in_flight == 3


def test_a_buffer_released_before_the_stream_used_it_is_an_error_not_a_crash():
    from recordgpu.augment.plan import Normalize, SamplePlan
    from recordgpu.gpu.backend import run_program
    from recordgpu.kernels.params import compile_batch

    plan = SamplePlan((8, 8, 1), "uint8", (1, 8, 8), (Normalize("float32", (0,), False, (0.0,), (1.0,), (0.0,)),))
    backend = HostBackend(stream=True)
    try:
        gate = threading.Event()
        backend._run(gate.wait)  # hold the stream while the host side runs ahead
        out = backend.zeros((1, 1, 8, 8), np.float32)
        image = backend.upload(np.full((8, 8, 1), 7, np.uint8))
        keep = run_program(backend, compile_batch([plan]), [image], out)
        del keep, image  # the mistake: inputs dropped before their launch ran
        gate.set()
        with pytest.raises(RuntimeError, match="released before the stream used it"):
            backend.synchronize()
        assert not out.any()
    finally:
        backend.close()


def test_shutdown_leaves_no_threads_and_releases_every_buffer():
    gc.collect()
    before = our_threads()
    backend = HostBackend(stream=True)
    it = ImageRecordIter(**COLOR8, _gpu_backend=backend, preprocess_threads=3)
    assert "recordgpu-hoststream" in our_threads()
    batches = list(it)
    assert backend.live_buffers > 0
    it.close()
    assert our_threads() == before
    del batches
    gc.collect()
    assert backend.live_buffers == 0

    backend = HostBackend(stream=True)
    it = ImageRecordIter(**COLOR8, _gpu_backend=backend, preprocess_threads=2, prefetch_buffer=3)
    for _ in it:
        break  # loop broken early, iterator dropped with batches in flight
    del it, _
    gc.collect()
    assert our_threads() == before
    assert backend.live_buffers == 0


@pytest.mark.parametrize("name", ["rand_basic", "rand_color", "rotate", "seed_aug"])
def test_deterministic_whatever_the_prefetch_depth_and_threads(name):
    kw = case_kwargs(name)
    ref = run(dict(kw, **HOST, preprocess_threads=1, prefetch_buffer=1))
    for threads, depth in ((3, 5), (2, 2)):
        assert_same_batches(ref, run(dict(kw, **HOST, preprocess_threads=threads, prefetch_buffer=depth)),
                            None, "float32")
    assert_same_batches(run(dict(kw, device="cpu")), ref, None, "float32")


def test_mid_epoch_reset_is_deterministic_on_the_gpu_path():
    kw = dict(COLOR8, shuffle=True, seed=5, rand_crop=True, rand_mirror=True, resize=20, **HOST)
    results = []
    for depth in (1, 4):
        with ImageRecordIter(**kw, prefetch_buffer=depth, preprocess_threads=2) as it:
            it.next()
            it.reset()
            results.append(collect(it))
    with ImageRecordIter(**dict(kw, device="cpu")) as it:
        it.next()
        it.reset()
        results.append(collect(it))
    assert_same_batches(results[0], results[1], None, "float32")
    assert_same_batches(results[0], results[2], None, "float32")


# -- device selection ---------------------------------------------------------------------------------------
def test_device_selection(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # as on a machine without CuPy
    monkeypatch.delenv("RECORDGPU_GPU_BACKEND", raising=False)
    with pytest.raises(GpuUnavailable, match="CuPy"):
        ImageRecordIter(**COLOR8, device="gpu")
    with pytest.raises(GpuUnavailable, match="device_id=-1"):
        ImageRecordIter(**COLOR8, device="gpu", device_id=-1)
    with ImageRecordIter(**COLOR8) as it:  # device='auto'
        assert it.device == "cpu" and it.decode_stats is None
    with pytest.raises(ValueError, match="'cupy' or 'host'"):
        ImageRecordIter(**COLOR8, _gpu_backend="opencl")
    monkeypatch.setenv("RECORDGPU_GPU_BACKEND", "host")
    with ImageRecordIter(**COLOR8) as it:
        assert it.device == "gpu" and isinstance(it.next().data[0], HostArray)
        assert it.decode_stats["decoder"]["decoded"]["cpu"] > 0
    with ImageRecordIter(**COLOR8, device="cpu") as it:
        assert it.device == "cpu"
    assert select_backend("cpu", 0, "host") is None


def test_auto_warns_only_when_a_present_gpu_is_unusable(monkeypatch):
    from recordgpu.gpu import backend as gpu_backend

    monkeypatch.delenv("RECORDGPU_GPU_BACKEND", raising=False)
    for absent in (True, False):
        def failing(device_id, absent=absent):
            raise GpuUnavailable("kernels did not build", absent=absent)

        monkeypatch.setattr(gpu_backend, "CupyBackend", failing)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            assert select_backend("auto", 0) is None
        assert [str(x.message) for x in w] == ([] if absent else
                                               ["device='auto': using the CPU because kernels did not build"])
        with pytest.raises(GpuUnavailable, match="did not build"):
            select_backend("gpu", 0)


def test_kwargs_for_testing_are_not_reported_as_unknown():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ImageRecordIter(**COLOR8, **HOST).close()
