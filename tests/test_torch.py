"""recordgpu.torch: DLPack batches as tensors, TorchIter, and the map-style RecordDataset.

RecordDataset tests need no torch; the tensor and DataLoader tests skip without it.
"""
from __future__ import annotations

import multiprocessing
import pickle

import numpy as np
import pytest

from recordgpu import ImageRecordIter, codecs, recordio
from recordgpu.augment.params import AugmentParams
from recordgpu.augment.planner import Planner
from recordgpu.errors import RecordIOError
from recordgpu.rng import MT19937
from recordgpu.torch import RecordDataset, RecordReader

from conftest import ORACLE, load_sources, oracle_path


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


# -- fixtures written here ---------------------------------------------------------------------------------
def _write_rec(path_prefix, payloads, keys=None, headers=None) -> tuple[str, str]:
    rec, idx = f"{path_prefix}.rec", f"{path_prefix}.idx"
    w = recordio.MXIndexedRecordIO(idx, rec, "w")
    for k, buf in enumerate(payloads):
        key = keys[k] if keys is not None else k
        hdr = headers[k] if headers is not None else recordio.IRHeader(0, float(k % 3), key, 0)
        w.write_idx(key, recordio.pack(hdr, buf))
    w.close()
    return rec, idx


@pytest.fixture(scope="module")
def int16_rec(tmp_path_factory):
    """Four int16 .npy images (CT-like values, negative ones included) and their arrays."""
    rng = np.random.default_rng(7)
    imgs = [rng.integers(-1024, 3000, size=(12, 10), dtype=np.int16) for _ in range(4)]
    rec, idx = _write_rec(str(tmp_path_factory.mktemp("int16") / "ct"), [codecs.encode(a, ".npy") for a in imgs])
    return rec, idx, imgs


def _case_dataset(case: dict, **extra) -> tuple[RecordDataset, int]:
    kw = dict(case["kwargs"])
    bs = kw.pop("batch_size")
    for k in ("path_imgrec", "path_imgidx", "path_imglist", "mean_img"):
        if k in kw:
            kw[k] = oracle_path(kw[k])
    rec = kw.pop("path_imgrec")
    return RecordDataset(rec, kw.pop("data_shape"), **kw, **extra), bs


# -- RecordDataset against MXNet's own outputs ----------------------------------------------------------
DETERMINISTIC_CASES = ["plain", "resize", "normalize", "uint8", "int8", "gray", "mirror", "pad_fill", "rotate",
                       "scale_fixed", "inter_area", "inter_nn", "hsl_fixed", "mean_img", "multilabel",
                       "multipart", "imglist2", "png8", "png8_gray", "rgba"]


