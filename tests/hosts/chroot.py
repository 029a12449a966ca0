"""Hosts from Debian trixie (GIMP 3.0, Krita 5.2, Blender 4.3) for the real-host tests: one cached
trixie root (tests/hosts/setup_trixie.sh), entered in a private mount namespace so nothing leaks."""
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def trixie_root(*packages):
    """The trixie root with ``packages`` installed (the first time: debootstrap + apt, minutes)."""
    out = subprocess.run(["bash", str(HERE / "setup_trixie.sh"), *packages], capture_output=True, text=True,
                         timeout=1800)
    if out.returncode:
        raise RuntimeError(f"could not prepare the trixie root with {' '.join(packages)}: {out.stderr[-2000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def worker_paths():
    """Folders the root needs, read-only at the same paths, so that the plug-ins can start this
    Python's worker inside it: the repository, this environment and the interpreter it is made from."""
    paths = [REPO, Path(sys.prefix), Path(os.path.realpath(sys.executable)).parents[1]]
    # a system interpreter's prefix (/usr) would hide the root's own /usr: the root's hosts would break
    return [p for p in paths if p not in (Path("/"), Path("/usr"))]


def chroot_shell(root, env, command, rw=(), ro=(), x11=False):
    """A shell line for `unshare --mount --propagation private sh -c`: mount what the host needs into
    the root (``rw``/``ro`` folders at the same paths), then run ``command`` there with only ``env``."""
    mounts = [f"mount -t proc proc {root}/proc", f"mount --rbind /dev {root}/dev"]
    if x11:
        mounts.append(f"mkdir -p {root}/tmp/.X11-unix && mount --bind /tmp/.X11-unix {root}/tmp/.X11-unix")
    for p in dict.fromkeys(rw):
        mounts.append(f"mkdir -p {root}{p} && mount --bind {p} {root}{p}")
    for p in dict.fromkeys(ro):
        mounts.append(f"mkdir -p {root}{p} && mount --bind {p} {root}{p} && mount -o remount,bind,ro {root}{p}")
    inner = " ".join(f"{k}='{v}'" for k, v in env.items())
    return " && ".join(mounts) + f" && chroot {root} env -i {inner} {command}"


def in_root(root, env, command, rw=(), ro=(), x11=False):
    """The argv that runs ``command`` in ``root`` (see chroot_shell)."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            chroot_shell(root, env, command, rw, ro, x11)]
