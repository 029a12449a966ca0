"""The long-lived local worker: owns the model, runs jobs one at a time, fairly across clients.

Standard library HTTP (http.server): the worker must start from any Python that has the core
installed, with nothing more to install, and its traffic is a few requests per image from a few
local clients — a threaded server is plenty, and the heavy work runs on one job thread anyway.
"""
import hmac
import ipaddress
import json
import logging
import logging.handlers
import os
import secrets
import signal
import struct
import threading
import time
import uuid
from collections import OrderedDict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np

from . import __version__, models, pipeline
from .client import DTYPE_SIZES, PROTOCOL, default_state_file
from .color import linear_to_srgb, srgb_to_linear
from .errors import UserError
from .imaging import Cancelled, hints_from_rgba

log = logging.getLogger("chromastyle.server")

MAX_HEADER = 64 * 1024
DEFAULT_LEASE = 120      # a job nobody asked about for this long is cancelled (client gone)
RESULT_TTL = 600         # results not fetched within this are dropped
MAX_JOBS = 256


class HttpError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Job:
    def __init__(self, client, header, pixels, hints):
        self.id = uuid.uuid4().hex
        self.client = client
        self.header = header
        self.pixels = pixels
        self.hints = hints
        self.state = "queued"
        self.progress = 0.0
        self.stage = "queued"
        self.error = None
        self.result = None
        self.cancel = threading.Event()
        self.touched = time.monotonic()
        self.changed = threading.Condition()   # long polls wait on it

    def update(self, **fields):
        with self.changed:
            for k, v in fields.items():
                setattr(self, k, v)
            self.changed.notify_all()

    def wait(self, seconds):
        """Until the state or the progress changes (a long poll), at most ``seconds``."""
        state, progress = self.state, self.progress
        with self.changed:
            self.changed.wait_for(lambda: self.state != state or self.progress != progress, timeout=seconds)

    def public(self, position=None):
        d = {"id": self.id, "state": self.state, "progress": round(self.progress, 4), "stage": self.stage}
        if self.error:
            d["error"] = self.error
        if position is not None:
            d["queue_position"] = position
        return d


class JobQueue:
    """Round-robin over clients, so one client's batch cannot starve another's single job."""

    def __init__(self, lease=DEFAULT_LEASE):
        self.lease = lease
        self.jobs = OrderedDict()
        self.by_client = OrderedDict()   # client -> deque of queued jobs
        self.cond = threading.Condition()

    def add(self, job):
        with self.cond:
            if sum(j.state in ("queued", "running") for j in self.jobs.values()) >= MAX_JOBS:
                raise HttpError(503, "the worker queue is full; try again later")
            self.jobs[job.id] = job
            self.by_client.setdefault(job.client, deque()).append(job)
            self.cond.notify()

    def next(self, timeout=1.0):
        with self.cond:
            if not self.by_client:
                self.cond.wait(timeout)
            while self.by_client:
                client, queue = next(iter(self.by_client.items()))
                job = queue.popleft()
                self.by_client.pop(client)
                if queue:
                    self.by_client[client] = queue  # to the back of the rotation
                if job.state == "queued":
                    return job
            return None

    def position(self, job):
        with self.cond:
            waiting = [j for q in self.by_client.values() for j in q]
            return waiting.index(job) if job in waiting else None

    def get(self, job_id):
        job = self.jobs.get(job_id)
        if job is None:
            raise HttpError(404, f"no job {job_id!r} (finished results are kept {RESULT_TTL} s)")
        job.touched = time.monotonic()
        return job

    def reap(self):
        """Cancel jobs whose client stopped asking; drop old results to free memory."""
        now = time.monotonic()
        with self.cond:
            for job in list(self.jobs.values()):
                idle = now - job.touched
                if job.state in ("queued", "running") and idle > self.lease:
                    log.info("job %s: no client asked for %.0f s; cancelling", job.id, idle)
                    job.cancel.set()
                    if job.state == "queued":
                        job.update(state="cancelled", stage="client gone")
                elif job.state in ("done", "failed", "cancelled") and idle > RESULT_TTL:
                    del self.jobs[job.id]


