"""The Dockerfiles install this package and smoke-test it (checked by parsing; no Docker engine needed).

What each image must do, derived from pyproject.toml so the test follows packaging changes: copy every file
the build backend reads before ``pip install``, install ``.[codecs]`` (CPU, with the fast exact decoders) or
``.[gpu]`` (GPU, on a CUDA 12 base, since the GPU extra is built for CUDA 12), then run ``recordgpu info``
and only modules / subcommands that exist.
"""
from __future__ import annotations

import importlib.util
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from recordgpu.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
tomllib = pytest.importorskip("tomllib")  # Python 3.11+


@dataclass
class Instruction:
    op: str
    args: str
    line: int

    def words(self) -> list[str]:
        """Arguments of the exec (JSON) form or the shell form, as a list."""
        text = self.args.strip()
        if text.startswith("["):
            return json.loads(text)
        return shlex.split(text)


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with line continuations joined and comments dropped (enough of the Dockerfile grammar for
    the files here: no heredocs, default escape character)."""
    out: list[Instruction] = []
    pending, start = "", 0
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):  # comment lines inside a continuation are ignored by Docker
            continue
        if not pending:
            start = n
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = pending + line
        pending = ""
        op, _, args = text.partition(" ")
        out.append(Instruction(op.upper(), args.strip(), start))
    assert not pending, f"{path.name}: the file ends inside a line continuation"
    return out


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def build_inputs() -> set[str]:
    """Top-level paths the build backend (hatchling) reads for a wheel, per pyproject.toml."""
    p = _pyproject()
    need = {"pyproject.toml"}
    proj = p["project"]
    if isinstance(proj.get("readme"), str):
        need.add(proj["readme"])
    need.update(proj.get("license-files", []))
    wheel = p["tool"]["hatch"]["build"]["targets"]["wheel"]
    need.update(wheel.get("packages", []))
    need.update(wheel.get("force-include", {}).keys())
    need.add(p["tool"]["hatch"]["version"]["path"])
    return {Path(x).parts[0] for x in need}


IMAGES = {"cpu": ("Dockerfile.cpu", ".[codecs]"), "gpu": ("Dockerfile.gpu", ".[gpu]")}


@pytest.fixture(params=sorted(IMAGES))
def image(request):
    name, target = IMAGES[request.param]
    return request.param, parse_dockerfile(DOCKER / name), target


def _copied(instrs: list[Instruction], before: int) -> set[str]:
    got: set[str] = set()
    for ins in instrs[:before]:
        if ins.op in ("COPY", "ADD"):
            words = [w for w in ins.words() if not w.startswith("--")]
            for src in words[:-1]:
                got.add(Path(src).parts[0])
    return got


def shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a shell-form RUN, as word lists (split at ``&&``, ``||``, ``;`` and ``|``)."""
    lex = shlex.shlex(script, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    commands: list[list[str]] = [[]]
    for tok in lex:
        if tok in ("&&", "||", ";", "|"):
            commands.append([])
        else:
            commands[-1].append(tok)
    return [c for c in commands if c]


def _pip_install_index(instrs: list[Instruction], target: str) -> int:
    for k, ins in enumerate(instrs):
        if ins.op != "RUN":
            continue
        for words in shell_commands(ins.args):
            i = words.index("install") if "install" in words else -1
            if i > 0 and words[i - 1] == "pip" and target in words[i + 1:]:
                return k
    raise AssertionError(f"no RUN pip install {target!r}")


def test_parser_handles_continuations_and_comments(tmp_path):
    f = tmp_path / "Dockerfile"
    f.write_text("# c\nFROM a:1\nRUN x \\\n    # inner comment\n    && y\nCMD [\"--help\"]\n")
    ins = parse_dockerfile(f)
    assert [(i.op, i.line) for i in ins] == [("FROM", 2), ("RUN", 3), ("CMD", 6)]
    assert ins[1].args == "x  && y" and ins[2].words() == ["--help"]


def test_base_image(image):
    kind, instrs, _ = image
    base = next(i for i in instrs if i.op == "FROM").words()[0]
    if kind == "gpu":
        assert re.fullmatch(r"nvidia/cuda:12\.\d+(\.\d+)?-(runtime|devel|cudnn-runtime|cudnn-devel)-\S+", base), base
        extras = _pyproject()["project"]["optional-dependencies"]["gpu"]
        assert any("cuda12" in e or "cu12" in e for e in extras)  # the extra is the CUDA 12 build
    else:
        m = re.fullmatch(r"python:3\.(\d+)(-\S+)?", base)
        assert m, base
        lowest = int(re.search(r">=\s*3\.(\d+)", _pyproject()["project"]["requires-python"]).group(1))
        assert int(m.group(1)) >= lowest


def test_copies_what_the_build_needs_before_installing(image):
    _, instrs, target = image
    k = _pip_install_index(instrs, target)
    copied = _copied(instrs, k)
    missing = build_inputs() - copied
    assert not missing, f"not copied before pip install: {sorted(missing)}"
    for src in _copied(instrs, len(instrs)):
        assert (ROOT / src).exists(), f"COPY source {src} does not exist in the build context"


def test_installs_the_package_with_the_right_extra(image):
    kind, instrs, target = image
    _pip_install_index(instrs, target)
    if kind == "gpu":
        assert "gpu" in _pyproject()["project"]["optional-dependencies"]


def test_smoke_tests_after_install(image):
    _, instrs, target = image
    k = _pip_install_index(instrs, target)
    commands = [words for ins in instrs[k:] if ins.op == "RUN" for words in shell_commands(ins.args)]
    assert any(w[:2] == ["recordgpu", "info"] and len(w) > 2 and not w[2].startswith("-") for w in commands), \
        "no `recordgpu info FILE` smoke test after the install"
    assert ["recordgpu", "--version"] in commands
    known = set(build_parser()._subparsers._group_actions[0].choices) | {"im2rec"}
    for words in commands:
        if words[0] == "recordgpu" and len(words) > 1 and not words[1].startswith("-"):
            assert words[1] in known, f"unknown subcommand in {words}"
        if words[0] == "python" and words[1:2] == ["-m"]:
            assert importlib.util.find_spec(words[2]) is not None, f"no module {words[2]} for {words}"


def test_entrypoint_is_the_cli(image):
    _, instrs, _ = image
    ep = [i for i in instrs if i.op == "ENTRYPOINT"]
    assert ep and ep[-1].words() == ["recordgpu"]
    script = _pyproject()["project"]["scripts"]["recordgpu"]
    assert script == "recordgpu.cli:main"
