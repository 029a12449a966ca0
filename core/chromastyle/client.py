"""Client of the chromastyle worker: standard library only, Python 3.10+, no numpy.

This file exists once, in the core package; the installers copy it into each plug-in bundle
(GIMP, Krita, Blender), so host Pythons never need numpy, onnxruntime or torch.

    client = Client()                       # finds the worker, or starts one
    out = client.run(pixels, width, height, channels=3, dtype="uint8",
                     options={"styles": "starry_night:0.8"}, progress=print)

    # any picture as a style: sent once, then named by id
    ref = client.style_image(pixels2, width2, height2, channels=4)
    out = client.run(pixels, width, height, options={"style_images": [{"id": ref, "strength": 0.8}]})
"""
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import secrets
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

PROTOCOL = "1"
DTYPE_SIZES = {"uint8": 1, "uint16": 2, "float32": 4}


class WorkerError(Exception):
    """Something a person can act on: the message says what happened and where to look."""


class JobFailed(WorkerError):
    pass


class Cancelled(WorkerError):
    pass


def config_dir():
    if os.environ.get("CHROMASTYLE_CONFIG_DIR"):
        return Path(os.environ["CHROMASTYLE_CONFIG_DIR"])
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming")) / "chromastyle"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "chromastyle"
    return Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "chromastyle"


def default_state_file():
    """Where the worker writes {host, port, token, pid}: the runtime dir when there is one."""
    if os.environ.get("CHROMASTYLE_STATE_FILE"):
        return Path(os.environ["CHROMASTYLE_STATE_FILE"])
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and sys.platform.startswith("linux") and os.path.isdir(runtime):
        return Path(runtime) / "chromastyle" / "worker.json"
    return config_dir() / "worker.json"


def client_config():
    """{"python": interpreter that runs the worker, …}, written by `chromastyle install`."""
    try:
        return json.loads((config_dir() / "client.json").read_text())
    except (OSError, ValueError):
        return {}


def make_private_dirs(path):
    """Create the folder ``path`` and its missing parents, readable by the user only (0700).
    Folders that exist already keep their permissions: /tmp or a shared folder is never changed."""
    path = Path(path)
    missing = []
    while not os.path.lexists(path) and path != path.parent:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:   # made meanwhile by someone else: theirs, left as it is
            continue
        os.chmod(folder, 0o700)   # exactly 0700, whatever the umask


def worker_proof(token, nonce, pid):
    """What the worker answers to a challenge: only the holder of the token can compute it."""
    return hmac.new(token.encode(), f"chromastyle-worker-proof:{nonce}:{pid}".encode(), hashlib.sha256).hexdigest()


def _try_lock(f):
    try:
        if os.name == "nt":
            import msvcrt
            f.seek(0)
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _unlock(f):
    if os.name == "nt":
        import msvcrt
        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def encode_job(header, pixels, hints=None):
    """Body of POST /v1/jobs: 4-byte big-endian header length, JSON header, pixels[, hints]."""
    head = json.dumps(header).encode()
    return b"".join([struct.pack(">I", len(head)), head, pixels, hints or b""])


