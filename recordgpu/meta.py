"""Per-record metadata carried inside the image payload, where MXNet-compatible readers ignore it.

The metadata is a flat JSON object (for DICOM: ``RescaleSlope``, ``RescaleIntercept``, ``WindowCenter``,
``WindowWidth``, ``PixelSpacing``, ``PhotometricInterpretation``, ``BitsStored``, ``SOPInstanceUID``, ...; see
:mod:`recordgpu.dicom`). It is stored as the text ``{"recordgpu":1,"meta":{...}}`` (ASCII JSON, the number is
the format version) in a place each container reserves for such data:

========== ================================================================================================
PNG        a ``tEXt`` chunk with keyword ``recordgpu``, right after ``IHDR``
TIFF       the ``ImageDescription`` tag (270) of the first IFD (the IFD is rewritten at the end of the file)
JPEG       a ``COM`` segment after the leading ``APPn`` segments (lossy and lossless JPEG alike)
JPEG 2000  a ``COM`` segment (Latin-1 text) right after ``SIZ`` in the codestream's main header (also
           inside a JP2 file's ``jp2c`` box)
``.npy``   a trailer after the array data: ``b"RGPUMETA"``, the JSON length as uint32 little-endian, the
           JSON. ``np.load`` reads exactly the array and ignores the trailer.
========== ================================================================================================

OpenCV (and so MXNet), nvImageCodec and imagecodecs skip all of these. :func:`attach_meta` adds metadata to
an encoded image, :func:`read_meta` reads it back (``{}`` when there is none);
:func:`recordgpu.recordio.unpack_meta` does the same for a whole record.
"""
from __future__ import annotations

import io
import json
import struct
import zlib
from typing import Any, Mapping

import numpy as np

from .codecs import sniff
from .errors import DecodeError

__all__ = ["META_VERSION", "NPY_TRAILER_MAGIC", "PNG_KEYWORD", "attach_meta", "read_meta", "meta_text"]

META_VERSION = 1
#: keyword of the PNG ``tEXt`` chunk that holds the metadata
PNG_KEYWORD = b"recordgpu"
#: first bytes of the metadata trailer after the array data of a ``.npy`` payload
NPY_TRAILER_MAGIC = b"RGPUMETA"

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_TIFF_IMAGE_DESCRIPTION = 270
_TIFF_ASCII = 2
_J2K_SOC, _J2K_SIZ, _J2K_COM, _J2K_SOT = 0xFF4F, 0xFF51, 0xFF64, 0xFF90
_JPEG_COM = 0xFE
_MAX_SEGMENT_TEXT = 0xFFFF - 4  # a JPEG / J2K marker segment length counts itself (2) and, for J2K, Rcme (2)


