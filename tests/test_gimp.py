"""The GIMP 3 plug-in in the real GIMP 3 (gimp-console-3.0, chrooted Debian trixie)."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from chromastyle import install
from chromastyle.color import rgb_to_lab
from conftest import photo
from hosts.gimp import HERE, gimp_root, run_gimp

pytestmark = pytest.mark.host
W, H = 256, 192
HINTS = [((60, 60), (220, 30, 30)), ((190, 130), (30, 60, 220))]


@pytest.fixture(scope="module")
def gimp(tmp_path_factory):
    root = gimp_root()
    work = tmp_path_factory.mktemp("gimp")
    install.install_gimp(work / "plug-ins")
    gray = (photo(size=(W, H)).mean(-1) * 255).astype(np.uint8)
    Image.fromarray(gray, "L").save(work / "gray.png")
    hints = np.zeros((H, W, 4), np.uint8)
    for (x, y), color in HINTS:
        hints[y - 3:y + 3, x - 3:x + 3] = (*color, 255)
    Image.fromarray(hints, "RGBA").save(work / "hints.png")
    return root, work


def start_worker(state_file):
    proc = subprocess.Popen([sys.executable, "-m", "chromastyle", "serve", "--state-file", str(state_file)],
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
    worker = start_worker(state)
    base = {"style": "natural", "strength": 1.0, "keep": "none", "tileable": False, "seed": -1,
            "output": "new-layer"}
    scenarios = [
        {"name": "hinted", "image": str(work / "gray.png"), "hints": str(work / "hints.png"), "args": base},
        {"name": "multi", "image": str(work / "gray.png"), "second_layer": True,
         "args": {**base, "style": "starry_night", "strength": 0.8}},
        {"name": "selection", "image": str(work / "gray.png"), "select": [40, 30, 100, 80],
         "args": {**base, "style": "great_wave", "output": "replace"}},
        {"name": "bad_style", "image": str(work / "gray.png"), "args": {**base, "style": "no_such_style"}},
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


def test_bad_style_is_a_clear_error(batch_result):
    sc = scenario(batch_result, "bad_style")
    assert sc["status"] == "execution-error"
    assert "unknown style" in sc["error"] and "Traceback" not in sc["error"]


def test_auto_starts_the_worker(gimp):
    root, work = gimp
    state = work / "auto" / "worker.json"
    scenarios = [{"name": "auto", "image": str(work / "gray.png"),
                  "args": {"style": "natural", "strength": 1.0, "keep": "luminance", "tileable": False,
                           "seed": 3, "output": "new-layer"}}]
    (work / "result.json").unlink(missing_ok=True)
    r, result = run_gimp(root, work, HERE / "gimp_batch.py", {"work": str(work), "scenarios": scenarios},
                         env={"CHROMASTYLE_STATE_FILE": str(state), "CHROMASTYLE_PYTHON": sys.executable})
    try:
        assert r.returncode == 0 and result, r.stderr[-3000:]
        sc = scenario(result, "auto")
        assert sc["status"] == "success", sc["error"]
        assert state.exists()
    finally:
        import json
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