@pytest.mark.parametrize("name", DETERMINISTIC_CASES)
def test_dataset_matches_mxnet_on_deterministic_cases(name, oracle_cases):
    """Unshuffled, indexed cases: batch b slot s of MXNet's first epoch is record b * batch_size + s."""
    ds, bs = _case_dataset(oracle_cases[name])
    z = np.load(ORACLE / "cases" / f"{name}.npz")
    n = len(ds)
    for b in range((n + bs - 1) // bs):
        data, label = z[f"e0_b{b}_data"], z[f"e0_b{b}_label"]
        for s in range(min(bs, n - b * bs)):
            x, y = ds[b * bs + s]
            assert x.dtype == data.dtype and x.shape == data.shape[1:]
            np.testing.assert_array_equal(x, data[s], err_msg=f"{name}: record {b * bs + s}")
            np.testing.assert_array_equal(np.asarray(y, np.float32).reshape(-1),
                                          np.asarray(label[s], np.float32).reshape(-1))


def test_dataset_label_shapes_collate_like_the_iterator(oracle_cases):
    ds, _ = _case_dataset(oracle_cases["resize"])
    _, y = ds[0]
    assert np.ndim(y) == 0 and np.asarray(y).dtype == np.float32  # a batch of these stacks to (N,)
    ds3, _ = _case_dataset(oracle_cases["multilabel"])
    _, y3 = ds3[0]
    assert y3.shape == (3,) and y3.dtype == np.float32


def test_dataset_keeps_16_bit_values():
    """Full-depth promise: a centre crop of a 16-bit PNG comes back with the stored values (spec §3.7 crop)."""
    src = load_sources("gray16")
    h = min(a.shape[0] for a in src)
    w = min(a.shape[1] for a in src)
    ds = RecordDataset(oracle_path("gray16.rec"), (1, h, w), path_imgidx=oracle_path("gray16.idx"), dtype="uint16")
    for i, a in enumerate(src):
        y0, x0 = (a.shape[0] - h) // 2, (a.shape[1] - w) // 2
        x, _ = ds[i]
        assert x.dtype == np.uint16
        np.testing.assert_array_equal(x[0], a[y0:y0 + h, x0:x0 + w])


def test_dataset_int16_records(int16_rec):
    rec, idx, imgs = int16_rec
    ds = RecordDataset(rec, (1, 12, 10), path_imgidx=idx, dtype="int16")
    for i, a in enumerate(imgs):
        np.testing.assert_array_equal(ds[i][0][0], a)


# -- seeding ----------------------------------------------------------------------------------------------
RANDOM_KW = dict(resize=40, rand_crop=True, rand_mirror=True, max_rotate_angle=15, brightness=0.3)


def _random_ds(seed=0):
    return RecordDataset(oracle_path("color8.rec"), (3, 32, 32), path_imgidx=oracle_path("color8.idx"),
                         seed=seed, **RANDOM_KW)


def test_seed_scheme_is_the_documented_one():
    ds = _random_ds(seed=5)
    ds.set_epoch(3)
    i = 4
    expected = int(np.random.SeedSequence([5, 3, i]).generate_state(1, np.uint32)[0])
    assert ds.sample_seed(i) == expected
    _, _, image = ds.decode(i)
    plan = Planner(AugmentParams(data_shape=(3, 32, 32), **RANDOM_KW)).plan_sample(
        *image.shape, MT19937(expected), src_dtype=image.dtype)
    assert ds.sample(i).plan == plan


def test_samples_depend_only_on_seed_epoch_and_index():
    a, b = _random_ds(), _random_ds()
    order = list(range(len(a)))
    first = {i: a[i][0] for i in order}
    for i in reversed(order):  # another access order, another object
        np.testing.assert_array_equal(b[i][0], first[i])
    a.set_epoch(1)
    changed = sum(not np.array_equal(a[i][0], first[i]) for i in order)
    assert changed == len(order)
    a.set_epoch(0)
    np.testing.assert_array_equal(a[2][0], first[2])
    other = _random_ds(seed=1)
    assert sum(not np.array_equal(other[i][0], first[i]) for i in order) == len(order)


def test_epoch_and_seed_validation():
    ds = _random_ds()
    with pytest.raises(ValueError, match="epoch"):
        ds.set_epoch(-1)
    with pytest.raises(ValueError, match="seed"):
        _random_ds(seed=-3)


# -- process safety -----------------------------------------------------------------------------------------
def test_dataset_pickles_with_its_epoch():
    ds = _random_ds()
    ds.set_epoch(2)
    back = pickle.loads(pickle.dumps(ds))
    assert back.epoch == 2 and len(back) == len(ds)
    np.testing.assert_array_equal(back[1][0], ds[1][0])
    back.set_epoch(4)
    assert ds.epoch == 2  # an ordinary pickle is a copy, not shared


def _child_read(ds, q):
    try:
        q.put(("ok", ds[3][0], ds.epoch))
    except Exception as e:  # pragma: no cover - reported to the parent
        q.put(("error", repr(e), None))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_forked_child_reopens_the_file():
    """The parent closes its maps before forking: the child can only read by reopening by path."""
    ds = _random_ds()
    ds.set_epoch(1)
    expected = ds[3][0]
    ds.close()
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_read, args=(ds, q))
    p.start()
    status, data, epoch = q.get(timeout=60)
    p.join(60)
    assert status == "ok", data
    assert epoch == 1
    np.testing.assert_array_equal(data, expected)


