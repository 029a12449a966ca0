"""Run a real Krita under Xvfb with the chromastyle plug-in (installed by `chromastyle install krita`,
as an artist does) and a harness extension that runs scenarios and exits.

Two Kritas: Debian's own on this machine (5.1.5 on bookworm) and trixie's (5.2.9) from the cached
trixie root, run chrooted."""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from hosts.chroot import in_root, trixie_root, worker_paths
from hosts.display import xvfb

HERE = Path(__file__).resolve().parent
KRITAS = ("system", "trixie")


def ensure_krita(which="system"):
    """None for the system's Krita, else the root that holds trixie's."""
    if which == "trixie":
        return trixie_root("krita", "python3-pyqt5")
    r = subprocess.run(["bash", str(HERE / "setup_krita.sh")], capture_output=True, text=True, timeout=1200)
    if r.returncode:
        raise RuntimeError(f"could not install Krita: {r.stderr[-2000:]}")
    return None


def install_like_an_artist(home):
    """`chromastyle install krita` for a user whose home is ``home``: the plug-in goes to pykrita, is
    enabled in kritarc, and this Python is recorded as the one that runs the worker."""
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_DATA_HOME": str(home / ".local" / "share")}
    env.pop("CHROMASTYLE_CONFIG_DIR", None)
    subprocess.run([sys.executable, "-m", "chromastyle", "install", "krita"], env=env, check=True,
                   capture_output=True, text=True)
    return home / ".local" / "share" / "krita" / "pykrita"


def run_krita(work, params, root=None, env=None, timeout=300):
    """Krita (the system's, or the one in ``root``) with the plug-in and the harness; returns the
    finished process and the harness's result.json (None if it wrote none)."""
    work = Path(work)
    home = work / "home"
    pykrita = install_like_an_artist(home)
    shutil.copytree(HERE / "krita_harness", pykrita, dirs_exist_ok=True)
    with open(home / ".config" / "kritarc", "a") as f:
        f.write("enable_chromastyle_harness=true\n")
    (work / "params.json").write_text(json.dumps({**params, "work": str(work)}))
    runtime = work / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    envs = {"HOME": str(home), "XDG_RUNTIME_DIR": str(runtime), "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"), "CHROMASTYLE_KRITA_PARAMS": str(work / "params.json"),
            **(env or {})}
    tmp = work / "tmp"   # Krita's swap and cache files stay with the test
    tmp.mkdir(exist_ok=True)
    envs["TMPDIR"] = str(tmp)
    # Krita sometimes fails to reach a just-started Xvfb: start it again, at most three times in all
    for attempt in range(3):
        (work / "result.json").unlink(missing_ok=True)
        with xvfb() as display:
            if root is None:
                r = run_in_session(["krita", "--nosplash"], timeout, env={**system_env(), **envs, "DISPLAY": display})
            else:
                inner = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **envs, "DISPLAY": display}
                r = run_in_session(in_root(root, inner, "krita --nosplash", rw=[work], ro=worker_paths(), x11=True),
                                   timeout)
        if "could not connect to display" not in r.stderr:
            break
    result = work / "result.json"
    return r, json.loads(result.read_text()) if result.exists() else None


def run_in_session(argv, timeout, env=None):
    """subprocess.run in a session of its own: on timeout the whole session is killed (a chrooted
    Krita is a grandchild, which subprocess.run's own kill would leave running) and the error
    shows what the process said."""
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          start_new_session=True) as p:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            err = p.communicate()[1]
            raise RuntimeError(f"{argv[0]} did not finish in {timeout} s; what it said:\n{err[-3000:]}") from None
    return subprocess.CompletedProcess(argv, p.returncode, out, err)


def system_env():
    """This environment for the system's Krita, less what would point its embedded Python elsewhere.
    That Python finds its home by looking for `python3` on PATH: with a virtual environment's bin
    first (an activated venv), it takes the venv's home, cannot import PyQt5, runs no plug-in, and
    Krita sits idle until the timeout."""
    drop = {"QT_QPA_PLATFORM", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH"}   # QT_QPA_PLATFORM=offscreen aborts Krita
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "PATH": "/usr/bin:/bin"}


def stop_worker(runtime):
    """Stop the worker a test's Krita started (its state file is in the runtime dir)."""
    state = Path(runtime) / "chromastyle" / "worker.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        os.kill(json.loads(state.read_text())["pid"], signal.SIGTERM)
