"""Frames and layers in bulk: ordered, resumable, in parallel (local processes or Ray actors),
with an optional flow-guided stabilizer for temporally consistent animation."""
import glob
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import imaging, pipeline
from .metrics import warp
from .errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}


def natural_key(path):
    """frame_2 before frame_10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def list_inputs(spec):
    """A folder (its images) or a glob pattern, in natural order."""
    p = Path(spec)
    if p.is_dir():
        files = [f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES]
    else:
        files = [Path(f) for f in glob.glob(str(spec)) if Path(f).suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise UserError(f"no images found in {spec}")
    return sorted(files, key=natural_key)


def output_path(src, out_dir):
    suffix = src.suffix.lower() if src.suffix.lower() in (".png", ".tif", ".tiff") else ".png"
    return Path(out_dir) / (src.stem + suffix)


# -- temporal consistency ------------------------------------------------------------------------

class Stabilizer:
    """Blends the previous stylized frame, warped along the optical flow of the input frames, into
    the current one where the flow can be trusted (Lai et al. 2018 measure what remains).

    Flow: OpenCV's DIS, on the frames scaled to at most ``flow_side`` pixels long (the style graph
    works at 384 px, so finer flow buys nothing, and the flow's cost stops growing with the frame
    size), brought back to full size. Occlusions and flow errors are found photometrically: where
    the warped previous input differs from the current input, the current frame's own result is
    kept."""

    def __init__(self, strength=0.7, tolerance=0.06, flow_side=384):
        self.strength = strength
        self.tolerance = tolerance
        self.flow_side = flow_side
        self.prev_in = None
        self.prev_out = None
        import cv2
        self.cv2 = cv2
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def reset(self):
        self.prev_in = self.prev_out = None

    def flow(self, a, b):
        """Flow from frame a to frame b (for each pixel of a, where it is in b)."""
        h, w = a.shape[:2]
        scale = min(1.0, self.flow_side / max(h, w))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        gray = lambda x: np.round(np.clip(self.cv2.resize(x.mean(-1), size, interpolation=self.cv2.INTER_AREA),  # noqa: E731
                                          0, 1) * 255).astype(np.uint8)
        flow = self.dis.calc(gray(a), gray(b), None)
        if scale == 1.0:
            return flow
        flow = self.cv2.resize(flow, (w, h), interpolation=self.cv2.INTER_LINEAR)
        return flow * np.array([w / size[0], h / size[1]], np.float32)

    def __call__(self, frame_in, raw_out):
        if self.prev_in is None or self.prev_in.shape != frame_in.shape:
            out = raw_out
        else:
            flow = self.flow(frame_in, self.prev_in)
            warped_out, inside = warp(self.prev_out, flow)
            warped_in, _ = warp(self.prev_in, flow)
            trust = inside & (np.abs(warped_in - frame_in).max(-1) < self.tolerance)
            alpha = self.cv2.GaussianBlur(trust.astype(np.float32), (5, 5), 0)[..., None] * self.strength
            out = alpha * warped_out + (1 - alpha) * raw_out
        self.prev_in, self.prev_out = frame_in, out.astype(np.float32)
        return self.prev_out


# -- processing -------------------------------------------------------------------------------------

@dataclass
class Report:
    done: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: list = field(default_factory=list)   # (path, reason)
    redone: list = field(default_factory=list)   # (path, why its existing output was not trusted)
    seconds: float = 0.0


_worker = {}   # in each worker process: the options and the pixel limit of the batch


def _init_worker(options, threads, max_pixels=None):
    """In each worker process: one model, a fixed thread count (same results as in-process)."""
    _exit_with_parent()
    if threads:
        os.environ["CHROMASTYLE_THREADS"] = str(threads)
    _worker.update(options=options, max_pixels=max_pixels or imaging.DEFAULT_MAX_PIXELS)
    pipeline.get_model(options.model, options.device)


def _exit_with_parent():
    """A pool process ends as soon as the batch process that started it is gone, however it
    ended (SIGKILL included, which no handler sees): its end of a pipe to the parent closes."""
    import multiprocessing
    import multiprocessing.connection

    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def watch():
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def infer_file(path):
    """Read and run one file -> (Picture of the input, raw model output) or raises UserError."""
    picture = imaging.read_image(path, _worker["max_pixels"])
    return picture, pipeline.run(picture.rgb, options=_worker["options"])


def _infer_safe(path):
    try:
        return path, infer_file(path), None
    except UserError as e:
        return path, None, str(e)
    except Exception as e:  # one bad frame must not end a thousand-frame batch
        return path, None, f"internal error: {e}"


def process_frames(frames, options, stabilize=False, strength=0.7, progress=None):
    """In-memory API for layer stacks and frame lists: H×W×3 float arrays -> arrays, in order."""
    stab = Stabilizer(strength) if stabilize else None
    out = []
    for i, frame in enumerate(frames):
        raw = pipeline.run(frame, options=options)
        out.append(stab(frame, raw) if stab else raw)
        if progress:
            progress((i + 1) / len(frames))
    return out


def run_batch(inputs, out_dir, options, workers=1, resume=False, stabilize=False, strength=0.7,
              backend="local", ray_address=None, progress=None, max_pixels=None):
    """Process files in order; outputs are written atomically, so a crash loses at most the frames
    in flight and --resume skips what is finished (after checking that it is)."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    pairs = [(Path(src), output_path(src, out_dir)) for src in inputs]
    imaging.refuse_collisions(pairs)
    if any(dst.resolve() == src.resolve() for src, dst in pairs):
        raise UserError("the output folder is the input folder; choose another so no original is overwritten")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the output folder {out_dir}: {e.strerror or e}") from None
    report = Report()
    todo = []
    for src, dst in pairs:
        if os.path.lexists(dst):
            if not resume:
                raise UserError(f"{dst} exists; pass --resume to skip finished frames, or choose an empty folder")
            problem = unfinished(src, dst, max_pixels or imaging.DEFAULT_MAX_PIXELS)
            if problem is None:
                report.skipped.append(src)
                continue
            report.redone.append((src, problem))
        todo.append(src)
    stab = Stabilizer(strength) if stabilize else None
    if stab and todo and report.skipped:
        _prime_stabilizer(stab, inputs, todo[0], out_dir)
    results = _results(todo, options, workers, backend, ray_address, max_pixels)
    for i, (src, result, error) in enumerate(results):
        if error is None:
            try:
                picture, raw = result
                out = stab(picture.rgb, raw) if stab else raw
                imaging.write_image(output_path(src, out_dir), imaging.Picture(out, picture.alpha, picture.depth),
                                    inputs=[src])
                report.done.append(src)
            except UserError as e:
                error = str(e)
            except Exception as e:  # noqa: BLE001 — one bad frame must not end a thousand-frame batch
                error = f"internal error: {type(e).__name__}: {e}"
        if error is not None:
            report.failed.append((src, error))
            if stab:
                stab.reset()   # the next frame starts a new run of consistency
        if progress:
            progress(i + 1, len(todo))
    report.seconds = time.perf_counter() - started
    return report


