"""The long-lived local worker: owns the model, runs jobs one at a time, fairly across clients.

Standard library HTTP (http.server): the worker must start from any Python that has the core
installed, with nothing more to install, and its traffic is a few requests per image from a few
local clients — a threaded server is plenty, and the heavy work runs on one job thread anyway.

Every client is treated as possibly hostile (on a studio worker, every artist holds the token):
requests are validated field by field against the schemas published in the OpenAPI document
(one validation layer), connections are bounded in number and time, a job's memory is bounded
by --max-pixels, and a job may only name models of the registry or of the owner's --models-dir.
"""
import dataclasses
import hmac
import ipaddress
import json
import logging
import logging.handlers
import math
import os
import re
import secrets
import signal
import socket
import struct
import sys
import threading
import time
import uuid
from collections import OrderedDict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np

from . import __version__, models, pipeline
from .client import DTYPE_SIZES, PROTOCOL, default_state_file, make_private_dirs, worker_proof
from .color import linear_to_srgb, srgb_to_linear
from .engine import DEVICE_PROVIDERS
from .errors import UserError
from .imaging import Cancelled, gray_to_rgb, hints_from_rgba

log = logging.getLogger("chromastyle.server")

MAX_HEADER = 64 * 1024
DEFAULT_LEASE = 120      # a job nobody asked about for this long is cancelled (client gone)
RESULT_TTL = 600         # results not fetched within this are dropped
MAX_JOBS = 256
MAX_CONNECTIONS = 64     # open connections at once; more are answered 503 and closed
REQUEST_TIMEOUT = 10.0   # seconds for a request line and headers, and for any pause of a connection
MIN_UPLOAD_RATE = 1 << 20  # bytes/s: a job body must arrive at least this fast (plus REQUEST_TIMEOUT)
QUEUE_BYTES = 2 << 30    # pixels held by queued and running jobs (at least one largest job always fits)
PIXEL_DTYPES = {"uint8": np.dtype("u1"), "uint16": np.dtype("<u2"), "float32": np.dtype("<f4")}


class HttpError(Exception):
    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def allowed_methods(parts):
    """The methods of the endpoint at a path (split on "/"), or () when there is none."""
    if parts[:1] != ["v1"]:
        return ()
    route = parts[1:]
    if route in (["health"], ["openapi.json"], ["models"], ["styles"], ["proof"]):
        return ("GET",)
    if route in (["jobs"], ["style-images"], ["shutdown"]):
        return ("POST",)
    if len(route) == 2 and route[0] == "jobs":
        return ("GET", "DELETE")
    if len(route) == 3 and route[0] == "jobs" and route[2] == "result":
        return ("GET",)
    return ()


def allowed_query(parts, method):
    """The query parameters an endpoint takes; any other is a 400."""
    if parts == ["v1", "proof"]:
        return {"nonce"}
    if parts == ["v1", "styles"]:
        return {"model"}
    if len(parts) == 3 and parts[1] == "jobs" and method == "GET":
        return {"wait"}
    return set()


# -- what a client may send: the schemas are the validation and the published contract ------------

def _integer(low, high, **more):
    return {"type": "integer", "minimum": low, "maximum": high, **more}


OPTIONS_SCHEMA = {
    "type": "object", "nullable": True, "additionalProperties": False,
    "description": "What the artist chose; every field is optional.",
    "properties": {
        "styles": {"type": "string", "maxLength": 2000,
                   "description": "NAME[:STRENGTH][,NAME:STRENGTH…], strengths 0..1; styles of GET /v1/styles"},
        "keep": {"type": "string", "enum": list(pipeline.KEEP_MODES)},
        "tileable": {"type": "boolean"},
        "stroke_scale": {"type": "number", "minimum": 0.25, "maximum": 4},
        "seed": _integer(0, 2 ** 63 - 1, nullable=True, description="null: the canonical result"),
        "model": {"type": "string", "maxLength": 200, "nullable": True,
                  "description": "a name from GET /v1/models; null: the worker's model"},
        "device": {"type": "string", "enum": ["auto", *DEVICE_PROVIDERS]},
        "style_images": {"type": "array", "maxItems": 8,
                         "description": "pictures as styles, sent before with POST /v1/style-images; they "
                                        "mix with the named styles like one more style",
                         "items": {"type": "object", "additionalProperties": False, "required": ["id"],
                                   "properties": {
                                       "id": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$",
                                              "description": "what POST /v1/style-images answered"},
                                       "strength": {"type": "number", "minimum": 0, "maximum": 1,
                                                    "default": 1}}}},
        "tile": _integer(128, 1024, deprecated=True,
                         description="ignored by workers whose pipeline has no tiles"),
        "overlap": _integer(0, 511, deprecated=True,
                            description="ignored by workers whose pipeline has no tiles"),
    },
}