# -- labels and errors --------------------------------------------------------------------------------------
def test_insightface_records_are_images_labelled_by_identity(tmp_path):
    imgs = [np.full((8, 8, 3), 40 * k, np.uint8) for k in range(4)]
    ident = [0, 0, 1, 1]
    # keys: 0 header, 1..4 images, 5..6 identities (InsightFace layout)
    keys = [0, 1, 2, 3, 4, 5, 6]
    headers = [recordio.IRHeader(0, [5.0, 7.0], 0, 0)]
    payloads = [b""]
    for k, img in enumerate(imgs):
        headers.append(recordio.IRHeader(0, float(ident[k]), k + 1, 0))
        payloads.append(codecs.encode(img, ".png"))
    for start, end in ((1, 3), (3, 5)):
        headers.append(recordio.IRHeader(0, [float(start), float(end)], 0, 0))
        payloads.append(b"")
    rec, idx = _write_rec(str(tmp_path / "faces"), payloads, keys=keys, headers=headers)
    ds = RecordDataset(rec, (3, 8, 8), path_imgidx=idx, dtype="uint8")
    assert len(ds) == 4
    for k in range(4):
        x, y = ds[k]
        assert y == ident[k]
        assert x[0, 0, 0] == 40 * k
    it = ImageRecordIter(path_imgrec=rec, path_imgidx=idx, data_shape=(3, 8, 8), batch_size=4)
    np.testing.assert_array_equal(it.next().label[0], [ds[k][1] for k in range(4)])
    with pytest.raises(ValueError, match="identity"):
        RecordDataset(rec, (3, 8, 8), path_imgidx=idx, label_width=2)


def test_iterator_options_and_unknown_keywords_are_refused():
    rec = oracle_path("color8.rec")
    with pytest.raises(TypeError, match="batch_size, shuffle"):
        RecordDataset(rec, (3, 32, 32), batch_size=4, shuffle=True)
    with pytest.raises(TypeError, match="seed_aug"):
        RecordDataset(rec, (3, 32, 32), seed_aug=3)
    with pytest.raises(TypeError, match="rezise"):
        RecordDataset(rec, (3, 32, 32), rezise=40)
    with pytest.raises(FileNotFoundError, match="mean_img"):
        RecordDataset(rec, (3, 32, 32), mean_img=str(ORACLE / "no_such_mean.bin"))
    with pytest.raises(ValueError):
        RecordDataset(rec, (3, 32, 32), inter_method=7)


def test_indexing():
    ds = RecordDataset(oracle_path("color8.rec"), (3, 32, 32), path_imgidx=oracle_path("color8.idx"), resize=40)
    np.testing.assert_array_equal(ds[-1][0], ds[len(ds) - 1][0])
    with pytest.raises(IndexError, match="out of range"):
        ds[len(ds)]


def test_undecodable_record_names_file_offset_and_id(tmp_path):
    good = codecs.encode(np.zeros((8, 8, 3), np.uint8), ".png")
    rec, idx = _write_rec(str(tmp_path / "bad"), [good, b"\xff\xd8\xff garbage", good])
    ds = RecordDataset(rec, (3, 8, 8), path_imgidx=idx)
    ds[0]
    with pytest.raises(RecordIOError) as e:
        ds[1]
    assert e.value.path == rec and e.value.offset is not None and e.value.key == 1


def test_reader_raw_labels_and_label_rules():
    r = RecordReader(oracle_path("multilabel.rec"), oracle_path("multilabel.idx"), label_width=3)
    assert r.raw_labels(0).shape == (3,)
    np.testing.assert_array_equal(r.label(0), r.raw_labels(0))
    with pytest.raises(ValueError, match="3-dimensional label"):
        RecordReader(oracle_path("multilabel.rec"), oracle_path("multilabel.idx")).label(0)


# -- tensors (torch needed) ---------------------------------------------------------------------------------
@pytest.mark.parametrize("rec,shape,dtype,tdtype", [
    ("gray16", (1, 24, 24), "uint16", "uint16"),
    ("color8", (3, 24, 24), "uint8", "uint8"),
    ("color8", (3, 24, 24), None, "float32"),
])
def test_from_dlpack_shares_batch_memory(torch, rec, shape, dtype, tdtype):
    it = ImageRecordIter(path_imgrec=oracle_path(f"{rec}.rec"), data_shape=shape, batch_size=2, resize=30,
                         dtype=dtype)
    batch = it.next()
    a = batch.data[0]
    t = torch.from_dlpack(a)
    assert t.dtype == getattr(torch, tdtype) and tuple(t.shape) == a.shape
    assert t.data_ptr() == a.__array_interface__["data"][0]
    a[0, 0, 0, 0] = 7
    assert int(t[0, 0, 0, 0]) == 7
    it.close()


def test_from_dlpack_int16_batches_hold_the_stored_values(torch, int16_rec):
    rec, idx, imgs = int16_rec
    it = ImageRecordIter(path_imgrec=rec, path_imgidx=idx, data_shape=(1, 12, 10), batch_size=4, dtype="int16")
    a = it.next().data[0]
    t = torch.from_dlpack(a)
    assert t.dtype == torch.int16 and t.data_ptr() == a.__array_interface__["data"][0]
    np.testing.assert_array_equal(t[:, 0].numpy(), np.stack(imgs))
    it.close()


