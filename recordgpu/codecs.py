"""Image payload codecs at full bit depth.

Decoding goes through OpenCV (``cv2.imdecode``), which keeps 16-bit PNG/TIFF and alpha when asked, plus
recordgpu's own ``.npy`` payload: the bytes of a standard NumPy ``.npy`` file (format 1.0/2.0, no pickles)
holding an ``(H, W)`` or ``(H, W, C)`` array, C in {1, 3, 4}, channels in OpenCV's BGR(A) order, of any
real numeric dtype (the iterator reads uint8, uint16, int16 and float32). MXNet cannot decode ``.npy``
payloads; everything else stays readable by it.

Encoding refuses to lose data silently: signed, float or 16-bit data asked to go into an 8-bit-only or
unsigned-only format raises and names a lossless format that can hold it.
"""
from __future__ import annotations

import io
import os

import cv2
import numpy as np

from .errors import DecodeError

NPY_MAGIC = b"\x93NUMPY"
IMREAD_UNCHANGED = cv2.IMREAD_UNCHANGED  # -1
IMREAD_GRAYSCALE = cv2.IMREAD_GRAYSCALE  # 0
IMREAD_COLOR = cv2.IMREAD_COLOR  # 1
# data_shape[0] -> cv2 flags that give MXNet's channel conversion but keep the stored depth (spec §3.6).
_FULL_DEPTH_FLAG = {1: cv2.IMREAD_ANYDEPTH | cv2.IMREAD_GRAYSCALE,
                    3: cv2.IMREAD_ANYDEPTH | cv2.IMREAD_COLOR,
                    4: cv2.IMREAD_UNCHANGED}


def sniff(buf: bytes | memoryview | np.ndarray) -> str:
    """Container format from the first bytes: jpeg, png, tiff, npy, jp2, j2k, bmp, webp, pnm or unknown."""
    head = bytes(memoryview(buf)[:12])
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:6] == NPY_MAGIC:
        return "npy"
    if head[:4] == b"\x00\x00\x00\x0c" and head[4:8] == b"jP  ":
        return "jp2"
    if head[:4] == b"\xff\x4f\xff\x51":
        return "j2k"
    if head[:2] == b"BM":
        return "bmp"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:1] == b"P" and head[1:2] in b"123456":
        return "pnm"
    return "unknown"


def _as_u8(buf) -> np.ndarray:
    return buf if isinstance(buf, np.ndarray) else np.frombuffer(buf, dtype=np.uint8)


def load_npy_payload(buf) -> np.ndarray:
    """Array of a ``.npy`` payload (read-only, zero-copy when the payload is a buffer)."""
    raw = _as_u8(buf)
    bio = io.BytesIO(raw[:4096].tobytes())
    try:
        version = np.lib.format.read_magic(bio)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(bio)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(bio)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except ValueError as e:
        raise DecodeError(f"bad .npy payload: {e}") from None
    if dtype.hasobject:
        raise DecodeError(".npy payload holds Python objects; only numeric arrays are allowed")
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, 3, 4)):
        raise DecodeError(f".npy payload must be (H, W) or (H, W, C) with C in 1, 3, 4; got shape {shape}")
    off = bio.tell()
    count = int(np.prod(shape)) if shape else 1
    if len(raw) - off < count * dtype.itemsize:
        raise DecodeError(f".npy payload is truncated: needs {count * dtype.itemsize} data bytes, "
                          f"has {len(raw) - off}")
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=off)
    arr = arr.reshape(shape, order="F" if fortran else "C")
    return arr


def _convert_channels(img: np.ndarray, flag: int) -> np.ndarray:
    """Apply an imdecode-style channel conversion to an already decoded array (used for .npy)."""
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    c = 1 if img.ndim == 2 else img.shape[2]
    anydepth = flag >= 0 and bool(flag & cv2.IMREAD_ANYDEPTH)
    if flag >= 0 and not anydepth and img.dtype != np.uint8:
        raise DecodeError(f"a {img.dtype} .npy payload cannot be decoded to 8 bits; "
                          "use IMREAD_UNCHANGED (-1) or a full-depth flag")
    if flag < 0:
        return img
    want_color = bool(flag & cv2.IMREAD_COLOR)
    if want_color:
        if c == 1:
            return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_GRAY2BGR) if img.dtype != np.int16 \
                else np.repeat(img[:, :, None], 3, axis=2)
        if c == 4:
            return np.ascontiguousarray(img[:, :, :3])
        return img
    if c == 1:
        return img
    if img.dtype == np.int16:
        g = cv2.cvtColor(np.ascontiguousarray(img[:, :, :3]).astype(np.float32), cv2.COLOR_BGR2GRAY)
        return np.clip(np.rint(g), -32768, 32767).astype(np.int16)
    code = cv2.COLOR_BGRA2GRAY if c == 4 else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(np.ascontiguousarray(img), code)


def decode(buf, flag: int = IMREAD_UNCHANGED) -> np.ndarray | None:
    """``cv2.imdecode(buf, flag)`` that also reads ``.npy`` payloads. None when undecodable (as cv2)."""
    raw = _as_u8(buf)
    if raw.size >= 6 and raw[:6].tobytes() == NPY_MAGIC:
        try:
            return _convert_channels(load_npy_payload(raw), flag)
        except DecodeError:
            return None
    if raw.size == 0:
        return None
    return cv2.imdecode(raw, flag)


