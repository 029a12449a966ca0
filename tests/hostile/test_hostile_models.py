"""Downloads and the model cache against a real misbehaving HTTP server on 127.0.0.1, hostile
registry entries and a flipped byte in a cached model."""
import functools
import hashlib
import os
import shutil
import threading

import pytest

from chromastyle import cli, models
from chromastyle.errors import ModelError, UserError
from conftest import SAMPLE
from fileserver import FileServer
from hostile import cli as run_cli

CONTENT = os.urandom(200_000)
SHA = hashlib.sha256(CONTENT).hexdigest()


@pytest.fixture
def server():
    with FileServer(CONTENT) as s:
        yield s


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(models, "download", functools.partial(models.download, backoff=0.01))


def registry(path, name="remote-test", version="1.0", file_name="model.onnx", urls=(), sha=SHA, size=len(CONTENT)):
    path.write_text(f'''
[[model]]
name = "{name}"
version = "{version}"
license = "test"
[[model.files]]
name = "{file_name}"
sha256 = "{sha}"
size = {size}
urls = [{", ".join(f'"{u}"' for u in urls)}]
[model.styles]
natural = "Natural"
''')
    return path


# -- CHROMASTYLE_OFFLINE --------------------------------------------------------------------------------

@pytest.mark.parametrize("value, offline", [
    ("1", True), ("true", True), ("TRUE", True), ("yes", True), ("on", True), (" On ", True),
    ("", False), ("0", False), ("false", False), ("False", False), ("no", False), ("off", False), ("OFF", False),
])
def test_offline_words(monkeypatch, value, offline):
    monkeypatch.setenv("CHROMASTYLE_OFFLINE", value)
    assert models.offline() is offline


@pytest.mark.parametrize("value", ["maybe", "2", "offline", "nein"])
def test_offline_nonsense_is_an_error_not_a_guess(monkeypatch, capsys, value):
    monkeypatch.setenv("CHROMASTYLE_OFFLINE", value)
    with pytest.raises(UserError, match="CHROMASTYLE_OFFLINE"):
        models.offline()
    assert cli.main(["models", "verify", "--fix"]) == 1
    assert "CHROMASTYLE_OFFLINE" in capsys.readouterr().err


def test_off_means_online(server, tmp_path, monkeypatch, fast):
    monkeypatch.setenv("CHROMASTYLE_REGISTRY", str(registry(tmp_path / "r.toml", urls=[f"{server.url}/ok"])))
    monkeypatch.setenv("CHROMASTYLE_OFFLINE", "off")
    assert models.model_path("remote-test").read_bytes() == CONTENT
    assert server.counts == {"ok": 1}


def test_offline_verify_fix_downloads_nothing(server, tmp_path, monkeypatch, capsys, fast):
    monkeypatch.setenv("CHROMASTYLE_REGISTRY", str(registry(tmp_path / "r.toml", urls=[f"{server.url}/ok"])))
    monkeypatch.setenv("CHROMASTYLE_OFFLINE", "0")
    path = models.model_path("remote-test")
    path.write_bytes(b"x" * len(CONTENT))   # corrupt, same size
    server.requests.clear()
    monkeypatch.setenv("CHROMASTYLE_OFFLINE", "1")
    assert cli.main(["models", "verify", "remote-test", "--fix"]) == 1
    assert "CHROMASTYLE_OFFLINE" in capsys.readouterr().err
    assert server.requests == []
    assert path.read_bytes() == b"x" * len(CONTENT)   # left for the user to see, not deleted
    with pytest.raises(ModelError, match="corrupt"):
        models.model_path("remote-test")
    assert cli.main(["models", "pull", "remote-test"]) == 1
    assert server.requests == []


# -- mirrors that send too much ---------------------------------------------------------------------------

def test_mirror_sending_more_than_the_registered_size(server, tmp_path):
    dest = tmp_path / "m.onnx"
    models.download([f"{server.url}/more", f"{server.url}/ok"], dest, SHA, len(CONTENT), backoff=0.01, retries=1)
    assert dest.read_bytes() == CONTENT
    assert server.counts == {"more": 1, "ok": 1}


