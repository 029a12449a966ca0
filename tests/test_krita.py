"""The Krita plug-in in real Kritas under Xvfb: Debian's own (5.1.5 on bookworm) and trixie's 5.2.9.

Installed with `chromastyle install krita` and started with no worker running, as an artist first
meets it: the menu action must start the worker itself, and the docker of a new window must fill its
style list (the harness stops the worker before each); the other scenarios use the worker the
plug-in started."""
import numpy as np
import pytest
from PIL import Image

from chromastyle.color import rgb_to_lab
from conftest import ROOT, photo
from hosts.krita import KRITAS, ensure_krita, run_krita, stop_worker

pytestmark = pytest.mark.host
W, H = 192, 144
# Under Xvfb, trixie's Krita 5.2.9 never activates a layer for a script (Document.setActiveNode does
# nothing; Krita logs SAFE ASSERT "shape" in kis_node_manager.cpp), and keyframes can only be made
# through the Timeline's actions on the active layer: the animation scenario cannot be set up there.
NO_ACTIVE_LAYER = {"trixie": "Krita 5.2.9 under Xvfb activates no layer for scripts: no keyframes can be made"}
HINTS = [((50, 50), (220, 30, 30)), ((140, 100), (30, 60, 220))]


def pixels(d):
    dtype = {"U8": np.uint8, "U16": np.uint16, "F32": np.float32}[d["depth"]]
    channels = 4 if d["model"] == "RGBA" else 2
    arr = np.fromfile(d["file"], dtype).reshape(d["height"], d["width"], channels)
    if d["model"] == "RGBA" and d["depth"] != "F32":
        arr = arr[..., [2, 1, 0, 3]]  # BGRA -> RGBA
    scale = {"U8": 255.0, "U16": 65535.0, "F32": 1.0}[d["depth"]]
    return arr.astype(np.float64) / scale


def exported(sc):
    """The file File ▸ Export wrote, as RGB in [0, 1]."""
    assert sc["export"], "Krita did not export the document"
    return np.asarray(Image.open(sc["export"]).convert("RGB"), np.float64) / 255


def chroma(rgba):
    lab = rgb_to_lab(np.clip(rgba[..., :3], 0, 1))
    return np.hypot(lab[..., 1], lab[..., 2])


def readable(message):
    """What a message box may say: no traceback, no HTTP status."""
    assert "Traceback" not in message and 'File "' not in message, message
    assert not any(f"({code})" in message for code in (400, 404, 409, 413, 500)), message


@pytest.fixture(scope="module", params=KRITAS)
def krita_result(request, tmp_path_factory):
    root = ensure_krita(request.param)
    work = tmp_path_factory.mktemp(f"krita-{request.param}")
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
    # a painting the model was trained on as the style reference layer's picture, at its own size (larger
    # than the canvas: the whole layer is the picture)
    Image.open(ROOT / "tests" / "data" / "starry_night.jpg").convert("RGBA").save(work / "painting.png")
    painting = {"name": "painting", "png": str(work / "painting.png")}
    natural = {"style": "natural", "strength": 1.0, "keep": "none", "tileable": False, "seed": -1}
    with_painting = {**natural, "style_layer": "painting", "style_layer_strength": 1.0}
    gray = str(work / "gray.png")
    scenarios = [
        {"name": "first_run", "kind": "action", "image": gray,
         "settings": {**natural, "style": "starry_night", "strength": 0.8, "stroke_scale": 2.0}},
        {"name": "hinted", "image": gray, "hints": str(work / "hints.png"), "settings": {**natural, "hint_layer": "hints"}},
        {"name": "multi", "image": gray, "second_layer": True,
         "settings": {**natural, "style": "starry_night", "strength": 0.8}},
        {"name": "deep", "image": gray, "depth": "U16", "settings": natural, "undo": True},
        {"name": "float", "image": gray, "depth": "F32", "settings": {**natural, "style": "great_wave"}},
        {"name": "selection", "image": gray, "select": [40, 30, 80, 60], "settings": {**natural, "style": "the_scream"}},
        {"name": "bad_style", "image": gray, "settings": {**natural, "style": "no_such_style"}},
        {"name": "cancelled", "image": gray, "second_layer": True, "cancel_after": 1,
         "settings": {**natural, "style": "the_scream"}},
        {"name": "picture", "image": gray, "style_layer": painting, "settings": with_painting},
        {"name": "plain", "image": gray, "settings": natural},
        {"name": "named_starry", "image": gray, "settings": {**natural, "style": "starry_night"}},
        {"name": "named_wave", "image": gray, "settings": {**natural, "style": "great_wave"}},
        {"name": "picture_unknown", "image": gray, "settings": {**natural, "style_layer": "no_such_layer"}},
        {"name": "picture_empty", "image": gray, "style_layer": {"name": "empty", "png": None},
         "settings": {**natural, "style_layer": "empty"}},
        {"name": "worker_killed", "image": gray, "second_layer": True, "kill_worker": True,
         "settings": {**natural, "style": "starry_night"}},
        {"name": "docker", "kind": "docker"},   # last: it opens a second window
    ]
    if request.param not in NO_ACTIVE_LAYER:
        scenarios.append({"name": "animated", "animated": True, "times": [0, 4, 8], "frames": frames,
                          "settings": {**natural, "style": "great_wave", "strength": 0.7}})
        scenarios.append({"name": "animated_picture", "animated": True, "times": [0, 4, 8], "frames": frames,
                          "style_layer": painting, "settings": with_painting})
    try:
        r, result = run_krita(work, {"width": W, "height": H, "scenarios": scenarios}, root=root)
    finally:
        stop_worker(work / "runtime")
    assert result, f"Krita produced no result ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    print(f"Krita {result['krita_version']} ({request.param})")
    return result