PICTURE_FIELDS = {
    "protocol": {"type": "string", "enum": [PROTOCOL]},
    "width": _integer(1, 2 ** 31 - 1),
    "height": _integer(1, 2 ** 31 - 1, description="width × height must not exceed the worker's max_pixels"),
    "channels": {"type": "integer", "enum": [1, 2, 3, 4], "description": "gray, gray+alpha, RGB, RGBA"},
    "dtype": {"type": "string", "enum": list(DTYPE_SIZES), "default": "uint8"},
    "colorspace": {"type": "string", "enum": ["srgb", "linear"], "default": "srgb",
                   "description": "linear: scene-linear pixels with sRGB primaries"},
}

# a picture to use as a style: the same body as a job's, without hints, sequence or options
STYLE_IMAGE_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["width", "height", "channels"],
                      "properties": PICTURE_FIELDS}

HEADER_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["width", "height", "channels"],
    "properties": {
        **PICTURE_FIELDS,
        "hints": {"type": "string", "enum": ["rgba8"], "nullable": True,
                  "description": "rgba8: width × height × 4 hint bytes follow the pixels"},
        "sequence": {"type": "object", "nullable": True, "additionalProperties": False, "required": ["id"],
                     "description": "frames of one animation, sent in order, are made temporally consistent",
                     "properties": {"id": {"type": "string", "maxLength": 128},
                                    "strength": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.7},
                                    "reset": {"type": "boolean"}}},
        "options": OPTIONS_SCHEMA,
    },
}

_KINDS = {"object": "an object", "array": "a list", "string": "a string", "boolean": "true or false",
          "integer": "an integer", "number": "a finite number"}


def check(value, schema, where):
    """Validate parsed JSON against the small JSON-schema subset used above; a HttpError 400
    names the first field that is wrong."""
    if value is None:
        if schema.get("nullable"):
            return
        raise HttpError(400, f"{where} must not be null")
    kind = schema["type"]
    ok = {"object": isinstance(value, dict), "array": isinstance(value, list), "string": isinstance(value, str),
          "boolean": isinstance(value, bool),
          "integer": isinstance(value, int) and not isinstance(value, bool),
          "number": isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}[kind]
    if not ok:
        raise HttpError(400, f"{where} must be {_KINDS[kind]}")
    if "enum" in schema and value not in schema["enum"]:
        raise HttpError(400, f"{where} must be one of {', '.join(map(json.dumps, schema['enum']))}")
    if kind in ("integer", "number") and not schema.get("minimum", -math.inf) <= value <= schema.get("maximum", math.inf):
        raise HttpError(400, f"{where} must be {'an integer' if kind == 'integer' else 'a number'} "
                             f"from {schema['minimum']} to {schema['maximum']}")
    if kind == "string" and len(value) > schema.get("maxLength", len(value)):
        raise HttpError(400, f"{where} is longer than {schema['maxLength']} characters")
    if kind == "string" and "pattern" in schema and not re.fullmatch(schema["pattern"], value):
        raise HttpError(400, f"{where} must match {schema['pattern']}")
    if kind == "array":
        if len(value) > schema.get("maxItems", len(value)):
            raise HttpError(400, f"{where} has more than {schema['maxItems']} items")
        for i, item in enumerate(value):
            check(item, schema["items"], f"{where}[{i}]")
    if kind == "object":
        props = schema.get("properties", {})
        unknown = sorted(k for k in value if k not in props)
        if unknown and schema.get("additionalProperties") is False:
            raise HttpError(400, f"{where} has unknown field(s): {', '.join(map(repr, unknown))[:200]}")
        missing = [k for k in schema.get("required", []) if k not in value]
        if missing:
            raise HttpError(400, f"{where} needs {', '.join(missing)}")
        for key, item in value.items():
            if key in props:
                check(item, props[key], key if where.endswith(" header") else f"{where}.{key}")


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def parse_header(raw, schema=HEADER_SCHEMA, what="the job header"):
    """The JSON header of a job (or of a style picture), validated: a dict whose every field has
    its type and range."""
    try:
        header = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):   # RecursionError: deeply nested arrays or objects
        raise HttpError(400, f"{what} is not valid JSON") from None
    check(header, schema, what)
    return header


def job_sizes(header, max_pixels):
    """(pixel bytes, hint bytes) of a validated header; 413 above the worker's pixel limit."""
    w, h = header["width"], header["height"]
    if w * h > max_pixels:
        raise HttpError(413, f"the image has {w * h:,} pixels; this worker accepts at most {max_pixels:,}")
    size = w * h * header["channels"] * DTYPE_SIZES[header.get("dtype", "uint8")]
    return size, (w * h * 4 if header.get("hints") == "rgba8" else 0)


