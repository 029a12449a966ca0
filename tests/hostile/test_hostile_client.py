"""The client against a crowded or deceptive world: two hosts starting the worker at once, and a
stale state file whose port another program has taken since."""
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chromastyle.client import Client, WorkerError, worker_proof
from hostile import raw, start_worker, stop

START = """
import json, sys, time
from chromastyle.client import Client
c = Client(sys.argv[1], python=sys.executable, start_timeout=float(sys.argv[2]))
started = time.monotonic()
health = c.connect()
print(json.dumps({"pid": health["pid"], "seconds": time.monotonic() - started}))
"""


def test_two_hosts_starting_the_worker_at_once_share_one(tmp_path):
    """Before: the second started its own worker, whose state was overwritten, and waited out its
    whole start timeout. Now one starts it, the other waits for the lock and uses that one."""
    state_file = tmp_path / "run" / "worker.json"
    env = {**os.environ, "CHROMASTYLE_OFFLINE": "1", "CHROMASTYLE_HOME": str(tmp_path / "home")}
    timeout = 100
    procs = [subprocess.Popen([sys.executable, "-c", START, str(state_file), str(timeout)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=timeout + 60) for p in procs]
    state = json.loads(state_file.read_text())
    try:
        for p, (_, err) in zip(procs, outs):
            assert p.returncode == 0, err
        pids = {json.loads(out)["pid"] for out, _ in outs}
        assert pids == {state["pid"]}
        log = state_file.with_name("worker-start.log").read_text()
        assert "Traceback" not in log
    finally:
        Client(state_file, autostart=False).stop()


class Impostor:
    """Another program on the port of a stale state file: answers 200 {"status": "ok"} to
    everything and remembers every Authorization header it is sent."""

    def __init__(self, proof=None):
        self.seen = []
        impostor = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _any(self):
                impostor.seen.append(self.headers.get("Authorization"))
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                body = json.dumps(proof if proof is not None and "/proof" in self.path else
                                  {"status": "ok", "pid": 1, "id": "x", "state": "done", "progress": 1,
                                   "styles": [], "models": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("proof", [None, {"proof": "0" * 64, "pid": 4242}, {"proof": None, "pid": 4242},
                                   {"pid": 4242}, ["x"]])
def test_stale_state_file_never_sends_the_token_to_another_program(tmp_path, proof):
    impostor = Impostor(proof)
    state_file = tmp_path / "worker.json"
    token = "secret-token-that-must-not-leak"
    state_file.write_text(json.dumps({"host": "127.0.0.1", "port": impostor.port, "token": token, "pid": 4242}))
    try:
        client = Client(state_file, autostart=False)
        with pytest.raises(WorkerError, match="not the chromastyle worker"):
            client.connect()
        with pytest.raises(WorkerError):
            client.run(b"\0" * 12, 2, 2)
        assert impostor.seen and all(h is None or token not in h for h in impostor.seen), impostor.seen
    finally:
        impostor.close()


def test_stale_state_file_is_replaced_by_a_real_worker(tmp_path, monkeypatch):
    impostor = Impostor()
    state_file = tmp_path / "w" / "worker.json"
    state_file.parent.mkdir()
    state_file.write_text(json.dumps({"host": "127.0.0.1", "port": impostor.port, "token": "old", "pid": 4242}))
    client = Client(state_file, python=sys.executable)
    try:
        health = client.connect()
        assert health["status"] == "ok" and health["pid"] != 4242
        assert len(client.run(bytes(20 * 10), 20, 10, channels=1)) == 20 * 10 * 3
        assert all(h is None for h in impostor.seen)
    finally:
        impostor.close()
        client.stop()


def test_proof_endpoint(tmp_path):
    proc, state = start_worker(tmp_path / "worker.json")
    try:
        nonce = "n" * 32
        status, body, _ = raw(state, "GET", f"/v1/proof?nonce={nonce}", token=False)
        reply = json.loads(body)
        assert status == 200 and reply["pid"] == state["pid"]
        assert reply["proof"] == worker_proof(state["token"], nonce, state["pid"])
        assert reply["proof"] != worker_proof("another token", nonce, state["pid"])
        for bad in ("", "short", "x" * 200, "a" * 20 + "%00", "a" * 20 + "/../"):
            assert raw(state, "GET", f"/v1/proof?nonce={bad}", token=False)[0] == 400
    finally:
        stop(proc)


@pytest.mark.parametrize("content", ["[1, 2]", "null", '{"host": "127.0.0.1"}', '{"host": 5, "port": 1, "token": "t"}',
                                     '{"host": "127.0.0.1", "port": "80", "token": "t"}', "{" * 5000, "\0\xff"])
def test_broken_state_file_is_no_worker(tmp_path, content):
    state_file = tmp_path / "worker.json"
    state_file.write_text(content, errors="surrogateescape")
    with pytest.raises(WorkerError, match="no chromastyle worker is running"):
        Client(state_file, autostart=False).connect()
