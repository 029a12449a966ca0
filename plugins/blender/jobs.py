"""Images <-> the worker, and a poller that runs a list of tasks without blocking Blender.

Standard library + bpy only (no numpy): pixels move with foreach_get/foreach_set on array('f').
Blender's rows are bottom-up and float images are scene-linear; the worker gets top-down rows and
is told the colour space, so it converts linear <-> sRGB itself.

A run either completes or leaves nothing behind: images are made only from finished results, and
frames of a sequence are staged and moved into place when the whole sequence is done."""
import os
import shutil
import tempfile
from array import array

import bpy

from . import client as client_lib
from .messages import explain

_client = None
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def client():
    global _client
    if _client is None:
        _client = client_lib.Client()
    return _client


def flip_rows(data, width, height, itemsize=4):
    row = width * 4 * itemsize
    return b"".join(data[i * row:(i + 1) * row] for i in range(height - 1, -1, -1))


def read_image(image):
    """-> (top-down RGBA float32 bytes, width, height, colorspace)."""
    w, h = image.size
    if w == 0 or h == 0:
        raise client_lib.WorkerError(f"image '{image.name}' has no pixels (render results must be saved first)")
    buf = array("f", bytes(4 * w * h * 4))
    image.pixels.foreach_get(buf)
    linear = image.is_float or image.colorspace_settings.name not in ("sRGB", "Filmic sRGB", "AgX Base sRGB")
    return flip_rows(buf.tobytes(), w, h), w, h, "linear" if linear else "srgb"


def kind_of(image):
    """What a result must be like to match ``image``: (float buffer?, colour space name)."""
    return image.is_float, image.colorspace_settings.name


def write_image(data, width, height, name, kind):
    """A new image with the result, of the ``kind`` (see kind_of) of its source."""
    float_buffer, colorspace = kind
    img = bpy.data.images.new(name, width, height, alpha=True, float_buffer=float_buffer)
    try:
        img.colorspace_settings.name = colorspace
    except TypeError:  # a colour space this build lacks; keep the default
        pass
    buf = array("f")
    buf.frombytes(flip_rows(data, width, height))
    img.pixels.foreach_set(buf)
    img.update()
    return img


def save_image_atomically(img, path):
    """Write ``img`` to ``path`` through a temporary file: a frame is complete or absent."""
    folder, base = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".chromastyle.", suffix=os.path.splitext(base)[1], dir=folder)
    os.close(fd)
    try:
        img.filepath_raw = tmp
        img.file_format = "OPEN_EXR" if path.lower().endswith(".exr") else "PNG"
        img.save()
        os.chmod(tmp, 0o666 & ~_UMASK)   # mkstemp makes 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class StagedFolder:
    """Files for ``folder`` are written into a hidden folder beside it and moved into place by
    commit(), when the whole run is done; discard() leaves ``folder`` as it was."""

    def __init__(self, folder):
        self.folder = folder
        self.created = not os.path.isdir(folder)
        os.makedirs(folder, exist_ok=True)
        self.stage = tempfile.mkdtemp(prefix=".chromastyle-", dir=folder)

    def path(self, name):
        return os.path.join(self.stage, name)

    def commit(self):
        for name in sorted(os.listdir(self.stage)):
            os.replace(os.path.join(self.stage, name), os.path.join(self.folder, name))
        os.rmdir(self.stage)

    def discard(self):
        shutil.rmtree(self.stage, ignore_errors=True)
        if self.created and not os.listdir(self.folder):
            os.rmdir(self.folder)


class Task:
    """One image through the worker: ``read`` gives (bytes, w, h, colorspace); ``finish`` takes
    the result bytes. Nothing is written until the result has fully arrived."""

    def __init__(self, label, read, finish, sequence=None):
        self.label, self.read, self.finish, self.sequence = label, read, finish, sequence


class Poller:
    """Runs tasks one after another; poll() is called from a modal timer (or a loop in
    background mode) and never blocks for long. ``staged``: a StagedFolder the tasks write into,
    committed when all are done and discarded when the run fails or is cancelled."""

    def __init__(self, tasks, options, staged=None):
        self.tasks = list(tasks)
        self.total = len(self.tasks)
        self.options = options
        self.staged = staged
        self.job = None
        self.task = None
        self.finished = 0
        self.outputs = []
        self.error = None

    @property
    def progress(self):
        return self.finished / max(1, self.total)

    def poll(self):
        """-> 'running' | 'done' | 'failed'"""
        c = client()
        try:
            if self.job is None:
                if not self.tasks:
                    return self._done()
                self.task = self.tasks.pop(0)
                data, w, h, colorspace = self.task.read()
                self.size = (w, h)
                # a Job submits again if the worker is restarted meanwhile
                self.job = client_lib.Job(c, data, w, h, 4, "float32", self.options, None, colorspace,
                                          self.task.sequence)
                return "running"
            st = self.job.poll()
            if st["state"] in ("queued", "running"):
                return "running"
            if st["state"] != "done":
                raise client_lib.WorkerError(st.get("error") or f"the job was {st['state']}")
            out = self.job.result()
            self.outputs.append(self.task.finish(out, *self.size))
            self.job = None
            self.finished += 1
            return "running" if self.tasks else self._done()
        except (client_lib.WorkerError, OSError, RuntimeError, ValueError) as e:
            self.error = explain(e, "blender", c)
            self._discard()
            return "failed"

    def _done(self):
        if self.staged:
            self.staged.commit()
            self.staged = None
        return "done"

    def _discard(self):
        if self.staged:
            self.staged.discard()
            self.staged = None
        self.outputs = []

    def cancel(self):
        """Esc: the worker drops the job, and nothing of this run is kept."""
        if self.job:
            try:
                self.job.cancel()
            except client_lib.WorkerError:
                pass
        self.job = None
        self.tasks = []
        self._discard()
