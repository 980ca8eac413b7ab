"""DICOM files as images for ``.rec``: stored values, optional modality LUT, and per-frame metadata.

Reading goes through pydicom (optional extra ``dicom``) and its pixel-data plugins; a compressed transfer
syntax with no installed plugin is a :class:`DicomError` that names what to install. Every frame becomes one
:class:`DicomFrame`: the pixels in OpenCV layout (``(H, W)`` gray, ``(H, W, 3)`` BGR) and a metadata dict.

Pixel values:

* by default exactly pydicom's ``pixel_array`` (signed or unsigned, at the stored depth; big-endian data in
  native byte order; colour as BGR, after pydicom's YBR to RGB conversion);
* ``rescale=True`` applies the modality transform (Rescale Slope/Intercept or the Modality LUT, as pydicom's
  ``apply_modality_lut``; for enhanced multi-frame files the frame's functional groups) and stores the result as
  int16 when every value of the frame is integral and fits, float32 otherwise; a file without a modality
  transform keeps its stored values and dtype;
* ``invert_monochrome1=True`` inverts MONOCHROME1 frames within the stored range: ``v' = lo + hi - v`` with
  ``[lo, hi]`` the range that Bits Stored and Pixel Representation allow (``4095 - v`` for unsigned 12-bit,
  ``-1 - v`` for signed 16-bit); it happens before the modality transform, so rescaled values are mirrored
  within the rescaled range. The frame is then MONOCHROME2 and its window centres are mirrored so that the
  DICOM window formula shows the same picture: ``c' = f(lo) + f(hi) + 1 - c`` (``f`` the rescale; widths keep).

Metadata (JSON-ready; only keys the file provides): ``SOPInstanceUID``, ``Modality``,
``PhotometricInterpretation`` (of the returned pixels), ``BitsStored``, ``PixelSpacing`` ``[row, column]`` mm,
``WindowCenter`` / ``WindowWidth`` (a number, or a list when the file has several), ``RescaleSlope`` /
``RescaleIntercept`` / ``RescaleType``, and for multi-frame files ``Frame`` (0-based) and ``NumberOfFrames``.
``RescaleSlope`` and ``RescaleIntercept`` always map the returned pixel values to modality units
(``value * RescaleSlope + RescaleIntercept``): after ``rescale=True`` they are 1 and 0, the file's own pair is
kept as ``SourceRescaleSlope`` / ``SourceRescaleIntercept`` and ``Rescaled`` is true. ``ModalityLUT`` is true
when the file maps values through a Modality LUT Sequence; ``InvertedMonochrome1`` is true after inversion.

Record keys: im2rec packs frame ``f`` of the ``.lst`` line with index ``i`` as a record with header ``id = i``
and ``id2 = f`` (so ``.lst`` labels and ``path_imglist`` apply to every frame), under the ``.idx`` key
:func:`frame_key` ``(i, f) = f * 2**32 + i``: frame 0, and every single-frame file, keeps MXNet's key ``i``.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

__all__ = ["DicomError", "DicomFrame", "FRAME_KEY_SHIFT", "is_dicom", "read_frames", "frame_key",
           "split_frame_key", "dicom_available"]

#: the frame number sits above this bit in an ``.idx`` key (see :func:`frame_key`)
FRAME_KEY_SHIFT = 32
_INSTALL = "pip install 'recordgpu[dicom]'"
# pip names for the requirement names pydicom prints when a plugin is missing
_PIP_NAMES = {"gdcm": "python-gdcm"}
_GPL_PLUGINS = ("pylibjpeg-libjpeg",)


class DicomError(ValueError):
    """A DICOM file cannot be turned into images (no pixel data, no decoder installed, bad values, ...)."""


@dataclass
class DicomFrame:
    """One frame: ``image`` in OpenCV layout, ``frame`` its 0-based number, ``meta`` its metadata."""

    frame: int
    image: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


def frame_key(index: int, frame: int) -> int:
    """The ``.idx`` key of frame ``frame`` of the ``.lst`` line ``index``: ``frame * 2**32 + index``."""
    if not 0 <= index < 1 << FRAME_KEY_SHIFT:
        raise ValueError(f"a multi-frame file's .lst index must be in [0, 2**32), not {index}")
    if frame < 0:
        raise ValueError(f"frame numbers start at 0, not {frame}")
    return (frame << FRAME_KEY_SHIFT) | index


def split_frame_key(key: int) -> tuple[int, int]:
    """``(lst_index, frame)`` of an ``.idx`` key made by :func:`frame_key`."""
    return key & ((1 << FRAME_KEY_SHIFT) - 1), key >> FRAME_KEY_SHIFT


def is_dicom(path: str | os.PathLike, head: bytes | None = None) -> bool:
    """A ``.dcm`` file name, or the ``DICM`` prefix after the 128-byte preamble (``head``: the file's first
    bytes, read from ``path`` when not given)."""
    if os.fspath(path).lower().endswith(".dcm"):
        return True
    if head is None:
        try:
            with open(path, "rb") as f:
                head = f.read(132)
        except OSError:
            return False
    return head[128:132] == b"DICM"


def dicom_available() -> bool:
    """Whether pydicom (>= 3.0) can be imported."""
    try:
        _pydicom()
    except DicomError:
        return False
    return True


def _pydicom():
    try:
        import pydicom  # noqa: PLC0415 (optional dependency)
    except ImportError:
        raise DicomError(f"reading DICOM files needs pydicom, which is not installed: {_INSTALL}") from None
    if int(pydicom.__version__.split(".")[0]) < 3:
        raise DicomError(f"recordgpu needs pydicom >= 3.0, found {pydicom.__version__}: {_INSTALL}")
    return pydicom


def _check_decoder(ds, path: str) -> None:
    """Raise DicomError naming the packages to install when no plugin can decode the transfer syntax."""
    from pydicom.pixels import get_decoder  # noqa: PLC0415
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian  # noqa: PLC0415

    tsyntax = ds.file_meta.get("TransferSyntaxUID")
    if tsyntax is None:
        # A bare dataset without file meta: its encoding can only be native (uncompressed).
        implicit, little = getattr(ds, "original_encoding", (None, None))
        if implicit is None:
            raise DicomError(f"{path}: no Transfer Syntax UID and unknown encoding; cannot read its pixel data")
        tsyntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        ds.file_meta.TransferSyntaxUID = tsyntax
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError:
        raise DicomError(f"{path}: pydicom has no pixel-data decoder for transfer syntax "
                         f"{getattr(tsyntax, 'name', tsyntax)} ({tsyntax})") from None
    if decoder.is_available:
        return
    options = []
    for line in decoder.missing_dependencies:
        for name, pip_name in _PIP_NAMES.items():
            line = line.replace(f"requires {name}>", f"requires {pip_name}>")
        if any(g in line for g in _GPL_PLUGINS):
            line += " (GPL-3.0)"
        options.append(line)
    raise DicomError(f"{path}: no pydicom plugin to decode {tsyntax.name} ({tsyntax}) is installed; install one "
                     f"of: {'; '.join(options)}. ({_INSTALL} adds pylibjpeg and pylibjpeg-openjpeg for JPEG 2000 "
                     "and HTJ2K.)")


# -- attribute look-up across functional groups ---------------------------------------------------------
_FG_MACRO = {
    "RescaleSlope": "PixelValueTransformationSequence",
    "RescaleIntercept": "PixelValueTransformationSequence",
    "RescaleType": "PixelValueTransformationSequence",
    "WindowCenter": "FrameVOILUTSequence",
    "WindowWidth": "FrameVOILUTSequence",
    "PixelSpacing": "PixelMeasuresSequence",
}


def _frame_attr(ds, frame: int, name: str) -> Any:
    """``name`` for ``frame``: the frame's functional group, then the shared one, then the top level."""
    macro = _FG_MACRO.get(name)
    if macro is not None:
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        groups = []
        if per_frame is not None and frame < len(per_frame):
            groups.append(per_frame[frame])
        shared = ds.get("SharedFunctionalGroupsSequence")
        if shared:
            groups.append(shared[0])
        for group in groups:
            seq = group.get(macro)
            if seq and name in seq[0]:
                return seq[0].get(name)
    return ds.get(name)


