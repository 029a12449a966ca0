"""A real worker process under hostile clients: every request gets an answer a person can read
(never a 500, never a traceback in the log), no client-chosen file is ever loaded, connections
are bounded in number and time, a job's memory is bounded whatever the client asks."""
import json
import os
import pickle
import shutil
import socket
import stat
import struct
import time
from urllib.parse import quote

import pytest

from chromastyle.client import Client, encode_job
from conftest import SHIPPED_MODEL
from hostile import closed_within, error_of, healthy, raw, start_worker, stop, tracebacks

OK = {"protocol": "1", "width": 4, "height": 4, "channels": 3, "dtype": "uint8"}
PIXELS = b"\0" * 48


class Marker:
    """Unpickling this creates a file: proof that a client's file was unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One worker for the module: --request-timeout 1, a --models-dir with a copy of the shipped
    model, a link out of that folder, and a pickle that would leave a marker if ever loaded."""
    base = tmp_path_factory.mktemp("hostile-worker")
    home = base / "home"
    models_dir = base / "models"
    shutil.copytree(SHIPPED_MODEL.parent, models_dir / "mine")
    (models_dir / "escape.onnx").symlink_to(SHIPPED_MODEL)
    marker = base / "pwned"
    evil = base / "evil.pt"
    evil.write_bytes(pickle.dumps(Marker(str(marker))))
    (models_dir / "evil.pt").write_bytes(evil.read_bytes())
    env = {**os.environ, "CHROMASTYLE_HOME": str(home), "CHROMASTYLE_OFFLINE": "1"}
    state_file = base / "run" / "worker.json"
    proc, state = start_worker(state_file, "--max-pixels", "3000000", "--request-timeout", "1",
                               "--models-dir", str(models_dir), env=env)
    world = {"state": state, "state_file": state_file, "log": state_file.with_name("worker.log"),
             "marker": marker, "evil": evil, "models_dir": models_dir, "proc": proc}
    yield world
    stop(proc)


def post_job(world, header, pixels=PIXELS):
    return raw(world["state"], "POST", "/v1/jobs", encode_job(header, pixels))


def assert_refused(status, body, statuses=(400,)):
    assert status in statuses, (status, body[:200])
    return error_of(body)


# -- 1. no code execution: only registry names or files of the owner's --models-dir ------------------

HOSTILE_MODELS = {
    "the shipped model's absolute path": lambda w: str(SHIPPED_MODEL),
    "a pickle that runs code": lambda w: str(w["evil"]),
    "a pickle inside --models-dir": lambda w: "evil.pt",
    "/etc/passwd": lambda w: "/etc/passwd",
    "a missing .onnx": lambda w: "/etc/no-such-file.onnx",
    "an absolute path inside --models-dir": lambda w: str(w["models_dir"] / "mine" / SHIPPED_MODEL.name),
    "../ up to /etc/passwd": lambda w: "../" * 8 + "etc/passwd",
    "../ inside --models-dir": lambda w: f"mine/../mine/{SHIPPED_MODEL.name}",
    "a link out of --models-dir": lambda w: "escape.onnx",
    "~": lambda w: "~/model.onnx",
    "registry name + ..": lambda w: "chromastyle-vgg16/../x.onnx",
    "a Windows path": lambda w: "C:\\Windows\\x.onnx",
    "a folder of --models-dir": lambda w: "mine",
    "500 characters": lambda w: "x" * 500,
}


@pytest.mark.parametrize("case", list(HOSTILE_MODELS))
def test_job_cannot_name_a_file(world, case):
    name = HOSTILE_MODELS[case](world)
    status, body, _ = post_job(world, {**OK, "options": {"model": name}})
    message = assert_refused(status, body)
    assert "unknown model" in message or "longer than" in message
    status, body, _ = raw(world["state"], "GET", "/v1/styles?model=" + quote(name))
    assert status == 400 and "unknown model" in error_of(body)
    assert not world["marker"].exists()


def test_existing_and_missing_files_get_the_same_answer(world):
    """A client cannot learn which files exist from the worker's answers."""
    answers = set()
    for name in ("/etc/passwd", "/etc/no-such-file", str(SHIPPED_MODEL), str(world["evil"]),
                 "/root/.ssh/id_rsa", "/no/such/dir/x.onnx"):
        status, body, _ = post_job(world, {**OK, "options": {"model": name}})
        assert status == 400
        answers.add(error_of(body).replace(repr(name), "NAME"))
    assert len(answers) == 1, answers


def test_models_dir_files_are_served_and_listed(world):
    name = f"mine/{SHIPPED_MODEL.name}"
    status, body, _ = raw(world["state"], "GET", "/v1/models")
    listed = {m["name"]: m["source"] for m in json.loads(body)["models"]}
    assert listed[name] == "models-dir" and "escape.onnx" not in listed
    client = Client(world["state_file"], autostart=False)
    out = client.run(bytes(40 * 30), 40, 30, channels=1, options={"model": name})
    assert len(out) == 40 * 30 * 3