def test_uint16_workaround_is_exact(torch):
    """torch.uint16 lacks arithmetic; the documented conversions keep every value."""
    from recordgpu.torch import to_tensor

    a = np.array([0, 1, 4095, 32768, 65534, 65535], np.uint16)
    t = to_tensor(a)
    assert t.dtype == torch.uint16
    np.testing.assert_array_equal(t.to(torch.int32).numpy(), a.astype(np.int32))
    np.testing.assert_array_equal(t.float().numpy(), a.astype(np.float32))
    assert (t.float() + 1).max().item() == 65536.0


def test_to_tensor_copies_read_only_arrays_only(torch):
    from recordgpu.torch import to_tensor

    a = np.arange(6, dtype=np.float32)
    assert to_tensor(a).data_ptr() == a.ctypes.data
    ro = np.arange(6, dtype=np.float32)
    ro.setflags(write=False)
    t = to_tensor(ro)
    assert t.data_ptr() != ro.ctypes.data
    t[0] = 5  # writable, and the read-only source is untouched
    assert ro[0] == 0
    assert to_tensor(a, device="cpu").data_ptr() == a.ctypes.data
    with pytest.raises(TypeError, match="numpy, CuPy or DLPack"):
        to_tensor([1, 2, 3])


class _FakeStream:
    """Stands in for cupy.cuda.Stream / ExternalStream: a context manager that becomes CuPy's current stream."""

    current = None

    def __init__(self, ptr: int, device_id: int = -1) -> None:
        self.ptr, self.device_id = ptr, device_id

    def __enter__(self):
        self._prev, _FakeStream.current = _FakeStream.current, self
        return self

    def __exit__(self, *exc):
        _FakeStream.current = self._prev


class _FakeDevice:
    current = None

    def __init__(self, device_id: int) -> None:
        self.id = device_id

    def __enter__(self):
        self._prev, _FakeDevice.current = _FakeDevice.current, self.id
        return self

    def __exit__(self, *exc):
        _FakeDevice.current = self._prev


class _FakeCupyArray:
    """A host array dressed as a CuPy array; records the current stream and device when DLPack-exported."""

    __module__ = "cupy._core.core"

    def __init__(self, a: np.ndarray, device_id: int = 1) -> None:
        self._a, self.device = a, type("Dev", (), {"id": device_id})()
        self.shape = a.shape
        self.seen = None

    def __getitem__(self, key):
        return _FakeCupyArray(self._a[key], self.device.id)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()

    def __dlpack__(self, **kw):
        self.seen = (_FakeStream.current, _FakeDevice.current)
        return self._a.__dlpack__(**kw)


@pytest.fixture
def fake_cupy(monkeypatch):
    import sys
    import types

    mod = types.ModuleType("cupy")
    mod.cuda = types.SimpleNamespace(Device=_FakeDevice, ExternalStream=_FakeStream, Stream=_FakeStream)
    monkeypatch.setitem(sys.modules, "cupy", mod)
    return mod


def test_gpu_arrays_are_exported_on_the_producer_stream(torch, fake_cupy):
    """The CuPy branch: DLPack export runs with the iterator's stream current in CuPy (so torch's stream waits
    for it) and on the array's device; a raw pointer becomes an ExternalStream on that device."""
    from recordgpu.torch import to_tensor

    host = np.arange(12, dtype=np.uint16).reshape(3, 4)
    arr = _FakeCupyArray(host, device_id=1)
    t = to_tensor(arr, stream=0xBEEF)
    stream, device = arr.seen
    assert (stream.ptr, stream.device_id, device) == (0xBEEF, 1, 1)
    assert t.dtype == torch.uint16 and t.data_ptr() == host.ctypes.data
    given = _FakeStream(77)
    to_tensor(arr, stream=given)
    assert arr.seen == (given, 1)
    to_tensor(arr)
    assert arr.seen == (None, 1)  # no stream given: CuPy's current one
    assert _FakeStream.current is None and _FakeDevice.current is None  # contexts left


