"""The records an ImageRecordIter reads: ``path_imgrec`` resolved to files, their tables, one byte stream.

MXNet treats ``path_imgrec`` as dmlc does (spec §3.3): ``a.rec;b.rec`` are concatenated into one byte
stream, a directory means its files (non-recursive, sorted here; dmlc used ``readdir`` order), a name that
does not exist is a regular expression matched against the file names of its directory, and zero-size files
are dropped. Byte partitioning works on that concatenated stream.

On an InsightFace ``.rec`` only the image records are read (header and identity records are skipped) and
the identity is the label.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from ..dialect import Dialect, detect_dialect
from ..recfile import RecordFile


def resolve_rec_paths(uri: str) -> list[str]:
    """Files named by a ``path_imgrec`` value, zero-size files dropped (dmlc semantics)."""
    if not uri:
        raise ValueError("ImageRecordIter2: must specify image_rec")
    files: list[str] = []
    for part in uri.split(";"):
        if not part:
            continue
        if os.path.isdir(part):
            files += [os.path.join(part, f) for f in sorted(os.listdir(part))
                      if os.path.isfile(os.path.join(part, f))]
        elif os.path.exists(part):
            files.append(part)
        else:
            d, pattern = os.path.split(part)
            d = d or "."
            try:
                rx = re.compile(pattern)
            except re.error:
                rx = None
            if rx is not None and os.path.isdir(d):
                files += [os.path.join(d, f) for f in sorted(os.listdir(d)) if rx.fullmatch(f)]
    files = [f for f in files if os.path.getsize(f) > 0]
    if not files:
        raise FileNotFoundError(f"Cannot find any files that matches the URI pattern {uri}")
    return files


@dataclass(frozen=True)
class RecordRef:
    """Where one readable record lives: file number and row in that file's table."""

    file: int
    row: int


class RecordSource:
    """The ordered list of image records an iterator reads, with their byte positions in the stream.

    ``start``/``end`` are offsets in the concatenated stream; ``extent`` the ``.idx`` extent (count
    partitioning); ``file``/``row`` locate a record; ``insightface`` tells whether labels come from identities.
    """

    def __init__(self, path_imgrec: str, path_imgidx: str = "") -> None:
        self.paths = resolve_rec_paths(path_imgrec)
        if path_imgidx and len(self.paths) > 1:
            raise ValueError(f"path_imgidx with several .rec files ({len(self.paths)}) is not supported: "
                             "give one .rec, or drop path_imgidx to read them as one byte stream")
        if path_imgidx and not os.path.exists(path_imgidx):
            raise FileNotFoundError(f"path_imgidx {path_imgidx!r} does not exist")
        self.indexed = bool(path_imgidx)
        self.files = [RecordFile(p, path_imgidx or None) for p in self.paths]
        self.dialect: Dialect = detect_dialect(self.files[0]) if len(self.files) == 1 else None
        self.insightface = self.dialect is not None and self.dialect.kind == "insightface"
        starts, ends, extents, fidx, rows = [], [], [], [], []
        base = 0
        ext_base = 0
        for k, rf in enumerate(self.files):
            t = rf.table
            sel = self.dialect.image_records if self.insightface else np.arange(len(t))
            starts.append(t.start[sel] + base)
            ends.append(t.end[sel] + base)
            extents.append((np.arange(len(sel)) if self.insightface else t.extent[sel]) + ext_base)
            fidx.append(np.full(len(sel), k, np.int64))
            rows.append(sel.astype(np.int64))
            base += rf.size
            ext_base += len(sel) if self.insightface else t.n_extents
        self.start = np.concatenate(starts)
        self.end = np.concatenate(ends)
        self.extent = np.concatenate(extents)
        self.file = np.concatenate(fidx)
        self.row = np.concatenate(rows)
        self.total_bytes = base
        self.num_extents = ext_base

    def __len__(self) -> int:
        return len(self.start)

    def payload(self, i: int):
        return self.files[int(self.file[i])].payload(int(self.row[i]))

    def error(self, i: int, reason: str):
        return self.files[int(self.file[i])].error(int(self.row[i]), reason)

    def close(self) -> None:
        for rf in self.files:
            rf.close()
