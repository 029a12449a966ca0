"""Against a real worker process on 127.0.0.1."""
import http.client
import json
import os
import signal
import stat
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from chromastyle import pipeline
from chromastyle.client import Cancelled, Client, Job, WorkerError, encode_job


def start_worker(state_file, *extra):
    proc = subprocess.Popen([sys.executable, "-m", "chromastyle", "serve", "--state-file", str(state_file),
                             "--max-pixels", "3000000", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if state_file.exists():
            state = json.loads(state_file.read_text())
            if state["pid"] == proc.pid:
                return proc, state
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode())
        time.sleep(0.05)
    raise RuntimeError("worker did not start")


@pytest.fixture
def worker(tmp_path):
    state_file = tmp_path / "run" / "worker.json"
    proc, state = start_worker(state_file)
    yield state_file, state
    proc.terminate()
    proc.wait(10)


def raw(state, method, path, body=None, token=None, headers=None):
    conn = http.client.HTTPConnection(state["host"], state["port"], timeout=30)
    h = {"Authorization": f"Bearer {state['token'] if token is None else token}", **(headers or {})}
    try:
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def healthy(state):
    return raw(state, "GET", "/v1/health")[0] == 200


def test_state_file_is_private_and_health(worker):
    state_file, state = worker
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    assert set(state) >= {"host", "port", "token", "pid"}
    client = Client(state_file, autostart=False)
    h = client.connect()
    assert h["status"] == "ok" and h["providers"] == ["CPUExecutionProvider"]
    assert "starry_night" in [s["slug"] for s in client.styles()]
    assert any(m["default"] for m in client.models())
    status, body = raw(state, "GET", "/v1/openapi.json")
    assert status == 200 and "/v1/jobs" in json.loads(body)["paths"]


@pytest.mark.parametrize("dtype, channels", [("uint8", 3), ("uint16", 1), ("float32", 4), ("uint8", 2)])
def test_round_trip_equals_in_process(worker, dtype, channels):
    state_file, _ = worker
    rng = np.random.default_rng(0)
    h, w = 90, 130
    scale = {"uint8": 255, "uint16": 65535, "float32": 1}[dtype]
    arr = (rng.random((h, w, channels)) * scale).astype(dtype)
    hints = np.zeros((h, w, 4), np.uint8)
    hints[40:44, 60:64] = (200, 30, 30, 255)
    options = {"styles": "great_wave:0.6", "seed": 5}
    out = Client(state_file, autostart=False).run(arr.tobytes(), w, h, channels, dtype, options, hints.tobytes())
    color = arr[..., :1 if channels <= 2 else 3].astype(np.float32) / scale
    from chromastyle.imaging import hints_from_rgba
    ref = pipeline.run(np.repeat(color, 3, -1) if channels <= 2 else color, hints_from_rgba(hints),
                       **options)
    out_channels = 4 if channels in (2, 4) else 3
    got = np.frombuffer(out, dtype).reshape(h, w, out_channels)
    if dtype == "float32":
        assert np.array_equal(got[..., :3], ref.astype(np.float32))
    else:
        assert np.array_equal(got[..., :3], np.round(np.clip(ref, 0, 1) * scale).astype(dtype))
    if out_channels == 4:
        assert np.array_equal(got[..., 3], arr[..., -1])  # alpha untouched


def big_job(client, options=None, size=(1000, 1100)):
    h, w = size
    arr = np.full((h, w, 3), 128, np.uint8)
    return client.submit(arr.tobytes(), w, h, 3, "uint8", {"tile": 160, "overlap": 16, **(options or {})})


# a job that runs for seconds, long enough to be cancelled or abandoned midway: the pipeline does
# 3 MP in about 0.3 s, 16 MP in about 2 s (on this project's 2-core CPU)
LONG_JOB_SIZE = (4000, 4000)
LONG_JOB_LIMIT = ("--max-pixels", str(LONG_JOB_SIZE[0] * LONG_JOB_SIZE[1]))


def test_progress_is_monotonic_and_cancel_mid_job(tmp_path):
    proc, state = start_worker(tmp_path / "run" / "worker.json", *LONG_JOB_LIMIT)
    try:
        client = Client(tmp_path / "run" / "worker.json", autostart=False)
        seen = []
        arr = np.full((500, 600, 3), 90, np.uint8)
        client.run(arr.tobytes(), 600, 500, options={"tile": 128, "overlap": 16}, progress=lambda p, s: seen.append(p),
                   poll=0.01)
        assert seen == sorted(seen) and len(set(seen)) > 3
        job = big_job(client, size=LONG_JOB_SIZE)
        while client.status(job)["progress"] <= 0:
            time.sleep(0.02)
        client.cancel(job)
        deadline = time.monotonic() + 20
        while client.status(job)["state"] not in ("cancelled",) and time.monotonic() < deadline:
            time.sleep(0.05)
        st = client.status(job)
        assert st["state"] == "cancelled" and st["progress"] < 1
        assert healthy(state)
        with pytest.raises(Cancelled):
            client.run(arr.tobytes(), 600, 500, options={"tile": 128, "overlap": 16}, should_cancel=lambda: True)
    finally:
        proc.terminate()
        proc.wait(10)


def test_two_clients_at_once_are_served_fairly(worker):
    state_file, _ = worker
    results = {}
    arr = np.full((200, 240, 3), 100, np.uint8)

    def use(name, n):
        c = Client(state_file, autostart=False)
        results[name] = [len(c.run(arr.tobytes(), 240, 200, poll=0.02)) for _ in range(n)]
    threads = [threading.Thread(target=use, args=(f"c{i}", 3)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == {"c0": [200 * 240 * 3] * 3, "c1": [200 * 240 * 3] * 3}


def test_bad_requests_get_4xx_and_the_worker_lives(worker):
    _, state = worker
    assert raw(state, "GET", "/v1/health", token="wrong")[0] == 401
    assert raw(state, "GET", "/v1/health", token="")[0] == 401
    ok_header = {"protocol": "1", "width": 4, "height": 4, "channels": 3, "dtype": "uint8"}
    huge = {**ok_header, "width": 5000, "height": 5000}
    assert raw(state, "POST", "/v1/jobs", encode_job(huge, b"\0" * 10))[0] == 413
    assert raw(state, "POST", "/v1/jobs", struct.pack(">I", 10 ** 8) + b"{}")[0] == 413
    status, _ = raw(state, "POST", "/v1/jobs", b"x", headers={"Content-Length": str(10 ** 12)})
    assert status == 413
    cases = [b"", b"\0\0\0\x05nope!", encode_job(ok_header, b"\0" * 5),
             encode_job({**ok_header, "channels": 7}, b""), encode_job({**ok_header, "dtype": "int64"}, b""),
             encode_job({**ok_header, "options": {"styles": "nope"}}, b"\0" * 48),
             encode_job({**ok_header, "options": {"model": "no-such-model"}}, b"\0" * 48),
             encode_job({**ok_header, "options": {"keep": "all"}}, b"\0" * 48),
             encode_job({**ok_header, "options": {"bogus": 1}}, b"\0" * 48),
             encode_job({**ok_header, "width": -4}, b""),
             encode_job({**ok_header, "sequence": {"id": "a", "strength": "lots"}}, b"\0" * 48),
             encode_job({**ok_header, "sequence": [1, 2]}, b"\0" * 48)]
    rng = np.random.default_rng(0)
    cases += [rng.bytes(int(rng.integers(1, 2000))) for _ in range(30)]
    for body in cases:
        status, text = raw(state, "POST", "/v1/jobs", body)
        assert status in (400, 413), (status, body[:40])
        assert json.loads(text)["error"]
        assert healthy(state)
    assert raw(state, "GET", "/v1/jobs/doesnotexist")[0] == 404
    assert raw(state, "GET", "/v1/jobs/../../etc/passwd")[0] == 404
    assert raw(state, "GET", "/nothing")[0] == 404
    assert healthy(state)


def test_auto_start_when_no_worker_runs(tmp_path):
    state_file = tmp_path / "auto" / "worker.json"
    client = Client(state_file, python=sys.executable)
    health = client.connect()
    try:
        assert health["status"] == "ok" and state_file.exists()
        out = client.run(bytes(32 * 40), 40, 32, channels=1)
        assert len(out) == 32 * 40 * 3
    finally:
        client.stop()


def test_auto_start_failure_is_actionable(tmp_path):
    client = Client(tmp_path / "w.json", python=str(tmp_path / "no-python"))
    with pytest.raises(WorkerError, match="could not start"):
        client.connect()
    bad = Client(tmp_path / "w2.json", python=sys.executable, worker_args=["--model", "missing-model"])
    with pytest.raises(WorkerError, match="could not start.*see"):
        bad.connect()


def test_worker_restarted_while_a_client_waits(tmp_path):
    state_file = tmp_path / "r" / "worker.json"
    first, _ = start_worker(state_file)
    client = Client(state_file, autostart=False)
    arr = np.full((900, 1000, 3), 77, np.uint8)
    result = {}

    def wait_for_it():
        try:
            result["out"] = client.run(arr.tobytes(), 1000, 900, options={"tile": 160, "overlap": 16}, poll=0.05)
        except Exception as e:  # reported below
            result["error"] = e
    t = threading.Thread(target=wait_for_it)
    t.start()
    time.sleep(1.0)
    first.send_signal(signal.SIGKILL)
    first.wait()
    second, _ = start_worker(state_file)
    try:
        t.join(120)
        assert "error" not in result, result
        assert len(result["out"]) == arr.size
    finally:
        second.terminate()
        second.wait(10)


def test_a_polled_job_starts_a_new_worker_when_its_worker_dies(tmp_path):
    """How Krita and Blender follow a job (a poll per timer tick): the worker killed mid-job is
    replaced by one the client starts, and the job is submitted to it again."""
    state_file = tmp_path / "p" / "worker.json"
    client = Client(state_file, python=sys.executable)
    client.connect()
    arr = np.full((900, 1000, 3), 77, np.uint8)
    job = Job(client, arr.tobytes(), 1000, 900, 3, "uint8", {"tile": 160, "overlap": 16})
    first = client.state["pid"]
    os.kill(first, signal.SIGKILL)
    try:
        states, deadline = [], time.monotonic() + 120
        while (not states or states[-1] in ("queued", "running")) and time.monotonic() < deadline:
            states.append(job.poll(wait=0.05)["state"])
        assert states[-1] == "done" and client.state["pid"] != first
        assert client.current_job == job.id and len(job.result()) == arr.size
    finally:
        client.stop()


def test_abandoned_jobs_are_cancelled(tmp_path):
    state_file = tmp_path / "l" / "worker.json"
    proc, state = start_worker(state_file, "--job-lease", "0.3", *LONG_JOB_LIMIT)
    try:
        client = Client(state_file, autostart=False)
        job = big_job(client, size=LONG_JOB_SIZE)
        time.sleep(1.5)   # five leases without a question: the reaper has given up on the job
        st = client.status(job)
        assert st["state"] == "cancelled" or st["stage"] == "cancelling: client gone"
        # the pipeline stops at its next checkpoint, which a loaded machine may reach late
        deadline = time.monotonic() + 60
        while client.status(job)["state"] == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.status(job)["state"] == "cancelled"
        assert healthy(state)
    finally:
        proc.terminate()
        proc.wait(10)


def test_non_loopback_without_token_is_refused(tmp_path):
    r = subprocess.run([sys.executable, "-m", "chromastyle", "serve", "--host", "0.0.0.0", "--token", "",
                        "--state-file", str(tmp_path / "x.json")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "without a token" in r.stderr
    assert not (tmp_path / "x.json").exists()


def test_stop_and_status_commands(worker):
    state_file, state = worker
    env = {**os.environ}
    r = subprocess.run([sys.executable, "-m", "chromastyle", "serve", "--status", "--state-file", str(state_file)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and '"status": "ok"' in r.stdout
    r = subprocess.run([sys.executable, "-m", "chromastyle", "serve", "--stop", "--state-file", str(state_file)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and "stopped" in r.stdout
    deadline = time.monotonic() + 10
    while state_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not state_file.exists()


def test_sequences_are_stabilized_like_batch_and_linear_input_is_converted(worker):
    from chromastyle import batch
    from chromastyle.color import linear_to_srgb, srgb_to_linear
    from conftest import photo

    state_file, _ = worker
    client = Client(state_file, autostart=False)
    big = photo(size=(110, 60))
    frames = [np.ascontiguousarray(big[:, 3 * t:3 * t + 96]) for t in range(3)]
    opts = {"styles": "starry_night"}
    got = []
    for i, f in enumerate(frames):
        out = client.run(f.astype(np.float32).tobytes(), 96, 60, 3, "float32", opts,
                         sequence={"id": "shot-1", "reset": i == 0})
        got.append(np.frombuffer(out, np.float32).reshape(60, 96, 3))
    want = batch.process_frames(frames, pipeline.Options(**opts), stabilize=True)
    for g, w in zip(got, want):
        assert np.allclose(g, w, atol=1e-6)
    linear = srgb_to_linear(frames[0]).astype(np.float32)
    out = client.run(linear.tobytes(), 96, 60, 3, "float32", opts, colorspace="linear")
    expected = srgb_to_linear(pipeline.run(linear_to_srgb(np.clip(linear, 0, 1)), **opts))
    assert np.allclose(np.frombuffer(out, np.float32).reshape(60, 96, 3), expected, atol=1e-5)


def test_client_is_stdlib_only_and_python_3_10():
    import ast
    from pathlib import Path

    import chromastyle.client as client_module

    source = Path(client_module.__file__).read_text()
    tree = ast.parse(source, feature_version=(3, 10))   # Krita's bundled Python is 3.10
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
        for name in names:
            assert name.split(".")[0] in sys.stdlib_module_names, name


def style_picture():
    from PIL import Image

    from conftest import ROOT
    pic = np.asarray(Image.open(ROOT / "tests" / "data" / "hokusai_poppies.jpg").convert("RGB"))
    return pic, pic.shape[1], pic.shape[0]


def test_style_picture_sent_once_then_named_by_jobs(worker):
    state_file, state = worker
    client = Client(state_file, autostart=False)
    pic, pw, ph = style_picture()
    ref = client.style_image(pic.tobytes(), pw, ph, 3)
    assert ref == pipeline.add_style_image(pic)   # the id is the picture's content, as in process
    rng = np.random.default_rng(3)
    h, w = 80, 120
    arr = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    options = {"styles": "starry_night:0.2", "style_images": [{"id": ref, "strength": 0.8}]}
    got = np.frombuffer(client.run(arr.tobytes(), w, h, 3, "uint8", options), np.uint8).reshape(h, w, 3)
    expected = pipeline.run(arr.astype(np.float32) / 255, styles="starry_night:0.2", style_images=[[pic, 0.8]])
    assert np.array_equal(got, np.round(np.clip(expected, 0, 1) * 255).astype(np.uint8))

    def job(style_images):
        header = {"width": w, "height": h, "channels": 3, "options": {"style_images": style_images}}
        return raw(state, "POST", "/v1/jobs", encode_job(header, arr.tobytes()))
    status, body = job([{"id": "sha256:" + "1" * 64}])
    assert status == 400 and b"POST /v1/style-images" in body
    status, body = job([{"id": "/etc/passwd", "strength": 1}])   # never a path of the client's choosing
    assert status == 400 and b"must match" in body
    status, body = job([{"id": ref, "strength": 3}])
    assert status == 400 and b"strength" in body
    status, body = raw(state, "POST", "/v1/style-images", encode_job({"width": 8, "height": 8, "channels": 3},
                                                                     bytes(8 * 8 * 3)))
    assert status == 400 and "16×16" in json.loads(body)["error"]
    status, body = raw(state, "POST", "/v1/style-images",
                       encode_job({"width": 20, "height": 20, "channels": 3, "options": {}}, bytes(20 * 20 * 3)))
    assert status == 400 and b"unknown field" in body
    assert healthy(state)


def test_a_restarted_worker_is_sent_the_style_picture_again(tmp_path):
    state_file = tmp_path / "p" / "worker.json"
    first, _ = start_worker(state_file)
    client = Client(state_file, autostart=False)
    pic, pw, ph = style_picture()
    ref = client.style_image(pic.tobytes(), pw, ph, 3)
    first.terminate()
    first.wait(10)
    second, _ = start_worker(state_file)
    try:
        client._reconnect()
        arr = np.full((60, 90, 3), 120, np.uint8)
        out = client.run(arr.tobytes(), 90, 60, options={"style_images": [{"id": ref}]})
        assert len(out) == arr.size
    finally:
        second.terminate()
        second.wait(10)
    # submit, which Krita and Blender call directly, sends it again too
    third, _ = start_worker(state_file)
    try:
        client._reconnect()
        job = client.submit(arr.tobytes(), 90, 60, options={"style_images": [{"id": ref}]})
        for _ in range(60):
            state = client.status(job, wait=1)["state"]
            if state not in ("queued", "running"):
                break
        assert state == "done"
    finally:
        third.terminate()
        third.wait(10)