# -- 6. malformed job headers: 400 with a message, never a 500 --------------------------------------

def nested(depth):
    return "[" * depth + "]" * depth


HEADERS = {
    "deeply nested array": nested(30000),
    "deeply nested object": '{"a":' * 10000 + "1" + "}" * 10000,
    "nested in options": json.dumps({**OK, "options": {}})[:-2] + nested(20000) + "}}",
    "width 1e400": '{"width": 1e400, "height": 4, "channels": 3}',
    "height -1e400": '{"width": 4, "height": -1e400, "channels": 3}',
    "channels 1e400": '{"width": 4, "height": 4, "channels": 1e400}',
    "tile 1e400": json.dumps(OK)[:-1] + ', "options": {"tile": 1e400}}',
    "overlap 1e400": json.dumps(OK)[:-1] + ', "options": {"overlap": 1e400}}',
    "stroke_scale 1e400": json.dumps(OK)[:-1] + ', "options": {"stroke_scale": 1e400}}',
    "seed 1e400": json.dumps(OK)[:-1] + ', "options": {"seed": 1e400}}',
    "strength 1e400": json.dumps(OK)[:-1] + ', "sequence": {"id": "a", "strength": 1e400}}',
    "NaN width": '{"width": NaN, "height": 4, "channels": 3}',
    "Infinity stroke_scale": json.dumps(OK)[:-1] + ', "options": {"stroke_scale": Infinity}}',
    "a 5000-digit width": '{"width": ' + "9" * 5000 + ', "height": 4, "channels": 3}',
    "header is a list": json.dumps([OK]),
    "header is null": "null",
    "header is a string": '"width"',
    "empty header": "",
    "not UTF-8": b'{"width": "\xff\xfe"}',
    "unknown field": json.dumps({**OK, "exec": "rm -rf /"}),
}
for field in ("dtype", "hints", "colorspace", "protocol"):
    HEADERS[f"{field} is a list"] = json.dumps({**OK, field: ["uint8"]})
    HEADERS[f"{field} is an object"] = json.dumps({**OK, field: {"a": 1}})
for field, value in (("styles", ["natural"]), ("keep", ["none"]), ("model", ["x"]), ("device", ["cpu"]),
                     ("styles", {"natural": 1}), ("styles", 7), ("keep", None), ("tileable", "yes"),
                     ("tileable", 1), ("stroke_scale", "big"), ("stroke_scale", 0.1), ("stroke_scale", 5),
                     ("stroke_scale", True), ("seed", "x"), ("seed", -1), ("seed", 2 ** 70), ("seed", 1.5),
                     ("tile", "abc"), ("tile", 8192), ("tile", 100000), ("tile", 0), ("tile", 64.0),
                     ("overlap", -1), ("overlap", "16"), ("device", "gpu"), ("device", "cuda:0"),
                     ("model", 5), ("styles", "natural:lots"), ("styles", "natural:2"), ("styles", "x" * 3000),
                     ("styles", "no_such_style")):
    HEADERS[f"options.{field} = {json.dumps(value)[:20]}"] = json.dumps({**OK, "options": {field: value}})
for field, value in (("width", "abc"), ("width", "4"), ("width", True), ("width", 4.5), ("width", 0),
                     ("width", 10 ** 30), ("height", None), ("height", []), ("channels", 0), ("channels", 5),
                     ("channels", "3"), ("dtype", "int64"), ("dtype", "UINT8"), ("hints", "rgb"),
                     ("colorspace", "cmyk"), ("protocol", "2"), ("protocol", 1), ("options", [1]),
                     ("options", "styles=natural"), ("sequence", [1, 2]), ("sequence", "shot"),
                     ("sequence", {"strength": 0.5}), ("sequence", {"id": ["a"]}), ("sequence", {"id": 5}),
                     ("sequence", {"id": "a", "strength": "lots"}), ("sequence", {"id": "a", "reset": "yes"}),
                     ("sequence", {"id": "a", "extra": 1}), ("sequence", {"id": "x" * 200})):
    HEADERS[f"{field} = {json.dumps(value)[:20]}"] = json.dumps({**OK, field: value})
for missing in ("width", "height", "channels"):
    HEADERS[f"no {missing}"] = json.dumps({k: v for k, v in OK.items() if k != missing})


@pytest.mark.parametrize("name", list(HEADERS))
def test_malformed_header_is_a_400(world, name):
    head = HEADERS[name]
    head = head.encode() if isinstance(head, str) else head
    body = struct.pack(">I", len(head)) + head + PIXELS
    status, text, _ = raw(world["state"], "POST", "/v1/jobs", body)
    assert status == 400, (status, text[:300])
    error_of(text)


