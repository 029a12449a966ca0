"""Test harness inside the real Krita: runs scenarios through the chromastyle plug-in's own run(),
dumps pixels and keyframes, writes result.json and exits."""
import json
import os
import time
import traceback

from krita import Extension, Krita
from PyQt5.QtCore import QByteArray, QTimer
from PyQt5.QtGui import QImage
from PyQt5.QtWidgets import QApplication

PARAMS = json.load(open(os.environ["CHROMASTYLE_KRITA_PARAMS"]))
WORK = PARAMS["work"]
RESULT = {"scenarios": {}}


def dump(node, name, time=None):
    w, h = node.bounds().width() or PARAMS["width"], node.bounds().height() or PARAMS["height"]
    w, h = PARAMS["width"], PARAMS["height"]
    data = node.pixelData(0, 0, w, h) if time is None else node.pixelDataAtTime(0, 0, w, h, time)
    path = f"{WORK}/{name}.raw"
    with open(path, "wb") as f:
        f.write(bytes(data))
    return {"file": path, "model": node.colorModel(), "depth": node.colorDepth(), "name": node.name(),
            "width": w, "height": h}


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


def add_hint_layer(doc, png):
    hint = doc.createNode("hints", "paintlayer")
    doc.rootNode().addChildNode(hint, None)
    if hint.colorModel() != "RGBA":
        hint.setColorSpace("RGBA", "U8", "sRGB-elle-V2-srgbtrc.icc")
    hint.setPixelData(bgra_of(png), 0, 0, PARAMS["width"], PARAMS["height"])
    return hint


class Harness(Extension):
    def setup(self):
        Krita.instance().notifier().windowCreated.connect(lambda: QTimer.singleShot(500, self.start))

    def createActions(self, window):
        pass

    def start(self):
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
        """For the docs: the window with a photo and the Chromastyle docker, grabbed by Qt."""
        from PyQt5.QtWidgets import QDockWidget
        krita = Krita.instance()
        window = krita.activeWindow()
        doc = krita.openDocument(PARAMS["image"])
        window.addView(doc)
        qwin = window.qwindow()
        qwin.resize(1280, 800)
        dock = next(d for d in qwin.findChildren(QDockWidget) if d.objectName() == "chromastyle_docker")
        dock.show()
        dock.refresh()

        def grab():
            qwin.grab().save(PARAMS["screenshot"])
            with open(f"{WORK}/result.json", "w") as f:
                json.dump({"screenshot": PARAMS["screenshot"]}, f)
            os._exit(0)
        QTimer.singleShot(3000, grab)

    def next(self):
        if not self.queue:
            with open(f"{WORK}/result.json", "w") as f:
                json.dump(RESULT, f, indent=1)
            os._exit(0)
        sc = self.queue.pop(0)
        out = RESULT["scenarios"][sc["name"]] = {}
        try:
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
                    out.setdefault("trace", []).append([t, doc.currentTime(), base.animated(),
                                                        [k for k in range(12) if base.hasKeyframeAtTime(k)]])
                doc.setPlayBackRange(0, max(sc["times"]) + 2)
                out["source_keyframes"] = [t for t in range(0, max(sc["times"]) + 3) if base.hasKeyframeAtTime(t)]
            else:
                doc = krita.openDocument(sc["image"])
                window.addView(doc)
                base = doc.topLevelNodes()[0]
                if sc.get("depth"):
                    doc.setColorSpace("RGBA", sc["depth"], "")
                    doc.waitForDone()
                    base = doc.topLevelNodes()[0]
            nodes = [base]
            if sc.get("second_layer"):
                second = base.duplicate()
                second.setName("second")
                base.parentNode().addChildNode(second, base)
                nodes.append(second)
            if sc.get("hints"):
                add_hint_layer(doc, sc["hints"])
            if sc.get("select"):
                from krita import Selection
                sel = Selection()
                sel.select(*sc["select"], 255)
                doc.setSelection(sel)
            out["before"] = dump(base, f"{sc['name']}_before", sc["times"][0] if sc.get("animated") else None)

            def done(ok, message, runner):
                try:
                    out.update(ok=ok, message=message)
                    if runner is not None:
                        out["results"] = []
                        for i, (src, target, time) in enumerate(runner.results):
                            d = dump(target, f"{sc['name']}_result{i}", time)
                            d.update(source=src, time=time)
                            out["results"].append(d)
                        out["source_after"] = dump(base, f"{sc['name']}_source_after",
                                                   sc["times"][0] if sc.get("animated") else None)
                        if sc.get("animated") and runner.results:
                            target = runner.results[0][1]
                            out["result_keyframes"] = [t for t in range(0, max(sc["times"]) + 3)
                                                       if target.hasKeyframeAtTime(t)]
                    out["layer_names"] = [n.name() for n in doc.topLevelNodes()]
                except Exception:
                    out["exception"] = traceback.format_exc()
                QTimer.singleShot(0, self.next)
            self.ext.run(doc, nodes, sc["settings"], on_done=done, show_progress=sc.get("progress", False))
        except Exception:
            out["exception"] = traceback.format_exc()
            QTimer.singleShot(0, self.next)


Krita.instance().addExtension(Harness(Krita.instance()))
