"""Helpers of the hostile-input suite: a real worker process, raw HTTP, unprivileged runs."""
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start_worker(state_file, *extra, log_file=None, env=None):
    """A real `chromastyle serve` process; returns (process, state). Its log is ``log_file``
    (default: worker.log beside the state file)."""
    log_file = log_file or Path(state_file).with_name("worker.log")
    proc = subprocess.Popen([sys.executable, "-m", "chromastyle", "serve", "--state-file", str(state_file),
                             "--log-file", str(log_file), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            state = json.loads(Path(state_file).read_text())
            if state["pid"] == proc.pid:
                return proc, state
        except (OSError, ValueError, KeyError):
            pass
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode())
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("worker did not start")


def stop(proc):
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def raw(state, method, path, body=None, token=None, headers=None, timeout=60):
    """(status, body bytes, response headers) of one request; ``token`` False sends none."""
    conn = http.client.HTTPConnection(state["host"], state["port"], timeout=timeout)
    h = dict(headers or {})
    if token is not False:
        h["Authorization"] = f"Bearer {state['token'] if token is None else token}"
    try:
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        return resp.status, resp.read(), dict(resp.getheaders())
    finally:
        conn.close()


def healthy(state):
    return raw(state, "GET", "/v1/health")[0] == 200


def error_of(body):
    """The JSON error message of a 4xx/5xx answer (fails if the answer is not JSON with one)."""
    message = json.loads(body)["error"]
    assert isinstance(message, str) and message
    return message


def tracebacks(log_file):
    text = Path(log_file).read_text(errors="replace") if Path(log_file).exists() else ""
    return text.count("Traceback")


def closed_within(sock, seconds):
    """True when the peer closes ``sock`` (EOF or reset) within ``seconds``; data is discarded."""
    sock.settimeout(0.5)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if sock.recv(65536) == b"":
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


def unprivileged():
    """preexec_fn for a child that must feel file permissions. Root ignores them, so as root the
    child loses the capabilities that override them (Linux: CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH,
    CAP_FOWNER, dropped from the bounding set before exec) and is held to the owner's bits like
    anyone else; any other user stays as it is."""
    if os.geteuid() != 0:
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def drop():
        for cap in (1, 2, 3):
            if libc.prctl(24, cap, 0, 0, 0) != 0:   # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")
    return drop


def cli(*args, env=None, timeout=300, preexec_fn=None, cwd=None):
    """Run the `chromastyle` command in a child process -> CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "chromastyle", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, preexec_fn=preexec_fn, cwd=cwd)