class Job:
    def __init__(self, client, header, options, pixels, hints, reserved=0):
        self.id = uuid.uuid4().hex
        self.client = client
        self.header = header
        self.options = options
        self.pixels = pixels
        self.hints = hints
        self.reserved = reserved   # bytes of the queue's budget held by pixels + hints
        self.state = "queued"
        self.progress = 0.0
        self.stage = "queued"
        self.error = None
        self.result = None
        self.result_channels = None
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
    """Round-robin over clients, so one client's batch cannot starve another's single job. The
    pixels of queued and running jobs share a byte budget: a client cannot fill the memory."""

    def __init__(self, lease=DEFAULT_LEASE, budget=QUEUE_BYTES):
        self.lease = lease
        self.budget = budget
        self.held = 0
        self.jobs = OrderedDict()
        self.by_client = OrderedDict()   # client -> deque of queued jobs
        self.cond = threading.Condition()

    def reserve(self, nbytes):
        with self.cond:
            if self.held and self.held + nbytes > self.budget:
                raise HttpError(503, "the worker holds as many pixels as it may; try again when jobs finish")
            if sum(j.state in ("queued", "running") for j in self.jobs.values()) >= MAX_JOBS:
                raise HttpError(503, "the worker queue is full; try again later")
            self.held += nbytes

    def release(self, job_or_bytes):
        """Give back a job's input (or bytes reserved for one that never became a job)."""
        with self.cond:
            if isinstance(job_or_bytes, Job):
                job = job_or_bytes
                job.pixels = job.hints = None
                nbytes, job.reserved = job.reserved, 0
            else:
                nbytes = job_or_bytes
            self.held -= nbytes

    def add(self, job):
        with self.cond:
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
                self.release(job)   # cancelled while queued
            return None

    def position(self, job):
        with self.cond:
            waiting = [j for q in self.by_client.values() for j in q]
            return waiting.index(job) if job in waiting else None

    def get(self, job_id):
        job = self.jobs.get(job_id)
        if job is None:
            raise HttpError(404, f"no job {job_id[:64]!r} (finished results are kept {RESULT_TTL} s)")
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
                    else:   # the pipeline stops at its next checkpoint
                        job.update(stage="cancelling: client gone")
                elif job.state in ("done", "failed", "cancelled") and idle > RESULT_TTL:
                    del self.jobs[job.id]


def decode_pixels(header, pixels):
    """Raw bytes (little-endian) -> (H×W×3 float32 in [0, 1], alpha array or None)."""
    w, h, c, dtype = header["width"], header["height"], header["channels"], header.get("dtype", "uint8")
    arr = np.frombuffer(pixels, dtype=PIXEL_DTYPES[dtype]).reshape(h, w, c)
    scale = {"uint8": 255.0, "uint16": 65535.0, "float32": 1.0}[dtype]
    color = np.clip(np.nan_to_num(arr[..., :1 if c <= 2 else 3].astype(np.float32) / scale), 0, 1)
    if header.get("colorspace") == "linear":   # e.g. Blender's float images: the model wants sRGB
        color = linear_to_srgb(color)
    alpha = arr[..., -1].copy() if c in (2, 4) else None
    return (gray_to_rgb(color[..., 0]) if c <= 2 else color), alpha


def encode_pixels(header, rgb, alpha):
    """Result in the format sent: gray becomes RGB (gray+alpha becomes RGBA), same dtype."""
    dtype = header.get("dtype", "uint8")
    if header.get("colorspace") == "linear":
        rgb = srgb_to_linear(np.clip(rgb, 0, 1))
    if dtype == "float32":
        out = rgb.astype(np.float32)
    else:
        scale = 255.0 if dtype == "uint8" else 65535.0
        out = np.round(np.clip(rgb, 0, 1) * scale).astype(np.uint8 if dtype == "uint8" else np.uint16)
    if alpha is not None:
        out = np.concatenate([out, alpha[..., None].astype(out.dtype)], -1)
    return np.ascontiguousarray(out, dtype=PIXEL_DTYPES[dtype]).tobytes(), out.shape[-1]