def decode_pixels(header, pixels):
    """Raw bytes -> (H×W×3 float32 in [0, 1], alpha array or None)."""
    w, h, c, dtype = header["width"], header["height"], header["channels"], header["dtype"]
    arr = np.frombuffer(pixels, dtype={"uint8": np.uint8, "uint16": np.uint16, "float32": np.float32}[dtype])
    arr = arr.reshape(h, w, c)
    scale = {"uint8": 255.0, "uint16": 65535.0, "float32": 1.0}[dtype]
    color = arr[..., :1 if c <= 2 else 3].astype(np.float32) / scale
    rgb = np.repeat(color, 3, -1) if c <= 2 else color
    alpha = arr[..., -1].copy() if c in (2, 4) else None
    rgb = np.clip(rgb, 0, 1)
    if header.get("colorspace") == "linear":   # e.g. Blender's float images: the model wants sRGB
        rgb = linear_to_srgb(rgb)
    return rgb, alpha


def encode_pixels(header, rgb, alpha):
    """Result in the format sent: gray becomes RGB (gray+alpha becomes RGBA), same dtype."""
    dtype = header["dtype"]
    if header.get("colorspace") == "linear":
        rgb = srgb_to_linear(np.clip(rgb, 0, 1))
    if dtype == "float32":
        out = rgb.astype(np.float32)
    else:
        scale = 255.0 if dtype == "uint8" else 65535.0
        out = np.round(np.clip(rgb, 0, 1) * scale).astype(np.uint8 if dtype == "uint8" else np.uint16)
    if alpha is not None:
        out = np.concatenate([out, alpha[..., None].astype(out.dtype)], -1)
    return np.ascontiguousarray(out).tobytes(), out.shape[-1]


def parse_job(body, max_pixels):
    if len(body) < 4:
        raise HttpError(400, "the job body must start with a 4-byte header length")
    (n,) = struct.unpack(">I", body[:4])
    if n > MAX_HEADER:
        raise HttpError(413, f"the job header is {n} bytes; the limit is {MAX_HEADER}")
    try:
        header = json.loads(body[4:4 + n])
        assert isinstance(header, dict)
    except (ValueError, AssertionError):
        raise HttpError(400, "the job header is not a JSON object") from None
    if str(header.get("protocol", PROTOCOL)) != PROTOCOL:
        raise HttpError(400, f"protocol {header.get('protocol')!r} is not supported; this worker speaks {PROTOCOL}")
    try:
        w, h, c = int(header["width"]), int(header["height"]), int(header["channels"])
        dtype = header.get("dtype", "uint8")
    except (KeyError, TypeError, ValueError):
        raise HttpError(400, "the job header needs integer width, height and channels") from None
    if w < 1 or h < 1 or c not in (1, 2, 3, 4) or dtype not in DTYPE_SIZES:
        raise HttpError(400, "width and height must be positive, channels 1-4, dtype uint8, uint16 or float32")
    if w * h > max_pixels:
        raise HttpError(413, f"the image has {w * h:,} pixels; this worker accepts at most {max_pixels:,}")
    size = w * h * c * DTYPE_SIZES[dtype]
    hints_size = w * h * 4 if header.get("hints") == "rgba8" else 0
    if header.get("hints") not in (None, "rgba8"):
        raise HttpError(400, "hints must be null or \"rgba8\"")
    if header.get("colorspace", "srgb") not in ("srgb", "linear"):
        raise HttpError(400, "colorspace must be \"srgb\" or \"linear\" (scene-linear with sRGB primaries)")
    if len(body) != 4 + n + size + hints_size:
        raise HttpError(400, f"expected {size + hints_size} bytes of pixels after the header, got {len(body) - 4 - n}")
    try:
        options = pipeline.Options.from_dict(dict(header.get("options") or {}))
    except (UserError, TypeError) as e:
        raise HttpError(400, f"bad options: {e}") from None
    seq = header.get("sequence")
    if seq is not None and not _valid_sequence(seq):
        raise HttpError(400, "sequence must be {\"id\": string, \"strength\": 0..1, \"reset\": bool}")
    header.update(width=w, height=h, channels=c, dtype=dtype)
    pixels = body[4 + n:4 + n + size]
    hints = body[4 + n + size:] if hints_size else None
    return header, options, pixels, hints


def _valid_sequence(seq):
    try:
        return (isinstance(seq, dict) and isinstance(seq.get("id"), str) and len(seq["id"]) <= 128
                and 0 <= float(seq.get("strength", 0.7)) <= 1)
    except (TypeError, ValueError):
        return False


