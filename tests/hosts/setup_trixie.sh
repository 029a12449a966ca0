#!/usr/bin/env bash
# A Debian trixie root holding the hosts the real-host tests take from trixie (GIMP 3.0, Krita 5.2,
# Blender 4.3), cached outside the repo, plus the tools the tests use on this machine (Xvfb,
# xdotool). On bookworm, installing trixie's hosts would upgrade libc, so they run chrooted in a
# private mount namespace (tests/hosts/chroot.py); on trixie the same root works too.
# Usage: tests/hosts/setup_trixie.sh PACKAGE...   (prints the root once its packages are installed)
set -euo pipefail
ROOT=${CHROMASTYLE_HOSTS_CACHE:-/var/cache/chromastyle-hosts}/trixie
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
export DEBIAN_FRONTEND=noninteractive
need=""
command -v debootstrap >/dev/null || need="$need debootstrap"
command -v Xvfb >/dev/null || need="$need xvfb"
command -v xdotool >/dev/null || need="$need xdotool"
if [ -n "$need" ]; then apt-get update -qq >&2; apt-get install -y -qq --no-install-recommends $need >&2; fi
if [ ! -x "$ROOT/usr/bin/apt-get" ]; then
    mkdir -p "$(dirname "$ROOT")"
    rm -rf "$ROOT.tmp"
    debootstrap --variant=minbase trixie "$ROOT.tmp" "$MIRROR" >&2
    cat > "$ROOT.tmp/etc/dpkg/dpkg.cfg.d/01-slim" <<'CFG'
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/doc/*
path-exclude=/usr/share/man/*
path-exclude=/usr/share/gimp/3.0/help/*
CFG
    mv "$ROOT.tmp" "$ROOT"
fi
missing=""
for p in "$@"; do
    chroot "$ROOT" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing" >&2
fi
echo "$ROOT"