def _jsonable(value: Any) -> Any:
    """DS/IS/UID/MultiValue -> float/int/str/list; None for empty or non-finite values."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        items = [_jsonable(v) for v in value]
        if not items or any(v is None for v in items):
            return None
        return items[0] if len(items) == 1 else items
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float) or type(value).__name__ in ("DSfloat", "DSdecimal"):
        v = float(value)
        return v if math.isfinite(v) else None
    text = str(value).strip()
    return text or None


def _stored_range(ds) -> tuple[int, int]:
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    if int(ds.get("PixelRepresentation") or 0):
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


# -- pixel transforms -----------------------------------------------------------------------------------
def _invert(arr: np.ndarray, lo: int, hi: int, path: str) -> np.ndarray:
    if arr.dtype.kind not in "iu":
        raise DicomError(f"{path}: MONOCHROME1 inversion needs integer pixel data, not {arr.dtype}")
    if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
        raise DicomError(f"{path}: pixel values [{int(arr.min())}, {int(arr.max())}] exceed the stored range "
                         f"[{lo}, {hi}] (Bits Stored); cannot invert MONOCHROME1 within it")
    return (np.int64(lo + hi) - arr.astype(np.int64)).astype(arr.dtype)


def _modality_source(ds, frame: int):
    """The dataset pydicom's ``apply_modality_lut`` should read for this frame, or None (no transform)."""
    if ds.get("ModalityLUTSequence") or ("RescaleSlope" in ds and "RescaleIntercept" in ds):
        return ds
    slope, intercept = _frame_attr(ds, frame, "RescaleSlope"), _frame_attr(ds, frame, "RescaleIntercept")
    if slope is None or intercept is None:
        return None
    from pydicom.dataset import Dataset  # noqa: PLC0415

    view = Dataset()
    view.RescaleSlope, view.RescaleIntercept = slope, intercept
    return view