class Worker:
    def __init__(self, max_pixels, token, model=None, device="auto", lease=DEFAULT_LEASE, models_dir=None):
        self.max_pixels = max_pixels
        self.token = token
        self.model = model
        self.device = device
        self.models_dir = Path(models_dir).resolve() if models_dir else None
        largest = 4 + MAX_HEADER + max_pixels * (4 * 4 + 4)   # float32 RGBA + hints
        self.queue = JobQueue(lease, max(QUEUE_BYTES, largest))
        self.sequences = OrderedDict()   # animation sequence id -> Stabilizer
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="jobs", daemon=True)

    def start(self):
        if self.models_dir is not None and not self.models_dir.is_dir():
            raise UserError(f"--models-dir {self.models_dir} is not a folder")
        pipeline.get_model(self.model, self.device)   # load once, up front: fail fast
        self.thread.start()
        threading.Thread(target=self._reap_loop, name="reaper", daemon=True).start()

    # -- which models a client may name ---------------------------------------------------------
    def resolve_model(self, name):
        """A job may name a registry model or a .onnx file under the owner's --models-dir, nothing
        else: never a path of the client's choosing. Any other name is unknown, with the same
        answer whether or not a file of that name exists, so clients cannot probe the disk."""
        if not name:
            return self.model
        try:
            if name in models.load_registry():
                return name
        except UserError as e:
            raise HttpError(400, str(e)) from None
        found = self._models_dir_file(name)
        if found is not None:
            return str(found)
        raise HttpError(400, f"unknown model {name[:200]!r}; this worker serves: "
                             f"{', '.join(self.model_names()) or 'its default model only'} (GET /v1/models)")

    def _models_dir_file(self, name):
        if self.models_dir is None or not name.endswith(".onnx"):
            return None
        parts = name.split("/")
        if not all(models.SAFE_NAME.fullmatch(p) and ".." not in p for p in parts):
            return None
        try:
            path = (self.models_dir / name).resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        # a link that leads out of the folder is not in it
        return path if path.is_file() and path.is_relative_to(self.models_dir) else None

    def model_names(self):
        names = list(models.load_registry())
        if self.models_dir is not None:
            names += sorted(p.relative_to(self.models_dir).as_posix() for p in self.models_dir.rglob("*.onnx")
                            if self._models_dir_file(p.relative_to(self.models_dir).as_posix()))
        return names

    def options(self, given):
        """Validated header options -> pipeline.Options with the model resolved; 400 if unusable.
        Options the pipeline does not have (tile and overlap, once it has no tiles) are dropped."""
        known = {f.name for f in dataclasses.fields(pipeline.Options)}
        d = {k: v for k, v in (given or {}).items() if k in known}
        d["model"] = self.resolve_model(d.get("model"))
        d["style_images"] = [[item["id"], item.get("strength", 1.0)] for item in d.get("style_images", [])]
        for key, _ in d["style_images"]:   # only pictures sent before: never a path of the client's choosing
            if not pipeline.has_style_image(key):
                raise HttpError(400, f"unknown style picture {key[:19]}…: send it first with "
                                     "POST /v1/style-images (the worker keeps the last "
                                     f"{pipeline.STYLE_IMAGE_CACHE})")
        try:
            opts = pipeline.Options.from_dict(d)
        except (UserError, TypeError, ValueError, OverflowError) as e:
            raise HttpError(400, f"bad options: {e}") from None
        try:  # unknown styles, or a model that cannot load, are the request's fault: say so now, not later
            model = pipeline.get_model(opts.model, self.device if opts.device == "auto" else opts.device)
            pipeline.style_vector(opts.styles, model.info.styles)
            if opts.style_images:
                model.require_style_images()
        except UserError as e:
            raise HttpError(400, str(e)) from None
        if opts.device == "auto":
            opts.device = self.device
        return opts

    # -- jobs ---------------------------------------------------------------------------------------
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
            self.queue.release(job)   # decoded: the raw input is no longer needed
            if job.cancel.is_set():   # abandoned while decoding: keep the stage that says so
                raise Cancelled()
            job.stage = "running model"
            started = time.perf_counter()

            def progress(p):
                job.update(progress=min(0.99, p))
            out = pipeline.run(rgb, hints, options=job.options, progress=progress, cancel=job.cancel.is_set)
            if job.header.get("sequence"):
                out = self.stabilize(job.header["sequence"], rgb, out)
            job.stage = "encoding"
            job.result, job.result_channels = encode_pixels(job.header, out, alpha)
            job.update(progress=1.0, state="done", stage="done")
            log.info("job %s: %d×%d, %s, %.3f s", job.id, rgb.shape[1], rgb.shape[0], job.options.styles,
                     time.perf_counter() - started)
        except Cancelled:
            job.update(state="cancelled", stage="cancelled")
        except UserError as e:
            job.update(state="failed", stage="failed", error=str(e))
        except Exception as e:  # the worker survives whatever one job does
            log.exception("job %s failed", job.id)
            job.update(state="failed", stage="failed", error=f"internal error: {e}")
        finally:
            if job.reserved:
                self.queue.release(job)
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


# -- the published contract ------------------------------------------------------------------------

def _json(schema, description="ok"):
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


ERROR = _json(_ref("Error"), "a message a person can read")
_ERRORS = {"401": {**ERROR, "description": "missing or wrong bearer token"},
           "503": {**ERROR, "description": "too many connections, or the queue is full: try again"}}


def _responses(ok, **more):
    """Every operation may answer 400 (an unknown query parameter), 401 and 503, besides its own."""
    more = {"400": "unknown query parameter", **more}
    return {**ok, **{code: {**ERROR, "description": why} for code, why in more.items()}, **_ERRORS}


