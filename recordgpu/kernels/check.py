"""Compile every kernel with NVRTC for explicit architectures and collect ptxas's resource report.

No GPU or driver is needed. The source compiled is exactly what the GPU loads (:func:`flat_source`), plus
``static_assert`` s that the structs have the sizes :mod:`recordgpu.kernels.params` packs (NVRTC has no
``offsetof``; member offsets follow from the same declarations and are checked by the host build, and CUDA
lays structs out on the device as on the host).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from . import KERNEL_FILES, NVRTC_OPTIONS, flat_source
from .nvrtc import KernelResources, log_problems, nvrtc, parse_ptxas
from .params import LAYOUT

DEFAULT_ARCHS = ("sm_75", "sm_80", "sm_90")


@dataclass
class ArchReport:
    source: str
    arch: str
    ok: bool
    problems: list[str]
    kernels: dict[str, KernelResources] = field(default_factory=dict)
    cubin_bytes: int = 0


def layout_asserts() -> str:
    """``static_assert`` lines pinning the struct sizes to params.py's numpy dtypes."""
    lines = []
    for name, value in LAYOUT:
        if name.startswith("sizeof("):
            lines.append(f'static_assert({name} == {value}, "{name} must be {value} (recordgpu/kernels/params.py)");')
    return "\n".join(lines) + "\n"


def check_kernels(archs: Sequence[str] = DEFAULT_ARCHS, files: Sequence[str] = KERNEL_FILES) -> list[ArchReport]:
    """Compile each kernel file for each architecture; a warning or error makes the report not ok."""
    lib = nvrtc()
    reports = []
    for fname in files:
        src = flat_source(fname) + "\n" + layout_asserts()
        for arch in archs:
            opts = [f"--gpu-architecture={arch}", *NVRTC_OPTIONS, "--ptxas-options=-v"]
            res = lib.compile(src, fname, opts)
            problems = log_problems(res.log)
            if not res.ok and not problems:
                problems = [res.log.strip() or "compilation failed"]
            reports.append(ArchReport(fname, arch, res.ok and not problems, problems, parse_ptxas(res.log),
                                      len(res.cubin)))
    return reports


def format_reports(reports: Sequence[ArchReport]) -> str:
    """The per-architecture table ``--check`` prints: registers and spills per kernel, then any errors."""
    lines = []
    for r in reports:
        status = "ok" if r.ok else "FAILED"
        lines.append(f"{r.source} {r.arch}: {status}, cubin {r.cubin_bytes} bytes")
        for name, k in sorted(r.kernels.items()):
            lines.append(f"  {name:<14} registers {k.registers:>3}  spill stores {k.spill_stores:>4} B  "
                         f"spill loads {k.spill_loads:>4} B  stack {k.stack:>4} B  smem {k.shared:>5} B")
        lines.extend(f"  ! {p}" for p in r.problems)
    return "\n".join(lines)


__all__ = ["check_kernels", "format_reports", "layout_asserts", "ArchReport", "DEFAULT_ARCHS"]