def decode_image(buf, channels: int) -> np.ndarray:
    """Decode for ``data_shape[0] == channels`` (spec §3.6) at the stored depth; always ``(H, W, C)``.

    C=1: grayscale, C=3: BGR (gray replicated, alpha dropped), C=4: unchanged and must have 4 channels.
    Raises :class:`DecodeError` when the payload is not a decodable image or has the wrong channel count.
    """
    if channels not in _FULL_DEPTH_FLAG:
        raise ValueError(f"channels must be 1, 3 or 4, not {channels}")
    raw = _as_u8(buf)
    if raw.size == 0:
        raise DecodeError("empty image payload")
    if raw.size >= 6 and raw[:6].tobytes() == NPY_MAGIC:
        img = _convert_channels(load_npy_payload(raw), _FULL_DEPTH_FLAG[channels])
    else:
        img = cv2.imdecode(raw, _FULL_DEPTH_FLAG[channels])
        if img is None:
            fmt = sniff(raw)
            raise DecodeError(f"cannot decode image payload ({raw.size} bytes, "
                              f"{'format ' + fmt if fmt != 'unknown' else 'unrecognised format'}, "
                              f"starts {raw[:8].tobytes().hex()})")
    if img.ndim == 2:
        img = img[:, :, None]
    if channels == 4 and img.shape[2] != 4:
        raise DecodeError(f"Expected 4 channels, got {img.shape[2]}")
    if img.shape[2] != channels:
        raise DecodeError(f"decoded {img.shape[2]} channels where {channels} were asked")
    return img


def imread(path: str | os.PathLike, flag: int = IMREAD_COLOR) -> np.ndarray | None:
    """``cv2.imread(path, flag)`` that also reads ``.npy`` files. None when unreadable (as cv2)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if path.lower().endswith(".npy") or data[:6] == NPY_MAGIC:
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError:
            return None
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
            raise DecodeError(f"{path}: a .npy image must be (H, W) or (H, W, C) with C in 1, 3, 4; "
                              f"got shape {arr.shape}")
        return _convert_channels(np.ascontiguousarray(arr), flag)
    return cv2.imdecode(np.frombuffer(data, np.uint8), flag)


_LOSSLESS_FOR = {
    np.dtype(np.uint16): "'.png' or '.tiff' (or '.npy')",
    np.dtype(np.int16): "'.tiff' or '.npy'",
    np.dtype(np.float32): "'.tiff' or '.npy'",
}


def encode(img: np.ndarray, ext: str = ".jpg", quality: int = 95) -> bytes:
    """Encode ``img`` (OpenCV layout) as ``ext``: .jpg/.jpeg, .png, .tif/.tiff, .npy, or any cv2 format.

    Quality is the JPEG quality or the PNG compression level (OpenCV clamps it to 0-9). Raises ValueError
    instead of letting OpenCV convert the data to 8 bits (it would do so silently).
    """
    ext = ext.lower()
    img = np.asarray(img)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3, 4)):
        raise ValueError(f"image must be (H, W) or (H, W, C) with C in 1, 3, 4; got shape {img.shape}")
    if ext == ".npy":
        if img.dtype.kind not in "uif":
            raise ValueError(f".npy payloads hold real numeric images, not {img.dtype}")
        bio = io.BytesIO()
        np.save(bio, np.ascontiguousarray(img), allow_pickle=False)
        return bio.getvalue()
    if ext in (".jpg", ".jpeg"):
        if img.dtype != np.uint8:
            raise ValueError(f"JPEG holds 8-bit data only; OpenCV would silently cut this {img.dtype} image "
                             f"to 8 bits. Use {_LOSSLESS_FOR.get(img.dtype, repr('.npy'))} instead")
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif ext == ".png":
        if img.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"PNG holds unsigned 8/16-bit data only; OpenCV would silently cut this "
                             f"{img.dtype} image to 8 bits. Use {_LOSSLESS_FOR.get(img.dtype, repr('.npy'))}")
        params = [cv2.IMWRITE_PNG_COMPRESSION, min(max(int(quality), 0), 9)]
    elif ext in (".tif", ".tiff"):
        if img.dtype not in (np.uint8, np.uint16, np.int16, np.float32):
            raise ValueError(f"TIFF encoding supports uint8, uint16, int16, float32; not {img.dtype}")
        params = []
    else:
        if img.dtype != np.uint8:
            raise ValueError(f"{ext} is written as 8-bit here; use '.png', '.tiff' or '.npy' for {img.dtype}")
        params = []
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise ValueError(f"failed to encode image as {ext}")
    if ext in (".tif", ".tiff") and img.dtype not in (np.uint8, np.uint16):
        # Some OpenCV builds (e.g. 4.11 with 3-channel float32) write TIFFs that do not read back exactly.
        back = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        if back is None or back.dtype != img.dtype or not np.array_equal(back.reshape(img.shape), img):
            raise ValueError(f"OpenCV {cv2.__version__} cannot store this {img.dtype} image with shape "
                             f"{img.shape} losslessly as TIFF; use '.npy'")
    return buf.tobytes()
