"""The CPU fast path (``recordgpu.augment.fused``, ``kernels/cpu_fused.cpp``) gives the OpenCV path's numbers.

Every plan it takes (bilinear resize then crop, crop-resize, plain crop or resize; uint8, 1 or 3 channels;
float32 out; mirror) must equal ``cpu.execute(..., fast=False)`` bit for bit, on random and structured images
of every size, including regions that end at the last byte of the image (the 8-byte loads must not read past
it: a guard page turns such a read into a crash). Plans it does not take are left to OpenCV; without a
compiler (or with ``RECORDGPU_NATIVE=0``) it is off and the iterator's batches do not change.
"""
from __future__ import annotations

import ctypes
import mmap
import zlib

import numpy as np
import pytest

from recordgpu.augment import cpu, fused
from recordgpu.augment.plan import (INTER_CUBIC, INTER_LINEAR, Brightness, Crop, CropResize, MeanImage, Normalize,
                                    Resize, SamplePlan, Warp)
from recordgpu.kernels.host import build_cpu_library, find_compiler

pytestmark = pytest.mark.skipif(find_compiler() is None, reason="no C++ compiler for the CPU fast path")


def norm(c: int, rng: np.random.Generator, mirror: bool | None = None, **kw) -> Normalize:
    args = dict(out_dtype="float32", swap=(2, 1, 0) if c == 3 else (0,),
                mirror=bool(rng.random() < 0.5) if mirror is None else mirror,
                mean=tuple(float(v) for v in rng.normal(110, 30, c)),
                mult=tuple(float(v) for v in rng.uniform(-0.05, 0.1, c)),
                bias=tuple(float(v) for v in (rng.normal(0, 1, c) if rng.random() < 0.5 else np.zeros(c))))
    args.update(kw)
    return Normalize(**args)


def plan_of(stages, img: np.ndarray, out_hw: tuple[int, int], nm: Normalize) -> SamplePlan:
    h, w = img.shape[:2]
    c = img.shape[2]
    return SamplePlan(stages=tuple(stages) + (nm,), src_shape=(h, w, c), src_dtype=str(img.dtype),
                      out_shape=(c,) + out_hw)


