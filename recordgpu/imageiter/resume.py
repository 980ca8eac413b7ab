"""Checkpoint and resume an ``ImageRecordIter`` mid-epoch: ``state_dict()`` / ``load_state_dict()``.

A state is the batch engine's state at the start of the current epoch (batch order, the augmentation
RNG, and the records MXNet parsed in the previous epoch for this one, with their drawn plans) plus the
number of batches taken since. Loading rebuilds that epoch start and replays the taken batches without
decoding (as a mid-epoch ``reset()`` does), so the next batch is the one the uninterrupted iterator
would give next — same records, same augmentation — across epochs and ``round_batch`` wraps, whatever
the prefetch depth, thread count or device of either iterator.

The state is plain JSON-able data (dicts, lists, str, int, float, bool, None), also picklable; it holds no
pixels: a mean image is referred to, not copied. It records the settings that decide which samples come
out and their values, and a fingerprint of the records' layout; loading into an iterator that differs
in any of them raises ValueError and leaves that iterator where it was. Settings that only change how
batches are made (``prefetch_buffer``, ``preprocess_threads``, ``device``, ``device_id``, names) may differ,
and so may file paths (the data may move; its layout must not).
"""
from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import warnings
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np

from .._version import __version__
from ..augment.plan import MeanImage
from ..rng import MT19937
from .engine import BatchEngine, EngineState, Parsed, Slot

if TYPE_CHECKING:
    from .iterator import ImageRecordIter

__all__ = ["iterator_state", "load_iterator_state", "STATE_FORMAT", "STATE_VERSION"]

STATE_FORMAT = "recordgpu.ImageRecordIter.state"
STATE_VERSION = 1

# Parameters that do not change which samples come out or their values. Paths are replaced by the data
# fingerprint (records may move); every other parameter, including ones added later, must match.
_FREE_PARAMS = frozenset({"prefetch_buffer", "preprocess_threads", "device", "device_id", "ctx", "verbose",
                          "data_name", "label_name", "ignored", "path_imgrec", "path_imgidx", "path_imglist",
                          "mean_img"})
_MT_WORDS = 624


# -- what must match -----------------------------------------------------------------------------------
def _jsonable(v: Any) -> Any:
    return json.loads(json.dumps(v))


def _settings(it: ImageRecordIter) -> dict[str, Any]:
    p = it.params
    out = {f.name: _jsonable(getattr(p, f.name)) for f in dataclasses.fields(p) if f.name not in _FREE_PARAMS}
    out["path_imglist"] = bool(p.path_imglist)  # whether labels come from a list; its location may change
    out["mean_img"] = bool(p.mean_img)
    return out


def _data_fingerprint(source) -> dict[str, Any]:
    start = np.ascontiguousarray(source.start, "<i8")
    end = np.ascontiguousarray(source.end, "<i8")
    return {"records": len(source), "bytes": int(source.total_bytes), "indexed": bool(source.indexed),
            "layout_crc32": zlib.crc32(end.tobytes(), zlib.crc32(start.tobytes()))}


def _mismatch(saved: dict, current: dict) -> dict[str, tuple[Any, Any]]:
    keys = sorted(set(saved) | set(current))
    # compared as JSON text, so NaN equals NaN and 1 equals 1.0 only where JSON says so
    return {k: (saved.get(k), current.get(k)) for k in keys
            if json.dumps(saved.get(k)) != json.dumps(current.get(k))}


def _check_compatible(it: ImageRecordIter, state: Any) -> None:
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError("not an ImageRecordIter state (make one with state_dict())")
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"unsupported ImageRecordIter state version {state.get('version')!r} "
                         f"(this recordgpu reads version {STATE_VERSION})")
    diff = _mismatch(state.get("params", {}), _settings(it))
    if diff:
        listed = ", ".join(f"{k}={s!r} (this iterator: {c!r})" for k, (s, c) in diff.items())
        raise ValueError(f"the state was saved by an iterator with other settings: {listed}")
    diff = _mismatch(state.get("data", {}), _data_fingerprint(it._engine.source))
    if diff:
        listed = ", ".join(f"{k}: saved {s!r}, here {c!r}" for k, (s, c) in diff.items())
        raise ValueError(f"the state was saved on other data (record layout differs: {listed})")


# -- RNG and plans as JSON -------------------------------------------------------------------------------
def _rng_to_json(st: dict) -> dict:
    inner = st["state"]
    if inner.get("bit_generator") != "MT19937":
        raise ValueError(f"unexpected RNG state {inner.get('bit_generator')!r}")
    return {"seed": int(st["seed"]), "key": [int(v) for v in inner["state"]["key"]],
            "pos": int(inner["state"]["pos"])}