JOB_BODY = (
    "The body is binary, in this order:\n"
    "1. header length N: 4 bytes, unsigned, big-endian (N ≤ 65536);\n"
    "2. the header: N bytes of UTF-8 JSON, an object of schema JobHeader;\n"
    "3. the pixels: width × height × channels samples of dtype (uint8: 1 byte, uint16: 2 bytes and "
    "float32: 4 bytes, both little-endian), rows top to bottom, pixels left to right, channels "
    "interleaved (gray, gray+alpha, RGB or RGBA);\n"
    "4. only if the header's hints is \"rgba8\": width × height × 4 hint bytes (RGBA, 8 bits; a pixel "
    "with alpha > 0 is a colour hint), in the same order.\n"
    "Content-Length must be exactly 4 + N + the sizes of 3 and 4; nothing may follow.")

OPENAPI = {
    "openapi": "3.0.3",
    "info": {"title": "chromastyle worker", "version": PROTOCOL,
             "description": "Colorize and stylize images. Every request except GET /v1/proof needs "
                            "`Authorization: Bearer TOKEN` (the token is in the worker's state file). A client "
                            "should first check with GET /v1/proof that it talks to the worker of its state "
                            "file, so the token is never sent to another program."},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "JobHeader": HEADER_SCHEMA,
            "StyleImageHeader": STYLE_IMAGE_SCHEMA,
            "StyleImage": {"type": "object", "required": ["id", "width", "height"], "properties": {
                "id": {"type": "string", "description": "sha256: and the hash of the picture as kept"},
                "width": {"type": "integer"}, "height": {"type": "integer"}}},
            "Job": {"type": "object", "required": ["id", "state", "progress", "stage"], "properties": {
                "id": {"type": "string"},
                "state": {"type": "string", "enum": ["queued", "running", "done", "failed", "cancelled"]},
                "progress": {"type": "number", "minimum": 0, "maximum": 1},
                "stage": {"type": "string"}, "error": {"type": "string"},
                "queue_position": {"type": "integer", "minimum": 0}}},
            "Health": {"type": "object", "required": ["status", "version", "protocol", "pid", "model", "max_pixels"],
                       "properties": {"status": {"type": "string", "enum": ["ok"]}, "version": {"type": "string"},
                                      "protocol": {"type": "string"}, "pid": {"type": "integer"},
                                      "model": {"type": "string"},
                                      "providers": {"type": "array", "items": {"type": "string"}},
                                      "notice": {"type": "string"}, "max_pixels": {"type": "integer"},
                                      "queued": {"type": "integer"}}},
            "Proof": {"type": "object", "required": ["proof", "pid"], "properties": {
                "proof": {"type": "string", "description": "hex HMAC-SHA256 with the token as key of "
                                                           "\"chromastyle-worker-proof:{nonce}:{pid}\""},
                "pid": {"type": "integer"}}},
            "Models": {"type": "object", "required": ["models"], "properties": {"models": {"type": "array", "items": {
                "type": "object", "required": ["name", "source"], "properties": {
                    "name": {"type": "string"}, "source": {"type": "string", "enum": ["registry", "models-dir"]},
                    "version": {"type": "string"}, "default": {"type": "boolean"}, "license": {"type": "string"},
                    "styles": {"type": "array", "items": {"type": "string"}}}}}}},
            "Styles": {"type": "object", "required": ["styles"], "properties": {"styles": {"type": "array", "items": {
                "type": "object", "required": ["slug", "name"],
                "properties": {"slug": {"type": "string"}, "name": {"type": "string"}}}}}},
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/v1/proof": {"get": {
            "summary": "Prove that this is the worker of the state file, without sending it the token",
            "security": [],
            "parameters": [{"name": "nonce", "in": "query", "required": True,
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{16,128}$"}}],
            "responses": {"200": _json(_ref("Proof")), "400": {**ERROR, "description": "bad or no nonce"},
                          "503": _ERRORS["503"]}}},
        "/v1/health": {"get": {"summary": "Worker health, model and providers",
                               "responses": _responses({"200": _json(_ref("Health"))})}},
        "/v1/openapi.json": {"get": {"summary": "This document",
                                     "responses": _responses({"200": _json({"type": "object"})})}},
        "/v1/models": {"get": {"summary": "The models a job may name",
                               "responses": _responses({"200": _json(_ref("Models"))})}},
        "/v1/styles": {"get": {"summary": "Styles of a model", "parameters": [
            {"name": "model", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 200}}],
            "responses": _responses({"200": _json(_ref("Styles"))}, **{"400": "unknown model or query parameter"})}},
        "/v1/jobs": {"post": {
            "summary": "Submit a job",
            "description": JOB_BODY,
            "requestBody": {"required": True, "content": {"application/octet-stream": {
                "schema": {"type": "string", "format": "binary"}}}},
            "responses": _responses({"202": _json(_ref("Job"), "queued")}, **{
                "400": "malformed header (the message names the field), wrong body length, unknown model or style",
                "411": "no Content-Length", "413": "above the worker's pixel or header limit"})}},
        "/v1/style-images": {"post": {
            "summary": "Send a picture to use as a style; jobs name it in options.style_images",
            "description": ("The body is a job's body (see POST /v1/jobs) with a StyleImageHeader and no hints. "
                            "The worker keeps the picture by its content (the same picture gets the same id) "
                            "and describes it once per model; it keeps the last "
                            f"{pipeline.STYLE_IMAGE_CACHE} pictures, so a client whose job is refused as "
                            "naming an unknown picture sends it again."),
            "requestBody": {"required": True, "content": {"application/octet-stream": {
                "schema": {"type": "string", "format": "binary"}}}},
            "responses": _responses({"200": _json(_ref("StyleImage"))}, **{
                "400": "malformed header or body, or a picture under 16×16 pixels",
                "411": "no Content-Length", "413": "above the worker's pixel or header limit"})}},
        "/v1/jobs/{id}": {
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {"summary": "State (queued|running|done|failed|cancelled), progress 0..1, stage; "
                               "?wait=S answers as soon as either changes (a long poll, S ≤ 10)",
                    "parameters": [{"name": "wait", "in": "query", "required": False,
                                    "schema": {"type": "number", "minimum": 0, "maximum": 10}}],
                    "responses": _responses({"200": _json(_ref("Job"))}, **{
                        "400": "wait is not a number of seconds", "404": "unknown job"})},
            "delete": {"summary": "Cancel (stops at the next step)",
                       "responses": _responses({"200": _json(_ref("Job"))}, **{"404": "unknown job"})}},
        "/v1/jobs/{id}/result": {
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {"summary": "Result pixels in the format sent (gray becomes RGB, gray+alpha RGBA), same "
                               "order and byte order as the job's pixels",
                    "responses": _responses({"200": {
                        "description": "pixels",
                        "headers": {f"X-Chromastyle-{k}": {"schema": {"type": t}} for k, t in (
                            ("Width", "integer"), ("Height", "integer"), ("Channels", "integer"),
                            ("Dtype", "string"))},
                        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
                        **{"404": "unknown job", "409": "the job is not done"})}},
        "/v1/shutdown": {"post": {"summary": "Stop the worker",
                                  "responses": _responses({"200": _json({"type": "object"})})}},
    },
}

