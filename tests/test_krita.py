"""The Krita plug-in in the real Krita (Debian's, under Xvfb)."""
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from chromastyle.color import rgb_to_lab
from conftest import photo
from hosts.krita import ensure_krita, run_krita

pytestmark = pytest.mark.host
W, H = 192, 144
HINTS = [((50, 50), (220, 30, 30)), ((140, 100), (30, 60, 220))]


def pixels(d):
    dtype = {"U8": np.uint8, "U16": np.uint16, "F32": np.float32}[d["depth"]]
    channels = 4 if d["model"] == "RGBA" else 2
    arr = np.fromfile(d["file"], dtype).reshape(d["height"], d["width"], channels)
    if d["model"] == "RGBA" and d["depth"] != "F32":
        arr = arr[..., [2, 1, 0, 3]]  # BGRA -> RGBA
    scale = {"U8": 255.0, "U16": 65535.0, "F32": 1.0}[d["depth"]]
    return arr.astype(np.float64) / scale


def chroma(rgba):
    lab = rgb_to_lab(np.clip(rgba[..., :3], 0, 1))
    return np.hypot(lab[..., 1], lab[..., 2])


@pytest.fixture(scope="module")
def krita_result(tmp_path_factory):
    ensure_krita()
    work = tmp_path_factory.mktemp("krita")
    img = photo(size=(W, H))
    Image.fromarray((img.mean(-1) * 255).astype(np.uint8), "L").save(work / "gray.png")
    hints = np.zeros((H, W, 4), np.uint8)
    for (x, y), color in HINTS:
        hints[y - 3:y + 3, x - 3:x + 3] = (*color, 255)
    Image.fromarray(hints, "RGBA").save(work / "hints.png")
    frames = []
    for i in range(3):  # a slow pan: three different frames
        crop = photo(size=(W + 20, H))[:, i * 10:i * 10 + W]
        Image.fromarray((np.repeat(crop.mean(-1, keepdims=True), 3, -1) * 255).astype(np.uint8)).convert("RGBA").save(work / f"f{i}.png")
        frames.append(str(work / f"f{i}.png"))
    natural = {"style": "natural", "strength": 1.0, "keep": "none", "tileable": False, "seed": -1}
    scenarios = [
        {"name": "hinted", "image": str(work / "gray.png"), "hints": str(work / "hints.png"),
         "settings": {**natural, "hint_layer": "hints"}},
        {"name": "multi", "image": str(work / "gray.png"), "second_layer": True,
         "settings": {**natural, "style": "starry_night", "strength": 0.8}},
        {"name": "deep", "image": str(work / "gray.png"), "depth": "U16", "settings": natural},
        {"name": "selection", "image": str(work / "gray.png"), "select": [40, 30, 80, 60],
         "settings": {**natural, "style": "the_scream"}},
        {"name": "animated", "animated": True, "times": [0, 4, 8], "frames": frames,
         "settings": {**natural, "style": "great_wave", "strength": 0.7}},
    ]
    state = work / "state" / "worker.json"
    worker = subprocess.Popen([sys.executable, "-m", "chromastyle", "serve", "--state-file", str(state)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            if state.exists():
                break
            time.sleep(0.05)
        r, result = run_krita(work, {"width": W, "height": H, "scenarios": scenarios},
                              env={"CHROMASTYLE_STATE_FILE": str(state)})
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(10)
    assert result, f"Krita produced no result ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return result


def scenario(result, name):
    sc = result["scenarios"][name]
    assert "exception" not in sc, sc["exception"]
    assert sc["ok"], sc["message"]
    return sc


def test_hinted_gray_document(krita_result):
    sc = scenario(krita_result, "hinted")
    assert sc["before"]["model"] == "GRAYA"
    assert np.array_equal(pixels(sc["source_after"]), pixels(sc["before"])), "the source layer changed"
    (res,) = sc["results"]
    assert res["model"] == "RGBA" and "(natural" in res["name"]
    assert res["name"] in sc["layer_names"]
    out = pixels(res)
    assert chroma(out).mean() > 4
    lab = rgb_to_lab(out[..., :3])
    for (x, y), color in HINTS:
        want = rgb_to_lab(np.array(color, float) / 255)[1:]
        got = lab[y - 3:y + 3, x - 3:x + 3, 1:].reshape(-1, 2).mean(0)
        assert np.dot(got, want) / (np.linalg.norm(got) * np.linalg.norm(want) + 1e-9) > 0.7, (color, got)


def test_several_layers(krita_result):
    sc = scenario(krita_result, "multi")
    assert [r["source"] for r in sc["results"]] == ["gray", "second"] or len(sc["results"]) == 2
    for r in sc["results"]:
        assert np.abs(pixels(r)[..., :3] - np.repeat(pixels(sc["before"])[..., :1], 3, -1)).mean() > 0.01


def test_16_bit_document(krita_result):
    sc = scenario(krita_result, "deep")
    (res,) = sc["results"]
    assert res["depth"] == "U16" and res["model"] == "RGBA"
    assert chroma(pixels(res)).mean() > 2


def test_only_the_selection_is_filled(krita_result):
    sc = scenario(krita_result, "selection")
    (res,) = sc["results"]
    alpha = pixels(res)[..., 3]
    inside = np.zeros(alpha.shape, bool)
    inside[30:90, 40:120] = True
    assert alpha[inside].min() > 0.99 and alpha[~inside].max() == 0


def test_animated_layer_gives_an_animated_result(krita_result):
    sc = scenario(krita_result, "animated")
    assert sc["source_keyframes"] == [0, 4, 8]
    assert sc["result_keyframes"] == [0, 4, 8]
    outs = [pixels(r) for r in sc["results"]]
    assert [r["time"] for r in sc["results"]] == [0, 4, 8]
    assert all(chroma(o).mean() > 2 for o in outs)
    assert np.abs(outs[0] - outs[2]).mean() > 0.005   # each keyframe is its own frame
