#!/usr/bin/env bash
# A Python 3.11 venv with a bpy wheel (Blender as a module) for the real-Blender tests, cached
# outside the repo, one per Blender version. Prints the venv's python.
# Usage: tests/hosts/setup_blender.sh [VERSION]   (default 5.0.1; 4.2.x is the 4.2 LTS)
set -euo pipefail
VERSION=${1:-5.0.1}
VENV=${CHROMASTYLE_HOSTS_CACHE:-/var/cache/chromastyle-hosts}/bpy-$VERSION
PY=${PYTHON311:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if ! "$VENV/bin/python" -c 'import bpy' >/dev/null 2>&1; then
    rm -rf "$VENV"
    "$PY" -m venv "$VENV" >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "bpy==$VERSION" >&2
fi
echo "$VENV/bin/python"