def unfinished(src, dst, max_pixels=imaging.DEFAULT_MAX_PIXELS):
    """Why the existing output ``dst`` of ``src`` is not a finished result (None when it is): it
    must decode completely and have the input's size. An empty or truncated file, e.g. left by a
    copy or a full disk, is processed again rather than trusted."""
    try:
        with imaging.open_image(src, max_pixels) as (im, _):
            w, h = im.size
            size = (h, w) if im.getexif().get(0x0112) in (5, 6, 7, 8) else (w, h)   # EXIF-turned
    except UserError:
        return "its input cannot be read"   # processed again, it fails with the reason
    try:
        out = imaging.read_image(dst, max_pixels)
    except UserError as e:
        return f"its output was incomplete ({e})"
    if out.size != size:
        return f"its output is {out.size[0]}×{out.size[1]}, not {size[0]}×{size[1]}"
    return None


def _prime_stabilizer(stab, inputs, first_todo, out_dir):
    """After a resume, continue from the last finished frame's stylized output."""
    idx = inputs.index(first_todo)
    if idx == 0:
        return
    prev = inputs[idx - 1]
    try:
        stab.prev_in = imaging.read_image(prev).rgb
        stab.prev_out = imaging.read_image(output_path(prev, out_dir)).rgb
    except UserError:
        stab.reset()


def _results(todo, options, workers, backend, ray_address, max_pixels):
    """(path, (picture, raw) | None, error | None) in input order."""
    if backend == "ray":
        yield from _ray_results(todo, options, workers, ray_address, max_pixels)
        return
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    if workers <= 1:
        _init_worker(options, 0, max_pixels)
        for path in todo:
            yield _infer_safe(path)
        return
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(options, threads, max_pixels)) as pool:
        # map keeps the order; chunksize 1 keeps at most ~workers frames in flight per worker
        yield from pool.map(_infer_safe, todo, chunksize=1)


def _ray_results(todo, options, workers, address, max_pixels):
    try:
        import ray
    except ImportError:
        raise UserError("the Ray backend needs Ray: pip install 'chromastyle[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else max(1, workers), include_dashboard=False,
                 log_to_driver=False, ignore_reinit_error=True)

    @ray.remote(num_cpus=1)
    class FrameActor:
        """Holds the model; one per CPU (or GPU) slot."""

        def __init__(self, options):
            _init_worker(options, 1, max_pixels)

        def run(self, path):
            return _infer_safe(path)

    from ray.util import ActorPool
    pool = ActorPool([FrameActor.remote(options) for _ in range(max(1, workers))])
    yield from pool.map(lambda actor, path: actor.run.remote(path), todo)