@pytest.mark.parametrize("body, status", [
    (b"", 400), (b"\0\0", 400), (struct.pack(">I", 10 ** 8) + b"{}", 413),
    (struct.pack(">I", 100) + b"{}", 400),                                       # says 100, has 2
    (encode_job({**OK, "width": 5000, "height": 5000}, b""), 413),                # above --max-pixels
    (encode_job({**OK, "width": 2 ** 31 - 1, "height": 2 ** 31 - 1, "dtype": "float32"}, b""), 413),
    (encode_job(OK, PIXELS + b"extra"), 400), (encode_job(OK, PIXELS[:-1]), 400),
    (encode_job({**OK, "hints": "rgba8"}, PIXELS), 400),                          # hints announced, not sent
])
def test_body_framing_errors(world, body, status):
    got, text, _ = raw(world["state"], "POST", "/v1/jobs", body)
    assert got == status, (got, text[:200])
    error_of(text)


def test_content_length_is_checked_before_reading(world):
    state = world["state"]
    assert raw(state, "POST", "/v1/jobs", b"x", headers={"Content-Length": str(10 ** 12)})[0] == 413
    assert raw(state, "POST", "/v1/jobs", b"x", headers={"Content-Length": "-5"})[0] == 400
    assert raw(state, "POST", "/v1/jobs", b"x", headers={"Content-Length": "lots"})[0] == 411


@pytest.mark.parametrize("path, status", [
    ("/v1/jobs/nope?wait=abc", 404), ("/v1/jobs/" + "a" * 5000, 404), ("/v1/styles?" + "&".join(["a=1"] * 50), 400),
    ("/v1/../../etc/passwd", 404), ("/v1/jobs/%00", 404), ("/v1/health/extra", 404), ("/" + "x" * 6000, 404),
])
def test_odd_paths(world, path, status):
    got, text, _ = raw(world["state"], "GET", path)
    assert got == status
    error_of(text)


def test_wait_must_be_a_number(world):
    job = json.loads(post_job(world, OK)[1])["id"]
    for wait in ("abc", "nan", "inf", "-inf", "1e400"):
        status, text, _ = raw(world["state"], "GET", f"/v1/jobs/{job}?wait={wait}")
        assert status == 400 and "wait" in error_of(text)
    assert raw(world["state"], "GET", f"/v1/jobs/{job}?wait=-3")[0] == 200   # clamped to 0..10


@pytest.mark.parametrize("method, path", [("GET", "/v1/health"), ("GET", "/v1/models"), ("GET", "/v1/styles"),
                                          ("GET", "/v1/openapi.json"), ("POST", "/v1/jobs"),
                                          ("GET", "/v1/jobs/x"), ("DELETE", "/v1/jobs/x"),
                                          ("GET", "/v1/jobs/x/result"), ("POST", "/v1/shutdown")])
@pytest.mark.parametrize("token", [False, "", "wrong", "é" * 40])
def test_every_operation_needs_the_token(world, method, path, token):
    headers = {"Authorization": "Bearer " + token} if token is not False else {}
    status, text, _ = raw(world["state"], method, path, body=b"", token=False,
                          headers={k: v.encode("utf-8").decode("latin-1") for k, v in headers.items()})
    assert status == 401
    error_of(text)


# -- 6. connections: slow, idle, too many, vanishing -------------------------------------------------

def connect(world):
    return socket.create_connection((world["state"]["host"], world["state"]["port"]), timeout=10)


def test_slow_headers_are_cut_off(world):
    """Headers sent a byte at a time (each pause shorter than the timeout) still end in time."""
    with connect(world) as s:
        s.sendall(b"GET /v1/health HTTP/1.1\r\n")
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 20:
            try:
                s.sendall(b"X")
            except OSError:
                closed = True
                break
            if closed_within(s, 0.3):
                closed = True
                break
        assert closed, "a connection trickling its headers was never closed"
    assert healthy(world["state"])


@pytest.mark.parametrize("prefix", [b"", b"POST /v1/jobs HTTP/1.1\r\n", b"GET /v1/health HTTP/1.1\r\nAuthorization:"])
def test_silent_connections_are_closed(world, prefix):
    with connect(world) as s:
        s.sendall(prefix)
        assert closed_within(s, 15)


def test_idle_keep_alive_connection_is_closed(world):
    state = world["state"]
    with connect(world) as s:
        s.sendall(f"GET /v1/health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {state['token']}\r\n\r\n".encode())
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        assert closed_within(s, 15)


