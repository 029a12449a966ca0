"""`chromastyle install|uninstall gimp|krita|blender`: put the thin adapters into each host's user
folder, with a copy of the stdlib client, and record the interpreter that runs the worker."""
import json
import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from .client import config_dir
from .errors import UserError
from .models import PACKAGE_DIR, home_dir

CLIENT = PACKAGE_DIR / "client.py"


def plugins_dir():
    inside = PACKAGE_DIR / "_plugins"
    return inside if inside.is_dir() else PACKAGE_DIR.parents[1] / "plugins"


def messages_file():
    """The artist-facing error texts, shared by every adapter (copied like the client)."""
    return plugins_dir() / "common" / "messages.py"


def _user_data(win_env, win_sub, mac_sub, linux_base, linux_sub):
    home = Path.home()
    if sys.platform == "win32":
        return Path(os.environ.get(win_env, home)) / win_sub
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / mac_sub
    return Path(os.environ.get(linux_base[0], home / linux_base[1])) / linux_sub


def gimp_plugins_folder():
    return _user_data("APPDATA", "GIMP/3.0/plug-ins", "GIMP/3.0/plug-ins",
                      ("XDG_CONFIG_HOME", ".config"), "GIMP/3.0/plug-ins")


def krita_pykrita_folder():
    return _user_data("APPDATA", "krita/pykrita", "krita/pykrita",
                      ("XDG_DATA_HOME", ".local/share"), "krita/pykrita")


def kritarc_path():
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home())) / "kritarc"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Preferences" / "kritarc"
    return Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "kritarc"


def record_interpreter(python=None):
    """The plug-ins start the worker with this Python (the one chromastyle is installed in)."""
    folder = config_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "client.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError):
        cfg = {}
    cfg["python"] = str(python or sys.executable)
    path.write_text(json.dumps(cfg, indent=1))
    return path


def _copytree(src, dst):
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def install_gimp(dest=None):
    dest = Path(dest) if dest else gimp_plugins_folder()
    target = dest / "chromastyle"
    _copytree(plugins_dir() / "gimp" / "plug-ins" / "chromastyle", target)
    shutil.copy2(CLIENT, target / "chromastyle_client.py")
    shutil.copy2(messages_file(), target / "chromastyle_messages.py")
    (target / "chromastyle.py").chmod(0o755)   # GIMP runs it directly
    return target


def install_krita(dest=None, kritarc=None):
    dest = Path(dest) if dest else krita_pykrita_folder()
    dest.mkdir(parents=True, exist_ok=True)
    src = plugins_dir() / "krita"
    shutil.copy2(src / "chromastyle.desktop", dest / "chromastyle.desktop")
    _copytree(src / "chromastyle", dest / "chromastyle")
    shutil.copy2(CLIENT, dest / "chromastyle" / "client.py")
    shutil.copy2(messages_file(), dest / "chromastyle" / "messages.py")
    enable_in_kritarc(Path(kritarc) if kritarc else kritarc_path())
    return dest / "chromastyle"


def enable_in_kritarc(path, enabled=True):
    """Set [python] enable_chromastyle=true, keeping everything else in kritarc as it is."""
    lines = path.read_text().splitlines() if path.exists() else []
    out, in_python, done = [], False, False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            if in_python and not done and enabled:
                out.append("enable_chromastyle=true")
                done = True
            in_python = stripped == "[python]"
        elif in_python and stripped.startswith("enable_chromastyle="):
            if enabled and not done:
                out.append("enable_chromastyle=true")
                done = True
            continue
        out.append(line)
    if enabled and not done:
        if not in_python:
            out += ["", "[python]"] if out else ["[python]"]
        out.append("enable_chromastyle=true")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")


def build_blender_zip(out_dir=None):
    """The installable Blender extension: plugins/blender plus the client and messages, built in
    chromastyle's cache folder (never in the current directory) unless ``out_dir`` is given."""
    src = plugins_dir() / "blender"
    out_dir = Path(out_dir) if out_dir else home_dir() / "blender"
    out_dir.mkdir(parents=True, exist_ok=True)
    version = "0.0.0"
    for line in (src / "blender_manifest.toml").read_text().splitlines():
        if line.startswith("version"):
            version = line.split("=")[1].strip().strip('"')
    path = out_dir / f"chromastyle-blender-{version}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(src.rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                z.write(f, f.relative_to(src).as_posix())
        z.write(CLIENT, "client.py")
        z.write(messages_file(), "messages.py")
    return path


def install_blender(blender=None, out_dir=None):
    """Build the zip and install it into the given Blender, or say the one command to do so."""
    path = build_blender_zip(out_dir)
    cmd = [blender or "blender", "--background", "--factory-startup", "--command", "extension", "install-file",
           "--repo", "user_default", "--enable", str(path)]
    if blender:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise UserError(f"Blender could not install {path}: {r.stderr.strip()[-300:]}")
        return path, None
    return path, shlex.join(cmd)


def uninstall(host, dest=None):
    if host == "gimp":
        target = (Path(dest) if dest else gimp_plugins_folder()) / "chromastyle"
        removed = [target] if target.exists() else []
        shutil.rmtree(target, ignore_errors=True)
    elif host == "krita":
        base = Path(dest) if dest else krita_pykrita_folder()
        removed = [p for p in (base / "chromastyle", base / "chromastyle.desktop") if p.exists()]
        shutil.rmtree(base / "chromastyle", ignore_errors=True)
        (base / "chromastyle.desktop").unlink(missing_ok=True)
        if kritarc_path().exists():
            enable_in_kritarc(kritarc_path(), enabled=False)
    else:
        raise UserError("uninstall the Blender extension from Blender's Preferences ▸ Get Extensions "
                        "(or `blender --command extension remove chromastyle`)")
    return removed