def _rng_from_json(d: dict) -> dict:
    key = np.asarray(d["key"], np.int64)
    if key.shape != (_MT_WORDS,) or key.min() < 0 or key.max() > 0xFFFFFFFF or not 0 <= int(d["pos"]) <= _MT_WORDS:
        raise ValueError("the state's RNG state is malformed")
    st = {"seed": int(d["seed"]), "state": {"bit_generator": "MT19937",
                                            "state": {"key": key.astype(np.uint32), "pos": int(d["pos"])}}}
    MT19937(0).setstate(st)  # let numpy validate it too
    return st


def _encode(v: Any) -> Any:
    """A plan (frozen dataclasses of numbers, strings and tuples) as JSON values, keeping numpy scalar
    types (float32 arithmetic depends on them) and tuples; the mean image becomes a reference."""
    if isinstance(v, MeanImage):
        return {"mean_image": True}
    if isinstance(v, np.generic):  # before the Python types: np.float64 is a float
        return {"np": v.dtype.str, "v": v.item()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, tuple):
        return {"t": [_encode(x) for x in v]}
    if isinstance(v, list):
        return [_encode(x) for x in v]
    if isinstance(v, np.ndarray):
        return {"nd": v.dtype.str, "shape": list(v.shape), "v": v.ravel().tolist()}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        cls = type(v)
        return {"dc": f"{cls.__module__}:{cls.__qualname__}",
                "f": {f.name: _encode(getattr(v, f.name)) for f in dataclasses.fields(v)}}
    raise TypeError(f"cannot store a {type(v).__name__} in an iterator state")


def _plan_class(name: str) -> type:
    module, _, qualname = name.partition(":")
    if not module.startswith("recordgpu.") or "." in qualname:
        raise ValueError(f"the state names an unexpected plan type {name!r}")
    try:
        cls = getattr(importlib.import_module(module), qualname)
    except (ImportError, AttributeError):
        raise ValueError(f"the state names plan type {name!r}, which this recordgpu does not have") from None
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise ValueError(f"the state names plan type {name!r}, which is not a plan type")
    return cls


def _decode(v: Any, mean_image: MeanImage | None) -> Any:
    if isinstance(v, list):
        return [_decode(x, mean_image) for x in v]
    if not isinstance(v, dict):
        return v
    if "mean_image" in v:
        if mean_image is None:
            raise ValueError("the state's plans use a mean image, but this iterator has none")
        return mean_image
    if "np" in v:
        return np.dtype(v["np"]).type(v["v"])
    if "t" in v:
        return tuple(_decode(x, mean_image) for x in v["t"])
    if "nd" in v:
        return np.asarray(v["v"], np.dtype(v["nd"])).reshape(v["shape"])
    if "dc" in v:
        cls = _plan_class(v["dc"])
        names = {f.name for f in dataclasses.fields(cls)}
        if set(v["f"]) != names:
            raise ValueError(f"the state's {cls.__name__} has fields {sorted(v['f'])}, this recordgpu's has "
                             f"{sorted(names)} (saved by another version?)")
        obj = cls.__new__(cls)  # exact field values, no re-validation (plans are frozen dataclasses)
        for k, x in v["f"].items():
            object.__setattr__(obj, k, _decode(x, mean_image))
        return obj
    raise ValueError(f"malformed plan value in the state: {v!r}")


def _mean_image_of(plan: Any) -> MeanImage | None:
    """The mean image a freshly drawn plan refers to (the iterator's own object), if any."""
    if isinstance(plan, MeanImage):
        return plan
    if isinstance(plan, tuple):
        for x in plan:
            if (m := _mean_image_of(x)) is not None:
                return m
    elif dataclasses.is_dataclass(plan) and not isinstance(plan, type):
        for f in dataclasses.fields(plan):
            if (m := _mean_image_of(getattr(plan, f.name))) is not None:
                return m
    return None


# -- the epoch start -----------------------------------------------------------------------------------------
def _epoch_start_to_json(st: EngineState) -> dict:
    pending = [{"seq": int(seq), "record": int(p.record), "id": int(p.image_id),
                "plan": None if p.plan is None else _encode(p.plan)} for seq, p in sorted(st.pending.items())]
    return {"order": _jsonable(st.order), "rng": _rng_to_json(st.rng), "pending": pending,
            "stream": [[int(s.parse_seq), bool(s.wrapped)] for s in st.stream], "batches": int(st.batches)}


def _epoch_start_from_json(engine: BatchEngine, d: dict) -> EngineState:
    """Rebuild an epoch start. The parsed-ahead records are parsed again (labels, decode errors, images
    decoded for planning) by a scratch copy of the engine with a throwaway RNG; their saved plans replace
    the throwaway ones. Never touches ``engine`` itself, so it is safe while its producer runs."""
    scratch = copy.copy(engine)
    scratch.rng = MT19937(0)
    n = len(engine.source)
    pending: dict[int, Parsed] = {}
    for e in d["pending"]:
        rec = int(e["record"])
        if not 0 <= rec < n:
            raise ValueError(f"the state names record {rec}, but the data has {n} records")
        p = scratch._parse(rec, 0)
        if p.image_id != int(e["id"]):
            raise ValueError(f"record {rec} has id {p.image_id} here but id {e['id']} in the state: other data")
        if e["plan"] is None:
            if p.error is None:
                raise ValueError(f"record {rec} was unreadable when the state was saved but reads now")
        else:
            if p.error is not None:
                raise ValueError(f"record {rec} cannot be read now: {p.error}")
            p = dataclasses.replace(p, plan=_decode(e["plan"], _mean_image_of(p.plan)))
        pending[int(e["seq"])] = p
    stream = [Slot(int(seq), bool(w)) for seq, w in d["stream"]]
    return EngineState(order=copy.deepcopy(d["order"]), rng=_rng_from_json(d["rng"]), pending=pending,
                       stream=stream, batches=int(d["batches"]))


