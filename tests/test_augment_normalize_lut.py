"""The lookup-table fast path of the output stage equals the direct float32 formula bit for bit."""
import zlib

import numpy as np
import pytest

from recordgpu.augment import cpu
from recordgpu.augment.plan import MeanImage, Normalize

F32 = np.float32


def direct(img, st):
    c = len(st.swap)
    out = np.empty((c,) + img.shape[:2], st.out_dtype)
    for k in range(c):
        p = img[:, :, st.swap[k]]
        mean = st.mean_image.data[k] if st.mean_image is not None else F32(st.mean[k])
        if st.out_dtype in ("int8", "int16"):
            info = np.iinfo(st.out_dtype)
            m = np.floor(np.abs(mean) + F32(0.5)) * np.sign(mean)
            out[k] = np.clip(p.astype(np.int64) - m.astype(np.int64), info.min, info.max)
        else:
            v = (p.astype(F32) - F32(mean)) * F32(st.mult[k]) + F32(st.bias[k])
            with np.errstate(over="ignore"):
                out[k] = v.astype(st.out_dtype)
    return out[:, :, ::-1] if st.mirror else out


@pytest.mark.parametrize("src", ["uint8", "uint16"])
@pytest.mark.parametrize("od", ["float32", "float16", "int8", "int16"])
@pytest.mark.parametrize("mirror", [False, True])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_lut_equals_direct(src, od, mirror, channels):
    if src == "uint16" and od == "int8":
        return  # refused earlier by check_output_dtype
    rng = np.random.default_rng(zlib.crc32(repr((src, od, mirror, channels)).encode()))
    hi = np.iinfo(src).max
    img = rng.integers(0, hi, (23, 31, channels), endpoint=True).astype(src)
    img[0, :3] = np.array([0, hi, hi // 2])[:, None]
    swap = {1: (0,), 3: (2, 1, 0), 4: (2, 1, 0, 3)}[channels]
    for trial in range(5):
        mean = tuple(float(F32(x)) for x in rng.uniform(-hi / 4, hi, channels))
        mult = tuple(float(F32(x)) for x in rng.uniform(-3, 3, channels) / (1 if src == "uint8" else 257))
        bias = tuple(float(F32(x)) for x in (rng.uniform(-1, 1, channels) if trial % 2 else (0.0,) * channels))
        st = Normalize(out_dtype=od, swap=swap, mirror=mirror, mean=mean, mult=mult, bias=bias)
        out = np.full((channels, 23, 31), 99, od)
        cpu._write(img, st, out)
        want = direct(img, st)
        assert out.dtype == want.dtype
        assert np.array_equal(out.view(np.uint8), np.ascontiguousarray(want).view(np.uint8))  # bits, incl. -0.0


def test_mean_image_still_uses_the_direct_path():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    mi = MeanImage(np.full((3, 2, 3), 1.5, np.float32))
    st = Normalize(out_dtype="float32", swap=(2, 1, 0), mirror=False, mean=(0.0,) * 3, mult=(2.0,) * 3,
                   bias=(0.0,) * 3, mean_image=mi)
    out = np.empty((3, 2, 3), np.float32)
    cpu._write(img, st, out)
    assert np.array_equal(out, direct(img, st))
