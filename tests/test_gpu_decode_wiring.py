"""GPU decode wiring (recordgpu.gpu.decode / dali_decode), tested on CPU backends.

The reference everywhere is recordgpu.codecs.decode_image (OpenCV at full depth): nvImageCodec's CPU backend
and DALI's CPU pipeline must give the same arrays (bit for bit; JPEG within the contract's +-1). Lossless,
12-bit and JPEG 2000 test files are made here with imagecodecs. nvImageCodec, DALI and imagecodecs are
optional: their tests skip when the package is missing.
"""
from __future__ import annotations

import importlib.util
import struct
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from recordgpu import codecs
from recordgpu.errors import DecodeError
from recordgpu.gpu import decode as gd

HAVE_IC = importlib.util.find_spec("imagecodecs") is not None
HAVE_NV = (importlib.util.find_spec("nvidia") is not None
           and importlib.util.find_spec("nvidia.nvimgcodec") is not None)
HAVE_DALI = HAVE_NV and importlib.util.find_spec("nvidia.dali") is not None
needs_ic = pytest.mark.skipif(not HAVE_IC, reason="imagecodecs not installed (extra 'codecs')")
needs_nv = pytest.mark.skipif(not (HAVE_NV and HAVE_IC), reason="nvImageCodec or imagecodecs not installed")
needs_dali = pytest.mark.skipif(not (HAVE_DALI and HAVE_IC), reason="DALI or imagecodecs not installed")

H, W = 37, 53  # odd sizes: no stride or subsampling alignment luck


