"""The loaders the iterator benchmark compares and how each one is run.

Every loader is a runner script in this folder, executed in a subprocess by its own interpreter:
recordgpu and the decode-only floor by the current one, each peer by its own virtualenv under
``bench/`` (``.venv-dali``, ``.venv-mxnet``), created on demand with pip. A peer that cannot be
installed or imported is reported as skipped with the reason, never as an error of the benchmark.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .runner_common import RESULT_PREFIX

HERE = Path(__file__).resolve().parent
BENCH_DIR = HERE.parent
REPO = BENCH_DIR.parent


class LoaderUnavailable(RuntimeError):
    """A loader cannot be run here (not installable, not importable); the message says why."""


@dataclass(frozen=True)
class Loader:
    name: str
    label: str
    runner: str
    venv: str | None = None  # folder under bench/; None runs in the current interpreter
    requirements: tuple[str, ...] = ()
    import_check: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def venv_dir(self) -> Path | None:
        return BENCH_DIR / self.venv if self.venv else None

    @property
    def is_peer(self) -> bool:
        return self.venv is not None


_DALI_IMPORT = "import nvidia.dali.fn, nvidia.dali.types; from nvidia.dali import pipeline_def"
LOADERS: dict[str, Loader] = {
    "decode": Loader("decode", "decode only (cv2.imdecode)", "decode_runner.py"),
    "recordgpu": Loader("recordgpu", "recordgpu ImageRecordIter", "recordgpu_runner.py"),
    # recordgpu with its CPU fast path off (OpenCV/numpy stages): what the fast path is worth
    "recordgpu-opencv": Loader("recordgpu-opencv", "recordgpu, fast path off", "recordgpu_runner.py",
                               env={"RECORDGPU_NATIVE": "0"}),
    "dali": Loader("dali", "DALI CPU pipeline", "dali_runner.py", venv=".venv-dali",
                   requirements=("nvidia-dali-cuda120",), import_check=_DALI_IMPORT),
    "mxnet": Loader("mxnet", "MXNet ImageRecordIter", "mxnet_runner.py", venv=".venv-mxnet",
                    requirements=("mxnet==1.9.1", "numpy<1.24"),
                    import_check="import mxnet; mxnet.io.ImageRecordIter"),
    # --device gpu: the same settings on one CUDA GPU
    "decode-gpu": Loader("decode-gpu", "decode only (nvImageCodec)", "gpu_decode_runner.py"),
    "recordgpu-gpu": Loader("recordgpu-gpu", "recordgpu ImageRecordIter (GPU)", "recordgpu_runner.py"),
    "dali-gpu": Loader("dali-gpu", "DALI GPU pipeline (mixed)", "dali_runner.py", venv=".venv-dali",
                       requirements=("nvidia-dali-cuda120", "cupy-cuda12x"),
                       import_check=_DALI_IMPORT + "; import cupy"),
}
PEERS = ("dali", "mxnet")  # compared by default
#: everything --peers accepts: the peers, and ``opencv`` (recordgpu with the fast path off, CPU only)
PEER_CHOICES = PEERS + ("opencv",)
#: loaders per device: the decode-only floor, recordgpu, and the peers that run there (by --peers name)
DEVICE_LOADERS = {"cpu": ("decode", "recordgpu", {"dali": "dali", "mxnet": "mxnet", "opencv": "recordgpu-opencv"}),
                  "gpu": ("decode-gpu", "recordgpu-gpu", {"dali": "dali-gpu"})}


def _python_in(venv: Path) -> Path:
    return venv / "bin" / "python"


def _tail(text: str, n: int = 3) -> str:
    # skip blank lines and traceback caret markers (^^^^ / ~~~~)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip().strip("^~ ")]
    return " | ".join(lines[-n:]) if lines else "(no output)"


def _import_ok(python: Path, code: str) -> str | None:
    """None when ``code`` runs in ``python``, else the tail of its error output."""
    try:
        r = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    return None if r.returncode == 0 else _tail(r.stderr)


def interpreter(loader: Loader, install: bool = True, log: Callable[[str], None] = print) -> str:
    """The Python that runs ``loader``, creating and filling its virtualenv first if ``install``.

    Raises :class:`LoaderUnavailable` when it is missing (and ``install`` is false), cannot be
    installed, or does not import.
    """
    if not loader.is_peer:
        return sys.executable
    venv = loader.venv_dir
    python = _python_in(venv)
    if python.exists() and _import_ok(python, loader.import_check) is None:
        return str(python)
    if not install:
        gpu = loader.name.endswith("-gpu")
        raise LoaderUnavailable(f"{venv} is missing or broken; create it with `python -m bench setup "
                                f"--peers {loader.name.removesuffix('-gpu')}{' --device gpu' if gpu else ''}`")
    log(f"setting up {venv} (pip install {' '.join(loader.requirements)}) ...")
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True,
                           text=True, timeout=600)
            # keep the environment out of git whatever the repository's .gitignore says
            (venv / ".gitignore").write_text("*\n")
        r = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                            *loader.requirements], capture_output=True, text=True, timeout=3600)
    except subprocess.CalledProcessError as e:
        raise LoaderUnavailable(f"cannot create {venv}: {_tail(e.stderr or '')}") from None
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LoaderUnavailable(f"cannot set up {venv}: {e}") from None
    if r.returncode != 0:
        raise LoaderUnavailable(f"pip install {' '.join(loader.requirements)} failed: {_tail(r.stderr)}")
    err = _import_ok(python, loader.import_check)
    if err is not None:
        raise LoaderUnavailable(f"installed but does not import: {err}")
    return str(python)


def run_loader(loader: Loader, python: str, config: dict, timeout_s: float) -> dict:
    """Run ``loader``'s runner with ``config``; its result dict, or ``{"skipped": ...}`` / ``{"error": ...}``."""
    env = dict(os.environ)
    env.update(loader.env)
    if not loader.is_peer:  # the local runners import recordgpu from this checkout
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    else:
        env.pop("PYTHONPATH", None)
    if loader.name == "mxnet":
        env["OMP_NUM_THREADS"] = str(config["threads"])
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix=f"bench-{loader.name}-", delete=False) as f:
        json.dump(config, f)
        cfg_path = f.name
    try:
        r = subprocess.run([python, str(HERE / loader.runner), cfg_path], capture_output=True, text=True,
                           timeout=timeout_s, env=env, cwd=str(REPO))
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    finally:
        os.unlink(cfg_path)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if r.returncode != 0 or not lines:
        return {"error": f"exit code {r.returncode}: {_tail(r.stderr, 2)}"}
    return json.loads(lines[-1][len(RESULT_PREFIX):])
