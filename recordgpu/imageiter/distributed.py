"""``num_parts='auto'`` / ``part_index='auto'``: the partition of the distributed job this process is in.

The world size and rank come from ``torch.distributed`` when this process has initialised its default
process group; otherwise from the ``WORLD_SIZE`` / ``RANK`` environment variables that launchers such as
``torchrun`` set; otherwise the process is alone (1 part, index 0). torch is never imported here: a process
group can only exist if the program imported torch itself.

Each process then reads MXNet's partition ``part_index`` of ``num_parts``
(:func:`recordgpu.imageiter.order.partition_records`): the parts are disjoint and together cover the data.
"""
from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["AUTO", "resolve_parts", "world_and_rank"]

AUTO = "auto"


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={os.environ[name]!r} is not an integer") from None


def world_and_rank() -> tuple[int, int]:
    """``(world size, rank)`` of this process: ``torch.distributed``, else ``WORLD_SIZE``/``RANK``, else (1, 0)."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        world, rank, where = int(dist.get_world_size()), int(dist.get_rank()), "torch.distributed"
    else:
        world, rank = _env_int("WORLD_SIZE"), _env_int("RANK")
        if world is None and rank is None:
            return 1, 0
        if world is None or rank is None:
            have, missing = ("RANK", "WORLD_SIZE") if world is None else ("WORLD_SIZE", "RANK")
            raise ValueError(f"environment variable {have} is set but {missing} is not: cannot tell this "
                             "process's part (set both, or pass num_parts and part_index)")
        where = "the WORLD_SIZE and RANK environment variables"
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"{where} give rank {rank} of world size {world}: need world size >= 1 and "
                         "0 <= rank < world size")
    return world, rank


def _is_auto(v: Any) -> bool:
    return isinstance(v, str) and v == AUTO


def _as_int(name: str, v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError(f"{name} must be an integer or 'auto', got {v!r}")
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            raise ValueError(f"{name} must be an integer or 'auto', got {v!r}") from None
    try:
        return v.__index__()
    except (AttributeError, TypeError):
        raise ValueError(f"{name} must be an integer or 'auto', got {v!r}") from None


def resolve_parts(num_parts: int | str, part_index: int | str) -> tuple[int, int]:
    """``(num_parts, part_index)`` with ``'auto'`` replaced: ``num_parts`` by the world size, ``part_index``
    by the rank (:func:`world_and_rank`). Other values are returned as ints.

    ``part_index='auto'`` needs ``num_parts`` to be ``'auto'`` or the world size (otherwise the ranks would
    not share out the whole data); ValueError otherwise, and for an index outside ``[0, num_parts)``.
    """
    auto_n, auto_i = _is_auto(num_parts), _is_auto(part_index)
    n = None if auto_n else _as_int("num_parts", num_parts)
    i = None if auto_i else _as_int("part_index", part_index)
    if auto_n or auto_i:
        world, rank = world_and_rank()
        if auto_i and n is not None and n != world:
            raise ValueError(f"part_index='auto' is this process's rank ({rank} of {world} processes), so "
                             f"num_parts must be 'auto' or {world}, got {n}")
        n = world if auto_n else n
        i = rank if auto_i else i
    if n < 1:
        raise ValueError(f"num_parts must be at least 1, got {n}")
    if not 0 <= i < n:
        raise ValueError(f"part_index must be in [0, num_parts) = [0, {n}), got {i}")
    return n, i
