"""Which flavour of ``.rec`` a file is: recognised from its headers, reported, never guessed silently.

Dialects (``users-and-peers.md`` §0):

* ``plain``: every record has a scalar label (``flag == 0``);
* ``multilabel``: packed float32 labels (``flag > 0``, e.g. ``im2rec --pack-label``);
* ``detection``: GluonCV detection labels ``[header_len, label_width, extra..., (cls, xmin, ymin, xmax, ymax,
  ...) * k]`` with ``header_len >= 2`` and ``label_width >= 5``;
* ``insightface``: record key 0 has ``flag > 0``, no image bytes and label ``(first_identity_key, end_key)``;
  image records are keys ``[1, label[0])`` and identity records keys ``[label[0], label[1])`` each hold the
  ``(start, end)`` key range of that identity's images (``id2range``);
* ``raw``: records too short for an image header (not an image ``.rec``, e.g. SageMaker protobuf records);
* ``empty``: no records.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .headers import HeaderTable, read_headers, packed_labels
from .recfile import RecordFile


@dataclass
class Dialect:
    """What :func:`detect_dialect` found. ``image_records`` are record numbers (rows of the table) that hold
    images; ``id2range`` maps an InsightFace identity key to the ``[start, end)`` keys of its images."""

    kind: str
    n_records: int
    label_widths: tuple[int, ...]
    image_records: np.ndarray
    id2range: dict[int, tuple[int, int]] = field(default_factory=dict)
    header_len: int | None = None
    label_width: int | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        s = f"{self.kind} ({len(self.image_records)} image records of {self.n_records})"
        if self.kind == "insightface":
            s += f", {len(self.id2range)} identities"
        if self.kind == "detection":
            s += f", header_len={self.header_len}, label_width={self.label_width}"
        return s


def _record_keys(rf: RecordFile, h: HeaderTable) -> np.ndarray:
    """Keys to address records by: the ``.idx`` keys where present, else the header ids."""
    keys = rf.table.key.copy()
    missing = keys < 0
    keys[missing] = h.id[missing].astype(np.int64)
    return keys


def _insightface(rf: RecordFile, h: HeaderTable) -> Dialect | None:
    keys = _record_keys(rf, h)
    zero = np.flatnonzero((keys == 0) & (h.flag >= 2) & (h.image_len == 0))
    if len(zero) != 1:
        return None
    r0 = int(zero[0])
    lab = packed_labels(rf, r0, int(h.flag[r0]))
    first_id, end_id = int(lab[0]), int(lab[1])
    if not (1 <= first_id <= end_id):
        return None
    is_image = (keys >= 1) & (keys < first_id)
    is_ident = (keys >= first_id) & (keys < end_id)
    id2range: dict[int, tuple[int, int]] = {}
    for r in np.flatnonzero(is_ident):
        if h.flag[r] < 2 or h.image_len[r] != 0:
            return None
        a, b = packed_labels(rf, int(r), int(h.flag[r]))[:2]
        id2range[int(keys[r])] = (int(a), int(b))
    image_records = np.flatnonzero(is_image & (h.image_len > 0))
    d = Dialect("insightface", len(keys), tuple(sorted(set(h.flag[image_records].tolist()))),
                image_records, id2range=id2range)
    other = len(keys) - len(image_records) - len(id2range) - 1
    if other:
        d.notes.append(f"{other} records are neither images, identities nor the header")
    return d


def _detection(rf: RecordFile, h: HeaderTable) -> Dialect | None:
    if not (h.flag >= 7).all():
        return None
    hl, lw = None, None
    for r in range(len(h.flag)):
        lab = packed_labels(rf, r, int(h.flag[r]))
        a, b = float(lab[0]), float(lab[1])
        if a != int(a) or b != int(b) or a < 2 or b < 5 or (h.flag[r] - a) % b:
            return None
        if hl is None:
            hl, lw = int(a), int(b)
        elif (hl, lw) != (int(a), int(b)):
            return None
    return Dialect("detection", len(h.flag), tuple(sorted(set(h.flag.tolist()))),
                   np.arange(len(h.flag)), header_len=hl, label_width=lw)


def detect_dialect(rf: RecordFile) -> Dialect:
    """Inspect every record header of ``rf`` and say which dialect the file is."""
    n = len(rf)
    if n == 0:
        return Dialect("empty", 0, (), np.empty(0, np.int64))
    h = read_headers(rf)
    if (h.image_len < 0).any():
        bad = int(np.flatnonzero(h.image_len < 0)[0])
        d = Dialect("raw", n, (), np.empty(0, np.int64))
        d.notes.append(f"record {bad} (byte offset {int(rf.table.start[bad])}) is too short for an image "
                       "header and its labels")
        return d
    d = _insightface(rf, h)
    if d is not None:
        return d
    widths = tuple(sorted(set(h.flag.tolist())))
    if widths == (0,):
        return Dialect("plain", n, widths, np.arange(n))
    d = _detection(rf, h)
    if d is not None:
        return d
    d = Dialect("multilabel", n, widths, np.arange(n))
    if len(widths) > 1:
        d.notes.append(f"label counts vary between records: {widths}")
    return d
