"""Test harness inside the real Krita: runs scenarios through the chromastyle plug-in as an artist
does (its menu action, its docker) or through its run(), dumps pixels, keyframes and exported files,
writes result.json and exits.

Scenario kinds: "docker" stops the worker and opens a new window (Window ▸ New Window), whose
Chromastyle docker opens with it, and records what that docker's status line says; "action" stops
the worker and triggers Tools ▸ Scripts ▸ Colorize & Stylize…, reading any message box; anything
else calls the plug-in's run() with the scenario's settings."""
import json
import os
import signal
import time
import traceback
from pathlib import Path

from krita import Extension, InfoObject, Krita
from PyQt5.QtCore import QByteArray, QTimer
from PyQt5.QtGui import QImage
from PyQt5.QtWidgets import QApplication, QDialog, QDockWidget, QMessageBox, QTextEdit

PARAMS = json.load(open(os.environ["CHROMASTYLE_KRITA_PARAMS"]))
WORK = PARAMS["work"]
RESULT = {"scenarios": {}, "krita_version": Krita.instance().version()}
STATE_FILE = Path(os.environ["XDG_RUNTIME_DIR"]) / "chromastyle" / "worker.json"


def dump(node, name, time=None):
    w, h = PARAMS["width"], PARAMS["height"]
    data = node.pixelData(0, 0, w, h) if time is None else node.pixelDataAtTime(0, 0, w, h, time)
    path = f"{WORK}/{name}.raw"
    with open(path, "wb") as f:
        f.write(bytes(data))
    return {"file": path, "model": node.colorModel(), "depth": node.colorDepth(), "name": node.name(),
            "width": w, "height": h}


def document_state(doc, name):
    """What the artist has: the layers, the document's colour space, and the image File ▸ Export writes."""
    doc.setBatchmode(True)   # no export options dialog
    export = f"{WORK}/{name}_export.png"
    exported = doc.exportImage(export, InfoObject())
    return {"layer_names": [n.name() for n in doc.topLevelNodes()], "doc_model": doc.colorModel(),
            "doc_depth": doc.colorDepth(), "doc_profile": doc.colorProfile(), "export": export if exported else None}


def bgra_of(png):
    img = QImage(png).convertToFormat(QImage.Format_ARGB32)
    ptr = img.constBits()
    ptr.setsize(img.byteCount())
    return QByteArray(bytes(ptr))


def settle(doc):
    """Let Krita finish what the last call started (time changes, frame actions are async)."""
    for _ in range(10):
        doc.waitForDone()
        QApplication.processEvents()
        time.sleep(0.02)


def add_layer(doc, name, png=None):
    """An RGB paint layer holding ``png`` at its own size from the top left, or an empty one."""
    layer = doc.createNode(name, "paintlayer")
    doc.rootNode().addChildNode(layer, None)
    if layer.colorModel() != "RGBA":
        layer.setColorSpace("RGBA", "U8", "sRGB-elle-V2-srgbtrc.icc")
    if png:
        size = QImage(png).size()
        layer.setPixelData(bgra_of(png), 0, 0, size.width(), size.height())
    return layer


def message_box():
    """The visible message box, or Krita's "Script error" dialog for an uncaught exception: its text."""
    for w in QApplication.topLevelWidgets():
        if isinstance(w, QMessageBox) and w.isVisible():
            text = w.text()
        elif isinstance(w, QDialog) and w.isVisible() and w.windowTitle() == "Script error":
            text = "\n".join(t.toPlainText() for t in w.findChildren(QTextEdit))
        else:
            continue
        w.done(0)
        return text
    return None