class Worker:
    def __init__(self, max_pixels, token, model=None, device="auto", lease=DEFAULT_LEASE):
        self.max_pixels = max_pixels
        self.token = token
        self.model = model
        self.device = device
        self.queue = JobQueue(lease)
        self.sequences = OrderedDict()   # animation sequence id -> Stabilizer
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="jobs", daemon=True)

    def start(self):
        pipeline.get_model(self.model, self.device)   # load once, up front: fail fast
        self.thread.start()
        threading.Thread(target=self._reap_loop, name="reaper", daemon=True).start()

    def _loop(self):
        while not self.stopping.is_set():
            job = self.queue.next()
            if job is not None:
                self._run(job)

    def _reap_loop(self):
        while not self.stopping.wait(min(1.0, self.queue.lease / 2)):
            self.queue.reap()

    def _run(self, job):
        job.update(state="running", stage="preparing")
        try:
            rgb, alpha = decode_pixels(job.header, job.pixels)
            hints = None
            if job.hints is not None:
                rgba = np.frombuffer(job.hints, np.uint8).reshape(rgb.shape[0], rgb.shape[1], 4)
                hints = hints_from_rgba(rgba)
            options = dict(job.header.get("options") or {})
            if self.model and not options.get("model"):
                options["model"] = self.model   # the worker's model unless the job names one
            opts = pipeline.Options.from_dict(options)
            opts.device = self.device if opts.device == "auto" else opts.device
            job.stage = "running model"
            started = time.perf_counter()

            def progress(p):
                job.update(progress=min(0.99, p))
            out = pipeline.run(rgb, hints, options=opts, progress=progress, cancel=job.cancel.is_set)
            if job.header.get("sequence"):
                out = self.stabilize(job.header["sequence"], rgb, out)
            job.stage = "encoding"
            job.result, job.result_channels = encode_pixels(job.header, out, alpha)
            job.update(progress=1.0, state="done", stage="done")
            log.info("job %s: %d×%d, %s, %.3f s", job.id, rgb.shape[1], rgb.shape[0], opts.styles,
                     time.perf_counter() - started)
        except Cancelled:
            job.update(state="cancelled", stage="cancelled")
        except UserError as e:
            job.update(state="failed", stage="failed", error=str(e))
        except Exception as e:  # the worker survives whatever one job does
            log.exception("job %s failed", job.id)
            job.update(state="failed", stage="failed", error=f"internal error: {e}")
        finally:
            job.pixels = job.hints = None   # free the input as soon as possible
            if job.cancel.is_set() and job.state == "running":
                job.update(state="cancelled")

    def stabilize(self, seq, frame, out):
        """Frames of one animation, sent in order with the same sequence id, are made temporally
        consistent by the batch module's stabilizer (a few sequences are kept, least recent dropped)."""
        from .batch import Stabilizer

        key = (seq["id"], float(seq.get("strength", 0.7)))
        stab = self.sequences.pop(key, None)
        if stab is None or seq.get("reset"):
            stab = Stabilizer(key[1])
        self.sequences[key] = stab
        while len(self.sequences) > 8:
            self.sequences.popitem(last=False)
        return stab(frame, out)

    def health(self):
        model = pipeline.get_model(self.model, self.device)
        return {"status": "ok", "version": __version__, "protocol": PROTOCOL, "pid": os.getpid(),
                "model": Path(model.info.path).name, "providers": model.info.providers,
                "notice": model.info.notice, "max_pixels": self.max_pixels,
                "queued": sum(j.state == "queued" for j in self.queue.jobs.values())}


