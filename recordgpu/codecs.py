"""Image payload codecs at full bit depth.

Decoding goes through OpenCV (``cv2.imdecode``), which keeps 16-bit PNG/TIFF and alpha when asked, plus
recordgpu's own ``.npy`` payload: the bytes of a standard NumPy ``.npy`` file (format 1.0/2.0, no pickles)
holding an ``(H, W)`` or ``(H, W, C)`` array, C in {1, 3, 4}, channels in OpenCV's BGR(A) order, of any
real numeric dtype (the iterator reads uint8, uint16, int16 and float32). MXNet cannot decode ``.npy``
payloads; everything else stays readable by it.

Lossless codecs that the GPU path decodes at 16 bits (nvJPEG2000 / nvJPEG lossless) are written with
imagecodecs (optional extra ``codecs``): ``.j2k`` is a lossless (reversible 5/3 wavelet) JPEG 2000 codestream
for uint8, uint16 and int16 data; ``.ljpeg`` is lossless JPEG (SOF3, predictor 1, libjpeg-turbo) for uint8 and
uint16. Both hold colour in RGB order, as every JPEG decoder expects. Full-depth decoding keeps them bit-exact:
JPEG 2000 and lossless or 12-bit JPEG go through imagecodecs when it is installed; without it unsigned JPEG
2000 goes through OpenCV (the same OpenJPEG, stored values kept at any precision), while signed JPEG 2000 and
lossless / 12-bit JPEG (which OpenCV cannot read) raise a :class:`DecodeError` that names
``pip install 'recordgpu[codecs]'``. The 8-bit flags of :func:`decode` (0, 1) stay OpenCV's for JPEG 2000.

Encoding refuses to lose data silently: signed, float or 16-bit data asked to go into an 8-bit-only or
unsigned-only format raises and names a lossless format that can hold it.
"""
from __future__ import annotations

import io
import os
import struct

import cv2
import numpy as np

from . import fastdecode
from .errors import DecodeError
from .imgheaders import JpegFrame, jpeg_frame

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
    kind = _needs_imagecodecs(raw)
    if kind is None or (kind == "j2k" and flag >= 0 and not flag & cv2.IMREAD_ANYDEPTH):
        return cv2.imdecode(raw, flag)  # OpenCV's own 8-bit conversions, as MXNet
    try:
        return _decode_lossless(raw, kind, flag)
    except DecodeError as e:
        if _MISSING in str(e):
            raise  # a payload that only imagecodecs reads: say what to install instead of returning None
        return None


# -- lossless codecs beyond OpenCV ----------------------------------------------------------------------
_MISSING = "pip install 'recordgpu[codecs]'"


def _j2k_components(raw: np.ndarray) -> list[tuple[bool, int]] | None:
    """``[(signed, precision), ...]`` per component from the SIZ segment of a J2K codestream or JP2 file."""
    head = raw[:256].tobytes()  # SOC + SIZ with up to 70 components
    pos = 0
    if head[:4] != b"\xff\x4f\xff\x51":
        head = raw[:1 << 16].tobytes()  # JP2: header boxes (e.g. an ICC profile) come first
        i = head.find(b"jp2c")  # JP2: the codestream box; its contents start with SOC SIZ
        if i < 4 or head[i + 4:i + 8] != b"\xff\x4f\xff\x51":
            return None
        pos = i + 4
    try:
        (csiz,) = struct.unpack(">H", head[pos + 40:pos + 42])
        return [(bool(head[pos + 42 + 3 * k] & 0x80), (head[pos + 42 + 3 * k] & 0x7F) + 1) for k in range(csiz)]
    except (struct.error, IndexError):
        return None


def _needs_imagecodecs(raw: np.ndarray, frame: JpegFrame | None = None) -> str | None:
    """Which payloads go to imagecodecs at full depth: 'j2k-signed' (OpenCV refuses signed JPEG 2000) and
    'ljpeg' (lossless or >8-bit JPEG, which OpenCV builds do not read reliably) need it; 'j2k' (unsigned JPEG
    2000) prefers it (same OpenJPEG values, without OpenCV's colour-space warning on every codestream) and
    falls back to OpenCV; None: OpenCV alone. ``frame``: the JPEG's frame header when the caller has it."""
    head = raw[:12].tobytes()
    if head[:4] == b"\xff\x4f\xff\x51" or head[4:8] == b"jP  ":
        comps = _j2k_components(raw)
        return "j2k-signed" if comps and any(signed for signed, _ in comps) else "j2k"
    if head[:3] == b"\xff\xd8\xff":
        frame = frame if frame is not None else jpeg_frame(raw)
        if frame is not None and (frame.lossless or frame.precision != 8):
            return "ljpeg"
    return None


def _imagecodecs():
    try:
        import imagecodecs  # noqa: PLC0415 (optional dependency)
    except ImportError:
        return None
    return imagecodecs


def _decode_lossless(raw: np.ndarray, kind: str, flag: int) -> np.ndarray | None:
    """A JPEG 2000 / lossless JPEG payload decoded at full depth with imagecodecs, else (unsigned JPEG 2000
    only) with OpenCV; channels converted as ``flag`` asks. None when OpenCV's fallback fails."""
    if _imagecodecs() is None and kind == "j2k":
        # OpenCV's JPEG 2000 reader cannot turn gray into BGR itself: read as stored, convert here.
        img = cv2.imdecode(raw, IMREAD_UNCHANGED)
        return None if img is None else _convert_channels(img, flag)
    return _convert_channels(_imagecodecs_decode(raw, kind), flag)