def image(rng: np.random.Generator, h: int, w: int, c: int) -> np.ndarray:
    kind = rng.integers(3)
    if kind == 0:
        return rng.integers(0, 256, (h, w, c), dtype=np.uint8)
    if kind == 1:  # sharp edges and full-range steps: where rounding differences would show
        return ((np.arange(h)[:, None, None] // 3 + np.arange(w)[None, :, None] // 2 + np.arange(c)) % 2 * 255
                ).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    return ((yy * int(rng.integers(1, 9)) + xx * int(rng.integers(1, 9)))[:, :, None] + np.arange(c)).astype(np.uint8)


def random_plan(rng: np.random.Generator, img: np.ndarray) -> SamplePlan:
    h, w, c = img.shape
    oh, ow = int(rng.integers(1, 80)), int(rng.integers(1, 80))
    kind = rng.integers(4)
    if kind == 0:  # resize (up or down) then a crop of it
        rw, rh = int(rng.integers(ow, ow + 150)), int(rng.integers(oh, oh + 150))
        st = [Resize(rw, rh, INTER_LINEAR),
              Crop(int(rng.integers(rw - ow + 1)), int(rng.integers(rh - oh + 1)), ow, oh)]
    elif kind == 1:  # crop a region, resize it to the output
        x, y = int(rng.integers(w)), int(rng.integers(h))
        st = [CropResize(x, y, int(rng.integers(1, w - x + 1)), int(rng.integers(1, h - y + 1)), ow, oh, INTER_LINEAR)]
    elif kind == 2:
        st = [Resize(ow, oh, INTER_LINEAR)]
    else:
        oh, ow = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
        st = [Crop(int(rng.integers(w - ow + 1)), int(rng.integers(h - oh + 1)), ow, oh)]
    return plan_of(st, img, (oh, ow), norm(c, rng))


def both(plan: SamplePlan, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    want = np.full(plan.out_shape, np.nan, np.float32)
    cpu.execute(plan, img, want, fast=False)
    got = np.full(plan.out_shape, np.nan, np.float32)
    assert fused.run(plan, img, got), f"the fast path refused {plan.stages}"
    return want, got


def assert_same(want: np.ndarray, got: np.ndarray, what) -> None:
    assert np.array_equal(want.view(np.uint32), got.view(np.uint32)), \
        f"{what}: {int((want != got).sum())} values differ, max {np.nanmax(np.abs(want - got))}"


def test_fast_path_is_built_here():
    assert fused.status() == "on"


@pytest.mark.parametrize("seed", range(8))
def test_random_plans_equal_the_opencv_path(seed):
    rng = np.random.default_rng(seed)
    for _ in range(60):
        img = image(rng, int(rng.integers(1, 200)), int(rng.integers(1, 200)), int(rng.choice([1, 3])))
        plan = random_plan(rng, img)
        assert_same(*both(plan, img), plan.stages)


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("src_hw,resized", [
    ((375, 500), (256, 341)),   # ImageNet eval: shorter side to 256
    ((500, 375), (341, 256)),
    ((448, 448), (224, 224)),   # exactly half: OpenCV's INTER_AREA shortcut
    ((224, 224), (224, 224)),   # same size: a copy
    ((100, 150), (256, 384)),   # upscaling a small image
    ((300, 1), (256, 1)),       # one column: every tap clamped
])
def test_eval_geometries(c, src_hw, resized):
    rng = np.random.default_rng(zlib.crc32(repr((c, src_hw, resized)).encode()))
    img = image(rng, *src_hw, c)
    rh, rw = resized
    oh, ow = min(224, rh), min(224, rw)
    for mirror in (False, True):
        plan = plan_of([Resize(rw, rh, INTER_LINEAR), Crop((rw - ow) // 2, (rh - oh) // 2, ow, oh)], img, (oh, ow),
                       norm(c, rng, mirror=mirror))
        assert_same(*both(plan, img), (src_hw, resized, mirror))


def test_real_photo_at_imagenet_settings():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(7)
    ok, jpg = cv2.imencode(".jpg", cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (9, 9), 3),
                           [cv2.IMWRITE_JPEG_QUALITY, 90])
    img = cv2.imdecode(jpg, cv2.IMREAD_COLOR)
    mxnet_norm = Normalize(out_dtype="float32", swap=(2, 1, 0), mirror=False, mean=(123.68, 116.779, 103.939),
                           mult=(1 / 58.393, 1 / 57.12, 1 / 57.375), bias=(0.0, 0.0, 0.0))
    plan = plan_of([Resize(341, 256, INTER_LINEAR), Crop(58, 16, 224, 224)], img, (224, 224), mxnet_norm)
    assert_same(*both(plan, img), "eval")
    for _ in range(20):
        x, y = int(rng.integers(300)), int(rng.integers(200))
        w, h = int(rng.integers(40, 640 - x)), int(rng.integers(40, 480 - y))
        plan = plan_of([CropResize(x, y, w, h, 224, 224, INTER_LINEAR)], img, (224, 224),
                       Normalize(**{**mxnet_norm.__dict__, "mirror": bool(rng.random() < 0.5)}))
        assert_same(*both(plan, img), plan.stages)


@pytest.mark.parametrize("dtype", ["uint16", "int16"])
@pytest.mark.parametrize("c", [1, 3])
def test_16bit_crops_equal_the_numpy_path(dtype, c):
    rng = np.random.default_rng(zlib.crc32(repr((dtype, c)).encode()))
    info = np.iinfo(dtype)
    for _ in range(40):
        h, w = int(rng.integers(1, 90)), int(rng.integers(1, 90))
        img = rng.integers(info.min, info.max, (h, w, c), endpoint=True).astype(dtype)
        img.flat[:2] = (info.min, info.max)
        if rng.random() < 0.3:
            stages, out_hw = [], (h, w)
        else:
            oh, ow = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
            stages, out_hw = [Crop(int(rng.integers(w - ow + 1)), int(rng.integers(h - oh + 1)), ow, oh)], (oh, ow)
        nm = norm(c, rng, mean=tuple(float(v) for v in rng.uniform(-2000, 40000, c)),
                  mult=tuple(float(v) for v in rng.choice([1 / 512, -1 / 300, 1.0, 0.0], c)),
                  bias=tuple(float(v) for v in rng.choice([0.0, 0.5, -3.0], c)))
        plan = plan_of(stages, img, out_hw, nm)
        assert_same(*both(plan, img), (dtype, img.shape, stages, nm))


def _guarded(shape: tuple[int, ...]) -> tuple[np.ndarray, mmap.mmap]:
    """A uint8 array whose last byte is the last readable byte before an inaccessible page."""
    page = mmap.PAGESIZE
    n = int(np.prod(shape))
    size = (n + page - 1) // page * page
    buf = mmap.mmap(-1, size + page)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    if libc.mprotect(base + size, page, 0) != 0:  # PROT_NONE
        pytest.skip("mprotect is not available")
    arr = np.frombuffer(buf, np.uint8, n, size - n).reshape(shape)
    return arr, buf


@pytest.mark.parametrize("c", [1, 3])
def test_no_read_past_the_last_pixel(c):
    rng = np.random.default_rng(c)
    for h, w in [(5, 7), (33, 17), (64, 130), (1, 9), (9, 1)]:
        img, buf = _guarded((h, w, c))
        img[...] = rng.integers(0, 256, img.shape, dtype=np.uint8)
        for st in ([Resize(w * 3, h * 3, INTER_LINEAR)], [CropResize(w // 2, h // 2, w - w // 2, h - h // 2, 11, 13,
                                                                      INTER_LINEAR)],
                   [Crop(w - 1, h - 1, 1, 1)]):
            out_hw = (st[0].h, st[0].w) if isinstance(st[0], Crop) else (st[0].out_h, st[0].out_w)
            plan = plan_of(st, img, out_hw, norm(c, rng))
            assert_same(*both(plan, img), (h, w, st))
        del img
        buf.close()


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_one_channel_view_of_a_2d_image(dtype):
    """Decoders return (H, W) for one channel; the executor adds the axis as a view (its stride is 0)."""
    rng = np.random.default_rng(11)
    img2d = rng.integers(0, 256 if dtype == "uint8" else 65536, (37, 45)).astype(dtype)
    img = img2d[:, :, None]
    plan = plan_of([Crop(3, 4, 40, 30)], img, (30, 40), norm(1, rng))
    want, got = both(plan, img)
    assert_same(want, got, dtype)
    out = np.empty(plan.out_shape, np.float32)
    calls = []
    real = fused.run
    try:
        fused.run = lambda *a: calls.append(real(*a)) or calls[-1]
        cpu.execute(plan, img2d, out)  # the iterator's call: a 2-D image
    finally:
        fused.run = real
    assert calls == [True]
    assert_same(want, out, "execute")


def test_strided_source_rows():
    rng = np.random.default_rng(3)
    big = rng.integers(0, 256, (120, 200, 3), dtype=np.uint8)
    img = big[10:110, 20:150]  # rows 600 bytes apart, 390 bytes used
    assert not img.flags.c_contiguous
    plan = plan_of([Resize(60, 50, INTER_LINEAR), Crop(5, 5, 40, 30)], img, (30, 40), norm(3, rng))
    assert_same(*both(plan, img), "strided")


@pytest.mark.parametrize("case", ["cubic", "uint16 resize", "float32 source", "float16", "mean_image", "colour",
                                  "warp", "4 channels", "crop after a cubic resize"])
def test_other_plans_take_the_opencv_path(case):
    rng = np.random.default_rng(0)
    c = 4 if case == "4 channels" else 3
    img = rng.integers(0, 256, (40, 50, c), dtype=np.uint8)
    if case == "uint16 resize":
        img = img.astype(np.uint16) * 257
    elif case == "float32 source":
        img = img.astype(np.float32)
    stages = [Resize(50, 40, INTER_LINEAR), Crop(5, 5, 30, 20)]
    nm = norm(c, rng, swap=(2, 1, 0, 3)) if c == 4 else norm(c, rng)
    if case == "cubic":
        stages = [CropResize(0, 0, 50, 40, 30, 20, INTER_CUBIC)]
    elif case == "crop after a cubic resize":
        stages[0] = Resize(50, 40, INTER_CUBIC)
    elif case == "float16":
        nm = Normalize(**{**nm.__dict__, "out_dtype": "float16"})
    elif case == "mean_image":
        nm = Normalize(**{**nm.__dict__, "mean_image": MeanImage(np.ones((3, 20, 30), np.float32))})
    elif case == "colour":
        stages.append(Brightness(1.2))
    elif case == "warp":
        stages = [Warp((1.0, 0.1, 0.0, 0.0, 1.0, 0.0), 50, 40, INTER_LINEAR, (0.0,)), Crop(5, 5, 30, 20)]
    plan = plan_of(stages, img, (20, 30), nm)
    out = np.full(plan.out_shape, 7, nm.out_dtype)
    assert not fused.run(plan, img, out)
    assert (out == 7).all()  # nothing written
    cpu.execute(plan, img, out)  # the OpenCV path runs it


def test_out_of_bounds_crop_is_left_to_the_opencv_error():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    plan = plan_of([Resize(60, 50, INTER_LINEAR), Crop(45, 5, 30, 20)], img, (20, 30), norm(3, rng))
    out = np.empty(plan.out_shape, np.float32)
    assert not fused.run(plan, img, out)
    with pytest.raises(ValueError, match="lies outside"):
        cpu.execute(plan, img, out)


@pytest.fixture
def fresh_state(monkeypatch):
    """The fast path's module state, emptied for the test and restored after it."""
    monkeypatch.setattr(fused, "_state", {})
    return fused


def test_switched_off_by_environment(fresh_state, monkeypatch):
    monkeypatch.setenv("RECORDGPU_NATIVE", "0")
    assert fused.status() == "off: RECORDGPU_NATIVE=0"
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    plan = plan_of([Resize(60, 50, INTER_LINEAR), Crop(5, 5, 30, 20)], img, (20, 30), norm(3, rng))
    out = np.empty(plan.out_shape, np.float32)
    assert not fused.run(plan, img, out)


def test_without_a_compiler_it_is_off_and_says_why(fresh_state, monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("RECORDGPU_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    with caplog.at_level("INFO", logger="recordgpu.augment.fused"):
        assert fused.status().startswith("off: no C++ compiler")
    assert "CPU fast path off" in caplog.text


def test_a_cached_build_needs_no_compiler(monkeypatch, tmp_path):
    monkeypatch.setenv("RECORDGPU_CACHE_DIR", str(tmp_path))
    built = build_cpu_library()  # e.g. while making a container image
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    assert build_cpu_library() == built


def _batches(**kw) -> list[np.ndarray]:
    from recordgpu import ImageRecordIter

    it = ImageRecordIter(**kw)
    out = [b.data[0].copy() for b in it]
    del it
    return out


def test_iterator_batches_do_not_depend_on_the_fast_path(tmp_path, monkeypatch):
    cv2 = pytest.importorskip("cv2")
    from recordgpu import recordio

    rng = np.random.default_rng(5)
    rec, idx = str(tmp_path / "p.rec"), str(tmp_path / "p.idx")
    w = recordio.MXIndexedRecordIO(idx, rec, "w")
    for i in range(24):
        h, wd = int(rng.integers(60, 140)), int(rng.integers(60, 140))
        img = cv2.GaussianBlur(rng.integers(0, 256, (h, wd, 3), dtype=np.uint8), (5, 5), 2)
        w.write_idx(i, recordio.pack_img(recordio.IRHeader(0, float(i), i, 0), img, quality=90))
    w.close()
    base = dict(path_imgrec=rec, path_imgidx=idx, data_shape=(3, 48, 48), batch_size=8, mean_r=123.68,
                mean_g=116.779, mean_b=103.939, std_r=58.393, std_g=57.12, std_b=57.375, preprocess_threads=2)
    for extra in (dict(resize=56), dict(random_resized_crop=True, min_random_area=0.08, rand_mirror=True,
                                        shuffle=True, seed=3), dict(rand_crop=True, rand_mirror=True)):
        calls = []
        real = fused.run
        monkeypatch.setattr(fused, "run", lambda *a: calls.append(1) or real(*a))
        on = _batches(**base, **extra)
        assert calls, "the fast path was not used"
        monkeypatch.setattr(fused, "_state", {"lib": None, "why": "test"})
        off = _batches(**base, **extra)
        monkeypatch.undo()
        assert len(on) == len(off) == 3
        for a, b in zip(on, off):
            assert_same(b, a, extra)


def test_plain_cpp_build_gives_the_same_numbers(monkeypatch):
    """The loops without SSE2 (what ARM machines run) against the OpenCV path, on the same random plans."""
    plain = fused.bind(ctypes.CDLL(str(build_cpu_library(simd=False))))
    monkeypatch.setattr(fused, "_state", {"lib": plain})
    rng = np.random.default_rng(99)
    for k in range(200):
        if k % 4 == 3:
            dtype = ("uint16", "int16")[k % 8 // 4]
            info = np.iinfo(dtype)
            img = rng.integers(info.min, info.max, (int(rng.integers(1, 60)), int(rng.integers(1, 60)),
                                                     int(rng.choice([1, 3]))), endpoint=True).astype(dtype)
            h, w, c = img.shape
            oh, ow = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
            plan = plan_of([Crop(int(rng.integers(w - ow + 1)), int(rng.integers(h - oh + 1)), ow, oh)], img,
                           (oh, ow), norm(c, rng))
        else:
            img = image(rng, int(rng.integers(1, 150)), int(rng.integers(1, 150)), int(rng.choice([1, 3])))
            plan = random_plan(rng, img)
        assert_same(*both(plan, img), plan.stages)


def test_build_ahead_command(monkeypatch, tmp_path, capsys):
    from recordgpu.kernels.__main__ import main

    monkeypatch.setenv("RECORDGPU_CACHE_DIR", str(tmp_path))
    assert main(["--cpu"]) == 0
    path = capsys.readouterr().out.split(": ", 1)[1].strip()
    assert path.startswith(str(tmp_path)) and path.endswith(".so")
    monkeypatch.setenv("RECORDGPU_CACHE_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    assert main(["--cpu"]) == 1
    assert "no C++ compiler" in capsys.readouterr().err
