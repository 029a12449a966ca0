"""Run a Python batch script inside the real GIMP 3 (a Debian trixie root, chrooted in a private
mount namespace so nothing leaks), with the chromastyle plug-in installed by its real installer."""
import contextlib
import json
import os
import subprocess
import time
from pathlib import Path

from hosts.chroot import in_root, trixie_root, worker_paths
from hosts.display import xvfb

HERE = Path(__file__).resolve().parent


def gimp_root():
    return trixie_root("gimp", "python3-gi")


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
    envs = {"PATH": "/usr/bin:/bin", "HOME": str(workdir / "home"), "LANG": "C.UTF-8",
            "GIMP3_DIRECTORY": str(profile), "XDG_CONFIG_HOME": str(workdir / "xdg"), **(env or {})}
    cmd = in_root(root, envs, f"gimp-console-3.0 -i -d -f --batch-interpreter=python-fu-eval -b '{batch}' --quit",
                  rw=[workdir], ro=worker_paths())
    (workdir / "home").mkdir(exist_ok=True)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    result_file = workdir / "result.json"
    result = json.loads(result_file.read_text()) if result_file.exists() else None
    return r, result


def run_gimp_gui(root, workdir, script, params, env=None, timeout=180):
    """Run ``script`` in the GUI gimp-3.0 on a private Xvfb; when it writes ``ready``, press Ctrl+Z
    in the real window (xdotool, XTEST events) until it writes its result. A GIMP that quits before
    it is ready (it can lose a just-started display on a busy CPU) is started once more."""
    workdir = Path(workdir)
    profile = workdir / "gimp-gui-profile"
    profile.mkdir(parents=True, exist_ok=True)
    (profile / "gimprc").write_text(f'(plug-in-path "${{gimp_plug_in_dir}}/plug-ins:{workdir / "plug-ins"}")\n'
                                    '(show-welcome-dialog no)\n(show-tips no)\n')
    (workdir / "params-gui.json").write_text(json.dumps(params))
    batch = f'PARAMS = "{workdir / "params-gui.json"}"; exec(open("{script}").read())'
    for attempt in range(2):
        (workdir / "ready").unlink(missing_ok=True)
        (workdir / "undo_result.json").unlink(missing_ok=True)
        with xvfb("1024x768x24") as display:
            envs = {"PATH": "/usr/bin:/bin", "HOME": str(workdir / "home"), "LANG": "C.UTF-8", "DISPLAY": display,
                    "GIMP3_DIRECTORY": str(profile), "XDG_CONFIG_HOME": str(workdir / "xdg"), **(env or {})}
            cmd = in_root(root, envs, f"gimp-3.0 -n -d -f -s --batch-interpreter=python-fu-eval -b '{batch}'",
                          rw=[workdir], ro=worker_paths(), x11=True)
            with open(workdir / "gimp-gui.log", "w") as log:
                gimp = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                try:
                    result = _undo_in_window(gimp, workdir, display, time.monotonic() + timeout)
                finally:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(gimp.pid, 9)
                    gimp.wait(10)
        if result is not None:
            return result
    raise RuntimeError("GIMP quit before it was ready, twice; its output: "
                       + (workdir / "gimp-gui.log").read_text()[-2000:])


def _undo_in_window(gimp, workdir, display, deadline):
    """Wait for the script's ``ready``, then press Ctrl+Z over the canvas until it reports; None if
    GIMP quit before it was ready. More presses than undo steps are harmless: the loaded image had
    nothing else to undo."""
    while not (workdir / "ready").exists():
        if gimp.poll() is not None:
            return None
        if time.monotonic() > deadline:
            raise RuntimeError("GIMP did not get ready")
        time.sleep(0.2)
    x_env = {**os.environ, "DISPLAY": display}
    while not (workdir / "undo_result.json").exists():
        if time.monotonic() > deadline:
            raise RuntimeError("GIMP did not report after the undo")
        subprocess.run(["xdotool", "mousemove", "512", "400", "key", "ctrl+z"], env=x_env, check=True)
        time.sleep(1.0)
    return json.loads((workdir / "undo_result.json").read_text())
