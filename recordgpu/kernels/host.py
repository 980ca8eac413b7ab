"""Host build of the kernels: the same per-pixel code compiled with the system C++ compiler into a cached
shared library, run over the same packed plans as the GPU launches.

``run_plans_host(plans, images)`` mirrors ``run_plans_gpu`` (both are :func:`recordgpu.gpu.backend.run_plans`
on a backend: :class:`~recordgpu.gpu.backend.HostBackend` here) and is how the kernels are tested on
machines without a GPU. The library is built once per source/compiler/flags combination into
``$RECORDGPU_CACHE_DIR`` (default ``~/.cache/recordgpu``) and reused across processes. The CPU executor's
fast path (``cpu_fused.cpp``, :mod:`recordgpu.augment.fused`) is built and cached the same way.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from ..augment.plan import SamplePlan
from ..gpu.backend import HostBackend, run_plans, run_program
from . import headers, kernel_dir, read_source
from .params import LAYOUT, BatchProgram

CXX_FLAGS = ("-O2", "-std=c++17", "-ffp-contract=off", "-fno-fast-math", "-shared", "-fPIC", "-Wall")
HOST_SOURCE = "host_entry.cpp"
# the CPU fast path (recordgpu.augment.fused): the same rounding rules, optimised for speed
CPU_CXX_FLAGS = ("-O3",) + CXX_FLAGS[1:]
CPU_SOURCE = "cpu_fused.cpp"


class HostBuildError(RuntimeError):
    """The host library could not be built or loaded."""


def find_compiler() -> str | None:
    """The C++ compiler to use: ``$CXX``, else ``c++``, ``g++`` or ``clang++`` on the PATH; None if none."""
    env = os.environ.get("CXX")
    if env:
        return shutil.which(env) or (env if os.path.isfile(env) else None)
    for name in ("c++", "g++", "clang++"):
        path = shutil.which(name)
        if path:
            return path
    return None


def cache_dir() -> Path:
    """Where the host build of the kernels is cached (``$RECORDGPU_CACHE_DIR``, else a per-user folder)."""
    env = os.environ.get("RECORDGPU_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "recordgpu"


def build_host_library(compiler: str | None = None) -> Path:
    """Build (or find in the cache) the host library; returns its path."""
    return _build(HOST_SOURCE, "rg_host", CXX_FLAGS, compiler)


def build_cpu_library(compiler: str | None = None, simd: bool = True) -> Path:
    """Build (or find in the cache) the CPU fast path (``cpu_fused.cpp``); returns its path.

    Its cache key leaves the compiler out (any conforming compiler gives the same numbers with these flags), so
    a library built once, e.g. while making a container image, is found later on a machine without one.
    ``simd=False`` builds the plain C++ loops only (what machines without SSE2 run), for tests."""
    if simd:
        return _build(CPU_SOURCE, "rg_cpu", CPU_CXX_FLAGS, compiler, key_has_compiler=False)
    return _build(CPU_SOURCE, "rg_cpu_plain", CPU_CXX_FLAGS + ("-DRG_NO_SIMD",), compiler, key_has_compiler=False)


def _build(source: str, stem: str, flags: Sequence[str], compiler: str | None,
           key_has_compiler: bool = True) -> Path:
    """Compile ``source`` (with the kernel headers) into ``<cache>/<stem>_<hash>.so`` unless it is there."""
    h = hashlib.sha256()
    h.update(read_source(source).encode())
    for name, text in sorted(headers().items()):
        h.update(name.encode() + b"\0" + text.encode())
    h.update(("\0".join((platform.machine(),) + tuple(flags))).encode())
    cxx = compiler or find_compiler()
    if key_has_compiler:
        if cxx is None:
            raise HostBuildError("no C++ compiler found (set CXX or install g++/clang++)")
        h.update(cxx.encode())
        try:
            h.update(subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60).stdout.encode())
        except (OSError, subprocess.SubprocessError) as e:
            raise HostBuildError(f"cannot run the C++ compiler {cxx}: {e}") from None
    out_dir = cache_dir()
    lib = out_dir / f"{stem}_{h.hexdigest()[:16]}.so"
    if lib.is_file():
        return lib
    if cxx is None:
        raise HostBuildError("no C++ compiler found (set CXX or install g++/clang++)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
    except OSError as e:
        raise HostBuildError(f"cannot write to the kernel cache {out_dir}: {e}") from None
    os.close(fd)
    cmd = [cxx, *flags, "-I", str(kernel_dir()), "-o", tmp, str(kernel_dir() / source)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if res.returncode != 0:
            raise HostBuildError(f"{source} build failed ({' '.join(cmd)}):\n{res.stderr}")
        os.replace(tmp, lib)  # atomic: concurrent builders all end with a complete file
    except (OSError, subprocess.SubprocessError) as e:
        raise HostBuildError(f"{source} build failed ({' '.join(cmd)}): {e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return lib


@lru_cache(maxsize=1)
def load_host_library() -> ctypes.CDLL:
    """The host library, built if needed, with its struct layout checked against params.py."""
    lib = ctypes.CDLL(str(build_host_library()))
    vp, i = ctypes.c_void_p, ctypes.c_int
    lib.rg_host_step.argtypes = [i, vp, i, vp]
    lib.rg_host_mean.argtypes = [i, vp, i, i, vp]
    lib.rg_host_layout.argtypes = [ctypes.POINTER(ctypes.c_longlong), i]
    buf = (ctypes.c_longlong * 32)()
    n = lib.rg_host_layout(buf, 32)
    got = list(buf[:n])
    want = [v for _, v in LAYOUT]
    if got != want:
        bad = [f"{name}: C {g}, Python {w}" for (name, w), g in zip(LAYOUT, got) if g != w]
        raise HostBuildError("kernel struct layout differs between C and params.py: " + "; ".join(bad))
    return lib


def execute_program(prog: BatchProgram, images: Sequence[np.ndarray]) -> np.ndarray:
    """Run a compiled program on the host; ``images`` are C-contiguous (H, W, C) arrays."""
    backend = HostBackend()
    out = backend.zeros(prog.out_shape, prog.out_dtype)
    run_program(backend, prog, [backend.as_image(im) for im in images], out)
    return out


def run_plans_host(plans: Sequence[SamplePlan], images: Sequence[np.ndarray], *,
                   mode: str = "image") -> np.ndarray:
    """Execute ``plans[i]`` on ``images[i]`` with the host build; returns the (N, C, H, W) batch.

    ``mode="mask"``: replay the geometric stages on label masks (nearest, fill 0) and return them in the
    mask dtype, mirrored with the images.
    """
    for im in images:
        if not isinstance(im, np.ndarray) or im.ndim not in (2, 3):
            raise ValueError("images must be (H, W) or (H, W, C) numpy arrays")
    return run_plans(HostBackend(), plans, images, mode=mode)


__all__ = ["run_plans_host", "execute_program", "build_host_library", "build_cpu_library", "load_host_library",
           "find_compiler",
           "cache_dir", "HostBuildError"]