class Harness(Extension):
    def setup(self):
        Krita.instance().notifier().windowCreated.connect(lambda: QTimer.singleShot(500, self.start))

    def createActions(self, window):
        pass

    def dock(self, window=None):
        qwin = (window or Krita.instance().activeWindow()).qwindow()
        return next(d for d in qwin.findChildren(QDockWidget) if d.objectName() == "chromastyle_docker")

    def start(self):
        if hasattr(self, "ext"):   # a window opened by a scenario
            return
        import chromastyle.extension as ext
        self.ext = ext
        if PARAMS.get("screenshot"):
            try:
                return self.screenshot()
            except Exception:
                with open(f"{WORK}/result.json", "w") as f:
                    json.dump({"exception": traceback.format_exc()}, f)
                os._exit(1)
        self.queue = list(PARAMS["scenarios"])
        self.next()

    def screenshot(self):
        """For the docs: the window with a photo colorized by the plug-in, and its docker, grabbed by Qt."""
        krita = Krita.instance()
        window = krita.activeWindow()
        doc = krita.openDocument(PARAMS["image"])
        window.addView(doc)
        qwin = window.qwindow()
        qwin.resize(1280, 800)
        dock = self.dock()
        dock.show()

        def grab(*_):
            doc.refreshProjection()
            QTimer.singleShot(1500, lambda: (qwin.grab().save(PARAMS["screenshot"]), finish()))

        def finish():
            with open(f"{WORK}/result.json", "w") as f:
                json.dump({"screenshot": PARAMS["screenshot"], "doc_model": doc.colorModel()}, f)
            os._exit(0)
        self.ext.run(doc, [doc.topLevelNodes()[0]], PARAMS.get("settings"), on_done=grab, show_progress=False)

    def next(self):
        if not self.queue:
            with open(f"{WORK}/result.json", "w") as f:
                json.dump(RESULT, f, indent=1)
            os._exit(0)
        sc = self.queue.pop(0)
        out = RESULT["scenarios"][sc["name"]] = {}
        try:
            if sc.get("kind") == "docker":
                return self.stop_worker(out, lambda: self.docker(out))
            self.scenario(sc, out)
        except Exception:
            out["exception"] = traceback.format_exc()
            QTimer.singleShot(0, self.next)

    def open(self, sc, out):
        krita = Krita.instance()
        window = krita.activeWindow()
        if sc.get("animated"):
            doc = krita.createDocument(PARAMS["width"], PARAMS["height"], sc["name"], "RGBA", "U8", "", 72.0)
            window.addView(doc)
            base = doc.topLevelNodes()[0]
            doc.setActiveNode(base)
            for t, png in zip(sc["times"], sc["frames"]):
                doc.setCurrentTime(t)
                settle(doc)
                if t != sc["times"][0] or not base.animated():
                    krita.action("add_blank_frame").trigger()
                settle(doc)
                base.setPixelData(bgra_of(png), 0, 0, PARAMS["width"], PARAMS["height"])
            doc.setPlayBackRange(0, max(sc["times"]) + 2)
            doc.setCurrentTime(0)
            settle(doc)
            out["source_keyframes"] = [t for t in range(0, max(sc["times"]) + 3) if base.hasKeyframeAtTime(t)]
        else:
            doc = krita.openDocument(sc["image"])
            window.addView(doc)
            if sc.get("depth"):   # a gray document of another depth
                doc.setColorSpace("GRAYA", sc["depth"], "")
                doc.waitForDone()
            base = doc.topLevelNodes()[0]
        doc.setActiveNode(base)
        settle(doc)
        return doc, base

    def scenario(self, sc, out):
        doc, base = self.open(sc, out)
        nodes = [base]
        if sc.get("second_layer"):
            second = base.duplicate()
            second.setName("second")
            base.parentNode().addChildNode(second, base)
            nodes.append(second)
        if sc.get("hints"):
            add_layer(doc, "hints", sc["hints"])
        if "style_layer" in sc:   # a layer to use as the style reference ("png": null: an empty one)
            add_layer(doc, sc["style_layer"]["name"], sc["style_layer"]["png"])
        if sc.get("select"):
            from krita import Selection
            sel = Selection()
            sel.select(*sc["select"], 255)
            doc.setSelection(sel)
        frame = sc["times"][0] if sc.get("animated") else None
        out["before"] = dump(base, f"{sc['name']}_before", frame)
        out["layers_before"] = [n.name() for n in doc.topLevelNodes()]
        out["doc_model_before"], out["doc_depth_before"] = doc.colorModel(), doc.colorDepth()
        out["time_before"] = doc.currentTime()

        def done(ok, message, runner):
            try:
                out.update(ok=ok, message=message)
                out["results"] = []
                # the run's results; after the menu action, which hands back no runner: the new layers
                results = runner.results if runner else [
                    (None, n, None) for n in doc.topLevelNodes() if n.name() not in out["layers_before"]]
                for i, (src, target, t) in enumerate(results):
                    d = dump(target, f"{sc['name']}_result{i}", t)
                    d.update(source=src, time=t)
                    out["results"].append(d)
                out["source_after"] = dump(base, f"{sc['name']}_source_after", frame)
                out["time_after"] = doc.currentTime()
                out["style_images"] = runner.options.get("style_images") if runner else None
                if sc.get("kill_worker"):
                    out["worker_pid_after"] = json.loads(STATE_FILE.read_text())["pid"]
                if sc.get("animated") and runner and runner.results:
                    target = runner.results[0][1]
                    out["result_keyframes"] = [t for t in range(0, max(sc["times"]) + 3) if target.hasKeyframeAtTime(t)]
                out.update(document_state(doc, sc["name"]) if not sc.get("animated") else
                           {"layer_names": [n.name() for n in doc.topLevelNodes()], "doc_model": doc.colorModel()})
                if sc.get("undo"):   # Edit ▸ Undo, once
                    Krita.instance().action("edit_undo").trigger()
                    settle(doc)
                    out["after_undo"] = {"doc_model": doc.colorModel(), "doc_depth": doc.colorDepth(),
                                         "layer_names": [n.name() for n in doc.topLevelNodes()]}
            except Exception:
                out["exception"] = traceback.format_exc()
            QTimer.singleShot(0, self.next)

        if sc.get("kind") == "action":
            return self.stop_worker(out, lambda: self.trigger_action(sc, out, done))
        # the style pictures the run sends to the worker (each picture once per run)
        c = self.ext.client()
        sent = out["style_pictures_sent"] = []
        c.style_image = lambda *a, **kw: sent.append(type(c).style_image(c, *a, **kw)) or sent[-1]
        runner = self.ext.run(doc, nodes, sc["settings"], on_done=lambda ok, m, r: done(ok, m, r),
                              show_progress=False)
        if sc.get("cancel_after") and runner is not None:
            self.cancel_when(runner, sc["cancel_after"], out)
        if sc.get("kill_worker") and runner is not None:
            self.kill_worker_when_submitted(runner, out)

    def cancel_when(self, runner, results, out):
        """Press Cancel once ``results`` results are in (what the progress dialog's button does)."""
        def check():
            if runner.done:
                return
            if len(runner.results) >= results:
                out["cancelled_after"] = len(runner.results)
                return runner.cancel()
            QTimer.singleShot(20, check)
        check()

    def kill_worker_when_submitted(self, runner, out):
        """Kill the worker (SIGKILL, as a crash) as soon as the run's first job is in it."""
        def check():
            if runner.done:
                return
            if runner.job is None:
                return QTimer.singleShot(10, check)
            out["killed_pid"] = json.loads(STATE_FILE.read_text())["pid"]
            os.kill(out["killed_pid"], signal.SIGKILL)
        check()

    def trigger_action(self, sc, out, done):
        """Tools ▸ Scripts ▸ Colorize & Stylize… with the settings the docker saved, as an artist
        runs it; a message box it shows is read and closed."""
        from chromastyle import options
        krita = Krita.instance()
        options.save(krita, sc["settings"])
        started = time.time()
        seen = {"runner": False}

        def watch():
            text = message_box()
            if text is not None:
                out["message_box"] = text
                return done(False, text, None)
            if self.ext._running:
                seen["runner"] = True
                return QTimer.singleShot(100, watch)
            if seen["runner"]:
                return done(True, "", None)
            if time.time() - started > 180:
                return done(False, "timed out", None)
            QTimer.singleShot(100, watch)
        QTimer.singleShot(100, watch)
        krita.action("chromastyle_run").trigger()

    def stop_worker(self, out, then):
        """No worker running: wait for the plug-in's own connection attempts, stop the worker."""
        if self.ext._connection is not None:
            return QTimer.singleShot(100, lambda: self.stop_worker(out, then))
        try:
            self.ext.client().stop()
        except Exception as e:  # none was running
            out["stop"] = str(e)
        deadline = time.time() + 20
        while STATE_FILE.exists() and time.time() < deadline:
            time.sleep(0.1)
        out["worker_running_before"] = STATE_FILE.exists()
        then()

    def docker(self, out):
        """A new window, and with it a new docker, with no worker running: record the docker's
        status line until its style list is filled."""
        window = Krita.instance().openWindow()
        window.qwindow().show()
        dock = self.dock(window)
        out["shown_with_the_window"] = dock.isVisible()
        if not dock.isVisible():   # Settings ▸ Dockers ▸ Chromastyle
            dock.toggleViewAction().trigger()
        texts, started = [], time.time()

        def watch():
            text = dock.status.text()
            if not texts or texts[-1] != text:
                texts.append(text)
            if dock.style.count() > 1 or time.time() - started > 60:
                out.update(status_texts=texts, styles=[dock.style.itemData(i) for i in range(dock.style.count())],
                           ok=True, message="")
                return QTimer.singleShot(0, self.next)
            QTimer.singleShot(50, watch)
        watch()


Krita.instance().addExtension(Harness(Krita.instance()))