class Client:
    def __init__(self, state_file=None, python=None, autostart=True, start_timeout=90.0,
                 request_timeout=60.0, worker_args=()):
        self.state_file = Path(state_file) if state_file else default_state_file()
        self.python = python or os.environ.get("CHROMASTYLE_PYTHON") or client_config().get("python") or sys.executable
        self.autostart = autostart
        self.start_timeout = start_timeout
        self.request_timeout = request_timeout
        self.worker_args = list(worker_args)
        self.client_id = uuid.uuid4().hex[:12]
        self.state = None
        self.current_job = None   # the job run() is following, for hosts that cancel from a signal
        self._sent_pictures = {}  # style picture id -> the body that sent it (the last few)

    # -- connection -----------------------------------------------------------------------
    def _read_state(self):
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        ok = (isinstance(state, dict) and isinstance(state.get("host"), str) and isinstance(state.get("port"), int)
              and isinstance(state.get("token"), str))
        return state if ok else None

    def connect(self):
        """Use the running worker, or start one; returns its health. The worker must first prove
        that it is the one that wrote the state file (see prove): a stale state file whose port
        another program has taken since is never sent the token, nor believed."""
        self.state = self._read_state()
        why = f"no live worker in {self.state_file}"
        if self.state:
            try:
                return self._proven_health()
            except WorkerError as e:
                self.state, why = None, str(e)
        if not self.autostart:
            raise WorkerError(f"no chromastyle worker is running ({why}); start one with `chromastyle serve`")
        return self._start_once()

    def _proven_health(self):
        self.prove()
        return self.health()

    def prove(self):
        """Ask the program at the state file's address to answer a fresh challenge with the token
        (GET /v1/proof needs no token, so none is sent before it has proved itself)."""
        nonce = secrets.token_hex(16)
        try:
            data = self._request("GET", f"/v1/proof?nonce={nonce}", auth=False)[1]
        except WorkerError as e:
            if getattr(e, "status", None) is None:
                raise   # nothing answers there
            data = b""
        try:
            reply = json.loads(data)
            expected = worker_proof(str(self.state.get("token", "")), nonce, self.state.get("pid", reply["pid"]))
            ok = hmac.compare_digest(str(reply["proof"]), expected)
        except (ValueError, KeyError, TypeError, AttributeError):
            ok = False
        if not ok:
            raise WorkerError(f"the program at {self.state['host']}:{self.state['port']} is not the chromastyle "
                              f"worker of {self.state_file} (the file is stale and another program has that port, "
                              "or the worker is of an older version)")

    def _start_once(self):
        """Start a worker, one starter at a time per state file (a lock file beside it): a client
        that had to wait, e.g. a second host started at the same moment, finds the new worker in the
        state file and uses it instead of starting another."""
        try:
            make_private_dirs(self.state_file.parent)
        except OSError as e:
            raise WorkerError(f"the chromastyle worker could not start: cannot create {self.state_file.parent} "
                              f"({e.strerror or e}); set CHROMASTYLE_STATE_FILE to a file in a folder you can "
                              "write") from None
        with self._start_lock():
            self.state = self._read_state()
            if self.state:
                try:
                    return self._proven_health()
                except WorkerError:
                    self.state = None
            health = self._start()
            self.prove()
            return health

    @contextlib.contextmanager
    def _start_lock(self):
        path = self.state_file.with_name(self.state_file.name + ".lock")
        deadline = time.monotonic() + self.start_timeout
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise WorkerError(f"the chromastyle worker could not start: cannot create {path} ({e.strerror or e}); "
                              "set CHROMASTYLE_STATE_FILE to a file in a folder you can write") from None
        with os.fdopen(fd, "r+b") as f:
            while not _try_lock(f):
                if time.monotonic() > deadline:
                    raise WorkerError(f"another program has been starting the chromastyle worker for "
                                      f"{self.start_timeout:.0f} s (it holds {path}); try again")
                time.sleep(0.1)
            try:
                yield
            finally:
                _unlock(f)

    def _reconnect(self):
        """After the worker went away: start a new one, or wait for whoever restarts it."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            self.state = None
            try:
                return self.connect()
            except WorkerError:
                if self.autostart or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _start(self):
        log = self.state_file.with_name("worker-start.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [self.python, "-m", "chromastyle", "serve", "--state-file", str(self.state_file)] + self.worker_args
        kw = {"start_new_session": True} if os.name == "posix" else \
            {"creationflags": getattr(subprocess, "DETACHED_PROCESS", 0) | getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
        # The host's Python settings are not the worker's: Krita puts its plug-in folders, with a
        # `chromastyle` package of its own, on PYTHONPATH. A neutral working directory keeps `-m`
        # from importing whatever lies where the host runs.
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PYTHON")}
        try:
            with open(log, "wb") as out:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                        env=env, cwd=log.parent, **kw)
        except OSError as e:
            raise WorkerError(f"the chromastyle worker could not start: cannot run {self.python} ({e}); "
                              "set the interpreter with `chromastyle install` or CHROMASTYLE_PYTHON") from None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                # the last unindented line says what went wrong (a traceback's frames are for the log)
                lines = [line.strip() for line in log.read_text(errors="replace").splitlines()
                         if line.strip() and not line[0].isspace()]
                reason = lines[-1] if lines else f"exit code {proc.returncode}"
                raise WorkerError(f"the chromastyle worker could not start ({reason}) — see {log}")
            state = self._read_state()
            if state and state.get("pid") == proc.pid:
                self.state = state
                try:
                    return self.health()
                except WorkerError:
                    pass
            time.sleep(0.1)
        proc.kill()
        raise WorkerError(f"the chromastyle worker did not answer within {self.start_timeout:.0f} s — see {log}")

    def _request(self, method, path, body=None, headers=None, timeout=None, auth=True):
        if self.state is None:
            self.connect()
        h = {"X-Chromastyle-Client": self.client_id}
        if auth:
            h["Authorization"] = f"Bearer {self.state.get('token', '')}"
        h.update(headers or {})
        conn = http.client.HTTPConnection(self.state["host"], self.state["port"],
                                          timeout=timeout or self.request_timeout)
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise WorkerError(f"the chromastyle worker at {self.state['host']}:{self.state['port']} "
                              f"is not answering ({e})") from None
        finally:
            conn.close()
        if resp.status >= 400:
            try:
                message = json.loads(data)["error"]
            except (ValueError, KeyError, TypeError):
                message = data.decode(errors="replace")[:200]
            err = WorkerError(f"the chromastyle worker refused the request ({resp.status}): {message}")
            err.status = resp.status
            raise err
        return resp, data

    def _json(self, method, path, body=None):
        return json.loads(self._request(method, path, body)[1])

    # -- API --------------------------------------------------------------------------------
    def health(self):
        return self._json("GET", "/v1/health")

    def styles(self, model=None):
        return self._json("GET", "/v1/styles" + (f"?model={quote(model, safe='')}" if model else ""))["styles"]

    def models(self):
        return self._json("GET", "/v1/models")["models"]

    def style_image(self, pixels, width, height, channels=3, dtype="uint8", colorspace="srgb"):
        """Send a picture to use as a style (same pixel formats as a job). The worker keeps it by its
        content; returns the id to put in options["style_images"] ([{"id": id, "strength": s}]).
        The client keeps the last few pictures it sent, so a job that names one the worker has
        forgotten (a restarted worker) is sent again by ``submit`` without the caller's help."""
        header = {"protocol": PROTOCOL, "width": width, "height": height, "channels": channels,
                  "dtype": dtype, "colorspace": colorspace}
        body = encode_job(header, pixels)
        ref = self._json("POST", "/v1/style-images", body)["id"]
        self._sent_pictures[ref] = body
        while len(self._sent_pictures) > 8:
            self._sent_pictures.pop(next(iter(self._sent_pictures)))
        return ref

    def _send_pictures_again(self, options):
        refs = [item.get("id") for item in (options or {}).get("style_images", [])]
        if not refs or not all(r in self._sent_pictures for r in refs):
            return False
        for ref in refs:
            self._json("POST", "/v1/style-images", self._sent_pictures[ref])
        return True

    def submit(self, pixels, width, height, channels=3, dtype="uint8", options=None, hints=None,
               colorspace="srgb", sequence=None):
        """Queue a job; hints is optional RGBA8 bytes of the same size; colorspace "linear" for
        scene-linear float pixels (converted to sRGB for the model and back); sequence
        {"id", "strength", "reset"} for frames of one animation, sent in order. Returns the job id."""
        header = {"protocol": PROTOCOL, "width": width, "height": height, "channels": channels,
                  "dtype": dtype, "options": options or {}, "hints": "rgba8" if hints else None,
                  "colorspace": colorspace, "sequence": sequence}
        body = encode_job(header, pixels, hints)
        try:
            return self._json("POST", "/v1/jobs", body)["id"]
        except WorkerError as e:
            # a restarted worker has forgotten the style pictures: send them again, then the job
            if "unknown style picture" not in str(e) or not self._send_pictures_again(options):
                raise
            return self._json("POST", "/v1/jobs", body)["id"]

    def status(self, job_id, wait=0.0):
        """The job's state; with ``wait`` the worker answers when it changes (long poll)."""
        return self._json("GET", f"/v1/jobs/{job_id}" + (f"?wait={wait:g}" if wait else ""))

    def result(self, job_id):
        resp, data = self._request("GET", f"/v1/jobs/{job_id}/result")
        meta = {k: resp.getheader(f"X-Chromastyle-{k.capitalize()}") for k in ("width", "height", "channels", "dtype")}
        return data, meta

    def cancel(self, job_id):
        try:
            return self._json("DELETE", f"/v1/jobs/{job_id}")
        except WorkerError as e:
            if getattr(e, "status", None) == 404:
                return {"id": job_id, "state": "gone"}
            raise

    def run(self, pixels, width, height, channels=3, dtype="uint8", options=None, hints=None,
            progress=None, should_cancel=None, poll=0.25, restarts=2, colorspace="srgb", sequence=None):
        """Submit, follow progress, return the result bytes (same channels and dtype as sent,
        gray becoming RGB). If the worker goes away meanwhile, reconnect and submit again."""
        job = Job(self, pixels, width, height, channels, dtype, options, hints, colorspace, sequence,
                  restarts=restarts)
        while True:
            if should_cancel and should_cancel():
                job.cancel()
                raise Cancelled("cancelled")
            st = job.poll(wait=poll)
            if progress:
                progress(st.get("progress", 0.0), st.get("stage", ""))
            if st["state"] == "done":
                return job.result()
            if st["state"] == "failed":
                raise JobFailed(st.get("error") or "the job failed")
            if st["state"] == "cancelled":
                raise Cancelled("the job was cancelled")

    def stop(self):
        self._request("POST", "/v1/shutdown")


class Job:
    """A submitted job, followed by ``poll`` from Client.run or from a host's event loop (Krita's
    timer, Blender's modal operator). If the worker goes away meanwhile (killed, crashed, restarted
    by another host), the next poll reconnects, starting a worker if need be, and submits the same
    job again, at most ``restarts`` times; the caller only sees the job start over."""

    def __init__(self, client, *submit_args, restarts=2):
        self.client, self.submit_args, self.restarts = client, submit_args, restarts
        self._submit()

    def _submit(self):
        self.id = self.client.current_job = self.client.submit(*self.submit_args)

    def poll(self, wait=0.0):
        """The job's state: {"state": queued|running|done|failed|cancelled, "progress", "stage", …}."""
        try:
            return self.client.status(self.id, wait=wait)
        except WorkerError as e:
            # no answer (0), a worker that does not know the job (404) or our token (401): a new worker
            if self.restarts <= 0 or getattr(e, "status", 0) not in (0, 401, 404):
                raise
        self.restarts -= 1
        self.client._reconnect()
        self._submit()
        return {"id": self.id, "state": "queued", "progress": 0.0, "stage": "worker restarted"}

    def result(self):
        return self.client.result(self.id)[0]

    def cancel(self):
        return self.client.cancel(self.id)
