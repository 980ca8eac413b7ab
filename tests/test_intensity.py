"""Intensity options of ImageRecordIter: window, intensity_range, zscore and percentile normalisation.

References are MONAI's formulas written out in numpy (``ScaleIntensityRange``: ``(x - a_min) / (a_max - a_min)
* (b_max - b_min) + b_min``, optional clip to ``[b_min, b_max]``; ``NormalizeIntensity``: ``(x - mean) / std``;
``ScaleIntensityRangePercentiles``: the range between two per-image percentiles). Numpy's float32 arithmetic
with Python-float constants is exactly the float32 arithmetic the plan specifies, so window and range results
must match to the bit; per-image statistics are compared within float32 precision. Every check runs on the
CPU path and on the GPU path's code over the kernels' host build (``_gpu_backend='host'``; the
``gpu``-marked variants with CuPy on a CUDA GPU), on 16-bit unsigned and int16 data.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from recordgpu import ImageRecordIter, codecs, recordio
from recordgpu.augment import AugmentParams, Planner, execute
from recordgpu.augment.plan import FloatIntensity, Normalize, SamplePlan
from recordgpu.imageiter.params import UnknownArgumentWarning
from recordgpu.kernels.host import find_compiler, run_plans_host
from recordgpu.kernels.params import compile_batch
from recordgpu.meta import attach_meta

F32 = np.float32
PATHS = ["cpu", pytest.param("host", marks=pytest.mark.skipif(find_compiler() is None,
                                                                reason="no C++ compiler for the host build")),
         pytest.param("cupy", marks=pytest.mark.gpu)]  # `make test-gpu`: CuPy on a CUDA GPU
SIZE = 24  # output side; sources are larger, so the default centre crop needs no resampling
WINDOW = {"uint16": (2000.0, 3000.0), "int16": (200.0, 1600.0)}  # (level, width) clipping both tails


def make_images(kind: str, n: int = 5, seed: int = 0) -> list[np.ndarray]:
    """Gray 16-bit images of several sizes: smooth structure plus noise, the full CT-like range for int16."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = 30 + 3 * i, 40 - 2 * i
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.sin(yy / 5.0 + i) * np.cos(xx / 7.0)
        if kind == "uint16":
            img = 2000 + 1800 * base + rng.normal(0, 150, (h, w))
            out.append(np.clip(np.rint(img), 0, 65535).astype(np.uint16))
        else:
            img = 200 + 1100 * base + rng.normal(0, 80, (h, w))
            img[: h // 6] = -1024  # air
            out.append(np.clip(np.rint(img), -32768, 32767).astype(np.int16))
    return out


def write_rec(tmp_path, name: str, images: list[np.ndarray], metas: list[dict] | None = None) -> dict:
    """Images as records ``id = i`` (uint16 as PNG, int16 as .npy), optionally with metadata."""
    rec, idx = str(tmp_path / f"{name}.rec"), str(tmp_path / f"{name}.idx")
    w = recordio.MXIndexedRecordIO(idx, rec, "w")
    for i, img in enumerate(images):
        buf = codecs.encode(img, ".png" if img.dtype == np.uint16 else ".npy")
        if metas is not None:
            buf = attach_meta(buf, metas[i])
        w.write_idx(i, recordio.pack(recordio.IRHeader(0, float(i), i, 0), buf))
    w.close()
    return dict(path_imgrec=rec, path_imgidx=idx)


def samples(files: dict, path: str, **kw) -> tuple[np.ndarray, np.ndarray]:
    """Every real sample of one epoch (pad dropped) and its record id."""
    args = dict(files, data_shape=(1, SIZE, SIZE), batch_size=2, device="cpu" if path == "cpu" else "gpu",
                preprocess_threads=1)
    if path == "host":
        args["_gpu_backend"] = "host"
    elif path == "cupy":
        args["_gpu_backend"] = "cupy"
        pytest.importorskip("cupy")
    args.update(kw)
    data, ids = [], []
    with ImageRecordIter(**args) as it:
        for b in it:
            n = len(b.index) - b.pad
            data.append(b.data[0].asnumpy()[:n])
            ids.append(np.asarray(b.index)[:n])
    return np.concatenate(data), np.concatenate(ids).astype(int)


def centre(img: np.ndarray) -> np.ndarray:
    y, x = (img.shape[0] - SIZE) // 2, (img.shape[1] - SIZE) // 2
    return img[y:y + SIZE, x:x + SIZE]


def monai_range(x: np.ndarray, a_min: float, a_max: float, b_min: float, b_max: float, clip: bool) -> np.ndarray:
    """MONAI ScaleIntensityRange on a float32 image, Python-float parameters."""
    img = (x - a_min) / (a_max - a_min)
    img = img * (b_max - b_min) + b_min
    if clip:
        img = np.clip(img, b_min, b_max)
    return img


@pytest.fixture(params=["uint16", "int16"])
def dataset(request, tmp_path):
    images = make_images(request.param)
    return request.param, images, write_rec(tmp_path, request.param, images)


# --- window and intensity_range: exact ------------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
def test_window_is_monai_scale_intensity_range_to_the_bit(dataset, path):
    kind, images, files = dataset
    level, width = WINDOW[kind]
    out, ids = samples(files, path, window=(level, width))
    assert out.dtype == np.float32 and out.shape == (len(images), 1, SIZE, SIZE)
    for got, i in zip(out, ids):
        ref = monai_range(centre(images[i]).astype(F32), level - width / 2, level + width / 2, 0.0, 1.0, True)
        np.testing.assert_array_equal(got[0], ref)
    assert 0.0 == out.min() and out.max() == 1.0  # the window really clips at both ends on this data
    assert ((out > 0) & (out < 1)).mean() > 0.3


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("clip", [False, True])
def test_intensity_range_with_and_without_clip(dataset, path, clip):
    kind, images, files = dataset
    a0, a1, b0, b1 = (1000.0, 3500.0, -1.0, 1.0) if kind == "uint16" else (-200.0, 600.0, -1.0, 1.0)
    out, ids = samples(files, path, intensity_range=(a0, a1, b0, b1), clip=clip)
    for got, i in zip(out, ids):
        np.testing.assert_array_equal(got[0], monai_range(centre(images[i]).astype(F32), a0, a1, b0, b1, clip))
    assert (out.min() < -1) != clip and (out.max() > 1) != clip


@pytest.mark.parametrize("path", PATHS)
def test_mxnet_mean_std_and_scale_apply_to_the_window_output(dataset, path):
    kind, images, files = dataset
    level, width = WINDOW[kind]
    out, ids = samples(files, path, window=(level, width), mean_r=0.5, std_r=0.25, scale=2.0)
    for got, i in zip(out, ids):
        u = monai_range(centre(images[i]).astype(F32), level - width / 2, level + width / 2, 0.0, 1.0, True)
        np.testing.assert_array_equal(got[0], (u - F32(0.5)) / F32(0.25) * F32(2.0))  # powers of two: exact


@pytest.mark.parametrize("path", PATHS)
def test_float16_output_rounds_the_window_once(dataset, path):
    kind, images, files = dataset
    level, width = WINDOW[kind]
    out, ids = samples(files, path, window=(level, width), dtype="float16")
    assert out.dtype == np.float16
    for got, i in zip(out, ids):
        ref = monai_range(centre(images[i]).astype(F32), level - width / 2, level + width / 2, 0.0, 1.0, True)
        np.testing.assert_array_equal(got[0], ref.astype(np.float16))


@pytest.mark.parametrize("path", PATHS)
def test_fill_value_is_in_stored_units_and_windowed_like_the_pixels(tmp_path, path):
    images = make_images("uint16", n=2)
    files = write_rec(tmp_path, "u16", images)
    # pad 20 > the crop margin: the centre crop keeps some border; a_min = 0, so the fill maps to 1024 / 4096
    out, _ = samples(files, path, window=(2048.0, 4096.0), pad=20, fill_value=1024, data_shape=(1, 64, 64))
    assert np.all(out[:, 0, 0, :] == F32(0.25)) and np.all(out[:, 0, :, 0] == F32(0.25))


# --- zscore and percentile: per-image statistics after the geometric stages ------------------------------
@pytest.mark.parametrize("path", PATHS)
def test_zscore_matches_numpy(dataset, path):
    kind, images, files = dataset
    out, ids = samples(files, path, normalize="zscore")
    for got, i in zip(out, ids):
        x = centre(images[i]).astype(F32)
        x64 = x.astype(np.float64)
        ref = (x - F32(x64.mean())) / F32(x64.std())
        np.testing.assert_allclose(got[0], ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("q", [(1.0, 99.0), (0.0, 100.0, -1.0, 1.0), (25.0, 75.0)])
def test_percentile_matches_numpy(dataset, path, q):
    kind, images, files = dataset
    clip = len(q) == 4
    out, ids = samples(files, path, normalize="percentile", percentiles=q, clip=clip)
    b0, b1 = (q[2], q[3]) if len(q) == 4 else (0.0, 1.0)
    for got, i in zip(out, ids):
        x = centre(images[i]).astype(F32)
        lo, hi = np.percentile(x.astype(np.float64), [q[0], q[1]])
        np.testing.assert_allclose(got[0], monai_range(x, float(lo), float(hi), b0, b1, clip), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("path", PATHS)
def test_statistics_are_those_of_the_augmented_sample(tmp_path, path):
    """With random crops, mirror and a resize, each output sample has mean 0 and std 1 itself: the statistics
    come from the sample after the geometric stages, not from the decoded image."""
    images = make_images("uint16", n=6, seed=3)
    files = write_rec(tmp_path, "u16", images)
    out, _ = samples(files, path, normalize="zscore", resize=30, rand_crop=True, rand_mirror=True)
    for got in out.astype(np.float64):
        assert abs(got.mean()) < 1e-5 and abs(got.std() - 1) < 1e-5
    full = [(centre(im).astype(np.float64) - im.mean()) / im.std() for im in images]
    assert max(abs(f.mean()) for f in full) > 0.05  # whole-image statistics would not give mean 0


@pytest.mark.parametrize("path", PATHS)
def test_flat_images_follow_monais_fallbacks(tmp_path, path):
    """std 0: zscore divides by 1; equal percentiles: (x - a_min) + b_min."""
    files = write_rec(tmp_path, "flat", [np.full((30, 30), 700, np.uint16)])
    z, _ = samples(files, path, normalize="zscore")
    p, _ = samples(files, path, normalize="percentile", percentiles=(5, 95, 0.5, 2.0))
    assert np.all(z == 0) and np.all(p == F32(0.5))


# --- the GPU path's kernels agree with the CPU executor ------------------------------------------------
@pytest.mark.skipif(find_compiler() is None, reason="no C++ compiler for the host build")
@pytest.mark.parametrize("opts", [dict(window=(40.0, 400.0)), dict(normalize="zscore"),
                                  dict(normalize="percentile", percentiles=(2, 98))])
def test_host_kernels_agree_with_cpu_after_resampling(tmp_path, opts):
    images = make_images("int16", n=6, seed=5)
    files = write_rec(tmp_path, "i16", images)
    kw = dict(opts, max_rotate_angle=25, max_shear_ratio=0.1, resize=36, rand_crop=True, rand_mirror=True,
              fill_value=0, inter_method=2)
    cpu, ids_cpu = samples(files, "cpu", **kw)
    gpu, ids_gpu = samples(files, "host", **kw)
    np.testing.assert_array_equal(ids_cpu, ids_gpu)
    # the kernels resample within one stored unit of OpenCV; statistics follow the pixels
    unit = 1 / 400.0 if "window" in opts else 1 / float(np.std(np.concatenate([c.ravel() for c in images])))
    assert np.max(np.abs(cpu - gpu)) <= 4 * unit
    assert np.mean(cpu == gpu) > 0.5


@pytest.mark.skipif(find_compiler() is None, reason="no C++ compiler for the host build")
@pytest.mark.parametrize("mode", ["zscore", "percentile"])
def test_statistics_of_float32_images_are_bit_identical_on_both_paths(mode):
    """Non-integer values, whose statistics depend on float rounding: both paths give the same bits."""
    rng = np.random.default_rng(7)
    extra = dict(percentiles=(3.0, 97.5)) if mode == "percentile" else {}
    params = AugmentParams(data_shape=(3, 20, 20), normalize=mode, rand_crop=True, **extra)
    planner = Planner(params)
    from recordgpu.rng import MT19937
    r = MT19937(1)
    imgs = [(rng.normal(0, 1, (31 + k, 27, 3)) * 10 ** rng.uniform(-3, 3)).astype(F32) for k in range(4)]
    plans = [planner.plan_sample(im.shape[0], im.shape[1], 3, r, src_dtype="float32") for im in imgs]
    got = run_plans_host(plans, imgs)
    for k, (pl, im) in enumerate(zip(plans, imgs)):
        ref = np.empty((3, 20, 20), F32)
        execute(pl, im, ref)
        np.testing.assert_array_equal(got[k], ref)


def test_lane_sum_adds_in_the_gpu_blocks_order():
    """Thread t of the 256-thread block adds pixels t, t + 256, ... (channels in turn), then a pairwise tree."""
    from recordgpu.augment.intensity import LANES, lane_sum
    rng = np.random.default_rng(11)
    values = rng.normal(0, 1, (1000, 3)) * 10.0 ** rng.integers(-8, 8, (1000, 3))
    part = [0.0] * LANES
    for t in range(LANES):
        for i in range(t, len(values), LANES):
            for v in values[i]:
                part[t] += float(v)
    w = LANES // 2
    while w:
        part[:w] = [part[j] + part[j + w] for j in range(w)]
        w //= 2
    assert lane_sum(values) == part[0]
    assert part[0] != float(values.sum()) and part[0] != float(np.sum(values.ravel()[::-1]))  # order matters here


# --- intensity in modality units (per-record RescaleSlope / RescaleIntercept metadata) ------------------
@pytest.mark.parametrize("path", PATHS)
def test_modality_units_apply_each_records_rescale_first(tmp_path, path):
    images = make_images("uint16", n=3, seed=2)
    metas = [{"RescaleSlope": 1.0, "RescaleIntercept": -1024.0}, {"RescaleSlope": 0.5, "RescaleIntercept": -3000.0},
             {}]
    files = write_rec(tmp_path, "ct", images, metas)
    out, ids = samples(files, path, window=(40.0, 400.0), intensity_units="modality")
    for got, i in zip(out, ids):
        slope, icpt = metas[i].get("RescaleSlope", 1.0), metas[i].get("RescaleIntercept", 0.0)
        hu = centre(images[i]).astype(F32) * F32(slope) + F32(icpt)
        np.testing.assert_array_equal(got[0], monai_range(hu, -160.0, 240.0, 0.0, 1.0, True))
    stored, _ = samples(files, path, window=(40.0, 400.0))
    assert not np.array_equal(stored, out)  # the default is stored units


def test_unreadable_rescale_metadata_is_a_located_record_error(tmp_path):
    files = write_rec(tmp_path, "ct", make_images("uint16", n=2), [{"RescaleSlope": "steep"}, {}])
    with pytest.raises(ValueError, match=r"record key 0.*RescaleSlope"):
        samples(files, "cpu", window=(40.0, 400.0), intensity_units="modality")


# --- options: validation and errors -------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "int8"])
@pytest.mark.parametrize("opts", [dict(window=(40, 400)), dict(intensity_range=(0, 1, 0, 1)),
                                  dict(normalize="zscore"), dict(normalize="percentile", percentiles=(1, 99))])
def test_integer_outputs_are_refused(tmp_path, dtype, opts):
    files = write_rec(tmp_path, "u16", make_images("uint16", n=1))
    with pytest.raises(ValueError, match=rf"dtype='{dtype}' cannot hold the float32 values.*float32.*float16"):
        samples(files, "cpu", dtype=dtype, **opts)


@pytest.mark.parametrize("opts, message", [
    (dict(window=(40, 400), normalize="zscore"), "at most one of window, intensity_range and normalize"),
    (dict(window=(40, 400), intensity_range=(0, 1, 0, 1)), "at most one"),
    (dict(window=(40, 0)), "positive width"),
    (dict(window=(40,)), "window must be 2 numbers"),
    (dict(intensity_range=(5, 5, 0, 1)), "a_min != a_max"),
    (dict(intensity_range=(0, 1, 0)), "intensity_range must be 4 numbers"),
    (dict(normalize="percentile"), "needs percentiles"),
    (dict(percentiles=(1, 99)), "needs normalize='percentile'"),
    (dict(normalize="percentile", percentiles=(60, 40)), "0 <= lo <= hi <= 100"),
    (dict(normalize="percentile", percentiles=(1, 101)), "0 <= lo <= hi <= 100"),
    (dict(normalize="zscore", clip=True), "clip applies to"),
    (dict(clip=True), "clip applies to"),
    (dict(normalize="minmax"), "normalize must be one of"),
    (dict(intensity_units="HU"), "intensity_units must be one of"),
    (dict(intensity_units="modality"), "applies to window, intensity_range and normalize"),
    (dict(window=(40, float("nan"))), "finite"),
])
def test_bad_options_are_refused(tmp_path, opts, message):
    files = write_rec(tmp_path, "u16", make_images("uint16", n=1))
    with pytest.raises(ValueError, match=message):
        samples(files, "cpu", **opts)


def test_options_are_known_keywords_and_accept_strings(tmp_path):
    images = make_images("uint16", n=2)
    files = write_rec(tmp_path, "u16", images)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownArgumentWarning)
        a, _ = samples(files, "cpu", window="(2000, 3000)", clip="True", intensity_units="stored")
        b, _ = samples(files, "cpu", normalize="percentile", percentiles="1,99")
    c, _ = samples(files, "cpu", window=(2000, 3000))
    np.testing.assert_array_equal(a, c)
    assert b.dtype == np.float32


def test_intensity_draws_no_random_numbers(tmp_path):
    """The option adds a stage but keeps MXNet's random stream: the same crops, mirrors and order."""
    images = make_images("uint16", n=5)
    files = write_rec(tmp_path, "u16", images)
    kw = dict(rand_crop=True, rand_mirror=True, shuffle=True, seed=4, data_shape=(1, 16, 16))
    raw, ids_raw = samples(files, "cpu", **kw)
    win, ids_win = samples(files, "cpu", window=(2000.0, 3000.0), **kw)
    np.testing.assert_array_equal(ids_raw, ids_win)
    np.testing.assert_array_equal(win, monai_range(raw, 500.0, 3500.0, 0.0, 1.0, True))


def test_the_stage_must_be_last_before_normalize():
    norm = Normalize("float32", (0,), False, (0.0,), (1.0,), (0.0,))
    fi = FloatIntensity("range", 0.0, 10.0)
    from recordgpu.augment.plan import Brightness
    plan = SamplePlan((4, 4, 1), "uint16", (1, 4, 4), (fi, Brightness(1.5), norm))
    img = np.zeros((4, 4, 1), np.uint16)
    with pytest.raises(ValueError, match="last stage before Normalize"):
        execute(plan, img, np.empty((1, 4, 4), F32))
    with pytest.raises(ValueError, match="last stage before Normalize"):
        compile_batch([plan])
    raw = SamplePlan((4, 4, 1), "uint16", (1, 4, 4), (fi, Normalize("uint16", (0,), False, (0.0,), (1.0,), (0.0,))))
    with pytest.raises(ValueError, match="dtype='uint16' cannot hold"):
        execute(raw, img, np.empty((1, 4, 4), np.uint16))
