"""``recordgpu preview``: a contact sheet (PNG) of records as they are stored or as augmentation makes them.

    recordgpu preview train.rec --out grid.png
    recordgpu preview train.rec --out grid.png --kw rand_crop=1 --kw resize=64 --kw rand_mirror=1
    recordgpu preview ct.rec --out grid.png --masks ct_masks.rec --window=-160,240

Each tile shows one record with its index, record id, labels (what the record carries, or the
``path_imglist`` labels, or the InsightFace identity) and size/dtype. Without augmentation keywords the
image is shown as stored (decoded unchanged, at full depth). ``--kw KEY=VALUE`` takes ``ImageRecordIter``
keywords: the augmentation ones run exactly as in the iterator (same planner and executor; record ``i``
uses the seed ``RecordDataset(seed=--seed)`` gives it in epoch 0), normalisation ones (``mean_*``,
``std_*``, ``scale``, ``dtype``, ...) and loader ones (``batch_size``, ``shuffle``, ...) are ignored, since
the sheet shows pixel values. Without ``data_shape`` the output is ``(C, S, S)`` with ``S`` = ``resize``
when given, else the tile size.

Display window (data that is not 8-bit, or any record with a window in its metadata): ``--window LO,HI`` if
given (in modality units, e.g. HU, when the record's metadata has ``RescaleSlope``/``RescaleIntercept``,
else in stored values), else the record's DICOM ``WindowCenter``/``WindowWidth`` metadata
(:mod:`recordgpu.meta`), else each image's 0.5 / 99.5 percentiles; ``MONOCHROME1`` records are shown
inverted. ``--masks`` overlays the label map of a paired ``.rec`` (record ``i`` with record ``i``;
single-channel, same size), replayed through the same geometric steps with nearest sampling.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Sequence

import cv2
import numpy as np

from . import codecs
from .augment import cpu
from .augment.params import AugmentParams
from .augment.planner import Planner
from .errors import DecodeError, RecordIOError
from .imageiter.params import known_parameters
from .progress import Progress
from .rng import MT19937
from .torch.dataset import sample_seed
from .torch.records import RecordReader

__all__ = ["main", "build_parser", "contact_sheet", "to_display", "record_window", "PreviewOptions", "Sheet"]

log = logging.getLogger(__name__)

_NORMALISE_KEYS = frozenset({"mean_img", "mean_r", "mean_g", "mean_b", "mean_a", "std_r", "std_g", "std_b",
                             "std_a", "scale", "max_random_contrast", "max_random_illumination", "dtype",
                             "seed_aug"})
_READER_KEYS = frozenset({"path_imglist", "label_width", "path_imgidx"})
_AUGMENT_KEYS = frozenset(AugmentParams.field_names()) - _NORMALISE_KEYS
_RAW_DTYPE = {"uint8": "uint8", "uint16": "uint16", "int16": "int16", "float32": "float32"}
_BG, _TILE_BG, _TEXT, _ERR = (36, 36, 36), (0, 0, 0), (235, 235, 235), (60, 60, 230)
# distinct BGR colours for mask classes 1, 2, ... (class 0 is background and is not drawn)
_PALETTE = np.array([(40, 40, 255), (60, 220, 60), (255, 140, 30), (0, 220, 255), (255, 60, 220),
                     (255, 255, 60), (120, 80, 255), (60, 160, 255), (200, 255, 140), (180, 120, 60)], np.uint8)
_FONT, _FONT_SCALE, _LINE_H = cv2.FONT_HERSHEY_SIMPLEX, 0.38, 14
_CAPTION_LINES, _MARGIN, _MIN_TILE = 4, 6, 120


@dataclass
class PreviewOptions:
    """What to draw: which records (``indices``, else ``n`` from ``start``, or ``n`` at random with ``seed``),
    augmentation keywords (``kw``), masks, layout, display window."""

    indices: Sequence[int] | None = None
    n: int = 16
    start: int = 0
    random: bool = False
    kw: dict[str, str] = field(default_factory=dict)
    idx: str | None = None
    masks: str | None = None
    masks_idx: str | None = None
    tile: int = 160
    cols: int | None = None
    window: tuple[float, float] | None = None
    seed: int = 0


# -- display window ------------------------------------------------------------------------------------
def _first(v: Any) -> float:
    return float(v[0] if isinstance(v, (list, tuple)) else v)


def record_window(meta: Mapping[str, Any], window: tuple[float, float] | None = None
                  ) -> tuple[tuple[float, float] | None, bool, str]:
    """How to show one record: ``(window in stored pixel values or None, invert, caption note)``.

    ``window`` (e.g. ``--window``) is in modality units when ``meta`` has ``RescaleSlope``/``RescaleIntercept``
    (Hounsfield units for CT), else in stored values. Without it, the record's first DICOM
    ``WindowCenter``/``WindowWidth`` is used (DICOM's linear VOI function: ``c - 0.5 -/+ (w - 1) / 2``).
    ``PhotometricInterpretation == "MONOCHROME1"`` asks for inverted display.
    """
    invert = meta.get("PhotometricInterpretation") == "MONOCHROME1"
    try:
        slope = float(meta.get("RescaleSlope", 1.0))
        intercept = float(meta.get("RescaleIntercept", 0.0))
        if window is not None:
            lo_m, hi_m = float(window[0]), float(window[1])
            note = f"win {lo_m:g}..{hi_m:g}"
        elif "WindowCenter" in meta and "WindowWidth" in meta:
            c, w = _first(meta["WindowCenter"]), _first(meta["WindowWidth"])
            if w < 1:
                return None, invert, ""
            lo_m, hi_m = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
            note = f"WC {c:g} WW {w:g}"
        else:
            return None, invert, ""
    except (TypeError, ValueError, IndexError):  # malformed metadata: fall back to percentiles
        return None, invert, ""
    if slope == 0:
        return None, invert, ""
    lo, hi = sorted(((lo_m - intercept) / slope, (hi_m - intercept) / slope))
    return (lo, hi), invert, note


def _read_meta(buf: np.ndarray) -> dict:
    """The record's recordgpu metadata (``recordgpu.meta``), ``{}`` when there is none or it is unreadable."""
    try:
        from .meta import read_meta
    except ImportError:  # a recordgpu without per-record metadata
        return {}
    try:
        meta = read_meta(buf)
    except DecodeError as e:
        log.warning("ignoring unreadable metadata: %s", e)
        return {}
    return meta if isinstance(meta, Mapping) else {}


# -- pixels to display ---------------------------------------------------------------------------------
def to_display(img: np.ndarray, window: tuple[float, float] | None = None,
               invert: bool = False) -> tuple[np.ndarray, str]:
    """An ``(H, W, 3)`` uint8 BGR image of ``img`` (``(H, W)`` or ``(H, W, C)`` BGR(A), any dtype) and the
    ``[lo..hi]`` window used. 8-bit images are shown as they are unless a ``window`` is given; others
    through ``window`` (stored values) or, without one, their 0.5 / 99.5 percentiles."""
    a = img[:, :, None] if img.ndim == 2 else img
    a = a[:, :, :3] if a.shape[2] >= 3 else a[:, :, :1]
    note = ""
    if a.dtype != np.uint8 or window is not None:
        f = a.astype(np.float32)
        finite = np.isfinite(f)
        if window is None:
            vals = f[finite]
            lo, hi = (np.percentile(vals, [0.5, 99.5]) if vals.size else (0.0, 1.0))
            lo, hi = float(lo), float(hi)
        else:
            lo, hi = float(window[0]), float(window[1])
        if hi <= lo:
            hi = lo + 1.0
        f = np.where(finite, f, lo)
        a = np.clip((f - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)
        note = f"[{lo:.6g}..{hi:.6g}]"
    if invert:
        a = 255 - a
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a), note


def _fit(img: np.ndarray, size: int, *, labels: bool = False) -> np.ndarray:
    """Scale into a ``size`` square: whole-pixel magnification (crisp), area averaging down (nearest for
    label maps, whose values must not mix)."""
    h, w = img.shape[:2]
    scale = min(size / w, size / h)
    if scale >= 1:
        k = int(scale)
        return cv2.resize(img, (w * k, h * k), interpolation=cv2.INTER_NEAREST) if k > 1 else img
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    return cv2.resize(img, (nw, nh), interpolation=cv2.INTER_NEAREST if labels else cv2.INTER_AREA)


def _overlay(tile: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Blend class colours over ``tile`` where ``mask`` (same height/width) is non-zero; outline the classes."""
    m = mask.astype(np.int64)
    on = m != 0
    colour = _PALETTE[(m - 1) % len(_PALETTE)]
    out = tile.copy()
    out[on] = (0.65 * tile[on] + 0.35 * colour[on]).astype(np.uint8)
    edge = np.zeros_like(on)
    edge[1:, :] |= m[1:, :] != m[:-1, :]
    edge[:-1, :] |= m[1:, :] != m[:-1, :]
    edge[:, 1:] |= m[:, 1:] != m[:, :-1]
    edge[:, :-1] |= m[:, 1:] != m[:, :-1]
    edge &= on
    out[edge] = colour[edge]
    return out


def _fmt_labels(labels: np.ndarray, limit: int = 4) -> str:
    vals = [f"{float(v):g}" for v in np.asarray(labels).reshape(-1)[:limit]]
    extra = np.asarray(labels).size - limit
    return ", ".join(vals) + (f" (+{extra})" if extra > 0 else "")


def _text(canvas: np.ndarray, text: str, x: int, y: int, width: int, colour=_TEXT) -> None:
    while text and cv2.getTextSize(text, _FONT, _FONT_SCALE, 1)[0][0] > width:
        text = text[:-2] + "~" if len(text) > 2 else ""
    cv2.putText(canvas, text, (x, y), _FONT, _FONT_SCALE, colour, 1, cv2.LINE_AA)


# -- reading tiles -------------------------------------------------------------------------------------
@dataclass
class _Tile:
    image: np.ndarray | None           # (H, W, 3) uint8 BGR, or None for an unreadable record
    mask: np.ndarray | None
    lines: list[str]


class _Previewer:
    def __init__(self, rec: str, opts: PreviewOptions) -> None:
        self.opts = opts
        kw = dict(opts.kw)
        unknown = sorted(k for k in kw if k not in known_parameters())
        if unknown:
            raise ValueError(f"unknown ImageRecordIter keyword(s) {', '.join(unknown)}")
        ignored = sorted(k for k in kw if k not in _AUGMENT_KEYS | _READER_KEYS)
        if ignored:
            log.info("preview ignores %s (it shows pixel values, one record per tile)", ", ".join(ignored))
        idx = kw.get("path_imgidx") or opts.idx
        self.explicit_width = "label_width" in kw
        self.reader = RecordReader(rec, idx, path_imglist=kw.get("path_imglist") or None,
                                   label_width=int(kw.get("label_width", 1)))
        if not len(self.reader):
            raise ValueError(f"{rec} holds no image records")
        self.masks = None
        if opts.masks:
            self.masks = RecordReader(opts.masks, opts.masks_idx)
            if len(self.masks) != len(self.reader):
                raise ValueError(f"{opts.masks} holds {len(self.masks)} records but {rec} holds "
                                 f"{len(self.reader)}: masks pair with images record by record")
        self.indices = self._pick(opts)
        self.aug = {k: v for k, v in kw.items() if k in _AUGMENT_KEYS}
        self._planners: dict[str, Planner] = {}
        if self.aug:
            first = self._decode_unchanged(self.indices[0])
            c = 1 if first.ndim == 2 or first.shape[2] == 1 else 3
            size = int(self.aug["resize"]) if int(self.aug.get("resize", -1)) > 0 else opts.tile
            self.aug.setdefault("data_shape", (c, size, size))
            self._planner("uint8")  # validates the keywords now rather than once per tile

    def _pick(self, opts: PreviewOptions) -> list[int]:
        count = len(self.reader)
        if opts.indices is not None:
            picked = [self.reader.check_index(i) for i in opts.indices]  # IndexError names the record count
        elif opts.n < 1:
            raise ValueError(f"the number of records to show must be at least 1, got {opts.n}")
        elif opts.random:
            rng = np.random.default_rng(opts.seed)
            picked = sorted(rng.choice(count, size=min(opts.n, count), replace=False).tolist())
        else:
            if not 0 <= opts.start < count:
                raise IndexError(f"start {opts.start} is out of range for {count} image records")
            picked = list(range(opts.start, min(opts.start + opts.n, count)))
        if not picked:
            raise ValueError("no records to preview")
        return picked

    def _planner(self, src_dtype: str) -> Planner:
        if src_dtype not in self._planners:
            raw = _RAW_DTYPE.get(src_dtype)
            if raw is None:
                raise ValueError(f"cannot preview {src_dtype} images")
            self._planners[src_dtype] = Planner(AugmentParams(**self.aug, dtype=raw))
        return self._planners[src_dtype]

    def _decode_unchanged(self, i: int) -> np.ndarray:
        img = codecs.decode(self.reader.image_bytes(i), codecs.IMREAD_UNCHANGED)
        if img is None:
            raise self.reader.error(i, f"record id {self.reader.header(i).image_id}: cannot decode the image")
        return img

    def _labels(self, i: int) -> np.ndarray:
        r = self.reader
        if r.label_map is not None or r.insightface or self.explicit_width:
            return r.label(i)
        return r.raw_labels(i)

    def _mask(self, i: int) -> np.ndarray | None:
        if self.masks is None:
            return None
        m = codecs.decode(self.masks.image_bytes(i), codecs.IMREAD_UNCHANGED)
        if m is None:
            raise self.masks.error(i, "cannot decode the mask")
        if m.ndim == 3:
            if m.shape[2] > 1 and not all(np.array_equal(m[:, :, 0], m[:, :, k]) for k in range(1, m.shape[2])):
                raise self.masks.error(i, f"mask has {m.shape[2]} different channels; a label map has one")
            m = m[:, :, 0]
        return m

    def tile(self, i: int) -> _Tile:
        hdr = self.reader.header(i)
        lines = [f"#{i}  id {hdr.image_id}", f"label {_fmt_labels(self._labels(i))}"]
        mask = self._mask(i)
        if self.aug:
            p = self._planner("uint8").params
            image = codecs.decode_image(self.reader.image_bytes(i), p.channels)
            planner = self._planner(image.dtype.name)
            plan = planner.plan_sample(image.shape[0], image.shape[1], image.shape[2],
                                       MT19937(sample_seed(self.opts.seed, 0, i)), src_dtype=image.dtype)
            out = np.empty(plan.out_shape, planner.params.dtype)
            cpu.execute(plan, image, out)
            shown = np.moveaxis(out, 0, 2)
            if shown.shape[2] >= 3:
                shown = shown[:, :, [2, 1, 0]]  # planar RGB(A) -> BGR for display
            if mask is not None:
                if mask.shape != image.shape[:2]:
                    raise self.masks.error(i, f"mask is {mask.shape[1]}x{mask.shape[0]}, the image "
                                              f"{image.shape[1]}x{image.shape[0]}")
                m_out = np.zeros((1,) + plan.out_shape[1:], mask.dtype)
                cpu.execute(plan, mask[:, :, None], m_out, mode="mask")
                mask = m_out[0]
            src = f"{image.dtype.name} {image.shape[1]}x{image.shape[0]}->{shown.shape[1]}x{shown.shape[0]}"
        else:
            shown = self._decode_unchanged(i)
            if mask is not None and mask.shape != shown.shape[:2]:
                raise self.masks.error(i, f"mask is {mask.shape[1]}x{mask.shape[0]}, the image "
                                          f"{shown.shape[1]}x{shown.shape[0]}")
            src = f"{shown.dtype.name} {shown.shape[1]}x{shown.shape[0]}"
        window, invert, why = record_window(_read_meta(self.reader.image_bytes(i)), self.opts.window)
        disp, note = to_display(shown, window, invert)
        lines += [src, why or note]
        return _Tile(disp, mask, lines)


@dataclass
class Sheet:
    """A drawn contact sheet: ``image`` (BGR uint8), the ``records`` shown in tile order, ``failed`` (how many
    could not be shown), each tile's picture box ``(x, y, w, h)`` in ``image`` (None for a failed one) and
    its caption lines."""

    image: np.ndarray
    records: list[int]
    failed: int
    boxes: list[tuple[int, int, int, int] | None]
    captions: list[list[str]]


def contact_sheet(rec: str, opts: PreviewOptions, *, progress: bool | None = None) -> Sheet:
    """Draw the contact sheet of ``rec`` (a progress bar on a terminal unless ``progress`` says otherwise)."""
    pv = _Previewer(rec, opts)
    n = len(pv.indices)
    size = max(int(opts.tile), _MIN_TILE)
    cols = max(1, min(opts.cols or math.ceil(math.sqrt(n)), n))
    rows = math.ceil(n / cols)
    cell_w, cell_h = size + _MARGIN, size + _CAPTION_LINES * _LINE_H + _MARGIN + 4
    head_h = 2 * _LINE_H + 10
    sheet = np.full((head_h + rows * cell_h + _MARGIN, cols * cell_w + _MARGIN, 3), _BG, np.uint8)
    failed = 0
    boxes: list[tuple[int, int, int, int] | None] = []
    captions: list[list[str]] = []
    with Progress(n, "preview", unit="img", enabled=progress) as bar:
        for k, i in enumerate(pv.indices):
            x0 = _MARGIN + (k % cols) * cell_w
            y0 = head_h + (k // cols) * cell_h
            cv2.rectangle(sheet, (x0, y0), (x0 + size - 1, y0 + size - 1), _TILE_BG, -1)
            try:
                t = pv.tile(int(i))
            except (RecordIOError, DecodeError, ValueError) as e:
                failed += 1
                log.warning("record %d: %s", i, e)
                cv2.line(sheet, (x0, y0), (x0 + size - 1, y0 + size - 1), _ERR, 2)
                cv2.line(sheet, (x0 + size - 1, y0), (x0, y0 + size - 1), _ERR, 2)
                reason = textwrap.wrap(str(getattr(e, "reason", e)), max(size // 7, 10))
                t = _Tile(None, None, [f"#{i}  failed"] + reason[:_CAPTION_LINES - 1])
            if t.image is not None:
                img = _fit(t.image, size)
                if t.mask is not None:
                    img = _overlay(img, _fit(t.mask, size, labels=True))
                h, w = img.shape[:2]
                ox, oy = x0 + (size - w) // 2, y0 + (size - h) // 2
                sheet[oy:oy + h, ox:ox + w] = img
                boxes.append((ox, oy, w, h))
            else:
                boxes.append(None)
            captions.append(t.lines)
            for j, line in enumerate(t.lines):
                _text(sheet, line, x0, y0 + size + (j + 1) * _LINE_H, size,
                      _ERR if t.image is None and j == 0 else _TEXT)
            bar.update()
    what = "augmented: " + " ".join(f"{k}={v}" for k, v in sorted(pv.aug.items())) if pv.aug else "as stored"
    _text(sheet, f"{os.path.basename(rec)}: {n} of {len(pv.reader)} image records"
                 + (f", masks {os.path.basename(opts.masks)}" if opts.masks else ""),
          _MARGIN, _LINE_H + 2, sheet.shape[1] - 2 * _MARGIN)
    _text(sheet, what, _MARGIN, 2 * _LINE_H + 4, sheet.shape[1] - 2 * _MARGIN)
    return Sheet(sheet, list(pv.indices), failed, boxes, captions)


# -- command line ----------------------------------------------------------------------------------------
def _kv(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def _window(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (two numbers), got {text!r}") from None
    if not hi > lo:
        raise argparse.ArgumentTypeError(f"window needs LO < HI, got {text!r}")
    return lo, hi


def build_parser(prog: str = "recordgpu preview") -> argparse.ArgumentParser:
    """The ``recordgpu preview`` command line."""
    p = argparse.ArgumentParser(prog=prog, description="Draw a contact sheet (PNG) of the records of a .rec, "
                                "as stored or augmented as ImageRecordIter would, with their labels.")
    p.add_argument("rec", help="the .rec file")
    p.add_argument("--out", required=True, help="output image (.png recommended)")
    p.add_argument("--idx", help="the .rec's .idx (default: scan the file)")
    p.add_argument("-n", "--n", type=int, default=16, help="number of records (default 16)")
    p.add_argument("--start", type=int, default=0, help="first record (default 0)")
    p.add_argument("--random", action="store_true", help="pick the records at random (with --seed)")
    p.add_argument("--seed", type=int, default=0, help="seed for --random and the augmentation (default 0)")
    p.add_argument("--kw", action="append", type=_kv, default=[], metavar="KEY=VALUE",
                   help="an ImageRecordIter keyword (repeatable), e.g. --kw rand_crop=1 --kw resize=64")
    p.add_argument("--masks", help="a .rec of label maps paired record by record, overlaid in colour")
    p.add_argument("--masks-idx", help="the masks' .idx")
    p.add_argument("--window", type=_window, metavar="LO,HI",
                   help="display window, e.g. --window=-160,240 (in modality units such as HU when records carry "
                        "rescale metadata)")
    p.add_argument("--tile", type=int, default=160, help=f"tile size in pixels (default 160, at least {_MIN_TILE})")
    p.add_argument("--cols", type=int, help="tiles per row (default: a square-ish grid)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: only on a terminal)")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return p


def main(argv: list[str] | None = None, prog: str = "recordgpu preview") -> int:
    """Run ``recordgpu preview``; returns the exit status."""
    args = build_parser(prog).parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        out_dir = os.path.dirname(os.path.abspath(args.out))
        if not cv2.haveImageWriter(args.out) or not os.path.isdir(out_dir):
            raise ValueError(f"cannot write {args.out}: " + ("no such folder" if not os.path.isdir(out_dir)
                                                             else "OpenCV has no writer for that extension"))
        opts = PreviewOptions(n=args.n, start=args.start, random=args.random, kw=dict(args.kw), idx=args.idx,
                              masks=args.masks, masks_idx=args.masks_idx, tile=args.tile, cols=args.cols,
                              window=args.window, seed=args.seed)
        result = contact_sheet(args.rec, opts, progress=args.progress)
        try:
            written = cv2.imwrite(args.out, result.image)
        except cv2.error as e:
            raise ValueError(f"could not write {args.out}: {e}") from None
        if not written:
            raise ValueError(f"could not write {args.out}")
    except (RecordIOError, DecodeError, ValueError, IndexError, KeyError, FileNotFoundError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    total, failed = len(result.records), result.failed
    shown = total - failed
    print(f"wrote {args.out} ({shown} of {total} records shown)")
    if failed:
        print(f"{prog}: {failed} record(s) could not be shown (see the warnings above)", file=sys.stderr)
    return 1 if shown == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
