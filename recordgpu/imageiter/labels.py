"""Label selection for ``ImageRecordIter``: the ``path_imglist`` label map and MXNet's priority rules.

:class:`ImageLabelMap` reads a ``.lst`` exactly as MXNet's iterator does (``ImageLabelMap`` in
``src/io/image_iter_common.h`` over dmlc's line splitter; spec §3.5), which is *not* how im2rec reads it:

* The file is cut into records at ``\\n``/``\\r``; a run of line breaks ends one record, so blank lines
  between entries vanish. A file that *starts* with a line break, or a line holding only spaces, forms a
  record without labels and fails with "Bad ImageList format", as in MXNet.
* Per record: ``index = atol(line)``; then ``label_width`` times: skip the current token, skip
  whitespace, fail with "Bad ImageList format" at the end of the line, ``label = (float)atof(p)``.
  Any whitespace separates fields, only the first ``label_width`` numbers are used, and when
  ``label_width`` exceeds the labels present the *path* is read by ``atof`` (``img0.png`` gives 0.0).
* C semantics throughout: ``atol``/``atof`` skip leading whitespace and read the longest numeric prefix
  (``"12abc"`` is 12, ``"abc"`` is 0); a negative index wraps modulo 2**64 like the ``size_t`` cast.
* A repeated index: the last line wins.

:func:`select_label` applies the per-record priority: the map (by header id), else the packed labels of a
record with ``flag > 0``, else the scalar header label.
"""
from __future__ import annotations

import os
import re
from typing import Iterator, Sequence, Union

import numpy as np

__all__ = ["ImageLabelMap", "LabelNotFoundError", "select_label"]

PathLike = Union[str, "os.PathLike[str]"]

_U64 = 1 << 64
_LONG_MAX = (1 << 63) - 1
_LONG_MIN = -(1 << 63)
_BREAK_RUN = re.compile(rb"[\r\n]+")
_LINE_END = re.compile(rb"\r\n|\r|\n")
_BLANKS = frozenset(b" \t\v\f")

_ATOL = re.compile(rb"[ \t\n\v\f\r]*([+-]?[0-9]+)")
_ATOF = re.compile(
    rb"[ \t\n\v\f\r]*([+-]?)(?:"
    rb"(0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?)"  # hex float
    rb"|((?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"                       # decimal
    rb"|([iI][nN][fF](?:[iI][nN][iI][tT][yY])?)"                                   # inf / infinity
    rb"|([nN][aA][nN](?:\([0-9A-Za-z_]*\))?))"                                     # nan, nan(chars)
)


class LabelNotFoundError(KeyError, ValueError):
    """A record id has no line in the ``path_imglist`` file (MXNet: "fail to find imagelabel for id N")."""

    def __init__(self, image_id: int, source: str | None = None) -> None:
        self.image_id = image_id
        self.source = source
        msg = f"fail to find imagelabel for id {image_id}"
        if source:
            msg += f" (in {source})"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def _c_atol(s: bytes) -> int:
    """glibc ``atol``: leading whitespace, sign, digits; saturates at the ``long`` limits."""
    m = _ATOL.match(s)
    if m is None:
        return 0
    return min(max(int(m.group(1)), _LONG_MIN), _LONG_MAX)


def _c_atof(s: bytes) -> float:
    """glibc ``atof``/``strtod``: the longest numeric prefix as a double, 0.0 when there is none."""
    m = _ATOF.match(s)
    if m is None:
        return 0.0
    sign = -1.0 if m.group(1) == b"-" else 1.0
    hexnum, dec, inf, nan = m.group(2, 3, 4, 5)
    if hexnum is not None:
        text = hexnum.decode("ascii")
        if "p" not in text.lower():
            text += "p0"
        return sign * float.fromhex(text)
    if dec is not None:
        return sign * float(dec)
    if inf is not None:
        return sign * float("inf")
    return float("nan") if sign > 0 else -float("nan")


def _c_index(token: bytes) -> int:
    """``(size_t)atol(token)``."""
    v = int(token) if token.isdigit() else _c_atol(token)
    return min(max(v, _LONG_MIN), _LONG_MAX) % _U64


def _c_label(token: bytes) -> float:
    """``atof(token)``; Python's float() agrees on every full numeric token except ones with ``_``."""
    if b"_" not in token:
        try:
            return float(token)
        except ValueError:
            pass
    return _c_atof(token)


def _tokenised_records(data: bytes) -> Iterator[tuple[int, list[bytes]]]:
    """dmlc ``LineSplitter`` records of ``data``, as (record number, tokens).

    A record is a line plus the run of line breaks after it, and dmlc turns the run's last break into
    ``\\0`` unless the run reaches the end of the data. The ImageLabelMap parser then works on tokens,
    maximal runs of non-space bytes in which that ``\\0`` counts as non-space: it glues onto the last
    token (harmless to atol/atof) or, after trailing blanks or on an empty line, is a token of its own.
    """
    if not data:
        return
    raw = _BREAK_RUN.split(data)
    runs = len(raw) - 1
    ends_with_break = runs > 0 and raw[-1] == b""
    records = raw[:-1] if ends_with_break else raw
    for j, rec in enumerate(records):
        tokens = rec.split()  # bytes.split() splits on C isspace: space, \t, \n, \v, \f, \r
        has_nul = j < runs and not (ends_with_break and j == runs - 1)
        if has_nul and (not rec or rec[-1] in _BLANKS):
            tokens.append(b"\0")
        yield j, tokens


