"""What the plug-ins tell an artist when a run does not work out: what happened, what to do, and
where the details are; never a traceback or an HTTP status.

Standard library only. `chromastyle install` copies this file into each plug-in bundle next to the
worker client (GIMP: chromastyle_messages.py, Krita: chromastyle/messages.py, Blender: messages.py).
"""
import re
from pathlib import Path

STATUS = re.compile(r"\s*\(\d{3}\)")           # "(400)": means nothing to an artist
TRACEBACK = re.compile(r"Traceback \(most recent call last\):\s*")
REFUSED = re.compile(r"^the chromastyle worker refused the request: (bad options: )?", re.I)


def readable(text):
    """The lines of ``text`` a person reads: no traceback frames, no HTTP status codes."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip() and not line[0].isspace()]
    return STATUS.sub("", TRACEBACK.sub("", " ".join(lines))).strip()


def worker_log(client):
    """The worker's log (it lives next to the worker's state file), or None."""
    state_file = getattr(client, "state_file", None)
    return Path(state_file).with_name("worker.log") if state_file else None


def explain(error, host, client=None):
    """A message box's text for ``error`` raised while running ``host``'s plug-in."""
    kind = type(error).__name__
    text = readable(error)
    log = worker_log(client)
    details = f" Details are in {log}." if log else ""
    if kind == "Cancelled":
        return "Cancelled; the image was not changed."
    style = re.search(r"unknown style '([^']*)'", text)
    if style:
        return (f"The style '{style[1]}' does not exist in the worker's model — choose one from the list "
                "(refresh it if the model was changed).")
    picture = _style_picture(text)
    if picture:
        return picture
    if "could not start" in text or "did not answer within" in text:
        return (f"{_sentence(text)} To fix it, run `chromastyle install {host}` from the Python environment "
                "that has chromastyle (it records that interpreter), or set CHROMASTYLE_PYTHON.")
    if "is not answering" in text:
        return "The chromastyle worker stopped answering. Run again to restart it." + details
    if REFUSED.match(text):
        return f"The worker cannot do this: {REFUSED.sub('', text)}. Change it and run again." + details
    if kind == "JobFailed":
        return f"The worker could not finish the image: {text}." + details
    return _sentence(text) + (details if kind == "WorkerError" else "")


def _style_picture(text):
    """What went wrong with a picture given as a style, if that is what ``text`` is about."""
    if "cannot take a picture as a style" in text:
        return ("The worker's model cannot use a picture as a style — choose a named style instead, or start the "
                "worker with a model that can (the default model can).")
    if re.search(r"style picture must be .* at least 16×16", text):
        return "The style picture is too small: it must be at least 16×16 pixels."
    if "unknown style picture" in text:
        return "The worker no longer has the style picture (it was restarted meanwhile). Run again to send it again."
    return None


def _sentence(text):
    text = text.strip() or "something went wrong"
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."
