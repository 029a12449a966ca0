"""Run the real Krita under Xvfb with the chromastyle plug-in (installed by its real installer) and
a harness extension that runs scenarios and exits."""
import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from chromastyle import install

HERE = Path(__file__).resolve().parent


def ensure_krita():
    r = subprocess.run(["bash", str(HERE / "setup_krita.sh")], capture_output=True, text=True, timeout=1200)
    if r.returncode:
        raise RuntimeError(f"could not install Krita: {r.stderr[-2000:]}")


@contextlib.contextmanager
def xvfb():
    """A private Xvfb; -displayfd tells us its display once it is ready (no start-up race)."""
    read, write = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as f:
        number = f.readline().strip()
    try:
        if not number:
            raise RuntimeError("Xvfb did not start")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(10)


def run_krita(work, params, env=None, timeout=300):
    work = Path(work)
    home = work / "home"
    pykrita = home / ".local" / "share" / "krita" / "pykrita"
    install.install_krita(pykrita, kritarc=home / ".config" / "kritarc")
    shutil.copytree(HERE / "krita_harness", pykrita, dirs_exist_ok=True)
    with open(home / ".config" / "kritarc", "a") as f:
        f.write("enable_chromastyle_harness=true\n")
    (work / "params.json").write_text(json.dumps({**params, "work": str(work)}))
    runtime = work / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    envs = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime),
            "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / ".local" / "share"),
            "CHROMASTYLE_KRITA_PARAMS": str(work / "params.json"), **(env or {})}
    envs.pop("QT_QPA_PLATFORM", None)   # Krita needs X11: offscreen aborts
    for attempt in range(2):   # Krita sometimes fails to reach a just-started Xvfb: try once more
        with xvfb() as display:
            r = subprocess.run(["krita", "--nosplash"], capture_output=True, text=True,
                               env={**envs, "DISPLAY": display}, timeout=timeout)
        if "could not connect to display" not in r.stderr:
            break
    result = work / "result.json"
    return r, json.loads(result.read_text()) if result.exists() else None
