"""``recordgpu info`` and ``recordgpu index``: describe a ``.rec`` and rebuild a missing ``.idx``."""
from __future__ import annotations

import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from . import codecs
from .dialect import Dialect, detect_dialect
from .errors import RecordIOError
from .headers import IR_SIZE, read_headers
from .progress import progress as progress_bar
from .recfile import RecordFile


@dataclass
class RecInfo:
    path: str
    size: int
    n_records: int = 0
    multipart_records: int = 0
    dialect: Dialect | None = None
    formats: Counter = field(default_factory=Counter)
    dtypes: Counter = field(default_factory=Counter)
    channels: Counter = field(default_factory=Counter)
    min_hw: tuple[int, int] | None = None
    max_hw: tuple[int, int] | None = None
    sampled: int = 0
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"file:        {self.path} ({self.size:,} bytes)", f"records:     {self.n_records:,}"
               + (f" ({self.multipart_records} multi-part)" if self.multipart_records else "")]
        if self.dialect is not None:
            out.append(f"dialect:     {self.dialect.summary()}")
            out.append(f"label width: {', '.join(str(max(w, 1)) for w in self.dialect.label_widths) or '-'}"
                       + ("  (packed)" if any(self.dialect.label_widths) else "  (scalar)"))
            out += [f"note:        {n}" for n in self.dialect.notes]
        if self.sampled:
            fmt = lambda c: ", ".join(f"{k} x{v}" for k, v in sorted(c.items(), key=str))
            out.append(f"decoded:     {self.sampled:,} image records"
                       + ("" if self.dialect is None or self.sampled == len(self.dialect.image_records)
                          else " (sample; --all for every record)"))
            out.append(f"formats:     {fmt(self.formats)}")
            out.append(f"dtypes:      {fmt(self.dtypes)}")
            out.append(f"channels:    {fmt(self.channels)}")
            out.append(f"size (HxW):  {self.min_hw[0]}x{self.min_hw[1]} .. {self.max_hw[0]}x{self.max_hw[1]}")
        out.append(f"problems:    {len(self.problems)}")
        out += [f"  {p}" for p in self.problems]
        return out


def rec_info(path: str, idx_path: str | None = None, sample: int | None = 1000,
             progress: bool | None = False) -> RecInfo:
    """Describe ``path``; ``sample`` images are decoded (None: all). Corruption is reported, not raised.
    ``progress``: show a bar on stderr (None: only on a terminal)."""
    info = RecInfo(path=path, size=os.path.getsize(path))
    try:
        rf = RecordFile(path, idx_path)
    except RecordIOError as e:
        info.problems.append(str(e))
        return info
    with rf:
        info.n_records = len(rf)
        info.multipart_records = int((rf.table.nparts > 1).sum())
        info.dialect = d = detect_dialect(rf)
        if d.kind in ("raw", "empty"):
            return info
        h = read_headers(rf)
        picks = d.image_records
        if sample is not None and len(picks) > sample:
            picks = picks[np.linspace(0, len(picks) - 1, sample).astype(np.int64)]
        hs, ws = [], []
        for r in progress_bar(picks.tolist(), len(picks), os.path.basename(path), unit="img", enabled=progress):
            buf = np.frombuffer(rf.payload(r), np.uint8)[IR_SIZE + 4 * int(h.flag[r]):]
            fmt = codecs.sniff(buf)
            img = codecs.decode(buf, codecs.IMREAD_UNCHANGED)
            info.formats[fmt] += 1
            if img is None:
                info.problems.append(f"{rf.error(r, f'image bytes do not decode (format {fmt})')}")
                continue
            info.dtypes[str(img.dtype)] += 1
            info.channels[1 if img.ndim == 2 else img.shape[2]] += 1
            hs.append(img.shape[0])
            ws.append(img.shape[1])
        info.sampled = len(picks)
        if hs:
            info.min_hw, info.max_hw = (min(hs), min(ws)), (max(hs), max(ws))
    return info


def write_index(rec_path: str, idx_path: str | None = None, force: bool = False, keys: str = "id") -> str:
    """Scan ``rec_path`` and write its ``.idx`` (``key<TAB>offset``). Keys are the header ids (as im2rec and
    InsightFace write them) or, with ``keys='seq'`` or when ids repeat, the record numbers."""
    if idx_path is None:
        idx_path = os.path.splitext(rec_path)[0] + ".idx"
    if os.path.exists(idx_path) and not force:
        raise FileExistsError(f"{idx_path} exists; pass --force to overwrite it")
    with RecordFile(rec_path) as rf:
        starts = rf.table.start
        if keys == "id":
            h = read_headers(rf)
            ids = h.id.astype(np.int64)
            if (h.image_len < 0).any() or len(np.unique(ids)) != len(ids):
                ids = np.arange(len(rf))
        else:
            ids = np.arange(len(rf))
        text = "".join(f"{k}\t{o}\n" for k, o in zip(ids.tolist(), starts.tolist()))
    d = os.path.dirname(os.path.abspath(idx_path))
    fd, tmp = tempfile.mkstemp(prefix=".idx-", dir=d)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, idx_path)
    return idx_path
