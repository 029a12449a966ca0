"""Runs layers and animation frames through the worker without freezing Krita: a Qt timer polls
the worker (short HTTP calls), so the event loop keeps turning while the model works.

A run either finishes, or leaves the document as it was: a failed or cancelled run removes the
layers it added."""
from . import options as opts
from . import pixels
from .client import Job, JobFailed
from .messages import explain
from .qt import QApplication, QObject, QTimer, pyqtSignal

CONTEXT = 64
POLL_MS = 100
RGB_PROFILES = {"srgb": "sRGB-elle-V2-srgbtrc.icc", "linear": "sRGB-elle-V2-g10.icc"}   # Krita's own


def rgb_profile(profile):
    """The RGB profile with a (gray) profile's tone curve, so values keep their meaning."""
    return RGB_PROFILES[pixels.colorspace(profile)]


class RunError(Exception):
    pass


def keyframe_times(doc, node, frames="keyframes"):
    """Times of a node's keyframes in the playback range (or a (start, end) range)."""
    if not node.animated():
        return [None]
    start, end = frames if isinstance(frames, tuple) else (doc.playBackStartTime(), doc.playBackEndTime())
    return [t for t in range(start, end + 1) if node.hasKeyframeAtTime(t)]


def work_rect(doc):
    """The selection's bounds plus context (clipped to the image), or the whole image."""
    w, h = doc.width(), doc.height()
    sel = doc.selection()
    if sel is None or sel.width() == 0:
        return 0, 0, w, h
    x0, y0 = max(0, sel.x() - CONTEXT), max(0, sel.y() - CONTEXT)
    x1, y1 = min(w, sel.x() + sel.width() + CONTEXT), min(h, sel.y() + sel.height() + CONTEXT)
    return x0, y0, x1 - x0, y1 - y0


def hints_rgba8(node, rect, time):
    """The hint layer's pixels as RGBA8 bytes."""
    x, y, w, h = rect
    data = node.pixelData(x, y, w, h) if time is None else node.pixelDataAtTime(x, y, w, h, time)
    if node.colorModel() != "RGBA":
        raise RunError(f"the hint layer '{node.name()}' must be an RGB layer to hold colours; "
                       "convert it with Layer ▸ Convert ▸ Convert Layer Color Space")
    rgba, _, dtype = pixels.to_worker(data, "RGBA", node.colorDepth())
    if dtype == "uint8":
        return rgba
    from array import array
    a = array("H" if dtype == "uint16" else "f")
    a.frombytes(rgba)
    scale = 257 if dtype == "uint16" else 1 / 255
    return bytes(min(255, max(0, int(v / scale))) for v in a)