def _imagecodecs_decode(raw: np.ndarray, kind: str) -> np.ndarray:
    """Full-depth decode with imagecodecs, channels in OpenCV's BGR(A) order. Raises DecodeError."""
    ic = _imagecodecs()
    what = "JPEG 2000" if kind.startswith("j2k") else "lossless / 12-bit JPEG"
    if ic is None:
        raise DecodeError(f"decoding this {what} payload needs imagecodecs, which is not installed: {_MISSING}")
    try:
        if kind.startswith("j2k"):
            img = ic.jpeg2k_decode(raw)
        else:
            try:
                img = ic.jpeg8_decode(raw)  # libjpeg-turbo 3: lossless (SOF3) and 12-bit too
            except Exception:
                img = ic.ljpeg_decode(raw)
    except Exception as e:  # imagecodecs raises its own *Error types
        raise DecodeError(f"cannot decode {what} payload ({raw.size} bytes): {e}") from None
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] in (3, 4):
        img = img[:, :, [2, 1, 0, 3][:img.shape[2]]]  # RGB(A) -> BGR(A)
    return np.ascontiguousarray(img)


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
        fmt = sniff(raw)
        frame = jpeg_frame(raw) if fmt == "jpeg" else None  # read once for both checks below
        kind = _needs_imagecodecs(raw, frame)
        hint = ""
        if kind is None:
            img = fastdecode.decode(raw, fmt, channels, frame) if fastdecode.ENABLED else None
            if img is None:
                img = cv2.imdecode(raw, _FULL_DEPTH_FLAG[channels])
            if img is None and channels == 3:
                # OpenCV cannot turn some gray payloads into BGR itself (e.g. 5.0 with float32 TIFF): read them
                # as stored and replicate here.
                img = cv2.imdecode(raw, IMREAD_UNCHANGED)
                img = None if img is None else _convert_channels(img, _FULL_DEPTH_FLAG[channels])
        else:
            img = _decode_lossless(raw, kind, _FULL_DEPTH_FLAG[channels])
            hint = f"; OpenCV cannot read it, imagecodecs may ({_MISSING})"
        if img is None:
            raise DecodeError(f"cannot decode image payload ({raw.size} bytes, "
                              f"{'format ' + fmt if fmt != 'unknown' else 'unrecognised format'}, "
                              f"starts {raw[:8].tobytes().hex()}){hint}")
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
    np.dtype(np.uint16): "'.png', '.tiff', '.j2k' or '.ljpeg' (or '.npy')",
    np.dtype(np.int16): "'.tiff' or '.j2k' (or '.npy')",
    np.dtype(np.float32): "'.tiff' or '.npy'",
}
#: lossless encodings written with imagecodecs and the dtypes they hold exactly
LOSSLESS_GPU_ENCODINGS = {".j2k": (np.uint8, np.uint16, np.int16), ".ljpeg": (np.uint8, np.uint16)}


def _encode_lossless(img: np.ndarray, ext: str) -> bytes:
    """``.j2k`` (reversible JPEG 2000 codestream) or ``.ljpeg`` (lossless JPEG, SOF3, predictor 1)."""
    allowed = LOSSLESS_GPU_ENCODINGS[ext]
    if img.dtype not in allowed:
        names = ", ".join(np.dtype(d).name for d in allowed)
        raise ValueError(f"{ext} holds {names} data losslessly, not {img.dtype}; use "
                         f"{_LOSSLESS_FOR.get(img.dtype, repr('.npy'))}")
    ic = _imagecodecs()
    if ic is None:
        raise ValueError(f"encoding {ext} needs imagecodecs, which is not installed: {_MISSING}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3:
        img = img[:, :, [2, 1, 0, 3][:img.shape[2]]]  # BGR(A) -> RGB(A): decoders return RGB(A)
    img = np.ascontiguousarray(img)
    bits = img.dtype.itemsize * 8
    try:
        if ext == ".j2k":
            out = ic.jpeg2k_encode(img, level=0, codecformat="J2K", reversible=True, bitspersample=bits)
        else:
            out = ic.jpeg8_encode(img, lossless=True, predictor=1, bitspersample=bits)
    except Exception as e:  # imagecodecs raises its own *Error types
        raise ValueError(f"imagecodecs failed to encode a {img.dtype} image of shape {img.shape} as {ext}: "
                         f"{e}") from None
    return bytes(out)


def encode(img: np.ndarray, ext: str = ".jpg", quality: int = 95) -> bytes:
    """Encode ``img`` (OpenCV layout) as ``ext``: .jpg/.jpeg, .png, .tif/.tiff, .npy, the lossless .j2k and
    .ljpeg (imagecodecs), or any cv2 format.

    Quality is the JPEG quality or the PNG compression level (OpenCV clamps it to 0-9); the lossless .j2k and
    .ljpeg ignore it. Raises ValueError instead of letting OpenCV convert the data to 8 bits (it would do so
    silently).
    """
    ext = ext.lower()
    img = np.asarray(img)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3, 4)):
        raise ValueError(f"image must be (H, W) or (H, W, C) with C in 1, 3, 4; got shape {img.shape}")
    if ext in LOSSLESS_GPU_ENCODINGS:
        return _encode_lossless(img, ext)
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