NONCE = re.compile(r"[A-Za-z0-9_-]{16,128}")


# -- HTTP -------------------------------------------------------------------------------------------

def make_handler(worker, server_ref):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = f"chromastyle/{__version__}"

        def setup(self):
            self.timeout = self.server.request_timeout   # any pause longer than this ends the connection
            super().setup()

        def handle_one_request(self):
            self.server.deadline(self.connection, self.server.request_timeout)   # request line + headers
            super().handle_one_request()

        def finish(self):
            self.server.deadline(self.connection, None)
            try:
                super().finish()
            except OSError:
                pass

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
            self.server.deadline(self.connection, None)   # headers are in
            self.body_left = (self.headers.get("Content-Length", "0").strip() not in ("", "0")
                              or "Transfer-Encoding" in self.headers)   # unread: the connection must close
            try:
                try:
                    url = urlparse(self.path)
                    parts = [p for p in url.path.split("/") if p]
                    if not (method == "GET" and parts == ["v1", "proof"]):   # the only one without a token
                        self._check_auth()
                    try:
                        query = parse_qs(url.query, keep_blank_values=True, max_num_fields=20)
                    except ValueError:
                        raise HttpError(400, "too many query parameters") from None
                    self._route(method, parts, query)
                except HttpError as e:
                    self.close_connection = True   # an unread body would be parsed as the next request
                    self._send(e.status, {"error": str(e)}, headers=e.headers)
                except (ConnectionError, TimeoutError):
                    raise
                except Exception as e:  # never die on a request
                    log.exception("request %s %s failed", method, self.path[:200])
                    self.close_connection = True
                    self._send(500, {"error": f"internal error: {e}"})
                finally:
                    if self.body_left:
                        self.close_connection = True
            except (ConnectionError, TimeoutError) as e:   # the client went away or stalled: one line
                log.info("%s %s: connection from %s ended early (%s)", method, self.path[:80],
                         self.client_address[0], type(e).__name__)
                self.close_connection = True

        def _proof(self, query):
            nonce = query.get("nonce", [""])[0]
            if not NONCE.fullmatch(nonce):
                raise HttpError(400, "nonce must be 16 to 128 letters, digits, - or _")
            self._send(200, {"proof": worker_proof(worker.token, nonce, os.getpid()), "pid": os.getpid()})

        def _check_auth(self):
            given = self.headers.get("Authorization", "")
            expected = f"Bearer {worker.token}"
            if not hmac.compare_digest(given.encode(errors="replace"), expected.encode()):
                raise HttpError(401, "missing or wrong bearer token (see the worker's state file)")

        def _content_length(self, limit):
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                raise HttpError(411, "Content-Length is required") from None
            if length < 0:
                raise HttpError(400, "Content-Length must not be negative")
            if length > limit:
                raise HttpError(413, f"the body is {length} bytes; the limit is {limit}")
            return length

        def _read(self, n):
            data = self.rfile.read(n)
            if len(data) != n:
                raise HttpError(400, f"the body ended after {len(data)} of {n} bytes")
            return data

        def _read_header(self, schema, what):
            """A job's or a style picture's body up to its header: the header is read and validated
            before any pixel is, so a bad or too large request costs the worker nothing, and the body
            must arrive at a reasonable rate. -> (header, body length, pixel bytes, hint bytes)."""
            limit = 4 + MAX_HEADER + worker.max_pixels * (4 * 4 + 4)
            length = self._content_length(limit)
            self.server.deadline(self.connection, self.server.request_timeout)
            if length < 4:
                raise HttpError(400, "the body must start with a 4-byte header length")
            (n,) = struct.unpack(">I", self._read(4))
            if n > MAX_HEADER:
                raise HttpError(413, f"{what} is {n} bytes; the limit is {MAX_HEADER}")
            if 4 + n > length:
                raise HttpError(400, f"the header length says {n} bytes but the body has only {length - 4}")
            header = parse_header(self._read(n), schema, what)
            size, hints_size = job_sizes(header, worker.max_pixels)
            if length != 4 + n + size + hints_size:
                raise HttpError(400, f"expected {size + hints_size} bytes of pixels after the header, "
                                     f"got {length - 4 - n}")
            self.server.deadline(self.connection, None)
            return header, length, size, hints_size

        def _style_image(self):
            """POST /v1/style-images: a picture kept (by content) for jobs to use as a style."""
            header, length, size, _ = self._read_header(STYLE_IMAGE_SCHEMA, "the style picture's header")
            worker.queue.reserve(size)
            try:
                self.server.deadline(self.connection, self.server.request_timeout + length / MIN_UPLOAD_RATE)
                pixels = self._read(size)
                self.body_left = False
                self.server.deadline(self.connection, None)
                rgb, _ = decode_pixels(header, pixels)
                del pixels
                try:
                    key = pipeline.add_style_image(rgb)
                except UserError as e:
                    raise HttpError(400, str(e)) from None
            finally:
                worker.queue.release(size)
            return {"id": key, "width": header["width"], "height": header["height"]}

        def _submit(self):
            """POST /v1/jobs."""
            header, length, size, hints_size = self._read_header(HEADER_SCHEMA, "the job header")
            options = worker.options(header.get("options"))   # may load a model: no deadline meanwhile
            worker.queue.reserve(size + hints_size)
            self.server.deadline(self.connection, self.server.request_timeout + length / MIN_UPLOAD_RATE)
            try:
                pixels, hints = self._read(size), (self._read(hints_size) if hints_size else None)
            except BaseException:
                worker.queue.release(size + hints_size)
                raise
            self.body_left = False
            self.server.deadline(self.connection, None)
            client = self.headers.get("X-Chromastyle-Client", self.client_address[0])[:64]
            job = Job(client, header, options, pixels, hints, reserved=size + hints_size)
            worker.queue.add(job)
            return job

        def _route(self, method, parts, query):
            q = worker.queue
            allowed = allowed_methods(parts)
            if not allowed:
                raise HttpError(404, f"no such endpoint: {self.path[:200]} (the API is in /v1/openapi.json)")
            if method not in allowed:
                raise HttpError(405, f"{self.path[:200]} does not take {method}; it takes {', '.join(allowed)}",
                                headers={"Allow": ", ".join(allowed)})
            unknown = sorted(set(query) - allowed_query(parts, method))
            if unknown:
                raise HttpError(400, f"unknown query parameter(s): {', '.join(map(repr, unknown))[:200]}")
            if parts == ["v1", "proof"]:
                return self._proof(query)
            route = parts[1:]
            if method == "GET" and route == ["health"]:
                return self._send(200, worker.health())
            if method == "GET" and route == ["openapi.json"]:
                return self._send(200, OPENAPI)
            if method == "GET" and route == ["models"]:
                registry = [{"name": e.name, "source": "registry", "version": e.version, "default": e.default,
                             "license": e.license, "styles": list(e.styles)} for e in models.load_registry().values()]
                extra = [{"name": n, "source": "models-dir"} for n in worker.model_names()[len(registry):]]
                return self._send(200, {"models": registry + extra})
            if method == "GET" and route == ["styles"]:
                name = query.get("model", [None])[0]
                try:
                    styles = pipeline.styles(worker.resolve_model(name))
                except UserError as e:
                    raise HttpError(400, str(e)) from None
                return self._send(200, {"styles": [{"slug": s, "name": n} for s, n in styles]})
            if method == "POST" and route == ["jobs"]:
                job = self._submit()
                return self._send(202, job.public(q.position(job)))
            if method == "POST" and route == ["style-images"]:
                return self._send(200, self._style_image())
            if len(route) >= 2 and route[0] == "jobs":
                job = q.get(route[1])
                if method == "GET" and len(route) == 2:
                    try:
                        wait = float(query.get("wait", ["0"])[0])
                    except ValueError:
                        wait = math.nan
                    if not math.isfinite(wait):
                        raise HttpError(400, "wait must be a number of seconds")
                    wait = min(10.0, max(0.0, wait))
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
                        "X-Chromastyle-Dtype": hdr.get("dtype", "uint8")})
            if method == "POST" and route == ["shutdown"]:
                self._send(200, {"status": "stopping"})
                threading.Thread(target=server_ref[0].shutdown, daemon=True).start()
                return None
            raise AssertionError(f"unrouted {method} {self.path[:200]}")   # allowed_methods and this disagree

        def do_GET(self):
            self._handle("GET")

        def do_POST(self):
            self._handle("POST")

        def do_DELETE(self):
            self._handle("DELETE")

        def __getattr__(self, name):   # do_PUT, do_TRACE, do_QUERY…: 405 with Allow (401 without the token)
            if name.startswith("do_"):
                return lambda: self._handle(self.command)
            raise AttributeError(name)

    return Handler