def test_slow_job_body_is_cut_off(world):
    head = json.dumps({**OK, "width": 1000, "height": 1000}).encode()
    body_len = 4 + len(head) + 3_000_000
    with connect(world) as s:
        s.sendall(f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {world['state']['token']}\r\n"
                  f"Content-Length: {body_len}\r\n\r\n".encode() + struct.pack(">I", len(head)) + head)
        started, closed = time.monotonic(), False
        while time.monotonic() - started < 30 and not closed:
            try:
                s.sendall(b"\0" * 100)   # 300 bytes/s: far below any real upload
            except OSError:
                closed = True
                break
            closed = closed_within(s, 0.3)
        assert closed
    assert healthy(world["state"])


def test_too_many_connections_get_503_and_the_worker_recovers(tmp_path):
    """64 silent connections are held (a worker of its own, whose timeout outlasts the test's set-up);
    the 65th is answered 503 at once; once they are gone, the worker serves again."""
    proc, state = start_worker(tmp_path / "w.json", "--request-timeout", "60")
    socks = []
    try:
        for _ in range(64):
            socks.append(socket.create_connection((state["host"], state["port"]), timeout=10))
        with socket.create_connection((state["host"], state["port"]), timeout=10) as extra:
            answer = extra.recv(65536)
        assert answer.startswith(b"HTTP/1.1 503") and b"too many connections" in answer
        for s in socks:
            s.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not healthy(state):
            time.sleep(0.2)
        assert healthy(state)
        assert tracebacks(tmp_path / "worker.log") == 0
    finally:
        for s in socks:
            s.close()
        stop(proc)


def test_client_vanishing_mid_result_logs_no_traceback(world):
    client = Client(world["state_file"], autostart=False)
    h, w = 900, 900   # a 13 MB result: more than the socket buffers hold
    job = client.submit(bytes(h * w * 4 * 4), w, h, 4, "float32")
    while client.status(job, wait=1)["state"] not in ("done", "failed"):
        pass
    state = world["state"]
    for _ in range(3):
        with connect(world) as s:
            s.sendall(f"GET /v1/jobs/{job}/result HTTP/1.1\r\nHost: x\r\n"
                      f"Authorization: Bearer {state['token']}\r\n\r\n".encode())
            s.recv(1000)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))   # reset, not FIN
    time.sleep(1.0)
    assert healthy(state)
    assert len(client.result(job)[0]) == h * w * 4 * 4


def test_jobs_cannot_ask_for_more_memory(world):
    """A tile of 8192 (16 GB) is refused; the pixel limit holds whatever the client says."""
    for options in ({"tile": 8192}, {"tile": 2048, "overlap": 16}):
        status, text, _ = post_job(world, {**OK, "options": options})
        assert status == 400 and "tile" in error_of(text)
    status, text, _ = post_job(world, {**OK, "width": 3000, "height": 1001}, b"")
    assert status == 413 and "3,000,000" in error_of(text)


def test_queued_pixels_share_a_budget():
    from chromastyle.server import HttpError, JobQueue

    q = JobQueue(budget=1000)
    q.reserve(600)
    with pytest.raises(HttpError) as e:
        q.reserve(600)
    assert e.value.status == 503
    q.release(600)
    q.reserve(1000)


def test_no_traceback_in_the_log_after_all_this(world):
    """Runs last in this module: everything above was answered without a traceback."""
    assert healthy(world["state"])
    assert tracebacks(world["log"]) == 0, world["log"].read_text()[-3000:]
    assert not world["marker"].exists()


# -- 2. permissions: only folders the worker creates are made private --------------------------------

def test_existing_folders_keep_their_permissions(tmp_path):
    shared = tmp_path / "shared-tmp"        # like /tmp: everyone may write, sticky
    shared.mkdir()
    os.chmod(shared, 0o1777)
    logs = tmp_path / "logs"
    logs.mkdir()
    os.chmod(logs, 0o755)
    proc, _ = start_worker(shared / "w.json", log_file=logs / "w.log")
    try:
        assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
        assert stat.S_IMODE(logs.stat().st_mode) == 0o755
        assert stat.S_IMODE((shared / "w.json").stat().st_mode) == 0o600
    finally:
        stop(proc)
    fresh = tmp_path / "new" / "deeper" / "w.json"
    proc, _ = start_worker(fresh, log_file=tmp_path / "newlogs" / "x" / "w.log")
    try:
        for folder in (fresh.parent, fresh.parent.parent, tmp_path / "newlogs", tmp_path / "newlogs" / "x"):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    finally:
        stop(proc)


def test_worker_start_errors_are_one_line(tmp_path):
    from hostile import cli

    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = cli("serve", "--state-file", blocker / "w.json", timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.startswith("chromastyle: error:")
    r = cli("serve", "--state-file", tmp_path / "w.json", "--models-dir", tmp_path / "nope", timeout=120)
    assert r.returncode == 1 and "models-dir" in r.stderr and "Traceback" not in r.stderr
