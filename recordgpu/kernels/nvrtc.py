"""Compile CUDA sources with NVRTC through ctypes, for an explicit architecture, without a GPU or driver.

``libnvrtc`` comes from the ``nvidia-cuda-nvrtc-cu12`` wheel (``nvidia/cuda_nvrtc/lib``); it is found
through the installed package, never through ``LD_LIBRARY_PATH``. Compiling with
``--gpu-architecture=sm_XX`` yields a CUBIN and, with ``--ptxas-options=-v``, ptxas's register and spill
report in the program log, which :func:`parse_ptxas` reads.
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence


class NvrtcUnavailable(RuntimeError):
    """libnvrtc cannot be found or loaded."""


class NvrtcError(RuntimeError):
    """An NVRTC call failed (the message holds the program log when there is one)."""


def _wheel_lib_dirs() -> list[Path]:
    dirs = []
    for mod in ("nvidia.cuda_nvrtc", "nvidia.cu13"):
        try:
            spec = importlib.util.find_spec(mod)
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.submodule_search_locations:
            continue
        for loc in spec.submodule_search_locations:
            d = Path(loc) / "lib"
            if d.is_dir():
                dirs.append(d)
    return dirs


def find_libnvrtc() -> Path:
    """Path of libnvrtc from the NVIDIA wheel (``RECORDGPU_NVRTC`` overrides it)."""
    env = os.environ.get("RECORDGPU_NVRTC")
    if env:
        return Path(env)
    for d in _wheel_lib_dirs():
        libs = sorted(d.glob("libnvrtc.so.*"), key=lambda p: len(p.name))
        libs = [p for p in libs if "builtins" not in p.name and ".alt." not in p.name]
        if libs:
            return libs[0]
    raise NvrtcUnavailable("libnvrtc not found: install the NVRTC wheel, e.g. `pip install nvidia-cuda-nvrtc-cu12`")


@dataclass
class CompileResult:
    ok: bool
    log: str
    cubin: bytes = b""


@dataclass
class KernelResources:
    registers: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    stack: int = 0
    shared: int = 0
    extra: dict = field(default_factory=dict)


class Nvrtc:
    """A loaded libnvrtc."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else find_libnvrtc()
        try:
            lib = ctypes.CDLL(str(self.path))
        except OSError as e:
            raise NvrtcUnavailable(f"cannot load {self.path}: {e}") from None
        p = ctypes.c_void_p
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        lib.nvrtcGetErrorString.argtypes = [ctypes.c_int]
        lib.nvrtcVersion.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]
        lib.nvrtcCreateProgram.argtypes = [ctypes.POINTER(p), ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                                           ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_char_p)]
        lib.nvrtcCompileProgram.argtypes = [p, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
        lib.nvrtcDestroyProgram.argtypes = [ctypes.POINTER(p)]
        for name in ("nvrtcGetProgramLogSize", "nvrtcGetCUBINSize"):
            getattr(lib, name).argtypes = [p, ctypes.POINTER(ctypes.c_size_t)]
        for name in ("nvrtcGetProgramLog", "nvrtcGetCUBIN"):
            getattr(lib, name).argtypes = [p, ctypes.c_char_p]
        self._lib = lib

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            msg = self._lib.nvrtcGetErrorString(status)
            raise NvrtcError(f"{what}: {msg.decode() if msg else status}")

    def version(self) -> tuple[int, int]:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(self._lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        return major.value, minor.value

    def compile(self, source: str, name: str = "kernel.cu", options: Sequence[str] = (),
                headers: Mapping[str, str] | None = None) -> CompileResult:
        """Compile ``source``; a compile error gives ``ok=False`` with the log, not an exception."""
        lib = self._lib
        headers = dict(headers or {})
        hsrc = (ctypes.c_char_p * len(headers))(*[v.encode() for v in headers.values()])
        hname = (ctypes.c_char_p * len(headers))(*[k.encode() for k in headers])
        prog = ctypes.c_void_p()
        self._check(lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), len(headers),
                                           hsrc, hname), "nvrtcCreateProgram")
        try:
            opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
            status = lib.nvrtcCompileProgram(prog, len(options), opts)
            size = ctypes.c_size_t()
            self._check(lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size)), "nvrtcGetProgramLogSize")
            buf = ctypes.create_string_buffer(size.value)
            self._check(lib.nvrtcGetProgramLog(prog, buf), "nvrtcGetProgramLog")
            log = buf.value.decode(errors="replace")
            if status != 0:
                return CompileResult(False, log or lib.nvrtcGetErrorString(status).decode())
            cubin = b""
            if lib.nvrtcGetCUBINSize(prog, ctypes.byref(size)) == 0 and size.value:
                cb = ctypes.create_string_buffer(size.value)
                self._check(lib.nvrtcGetCUBIN(prog, cb), "nvrtcGetCUBIN")
                cubin = cb.raw
            return CompileResult(True, log, cubin)
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(prog))


@lru_cache(maxsize=1)
def nvrtc() -> Nvrtc:
    """The process's libnvrtc (loaded once)."""
    return Nvrtc()


_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '([^']+)'")
_PROPS = re.compile(r"Function properties for (\S+)")
_STACK = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


def parse_ptxas(log: str) -> dict[str, KernelResources]:
    """Per entry function: registers, spill stores/loads, stack frame and static shared memory, from the
    ``-v`` ptxas report in an NVRTC log."""
    out: dict[str, KernelResources] = {}
    current: str | None = None
    props_for: str | None = None
    for line in log.splitlines():
        m = _ENTRY.search(line)
        if m:
            current = m.group(1)
            out.setdefault(current, KernelResources())
            continue
        m = _PROPS.search(line)
        if m:
            props_for = m.group(1)
            continue
        m = _STACK.search(line)
        if m and props_for in out:
            r = out[props_for]
            r.stack, r.spill_stores, r.spill_loads = (int(g) for g in m.groups())
            continue
        m = _USED.search(line)
        if m and current is not None:
            out[current].registers = int(m.group(1))
            s = _SMEM.search(line)
            if s:
                out[current].shared = int(s.group(1))
    return out


def log_problems(log: str) -> list[str]:
    """Lines of an NVRTC/ptxas log that report a warning or an error."""
    return [ln for ln in log.splitlines() if re.search(r"\b(warning|error)\b", ln, re.IGNORECASE)]


__all__ = ["Nvrtc", "nvrtc", "find_libnvrtc", "CompileResult", "KernelResources", "parse_ptxas",
           "log_problems", "NvrtcUnavailable", "NvrtcError"]