def _to_stored_dtype(values: np.ndarray) -> np.ndarray:
    """int16 when every value is integral and fits, else float32."""
    if values.dtype.kind in "iu":
        integral = True
    else:
        integral = bool(np.all(np.isfinite(values))) and bool(np.all(values == np.round(values)))
    if integral and (values.size == 0 or (values.min() >= -32768 and values.max() <= 32767)):
        return values.astype(np.int16)
    return values.astype(np.float32)


# -- reading --------------------------------------------------------------------------------------------
def read_frames(path: str | os.PathLike, *, rescale: bool = False,
                invert_monochrome1: bool = False) -> Iterator[DicomFrame]:
    """Yield the frames of the DICOM file ``path`` (see the module docstring for values and metadata).

    Raises :class:`DicomError` when pydicom is missing, the file is not DICOM or has no pixel data, no plugin
    can decode its transfer syntax (the message names the packages), or the values cannot be transformed.
    """
    pydicom = _pydicom()
    from pydicom.errors import InvalidDicomError  # noqa: PLC0415
    from pydicom.pixels import apply_modality_lut, iter_pixels  # noqa: PLC0415

    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(132)
        # A file with a .dcm name but without the DICM preamble may be a bare dataset: read it anyway.
        ds = pydicom.dcmread(path, force=head[128:132] != b"DICM")
    except InvalidDicomError as e:
        raise DicomError(f"{path}: not a DICOM file: {e}") from None
    except OSError as e:
        raise DicomError(f"{path}: cannot read file: {e.strerror or e}") from None
    except Exception as e:  # pydicom raises many types for malformed files
        raise DicomError(f"{path}: cannot parse DICOM file: {type(e).__name__}: {e}") from None
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise DicomError(f"{path}: the DICOM file has no pixel data")
    _check_decoder(ds, path)

    n_frames = int(ds.get("NumberOfFrames") or 1)
    photometric = str(ds.get("PhotometricInterpretation") or "").strip()
    stored_photometric = "RGB" if photometric.startswith("YBR") else photometric  # pydicom converts YBR
    lo, hi = _stored_range(ds)
    invert = invert_monochrome1 and photometric == "MONOCHROME1"
    has_lut = bool(ds.get("ModalityLUTSequence"))

    try:
        frames = iter_pixels(ds)
        for f in range(n_frames):
            try:
                arr = next(frames)
            except StopIteration:
                raise DicomError(f"{path}: announces {n_frames} frames, pixel data holds {f}") from None
            yield _frame(ds, path, f, n_frames, arr, rescale=rescale, invert=invert, lo=lo, hi=hi,
                         photometric=stored_photometric, has_lut=has_lut, apply_lut=apply_modality_lut)
    except DicomError:
        raise
    except Exception as e:  # pydicom's decoders raise RuntimeError, ValueError, NotImplementedError, ...
        raise DicomError(f"{path}: cannot decode pixel data: {type(e).__name__}: {e}") from None


