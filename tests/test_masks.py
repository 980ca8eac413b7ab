"""Paired segmentation masks in ImageRecordIter (``path_maskrec`` / ``path_maskidx``).

The fixtures are packed the way users pack them: ``recordgpu im2rec`` (:func:`pack_list`) from an image list
and a mask list with the same indices, lossless PNG at the stored depth. The images are made from their masks
(a constant per label plus a gentle ramp), so thresholding an augmented image must give back the augmented
mask wherever the mask is locally constant (image resampling mixes values only across label edges): that is
the alignment check, for rotation, shear, crops, mirror, pad, resize and random_resized_crop, on the CPU
path and on the GPU path's code over the kernels' host build (``_gpu_backend='host'``; the ``gpu``-marked
variants run it with CuPy on a CUDA GPU).
"""
from __future__ import annotations

import os
import warnings

import cv2
import numpy as np
import pytest

from recordgpu import ImageRecordIter, RecordIOError, codecs, recordio
from recordgpu.im2rec import PackOptions, pack_list, write_list
from recordgpu.imageiter.masks import MissingMaskError
from recordgpu.imageiter.params import UnknownArgumentWarning
from recordgpu.kernels.host import find_compiler

PATHS = ["cpu", pytest.param("host", marks=pytest.mark.skipif(find_compiler() is None,
                                                                reason="no C++ compiler for the host build")),
         pytest.param("cupy", marks=pytest.mark.gpu)]  # `make test-gpu`: CuPy on a CUDA GPU
LEVELS = np.array([3000, 20000, 45000], np.float64)  # image value of labels 0, 1, 2 (before the ramp)
CUTS = (11500, 32500)  # thresholds between the label levels, far beyond the ramp's 600