def meta_text(meta: Mapping[str, Any]) -> bytes:
    """The ASCII JSON document that carries ``meta`` (``{"recordgpu":1,"meta":{...}}``)."""
    if not isinstance(meta, Mapping):
        raise TypeError(f"metadata must be a mapping, not {type(meta).__name__}")
    try:
        body = json.dumps(dict(meta), sort_keys=True, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise ValueError(f"metadata must be JSON-serialisable with finite numbers: {e}") from None
    # The version key comes first so that readers can recognise the text by its first bytes.
    return f'{{"recordgpu":{META_VERSION},"meta":{body}}}'.encode("ascii")


def _parse_text(text: bytes | str, where: str) -> dict | None:
    """The metadata dict of a candidate text, None when the text is not recordgpu metadata."""
    if isinstance(text, bytes):
        text = text.rstrip(b"\0").decode("latin-1")
    text = text.rstrip("\0")
    if not text.startswith('{"recordgpu":'):
        return None
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise DecodeError(f"corrupt recordgpu metadata in the {where}: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("meta"), dict):
        raise DecodeError(f"corrupt recordgpu metadata in the {where}: no 'meta' object")
    if doc.get("recordgpu") != META_VERSION:
        raise DecodeError(f"recordgpu metadata version {doc.get('recordgpu')!r} in the {where} is not supported "
                          f"(this recordgpu reads version {META_VERSION}); upgrade recordgpu")
    return doc["meta"]


def _container(raw: bytes) -> str:
    return sniff(raw)


def _as_bytes(buf) -> bytes:
    if isinstance(buf, bytes):
        return buf
    if isinstance(buf, np.ndarray):
        return buf.tobytes()
    return bytes(memoryview(buf).cast("B"))


# -- PNG ------------------------------------------------------------------------------------------------
def _png_chunks(raw: bytes):
    """``(type, data_start, data_end)`` of each chunk; stops at IEND or at the end of well-formed data."""
    pos = 8
    while pos + 12 <= len(raw):
        (length,) = struct.unpack(">I", raw[pos:pos + 4])
        ctype = raw[pos + 4:pos + 8]
        end = pos + 8 + length
        if end + 4 > len(raw):
            raise DecodeError(f"PNG chunk {ctype!r} at byte {pos} runs past the end of the payload")
        yield ctype, pos + 8, end
        if ctype == b"IEND":
            return
        pos = end + 4


def _png_chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def _png_read(raw: bytes) -> dict:
    for ctype, a, b in _png_chunks(raw):
        if ctype == b"tEXt":
            key, _, text = raw[a:b].partition(b"\0")
            if key == PNG_KEYWORD:
                meta = _parse_text(text, "PNG tEXt chunk")
                if meta is not None:
                    return meta
    return {}


def _png_attach(raw: bytes, text: bytes) -> bytes:
    out = bytearray()
    inserted = False
    for ctype, a, b in _png_chunks(raw):
        if ctype == b"tEXt" and raw[a:b].partition(b"\0")[0] == PNG_KEYWORD:
            continue  # replaced
        out += raw[a - 8:b + 4]
        if ctype == b"IHDR" and not inserted:
            out += _png_chunk(b"tEXt", PNG_KEYWORD + b"\0" + text)
            inserted = True
    if not inserted:
        raise ValueError("not a PNG stream with an IHDR chunk")
    return _PNG_SIG + bytes(out)


# -- TIFF -----------------------------------------------------------------------------------------------
def _tiff_ifd0(raw: bytes) -> tuple[str, int, list[bytes]]:
    e = "<" if raw[:2] == b"II" else ">"
    (ifd,) = struct.unpack(e + "I", raw[4:8])
    if ifd + 2 > len(raw):
        raise DecodeError(f"TIFF first IFD offset {ifd} is past the end of the payload")
    (n,) = struct.unpack(e + "H", raw[ifd:ifd + 2])
    end = ifd + 2 + 12 * n
    if end + 4 > len(raw):
        raise DecodeError(f"TIFF first IFD ({n} entries at byte {ifd}) runs past the end of the payload")
    entries = [raw[ifd + 2 + 12 * k: ifd + 14 + 12 * k] for k in range(n)]
    return e, end, entries


def _tiff_read(raw: bytes) -> dict:
    e, _, entries = _tiff_ifd0(raw)
    for ent in entries:
        tag, typ, count = struct.unpack(e + "HHI", ent[:8])
        if tag == _TIFF_IMAGE_DESCRIPTION and typ == _TIFF_ASCII:
            if count <= 4:
                text = ent[8:8 + count]
            else:
                (off,) = struct.unpack(e + "I", ent[8:12])
                if off + count > len(raw):
                    raise DecodeError("TIFF ImageDescription runs past the end of the payload")
                text = raw[off:off + count]
            meta = _parse_text(text, "TIFF ImageDescription")
            return {} if meta is None else meta
    return {}


def _tiff_attach(raw: bytes, text: bytes) -> bytes:
    e, ifd_end, entries = _tiff_ifd0(raw)
    next_ifd = raw[ifd_end:ifd_end + 4]
    value = text + b"\0"
    out = bytearray(raw)
    if len(out) % 2:
        out += b"\0"  # TIFF offsets are word-aligned
    value_off = len(out)
    out += value
    if len(out) % 2:
        out += b"\0"
    new_ifd = len(out)
    if new_ifd + 6 + 12 * (len(entries) + 1) > 0xFFFFFFFF:
        raise ValueError("TIFF would exceed 4 GiB with the metadata; classic TIFF offsets are 32-bit")
    desc = struct.pack(e + "HHII", _TIFF_IMAGE_DESCRIPTION, _TIFF_ASCII, len(value), value_off)
    kept = [ent for ent in entries if struct.unpack(e + "H", ent[:2])[0] != _TIFF_IMAGE_DESCRIPTION]
    kept.append(desc)
    kept.sort(key=lambda ent: struct.unpack(e + "H", ent[:2])[0])  # IFD entries must be sorted by tag
    out += struct.pack(e + "H", len(kept)) + b"".join(kept) + next_ifd
    # The old IFD stays behind as unreferenced bytes; only the header points at the new one.
    out[4:8] = struct.pack(e + "I", new_ifd)
    return bytes(out)


# -- JPEG -----------------------------------------------------------------------------------------------
def _jpeg_segments(raw: bytes):
    """``(marker, seg_start, seg_end)`` of the marker segments before the first scan (SOS)."""
    pos = 2
    while pos + 4 <= len(raw):
        if raw[pos] != 0xFF:
            raise DecodeError(f"JPEG marker expected at byte {pos}")
        marker = raw[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker == 0xDA:
            return
        (length,) = struct.unpack(">H", raw[pos + 2:pos + 4])
        if length < 2 or pos + 2 + length > len(raw):
            raise DecodeError(f"JPEG segment 0xFF{marker:02X} at byte {pos} runs past the end of the payload")
        yield marker, pos, pos + 2 + length
        pos += 2 + length


def _jpeg_read(raw: bytes) -> dict:
    for marker, a, b in _jpeg_segments(raw):
        if marker == _JPEG_COM:
            meta = _parse_text(raw[a + 4:b], "JPEG COM segment")
            if meta is not None:
                return meta
    return {}


def _jpeg_attach(raw: bytes, text: bytes) -> bytes:
    if len(text) > _MAX_SEGMENT_TEXT:
        raise ValueError(f"metadata of {len(text)} bytes does not fit a JPEG COM segment "
                         f"({_MAX_SEGMENT_TEXT} bytes at most)")
    com = struct.pack(">BBH", 0xFF, _JPEG_COM, len(text) + 2) + text
    out = bytearray(raw[:2])
    insert_at = None
    pos = 2
    for marker, a, b in _jpeg_segments(raw):
        out += raw[pos:a]  # fill bytes / standalone markers between segments
        pos = b
        if marker == _JPEG_COM and _parse_text(raw[a + 4:b], "JPEG COM segment") is not None:
            continue  # replaced
        if insert_at is None and not 0xE0 <= marker <= 0xEF:
            insert_at = len(out)  # after the leading APPn (JFIF APP0 must stay first)
        out += raw[a:b]
    if insert_at is None:
        insert_at = len(out)
    out += raw[pos:]
    out[insert_at:insert_at] = com
    return bytes(out)


# -- JPEG 2000 ------------------------------------------------------------------------------------------
def _j2k_segments(cs: bytes):
    """``(marker, seg_start, seg_end)`` of the main-header segments after SOC, up to the first SOT."""
    pos = 2
    while pos + 4 <= len(cs):
        (marker, length) = struct.unpack(">HH", cs[pos:pos + 4])
        if marker == _J2K_SOT or marker >> 8 != 0xFF:
            return
        if length < 2 or pos + 2 + length > len(cs):
            raise DecodeError(f"JPEG 2000 segment 0x{marker:04X} at byte {pos} runs past the end of the payload")
        yield marker, pos, pos + 2 + length
        pos += 2 + length


def _j2k_read(cs: bytes) -> dict:
    for marker, a, b in _j2k_segments(cs):
        if marker == _J2K_COM and cs[a + 4:a + 6] == b"\x00\x01":  # Rcme 1: Latin-1 text
            meta = _parse_text(cs[a + 6:b], "JPEG 2000 COM segment")
            if meta is not None:
                return meta
    return {}


def _j2k_attach(cs: bytes, text: bytes) -> bytes:
    if len(text) > _MAX_SEGMENT_TEXT - 2:
        raise ValueError(f"metadata of {len(text)} bytes does not fit a JPEG 2000 COM segment "
                         f"({_MAX_SEGMENT_TEXT - 2} bytes at most)")
    com = struct.pack(">HHH", _J2K_COM, len(text) + 4, 1) + text
    out = bytearray(cs[:2])
    pos = 2
    for marker, a, b in _j2k_segments(cs):
        pos = b
        if marker == _J2K_COM and cs[a + 4:a + 6] == b"\x00\x01" and \
                _parse_text(cs[a + 6:b], "JPEG 2000 COM segment") is not None:
            continue  # replaced
        out += cs[a:b]
        if marker == _J2K_SIZ:
            out += com  # SIZ must directly follow SOC; any other main-header segment may follow SIZ
    if len(out) == 2 or cs[2:4] != b"\xff\x51":
        raise ValueError("not a JPEG 2000 codestream with a SIZ segment")
    out += cs[pos:]
    return bytes(out)


def _jp2_codestream_box(raw: bytes) -> tuple[int, int, int]:
    """``(box_start, header_len, box_end)`` of the ``jp2c`` box of a JP2 file."""
    pos = 0
    while pos + 8 <= len(raw):
        (lbox,) = struct.unpack(">I", raw[pos:pos + 4])
        tbox = raw[pos + 4:pos + 8]
        hdr = 8
        if lbox == 1:
            (lbox,) = struct.unpack(">Q", raw[pos + 8:pos + 16])
            hdr = 16
        end = len(raw) if lbox == 0 else pos + lbox
        if lbox != 0 and lbox < hdr or end > len(raw):
            raise DecodeError(f"JP2 box {tbox!r} at byte {pos} has a bad length")
        if tbox == b"jp2c":
            return pos, hdr, end
        pos = end
    raise DecodeError("JP2 file without a codestream (jp2c) box")


def _jp2_read(raw: bytes) -> dict:
    start, hdr, end = _jp2_codestream_box(raw)
    return _j2k_read(raw[start + hdr:end])


def _jp2_attach(raw: bytes, text: bytes) -> bytes:
    start, hdr, end = _jp2_codestream_box(raw)
    cs = _j2k_attach(raw[start + hdr:end], text)
    (lbox,) = struct.unpack(">I", raw[start:start + 4])
    if lbox == 0:
        header = raw[start:start + hdr]
    elif hdr == 16:
        header = raw[start:start + 8] + struct.pack(">Q", hdr + len(cs))
    elif hdr + len(cs) <= 0xFFFFFFFF:
        header = struct.pack(">I", hdr + len(cs)) + raw[start + 4:start + 8]
    else:
        raise ValueError("JP2 codestream box would exceed 4 GiB")
    return raw[:start] + header + cs + raw[end:]


# -- .npy -----------------------------------------------------------------------------------------------
def _npy_data_end(raw: bytes) -> int:
    bio = io.BytesIO(raw[:65536 + 16])
    try:
        version = np.lib.format.read_magic(bio)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(bio)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(bio)
    except ValueError as e:
        raise DecodeError(f"bad .npy payload: {e}") from None
    end = bio.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if end > len(raw):
        raise DecodeError(f".npy payload is truncated: the array needs {end} bytes, the payload has {len(raw)}")
    return end


def _npy_read(raw: bytes) -> dict:
    end = _npy_data_end(raw)
    tail = raw[end:]
    if not tail:
        return {}
    n = len(NPY_TRAILER_MAGIC)
    if tail[:n] != NPY_TRAILER_MAGIC or len(tail) < n + 4:
        raise DecodeError(f".npy payload has {len(tail)} unexpected bytes after the array data")
    (length,) = struct.unpack("<I", tail[n:n + 4])
    if len(tail) != n + 4 + length:
        raise DecodeError(f".npy metadata trailer announces {length} bytes, has {len(tail) - n - 4}")
    meta = _parse_text(tail[n + 4:], ".npy metadata trailer")
    if meta is None:
        raise DecodeError(".npy metadata trailer does not hold recordgpu metadata")
    return meta


def _npy_attach(raw: bytes, text: bytes) -> bytes:
    end = _npy_data_end(raw)
    return raw[:end] + NPY_TRAILER_MAGIC + struct.pack("<I", len(text)) + text


_READERS = {"png": _png_read, "tiff": _tiff_read, "jpeg": _jpeg_read, "j2k": _j2k_read, "jp2": _jp2_read,
            "npy": _npy_read}
_WRITERS = {"png": _png_attach, "tiff": _tiff_attach, "jpeg": _jpeg_attach, "j2k": _j2k_attach,
            "jp2": _jp2_attach, "npy": _npy_attach}


def read_meta(image_bytes) -> dict:
    """The recordgpu metadata of an encoded image (bytes, memoryview or uint8 array); ``{}`` when it has none.

    Raises :class:`~recordgpu.errors.DecodeError` when the payload holds recordgpu metadata that cannot be
    read (corrupt JSON, an unknown format version) or its container structure is broken where the metadata
    would be.
    """
    raw = _as_bytes(image_bytes)
    reader = _READERS.get(_container(raw))
    if reader is None:
        return {}
    try:
        return reader(raw)
    except struct.error as e:
        raise DecodeError(f"truncated image container while looking for metadata: {e}") from None


def attach_meta(image_bytes, meta: Mapping[str, Any]) -> bytes:
    """``image_bytes`` (PNG, TIFF, JPEG, JPEG 2000 or ``.npy``) with ``meta`` embedded (replacing earlier
    recordgpu metadata). The pixels decode exactly as before. Raises ValueError for other formats, for
    metadata that is not JSON-serialisable, or metadata too large for the container's text field."""
    raw = _as_bytes(image_bytes)
    kind = _container(raw)
    writer = _WRITERS.get(kind)
    if writer is None:
        raise ValueError("metadata can be stored in PNG, TIFF, JPEG, JPEG 2000 and .npy payloads; "
                         f"this payload starts {raw[:8].hex()} ({kind} format)")
    text = meta_text(meta)
    try:
        return writer(raw, text)
    except (DecodeError, struct.error) as e:
        raise ValueError(f"cannot add metadata to this {kind} payload: {e}") from None
