import ast
import json
import os
import shlex
import subprocess
import sys
import zipfile

import pytest

from chromastyle import cli, install
from conftest import ROOT


def test_install_and_uninstall_each_host(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CHROMASTYLE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert cli.main(["install", "gimp", "--dest", str(tmp_path / "gimp"), "--python", "/opt/py/bin/python3"]) == 0
    plug = tmp_path / "gimp" / "chromastyle"
    assert (plug / "chromastyle.py").stat().st_mode & 0o111 and (plug / "chromastyle_client.py").exists()
    assert (plug / "chromastyle_messages.py").exists()
    assert json.loads((tmp_path / "config" / "client.json").read_text())["python"] == "/opt/py/bin/python3"
    assert cli.main(["uninstall", "gimp", "--dest", str(tmp_path / "gimp")]) == 0
    assert not plug.exists()

    (tmp_path / "xdg").mkdir()
    (tmp_path / "xdg" / "kritarc").write_text("[General]\nfoo=1\n[python]\nenable_other=true\n")
    assert cli.main(["install", "krita", "--dest", str(tmp_path / "pykrita")]) == 0
    assert (tmp_path / "pykrita" / "chromastyle.desktop").exists()
    assert (tmp_path / "pykrita" / "chromastyle" / "client.py").exists()
    assert (tmp_path / "pykrita" / "chromastyle" / "messages.py").exists()
    rc = (tmp_path / "xdg" / "kritarc").read_text()
    assert "enable_chromastyle=true" in rc and "foo=1" in rc and "enable_other=true" in rc
    assert rc.index("enable_chromastyle=true") > rc.index("[python]")
    assert cli.main(["uninstall", "krita", "--dest", str(tmp_path / "pykrita")]) == 0
    assert not (tmp_path / "pykrita" / "chromastyle").exists()
    assert "enable_chromastyle" not in (tmp_path / "xdg" / "kritarc").read_text()

    assert cli.main(["install", "blender", "--dest", str(tmp_path / "dist")]) == 0
    out = capsys.readouterr().out
    assert "extension install-file" in out
    (zip_path,) = (tmp_path / "dist").glob("chromastyle-blender-*.zip")
    names = zipfile.ZipFile(zip_path).namelist()
    assert {"blender_manifest.toml", "__init__.py", "jobs.py", "client.py", "messages.py"} <= set(names)


def test_blender_zip_is_built_in_the_cache_not_the_current_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CHROMASTYLE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("CHROMASTYLE_HOME", str(tmp_path / "cache"))
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert cli.main(["install", "blender"]) == 0
    assert list((tmp_path / "here").iterdir()) == []
    (zip_path,) = (tmp_path / "cache" / "blender").glob("chromastyle-blender-*.zip")
    command = shlex.split(capsys.readouterr().out.split("install it with:\n", 1)[1].splitlines()[0])
    assert command[-1] == str(zip_path) and command[:2] == ["blender", "--background"]


@pytest.mark.host
def test_printed_blender_command_installs_and_enables_the_extension(tmp_path):
    """The command `chromastyle install blender` prints, run as printed in a real Blender (Debian
    trixie's 4.3, chrooted): a new Blender session then has the extension enabled and its operators."""
    from hosts.chroot import in_root, trixie_root

    root = trixie_root("blender")
    env = {**os.environ, "CHROMASTYLE_HOME": str(tmp_path / "cache"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    out = subprocess.run([sys.executable, "-m", "chromastyle", "install", "blender"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout
    command = out.split("install it with:\n", 1)[1].splitlines()[0].strip()
    check = tmp_path / "check.py"
    check.write_text("import bpy, json\n"
                     f"json.dump({{'addons': sorted(bpy.context.preferences.addons.keys()), "
                     f"'operator': 'stylize_image' in dir(bpy.ops.chromastyle)}}, open('{tmp_path}/enabled.json', 'w'))\n")
    blender_env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8"}
    for cmd in (command, f"blender --background --python {check}"):   # install; then a new session
        r = subprocess.run(in_root(root, blender_env, cmd, rw=[tmp_path]), capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, (cmd, r.stdout[-2000:], r.stderr[-2000:])
    enabled = json.loads((tmp_path / "enabled.json").read_text())
    assert "bl_ext.user_default.chromastyle" in enabled["addons"] and enabled["operator"]


def test_kritarc_without_python_section(tmp_path):
    rc = tmp_path / "kritarc"
    install.enable_in_kritarc(rc)
    assert rc.read_text() == "[python]\nenable_chromastyle=true\n"
    install.enable_in_kritarc(rc)
    assert rc.read_text().count("enable_chromastyle") == 1


@pytest.mark.parametrize("host, allowed", [("gimp", {"gi", "chromastyle_client", "chromastyle_messages"}),
                                           ("krita", {"krita", "PyQt5", "PyQt6"}),
                                           ("blender", {"bpy"}),
                                           ("common", set())])
def test_adapters_use_only_the_standard_library_and_their_host(host, allowed):
    """No numpy, onnxruntime or torch inside the hosts: the worker does the work."""
    files = list((ROOT / "plugins" / host).rglob("*.py"))
    assert files
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), feature_version=(3, 10))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                assert name.split(".")[0] in allowed | set(sys.stdlib_module_names), (path.name, name)
