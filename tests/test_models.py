import functools
import hashlib
import multiprocessing
import os

import pytest

from chromastyle import cli, models
from chromastyle.errors import ModelError
from fileserver import FileServer

CONTENT = os.urandom(300_000)
SHA = hashlib.sha256(CONTENT).hexdigest()


@pytest.fixture
def server():
    with FileServer(CONTENT) as s:
        yield s


def fetch(server, names, dest, **kw):
    kw.setdefault("backoff", 0.01)
    return models.download([f"{server.url}/{n}" for n in names], dest, SHA, len(CONTENT), **kw)


def assert_complete(dest):
    assert dest.read_bytes() == CONTENT
    assert not dest.with_name(dest.name + ".part").exists()


def test_plain_download_with_progress(server, tmp_path):
    seen = []
    dest = fetch(server, ["ok"], tmp_path / "m.onnx", progress=lambda d, t: seen.append((d, t)))
    assert_complete(dest)
    assert seen[-1] == (len(CONTENT), len(CONTENT))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_resumes_a_part_file_with_range(server, tmp_path):
    dest = tmp_path / "m.onnx"
    (tmp_path / "m.onnx.part").write_bytes(CONTENT[:100_000])
    fetch(server, ["ok"], dest)
    assert_complete(dest)
    assert server.requests == [("ok", "bytes=100000-")]


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    (tmp_path / "m.onnx.part").write_bytes(b"x" * 1000)
    fetch(server, ["norange"], tmp_path / "m.onnx")
    assert_complete(tmp_path / "m.onnx")


def test_416_restarts_cleanly(server, tmp_path):
    (tmp_path / "m.onnx.part").write_bytes(b"garbage" * 10)
    fetch(server, ["range416"], tmp_path / "m.onnx")
    assert_complete(tmp_path / "m.onnx")
    assert server.requests[0][1] is not None and server.requests[1][1] is None


def test_truncated_transfer_resumes(server, tmp_path):
    fetch(server, ["truncate"], tmp_path / "m.onnx")
    assert_complete(tmp_path / "m.onnx")
    resumed_at = int(server.requests[1][1].split("=")[1].rstrip("-"))
    assert 0 < resumed_at <= len(CONTENT) // 2  # what arrived before the cut was kept


def test_stalled_transfer_times_out_and_resumes(server, tmp_path):
    fetch(server, ["stall"], tmp_path / "m.onnx", stall_timeout=0.5)
    assert_complete(tmp_path / "m.onnx")
    assert len(server.requests) == 2 and server.requests[1][1] is not None


def test_retries_5xx_with_backoff(server, tmp_path):
    fetch(server, ["flaky"], tmp_path / "m.onnx")
    assert_complete(tmp_path / "m.onnx")
    assert server.counts["flaky"] == 3


def test_falls_back_to_the_next_mirror(server, tmp_path):
    fetch(server, ["down", "ok"], tmp_path / "m.onnx", retries=2)
    assert_complete(tmp_path / "m.onnx")
    assert server.counts == {"down": 2, "ok": 1}


def test_tampered_download_is_refused_and_nothing_is_left(server, tmp_path):
    with pytest.raises(models.DownloadError, match="sha256"):
        fetch(server, ["wrong"], tmp_path / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == []


def _pull(url, dest, sha, size, q):
    try:
        models.download([url], dest, sha, size, backoff=0.01)
        q.put("ok")
    except Exception as e:  # report to the parent
        q.put(repr(e))


def test_two_processes_pulling_the_same_file(server, tmp_path):
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    dest = tmp_path / "m.onnx"
    procs = [ctx.Process(target=_pull, args=(f"{server.url}/slow", dest, SHA, len(CONTENT), q)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [q.get(timeout=120), q.get(timeout=120)]   # spawning is slow on a busy machine
    for p in procs:
        p.join(30)
    assert results == ["ok", "ok"]
    assert_complete(dest)
    assert server.counts["slow"] == 1  # the second process found the finished file


def write_registry(path, url):
    path.write_text(f'''
[[model]]
name = "remote-test"
version = "9.9"
license = "test"
[[model.files]]
name = "model.onnx"
sha256 = "{SHA}"
size = {len(CONTENT)}
urls = ["{url}/down", "{url}/ok"]
[model.styles]
natural = "Natural"
''')


def test_registry_pull_verify_path_rm(server, tmp_path, monkeypatch, capsys):
    reg = tmp_path / "reg.toml"
    write_registry(reg, server.url)
    monkeypatch.setenv("CHROMASTYLE_REGISTRY", str(reg))
    entries = models.load_registry()
    assert "chromastyle-vgg16" in entries and entries["chromastyle-vgg16"].default
    assert models.default_model_name() == "chromastyle-vgg16"
    with pytest.raises(ModelError, match="OFFLINE"):
        models.model_path("remote-test")
    monkeypatch.setenv("CHROMASTYLE_OFFLINE", "0")
    monkeypatch.setattr(models, "download", functools.partial(models.download, backoff=0.01))
    path = models.model_path("remote-test")
    assert path.read_bytes() == CONTENT
    assert cli.main(["models", "verify", "remote-test"]) == 0
    path.write_bytes(b"corrupt")
    assert cli.main(["models", "verify", "remote-test"]) == 1
    assert "corrupt" in capsys.readouterr().out
    assert cli.main(["models", "verify", "remote-test", "--fix"]) == 0
    assert path.read_bytes() == CONTENT
    assert cli.main(["models", "path", "remote-test"]) == 0
    assert str(path) in capsys.readouterr().out
    assert cli.main(["models", "list"]) == 0
    assert "remote-test" in capsys.readouterr().out
    assert cli.main(["models", "rm", "remote-test"]) == 0
    assert not path.exists()


def test_shipped_model_is_registered_and_verified():
    entry = models.get_entry()
    assert models.file_ok(models.local_path(entry, entry.main_file), entry.main_file)
    assert len(entry.main_file.urls) >= 2
    assert set(entry.styles) >= {"natural", "starry_night", "great_wave"}
