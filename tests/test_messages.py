"""The texts the plug-ins show when a run does not work out (plugins/common/messages.py), for the
errors the real client raises against a real worker."""
import importlib.util
import sys

import pytest

from chromastyle.client import Client, WorkerError
from conftest import ROOT

spec = importlib.util.spec_from_file_location("plugin_messages", ROOT / "plugins" / "common" / "messages.py")
messages = importlib.util.module_from_spec(spec)
spec.loader.exec_module(messages)


def readable(text):
    assert "Traceback" not in text and 'File "' not in text, text
    assert not any(f"({code})" in text for code in (400, 404, 409, 413, 500)), text


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    client = Client(tmp_path_factory.mktemp("w") / "worker.json", python=sys.executable, worker_args=["--max-pixels", "5000"])
    client.connect()
    yield client
    client.stop()


def test_unknown_style_says_what_to_do(worker):
    with pytest.raises(WorkerError) as e:
        worker.submit(bytes(3 * 20 * 10), 20, 10, options={"styles": "no_such_style"})
    text = messages.explain(e.value, "gimp", worker)
    readable(text)
    assert text.startswith("The style 'no_such_style' does not exist") and "choose one from the list" in text


def test_refused_jobs_say_why_without_status_codes(worker):
    with pytest.raises(WorkerError) as e:
        worker.submit(bytes(3 * 100 * 100), 100, 100)
    text = messages.explain(e.value, "krita", worker)
    readable(text)
    assert "accepts at most" in text and str(worker.state_file.with_name("worker.log")) in text
    with pytest.raises(WorkerError) as e:
        worker.submit(bytes(3 * 20 * 10), 20, 10, options={"stroke_scale": 9})
    text = messages.explain(e.value, "blender", worker)
    readable(text)
    assert "stroke_scale must be a number from 0.25 to 4" in text and "bad options" not in text


def test_a_worker_that_cannot_start_gets_a_remedy(tmp_path):
    client = Client(tmp_path / "w.json", python=sys.executable, worker_args=["--model", "missing-model"])
    with pytest.raises(WorkerError) as e:
        client.connect()
    text = messages.explain(e.value, "krita", client)
    readable(text)
    assert "could not start" in text and "chromastyle install krita" in text and "worker-start.log" in text
    assert "\n" not in text


def test_traceback_lines_never_reach_a_message_box():
    error = WorkerError("the chromastyle worker could not start: Traceback (most recent call last):\n"
                        '  File "x.py", line 1, in <module>\nModuleNotFoundError: No module named \'PyQt5\'')
    text = messages.explain(error, "krita")
    readable(text)
    assert "No module named 'PyQt5'" in text


def test_cancel_and_plain_errors():
    class Cancelled(Exception):
        pass
    assert messages.explain(Cancelled("cancelled"), "gimp") == "Cancelled; the image was not changed."
    assert messages.explain(ValueError("open an image in the Image Editor first"), "blender") == \
        "Open an image in the Image Editor first."