class Runner(QObject):
    """Process ``nodes`` of ``doc``; emits finished(ok, message)."""
    finished = pyqtSignal(bool, str)
    progressed = pyqtSignal(float, str)

    def __init__(self, krita, doc, nodes, settings, client):
        super().__init__()
        self.krita, self.doc, self.client = krita, doc, client
        self.options = opts.worker_options(settings)
        self.hint_node = doc.nodeByName(settings.get("hint_layer") or "") if settings.get("hint_layer") else None
        self.style_node = None
        if settings.get("style_layer"):
            self.style_node = doc.nodeByName(settings["style_layer"])
            if self.style_node is None:
                raise RunError(f"there is no layer '{settings['style_layer']}' in this document to use as the "
                               "style reference; choose one in the docker (Refresh re-reads the layers)")
        self.style_strength = float(settings.get("style_layer_strength", 1.0))
        nodes = [n for n in nodes if n.type() == "paintlayer" and n not in (self.hint_node, self.style_node)]
        if not nodes:
            raise RunError("select the paint layer(s) to process in the Layers docker (not the hint layer or the "
                           "style reference) and run again")
        self.rect = work_rect(doc)
        self.selection = doc.selection()
        self.items = [(n, t) for n in nodes for t in keyframe_times(doc, n, settings.get("frames", "keyframes"))]
        self.total = len(self.items)
        self.targets = {}
        self.results = []       # (source name, target node, time) in order
        self.sequences = set()  # animated sources whose first frame was sent
        self.job = None
        self.current = None
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._poll)
        self.done = False
        self.start_time = doc.currentTime()   # frames move the time: put it back afterwards

    def start(self):
        QTimer.singleShot(0, self._next)

    def cancel(self):
        if self.job:
            try:
                self.job.cancel()
            except Exception:  # the worker may already be gone; cancelling is best effort
                pass
        self._finish(False, "cancelled")

    def _target(self, source):
        """A new paint layer above the source (never overwrite: Krita's Python cannot group undo)."""
        if source.uniqueId() not in self.targets:
            picture = " + style reference" if self.style_node is not None else ""
            target = self.doc.createNode(f"{source.name()} ({self.options['styles']}{picture})", "paintlayer")
            source.parentNode().addChildNode(target, source)
            self.targets[source.uniqueId()] = target
            if source.colorModel() != "RGBA":   # e.g. a grayscale document: the result has colour
                if not target.setColorSpace("RGBA", source.colorDepth(), rgb_profile(source.colorProfile())):
                    raise RunError("could not make an RGB layer in this document")
        return self.targets[source.uniqueId()]

    def _color_document(self):
        """Results are RGB, but a grayscale document composes every layer gray, on the canvas and in
        exports: make it RGB at the same depth, one undo step, once every result is in."""
        model = self.doc.colorModel()
        if model == "RGBA" or not self.targets:
            return
        if not self.doc.setColorSpace("RGBA", self.doc.colorDepth(), rgb_profile(self.doc.colorProfile())):
            raise RunError(f"Krita could not convert this {model} document to RGB; convert it with "
                           "Image ▸ Convert Image Color Space and run again")
        self.doc.waitForDone()

    def _send_style_reference(self):
        """The style reference layer goes to the worker once per run; every layer and frame of the run
        names the same picture. The whole layer is the picture, also what lies outside the canvas
        (a painting pasted into a smaller document)."""
        node = self.style_node
        b = node.bounds()
        x, y, w, h = b.x(), b.y(), b.width(), b.height()
        if w <= 0 or h <= 0:
            raise RunError(f"the style reference layer '{node.name()}' is empty; paint or paste a picture into it")
        raw, channels, dtype = pixels.to_worker(node.pixelData(x, y, w, h), node.colorModel(), node.colorDepth())
        ref = self.client.style_image(raw, w, h, channels, dtype, pixels.colorspace(node.colorProfile()))
        self.options["style_images"] = [{"id": ref, "strength": self.style_strength}]

    def _next(self):
        if self.done:
            return
        if self.style_node is not None and "style_images" not in self.options:
            try:
                self._send_style_reference()
            except Exception as e:
                return self.fail(e)
        if not self.items:
            try:
                self._color_document()
            except Exception as e:
                return self.fail(e)
            self.doc.refreshProjection()
            return self._finish(True, f"processed {self.total} layer(s)/frame(s)")
        self.current = self.items.pop(0)
        source, time = self.current
        x, y, w, h = self.rect
        try:
            data = source.pixelData(x, y, w, h) if time is None else source.pixelDataAtTime(x, y, w, h, time)
            raw, channels, dtype = pixels.to_worker(data, source.colorModel(), source.colorDepth())
            hints = hints_rgba8(self.hint_node, self.rect, time) if self.hint_node else None
            sequence = None
            if time is not None:   # frames of one animated layer: temporally consistent in the worker
                key = f"krita-{id(self)}-{source.uniqueId().toString()}"
                sequence = {"id": key, "reset": key not in self.sequences}
                self.sequences.add(key)
            # a Job submits again if the worker is restarted meanwhile
            self.job = Job(self.client, raw, w, h, channels, dtype, self.options, hints,
                           pixels.colorspace(source.colorProfile()), sequence)
        except Exception as e:  # worker or pixel errors end the run with a message, not a traceback
            return self.fail(e)
        self.timer.start(POLL_MS)

    def _poll(self):
        try:
            st = self.job.poll()
        except Exception as e:
            return self.fail(e)
        done_items = self.total - len(self.items) - 1
        self.progressed.emit((done_items + st.get("progress", 0.0)) / self.total, st.get("stage", ""))
        if st["state"] in ("queued", "running"):
            return
        self.timer.stop()
        if st["state"] != "done":
            return self.fail(JobFailed(st.get("error") or f"the job was {st['state']}"))
        try:
            out = self.job.result()
            self._write(out)
        except Exception as e:
            return self.fail(e)
        self.job = None
        QTimer.singleShot(0, self._next)

    def _write(self, out):
        source, time = self.current
        target = self._target(source)
        x, y, w, h = self.rect
        depth = target.colorDepth()
        data = pixels.from_worker(out, depth)
        if self.selection is not None and self.selection.width():
            data = pixels.mask_alpha(data, self.selection.pixelData(x, y, w, h), depth)
        if time is not None:
            self._ensure_keyframe(target, time)
        from .qt import QByteArray
        target.setPixelData(QByteArray(data), x, y, w, h)
        self.results.append((source.name(), target, time))

    def _ensure_keyframe(self, target, time):
        # Krita's Python API (5.x) cannot add a keyframe directly: make the target active at that
        # time and use the same action as the Timeline's "Create Blank Frame".
        self.doc.setCurrentTime(time)
        self._settle()
        if not target.animated():
            target.enableAnimation()
        if not target.hasKeyframeAtTime(time):
            self.doc.setActiveNode(target)
            self._settle()
            self.krita.action("add_blank_frame").trigger()
            self._settle()
        if not target.hasKeyframeAtTime(time):
            raise RunError(f"Krita did not create a keyframe at frame {time} on '{target.name()}'")

    def _settle(self, turns=5):
        """Time changes and frame actions complete asynchronously: let them."""
        for _ in range(turns):
            self.doc.waitForDone()
            QApplication.processEvents()

    def fail(self, error):
        """End the run with ``error`` told as a person reads it."""
        self._finish(False, explain(error, "krita", self.client))

    def _finish(self, ok, message):
        if self.done:
            return
        self.done = True
        self.timer.stop()
        if not ok:
            self._remove_results()
        if self.doc.currentTime() != self.start_time:
            self.doc.setCurrentTime(self.start_time)
            self._settle()   # the time switch completes asynchronously
        self.finished.emit(ok, message)

    def _remove_results(self):
        """A failed or cancelled run leaves the document as it was: no half-finished layers."""
        for target in self.targets.values():
            target.remove()
        self.targets.clear()
        self.results = []
        self.doc.refreshProjection()