def _exif_jpeg(jpg: bytes, orientation: int) -> bytes:
    """``jpg`` with an APP1 Exif segment holding only the orientation tag, right after SOI."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    seg = b"Exif\0\0" + b"II*\0" + struct.pack("<I", 8) + ifd
    return jpg[:2] + b"\xff\xe1" + struct.pack(">H", len(seg) + 2) + seg + jpg[2:]


def _cv(ext: str, img: np.ndarray, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def src():
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:H, 0:W]
    g16 = (xx * 1200 + yy * 37 + rng.integers(0, 200, (H, W))).astype(np.uint16)
    bgr16 = np.stack([g16, 65535 - g16, rng.integers(0, 65536, (H, W))], -1).astype(np.uint16)
    bgra16 = np.concatenate([bgr16, (g16 // 3)[..., None]], -1)
    return {"g16": g16, "bgr16": bgr16, "bgra16": bgra16, "g12": g16 >> 4,
            "g8": (g16 >> 8).astype(np.uint8), "bgr8": (bgr16 >> 8).astype(np.uint8),
            "bgra8": (bgra16 >> 8).astype(np.uint8),
            "smooth8": cv2.GaussianBlur(rng.integers(0, 256, (H, W, 3)).astype(np.uint8), (5, 5), 0)}


@pytest.fixture(scope="module")
def files(src):
    """Encoded test payloads by name. OpenCV writes BGR(A); imagecodecs is given RGB(A)."""
    f = {
        "png8_gray": _cv(".png", src["g8"]), "png8_rgb": _cv(".png", src["bgr8"]),
        "png8_rgba": _cv(".png", src["bgra8"]), "png16_gray": _cv(".png", src["g16"]),
        "png16_rgb": _cv(".png", src["bgr16"]), "png16_rgba": _cv(".png", src["bgra16"]),
        "tiff16_gray": _cv(".tiff", src["g16"]), "tiff16_rgb": _cv(".tiff", src["bgr16"]),
        "tiff16_rgba": _cv(".tiff", src["bgra16"]),
        "jpeg8_rgb": _cv(".jpg", src["smooth8"], cv2.IMWRITE_JPEG_QUALITY, 90),
        "jpeg8_gray": _cv(".jpg", src["g8"], cv2.IMWRITE_JPEG_QUALITY, 90),
        "jpeg8_prog": _cv(".jpg", src["smooth8"], cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
        "npy16": codecs.encode(src["bgr16"], ".npy"),
    }
    if HAVE_IC:
        import imagecodecs as ic
        f.update({
            "jp2_16_gray": ic.jpeg2k_encode(src["g16"], level=0, codecformat="jp2"),
            "jp2_16_rgb": ic.jpeg2k_encode(src["bgr16"][..., ::-1], level=0, codecformat="jp2"),
            "jp2_16_rgba": ic.jpeg2k_encode(src["bgra16"][..., [2, 1, 0, 3]], level=0, codecformat="jp2"),
            "jp2_12_gray": ic.jpeg2k_encode(src["g12"], level=0, bitspersample=12, codecformat="jp2"),
            "j2k_12_gray": ic.jpeg2k_encode(src["g12"], level=0, bitspersample=12, codecformat="j2k"),
            # lossless JPEG (SOF3); libjpeg-turbo writes the Huffman table after the frame header,
            # liblj92 (ljpeg_encode) before it: the second nvJPEG zero-fill class
            "ljpeg16": ic.jpeg8_encode(src["g16"], lossless=True, predictor=1, bitspersample=16),
            "ljpeg12": ic.jpeg8_encode(src["g12"], lossless=True, predictor=1, bitspersample=12),
            "ljpeg16_dht_first": ic.ljpeg_encode(src["g16"], bitspersample=16),
            "ljpeg12_dht_first": ic.ljpeg_encode(src["g12"], bitspersample=12),
            "jpeg12": ic.jpeg8_encode(src["g12"], level=95, bitspersample=12),  # SOF1, 12-bit lossy
        })
        if hasattr(ic, "htj2k_encode"):  # imagecodecs builds with OpenJPH
            f["htj2k_16_gray"] = ic.htj2k_encode(src["g16"], level=0)
    return f


@pytest.fixture(scope="module")
def nvdec():
    if not (HAVE_NV and HAVE_IC):
        pytest.skip("nvImageCodec or imagecodecs not installed")
    return gd.NvImageCodecDecoder(cpu_only=True, routing=False)


def _one(decoder, buf: bytes, channels: int) -> gd.DecodedImage:
    return decoder.decode_batch([memoryview(buf)], channels)[0]


# -- import hygiene -------------------------------------------------------------------------------------
def test_imports_nothing_heavy_and_works_without_optional_packages():
    code = textwrap.dedent("""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('nvidia', 'imagecodecs', 'cupy'):
                    raise ImportError(f'blocked {name}')
        sys.meta_path.insert(0, Block())
        import cv2, numpy as np
        import recordgpu.gpu, recordgpu.gpu.decode as gd, recordgpu.gpu.dali_decode
        from recordgpu.errors import DecodeError
        png = cv2.imencode('.png', np.arange(12, dtype=np.uint16).reshape(3, 4))[1].tobytes()
        jpg = cv2.imencode('.jpg', np.zeros((8, 8), np.uint8))[1].tobytes()
        assert gd.route(jpg) == 'gpu' and gd.route(png) == 'cpu'
        assert isinstance(gd.create_decoder('auto'), gd.CPUDecoder)
        r = gd.CPUDecoder().decode_batch([memoryview(png)], 1)[0]
        assert r.ok and r.to_host()[2, 3, 0] == 11
        for make in (gd.NvImageCodecDecoder, recordgpu.gpu.dali_decode.DaliDecoder):
            try:
                make()
            except ImportError as e:
                assert 'pip install' in str(e), e
            else:
                raise AssertionError('constructed without the package')
        # a 12-bit lossless JPEG (SOF3, P=12, 1x1 gray) needs imagecodecs: the error says so
        sof3 = bytes.fromhex('ffd8ffc3000b0c00010001011100ffd9')
        err = gd.CPUDecoder().decode_batch([sof3], 1)[0].error
        assert isinstance(err, DecodeError) and 'imagecodecs' in str(err), err
        assert not [m for m in sys.modules if m.split('.')[0] in ('nvidia', 'imagecodecs', 'cupy')]
        print('OK')
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip().endswith("OK"), res.stderr[-3000:]