def scenario(result, name, ok=True):
    sc = result["scenarios"][name]
    assert "exception" not in sc, sc["exception"]
    assert sc["ok"] == ok, sc["message"]
    return sc


def keyframe_scenario(request, result, name):
    """A scenario that needs keyframes, skipped on a Krita that cannot make them under Xvfb."""
    which = request.node.callspec.params["krita_result"]
    if which in NO_ACTIVE_LAYER:
        pytest.skip(NO_ACTIVE_LAYER[which])
    return scenario(result, name)


def test_first_run_starts_the_worker_from_the_menu(krita_result):
    """Tools ▸ Scripts ▸ Colorize & Stylize… with no worker running: the plug-in starts it (with a
    clean environment: Krita's PYTHONPATH holds its own `chromastyle` package) and succeeds."""
    sc = krita_result["scenarios"]["first_run"]
    assert "exception" not in sc, sc["exception"]
    assert sc["worker_running_before"] is False
    assert "message_box" not in sc, sc["message_box"]
    assert sc["ok"], sc["message"]
    (res,) = sc["results"]
    assert res["model"] == "RGBA" and "starry_night" in res["name"]
    assert sc["doc_model"] == "RGBA" and sc["doc_depth"] == "U8"
    assert chroma(exported(sc)).mean() > 3, "the exported document is not colourful"


def test_docker_fills_its_styles_when_it_opens(krita_result):
    sc = scenario(krita_result, "docker")
    assert sc["worker_running_before"] is False
    assert "starry_night" in sc["styles"] and len(sc["styles"]) > 5
    assert any("Starting the chromastyle worker" in t for t in sc["status_texts"]), sc["status_texts"]
    assert "styles" in sc["status_texts"][-1]


def test_hinted_gray_document(krita_result):
    sc = scenario(krita_result, "hinted")
    assert sc["before"]["model"] == "GRAYA" and sc["doc_model_before"] == "GRAYA"
    assert np.array_equal(pixels(sc["source_after"])[..., 0], pixels(sc["before"])[..., 0]), "the source changed"
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


def test_gray_document_shows_colour_on_the_canvas_and_in_exports(krita_result):
    """The document itself becomes RGB (same depth): Krita composes RGB layers of a GRAYA document
    gray, so without it the canvas and File ▸ Export stay gray."""
    sc = scenario(krita_result, "hinted")
    assert sc["doc_model"] == "RGBA" and sc["doc_depth"] == "U8"
    export = exported(sc)
    assert chroma(export).mean() > 4
    hints_layer_hidden_result = pixels(sc["results"][0])[..., :3]
    assert np.abs(export - hints_layer_hidden_result).mean() < 0.05   # the canvas shows the result layer


def test_several_layers(krita_result):
    sc = scenario(krita_result, "multi")
    assert [r["source"] for r in sc["results"]] == ["gray", "second"] or len(sc["results"]) == 2
    for r in sc["results"]:
        assert np.abs(pixels(r)[..., :3] - np.repeat(pixels(sc["before"])[..., :1], 3, -1)).mean() > 0.01


@pytest.mark.parametrize("name, depth", [("deep", "U16"), ("float", "F32")])
def test_gray_documents_of_other_depths_keep_their_depth(krita_result, name, depth):
    sc = scenario(krita_result, name)
    assert sc["doc_model_before"] == "GRAYA" and sc["doc_depth_before"] == depth
    (res,) = sc["results"]
    assert res["depth"] == depth and res["model"] == "RGBA"
    assert sc["doc_model"] == "RGBA" and sc["doc_depth"] == depth
    assert chroma(pixels(res)).mean() > 2
    assert chroma(exported(sc)).mean() > 2