def test_torch_iter_uses_the_iterators_stream(torch, fake_cupy):
    from recordgpu.imageiter.dataapi import DataBatch
    from recordgpu.torch import TorchIter

    class GpuIter:
        stream = _FakeStream(42)

        def __init__(self):
            self.batches = [DataBatch([_FakeCupyArray(np.ones((2, 1, 2, 2), np.float32))],
                                      [_FakeCupyArray(np.zeros(2, np.float32))], pad=0)]

        def __iter__(self):
            return iter(self.batches)

        def reset(self):
            pass

    it = GpuIter()
    (x, y), = list(TorchIter(it))
    assert it.batches[0].data[0].seen[0] is GpuIter.stream and it.batches[0].label[0].seen[0] is GpuIter.stream
    assert tuple(x.shape) == (2, 1, 2, 2) and tuple(y.shape) == (2,)


def _plain_epochs(it, n):
    out = []
    for _ in range(n):
        out.append([(b.data[0].copy(), b.label[0].copy(), b.pad) for b in it])
        it.reset()
    return out


@pytest.mark.parametrize("round_batch", [False, True])
def test_torch_iter_epochs(torch, round_batch):
    from recordgpu.torch import TorchIter

    kw = dict(path_imgrec=oracle_path("color8.rec"), path_imgidx=oracle_path("color8.idx"), data_shape=(3, 32, 32),
              batch_size=4, resize=40, shuffle=True, seed=1, round_batch=round_batch)
    expected = _plain_epochs(ImageRecordIter(**kw), 3)
    ti = TorchIter(ImageRecordIter(**kw))
    for epoch in range(3):
        got = list(ti)
        assert len(got) == len(expected[epoch])
        for (x, y), (ex, ey, pad) in zip(got, expected[epoch]):
            keep = len(ex) - (pad if not round_batch else 0)
            assert isinstance(x, torch.Tensor) and x.device.type == "cpu"
            np.testing.assert_array_equal(x.numpy(), ex[:keep])
            np.testing.assert_array_equal(y.numpy(), ey[:keep])
    if not round_batch:  # every record exactly once per epoch
        assert sum(len(y) for _, y in got) == 11


def test_torch_iter_restarts_after_an_early_break(torch):
    from recordgpu.torch import TorchIter

    kw = dict(path_imgrec=oracle_path("color8.rec"), path_imgidx=oracle_path("color8.idx"), data_shape=(3, 32, 32),
              batch_size=4, resize=40, round_batch=False)
    full = [y.numpy().copy() for _, y in TorchIter(ImageRecordIter(**kw))]
    ti = TorchIter(ImageRecordIter(**kw))
    for _ in ti:
        break
    again = [y.numpy() for _, y in ti]
    assert len(again) == len(full)
    for a, b in zip(again, full):
        np.testing.assert_array_equal(a, b)


# -- DataLoader (torch needed) ------------------------------------------------------------------------------
def _loader_batches(torch, ds, **kw):
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False, **kw)
    return loader, [(x.clone(), y.clone()) for x, y in loader]


def _epoch(torch, loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(x1.equal(x2) and y1.equal(y2) for (x1, y1), (x2, y2) in zip(a, b))


def test_dataloader_workers_give_the_same_batches(torch):
    ds = _random_ds()
    _, single = _loader_batches(torch, ds, num_workers=0)
    _, multi = _loader_batches(torch, ds, num_workers=2)
    assert _same(single, multi)
    assert single[0][0].dtype == torch.float32
    assert single[0][1].dtype == torch.float32 and tuple(single[0][1].shape) == (4,)


def test_dataloader_uint16_batches(torch):
    ds = RecordDataset(oracle_path("gray16.rec"), (1, 24, 24), path_imgidx=oracle_path("gray16.idx"), resize=30,
                       dtype="uint16")
    _, batches = _loader_batches(torch, ds, num_workers=0)
    x, _ = batches[0]
    assert x.dtype == torch.uint16 and tuple(x.shape) == (4, 1, 24, 24)
    np.testing.assert_array_equal(x[1].numpy(), ds[1][0])


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_set_epoch_reaches_persistent_workers(torch, context):
    if context not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {context} start method")
    ref = _random_ds()
    _, e0 = _loader_batches(torch, ref, num_workers=0)
    ref.set_epoch(1)
    _, e1 = _loader_batches(torch, ref, num_workers=0)
    assert not _same(e0, e1)

    ds = _random_ds()
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=1, persistent_workers=True,
                                         multiprocessing_context=context)
    assert _same(_epoch(torch, loader), e0)
    ds.set_epoch(1)
    assert _same(_epoch(torch, loader), e1)
    ds.set_epoch(0)
    assert _same(_epoch(torch, loader), e0)
