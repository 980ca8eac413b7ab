"""The GPU path on a CUDA GPU (``make test-gpu``): ImageRecordIter(device='gpu') against the CPU path.

The checks of test_gpu_path_host.py with :class:`~recordgpu.gpu.backend.CupyBackend` instead of the host
build, plus what only a device shows: batches are CuPy arrays on ``device_id``, DLPack hands them to torch
without a copy, and the memory pool stays flat over epochs. With the CPU decoder the pixels are those of the
host build (exact where it is exact); with the default decoder (nvImageCodec when installed) JPEG decoders may
differ, so the contract's one source unit applies. Skipped without CuPy and a CUDA GPU.
"""
from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

from recordgpu import DecodeError, ImageRecordIter
from recordgpu.gpu.decode import CPUDecoder, DecodedImage, create_decoder
from test_gpu_path_host import (CASES, COLOR8, DTYPES, assert_same_batches, case_kwargs, check_case, collect,
                                host, run, source_unit)

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cp():
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA GPU")
    except Exception as e:  # no driver
        pytest.skip(f"no CUDA GPU ({e})")
    return cupy


@pytest.fixture(scope="module")
def device_id(cp) -> int:
    return cp.cuda.runtime.getDeviceCount() - 1  # the last GPU: catches work landing on GPU 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_kernels_on_the_gpu_match_the_cpu_path(cp, name, dtype):
    check_case(name, dtype, {"device": "gpu", "_gpu_decoder": CPUDecoder()}, cp.ndarray)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_gpu_decoding_and_kernels_match_the_cpu_path(cp, name, dtype):
    check_case(name, dtype, {"device": "gpu"}, cp.ndarray, kernel_exact=False)


def test_batches_are_cupy_arrays_on_device_id(cp, device_id):
    with ImageRecordIter(**COLOR8, device="gpu", device_id=device_id) as it:
        assert it.device == "gpu"
        for b in it:
            for a in (b.data[0], b.label[0]):
                assert isinstance(a, cp.ndarray) and a.device.id == device_id
                got = a.asnumpy()
                assert type(got) is np.ndarray and np.array_equal(got, cp.asnumpy(a))
            assert isinstance(b.index, np.ndarray)


def test_device_auto_uses_the_gpu(cp):
    with ImageRecordIter(**COLOR8) as it:
        assert it.device == "gpu" and isinstance(it.next().data[0], cp.ndarray)


def test_dlpack_into_torch_without_a_copy(cp, device_id):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    with ImageRecordIter(**COLOR8, device="gpu", device_id=device_id) as it:
        a = it.next().data[0]
        t = torch.from_dlpack(a)
        assert t.data_ptr() == a.data.ptr and t.device == torch.device("cuda", device_id)
        assert np.array_equal(t.cpu().numpy(), a.asnumpy())


class RefusingDecoder:
    """The default GPU decoder, refusing every second record it is given (counted)."""

    backend = "refusing-gpu"

    def __init__(self, inner) -> None:
        self.inner = inner
        self.stats = inner.stats
        self.seen = self.refused = 0

    def decode_batch(self, bufs, channels):
        out = []
        for res in self.inner.decode_batch(bufs, channels):
            self.seen += 1
            if self.seen % 2 == 0:
                self.refused += 1
                res = DecodedImage.failed(DecodeError("refused by the test"), self.backend)
            out.append(res)
        return out


def test_refused_records_fall_back_to_the_cpu_and_are_counted(cp, device_id):
    kw = case_kwargs("rand_basic")
    dec = RefusingDecoder(create_decoder("auto", device_id=device_id))
    with ImageRecordIter(**kw, device="gpu", device_id=device_id, _gpu_decoder=dec) as it:
        gpu = collect(it)
        stats = it.decode_stats
    assert dec.refused > 0 and stats["fallbacks"] == {"refused": dec.refused}
    assert_same_batches(run(dict(kw, device="cpu")), gpu, source_unit(kw, "uint8"), "float32")


def test_jpeg_is_decoded_on_the_gpu_when_nvimagecodec_is_installed(cp):
    pytest.importorskip("nvidia.nvimgcodec")
    with ImageRecordIter(**COLOR8, device="gpu") as it:
        list(it)
        assert it.decode_stats["decoder"]["decoded"].get("nvimgcodec", 0) > 0


def test_no_memory_growth_over_ten_epochs(cp, device_id):
    pool = cp.get_default_memory_pool()
    kw = dict(case_kwargs("rand_color"), data_shape=(3, 64, 64), device="gpu", device_id=device_id)
    used = []
    with ImageRecordIter(**kw) as it:
        batch_bytes = it.next().data[0].nbytes
        it.reset()
        for epoch in range(10):
            if epoch:
                it.reset()
            for b in it:
                float(b.data[0].sum())
            del b
            gc.collect()
            cp.cuda.Device(device_id).synchronize()
            used.append(pool.used_bytes())
    # between epochs only the last few batches' inputs may still be held (at most max_in_flight batches)
    assert used[-1] - used[1] <= 8 * batch_bytes, used


def test_no_thread_or_batch_input_left_after_close(cp):
    before = [t.name for t in threading.enumerate() if t.name.startswith("recordgpu")]
    it = ImageRecordIter(**COLOR8, device="gpu", preprocess_threads=3)
    batches = [host(b.data[0]) for b in it]
    executor = it._engine.executor
    it.close()
    assert [t.name for t in threading.enumerate() if t.name.startswith("recordgpu")] == before
    assert executor.in_flight == 0 and len(batches) == 3
