"""CUDA kernels that execute augmentation plans: their sources, the NVRTC check, the host build.

The ``.cu`` / ``.cuh`` sources live in ``kernels/`` of a source checkout and in ``recordgpu/_kernels/`` of
an installed wheel. The per-pixel code is in headers shared by the GPU build (NVRTC / ``cupy.RawModule``)
and the host build (:mod:`recordgpu.kernels.host`, a C++ shared library run over the same plans), so the
host build proves on a machine without a GPU what the GPU computes. Plans become per-sample parameter
structs in :mod:`recordgpu.kernels.params`; ``python -m recordgpu.kernels --check`` compiles every kernel
with NVRTC for sm_75, sm_80 and sm_90 and reports registers and spills.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

# NVRTC options of every build: no fused multiply-add, so the GPU rounds exactly like the host build
NVRTC_OPTIONS = ("-std=c++17", "--fmad=false")
KERNEL_FILES = ("augment.cu",)
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.MULTILINE)


def kernel_dir() -> Path:
    """Directory holding the kernel sources (installed wheel first, then the source checkout)."""
    pkg = Path(__file__).resolve().parent.parent
    for d in (pkg / "_kernels", pkg.parent / "kernels"):
        if (d / KERNEL_FILES[0]).is_file():
            return d
    raise FileNotFoundError(f"recordgpu kernel sources not found (looked in {pkg / '_kernels'} and "
                            f"{pkg.parent / 'kernels'})")


def read_source(name: str) -> str:
    """Text of one kernel source file (``augment.cu``, ``rg_step.cuh``, ``host_entry.cpp``, ...)."""
    path = kernel_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"no kernel source {name!r} in {kernel_dir()}")
    return path.read_text()


def headers() -> dict[str, str]:
    """Every ``.cuh`` header by file name."""
    return {p.name: p.read_text() for p in sorted(kernel_dir().glob("*.cuh"))}


@lru_cache(maxsize=None)
def flat_source(name: str = "augment.cu") -> str:
    """``name`` with its local ``#include "..."`` headers inlined once each: one self-contained source, so
    a compiled-module cache keyed by the source text sees every header change."""
    seen: set[str] = set()

    def expand(fname: str) -> str:
        text = read_source(fname)

        def repl(m: re.Match) -> str:
            inc = m.group(1)
            if inc in seen:
                return f"// {inc} (already included)"
            seen.add(inc)
            return f"// ---- {inc} ----\n{expand(inc)}\n// ---- end {inc} ----"

        return _INCLUDE.sub(repl, text)

    seen.add(name)
    return expand(name)


@lru_cache(maxsize=1)
def load_module():
    """The kernels as a ``cupy.RawModule``, compiled once per process (needs CuPy and a GPU)."""
    import cupy  # noqa: PLC0415 (optional dependency)

    return cupy.RawModule(code=flat_source(), options=NVRTC_OPTIONS)


__all__ = ["kernel_dir", "read_source", "headers", "flat_source", "load_module", "NVRTC_OPTIONS", "KERNEL_FILES"]
