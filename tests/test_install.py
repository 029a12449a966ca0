import ast
import json
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
    assert json.loads((tmp_path / "config" / "client.json").read_text())["python"] == "/opt/py/bin/python3"
    assert cli.main(["uninstall", "gimp", "--dest", str(tmp_path / "gimp")]) == 0
    assert not plug.exists()

    (tmp_path / "xdg").mkdir()
    (tmp_path / "xdg" / "kritarc").write_text("[General]\nfoo=1\n[python]\nenable_other=true\n")
    assert cli.main(["install", "krita", "--dest", str(tmp_path / "pykrita")]) == 0
    assert (tmp_path / "pykrita" / "chromastyle.desktop").exists()
    assert (tmp_path / "pykrita" / "chromastyle" / "client.py").exists()
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
    assert {"blender_manifest.toml", "__init__.py", "jobs.py", "client.py"} <= set(names)


def test_kritarc_without_python_section(tmp_path):
    rc = tmp_path / "kritarc"
    install.enable_in_kritarc(rc)
    assert rc.read_text() == "[python]\nenable_chromastyle=true\n"
    install.enable_in_kritarc(rc)
    assert rc.read_text().count("enable_chromastyle") == 1


@pytest.mark.parametrize("host, allowed", [("gimp", {"gi", "chromastyle_client"}),
                                           ("krita", {"krita", "PyQt5", "PyQt6"}),
                                           ("blender", {"bpy"})])
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
