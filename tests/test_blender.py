"""The Blender extension in real Blenders (the bpy modules of 5.0.1 and of the 4.2 LTS), installed
from the zip `chromastyle install blender` builds, with no worker running at first: the extension
starts it with the interpreter the installer recorded."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from chromastyle.color import rgb_to_lab
from conftest import ROOT, photo

pytestmark = pytest.mark.host
HERE = os.path.join(os.path.dirname(__file__), "hosts")
W, H = 96, 64
BLENDERS = ("5.0.1", "4.2.23")   # the newest, and the 4.2 LTS the manifest's minimum names


def bpy_python(version):
    r = subprocess.run(["bash", os.path.join(HERE, "setup_blender.sh"), version], capture_output=True, text=True,
                       timeout=1800)
    if r.returncode:
        raise RuntimeError(f"could not set up bpy: {r.stderr[-2000:]}")
    return r.stdout.strip().splitlines()[-1]


def load(d, channels=4):
    return np.fromfile(d["file"], np.float32).reshape(d["height"], d["width"], channels)[::-1]  # top-down


def install_like_an_artist(work):
    """`chromastyle install blender` for a user whose config lives in work/xdg: the zip it built and
    the command it printed."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(work / "xdg")}
    env.pop("CHROMASTYLE_CONFIG_DIR", None)
    r = subprocess.run([sys.executable, "-m", "chromastyle", "install", "blender"], env=env, cwd=work,
                       capture_output=True, text=True, check=True)
    built = r.stdout.split("built ", 1)[1].split("; install it with:")[0]
    return Path(built), r.stdout.split("install it with:\n", 1)[1].splitlines()[0].strip()


