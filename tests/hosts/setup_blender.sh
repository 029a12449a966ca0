#!/usr/bin/env bash
# A Python 3.11 venv with the bpy 5.0.1 wheel (Blender as a module) for the real-Blender tests,
# cached outside the repo. Prints the venv's python.
set -euo pipefail
VENV=${1:-${CHROMASTYLE_BPY_VENV:-/var/cache/chromastyle-hosts/bpy-5.0.1}}
PY=${PYTHON311:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if ! "$VENV/bin/python" -c 'import bpy' >/dev/null 2>&1; then
    rm -rf "$VENV"
    "$PY" -m venv "$VENV" >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check bpy==5.0.1 >&2
fi
echo "$VENV/bin/python"
