"""The Tools ▸ Scripts ▸ Colorize & Stylize… action and the run it starts."""
import sys
import threading
import traceback

from krita import Extension, Krita

from . import options as opts
from .client import Client, WorkerError
from .messages import explain
from .qt import QMessageBox, QObject, QProgressDialog, pyqtSignal, window_modal
from .runner import Runner, RunError

STARTING = "Starting the chromastyle worker (the first time takes a few seconds)…"
_client = None
_running = []   # keep runners alive until they finish


def client():
    global _client
    if _client is None:
        _client = Client()
    return _client


class _Connection(QObject):
    """Signals from the thread that reaches the worker, delivered on Krita's thread."""
    starting = pyqtSignal()
    finished = pyqtSignal(object, object)   # the model's styles or None, an error or None


_connection = None
_waiting = []   # (on_done, on_starting) of everyone waiting for the current connection


def with_worker(on_done, on_starting=None):
    """Reach the worker, starting it if none runs, on a thread (starting takes seconds and Krita
    must not freeze); then call on_done(styles, error) on Krita's thread. on_starting() is called
    when a worker is being started. Callers arriving meanwhile share the same attempt."""
    global _connection
    _waiting.append((on_done, on_starting))
    if _connection is not None:
        return
    _connection = _Connection()
    _connection.starting.connect(lambda: [s() for _, s in list(_waiting) if s])
    _connection.finished.connect(_connected)
    threading.Thread(target=_connect, args=(_connection, client()), daemon=True).start()


def _connect(connection, shared):
    """On a thread, with a Client of its own (the shared one belongs to Krita's thread): no Qt or
    Krita calls here, only signals."""
    try:
        c = Client(state_file=shared.state_file, python=shared.python, autostart=False)
        try:
            c.connect()
        except WorkerError:
            connection.starting.emit()
            c.autostart = True
            c.connect()
        connection.finished.emit(c.styles(), None)
    except Exception as e:  # handed to the callers, who show it
        connection.finished.emit(None, e)


def _connected(styles, error):
    global _connection
    _connection = None
    waiting = list(_waiting)
    _waiting.clear()
    for on_done, _ in waiting:
        on_done(styles, error)


def error(message, parent=None):
    QMessageBox.warning(parent, "Colorize & Stylize", message)


def guarded(action, parent=None):
    """Run a menu or button action; a bug becomes a plain message (the traceback goes to Krita's
    terminal output), not Krita's script-error box full of traceback lines."""
    try:
        action()
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        error(f"Colorize & Stylize failed unexpectedly ({type(e).__name__}: {e}). Please report this; "
              "the details are in Krita's terminal output.", parent)


def chosen_layers(doc, view):
    """The layers the artist selected, or the active one; when none is active (a document opened by
    a script can have none), the document's only paint layer, if it has just one."""
    nodes = [n for n in (view.selectedNodes() if view else []) if n is not None]
    nodes = nodes or [n for n in [doc.activeNode()] if n is not None]
    if not nodes:
        layers = [n for n in doc.topLevelNodes() if n.type() == "paintlayer"]
        nodes = layers if len(layers) == 1 else []
    return nodes


def run(doc=None, nodes=None, settings=None, parent=None, on_done=None, show_progress=True):
    """Process the selected layers of the active document with the docker's settings."""
    krita = Krita.instance()
    window = krita.activeWindow()
    view = window.activeView() if window else None
    doc = doc or (view.document() if view else krita.activeDocument())
    if doc is None:
        return error("Open an image first.", parent)
    nodes = nodes or chosen_layers(doc, view)
    settings = settings or opts.load(krita)
    try:
        runner = Runner(krita, doc, nodes, settings, client())
    except (RunError, opts.OptionError) as e:
        message = explain(e, "krita")
        if on_done:
            on_done(False, message, None)
        return error(message, parent) if show_progress else None
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

    def connected(styles, problem):
        if runner.done:   # cancelled while the worker was starting
            return
        try:
            if problem is None:
                client().connect()   # the worker answers now: a quick local call
        except WorkerError as e:
            problem = e
        if problem is not None:
            return runner.fail(problem)
        if dialog:
            dialog.setLabelText("Colorize & Stylize…")
        runner.start()

    def starting():
        if dialog:
            dialog.setLabelText(STARTING)
            dialog.show()
    runner.finished.connect(finished)
    _running.append(runner)
    with_worker(connected, starting)
    return runner


class ChromaStyleExtension(Extension):
    def __init__(self, parent):
        super().__init__(parent)

    def setup(self):
        pass

    def createActions(self, window):
        action = window.createAction("chromastyle_run", "Colorize && Stylize…", "tools/scripts")
        action.triggered.connect(lambda: guarded(run))