def _frame(ds, path: str, f: int, n_frames: int, arr: np.ndarray, *, rescale: bool, invert: bool, lo: int,
           hi: int, photometric: str, has_lut: bool, apply_lut) -> DicomFrame:
    arr = np.asarray(arr)
    if not arr.dtype.isnative:  # e.g. Explicit VR Big Endian files
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise DicomError(f"{path}: frame {f} has shape {arr.shape}; expected (rows, columns[, 1/3/4 samples])")

    meta: dict[str, Any] = {}
    for key in ("SOPInstanceUID", "Modality", "BitsStored"):
        v = _jsonable(ds.get(key))
        if v is not None:
            meta[key] = v
    for key in ("PixelSpacing", "WindowCenter", "WindowWidth", "RescaleSlope", "RescaleIntercept",
                "RescaleType"):
        v = _jsonable(_frame_attr(ds, f, key))
        if v is not None:
            meta[key] = v
    if photometric:
        meta["PhotometricInterpretation"] = photometric
    if n_frames > 1:
        meta["Frame"], meta["NumberOfFrames"] = f, n_frames
    if has_lut:
        meta["ModalityLUT"] = True
    slope, intercept = meta.get("RescaleSlope"), meta.get("RescaleIntercept")
    linear = isinstance(slope, float) and isinstance(intercept, float) and not has_lut

    if invert:
        arr = _invert(arr, lo, hi, path)
        meta["PhotometricInterpretation"] = "MONOCHROME2"
        meta["InvertedMonochrome1"] = True
        f_lo, f_hi = (lo * slope + intercept, hi * slope + intercept) if linear else (lo, hi)
        if "WindowCenter" in meta:
            wc = meta["WindowCenter"]
            mirror = (lambda c: f_lo + f_hi + 1 - c)
            meta["WindowCenter"] = [mirror(c) for c in wc] if isinstance(wc, list) else mirror(wc)

    if rescale:
        source = _modality_source(ds, f)
        if source is not None:
            arr = _to_stored_dtype(np.asarray(apply_lut(arr, source)))
            for key in ("RescaleSlope", "RescaleIntercept"):
                if key in meta:
                    meta["Source" + key] = meta[key]
            meta["RescaleSlope"], meta["RescaleIntercept"] = 1.0, 0.0
            meta["Rescaled"] = True

    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3:
        arr = arr[:, :, [2, 1, 0, 3][:arr.shape[2]]]  # pydicom gives RGB(A); OpenCV layout is BGR(A)
    return DicomFrame(f, np.ascontiguousarray(arr), meta)