def test_endless_mirror_is_not_read_to_the_end(server, tmp_path):
    dest = tmp_path / "m.onnx"
    errors = []

    def pull():
        try:
            models.download([f"{server.url}/endless"], dest, SHA, len(CONTENT), backoff=0.01, retries=2)
        except models.DownloadError as e:
            errors.append(str(e))
    t = threading.Thread(target=pull, daemon=True)
    t.start()
    t.join(120)
    assert not t.is_alive(), "the download read an endless body"
    assert errors and "more than the registered" in errors[0]
    assert not dest.exists() and not dest.with_name("m.onnx.part").exists()
    assert server.sent < 2 * len(CONTENT) + (16 << 20)   # stopped soon after the registered size


# -- names that are paths ----------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("name", "../../outside"), ("name", "a/b"), ("name", ".."), ("name", "..hidden"), ("name", "/abs"),
    ("name", "C:\\\\x"), ("name", ""), ("version", "../.."), ("version", "1/../../x"),
    ("file_name", "../../../outside.txt"), ("file_name", "sub/../../x"), ("file_name", "/etc/passwd"),
    ("file_name", ".."), ("file_name", "a\\\\..\\\\..\\\\x"),
])
def test_registry_names_cannot_leave_the_cache(server, tmp_path, monkeypatch, capsys, field, value):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    monkeypatch.setenv("CHROMASTYLE_HOME", str(home))
    monkeypatch.setenv("CHROMASTYLE_OFFLINE", "0")
    reg = registry(tmp_path / "r.toml", urls=[f"{server.url}/ok"], **{field: value})
    monkeypatch.setenv("CHROMASTYLE_REGISTRY", str(reg))
    for args in (["models", "rm", value if field == "name" else "remote-test"], ["models", "pull", "remote-test"],
                 ["models", "list"], ["models", "verify", "--fix"]):
        assert cli.main(args) == 1, args
        err = capsys.readouterr().err
        assert "registry" in err and "not a plain name" in err and "Traceback" not in err
    assert outside.read_text() == "keep me"
    assert server.requests == []
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["outside.txt", "r.toml"]


# -- a cached model with one flipped byte ------------------------------------------------------------------

@pytest.fixture
def cached_copy(tmp_path, monkeypatch):
    """A registry entry whose files (those of the shipped model) live in the cache only."""
    shipped = models.get_entry()
    home = tmp_path / "home"
    monkeypatch.setenv("CHROMASTYLE_HOME", str(home))
    folder = home / "models" / "cached-copy" / "1"
    folder.mkdir(parents=True)
    lines = ['[[model]]', 'name = "cached-copy"', 'version = "1"', 'license = "test"']
    for f in shipped.files:
        shutil.copy(models.intact_folder(shipped) / f.name, folder / f.name)
        lines += ['[[model.files]]', f'name = "{f.name}"', f'sha256 = "{f.sha256}"', f'size = {f.size}', 'urls = []']
    (tmp_path / "r.toml").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("CHROMASTYLE_REGISTRY", str(tmp_path / "r.toml"))
    return folder / shipped.main_file.name, home


def flip(path, keep_mtime):
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    if keep_mtime:   # bit rot does not touch the mtime
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("keep_mtime", [False, True])
def test_flipped_byte_in_a_cached_model_is_found_before_it_runs(cached_copy, tmp_path, keep_mtime):
    model, home = cached_copy
    env = {"CHROMASTYLE_HOME": str(home), "CHROMASTYLE_REGISTRY": str(tmp_path / "r.toml"), "CHROMASTYLE_OFFLINE": "1"}
    ok = run_cli("run", SAMPLE, "-o", tmp_path / "ok.png", "--model", "cached-copy", env=env)
    assert ok.returncode == 0, ok.stderr
    flip(model, keep_mtime)
    bad = run_cli("run", SAMPLE, "-o", tmp_path / "bad.png", "--model", "cached-copy", env=env)
    assert bad.returncode == 1 and "corrupt" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad.png").exists()


def test_flipped_byte_found_in_a_running_process(cached_copy):
    model, _ = cached_copy
    assert models.model_path("cached-copy") == model
    flip(model, keep_mtime=False)
    with pytest.raises(ModelError, match="corrupt"):
        models.model_path("cached-copy")