@pytest.fixture(scope="module", params=BLENDERS)
def blender(request, tmp_path_factory):
    python = bpy_python(request.param)
    work = tmp_path_factory.mktemp(f"blender-{request.param}")
    zip_path, _ = install_like_an_artist(work)
    img = photo(size=(W, H))[::-1]   # Blender rows are bottom-up
    half = photo(size=(W // 2, H // 2))
    tex = np.concatenate([half, half[:, ::-1]], 1)
    tex = np.concatenate([tex, tex[::-1]], 0)[::-1]   # mirrored: seamless both ways
    (work / "params.json").write_text(json.dumps({
        "width": W, "height": H, "gray": img.mean(-1).ravel().round(4).tolist(),
        "texture": tex.reshape(-1, 3).round(4).tolist(),
        "painting": str(ROOT / "tests" / "data" / "starry_night.jpg")}))
    runtime = work / "runtime"
    runtime.mkdir(mode=0o700)
    state = runtime / "chromastyle" / "worker.json"   # where the client looks: nothing is set for it
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(work / "user"), "XDG_RUNTIME_DIR": str(runtime),
           "XDG_CONFIG_HOME": str(work / "xdg"), "XDG_CACHE_HOME": str(work / "cache"), "HOME": str(work)}
    for name in ("CHROMASTYLE_STATE_FILE", "CHROMASTYLE_PYTHON", "CHROMASTYLE_CONFIG_DIR"):
        env.pop(name, None)
    try:
        r = subprocess.run([python, os.path.join(HERE, "blender_script.py"), str(zip_path), str(work), str(state)],
                           capture_output=True, text=True, env=env, timeout=600)
    finally:
        if state.exists():
            os.kill(json.loads(state.read_text())["pid"], signal.SIGTERM)
    result_file = work / "result.json"
    assert result_file.exists(), f"bpy failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    result = json.loads(result_file.read_text())
    print(f"Blender {result['blender_version']}")
    assert result["blender_version"].startswith(request.param.rsplit(".", 1)[0])
    return result


def scenario(result, name):
    sc = result[name]
    assert "exception" not in sc, sc["exception"]
    return sc


def chroma(rgb):
    lab = rgb_to_lab(np.clip(rgb, 0, 1).astype(np.float64))
    return np.hypot(lab[..., 1], lab[..., 2])


def test_styles_from_the_worker_it_started(blender):
    """The first operator run with no worker running starts one (recorded interpreter)."""
    assert blender["worker_running_before"] is False
    assert "starry_night" in scenario(blender, "refresh")["styles"]


def test_byte_image_to_a_new_image(blender):
    sc = scenario(blender, "byte_image")
    assert sc["status"] == ["FINISHED"]
    assert np.array_equal(load(sc["after_original"]), load(sc["before"]))
    out = load(sc["result"])
    assert not sc["result"]["is_float"] and out.shape == (H, W, 4)
    assert chroma(out[..., :3]).mean() > 3


def test_float_image_is_treated_as_scene_linear(blender):
    sc = scenario(blender, "float_image")
    assert sc["status"] == ["FINISHED"] and sc["result"]["is_float"]
    src, out = load(sc["before"])[..., :3], load(sc["result"])[..., :3]
    # keep=luminance in sRGB: converting the linear result back to sRGB keeps the input's L*
    to_srgb = lambda x: np.where(x > 0.0031308, 1.055 * np.clip(x, 0.0031308, None) ** (1 / 2.4) - 0.055, 12.92 * x)  # noqa: E731
    l_in, l_out = rgb_to_lab(to_srgb(src).astype(np.float64))[..., 0], rgb_to_lab(to_srgb(out).astype(np.float64))[..., 0]
    assert np.abs(l_in - l_out).mean() < 1.5
    assert chroma(to_srgb(out)).mean() > 3


def test_texture_is_swapped_stays_tileable_and_reverts(blender):
    sc = scenario(blender, "texture")
    assert sc["status"] == ["FINISHED"] and sc["packed"] and sc["original_kept"] == "brick"
    assert sc["image"] == "brick.chromastyle" and sc["revert"] == ["FINISHED"] and sc["after_revert"] == "brick"
    out = load(sc["result"])[..., :3]
    tiled = np.tile(out, (2, 2, 1))
    for axis, n in ((1, W), (0, H)):
        steps = np.abs(np.diff(tiled, axis=axis)).sum(-1)
        steps = steps if axis == 1 else steps.T
        seam, inner = steps[:, n - 1].mean(), np.delete(steps, n - 1, axis=1).mean()
        assert seam <= 1.5 * inner, (axis, seam, inner)


def test_cancel_writes_nothing(blender):
    sc = scenario(blender, "cancel")
    assert sc["new_images"] == [] and sc["outputs"] == []


def test_unknown_style_adds_nothing_and_says_what_to_do(blender):
    sc = scenario(blender, "unknown_style")
    for status, message in ((sc["status"], sc["message"]), (sc["render_status"], sc["render_message"]),
                            (sc["texture_status"], sc["texture_message"])):
        assert status == ["CANCELLED"]
        assert "'no_such_style' does not exist" in message and "choose one from the list" in message
        assert "Traceback" not in message and "(400)" not in message
    assert sc["new_images"] == [] and sc["unchanged"] and sc["texture_kept"]


def test_sequence_cancelled_midway_leaves_no_frames(blender):
    """Esc after the first of three frames: the output folder is not created, no frame is kept."""
    sc = scenario(blender, "render")
    assert sc["frames_before_cancel"] == 1 and not sc["after_cancel"]


def test_rendered_animation_is_stylized_and_composited(blender):
    sc = scenario(blender, "render")
    assert sc["rendered"] == ["frame_0001.png", "frame_0002.png", "frame_0003.png"]
    assert sc["status"] == ["FINISHED"] and sc["stylized"] == sc["rendered"]
    assert sc["compositor"] == ["FINISHED"] and sc["node_linked"] and sc["node_duration"] == 3
    assert sc["single"] == ["FINISHED"] and sc["single_result"]["width"] == 64


def test_a_picture_as_the_style(blender):
    """A painting as the style picture: clearly unlike the same run without it, close to the
    painting's named style (one the model was trained on) compared with another named style, and the
    same painting as a scene-linear float image gives the same result."""
    sc = scenario(blender, "picture")
    assert all(run["status"] == ["FINISHED"] for run in sc.values())
    rgb = {label: load(run)[..., :3] for label, run in sc.items()}
    assert np.abs(rgb["picture"] - rgb["plain"]).mean() > 0.04
    assert np.abs(rgb["picture"] - rgb["starry"]).mean() < 0.4 * np.abs(rgb["wave"] - rgb["starry"]).mean()
    assert np.abs(rgb["linear_picture"] - rgb["picture"]).mean() < 0.01


def test_a_bad_style_picture_adds_nothing_and_says_why(blender):
    sc = scenario(blender, "bad_picture")
    for (status, message), words in ((sc["unknown"], "no image 'no such image'"),
                                     (sc["missing"], "'ghost' has no pixels")):
        assert status == ["CANCELLED"] and words in message, message
        assert "Traceback" not in message
    assert sc["new_images"] == [] and sc["unchanged"]


def test_rendered_frames_name_one_style_picture(blender):
    sc = scenario(blender, "picture_sequence")
    assert sc["status"] == ["FINISHED"] and sc["frames"] == ["frame_0001.png", "frame_0002.png", "frame_0003.png"]
    assert len(sc["sent"]) == 1   # sent once, named by every frame
    assert sc["named"] == [[{"id": sc["sent"][0], "strength": 1.0}]] * 3
    assert sc["ghost_status"] == ["CANCELLED"] and "has no pixels" in sc["ghost_message"]
    assert not sc["ghost_folder"]
    assert sc["render_status"] == [["FINISHED"], None], sc["render_status"]   # a render result as the picture


def test_a_run_survives_its_worker_being_killed(blender):
    sc = scenario(blender, "worker_restart")
    assert sc["state"] == "done", sc["error"]
    assert sc["second_pid"] != sc["first_pid"] and sc["outputs"] == 2