BUSY = json.dumps({"error": "the worker has too many connections; try again"}).encode()


class WorkerHTTPServer(ThreadingHTTPServer):
    """At most ``max_connections`` connections at once (more are answered 503 and closed), and each
    must make progress: request line and headers within ``request_timeout``, a job body at
    MIN_UPLOAD_RATE, no pause longer than ``request_timeout``. Idle keep-alive connections close."""
    request_queue_size = 128   # the default backlog of 5 refuses bursts of clients
    daemon_threads = True

    def __init__(self, address, handler, request_timeout=REQUEST_TIMEOUT, max_connections=MAX_CONNECTIONS):
        super().__init__(address, handler)
        self.request_timeout = request_timeout
        self.slots = threading.BoundedSemaphore(max_connections)
        self.deadlines = {}   # connection -> monotonic time by which it must have sent what it owes
        self.deadlines_lock = threading.Lock()

    def deadline(self, connection, seconds):
        with self.deadlines_lock:
            if seconds is None:
                self.deadlines.pop(connection, None)
            else:
                self.deadlines[connection] = time.monotonic() + seconds

    def service_actions(self):   # serve_forever calls this between polls
        now = time.monotonic()
        with self.deadlines_lock:
            late = [c for c, t in self.deadlines.items() if t < now]
            for c in late:
                del self.deadlines[c]
        for c in late:
            log.info("closing a connection that did not send its request in time")
            try:
                c.shutdown(socket.SHUT_RDWR)   # the handler's blocked read returns, and it ends
            except OSError:
                pass

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            log.warning("refusing a connection from %s: %d connections are open", client_address[0],
                        len(self.deadlines))
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(BUSY), BUSY))
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address):
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            log.info("connection from %s ended early (%s)", client_address[0], type(error).__name__)
        else:
            log.exception("connection from %s failed", client_address[0])


