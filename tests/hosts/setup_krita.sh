#!/usr/bin/env bash
# Install Debian's Krita (+ PyQt5 for pykrita, Xvfb) for the real-Krita tests.
set -euo pipefail
if [ -x /usr/bin/krita ] && [ -d /usr/lib/python3/dist-packages/PyQt5 ] && command -v Xvfb >/dev/null; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends krita python3-pyqt5 xvfb xauth >/dev/null