def _line_of_record(data: bytes, j: int) -> int:
    """1-based line number where record ``j`` starts (for error messages only)."""
    start = 0
    for k, m in enumerate(_BREAK_RUN.finditer(data)):
        if k == j - 1:
            start = m.end()
            break
    return 1 + len(_LINE_END.findall(data, 0, start))


class ImageLabelMap:
    """Labels of a ``path_imglist`` file, keyed by record id (``IRHeader.id``), as MXNet reads them.

    Build with :meth:`from_file` (or :meth:`from_bytes`); :meth:`lookup` gives one record's float32 labels.
    """

    def __init__(self, index: dict[int, int], labels: np.ndarray, label_width: int, source: str | None = None):
        self._row = index
        self._labels = labels
        self.label_width = label_width
        self.source = source

    @classmethod
    def from_bytes(cls, data: bytes, label_width: int, source: str | None = None) -> "ImageLabelMap":
        """Parse ``.lst`` content; ``source`` names it in error messages."""
        label_width = int(label_width)
        if label_width < 1:
            raise ValueError(f"value {label_width} for Parameter label_width should be greater equal to 1")
        data = bytes(data)
        need = label_width + 1
        row: dict[int, int] = {}
        values: list[float] = []
        for j, tokens in _tokenised_records(data):
            if len(tokens) < need:
                raise ValueError(
                    f"Bad ImageList format ({source or '<bytes>'}, line {_line_of_record(data, j)}: "
                    f"label_width={label_width} but the line has {max(len(tokens) - 1, 0)} fields after the index)")
            row[_c_index(tokens[0])] = j  # a repeated index: the last line wins
            values.extend(map(_c_label, tokens[1:need]))
        # atof gives a double, which the C++ code stores in a float: round once, like the cast
        table = np.asarray(values, dtype=np.float64).astype(np.float32).reshape(-1, label_width)
        return cls(row, table, label_width, source)

    @classmethod
    def from_file(cls, path: PathLike, label_width: int) -> "ImageLabelMap":
        """Read ``path`` (MXNet's ``path_imglist``) with ``label_width`` labels per line.

        A missing or empty file raises like MXNet ("Cannot find any files that matches the URI pattern").
        """
        name = os.fspath(path)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise FileNotFoundError(f"Cannot find any files that matches the URI pattern {name}") from None
        if not data:
            raise ValueError(f"Cannot find any files that matches the URI pattern {name} (the file is empty)")
        return cls.from_bytes(data, label_width, name)

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._row

    def ids(self) -> list[int]:
        """The record ids that have labels."""
        return list(self._row)

    def lookup(self, image_id: int) -> np.ndarray:
        """A fresh float32 array of ``label_width`` labels for record id ``image_id``.

        Raises :class:`LabelNotFoundError` (a ``KeyError`` and a ``ValueError``) with MXNet's text.
        """
        row = self._row.get(int(image_id))
        if row is None:
            raise LabelNotFoundError(int(image_id), self.source)
        return self._labels[row].copy()

    def lookup_many(self, image_ids: Sequence[int]) -> np.ndarray:
        """Labels of several records at once, shape ``(len(image_ids), label_width)`` float32."""
        rows = []
        for image_id in image_ids:
            row = self._row.get(int(image_id))
            if row is None:
                raise LabelNotFoundError(int(image_id), self.source)
            rows.append(row)
        return self._labels[np.asarray(rows, dtype=np.intp)]


def select_label(header_flag: int, header_label: float, packed_labels: Sequence[float] | np.ndarray | None,
                 image_id: int, label_width: int, label_map: ImageLabelMap | None) -> np.ndarray:
    """The label vector MXNet gives one record (``ParseChunk``; spec §3.5), as float32 of ``label_width``.

    1. With a ``label_map`` (``path_imglist``): its labels for ``image_id``; the record's own are ignored.
    2. Else, a record with ``header_flag > 0`` carries ``flag`` packed floats, and ``label_width`` must
       equal ``flag``.
    3. Else the scalar ``header_label``, and ``label_width`` must be 1.
    Mismatches raise :class:`ValueError` with MXNet's messages.
    """
    if label_map is not None:
        return label_map.lookup(image_id)
    flag = int(header_flag)
    if flag > 0:
        if label_width != flag:
            raise ValueError(f"rec file provide {flag}-dimensional label but label_width is set to {label_width}")
        packed = np.asarray(packed_labels if packed_labels is not None else (), dtype=np.float32).reshape(-1)
        if packed.size < flag:
            raise ValueError(f"record {image_id} declares {flag} packed labels but holds {packed.size}")
        return packed[:flag].copy()
    if label_width != 1:
        raise ValueError("label_width must be 1 unless an imglist is provided "
                         "or the rec file is packed with multi dimensional label")
    return np.array([header_label], dtype=np.float32)
