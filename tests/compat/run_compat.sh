#!/usr/bin/env bash
# `make compat`: the quick tests in fresh virtualenvs with the oldest and newest supported numpy and
# opencv-python-headless, so the version ranges in pyproject.toml stay true.
#
#   tests/compat/run_compat.sh                        # the default matrix below
#   tests/compat/run_compat.sh "==1.26.*:==4.11.*"    # NUMPY_SPEC:OPENCV_SPEC pairs (pip version specifiers)
#
# Environment:
#   PYTHON         interpreter for the venvs (default python3)
#   COMPAT_VENVS   venv k of the matrix is PREFIX-k (default prefix .venv-compat; git ignores .venv-*)
#   COMPAT_EXTRAS  extras to install with the package, e.g. "test" (default none: optional tests skip)
#   PYTEST_ARGS    split at whitespace (default: -q -m "not gpu and not slow")
#   KEEP_VENVS=1   reuse existing venvs instead of rebuilding them
# Prints the exact versions each run used and a summary; exits non-zero if any combination failed.
set -uo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}
PREFIX=${COMPAT_VENVS:-.venv-compat}
EXTRAS=${COMPAT_EXTRAS:-}
if [ -n "${PYTEST_ARGS:-}" ]; then
    read -r -a PYTEST_ARGV <<< "$PYTEST_ARGS"  # split at whitespace
else
    PYTEST_ARGV=(-q -m "not gpu and not slow")
fi

if [ "$#" -gt 0 ]; then
    MATRIX=("$@")
else
    # oldest numpy + oldest OpenCV; newest numpy + oldest OpenCV; newest of both (OpenCV 5 needs numpy 2)
    MATRIX=("==1.26.*:==4.11.*" ">=2,<3:==4.11.*" ">=2,<3:>=5,<5.1")
fi

target="."
[ -n "$EXTRAS" ] && target=".[$EXTRAS]"
results=()
status=0
k=0
for combo in "${MATRIX[@]}"; do
    k=$((k + 1))
    np_spec=${combo%%:*}
    cv_spec=${combo#*:}
    venv="${PREFIX}-${k}"
    echo "=== numpy${np_spec}  opencv-python-headless${cv_spec}  ($venv)"
    if [ "${KEEP_VENVS:-0}" != 1 ] || [ ! -x "$venv/bin/python" ]; then
        rm -rf "$venv"
        "$PYTHON" -m venv "$venv" || { results+=("FAIL(venv) $combo"); status=1; continue; }
    fi
    if ! "$venv/bin/python" -m pip install -q -e "$target" "numpy${np_spec}" \
            "opencv-python-headless${cv_spec}" "pytest>=8"; then
        results+=("FAIL(install) numpy${np_spec} opencv${cv_spec}")
        status=1
        continue
    fi
    versions=$("$venv/bin/python" -c 'import sys, importlib.metadata as m
print("python %s, numpy %s, opencv-python-headless %s"
      % (sys.version.split()[0], m.version("numpy"), m.version("opencv-python-headless")))')
    echo "--- $versions"
    if "$venv/bin/python" -m pytest "${PYTEST_ARGV[@]}"; then
        results+=("PASS $versions")
    else
        results+=("FAIL $versions")
        status=1
    fi
done

echo "=== compat summary"
printf '%s\n' "${results[@]}"
exit "$status"