def test_the_conversion_to_rgb_is_one_undo_step(krita_result):
    """Edit ▸ Undo once after colorizing a gray 16-bit document: it is gray and 16-bit again."""
    after = scenario(krita_result, "deep")["after_undo"]
    assert after["doc_model"] == "GRAYA" and after["doc_depth"] == "U16"


def test_only_the_selection_is_filled(krita_result):
    sc = scenario(krita_result, "selection")
    (res,) = sc["results"]
    alpha = pixels(res)[..., 3]
    inside = np.zeros(alpha.shape, bool)
    inside[30:90, 40:120] = True
    assert alpha[inside].min() > 0.99 and alpha[~inside].max() == 0


def test_animated_layer_gives_an_animated_result(request, krita_result):
    sc = keyframe_scenario(request, krita_result, "animated")
    assert sc["source_keyframes"] == [0, 4, 8]
    assert sc["result_keyframes"] == [0, 4, 8]
    outs = [pixels(r) for r in sc["results"]]
    assert [r["time"] for r in sc["results"]] == [0, 4, 8]
    assert all(chroma(o).mean() > 2 for o in outs)
    assert np.abs(outs[0] - outs[2]).mean() > 0.005   # each keyframe is its own frame
    assert sc["time_after"] == sc["time_before"]      # the artist stays on their frame


def unchanged(sc):
    assert sc["results"] == []
    assert sc["layer_names"] == sc["layers_before"], "the run left layers behind"
    assert sc["doc_model"] == sc["doc_model_before"] == "GRAYA"
    assert np.array_equal(pixels(sc["source_after"]), pixels(sc["before"]))
    gray = np.asarray(Image.open(sc["export"]).convert("L"), np.float64) / 255
    assert np.abs(gray - pixels(sc["before"])[..., 0]).max() < 1.5 / 255


def test_unknown_style_changes_nothing_and_says_what_to_do(krita_result):
    sc = scenario(krita_result, "bad_style", ok=False)
    readable(sc["message"])
    assert "'no_such_style' does not exist" in sc["message"] and "choose one" in sc["message"]
    unchanged(sc)


def test_cancel_midway_changes_nothing(krita_result):
    """Cancelled after the first of two layers: the finished layer goes too, and the gray document
    stays gray."""
    sc = scenario(krita_result, "cancelled", ok=False)
    assert sc["cancelled_after"] == 1 and sc["message"] == "cancelled"
    unchanged(sc)


def test_a_run_survives_its_worker_being_killed(krita_result):
    """The worker killed (as in a crash) while the first of two layers is in it: the plug-in starts
    a new worker, sends that layer again, and both layers get their result."""
    sc = scenario(krita_result, "worker_killed")
    assert sc["worker_pid_after"] != sc["killed_pid"] and len(sc["results"]) == 2


def test_a_style_reference_layer(krita_result):
    """A layer holding a painting as the style reference: sent once, named by the run, and the
    result is clearly unlike the same run without it and close to the painting's named style (one
    the model was trained on) compared with another named style."""
    sc = scenario(krita_result, "picture")
    (res,) = sc["results"]
    assert "+ style reference" in res["name"]
    assert len(sc["style_pictures_sent"]) == 1
    assert sc["style_images"] == [{"id": sc["style_pictures_sent"][0], "strength": 1.0}]
    rgb = lambda name: pixels(scenario(krita_result, name)["results"][0])[..., :3]  # noqa: E731
    picture, plain, starry, wave = rgb("picture"), rgb("plain"), rgb("named_starry"), rgb("named_wave")
    assert np.abs(picture - plain).mean() > 0.04
    assert np.abs(picture - starry).mean() < 0.4 * np.abs(wave - starry).mean()


def test_animated_layer_with_a_style_reference_sends_it_once(request, krita_result):
    sc = keyframe_scenario(request, krita_result, "animated_picture")
    assert sc["result_keyframes"] == [0, 4, 8]
    assert len(sc["style_pictures_sent"]) == 1   # one picture for all frames
    assert sc["style_images"] == [{"id": sc["style_pictures_sent"][0], "strength": 1.0}]
    assert all(chroma(pixels(r)).mean() > 2 for r in sc["results"])


@pytest.mark.parametrize("name, words", [("picture_unknown", ["no layer 'no_such_layer'", "style reference"]),
                                         ("picture_empty", ["'empty' is empty", "style reference"])])
def test_a_bad_style_reference_changes_nothing_and_says_why(krita_result, name, words):
    sc = scenario(krita_result, name, ok=False)
    readable(sc["message"])
    assert all(w in sc["message"] for w in words), sc["message"]
    unchanged(sc)
