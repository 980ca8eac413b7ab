"""The NVRTC check: every kernel compiles for sm_75, sm_80 and sm_90 without a GPU, with no error or warning
and no register spills; the check reports registers and spills and fails on problems. Skipped when
libnvrtc (the nvidia-cuda-nvrtc-cu12 wheel) cannot be loaded."""
from __future__ import annotations

import dataclasses

import pytest

from recordgpu.kernels import flat_source, kernel_dir
from recordgpu.kernels.check import DEFAULT_ARCHS, check_kernels, layout_asserts
from recordgpu.kernels.nvrtc import NvrtcUnavailable, log_problems, nvrtc, parse_ptxas


def _nvrtc_or_skip():
    try:
        lib = nvrtc()
        lib.version()
        return lib
    except (NvrtcUnavailable, OSError) as e:
        pytest.skip(f"NVRTC not available: {e}")


KERNELS = {f"rg_{kind}_{dt}" for kind in ("step", "mean") for dt in ("u8", "u16", "i16", "f32")}


@pytest.fixture(scope="module")
def reports():
    """One compilation of every kernel file for every default architecture (the slow part)."""
    _nvrtc_or_skip()
    return check_kernels(DEFAULT_ARCHS)


def test_every_kernel_compiles_for_every_arch_without_spills(reports):
    assert [(r.source, r.arch) for r in reports] == [("augment.cu", a) for a in DEFAULT_ARCHS]
    for r in reports:
        assert r.ok, (r.arch, r.problems)
        assert r.cubin_bytes > 0
        assert set(r.kernels) == KERNELS
        for name, res in r.kernels.items():
            assert res.registers > 0
            assert res.spill_stores == 0 and res.spill_loads == 0, (r.arch, name, res)


def test_check_cli_prints_resources_and_exit_code(reports, capsys, monkeypatch):
    import recordgpu.kernels.__main__ as cli

    monkeypatch.setattr(cli, "check_kernels", lambda archs: [r for r in reports if r.arch in archs])
    assert cli.main(["--check"]) == 0
    out = capsys.readouterr().out
    for arch in DEFAULT_ARCHS:
        assert f"augment.cu {arch}: ok" in out
    for name in KERNELS:
        assert out.count(f"  {name} ") == len(DEFAULT_ARCHS)
    assert "registers" in out and "spill stores" in out and "OK: 3 compilations" in out

    failing = dataclasses.replace(reports[0], ok=False, problems=["augment.cu(1): warning #177-D: unused"])
    monkeypatch.setattr(cli, "check_kernels", lambda archs: [failing])
    assert cli.main(["--check", "--arch", "sm_75"]) == 1
    assert "warning #177-D" in capsys.readouterr().out


def test_compile_errors_and_warnings_are_reported():
    lib = _nvrtc_or_skip()
    bad = lib.compile("__global__ void k() { int x = ; }", "bad.cu", ["--gpu-architecture=sm_80"])
    assert not bad.ok and log_problems(bad.log)
    warn = lib.compile("__global__ void k() { int unused = 1; }", "warn.cu", ["--gpu-architecture=sm_80"])
    assert warn.ok and log_problems(warn.log)  # a warning alone fails the check
    good = lib.compile('extern "C" __global__ void k(float* y) { y[threadIdx.x] = 1.f; }', "good.cu",
                       ["--gpu-architecture=sm_75", "--ptxas-options=-v"])
    assert good.ok and good.cubin[:4] == b"\x7fELF" and not log_problems(good.log)
    res = parse_ptxas(good.log)
    assert set(res) == {"k"} and res["k"].registers > 0


def test_struct_sizes_are_pinned_in_the_device_build():
    lib = _nvrtc_or_skip()
    src = flat_source("rg_params.cuh")
    ok = lib.compile(src + layout_asserts(), "layout.cu", ["--gpu-architecture=sm_80", "-std=c++17"])
    assert ok.ok and not log_problems(ok.log), ok.log
    wrong = layout_asserts().replace("== ", "== 1 + ", 1)
    assert not lib.compile(src + wrong, "layout.cu", ["--gpu-architecture=sm_80", "-std=c++17"]).ok


def test_sources_are_found_in_the_checkout():
    assert (kernel_dir() / "augment.cu").is_file()
    src = flat_source()
    assert '#include "' not in src  # self-contained: what cupy.RawModule compiles
    assert "rg_step_pixel" in src and "struct RgStep" in src