def is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def write_state(path, state):
    """JSON state readable by the user only (0600), written atomically. Folders it has to create
    are made private (0700); existing ones are left as they are (never chmod /tmp)."""
    make_private_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def setup_logging(log_file):
    make_private_dirs(log_file.parent)
    handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=2_000_000, backupCount=3)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("chromastyle")
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def serve(host="127.0.0.1", port=0, state_file=None, max_pixels=64_000_000, token=None, model=None,
          device="auto", log_file=None, lease=DEFAULT_LEASE, ready=None, models_dir=None,
          request_timeout=REQUEST_TIMEOUT):
    state_file = Path(state_file) if state_file else default_state_file()
    if token == "" and not is_loopback(host):
        raise UserError(f"refusing to listen on {host} without a token: other machines could use it")
    if max_pixels < 1 or not request_timeout > 0:
        raise UserError("--max-pixels and --request-timeout must be positive")
    token = token or secrets.token_urlsafe(32)
    try:
        setup_logging(Path(log_file) if log_file else state_file.with_name("worker.log"))
    except OSError as e:
        raise UserError(f"cannot write the worker's log next to {state_file}: {e.strerror or e}") from None
    worker = Worker(max_pixels, token, model, device, lease, models_dir)
    worker.start()
    server_ref = []
    httpd = WorkerHTTPServer((host, port), make_handler(worker, server_ref), request_timeout)
    server_ref.append(httpd)
    state = {"host": host if host not in ("0.0.0.0", "::") else "127.0.0.1", "port": httpd.server_address[1],
             "token": token, "pid": os.getpid(), "version": __version__, "protocol": PROTOCOL}
    try:
        write_state(state_file, state)
    except OSError as e:
        raise UserError(f"cannot write the state file {state_file}: {e.strerror or e}") from None
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
              args.log_file, args.job_lease, models_dir=args.models_dir, request_timeout=args.request_timeout)
    except KeyboardInterrupt:
        pass
    return 0
