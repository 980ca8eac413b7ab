"""``python -m recordgpu.kernels --check``: compile every kernel with NVRTC for sm_75, sm_80 and sm_90 (no
GPU needed), print registers and spills per kernel and architecture, exit non-zero on any error or
warning. ``--host`` also builds the host library. ``--cpu`` only builds the CPU executor's fast path
(:mod:`recordgpu.augment.fused`; no NVRTC needed) into the kernel cache, e.g. while making a container image."""
from __future__ import annotations

import argparse
import sys

from .check import DEFAULT_ARCHS, check_kernels, format_reports


def _build(what: str, build) -> int:
    """Build one of the host-compiled libraries and print its path; 0, or 1 with the error on stderr."""
    from .host import HostBuildError

    try:
        print(f"{what}: {build()}")
    except HostBuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m recordgpu.kernels", description=__doc__)
    ap.add_argument("--check", action="store_true", help="compile every kernel with NVRTC (the default action)")
    ap.add_argument("--arch", action="append", metavar="sm_XX",
                    help=f"architecture to compile for (repeatable; default {' '.join(DEFAULT_ARCHS)})")
    ap.add_argument("--host", action="store_true", help="also build the host library and print its path")
    ap.add_argument("--cpu", action="store_true",
                    help="only build the CPU fast path into the kernel cache and print its path")
    args = ap.parse_args(argv)
    from . import host

    if args.cpu:
        return _build("CPU fast path", host.build_cpu_library)
    from . import kernel_dir
    from .nvrtc import NvrtcError, NvrtcUnavailable, nvrtc

    try:
        lib = nvrtc()
        major, minor = lib.version()
    except (NvrtcUnavailable, NvrtcError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"NVRTC {major}.{minor} ({lib.path}); kernels in {kernel_dir()}")
    reports = check_kernels(tuple(args.arch) if args.arch else DEFAULT_ARCHS)
    print(format_reports(reports))
    failed = [r for r in reports if not r.ok]
    if args.host and _build("host library", host.build_host_library):
        return 1
    if failed:
        print(f"FAILED: {len(failed)} of {len(reports)} compilations had errors or warnings", file=sys.stderr)
        return 1
    print(f"OK: {len(reports)} compilations, no errors or warnings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