# -- public API ------------------------------------------------------------------------------------------------
def iterator_state(it: ImageRecordIter) -> dict:
    """The position of ``it`` as JSON-able data (see the module docstring); ``it`` keeps running."""
    eng = it._engine
    first_pending = it._first is not None
    for _ in range(100):  # the producer may add to the set while we copy it
        try:
            bad = sorted(int(r) for r in eng.bad_records)
            break
        except RuntimeError:
            continue
    else:
        raise RuntimeError("could not read the unreadable-record set while the producer changed it")
    return {
        "format": STATE_FORMAT, "version": STATE_VERSION, "recordgpu": __version__,
        "params": _settings(it), "data": _data_fingerprint(eng.source),
        "epoch_start": _epoch_start_to_json(it._epoch_start),
        # batches the producer handed over since the epoch start; the first may still wait in the iterator
        "position": {"consumed": int(it._consumed), "first_pending": first_pending,
                     "exhausted": bool(it._exhausted)},
        "bad_records": bad, "skipped": int(eng.skipped),
    }


def _replay(it: ImageRecordIter, start: EngineState, consumed: int, exhausted: bool) -> None:
    """Put the engine ``consumed`` batches past ``start`` (and past the end call if ``exhausted``)."""
    eng = it._engine
    eng.restore(start)
    with warnings.catch_warnings():  # records skipped here were reported when they were first met
        warnings.filterwarnings("ignore", message="skipping unreadable record", category=RuntimeWarning)
        for k in range(consumed):
            if eng.next_batch(plan_only=True) is None:
                raise ValueError(f"the state's position (batch {consumed} of its epoch) lies past the end of "
                                 f"the epoch, which has {k} batches here")
        if exhausted and eng.next_batch(plan_only=True) is not None:
            raise ValueError("the state says its epoch had ended, but this iterator has more batches in it")
    it._epoch_start = start
    it._consumed = consumed
    it._exhausted = exhausted
    it._current = None
    if not exhausted:
        it._start_prefetch()


def _position(state: dict) -> tuple[int, bool, bool, list[int], int]:
    try:
        pos = state["position"]
        consumed, first, exhausted = int(pos["consumed"]), bool(pos["first_pending"]), bool(pos["exhausted"])
        bad = [int(r) for r in state["bad_records"]]
        skipped = int(state["skipped"])
    except (KeyError, TypeError, ValueError):
        raise ValueError("the ImageRecordIter state is malformed (position)") from None
    if consumed < 0 or (first and (consumed < 1 or exhausted)) or skipped < 0:
        raise ValueError("the ImageRecordIter state is malformed (position)")
    return consumed, first, exhausted, bad, skipped


def load_iterator_state(it: ImageRecordIter, state: dict) -> None:
    """Move ``it`` to the position ``state`` (from :func:`iterator_state`) records.

    Raises ValueError, leaving ``it`` where it was, when the state does not fit ``it`` (other settings or
    data, another format version, a malformed state); RuntimeError when ``it`` is closed.
    """
    if it._state.get("engine") is None:
        raise RuntimeError("the iterator is closed")
    _check_compatible(it, state)
    consumed, first_pending, exhausted, bad, skipped = _position(state)
    eng = it._engine
    n = len(eng.source)
    if any(not 0 <= r < n for r in bad):
        raise ValueError("the ImageRecordIter state names unreadable records outside the data")
    try:
        start = _epoch_start_from_json(eng, state["epoch_start"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"the ImageRecordIter state is malformed (epoch start: {e!r})") from None
    old = (it._epoch_start, it._consumed, it._first, it._exhausted, eng.skipped)
    it._stop_prefetch()
    try:
        eng.bad_records.update(bad)  # consumed batches skipped them: the replay must too
        # a first batch still waiting in the saved iterator is made again here, as the constructor does
        _replay(it, start, consumed - 1 if first_pending else consumed, exhausted)
        it._first = it._fetch() if first_pending else None
        if first_pending and it._first is None:
            raise ValueError("the state's position lies past the end of its epoch")
        eng.skipped = skipped
    except BaseException:
        it._stop_prefetch()
        old_start, old_consumed, old_first, old_exhausted, old_skipped = old
        _replay(it, old_start, old_consumed, old_exhausted)
        it._first = old_first
        eng.skipped = old_skipped
        raise
