"""The Tools ▸ Scripts ▸ Colorize & Stylize… action and the run it starts."""
from krita import Extension, Krita

from . import options as opts
from .client import Client, WorkerError
from .qt import QMessageBox, QProgressDialog, window_modal
from .runner import Runner, RunError

_client = None
_running = []   # keep runners alive until they finish


def client():
    global _client
    if _client is None:
        _client = Client()
    return _client


def error(message, parent=None):
    QMessageBox.warning(parent, "Colorize & Stylize", message)


def run(doc=None, nodes=None, settings=None, parent=None, on_done=None, show_progress=True):
    """Process the selected layers of the active document with the docker's settings."""
    krita = Krita.instance()
    window = krita.activeWindow()
    view = window.activeView() if window else None
    doc = doc or (view.document() if view else krita.activeDocument())
    if doc is None:
        return error("open an image first", parent)
    nodes = nodes or (view.selectedNodes() if view else []) or [doc.activeNode()]
    settings = settings or opts.load(krita)
    try:
        client().connect()
        runner = Runner(krita, doc, nodes, settings, client())
    except (RunError, opts.OptionError, WorkerError) as e:
        if on_done:
            on_done(False, str(e), None)
        return error(str(e), parent) if show_progress else None
    dialog = None
    if show_progress:
        dialog = QProgressDialog("Colorize & Stylize…", "Cancel", 0, 1000, parent)
        dialog.setWindowModality(window_modal())
        dialog.setMinimumDuration(300)
        dialog.canceled.connect(runner.cancel)
        runner.progressed.connect(lambda p, stage: dialog.setValue(int(p * 1000)))

    def finished(ok, message):
        if dialog:
            dialog.reset()
        _running.remove(runner)
        if not ok and message != "cancelled" and show_progress:
            error(message, parent)
        if on_done:
            on_done(ok, message, runner)
    runner.finished.connect(finished)
    _running.append(runner)
    runner.start()
    return runner


class ChromaStyleExtension(Extension):
    def __init__(self, parent):
        super().__init__(parent)

    def setup(self):
        pass

    def createActions(self, window):
        action = window.createAction("chromastyle_run", "Colorize && Stylize…", "tools/scripts")
        action.triggered.connect(lambda: run())