def test_importing_decode_does_not_load_gpu_packages():
    code = ("import sys, recordgpu.gpu.decode, recordgpu.gpu.dali_decode; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('nvidia', 'cupy', 'imagecodecs')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "[]"


# -- headers and routing --------------------------------------------------------------------------------
@needs_ic
def test_jpeg_frame_reads_marker_precision_components_and_dht_order(files):
    cases = {"jpeg8_rgb": (0xC0, 8, 3, False), "jpeg8_gray": (0xC0, 8, 1, False),
             "jpeg8_prog": (0xC2, 8, 3, False), "jpeg12": (0xC1, 12, 1, False),
             "ljpeg16": (0xC3, 16, 1, False), "ljpeg12": (0xC3, 12, 1, False),
             "ljpeg16_dht_first": (0xC3, 16, 1, True), "ljpeg12_dht_first": (0xC3, 12, 1, True)}
    for name, (marker, precision, comps, dht_first) in cases.items():
        fr = gd.jpeg_frame(files[name])
        got = (fr.marker, fr.precision, fr.components, fr.dht_before_sof)
        assert got == (marker, precision, comps, dht_first), name
        assert (fr.height, fr.width) == (H, W) and fr.lossless == (marker == 0xC3) and fr.orientation is None
    assert gd.jpeg_frame(_exif_jpeg(files["jpeg8_rgb"], 6)).orientation == 6
    for bad in (b"", b"\xff\xd8", files["png8_gray"], files["jpeg8_rgb"][:12], b"\xff\xd8\xff\xda\x00\x02"):
        assert gd.jpeg_frame(bad) is None


@needs_ic
def test_route_sends_each_format_where_it_decodes_correctly(files):
    old = (12, 4, 0)  # nvJPEG of the CUDA 12 wheels: zero-fills 9-15-bit and DHT-first lossless JPEG
    expect = {"jpeg8_rgb": ("gpu", "jpeg"), "jpeg8_gray": ("gpu", "jpeg"), "jpeg8_prog": ("gpu", "jpeg"),
              "jp2_16_gray": ("gpu", "jpeg2000"), "j2k_12_gray": ("gpu", "jpeg2000"),
              "htj2k_16_gray": ("gpu", "jpeg2000"), "ljpeg16": ("gpu", "lossless-jpeg"),
              "ljpeg12": ("cpu", gd.UNSAFE_LOSSLESS), "ljpeg12_dht_first": ("cpu", gd.UNSAFE_LOSSLESS),
              "ljpeg16_dht_first": ("cpu", gd.UNSAFE_LOSSLESS), "jpeg12": ("cpu", "jpeg-12bit"),
              "png16_gray": ("cpu", "png"), "tiff16_gray": ("cpu", "tiff"), "npy16": ("cpu", "npy")}
    for name, want in expect.items():
        if name not in files:
            continue
        assert gd.route_reason(files[name], nvjpeg_version=old) == want, name
        assert gd.route(memoryview(files[name]), nvjpeg_version=old) == want[0], name
    for lossless in ("ljpeg12", "ljpeg12_dht_first", "ljpeg16_dht_first"):
        assert gd.route(files[lossless], nvjpeg_version=(13, 0, 2)) == "gpu"
        assert gd.route(files[lossless], nvjpeg_version=(13, 0, 1)) == "cpu"
        assert gd.route(files[lossless], nvjpeg_version=None) == "cpu"  # unknown version: assume the bug
    assert gd.route(b"\xff\xd8\xff\xe0 not a jpeg") == "cpu"
    assert gd.route(b"") == "cpu"
    assert gd.route_reason(_cv(".bmp", np.zeros((4, 4, 3), np.uint8))) == ("cpu", "bmp")
    # the default uses the nvJPEG this process would use
    assert gd.route(files["ljpeg12"]) == gd.route(files["ljpeg12"], nvjpeg_version=gd.nvjpeg_version())


def test_lossless_safety_rule_covers_exactly_the_known_bug():
    def frame(p, dht_first=False):
        return gd.JpegFrame(0xC3, p, 8, 8, 1, dht_first, None)
    for version in ((12, 4, 0), (12, 9, 9), (13, 0, 1), None):
        assert [p for p in range(2, 17) if not gd.lossless_jpeg_gpu_safe(frame(p), version)] == list(range(9, 16))
        assert not gd.lossless_jpeg_gpu_safe(frame(16, dht_first=True), version)
    for version in ((13, 0, 2), (13, 1, 0), (14, 0, 0)):
        assert all(gd.lossless_jpeg_gpu_safe(frame(p, d), version) for p in range(2, 17) for d in (False, True))


@pytest.mark.skipif(not HAVE_NV, reason="nvImageCodec not installed")
def test_nvjpeg_version_is_that_of_the_loaded_library():
    import importlib.metadata
    import nvidia.nvimgcodec  # noqa: F401  (loads its nvJPEG)
    loaded = [p for p in gd._nvjpeg_candidates() if "/" in p]
    if not loaded or "nvidia/nvjpeg" not in loaded[0]:
        pytest.skip("nvJPEG does not come from the nvidia-nvjpeg wheel here")
    wheel = next(d.metadata["Name"] for d in importlib.metadata.distributions()
                 if (d.metadata["Name"] or "").startswith("nvidia-nvjpeg-cu"))
    want = tuple(int(x) for x in importlib.metadata.version(wheel).split(".")[:3])
    assert gd.nvjpeg_version() == want


def test_exif_orientation_matches_opencv(src):
    jpg = _cv(".jpg", src["smooth8"][:, :40])  # not square, so transposes show
    plain = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
    for o in range(1, 9):
        ref = cv2.imdecode(np.frombuffer(_exif_jpeg(jpg, o), np.uint8), cv2.IMREAD_COLOR)
        assert np.array_equal(gd.apply_exif_orientation(plain, o), ref), o


# -- the CPU decoder ------------------------------------------------------------------------------------
@needs_ic
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_cpu_decoder_equals_decode_image_where_opencv_decodes(files, channels):
    dec = gd.CPUDecoder()
    names = [n for n in files if not n.startswith(("ljpeg", "jpeg12"))]
    results = dec.decode_batch([memoryview(files[n]) for n in names], channels)
    for name, res in zip(names, results):
        try:
            ref = codecs.decode_image(files[name], channels)
        except DecodeError as e:
            if "Expected 4 channels" in str(e):
                assert str(res.error) == str(e), name
            continue  # OpenCV cannot read it: imagecodecs' result is checked in the next tests
        assert res.ok and res.backend == "cpu" and not res.on_device, name
        assert res.to_host().dtype == ref.dtype and np.array_equal(res.to_host(), ref), name
        assert res.shape == ref.shape and (res.height, res.width) == ref.shape[:2] and res.dtype == ref.dtype


@needs_ic
@pytest.mark.parametrize("name,key", [("ljpeg16", "g16"), ("ljpeg12", "g12"), ("ljpeg16_dht_first", "g16"),
                                      ("ljpeg12_dht_first", "g12")])
def test_cpu_decoder_lossless_jpeg_is_exact(files, src, name, key):
    assert np.array_equal(codecs.decode(files[name]), src[key])  # codecs reads it through imagecodecs
    dec = gd.CPUDecoder()
    for channels in (1, 3):
        img = _one(dec, files[name], channels).to_host()
        assert img.dtype == np.uint16 and img.shape == (H, W, channels)
        assert all(np.array_equal(img[:, :, c], src[key]) for c in range(channels))
    assert "Expected 4 channels, got 1" in str(_one(dec, files[name], 4).error)


@needs_ic
def test_cpu_decoder_12bit_lossy_jpeg_keeps_12bit_values_and_exif(files, src):
    import imagecodecs as ic
    dec = gd.CPUDecoder()
    img = _one(dec, files["jpeg12"], 1).to_host()
    assert img.dtype == np.uint16 and img.max() <= 4095
    assert np.array_equal(img[:, :, 0], ic.jpeg8_decode(files["jpeg12"]))  # raw 12-bit values, not rescaled
    assert np.abs(img[:, :, 0].astype(int) - src["g12"]).max() < 64  # and it is the picture (lossy)
    rotated = _one(dec, _exif_jpeg(files["jpeg12"], 6), 3).to_host()
    assert np.array_equal(rotated, gd.apply_exif_orientation(np.repeat(img, 3, axis=2), 6))
    assert rotated.shape == (W, H, 3)


@needs_ic
def test_cpu_decoder_reads_gray_codestreams_opencv_refuses_as_bgr(files, src):
    # OpenCV cannot turn a 1-component raw J2K codestream into 3 channels; imagecodecs + repeat can,
    # and recordgpu.codecs (the CPU iterator's decoder) agrees with the CPU decoder
    via_codecs = codecs.decode_image(files["j2k_12_gray"], 3)
    assert all(np.array_equal(via_codecs[:, :, c], src["g12"]) for c in range(3))
    img = _one(gd.CPUDecoder(), files["j2k_12_gray"], 3).to_host()
    assert img.dtype == np.uint16 and all(np.array_equal(img[:, :, c], src["g12"]) for c in range(3))


def test_cpu_decoder_errors_are_per_record_and_counted(src):
    png = _cv(".png", src["g16"])
    dec = gd.CPUDecoder()
    res = dec.decode_batch([memoryview(png), memoryview(b"\x89PNG\r\n\x1a\n garbage"), memoryview(png)], 1)
    assert res[0].ok and res[2].ok and isinstance(res[1].error, DecodeError)
    assert res[1].image is None and not res[1].on_device
    with pytest.raises(DecodeError):
        res[1].to_host()
    assert dec.stats.as_dict() == {"decoded": {"cpu": 2}, "routed": {}, "fallbacks": {}, "errors": 1}
    with pytest.raises(ValueError, match="channels"):
        dec.decode_batch([png], 2)


@needs_ic
def test_cpu_decoder_threads_and_record_slices(files):
    names = sorted(files)
    blob = bytearray()
    spans = []
    for n in names:  # payloads inside one buffer at unaligned offsets, as records in a mmap'd .rec
        blob += b"\x00" * 3
        spans.append((len(blob), len(blob) + len(files[n])))
        blob += files[n]
    mv = memoryview(bytes(blob))
    views = [mv[a:b] for a, b in spans]
    serial = gd.CPUDecoder().decode_batch([files[n] for n in names], 3)
    with ThreadPoolExecutor(2) as pool:
        threaded = gd.CPUDecoder(pool).decode_batch(views, 3)
    for n, a, b in zip(names, serial, threaded):
        assert a.ok == b.ok, n
        assert (not a.ok and str(a.error) == str(b.error)) or np.array_equal(a.to_host(), b.to_host()), n


def test_decoders_follow_the_protocol():
    assert isinstance(gd.CPUDecoder(), gd.Decoder)
    assert isinstance(gd.create_decoder("cpu"), gd.CPUDecoder)
    with pytest.raises(ValueError, match="unknown decoder backend"):
        gd.create_decoder("opencl")


# -- nvImageCodec (CPU backend: bit-exact with decode_image) ---------------------------------------------
EXACT = [("png8_gray", 1), ("png8_gray", 3), ("png8_rgb", 3), ("png8_rgba", 3), ("png8_rgba", 4),
         ("png16_gray", 1), ("png16_gray", 3), ("png16_rgb", 3), ("png16_rgba", 3), ("png16_rgba", 4),
         ("tiff16_gray", 1), ("tiff16_gray", 3), ("tiff16_rgb", 3), ("tiff16_rgba", 4),
         ("jp2_16_gray", 1), ("jp2_16_gray", 3), ("jp2_16_rgb", 3), ("jp2_16_rgba", 3), ("jp2_16_rgba", 4),
         ("jp2_12_gray", 1), ("jp2_12_gray", 3), ("j2k_12_gray", 1), ("htj2k_16_gray", 1)]


@needs_nv
@pytest.mark.parametrize("name,channels", EXACT)
def test_nvimgcodec_cpu_backend_is_bit_exact_with_decode_image(nvdec, files, name, channels):
    if name not in files:
        pytest.skip(f"this imagecodecs cannot write {name}")
    ref = codecs.decode_image(files[name], channels)
    before = nvdec.stats.as_dict()
    res = _one(nvdec, files[name], channels)
    after = nvdec.stats.as_dict()
    # decoded by nvImageCodec itself, not by the CPU fallback
    assert after["decoded"].get("nvimgcodec", 0) == before["decoded"].get("nvimgcodec", 0) + 1
    assert after["fallbacks"] == before["fallbacks"] and after["routed"] == before["routed"]
    img = res.to_host()
    assert res.backend == "nvimgcodec" and img.flags.c_contiguous
    assert img.dtype == ref.dtype and img.shape == ref.shape and np.array_equal(img, ref)


@needs_nv
@pytest.mark.parametrize("name", ["jp2_12_gray", "j2k_12_gray"])
def test_nvimgcodec_keeps_12bit_jpeg2000_values_as_stored(nvdec, files, src, name):
    img = _one(nvdec, files[name], 1).to_host()  # DALI's GPU decoder would multiply by 65535/4095
    assert img.dtype == np.uint16 and np.array_equal(img[:, :, 0], src["g12"]) and img.max() <= 4095


@needs_nv
@pytest.mark.parametrize("name", ["jpeg8_rgb", "jpeg8_gray", "jpeg8_prog"])
@pytest.mark.parametrize("channels", [1, 3])
def test_nvimgcodec_jpeg_within_one_of_opencv(nvdec, files, name, channels):
    # both are libjpeg-turbo on the CPU backend: measured identical; the contract allows +-1 between decoders
    ref = codecs.decode_image(files[name], channels)
    img = _one(nvdec, files[name], channels).to_host()
    assert img.shape == ref.shape and img.dtype == np.uint8
    assert np.abs(img.astype(int) - ref).max() <= 1


@needs_nv
@pytest.mark.parametrize("orientation", range(1, 9))
def test_nvimgcodec_applies_exif_orientation_like_opencv(nvdec, files, orientation):
    buf = _exif_jpeg(files["jpeg8_rgb"], orientation)
    for channels in (1, 3):
        ref = codecs.decode_image(buf, channels)
        img = _one(nvdec, buf, channels).to_host()
        assert img.shape == ref.shape and np.abs(img.astype(int) - ref).max() <= 1


@needs_nv
def test_nvimgcodec_sends_colour_to_gray_and_channel_mismatches_to_the_cpu(files):
    dec = gd.NvImageCodecDecoder(cpu_only=True, routing=False)
    # TIFF 16-bit RGB -> gray: nvImageCodec's arithmetic differs from OpenCV's (by 2, measured); CPU decodes it
    res = _one(dec, files["tiff16_rgb"], 1)
    assert np.array_equal(res.to_host(), codecs.decode_image(files["tiff16_rgb"], 1)) and res.backend == "cpu"
    assert dec.stats.routed == {"color-to-gray": 1}
    res = _one(dec, files["png16_rgb"], 4)  # the error decode_image gives, per record
    with pytest.raises(DecodeError) as e:
        codecs.decode_image(files["png16_rgb"], 4)
    assert str(res.error) == str(e.value)
    assert dec.stats.routed == {"color-to-gray": 1, "channels": 1} and dec.stats.errors == 1


@needs_nv
def test_nvimgcodec_refusals_fall_back_per_record_and_are_counted(files, src):
    dec = gd.NvImageCodecDecoder(cpu_only=True, routing=False)
    dec.nvjpeg_version = (13, 0, 2)  # lossless is then safe for nvJPEG; the CPU backend still cannot decode it
    names = ["png16_gray", "ljpeg16", "jpeg12", "jp2_16_gray"]
    bufs = [memoryview(files[n]) for n in names] + [memoryview(b"\xff\xd8\xff\xe0 broken")]
    res = dec.decode_batch(bufs, 1)
    assert [r.backend for r in res] == ["nvimgcodec", "cpu", "cpu", "nvimgcodec", "cpu"]
    assert np.array_equal(res[0].to_host()[:, :, 0], src["g16"])
    assert np.array_equal(res[1].to_host()[:, :, 0], src["g16"])
    assert res[2].to_host().max() <= 4095
    assert np.array_equal(res[3].to_host()[:, :, 0], src["g16"])
    assert isinstance(res[4].error, DecodeError)
    st = dec.stats.as_dict()
    assert st["fallbacks"] == {"refused:jpeg": 2, "unparsed": 1} and st["routed"] == {}
    assert st["decoded"] == {"nvimgcodec": 2, "cpu": 2} and st["errors"] == 1


@needs_nv
def test_nvimgcodec_never_hands_zero_filling_lossless_jpeg_to_nvjpeg(files, src):
    dec = gd.NvImageCodecDecoder(cpu_only=True, routing=False)  # even with routing off
    dec.nvjpeg_version = (12, 4, 0)
    names = ["ljpeg12", "ljpeg12_dht_first", "ljpeg16_dht_first", "ljpeg16"]
    res = dec.decode_batch([files[n] for n in names], 1)
    assert dec.stats.routed == {gd.UNSAFE_LOSSLESS: 3}
    assert dec.stats.fallbacks == {"refused:jpeg": 1}  # ljpeg16 was offered to nvImageCodec
    for n, r in zip(names, res):
        assert np.array_equal(r.to_host()[:, :, 0], src["g12" if "12" in n else "g16"]), n


@needs_nv
def test_nvimgcodec_with_routing_decodes_a_mixed_batch_in_order(files):
    dec = gd.NvImageCodecDecoder(cpu_only=True)
    dec.nvjpeg_version = (12, 4, 0)
    names = sorted(files)
    res = dec.decode_batch([memoryview(files[n]) for n in names], 3)
    cpu = gd.CPUDecoder().decode_batch([files[n] for n in names], 3)
    for n, r, c in zip(names, res, cpu):
        assert r.ok and c.ok, n
        tol = 1 if n.startswith("jpeg8") else 0
        assert r.shape == c.shape and np.abs(r.to_host().astype(int) - c.to_host()).max() <= tol, n
        where = gd.route(files[n], nvjpeg_version=(12, 4, 0))
        assert r.backend == ("nvimgcodec" if where == "gpu" and n != "ljpeg16" else "cpu"), n
    st = dec.stats.as_dict()
    assert st["routed"]["png"] == 6 and st["routed"]["tiff"] == 3 and st["routed"]["npy"] == 1
    assert st["routed"][gd.UNSAFE_LOSSLESS] == 3 and st["routed"]["jpeg-12bit"] == 1
    assert st["fallbacks"] == {"refused:jpeg": 1}  # ljpeg16: safe for nvJPEG, but not on the CPU backend


@needs_nv
def test_nvimgcodec_gpu_needs_a_driver():
    try:
        gd.NvImageCodecDecoder(0)
    except gd.DecoderUnavailable as e:
        assert "cpu_only=True" in str(e)
        assert isinstance(gd.create_decoder("auto"), gd.CPUDecoder)
    else:
        pytest.skip("a CUDA GPU is present")
    dec = gd.create_decoder("nvimgcodec-cpu")
    assert isinstance(dec, gd.NvImageCodecDecoder) and dec.cpu_only and isinstance(dec, gd.Decoder)
    with pytest.raises(ValueError, match="channels"):
        dec.decode_batch([b""], 0)


# -- DALI (CPU pipeline) --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dali():
    if not (HAVE_DALI and HAVE_IC):
        pytest.skip("DALI or imagecodecs not installed")
    from recordgpu.gpu.dali_decode import DaliDecoder
    return DaliDecoder(max_batch_size=8)


DALI_EXACT = [("png16_gray", 1), ("png16_gray", 3), ("png16_rgb", 3), ("png16_rgba", 4), ("png8_rgba", 3),
              ("tiff16_gray", 1), ("tiff16_rgb", 3), ("tiff16_rgba", 4), ("jp2_16_gray", 1),
              ("jp2_16_rgb", 3), ("jp2_16_rgba", 4), ("jp2_12_gray", 1), ("j2k_12_gray", 3)]


@needs_dali
def test_dali_cpu_pipeline_is_bit_exact_at_16_bits(dali, files, src):
    for channels in (1, 3, 4):
        names = [n for n, c in DALI_EXACT if c == channels]
        before = dali.stats.decoded["dali"]
        res = dali.decode_batch([memoryview(files[n]) for n in names], channels)
        assert dali.stats.decoded["dali"] == before + len(names)
        for n, r in zip(names, res):
            img = r.to_host()
            if n == "j2k_12_gray":  # OpenCV refuses this one as BGR; it is gray repeated
                ref = np.repeat(src["g12"][:, :, None], 3, axis=2)
            else:
                ref = codecs.decode_image(files[n], channels)
            assert r.backend == "dali" and img.dtype == ref.dtype and np.array_equal(img, ref), n
    assert _one(dali, files["jp2_12_gray"], 1).to_host().max() <= 4095  # CPU backend: no 12-bit rescale


@needs_dali
def test_dali_jpeg_within_one_and_8bit_stays_8bit(dali, files):
    for n, c in [("jpeg8_rgb", 3), ("jpeg8_gray", 1), ("jpeg8_gray", 3), ("jpeg8_prog", 3), ("png8_gray", 3)]:
        ref = codecs.decode_image(files[n], c)
        img = _one(dali, files[n], c).to_host()
        assert img.dtype == np.uint8 and img.shape == ref.shape and np.abs(img.astype(int) - ref).max() <= 1, n


@needs_dali
def test_dali_routes_what_it_cannot_decode_to_the_cpu(files, src):
    from recordgpu.gpu.dali_decode import DaliDecoder
    dec = DaliDecoder()
    names = ["ljpeg12", "jpeg12", "npy16", "jpeg8_rgb", "png16_rgb", "png16_gray"]
    res = dec.decode_batch([files[n] for n in names], 1)
    assert [r.backend for r in res] == ["cpu", "cpu", "cpu", "cpu", "cpu", "dali"]
    assert dec.stats.routed == {"lossless-jpeg": 1, "jpeg-12bit": 1, "npy": 1, "color-to-gray": 2}
    assert np.array_equal(res[0].to_host()[:, :, 0], src["g12"])
    for n, r in zip(names[2:], res[2:]):
        assert np.array_equal(r.to_host(), codecs.decode_image(files[n], 1)), n


@needs_dali
def test_dali_failed_batch_falls_back_and_the_pipeline_recovers(files, src):
    from recordgpu.gpu.dali_decode import DaliDecoder
    png = bytearray(files["png16_gray"])
    idat = png.index(b"IDAT")
    png[idat + 10:idat + 40] = bytes(30)  # header intact, pixel data broken
    broken = bytes(png)
    with pytest.raises(DecodeError):
        codecs.decode_image(broken, 1)
    dec = DaliDecoder(max_batch_size=2)
    res = dec.decode_batch([files["png16_gray"], files["tiff16_gray"], broken, files["jp2_16_gray"]], 1)
    # DALI fails a whole run on one bad sample: that chunk of two is decoded on the CPU
    assert dec.stats.fallbacks == {"dali-batch-failed": 2} and dec.stats.errors == 1
    assert isinstance(res[2].error, DecodeError) and res[3].backend == "cpu" and res[0].backend == "dali"
    for r in (res[0], res[1], res[3]):
        assert np.array_equal(r.to_host()[:, :, 0], src["g16"])
    again = dec.decode_batch([files["png16_gray"]] * 3, 1)  # the pipeline was rebuilt
    assert all(r.backend == "dali" and np.array_equal(r.to_host()[:, :, 0], src["g16"]) for r in again)
    assert isinstance(gd.create_decoder("dali-cpu"), DaliDecoder)


@needs_dali
def test_dali_survives_jpegs_that_change_channel_count():
    # DALI 2.4's CPU decoder with ANY_DATA segfaults when a gray JPEG follows a colour one in one pipeline:
    # run it in a child process so that a regression fails this test instead of killing the test run
    code = textwrap.dedent("""
        import cv2, numpy as np
        from recordgpu import codecs
        from recordgpu.gpu.dali_decode import DaliDecoder
        rng = np.random.default_rng(1)
        rgb = cv2.imencode('.jpg', rng.integers(0, 256, (21, 34, 3)).astype(np.uint8))[1].tobytes()
        gray = cv2.imencode('.jpg', rng.integers(0, 256, (21, 34)).astype(np.uint8))[1].tobytes()
        dec = DaliDecoder()
        for batch in ([rgb], [gray], [rgb, gray, rgb], [gray, rgb]):
            for r, b in zip(dec.decode_batch(batch, 3), batch):
                assert r.backend == 'dali', r
                assert np.abs(r.to_host().astype(int) - codecs.decode_image(b, 3)).max() <= 1
        print('OK')
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip().endswith("OK"), (res.returncode, res.stderr[-3000:])


@needs_nv
def test_device_images_are_finished_with_cupy_or_copied_to_the_host(monkeypatch):
    # No GPU here: a stand-in for a device nvImageCodec Image drives the device branch of the finishing code
    import types as pytypes
    import nvidia.nvimgcodec as nv
    dec = gd.NvImageCodecDecoder(cpu_only=True)
    planar = np.arange(2 * 3, dtype=np.uint16).reshape(1, 2, 3)  # P_Y: (1, H, W)
    rgb = np.arange(2 * 3 * 3, dtype=np.uint16).reshape(2, 3, 3)

    class DeviceImage:
        buffer_kind = nv.ImageBufferKind.STRIDED_DEVICE

        def __init__(self, arr, fmt):
            self.arr, self.sample_format = arr, getattr(nv.SampleFormat, fmt)

        def cpu(self):
            return self.arr

    fake_cupy = pytypes.SimpleNamespace(asarray=lambda img: img.arr, broadcast_to=np.broadcast_to,
                                        ascontiguousarray=np.ascontiguousarray)
    for cupy in (None, fake_cupy):
        monkeypatch.setattr(gd, "_cupy", lambda: cupy)
        gray3 = dec._finish(DeviceImage(planar, "P_Y"), gd._request("jpeg", 1, 3), 3).to_host()
        assert gray3.shape == (2, 3, 3) and all(np.array_equal(gray3[:, :, c], planar[0]) for c in range(3))
        bgr = dec._finish(DeviceImage(rgb, "I_RGB"), gd._request("jpeg2k", 3, 3), 3).to_host()
        assert np.array_equal(bgr, rgb[:, :, ::-1]) and bgr.flags.c_contiguous
        assert dec._finish(DeviceImage(rgb, "P_RGB"), gd._request("jpeg2k", 3, 3), 3) is None