OPENAPI = {
    "openapi": "3.0.3",
    "info": {"title": "chromastyle worker", "version": PROTOCOL,
             "description": "Colorize and stylize images. Every request needs `Authorization: Bearer TOKEN` "
                            "(the token is in the worker's state file)."},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "security": [{"bearer": []}],
    "paths": {
        "/v1/health": {"get": {"summary": "Worker health, model and providers", "responses": {"200": {"description": "ok"}}}},
        "/v1/models": {"get": {"summary": "Registered models", "responses": {"200": {"description": "ok"}}}},
        "/v1/styles": {"get": {"summary": "Styles of a model", "parameters": [
            {"name": "model", "in": "query", "required": False, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "ok"}}}},
        "/v1/jobs": {"post": {
            "summary": "Submit a job",
            "description": "Body: 4-byte big-endian length N, N bytes of JSON header {protocol, width, height, "
                           "channels (1-4), dtype (uint8|uint16|float32), colorspace (srgb|linear), sequence (null | {id, "
                           "strength, reset}: frames of one animation, made temporally consistent), options (styles, keep, tileable, seed, "
                           "model, device, tile, overlap), hints (null|\"rgba8\")}, then width*height*channels "
                           "pixels (row-major, top row first), then width*height*4 hint bytes if hints is rgba8.",
            "requestBody": {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
            "responses": {"202": {"description": "queued"}, "400": {"description": "malformed"},
                          "413": {"description": "too large"}}}},
        "/v1/jobs/{id}": {
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {"summary": "State (queued|running|done|failed|cancelled), progress 0..1, stage; "
                           "?wait=S answers as soon as either changes (a long poll, S ≤ 10)",
                    "responses": {"200": {"description": "ok"}, "404": {"description": "unknown job"}}},
            "delete": {"summary": "Cancel (stops at the next tile)", "responses": {"200": {"description": "ok"}}}},
        "/v1/jobs/{id}/result": {
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {"summary": "Result pixels in the format sent (gray becomes RGB); X-Chromastyle-* headers",
                    "responses": {"200": {"description": "pixels"}, "409": {"description": "not done"}}}},
        "/v1/shutdown": {"post": {"summary": "Stop the worker", "responses": {"200": {"description": "ok"}}}},
    },
}


def make_handler(worker, server_ref):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = f"chromastyle/{__version__}"

        def log_message(self, fmt, *args):
            log.debug("%s " + fmt, self.address_string(), *args)

        def _send(self, status, payload=None, body=None, headers=None):
            if body is None:
                body = json.dumps(payload).encode()
                headers = {"Content-Type": "application/json", **(headers or {})}
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, str(v))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self, method):
            try:
                self._check_auth()
                url = urlparse(self.path)
                parts = [p for p in url.path.split("/") if p]
                self._route(method, parts, parse_qs(url.query))
            except HttpError as e:
                self._drain_on_error()
                self._send(e.status, {"error": str(e)})
            except Exception as e:  # never die on a request
                log.exception("request %s %s failed", method, self.path)
                self._send(500, {"error": f"internal error: {e}"})

        def _drain_on_error(self):
            # an unread body would be parsed as the next request: close instead
            self.close_connection = True

        def _check_auth(self):
            given = self.headers.get("Authorization", "")
            expected = f"Bearer {worker.token}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                raise HttpError(401, "missing or wrong bearer token (see the worker's state file)")

        def _body(self):
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                raise HttpError(411, "Content-Length is required") from None
            limit = 4 + MAX_HEADER + worker.max_pixels * 4 * 4 + worker.max_pixels * 4
            if length < 0 or length > limit:
                raise HttpError(413, f"the body is {length} bytes; the limit is {limit}")
            return self.rfile.read(length)

        def _route(self, method, parts, query):
            q = worker.queue
            if parts[:1] != ["v1"]:
                raise HttpError(404, "unknown path; the API lives under /v1 (see /v1/openapi.json)")
            route = parts[1:]
            if method == "GET" and route == ["health"]:
                return self._send(200, worker.health())
            if method == "GET" and route == ["openapi.json"]:
                return self._send(200, OPENAPI)
            if method == "GET" and route == ["models"]:
                return self._send(200, {"models": [
                    {"name": e.name, "version": e.version, "default": e.default, "license": e.license,
                     "styles": list(e.styles)} for e in models.load_registry().values()]})
            if method == "GET" and route == ["styles"]:
                model = query.get("model", [worker.model])[0]
                try:
                    styles = pipeline.styles(model)
                except UserError as e:
                    raise HttpError(400, str(e)) from None
                return self._send(200, {"styles": [{"slug": s, "name": n} for s, n in styles]})
            if method == "POST" and route == ["jobs"]:
                header, options, pixels, hints = parse_job(self._body(), worker.max_pixels)
                try:  # unknown styles or models are the request's fault: say so now, not later
                    model = pipeline.get_model(options.model or worker.model, worker.device)
                    pipeline.style_vector(options.styles, model.info.styles)
                except UserError as e:
                    raise HttpError(400, str(e)) from None
                client = self.headers.get("X-Chromastyle-Client", self.client_address[0])[:64]
                job = Job(client, {**header, "options": {k: v for k, v in options.__dict__.items()
                                                         if k in (header.get("options") or {})}}, pixels, hints)
                q.add(job)
                return self._send(202, job.public(q.position(job)))
            if len(route) >= 2 and route[0] == "jobs":
                job = q.get(route[1])
                if method == "GET" and len(route) == 2:
                    try:
                        wait = min(10.0, max(0.0, float(query.get("wait", ["0"])[0])))
                    except ValueError:
                        raise HttpError(400, "wait must be a number of seconds") from None
                    if wait and job.state in ("queued", "running"):
                        job.wait(wait)
                    return self._send(200, job.public(q.position(job)))
                if method == "DELETE" and len(route) == 2:
                    job.cancel.set()
                    if job.state == "queued":
                        job.update(state="cancelled", stage="cancelled")
                    return self._send(200, job.public())
                if method == "GET" and route[2:] == ["result"]:
                    if job.state != "done":
                        raise HttpError(409, f"job {job.id} is {job.state}, not done")
                    hdr = job.header
                    return self._send(200, body=job.result, headers={
                        "Content-Type": "application/octet-stream", "X-Chromastyle-Width": hdr["width"],
                        "X-Chromastyle-Height": hdr["height"], "X-Chromastyle-Channels": job.result_channels,
                        "X-Chromastyle-Dtype": hdr["dtype"]})
            if method == "POST" and route == ["shutdown"]:
                self._send(200, {"status": "stopping"})
                threading.Thread(target=server_ref[0].shutdown, daemon=True).start()
                return None
            raise HttpError(404 if method in ("GET", "POST", "DELETE") else 405, f"no such endpoint: {method} {self.path}")

        def do_GET(self):
            self._handle("GET")

        def do_POST(self):
            self._handle("POST")

        def do_DELETE(self):
            self._handle("DELETE")

        def do_PUT(self):
            self._handle("PUT")

    return Handler


class WorkerHTTPServer(ThreadingHTTPServer):
    request_queue_size = 128   # the default backlog of 5 refuses bursts of clients
    daemon_threads = True


def is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def private_dir(path):
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def write_state(path, state):
    """JSON state readable by the user only (0600), written atomically."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def setup_logging(log_file):
    private_dir(log_file.parent)
    handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=2_000_000, backupCount=3)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("chromastyle")
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def serve(host="127.0.0.1", port=0, state_file=None, max_pixels=64_000_000, token=None, model=None,
          device="auto", log_file=None, lease=DEFAULT_LEASE, ready=None):
    state_file = Path(state_file) if state_file else default_state_file()
    if token == "" and not is_loopback(host):
        raise UserError(f"refusing to listen on {host} without a token: other machines could use it")
    token = token or secrets.token_urlsafe(32)
    setup_logging(Path(log_file) if log_file else state_file.with_name("worker.log"))
    worker = Worker(max_pixels, token, model, device, lease)
    worker.start()
    server_ref = []
    httpd = WorkerHTTPServer((host, port), make_handler(worker, server_ref))
    server_ref.append(httpd)
    state = {"host": host if host not in ("0.0.0.0", "::") else "127.0.0.1", "port": httpd.server_address[1],
             "token": token, "pid": os.getpid(), "version": __version__, "protocol": PROTOCOL}
    write_state(state_file, state)
    log.info("listening on %s:%s (pid %s), state in %s", host, state["port"], os.getpid(), state_file)
    signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=httpd.shutdown, daemon=True).start())
    if ready:
        ready(state)
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        worker.stopping.set()
        httpd.server_close()
        try:  # only remove the state file if it is still ours
            if json.loads(state_file.read_text()).get("pid") == os.getpid():
                state_file.unlink()
        except (OSError, ValueError):
            pass
        log.info("stopped")


def main(args):
    from .client import Client, WorkerError

    if args.stop or args.status:
        client = Client(state_file=args.state_file, autostart=False)
        try:
            health = client.connect()
        except WorkerError as e:
            print(e)
            return 1 if args.status else 0
        if args.status:
            print(json.dumps(health, indent=2))
            return 0
        client.stop()
        print(f"stopped the worker (pid {health['pid']})")
        return 0
    try:
        serve(args.host, args.port, args.state_file, args.max_pixels, args.token, args.model, args.device,
              args.log_file, args.job_lease)
    except KeyboardInterrupt:
        pass
    return 0
