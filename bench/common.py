"""Shared bits of the benchmark harness: plain-text tables, the machine summary, JSON result files."""
from __future__ import annotations

import json
import os
import platform
import sys
from typing import Any, Sequence

import numpy as np


def machine_summary() -> str:
    """One line naming the CPU, core count, memory, OS and Python that a result was measured on."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = f", {int(line.split()[1]) / 2**20:.0f} GiB RAM"
                    break
    except OSError:
        pass
    cores = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cores
    core_txt = f"{usable} cores" if usable == cores else f"{usable} of {cores} cores usable"
    return (f"{core_txt} ({model}){mem}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, numpy {np.__version__}")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[bool] | None = None) -> str:
    """A plain-text table with a header rule; ``right[i]`` right-aligns column ``i`` (numbers)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    if any(len(r) != len(headers) for r in cells):
        raise ValueError("every row must have one cell per header")
    right = list(right) if right is not None else [False] * len(headers)
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if right[i] else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def fmt_num(x: float | None, digits: int = 0) -> str:
    """Thousands-separated number, or '-' for a missing value."""
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` (plus the machine summary and command line) as indented JSON."""
    doc = {"machine": machine_summary(), "argv": sys.argv, **payload}
    with open(path, "w") as f:
        json.dump(doc, f, indent=2, default=float)
        f.write("\n")