def make_pair(i: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A label map with blobs of labels 1 and 2, and the uint16 image drawn from it."""
    h, w = 60 + 4 * i, 70 - 3 * i
    mask = np.zeros((h, w), np.uint8)
    for label in (1, 2):
        for _ in range(2):
            cy, cx = rng.integers(8, h - 8), rng.integers(8, w - 8)
            ry, rx = rng.integers(6, 14, 2)
            cv2.ellipse(mask, (int(cx), int(cy)), (int(rx), int(ry)), float(rng.uniform(0, 180)), 0, 360, label, -1)
    yy, xx = np.mgrid[0:h, 0:w]
    image = LEVELS[mask] + 600 * (yy / h) * (xx / w)
    return np.rint(image).astype(np.uint16), mask


def threshold(values: np.ndarray) -> np.ndarray:
    return (values > CUTS[0]).astype(np.uint8) + (values > CUTS[1]).astype(np.uint8)


def pack_dataset(root, n: int = 7, seed: int = 0, mask_order=None, skip_mask=(), mask_dtype=np.uint8,
                 mask_resize=None) -> tuple[dict, list, list]:
    """Images and masks as files, listed with the same indices and packed by im2rec into two .rec files."""
    rng = np.random.default_rng(seed)
    root = str(root)
    os.makedirs(os.path.join(root, "img"), exist_ok=True)
    os.makedirs(os.path.join(root, "seg"), exist_ok=True)
    images, masks, img_items, seg_items = [], [], [], []
    for i in range(n):
        image, mask = make_pair(i, rng)
        mask = mask.astype(mask_dtype)
        images.append(image)
        masks.append(mask)
        cv2.imwrite(os.path.join(root, "img", f"{i}.png"), image)
        stored = mask if mask_resize is None or i != mask_resize else mask[:-1]
        cv2.imwrite(os.path.join(root, "seg", f"{i}.png"), stored)
        img_items.append((i, f"img/{i}.png", float(i % 3)))
        if i not in skip_mask:
            seg_items.append((i, f"seg/{i}.png", 0.0))
    if mask_order is not None:
        seg_items = [seg_items[k] for k in mask_order]
    write_list(os.path.join(root, "img.lst"), img_items)
    write_list(os.path.join(root, "seg.lst"), seg_items)
    opts = PackOptions(color=-1, encoding=".png", progress=False)
    pack_list(os.path.join(root, "img.lst"), root, os.path.join(root, "img"), opts)
    pack_list(os.path.join(root, "seg.lst"), root, os.path.join(root, "seg"), opts)
    files = dict(path_imgrec=os.path.join(root, "img.rec"), path_imgidx=os.path.join(root, "img.idx"),
                 path_maskrec=os.path.join(root, "seg.rec"), path_maskidx=os.path.join(root, "seg.idx"))
    return files, images, masks


def run(files: dict, path: str, epochs: int = 1, **kw) -> list[tuple]:
    args = dict(files, data_shape=(1, 32, 32), batch_size=3, device="cpu" if path == "cpu" else "gpu",
                preprocess_threads=2)
    if path == "host":
        args["_gpu_backend"] = "host"
    elif path == "cupy":
        args["_gpu_backend"] = "cupy"
        pytest.importorskip("cupy")
    args.update(kw)
    out = []
    with ImageRecordIter(**args) as it:
        for epoch in range(epochs):
            if epoch:
                it.reset()
            for b in it:
                out.append((b.data[0].asnumpy(), b.label[0].asnumpy(), b.label[1].asnumpy(), b.pad,
                            np.asarray(b.index).astype(int)))
    return out


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    # masks listed in another order than the images: pairing is by record id, not by position
    return pack_dataset(tmp_path_factory.mktemp("pairs"), mask_order=[3, 0, 6, 1, 5, 2, 4])


AUGMENTATIONS = {
    "rotate_shear_crop_mirror": dict(max_rotate_angle=35, max_shear_ratio=0.2, rand_crop=True, rand_mirror=True),
    "random_resized_crop": dict(random_resized_crop=True, min_random_area=0.35, max_aspect_ratio=0.25,
                                rand_mirror=True),
    "pad_crop_mirror": dict(pad=6, rand_crop=True, mirror=True),
    "resize_scale_aspect": dict(resize=40, max_random_scale=1.2, min_random_scale=0.9, max_aspect_ratio=0.2,
                                rand_crop=True),
}


def uniform_neighbourhood(mask: np.ndarray, radius: int = 2) -> np.ndarray:
    """Pixels whose whole neighbourhood has one label, away from the output's border (where the image's
    interpolation reaches source pixels that no mask pixel samples)."""
    k = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    out = cv2.erode(mask, k, borderType=cv2.BORDER_REPLICATE) == cv2.dilate(mask, k, borderType=cv2.BORDER_REPLICATE)
    out[:radius], out[-radius:], out[:, :radius], out[:, -radius:] = False, False, False, False
    return out


# --- alignment --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("aug", list(AUGMENTATIONS))
def test_masks_stay_aligned_with_their_images(packed, path, aug):
    files, _, _ = packed
    batches = run(files, path, epochs=2, shuffle=True, seed=3, fill_value=0, **AUGMENTATIONS[aug])
    inside = checked = 0
    labels_seen = set()
    for data, masks, _, pad, _ in batches:
        assert masks.dtype == np.uint8 and masks.shape == (3, 1, 32, 32)
        for k in range(len(data) - pad):
            m = masks[k, 0]
            interior = uniform_neighbourhood(m)
            got = threshold(data[k, 0])
            assert np.array_equal(got[interior], m[interior]), f"misaligned mask in a {aug} batch"
            inside += int(interior.sum())
            checked += m.size
            labels_seen |= set(np.unique(m[interior]).tolist())
    assert inside > 0.4 * checked and labels_seen == {0, 1, 2}  # the check covered every label widely


@pytest.mark.parametrize("path", PATHS)
def test_masks_without_augmentation_are_the_stored_labels(packed, path):
    files, images, masks = packed
    for data, got, labels, pad, index in run(files, path, data_shape=(1, 40, 40)):
        for k in range(len(index) - pad):
            i = index[k]
            h, w = masks[i].shape
            y, x = (h - 40) // 2, (w - 40) // 2
            assert np.array_equal(got[k, 0], masks[i][y:y + 40, x:x + 40])
            assert np.array_equal(data[k, 0], images[i][y:y + 40, x:x + 40].astype(np.float32))
            assert labels[k] == float(i % 3)


@pytest.mark.skipif(find_compiler() is None, reason="no C++ compiler for the host build")
@pytest.mark.parametrize("aug", list(AUGMENTATIONS))
def test_host_kernels_give_the_cpu_masks(packed, aug):
    files, _, _ = packed
    kw = dict(AUGMENTATIONS[aug], shuffle=True, seed=5, inter_method=2 if "max_rotate_angle" in AUGMENTATIONS[aug]
              else 1)
    cpu, gpu = run(files, "cpu", epochs=2, **kw), run(files, "host", epochs=2, **kw)
    assert len(cpu) == len(gpu)
    for (d0, m0, l0, p0, i0), (d1, m1, l1, p1, i1) in zip(cpu, gpu):
        assert np.array_equal(m0, m1) and m1.dtype == m0.dtype  # nearest replay: identical masks
        assert np.array_equal(l0, l1) and p0 == p1 and np.array_equal(i0, i1)
        assert np.max(np.abs(d0 - d1)) <= 1.0  # images: the contract's one stored unit


# --- batch layout ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
def test_batch_layout_and_provide_label(packed, path):
    files, _, _ = packed
    args = dict(files, data_shape=(1, 32, 32), batch_size=4, device="cpu" if path == "cpu" else "gpu",
                mask_name="seg", round_batch=False)
    if path != "cpu":
        args["_gpu_backend"] = path
        if path == "cupy":
            pytest.importorskip("cupy")
    with ImageRecordIter(**args) as it:
        desc = it.provide_label
        assert [d.name for d in desc] == ["seg", "softmax_label"]
        assert desc[0].shape == (4, 1, 32, 32) and desc[0].dtype == np.uint8 and desc[0].layout == "NCHW"
        assert desc[1].shape == (4,) and desc[1].dtype == np.float32
        batches = list(it)
    last = batches[-1]
    assert last.pad == 1 and len(last.label) == 2
    assert np.all(last.label[0].asnumpy()[3] == 0)  # the filler slot is zero, like the data
    assert last.label[1].shape == (4,) and last.label[1].dtype == np.float32


def test_frames_pair_by_id_and_id2(tmp_path):
    """Frames of one multi-frame file share ``id`` and differ in ``id2``: masks pair with both."""
    rng = np.random.default_rng(4)
    keys = [(0, 0), (0, 1), (0, 2), (1, 0)]
    pairs = [make_pair(k, rng) for k in range(len(keys))]
    files = {}
    for name, order, item in (("img", keys, 0), ("seg", keys[::-1], 1)):
        rec, idx = str(tmp_path / f"{name}.rec"), str(tmp_path / f"{name}.idx")
        w = recordio.MXIndexedRecordIO(idx, rec, "w")
        for n, key in enumerate(order):
            payload = codecs.encode(pairs[keys.index(key)][item], ".png")
            w.write_idx(n, recordio.pack(recordio.IRHeader(0, 0.0, key[0], key[1]), payload))
        w.close()
        prefix = "img" if name == "img" else "mask"
        files[f"path_{prefix}rec"], files[f"path_{prefix}idx"] = rec, idx
    out = run(files, "cpu", data_shape=(1, 40, 40), batch_size=4)
    data, masks = out[0][0], out[0][1]
    for k in range(4):
        assert np.array_equal(threshold(data[k, 0]), masks[k, 0])
        assert len(np.unique(masks[k, 0])) > 1


def test_without_masks_the_label_list_is_unchanged(packed):
    files, _, _ = packed
    plain = {k: v for k, v in files.items() if not k.startswith("path_mask")}
    with ImageRecordIter(**plain, data_shape=(1, 32, 32), batch_size=3, device="cpu") as it:
        assert len(it.provide_label) == 1
        assert len(next(it).label) == 1


@pytest.mark.parametrize("path", PATHS)
def test_16_bit_label_values(tmp_path, path):
    files, _, masks = pack_dataset(tmp_path, n=3, mask_dtype=np.uint16)
    out = run(files, path, rand_mirror=True, max_rotate_angle=20)
    assert out[0][1].dtype == np.uint16
    assert set(np.unique(np.concatenate([m.ravel() for _, m, _, _, _ in out]))) <= {0, 1, 2}
    with ImageRecordIter(**files, data_shape=(1, 32, 32), batch_size=3, device="cpu") as it:
        assert it.provide_label[0].dtype == np.uint16


def test_intensity_options_leave_masks_alone(packed):
    files, _, _ = packed
    plain = run(files, "cpu", rand_crop=True, rand_mirror=True)
    windowed = run(files, "cpu", rand_crop=True, rand_mirror=True, window=(20000, 40000), mean_r=0.5)
    for a, b in zip(plain, windowed):
        assert np.array_equal(a[1], b[1]) and b[1].dtype == np.uint8
        assert not np.array_equal(a[0], b[0])


def test_mask_keywords_are_known(packed):
    files, _, _ = packed
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownArgumentWarning)
        run(files, "cpu", mask_name="masks")


# --- errors ----------------------------------------------------------------------------------------------
def test_a_missing_mask_is_an_error_naming_the_record_id(tmp_path):
    files, _, _ = pack_dataset(tmp_path, n=5, skip_mask=(3,))
    with pytest.raises(MissingMaskError, match=r"no mask for record id 3 in .*seg\.rec") as e:
        run(files, "cpu")
    assert e.value.image_id == 3


@pytest.mark.parametrize("path", PATHS)
def test_a_mask_of_the_wrong_size_is_a_located_error_or_skipped(tmp_path, path):
    files, _, _ = pack_dataset(tmp_path, n=5, mask_resize=2)
    with pytest.raises(RecordIOError, match=r"seg\.rec.*mask is \d+x\d+, its image is") as e:
        run(files, path)
    assert e.value.key == 2  # the mask's .idx key, which im2rec sets to the shared index
    with pytest.warns(RuntimeWarning, match="mask is"):
        out = run(files, path, on_error="skip", round_batch=False)
    assert sorted(int(i) for _, _, _, pad, idx in out for i in idx[:len(idx) - pad]) == [0, 1, 3, 4]


def test_duplicate_mask_ids_are_refused(tmp_path):
    files, _, masks = pack_dataset(tmp_path, n=3)
    rec, idx = str(tmp_path / "dup.rec"), str(tmp_path / "dup.idx")
    w = recordio.MXIndexedRecordIO(idx, rec, "w")
    for key, i in enumerate([0, 1, 1, 2]):
        w.write_idx(key, recordio.pack(recordio.IRHeader(0, 0.0, i, 0), codecs.encode(masks[i], ".png")))
    w.close()
    with pytest.raises(RecordIOError, match="two masks have record id 1"):
        run(dict(files, path_maskrec=rec, path_maskidx=idx), "cpu")


def test_masks_must_be_label_maps(tmp_path):
    files, images, masks = pack_dataset(tmp_path, n=2)
    rec = str(tmp_path / "colour.rec")
    w = recordio.MXRecordIO(rec, "w")
    for i in range(2):
        m = np.dstack([masks[i], masks[i], masks[i] * 2])
        w.write(recordio.pack(recordio.IRHeader(0, 0.0, i, 0), codecs.encode(m, ".png")))
    w.close()
    with pytest.raises(RecordIOError, match="3 different channels"):
        run(dict(files, path_maskrec=rec, path_maskidx=None), "cpu")
    float_rec = str(tmp_path / "float.rec")
    w = recordio.MXRecordIO(float_rec, "w")
    w.write(recordio.pack(recordio.IRHeader(0, 0.0, 0, 0), codecs.encode(masks[0].astype(np.float32), ".npy")))
    w.close()
    with pytest.raises(RecordIOError, match="mask dtype float32"):
        run(dict(files, path_maskrec=float_rec, path_maskidx=None), "cpu")


def test_a_wider_mask_than_the_first_is_refused(tmp_path):
    files, _, masks = pack_dataset(tmp_path, n=2)
    rec = str(tmp_path / "mixed.rec")
    w = recordio.MXRecordIO(rec, "w")
    w.write(recordio.pack(recordio.IRHeader(0, 0.0, 0, 0), codecs.encode(masks[0], ".png")))
    w.write(recordio.pack(recordio.IRHeader(0, 0.0, 1, 0), codecs.encode(masks[1].astype(np.uint16) * 300, ".png")))
    w.close()
    with pytest.raises(RecordIOError, match="mask is uint16, but the batch's masks are uint8"):
        run(dict(files, path_maskrec=rec, path_maskidx=None), "cpu")


@pytest.mark.parametrize("kw, message", [
    (dict(path_maskrec="", path_maskidx="x.idx"), "path_maskidx is set but path_maskrec is not"),
    (dict(mask_name="softmax_label"), "mask_name='softmax_label' must differ"),
])
def test_bad_mask_options(packed, kw, message):
    files, _, _ = packed
    with pytest.raises(ValueError, match=message):
        run(dict(files, **kw), "cpu")
