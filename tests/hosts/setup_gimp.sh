#!/usr/bin/env bash
# Prepare a Debian trixie root with GIMP 3 for the real-GIMP tests, cached outside the repo, and
# the host tools those tests use (Xvfb, xdotool).
# On trixie itself GIMP could be installed directly; on bookworm that would upgrade libc, so a
# minimal trixie root is made with debootstrap and GIMP runs chrooted in a private mount namespace.
# Usage: tests/hosts/setup_gimp.sh [ROOT]   (prints ROOT when ready)
set -euo pipefail
ROOT=${1:-${CHROMASTYLE_GIMP_ROOT:-/var/cache/chromastyle-hosts/gimp-trixie}}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
export DEBIAN_FRONTEND=noninteractive
# on the host: debootstrap for the root; Xvfb and xdotool for the GUI undo test
need=""
command -v debootstrap >/dev/null || need="$need debootstrap"
command -v zstd >/dev/null || need="$need zstd"
command -v Xvfb >/dev/null || need="$need xvfb"
command -v xdotool >/dev/null || need="$need xdotool"
if [ -n "$need" ]; then apt-get update -qq >&2; apt-get install -y -qq --no-install-recommends $need >&2; fi
if [ -x "$ROOT/usr/bin/gimp-console-3.0" ]; then echo "$ROOT"; exit 0; fi
mkdir -p "$(dirname "$ROOT")"
rm -rf "$ROOT.tmp"
debootstrap --variant=minbase trixie "$ROOT.tmp" "$MIRROR" >&2
cat > "$ROOT.tmp/etc/dpkg/dpkg.cfg.d/01-slim" <<'CFG'
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/doc/*
path-exclude=/usr/share/man/*
path-exclude=/usr/share/gimp/3.0/help/*
CFG
chroot "$ROOT.tmp" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends gimp python3-gi xvfb xauth' >&2
mv "$ROOT.tmp" "$ROOT"
echo "$ROOT"
