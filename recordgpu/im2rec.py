"""``im2rec``: make image lists and pack images into ``.rec``/``.idx``, as MXNet 1.9.1's ``tools/im2rec.py``.

Same command line, same ``.lst`` bytes (Python's ``random.seed(100)`` shuffle, label per directory, chunks and
train/test/val splits, ``%f`` labels), same record headers, ids and ``.idx`` keys, the same pixels for re-encoded
images and the same bytes for ``--pass-through`` (spec ``mxnet-1.9.1.md`` §2)::

    recordgpu im2rec data/train images/ --list --recursive       # -> data/train.lst
    recordgpu im2rec data/train images/ --resize 256 --num-thread 8   # -> data/train.rec + data/train.idx

Beyond MXNet: images are read at full depth (``--color -1`` keeps 16-bit data and ``--encoding .png``/``.tiff``
store it losslessly; ``--encoding .npy`` stores uint8/uint16/int16/float32 arrays in recordgpu's ``.npy``
payload, which MXNet cannot decode); ``.npy`` source files are read as images; data that the chosen encoding
would silently cut to 8 bits is an error that names a lossless encoding; a bad image stops the run with its path
(``--skip-errors`` reports it and goes on); ``--num-thread`` uses threads and keeps the list order; outputs are
written under temporary names and renamed when complete, so an interrupted run never leaves a partial
``.rec``/``.idx`` under the final names; a progress bar is shown when stderr is a terminal (instead of MXNet's
``time: ... count: ...`` lines and its misleading "multiprocessing not available" line). ``.lst`` files of a
pack run are processed in sorted order (MXNet: ``os.listdir`` order).

Lossless encodings that the GPU path decodes at 16 bits (need imagecodecs, ``pip install 'recordgpu[codecs]'``):
``--encoding .j2k`` (JPEG 2000, reversible; uint8, uint16, int16) and ``--encoding .ljpeg`` (lossless JPEG,
SOF3; uint8, uint16; nvJPEG decodes it on the GPU for one channel).

DICOM (needs pydicom, ``pip install 'recordgpu[dicom]'``; list them with ``--exts .dcm``): files named
``*.dcm`` or starting with the DICOM preamble are read through :mod:`recordgpu.dicom` at their stored depth
(``--color -1``; ``0``/``1`` only for 8-bit data), with ``--dicom-rescale`` storing modality values (HU) and
``--dicom-invert-monochrome1`` inverting MONOCHROME1. Each frame becomes one record whose image payload carries
the frame's metadata (:mod:`recordgpu.meta`; ``PixelSpacing`` follows ``--resize``). Frame ``f`` of the line
with index ``i`` has header ``id = i``, ``id2 = f`` and ``.idx`` key ``f * 2**32 + i``
(:func:`recordgpu.dicom.frame_key`), so single-frame files keep MXNet's key ``i``.

Python API: :func:`make_list`, :func:`list_image`, :func:`write_list`, :func:`read_list`, :func:`encode_item`,
:func:`encode_records`, :func:`pack_list` and :func:`main` (the command line).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import secrets
import struct
import sys
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np

from . import codecs, dicom
from .meta import attach_meta
from .progress import Progress
from .recordio import IRHeader, MXIndexedRecordIO, pack

__all__ = [
    "DEFAULT_EXTS", "ENCODINGS", "Im2RecError", "PackOptions", "PackResult", "list_image", "format_line",
    "write_list", "split_list", "make_list", "read_list", "find_lists", "make_header", "center_crop",
    "resize_short", "encode_item", "encode_records", "pack_list", "build_parser", "main",
]

log = logging.getLogger(__name__)

#: MXNet's default ``--exts``: kept exactly so that default lists are byte-identical to MXNet's.
DEFAULT_EXTS: tuple[str, ...] = (".jpeg", ".jpg", ".png")
#: ``--encoding`` choices: MXNet's ``.jpg``/``.png`` plus lossless containers for 16-bit and signed/float data.
ENCODINGS: tuple[str, ...] = (".jpg", ".png", ".tiff", ".npy", ".j2k", ".ljpeg")

Item = list  # [index:int, relpath:str, label0:float, label1:float, ...] as read_list yields it


class Im2RecError(Exception):
    """One image could not be packed. ``path`` is the file, ``key`` its ``.lst`` index, ``reason`` why."""

    def __init__(self, path: str, reason: str, key: int | None = None) -> None:
        self.path = path
        self.reason = reason
        self.key = key
        where = path if key is None else f"{path} (.lst index {key})"
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason, self.key))


# ----------------------------------------------------------------------------------------------- list mode

def list_image(root: str, recursive: bool, exts: Sequence[str],
               report: Callable[[str, int], None] | None = None) -> Iterator[tuple[int, str, int]]:
    """Yield ``(index, path relative to root, label)`` for the images under ``root`` (MXNet's ``list_image``).

    Non-recursive: the sorted files of ``root``, label 0. Recursive: a pre-order walk with sorted names
    (symlinks followed); each directory gets the next label when its first matching file is seen. After a
    recursive walk ``report(relative_dir, label)`` is called per labelled directory (default: print
    ``"<dir> <label>"`` to stdout as MXNet does). ``exts`` are matched against the lower-cased suffix.
    """
    if report is None:
        report = _print_label
    i = 0
    if recursive:
        cat: dict[str, int] = {}
        for path, dirs, files in os.walk(root, followlinks=True):
            dirs.sort()
            files.sort()
            for fname in files:
                fpath = os.path.join(path, fname)
                suffix = os.path.splitext(fname)[1].lower()
                if os.path.isfile(fpath) and suffix in exts:
                    if path not in cat:
                        cat[path] = len(cat)
                    yield (i, os.path.relpath(fpath, root), cat[path])
                    i += 1
        for k, v in sorted(cat.items(), key=lambda x: x[1]):
            report(os.path.relpath(k, root), v)
    else:
        for fname in sorted(os.listdir(root)):
            fpath = os.path.join(root, fname)
            suffix = os.path.splitext(fname)[1].lower()
            if os.path.isfile(fpath) and suffix in exts:
                yield (i, os.path.relpath(fpath, root), 0)
                i += 1


def _print_label(directory: str, label: int) -> None:
    print(directory, label, flush=True)


def format_line(item: Sequence) -> str:
    """One ``.lst`` line: ``index<TAB>label<TAB>...<TAB>path<LF>``, labels with ``%f`` (6 decimals)."""
    return "%d\t" % item[0] + "".join("%f\t" % j for j in item[2:]) + "%s\n" % item[1]


def write_list(path_out: str, image_list: Iterable[Sequence]) -> None:
    """Write ``(index, path, label, ...)`` items as a ``.lst`` file (MXNet's ``write_list`` format).

    The file appears under its name only once complete.
    """
    with _atomic_output(path_out) as tmp:
        # surrogateescape: file names that are not valid UTF-8 are written back as their original bytes.
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as fout:
            for item in image_list:
                fout.write(format_line(item))


def split_list(image_list: Sequence, prefix: str, chunks: int = 1, train_ratio: float = 1.0,
               test_ratio: float = 0.0) -> list[tuple[str, list]]:
    """The ``(lst_path, items)`` pairs MXNet's ``make_list`` writes, in its order (spec §2.2).

    The split points use the chunk size, not the length of the (possibly shorter) last chunk, as MXNet does.
    """
    if chunks < 1:
        raise ValueError(f"chunks must be >= 1, not {chunks}")
    n = len(image_list)
    chunk_size = (n + chunks - 1) // chunks
    out: list[tuple[str, list]] = []
    for i in range(chunks):
        chunk = list(image_list[i * chunk_size:(i + 1) * chunk_size])
        str_chunk = "_%d" % i if chunks > 1 else ""
        sep = int(chunk_size * train_ratio)
        sep_test = int(chunk_size * test_ratio)
        if train_ratio == 1.0:
            out.append((prefix + str_chunk + ".lst", chunk))
        else:
            if test_ratio:
                out.append((prefix + str_chunk + "_test.lst", chunk[:sep_test]))
            if train_ratio + test_ratio < 1.0:
                out.append((prefix + str_chunk + "_val.lst", chunk[sep_test + sep:]))
            out.append((prefix + str_chunk + "_train.lst", chunk[sep_test:sep_test + sep]))
    return out


def make_list(prefix: str, root: str, *, exts: Sequence[str] = DEFAULT_EXTS, recursive: bool = False,
              shuffle: bool = True, chunks: int = 1, train_ratio: float = 1.0, test_ratio: float = 0.0,
              report: Callable[[str, int], None] | None = None) -> list[str]:
    """List the images under ``root`` and write ``<prefix>[_<chunk>][_train|_val|_test].lst``.

    Byte-identical to MXNet's ``im2rec.py --list``: indices are assigned in traversal order, then the list is
    shuffled with Python's ``random`` seeded with 100 (unless ``shuffle=False``), then chunked and split.
    Returns the paths written. ``report`` is passed to :func:`list_image`.
    """
    image_list = list(list_image(root, recursive, exts, report))
    if shuffle:
        # A private generator seeded like random.seed(100) gives the same permutation without touching
        # the caller's global random state.
        random.Random(100).shuffle(image_list)
    written = []
    for path, items in split_list(image_list, prefix, chunks, train_ratio, test_ratio):
        write_list(path, items)
        written.append(path)
    return written


# ------------------------------------------------------------------------------------------ reading lists

def read_list(path_in: str) -> Iterator[Item]:
    """Yield ``[index:int, path:str, label0:float, ...]`` per valid line of a ``.lst`` (MXNet's ``read_list``).

    Fields are TAB-separated: index, one or more labels, path. Lines with fewer than three fields, or whose
    index is not an integer or labels not numbers, are skipped with MXNet's message on stdout.
    """
    with open(path_in, encoding="utf-8", errors="surrogateescape") as fin:
        for line in fin:
            parts = [p.strip() for p in line.strip().split("\t")]
            if len(parts) < 3:
                print("lst should have at least has three parts, but only has %s parts for %s"
                      % (len(parts), parts), flush=True)
                continue
            try:
                item = [int(parts[0])] + [parts[-1]] + [float(p) for p in parts[1:-1]]
            except Exception as e:  # int()/float() raise ValueError; report whatever it was, as MXNet does
                print("Parsing lst met error for %s, detail: %s" % (parts, e), flush=True)
                continue
            yield item


def find_lists(prefix: str) -> tuple[str, list[str]]:
    """``(working_dir, lst_paths)`` for pack mode: the files in the prefix's folder whose absolute path starts
    with ``prefix`` and ends with ``.lst`` (a directory prefix selects all its ``.lst`` files). Sorted."""
    prefix = os.path.abspath(prefix)
    working_dir = prefix if os.path.isdir(prefix) else os.path.dirname(prefix)
    files = [os.path.join(working_dir, f) for f in sorted(os.listdir(working_dir))]
    return working_dir, [f for f in files
                         if os.path.isfile(f) and f.startswith(prefix) and f.endswith(".lst")]


# ------------------------------------------------------------------------------------------- one image

@dataclass(frozen=True)
class PackOptions:
    """Pack-mode settings; names and defaults as MXNet's ``im2rec.py`` options (spec §2.1).

    ``num_thread`` > 1 encodes with that many threads (records still in list order); ``skip_errors`` reports
    and skips images that cannot be packed instead of stopping; ``progress`` None shows a progress bar only
    when stderr is a terminal. ``dicom_rescale`` and ``dicom_invert_monochrome1`` apply to DICOM files
    (:func:`recordgpu.dicom.read_frames`).
    """

    pass_through: bool = False
    resize: int = 0
    center_crop: bool = False
    quality: int = 95
    num_thread: int = 1
    color: int = 1
    encoding: str = ".jpg"
    pack_label: bool = False
    skip_errors: bool = False
    progress: bool | None = None
    dicom_rescale: bool = False
    dicom_invert_monochrome1: bool = False

    def __post_init__(self) -> None:
        if self.color not in (-1, 0, 1):
            raise ValueError(f"color must be -1, 0 or 1, not {self.color!r}")
        if self.resize < 0:
            raise ValueError(f"resize must be >= 0, not {self.resize}")


def make_header(item: Item, pack_label: bool) -> IRHeader:
    """MXNet's record header: all labels when ``pack_label`` and the line has several, else the first."""
    if len(item) > 3 and pack_label:
        return IRHeader(0, item[2:], item[0], 0)
    return IRHeader(0, item[2], item[0], 0)


def center_crop(img: np.ndarray) -> np.ndarray:
    """The central square (MXNet's ``--center-crop``): ``margin = (long - short) // 2`` on the long axis."""
    h, w = img.shape[:2]
    if h > w:
        m = (h - w) // 2
        return img[m:m + w, :]
    m = (w - h) // 2
    return img[:, m:m + h]


def resize_short(img: np.ndarray, size: int) -> np.ndarray:
    """Scale so that the shorter side is ``size`` (MXNet's ``--resize``; floors the long side; bilinear)."""
    h, w = img.shape[:2]
    newsize = (size, h * size // w) if h > w else (w * size // h, size)  # cv2 order: (width, height)
    out = cv2.resize(img, newsize)
    if img.ndim == 3 and out.ndim == 2:  # cv2 drops a single channel axis; keep the caller's layout
        out = out[:, :, None]
    return out


def _read_failure(fullpath: str) -> str:
    if not os.path.exists(fullpath):
        return "no such file"
    if os.path.isdir(fullpath):
        return "is a directory"
    if not os.access(fullpath, os.R_OK):
        return "permission denied"
    if os.path.getsize(fullpath) == 0:
        return "empty file"
    return "not a readable image (unknown format or corrupt data)"


def encode_item(item: Item, root: str, options: PackOptions) -> bytes:
    """The record payload for one ``.lst`` item: header + labels + image bytes.

    Pass-through stores the file's bytes verbatim. Otherwise the image is read at the depth ``color`` asks
    for (``codecs.imread``; DICOM files through :mod:`recordgpu.dicom`), centre-cropped, resized and encoded as
    ``options.encoding``. A multi-frame DICOM file makes several records: use :func:`encode_records` for it.
    Raises :class:`Im2RecError` (naming the file) for anything that goes wrong.
    """
    records = encode_records(item, root, options)
    if len(records) != 1:
        raise Im2RecError(os.path.join(root, item[1]), f"holds {len(records)} frames, one record each; "
                                                       "use encode_records", item[0])
    return records[0][1]


def encode_records(item: Item, root: str, options: PackOptions) -> list[tuple[int, bytes]]:
    """``[(idx_key, payload), ...]`` for one ``.lst`` item: one record, or one per frame of a multi-frame DICOM
    file (keys from :func:`recordgpu.dicom.frame_key`). Raises :class:`Im2RecError` naming the file."""
    fullpath = os.path.join(root, item[1])
    key = item[0]
    header = make_header(item, options.pack_label)
    if fullpath.lower().endswith(".dcm"):
        return _dicom_records(item, fullpath, header, options)
    if options.pass_through:
        try:
            with open(fullpath, "rb") as fin:
                data = fin.read()
        except OSError as e:
            raise Im2RecError(fullpath, f"cannot read file: {e.strerror or e}", key) from e
        if dicom.is_dicom(fullpath, data[:132]):
            return _dicom_records(item, fullpath, header, options)
    else:
        try:
            img = codecs.imread(fullpath, options.color)
        except cv2.error as e:  # e.g. imdecode's assertion on an empty file: say what is wrong with the file
            raise Im2RecError(fullpath, f"cannot read image: {_read_failure(fullpath)}", key) from e
        except Exception as e:  # whatever reading this one file raised (DecodeError, EOFError, ...) is its error
            raise Im2RecError(fullpath, f"cannot read image: {e}", key) from e
        if img is None:
            # OpenCV cannot read DICOM; only then look for the preamble, so other images cost no extra read.
            if dicom.is_dicom(fullpath):
                return _dicom_records(item, fullpath, header, options)
            raise Im2RecError(fullpath, f"cannot read image: {_read_failure(fullpath)}", key)
        img = _crop_resize(img, fullpath, key, options)
        data = _encode(img, fullpath, key, options)
    return [(key, _pack(header, data, fullpath, item))]


def _crop_resize(img: np.ndarray, fullpath: str, key: int, options: PackOptions) -> np.ndarray:
    if img.ndim not in (2, 3) or img.shape[0] == 0 or img.shape[1] == 0:
        raise Im2RecError(fullpath, f"expected an (H, W) or (H, W, C) image, got shape {img.shape}", key)
    try:
        if options.center_crop:
            img = center_crop(img)
        if options.resize:
            img = resize_short(img, options.resize)
    except Exception as e:
        raise Im2RecError(fullpath, f"cannot resize {img.dtype} image of shape {img.shape} to short side "
                                    f"{options.resize}: {getattr(e, 'err', None) or e}", key) from e
    return img


def _encode(img: np.ndarray, fullpath: str, key: int, options: PackOptions) -> bytes:
    try:
        return codecs.encode(img, options.encoding, options.quality)
    except Exception as e:
        raise Im2RecError(fullpath, f"cannot encode {img.dtype} image of shape {img.shape} as "
                                    f"{options.encoding}: {e}", key) from e


def _pack(header: IRHeader, data: bytes, fullpath: str, item: Item) -> bytes:
    try:
        return pack(header, data)
    except (struct.error, OverflowError, ValueError) as e:
        raise Im2RecError(fullpath, f"cannot pack record header (id {item[0]}, labels {item[2:]}): {e}",
                          item[0]) from e


def _dicom_records(item: Item, fullpath: str, header: IRHeader, options: PackOptions) -> list[tuple[int, bytes]]:
    key = item[0]
    if options.pass_through:
        raise Im2RecError(fullpath, "a DICOM file cannot be passed through (image readers cannot decode DICOM); "
                                    "drop --pass-through to pack its frames", key)
    try:
        frames = list(dicom.read_frames(fullpath, rescale=options.dicom_rescale,
                                        invert_monochrome1=options.dicom_invert_monochrome1))
    except dicom.DicomError as e:
        reason = str(e)
        reason = reason[len(fullpath) + 2:] if reason.startswith(fullpath + ": ") else reason
        raise Im2RecError(fullpath, reason, key) from e
    multi = len(frames) > 1
    records = []
    for fr in frames:
        img = _dicom_color(fr.image, fr.meta, fullpath, key, options.color)
        h, w = img.shape[:2]
        img = _crop_resize(img, fullpath, key, options)
        spacing = fr.meta.get("PixelSpacing")
        if options.resize and isinstance(spacing, list) and len(spacing) == 2:
            # Spacing after a centre crop is unchanged; after the resize each axis scales with its size.
            ch, cw = (min(h, w), min(h, w)) if options.center_crop else (h, w)
            fr.meta["PixelSpacing"] = [spacing[0] * ch / img.shape[0], spacing[1] * cw / img.shape[1]]
        data = _encode(img, fullpath, key, options)
        try:
            data = attach_meta(data, fr.meta)
            rec_key = dicom.frame_key(key, fr.frame) if multi else key
        except ValueError as e:
            raise Im2RecError(fullpath, f"frame {fr.frame}: {e}", key) from e
        records.append((rec_key, _pack(header._replace(id2=fr.frame), data, fullpath, item)))
    return records


def _dicom_color(img: np.ndarray, meta: dict, fullpath: str, key: int, color: int) -> np.ndarray:
    """DICOM pixels for ``--color``: as stored for -1; 8-bit gray (0) or BGR (1) for 8-bit data only."""
    if color == -1:
        return img
    if img.dtype != np.uint8:
        raise Im2RecError(fullpath, f"DICOM pixel data are {img.dtype}; --color {color} would cut them to 8 bits. "
                                    "Use --color -1 to keep the stored values", key)
    c = 1 if img.ndim == 2 else img.shape[2]
    if color == 0 and c > 1:
        meta["PhotometricInterpretation"] = "MONOCHROME2"
        return cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY if c == 4 else cv2.COLOR_BGR2GRAY)
    if color == 1 and c == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if color == 1 and c == 4:
        return np.ascontiguousarray(img[:, :, :3])
    return img


def _try_encode(item: Item, root: str, options: PackOptions) -> list[tuple[int, bytes]] | Im2RecError:
    try:
        return encode_records(item, root, options)
    except Im2RecError as e:
        return e


def _encoded(items: Iterable[Item], root: str, options: PackOptions
             ) -> Iterator[tuple[Item, list[tuple[int, bytes]] | Im2RecError]]:
    """``(item, [(key, payload), ...] or error)`` in list order; threads encode ahead within a bounded window."""
    if options.num_thread <= 1:
        for item in items:
            yield item, _try_encode(item, root, options)
        return
    window = 4 * options.num_thread
    pool = ThreadPoolExecutor(max_workers=options.num_thread, thread_name_prefix="im2rec")
    pending: deque[tuple[Item, Future]] = deque()
    try:
        for item in items:
            pending.append((item, pool.submit(_try_encode, item, root, options)))
            if len(pending) >= window:
                done_item, fut = pending.popleft()
                yield done_item, fut.result()
        while pending:
            done_item, fut = pending.popleft()
            yield done_item, fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------------------------- pack mode

@dataclass
class PackResult:
    """What :func:`pack_list` wrote: the final paths, the number of records (one per frame of a multi-frame
    DICOM file) and the skipped images."""

    lst_path: str
    rec_path: str
    idx_path: str
    written: int = 0
    failures: list[Im2RecError] = field(default_factory=list)


@contextlib.contextmanager
def _atomic_output(path: str) -> Iterator[str]:
    """A temporary name beside ``path``, renamed to ``path`` on success and removed on any failure."""
    tmp = _temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _temp_name(path: str) -> str:
    head, tail = os.path.split(os.path.abspath(path))
    # Hidden, unique, and not ending in .lst/.rec/.idx, so no tool mistakes it for a finished file.
    return os.path.join(head, f".{tail}.{os.getpid()}-{secrets.token_hex(4)}.part")


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _count_lines(path: str) -> int:
    n = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            n += block.count(b"\n")
    return n


def _log_skip(error: Im2RecError) -> None:
    log.error("skipped %s", error)


def pack_list(lst_path: str, root: str, out_prefix: str, options: PackOptions | None = None,
              on_skip: Callable[[Im2RecError], None] | None = None) -> PackResult:
    """Pack the images of one ``.lst`` into ``<out_prefix>.rec`` and ``<out_prefix>.idx``.

    Records follow the list order; each record's id and ``.idx`` key is the line's index (spec §2.4); the
    frames of a multi-frame DICOM file follow each other, keyed as the module docstring says.
    Both files are written under temporary names and renamed only when complete, so a failed or interrupted
    run leaves no ``.rec``/``.idx`` under the final names (earlier files there are left untouched).

    Raises :class:`Im2RecError` at the first image that cannot be packed, unless ``options.skip_errors``:
    then the image is left out, reported to ``on_skip`` as it happens (default: logged as an error) and
    listed in ``PackResult.failures``.
    """
    options = options or PackOptions()
    on_skip = on_skip or _log_skip
    rec_path, idx_path = out_prefix + ".rec", out_prefix + ".idx"
    result = PackResult(lst_path, rec_path, idx_path)
    bar = Progress(_count_lines(lst_path), os.path.basename(lst_path), unit="img", enabled=options.progress)

    tmp_rec, tmp_idx = _temp_name(rec_path), _temp_name(idx_path)
    record = None
    try:
        record = MXIndexedRecordIO(tmp_idx, tmp_rec, "w")
        with contextlib.closing(_encoded(read_list(lst_path), root, options)) as stream:
            for item, payload in stream:
                if isinstance(payload, Im2RecError):
                    if not options.skip_errors:
                        raise payload
                    result.failures.append(payload)
                    on_skip(payload)
                else:
                    for key, data in payload:
                        record.write_idx(key, data)
                    result.written += len(payload)
                bar.update()
        record.close()
        # Drop a stale .idx first: a crash between the two renames must not pair the new .rec with an old
        # index. A lone complete .rec is still valid.
        _unlink_quietly(idx_path)
        os.replace(tmp_rec, rec_path)
        os.replace(tmp_idx, idx_path)
    except BaseException:
        if record is not None:
            record.close()
        _unlink_quietly(tmp_rec)
        _unlink_quietly(tmp_idx)
        raise
    finally:
        bar.close()
    return result


# ------------------------------------------------------------------------------------------ command line

_DESCRIPTION = ("Create an image list or make a record database by reading from an image list "
                "(a drop-in for MXNet's tools/im2rec.py).")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """MXNet's ``im2rec.py`` parser (same options, defaults and positional order) plus recordgpu's extras."""
    parser = argparse.ArgumentParser(prog=prog, description=_DESCRIPTION,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("prefix", help="prefix of input/output lst and rec files.")
    parser.add_argument("root", help="path to folder containing images.")

    cgroup = parser.add_argument_group("Options for creating image lists")
    cgroup.add_argument("--list", action="store_true",
                        help="If this is set im2rec will create image list(s) by traversing root folder "
                             "and output to <prefix>.lst. Otherwise im2rec will read <prefix>.lst and create "
                             "a database at <prefix>.rec")
    cgroup.add_argument("--exts", nargs="+", default=list(DEFAULT_EXTS),
                        help="list of acceptable image extensions (compared with the lower-cased suffix; "
                             ".tif, .tiff, .npy and DICOM .dcm files can be listed too). Put it after the "
                             "positionals.")
    cgroup.add_argument("--chunks", type=int, default=1, help="number of chunks.")
    cgroup.add_argument("--train-ratio", type=float, default=1.0, help="Ratio of images to use for training.")
    cgroup.add_argument("--test-ratio", type=float, default=0, help="Ratio of images to use for testing.")
    cgroup.add_argument("--recursive", action="store_true",
                        help="If true recursively walk through subdirs and assign an unique label to images in "
                             "each folder. Otherwise only include images in the root folder and give them "
                             "label 0.")
    cgroup.add_argument("--no-shuffle", dest="shuffle", action="store_false",
                        help="If this is passed, im2rec will not randomize the image order in <prefix>.lst")

    rgroup = parser.add_argument_group("Options for creating database")
    rgroup.add_argument("--pass-through", action="store_true",
                        help="whether to skip transformation and save image as is")
    rgroup.add_argument("--resize", type=int, default=0,
                        help="resize the shorter edge of image to the newsize, original images will be packed "
                             "by default.")
    rgroup.add_argument("--center-crop", action="store_true",
                        help="specify whether to crop the center image to make it rectangular.")
    rgroup.add_argument("--quality", type=int, default=95,
                        help="JPEG quality for encoding, 1-100; or PNG compression for encoding, 1-9")
    rgroup.add_argument("--num-thread", type=int, default=1,
                        help="number of threads to use for encoding. Records keep the order of the input list.")
    rgroup.add_argument("--color", type=int, default=1, choices=[-1, 0, 1],
                        help="specify the color mode of the loaded image. 1: Loads a color image (8-bit BGR). "
                             "Any transparency of image will be neglected. It is the default flag. 0: Loads "
                             "image in grayscale mode (8-bit). -1: Loads image as such including alpha channel "
                             "and 16-bit depth.")
    rgroup.add_argument("--encoding", type=str, default=".jpg", choices=list(ENCODINGS),
                        help="specify the encoding of the images. .jpg holds 8-bit data only; .png keeps "
                             "8/16-bit unsigned data losslessly; .tiff also keeps int16 and float32; .npy is "
                             "recordgpu's raw-array payload (uint8, uint16, int16, float32), which recordgpu "
                             "reads but MXNet cannot decode. .j2k (lossless JPEG 2000: uint8, uint16, int16) and "
                             ".ljpeg (lossless JPEG: uint8, uint16) decode on the GPU and need imagecodecs "
                             "(pip install 'recordgpu[codecs]').")
    rgroup.add_argument("--pack-label", action="store_true",
                        help="Whether to also pack multi dimensional label in the record file")
    rgroup.add_argument("--skip-errors", action="store_true",
                        help="(recordgpu) report each image that cannot be packed, leave it out and go on; "
                             "the exit status is still non-zero. Without it the first such image stops the run.")
    dgroup = parser.add_argument_group("DICOM (recordgpu; needs pip install 'recordgpu[dicom]')",
                                       "*.dcm files and files with the DICOM preamble are read with pydicom at "
                                       "their stored depth (use --color -1); each frame becomes a record and its "
                                       "image carries the frame's metadata (spacing, window, rescale, UID).")
    dgroup.add_argument("--dicom-rescale", action="store_true",
                        help="apply Rescale Slope/Intercept (or the Modality LUT) and store modality values such "
                             "as Hounsfield units: int16 when every value is integral and fits, else float32")
    dgroup.add_argument("--dicom-invert-monochrome1", action="store_true",
                        help="invert MONOCHROME1 images within the stored range (lo + hi - value, [lo, hi] from "
                             "Bits Stored and Pixel Representation) so that they read as MONOCHROME2")
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run im2rec with command-line ``argv`` (default ``sys.argv[1:]``). Returns the exit status:
    0 success, 1 an image or file could not be processed, 2 bad arguments, 130 interrupted."""
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help or a usage error: argparse already printed
        return e.code if isinstance(e.code, int) else 2
    if args.chunks < 1:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: --chunks must be >= 1", file=sys.stderr)
        return 2
    if args.resize < 0:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: --resize must be >= 0", file=sys.stderr)
        return 2
    prefix, root = os.path.abspath(args.prefix), os.path.abspath(args.root)
    try:
        if args.list:
            make_list(prefix, root, exts=args.exts, recursive=args.recursive, shuffle=args.shuffle,
                      chunks=args.chunks, train_ratio=args.train_ratio, test_ratio=args.test_ratio)
            return 0
        return _pack_all(prefix, root, PackOptions(
            pass_through=args.pass_through, resize=args.resize, center_crop=args.center_crop,
            quality=args.quality, num_thread=max(1, args.num_thread), color=args.color,
            encoding=args.encoding, pack_label=args.pack_label, skip_errors=args.skip_errors,
            dicom_rescale=args.dicom_rescale, dicom_invert_monochrome1=args.dicom_invert_monochrome1))
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; no partial .rec/.idx was left", file=sys.stderr)
        return 130
    except (Im2RecError, OSError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1


def _print_skip(error: Im2RecError) -> None:
    print(f"skipped {error}", file=sys.stderr, flush=True)


def _pack_all(prefix: str, root: str, options: PackOptions) -> int:
    working_dir, lsts = find_lists(prefix)
    if not lsts:
        print("Did not find and list file with prefix %s" % prefix, flush=True)
        return 0
    failed = 0
    for lst in lsts:
        print("Creating .rec file from", lst, "in", working_dir, flush=True)
        out_prefix = os.path.join(working_dir, os.path.splitext(os.path.basename(lst))[0])
        result = pack_list(lst, root, out_prefix, options, on_skip=_print_skip)
        failed += len(result.failures)
    if failed:
        print(f"{failed} image(s) could not be packed and were left out (see the messages above)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
