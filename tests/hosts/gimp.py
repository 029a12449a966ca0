"""Run a Python batch script inside the real GIMP 3 (a Debian trixie root, chrooted in a private
mount namespace so nothing leaks), with the chromastyle plug-in installed by its real installer."""
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def gimp_root():
    out = subprocess.run(["bash", str(HERE / "setup_gimp.sh")], capture_output=True, text=True, timeout=1200)
    if out.returncode:
        raise RuntimeError(f"could not prepare GIMP 3: {out.stderr[-2000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def run_gimp(root, workdir, script, params, env=None, timeout=300):
    """Run ``script`` (a file) in gimp-console-3.0 with ``params`` (JSON) as PARAMS.

    ``workdir`` is bind-mounted read-write at the same path; the repository and the Python that
    runs the worker (for auto-start) read-only at theirs, so paths agree inside and outside."""
    workdir = Path(workdir)
    profile = workdir / "gimp-profile"
    plug_ins = workdir / "plug-ins"
    profile.mkdir(parents=True, exist_ok=True)
    (profile / "gimprc").write_text(f'(plug-in-path "${{gimp_dir}}/plug-ins:${{gimp_plug_in_dir}}/plug-ins:{plug_ins}")\n')
    (workdir / "params.json").write_text(json.dumps(params))
    batch = f'PARAMS = "{workdir / "params.json"}"; exec(open("{script}").read())'
    python_home = Path(os.path.realpath(sys.executable)).parents[1]   # the interpreter's prefix
    binds_ro = [REPO, python_home, Path(sys.prefix)]
    envs = {"PATH": "/usr/bin:/bin", "HOME": str(workdir / "home"), "LANG": "C.UTF-8",
            "GIMP3_DIRECTORY": str(profile), "XDG_CONFIG_HOME": str(workdir / "xdg"), **(env or {})}
    mounts = [f"mount -t proc proc {root}/proc", f"mount --rbind /dev {root}/dev",
              f"mkdir -p {root}{workdir} && mount --bind {workdir} {root}{workdir}"]
    for p in dict.fromkeys(binds_ro):
        mounts.append(f"mkdir -p {root}{p} && mount --bind {p} {root}{p} && mount -o remount,bind,ro {root}{p}")
    inner = " ".join(f"{k}='{v}'" for k, v in envs.items())
    cmd = " && ".join(mounts) + (f" && chroot {root} env -i {inner} gimp-console-3.0 -i -d -f "
                                 f"--batch-interpreter=python-fu-eval -b '{batch}' --quit")
    (workdir / "home").mkdir(exist_ok=True)
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", cmd],
                       capture_output=True, text=True, timeout=timeout)
    result_file = workdir / "result.json"
    result = json.loads(result_file.read_text()) if result_file.exists() else None
    return r, result
