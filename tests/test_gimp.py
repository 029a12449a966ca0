"""The GIMP 3 plug-in in the real GIMP 3 (gimp-console-3.0, chrooted Debian trixie), installed with
`chromastyle install gimp` as an artist does."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chromastyle.color import rgb_to_lab
from conftest import ROOT, photo
from hosts.gimp import HERE, gimp_root, run_gimp

pytestmark = pytest.mark.host
STARRY = ROOT / "tests" / "data" / "starry_night.jpg"   # a painting the model was trained on, as a file
W, H = 256, 192
MAX_PIXELS = 120_000   # the batch worker's limit: a 256×192 layer and a 384×304 painting pass, 400×320 is refused
HINTS = [((60, 60), (220, 30, 30)), ((190, 130), (30, 60, 220))]


@pytest.fixture(scope="module")
def gimp(tmp_path_factory):
    root = gimp_root()
    work = tmp_path_factory.mktemp("gimp")
    # GIMP runs with XDG_CONFIG_HOME=work/xdg (hosts/gimp.py): the interpreter is recorded there
    env = {**os.environ, "XDG_CONFIG_HOME": str(work / "xdg")}
    env.pop("CHROMASTYLE_CONFIG_DIR", None)
    subprocess.run([sys.executable, "-m", "chromastyle", "install", "gimp", "--dest", str(work / "plug-ins")],
                   env=env, check=True, capture_output=True)
    gray = (photo(size=(W, H)).mean(-1) * 255).astype(np.uint8)
    Image.fromarray(gray, "L").save(work / "gray.png")
    hints = np.zeros((H, W, 4), np.uint8)
    for (x, y), color in HINTS:
        hints[y - 3:y + 3, x - 3:x + 3] = (*color, 255)
    Image.fromarray(hints, "RGBA").save(work / "hints.png")
    (work / "not_a_picture.png").write_text("not a picture")
    return root, work


def start_worker(state_file, *args):
    proc = subprocess.Popen([sys.executable, "-m", "chromastyle", "serve", "--state-file", str(state_file), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        if state_file.exists():
            return proc
        time.sleep(0.05)
    raise RuntimeError("worker did not start")


def pixels(layer):
    return np.fromfile(layer["file"], np.uint8).reshape(layer["height"], layer["width"], 4)


def scenario(result, name):
    sc = result["scenarios"][name]
    assert "exception" not in sc, sc["exception"]
    return sc


def chroma(rgba):
    lab = rgb_to_lab(rgba[..., :3].astype(np.float64) / 255)
    return np.hypot(lab[..., 1], lab[..., 2])


@pytest.fixture(scope="module")
def batch_result(gimp):
    root, work = gimp
    state = work / "state" / "worker.json"
    worker = start_worker(state, "--max-pixels", str(MAX_PIXELS))
    base = {"style": "natural", "strength": 1.0, "keep": "none", "tileable": False, "seed": -1,
            "output": "new-layer"}
    scenarios = [
        {"name": "hinted", "image": str(work / "gray.png"), "hints": str(work / "hints.png"), "args": base},
        {"name": "multi", "image": str(work / "gray.png"), "second_layer": True,
         "args": {**base, "style": "starry_night", "strength": 0.8}},
        {"name": "selection", "image": str(work / "gray.png"), "select": [40, 30, 100, 80],
         "args": {**base, "style": "great_wave", "output": "replace"}},
        {"name": "bad_style", "image": str(work / "gray.png"), "args": {**base, "style": "no_such_style"}},
        {"name": "refused_midway", "image": str(work / "gray.png"), "second_layer": True, "second_size": [400, 320],
         "args": {**base, "style": "the_scream"}},
        # any picture as the style: from a file, from a layer of another open image, against named styles
        {"name": "picture_file", "image": str(work / "gray.png"), "style_file": str(STARRY), "args": base},
        {"name": "picture_layer", "image": str(work / "gray.png"), "style_image": str(STARRY),
         "args": base},
        {"name": "plain", "image": str(work / "gray.png"), "args": base},
        {"name": "named_starry", "image": str(work / "gray.png"), "args": {**base, "style": "starry_night"}},
        {"name": "named_wave", "image": str(work / "gray.png"), "args": {**base, "style": "great_wave"}},
        {"name": "picture_missing", "image": str(work / "gray.png"), "style_file": str(work / "missing.png"),
         "args": base},
        {"name": "picture_unreadable", "image": str(work / "gray.png"), "style_file": str(work / "not_a_picture.png"),
         "args": base},
    ]
    try:
        r, result = run_gimp(root, work, HERE / "gimp_batch.py", {"work": str(work), "scenarios": scenarios},
                             env={"CHROMASTYLE_STATE_FILE": str(state)})
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(10)
    assert r.returncode == 0 and result, f"GIMP failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return result


def test_hinted_colorization_in_a_new_layer(batch_result):
    sc = scenario(batch_result, "hinted")
    assert sc["status"] == "success", sc["error"]
    assert np.array_equal(pixels(sc["source_after"]), pixels(sc["before"])), "the original layer changed"
    result = [layer for layer in sc["layers"] if "(natural" in layer["name"]]
    assert len(result) == 1
    out = pixels(result[0])
    assert chroma(out).mean() > 4, "the result is not colourful"
    lab = rgb_to_lab(out[..., :3].astype(np.float64) / 255)
    for (x, y), color in HINTS:
        want = rgb_to_lab(np.array(color, float) / 255)[1:]
        got = lab[y - 3:y + 3, x - 3:x + 3, 1:].reshape(-1, 2).mean(0)
        assert np.dot(got, want) / (np.linalg.norm(got) * np.linalg.norm(want) + 1e-9) > 0.7, (color, got, want)
        assert np.linalg.norm(got) > 0.3 * np.linalg.norm(want)


def test_several_layers_in_one_run(batch_result):
    sc = scenario(batch_result, "multi")
    assert sc["status"] == "success", sc["error"]
    assert sc["base_type"] == "gray" and sc["base_type_after"] == "rgb"   # converted in the run
    new = [layer for layer in sc["layers"] if "starry_night" in layer["name"]]
    assert len(new) == 2
    for layer in new:
        assert np.abs(pixels(layer).astype(int) - pixels(sc["before"]).astype(int)).mean() > 3


def test_only_the_selection_changes(batch_result):
    sc = scenario(batch_result, "selection")
    assert sc["status"] == "success", sc["error"]
    before, after = pixels(sc["before"]).astype(int), pixels(sc["source_after"]).astype(int)
    inside = np.zeros(before.shape[:2], bool)
    inside[30:110, 40:140] = True
    diff = np.abs(after - before).sum(-1)
    assert diff[~inside].max() == 0, "pixels outside the selection changed"
    assert diff[inside].mean() > 5


def readable(message):
    assert "Traceback" not in message and 'File "' not in message, message
    assert not any(f"({code})" in message for code in (400, 404, 409, 413, 500)), message


def unchanged(sc):
    """The image as it was before the run: same layers, still gray, the same pixels."""
    assert [layer["name"] for layer in sc["layers"]] == sc["layers_before"], "the run left layers behind"
    assert sc["base_type_after"] == "gray"
    assert np.array_equal(pixels(sc["source_after"]), pixels(sc["before"]))


def test_bad_style_changes_nothing_and_says_what_to_do(batch_result):
    sc = scenario(batch_result, "bad_style")
    assert sc["status"] == "execution-error"
    readable(sc["error"])
    assert "'no_such_style' does not exist" in sc["error"] and "choose one from the list" in sc["error"]
    unchanged(sc)


def test_worker_error_midway_changes_nothing(batch_result):
    """Two layers: the worker colorizes the first and refuses the second (too many pixels). The
    image keeps neither result: it is exactly as it was, gray."""
    sc = scenario(batch_result, "refused_midway")
    assert sc["status"] == "execution-error"
    readable(sc["error"])
    assert "accepts at most" in sc["error"] and "worker.log" in sc["error"]
    unchanged(sc)


def new_layer(sc, label):
    assert sc["status"] == "success", sc["error"]
    (layer,) = [layer for layer in sc["layers"] if label in layer["name"]]
    return pixels(layer)[..., :3].astype(float)


def test_a_picture_as_the_style(batch_result):
    """A painting given as a picture (a file, or a layer of another open image) styles the photo:
    clearly unlike the same run without it, the same from both sources, and close to the painting's
    named style (one the model was trained on) compared with another named style."""
    from_file = new_layer(scenario(batch_result, "picture_file"), "(natural + style picture)")
    from_layer = new_layer(scenario(batch_result, "picture_layer"), "(natural + style picture)")
    plain = new_layer(scenario(batch_result, "plain"), "(natural)")
    starry = new_layer(scenario(batch_result, "named_starry"), "(starry_night")
    wave = new_layer(scenario(batch_result, "named_wave"), "(great_wave")
    assert np.abs(from_file - from_layer).mean() < 0.5   # the same picture, whatever its source
    assert np.abs(from_file - plain).mean() > 10
    assert np.abs(from_file - starry).mean() < 0.4 * np.abs(wave - starry).mean()


@pytest.mark.parametrize("name, status, words", [
    # GIMP itself refuses a file argument that names no file, before the plug-in runs
    ("picture_missing", "calling-error", ["'style-picture-file'", "out of range"]),
    ("picture_unreadable", "execution-error", ["not_a_picture.png", "could not open", "choose an image file"])])
def test_a_bad_style_picture_changes_nothing_and_says_why(batch_result, name, status, words):
    sc = scenario(batch_result, name)
    assert sc["status"] == status
    readable(sc["error"])
    assert all(w in sc["error"] for w in words), sc["error"]
    unchanged(sc)


def descendants(pid):
    """Processes started (directly or not) by ``pid``: {pid: command line}."""
    children = {}
    # listed, then read one by one: a process that ends meanwhile is skipped (Path.glob would stat
    # its folder and raise from inside the iteration)
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = (Path("/proc") / name / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(name))
        except (OSError, ValueError, IndexError):
            pass
    found, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            try:
                found[child] = (Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            todo.append(child)
    return found


def test_cancel_leaves_the_image_as_it_was(gimp):
    """GIMP ends a plug-in whose progress is cancelled with SIGTERM: mid-run, the image must stay
    exactly as it was (the run cancels its worker job and had not touched the image)."""
    root, work = gimp
    # large enough that the run is still going when it is cancelled, 0.5 s in: the pipeline does 4 MP
    # in about 0.5 s now, and a 4.3 MP run had ended before a cancel 1.5 s in
    big = (photo(size=(4000, 3000)).mean(-1) * 255).astype(np.uint8)
    Image.fromarray(big, "L").save(work / "big.png")
    state = work / "cancel-state" / "worker.json"
    worker = start_worker(state)
    marker = work / "cancel-started"
    marker.unlink(missing_ok=True)
    sent = {}

    def cancel():   # once the plug-in has been running a moment: what GIMP's Cancel does
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not sent:
            plug_ins = [p for p, cmd in descendants(os.getpid()).items() if "chromastyle/chromastyle.py" in cmd]
            if marker.exists() and plug_ins:
                time.sleep(0.5)
                try:
                    os.kill(plug_ins[0], signal.SIGTERM)
                    sent["pid"] = plug_ins[0]
                except ProcessLookupError:
                    sent["ended"] = plug_ins[0]
            time.sleep(0.05)
    canceller = threading.Thread(target=cancel)
    canceller.start()
    scenarios = [{"name": "cancel", "image": str(work / "big.png"), "marker": marker.name,
                  "args": {"style": "the_scream", "output": "new-layer"}}]
    try:
        r, result = run_gimp(root, work, HERE / "gimp_batch.py", {"work": str(work), "scenarios": scenarios},
                             env={"CHROMASTYLE_STATE_FILE": str(state)})
    finally:
        canceller.join()
        worker.send_signal(signal.SIGTERM)
        worker.wait(10)
    assert sent, "the plug-in was never seen running"
    assert "pid" in sent, "the plug-in had ended before it could be cancelled: make the picture larger"
    assert r.returncode == 0 and result, r.stderr[-3000:]
    sc = scenario(result, "cancel")
    assert sc["status"] != "success"
    unchanged(sc)


def test_auto_starts_the_worker(gimp):
    """No worker running and nothing set but what `chromastyle install gimp` recorded: the plug-in
    starts the worker with that interpreter (its state file goes to GIMP's user config dir)."""
    root, work = gimp
    state = work / "xdg" / "chromastyle" / "worker.json"
    assert not state.exists()
    scenarios = [{"name": "auto", "image": str(work / "gray.png"),
                  "args": {"style": "starry_night", "strength": 0.7, "keep": "none", "tileable": False,
                           "seed": 3, "stroke-scale": 2.0, "output": "new-layer"}}]
    (work / "result.json").unlink(missing_ok=True)
    r, result = run_gimp(root, work, HERE / "gimp_batch.py", {"work": str(work), "scenarios": scenarios})
    try:
        assert r.returncode == 0 and result, r.stderr[-3000:]
        sc = scenario(result, "auto")
        assert sc["status"] == "success", sc["error"]
        assert state.exists()
        assert sc["base_type_after"] == "rgb" and any("starry_night" in layer["name"] for layer in sc["layers"])
    finally:
        if state.exists():
            os.kill(json.loads(state.read_text())["pid"], signal.SIGTERM)


def test_undo_restores_the_image(gimp):
    """In the GUI GIMP under Xvfb: run in replace mode on a gray image, press Ctrl+Z once in the
    real window, and the image is gray and unchanged again (the conversion and the filter are one
    undo group)."""
    from hosts.gimp import run_gimp_gui

    root, work = gimp
    state = work / "undo-state" / "worker.json"
    worker = start_worker(state)
    try:
        result = run_gimp_gui(root, work, HERE / "gimp_undo.py", {"work": str(work), "image": str(work / "gray.png")},
                              env={"CHROMASTYLE_STATE_FILE": str(state)})
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(10)
    assert result["status"] == "success"
    w, h = result["size"]
    load = lambda name: np.fromfile(work / f"{name}.rgba", np.uint8).reshape(h, w, 4)  # noqa: E731
    before, after_run, after_undo = load("undo_before"), load("undo_after_run"), load("undo_after_undo")
    assert result["base_type_before"] == "gray" and result["base_type_after_run"] == "rgb"
    assert np.abs(after_run.astype(int) - before).mean() > 3
    assert result["base_type_after_undo"] == "gray"
    assert np.array_equal(after_undo, before)
