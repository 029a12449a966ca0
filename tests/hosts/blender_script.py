"""Runs inside a bpy module (Blender 5.0 or 4.2 LTS): installs the chromastyle extension zip, runs
its operators headless, with no worker running at first, and writes result.json plus raw pixels for
the pytest side. argv: ZIP WORK STATE_FILE"""
import json
import os
import signal
import sys
import time
import traceback
from array import array

import bpy

ZIP, WORK, STATE_FILE = sys.argv[1], sys.argv[2], sys.argv[3]
result = {"blender_version": bpy.app.version_string, "worker_running_before": os.path.exists(STATE_FILE)}


def pixels(img, name):
    buf = array("f", bytes(4 * len(img.pixels)))
    img.pixels.foreach_get(buf)
    path = os.path.join(WORK, f"{name}.f32")
    with open(path, "wb") as f:
        f.write(buf.tobytes())
    return {"file": path, "width": img.size[0], "height": img.size[1], "is_float": img.is_float, "name": img.name}


def image_from(name, w, h, values, float_buffer=False):
    img = bpy.data.images.new(name, w, h, alpha=True, float_buffer=float_buffer)
    img.pixels.foreach_set(array("f", values))
    img.update()
    return img


def scenario(name):
    def wrap(fn):
        try:
            result[name] = fn() or {}
        except Exception:
            result[name] = {"exception": traceback.format_exc()}
        return fn
    return wrap


bpy.ops.extensions.package_install_files(filepath=ZIP, repo="user_default", enable_on_install=True)
import bl_ext.user_default.chromastyle as ext  # noqa: E402
from bl_ext.user_default.chromastyle import jobs  # noqa: E402

scene = bpy.context.scene
params = json.load(open(os.path.join(WORK, "params.json")))
W, H = params["width"], params["height"]
gray = params["gray"]          # bottom-up rows of gray values in [0, 1]
texture = params["texture"]    # a seamless RGB texture, bottom-up


@scenario("refresh")
def _():
    assert bpy.ops.chromastyle.refresh_styles() == {"FINISHED"}
    return {"styles": [s[0] for s in ext._styles]}


def attempt(operator, **kw):
    """-> (status, message): in background mode an operator that reports an error raises it."""
    try:
        return sorted(operator(**kw)), None
    except RuntimeError as e:
        return ["CANCELLED"], str(e)


@scenario("byte_image")
def _():
    values = [v for g in gray for v in (g, g, g, 1.0)]
    img = image_from("photo", W, H, values)
    before = pixels(img, "byte_before")
    scene.chromastyle.style = "natural"
    scene.chromastyle.stroke_scale = 2.0
    status = bpy.ops.chromastyle.stylize_image(image="photo")
    scene.chromastyle.stroke_scale = 1.0
    out = bpy.data.images.get("photo.chromastyle")
    return {"status": sorted(status), "before": before, "after_original": pixels(img, "byte_original_after"),
            "result": pixels(out, "byte_result") if out else None}


@scenario("float_image")
def _():
    values = [v for g in gray for v in ((g ** 2.2), (g ** 2.2), (g ** 2.2), 1.0)]   # scene-linear
    img = image_from("linear", W, H, values, float_buffer=True)
    scene.chromastyle.keep = "luminance"
    status = bpy.ops.chromastyle.stylize_image(image="linear")
    scene.chromastyle.keep = "none"
    out = bpy.data.images.get("linear.chromastyle")
    return {"status": sorted(status), "before": pixels(img, "float_before"),
            "result": pixels(out, "float_result") if out else None}


@scenario("texture")
def _():
    values = [v for rgb in texture for v in (*rgb, 1.0)]
    tex = image_from("brick", W, H, values)
    mat = bpy.data.materials.new("Wall")
    mat.use_nodes = True
    node = mat.node_tree.nodes.new("ShaderNodeTexImage")
    node.name = "Tex"
    node.image = tex
    scene.chromastyle.style = "great_wave"
    scene.chromastyle.strength = 1.0
    status = bpy.ops.chromastyle.stylize_texture(material="Wall", node="Tex")
    swapped = node.image
    info = {"status": sorted(status), "image": swapped.name, "packed": swapped.packed_file is not None,
            "original_kept": node.get("chromastyle_original"), "result": pixels(swapped, "texture_result")}
    status = bpy.ops.chromastyle.revert_texture(material="Wall", node="Tex")
    info.update(revert=sorted(status), after_revert=node.image.name)
    scene.chromastyle.style = "natural"
    return info


def run_image(label, **kw):
    """stylize_image on "subject" -> its result's pixels (the result is renamed out of the way)."""
    status = bpy.ops.chromastyle.stylize_image(image="subject", **kw)
    out = bpy.data.images["subject.chromastyle"]
    out.name = f"subject.{label}"
    return {"status": sorted(status), **pixels(out, f"picture_{label}")}


def linear_copy(img, name):
    """A scene-linear float image with the same colours as the byte (sRGB) image ``img``."""
    buf = array("f", bytes(4 * len(img.pixels)))
    img.pixels.foreach_get(buf)
    for i in range(len(buf)):
        if i % 4 != 3:
            v = buf[i]
            buf[i] = v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4
    lin = bpy.data.images.new(name, *img.size, alpha=True, float_buffer=True)
    lin.pixels.foreach_set(buf)
    lin.update()
    return lin


@scenario("picture")
def _():
    """A painting as the style picture: from the sidebar (a byte image), from the operator's property
    (the same painting as a scene-linear float image); and the same run without it, and with the
    painting's named style and another named style."""
    image_from("subject", W, H, [v for g in gray for v in (g, g, g, 1.0)])
    painting = bpy.data.images.load(params["painting"])
    linear_copy(painting, "painting linear")
    s = scene.chromastyle
    s.style, s.strength, s.style_image_strength = "natural", 1.0, 1.0
    s.style_image = painting
    runs = {"picture": run_image("picture")}
    s.style_image = None
    runs["linear_picture"] = run_image("linear_picture", style_image="painting linear")
    runs["plain"] = run_image("plain")
    for label, style in (("starry", "starry_night"), ("wave", "great_wave")):
        s.style = style
        runs[label] = run_image(label)
    s.style = "natural"
    return runs


@scenario("bad_picture")
def _():
    """An image name that does not exist, and an image whose file is missing: nothing is made."""
    img = bpy.data.images["subject"]
    ghost = bpy.data.images.new("ghost", 4, 4)
    ghost.source, ghost.filepath = "FILE", os.path.join(WORK, "missing.png")
    before, pixels_before = {i.name for i in bpy.data.images}, jobs.read_image(img)[0]
    unknown = attempt(bpy.ops.chromastyle.stylize_image, image="subject", style_image="no such image")
    scene.chromastyle.style_image = ghost
    missing = attempt(bpy.ops.chromastyle.stylize_image, image="subject")
    scene.chromastyle.style_image = None
    return {"unknown": unknown, "missing": missing, "new_images": sorted({i.name for i in bpy.data.images} - before),
            "unchanged": jobs.read_image(img)[0] == pixels_before}


@scenario("unknown_style")
def _():
    """A style list that is out of date (the worker's model changed): the run fails, says what to
    do, and adds nothing."""
    values = [v for g in gray for v in (g, g, g, 1.0)]
    img = image_from("stale", W, H, values)
    ext._styles.append(("no_such_style", "No such style", ""))
    scene.chromastyle.style = "no_such_style"
    before, pixels_before = {i.name for i in bpy.data.images}, jobs.read_image(img)[0]
    status, message = attempt(bpy.ops.chromastyle.stylize_image, image="stale")
    render_status, render_message = attempt(bpy.ops.chromastyle.stylize_render, source="stale")
    mat = bpy.data.materials.new("Stale")
    mat.use_nodes = True
    node = mat.node_tree.nodes.new("ShaderNodeTexImage")
    node.name, node.image = "Tex", img
    nodes_before = len(mat.node_tree.nodes)
    texture_status, texture_message = attempt(bpy.ops.chromastyle.stylize_texture, material="Stale", node="Tex")
    texture_kept = node.image == img and "chromastyle_original" not in node and len(mat.node_tree.nodes) == nodes_before
    scene.chromastyle.style = "natural"
    ext._styles.pop()
    return {"status": status, "message": message, "render_status": render_status, "render_message": render_message,
            "texture_status": texture_status, "texture_message": texture_message, "texture_kept": texture_kept,
            "new_images": sorted({i.name for i in bpy.data.images} - before),
            "unchanged": jobs.read_image(img)[0] == pixels_before}


@scenario("cancel")
def _():
    big = image_from("big", 1024, 1024, [0.5] * (1024 * 1024 * 4))
    before = {i.name for i in bpy.data.images}
    poller = jobs.Poller([jobs.Task("big", lambda: jobs.read_image(big),
                                    lambda data, w, h: jobs.write_image(data, w, h, "big.chromastyle", jobs.kind_of(big)))],
                         {"styles": "natural", "tile": 128, "overlap": 16})
    assert poller.poll() == "running"          # submitted
    time.sleep(0.3)
    poller.cancel()
    time.sleep(0.5)
    return {"new_images": sorted({i.name for i in bpy.data.images} - before), "outputs": poller.outputs}


@scenario("render")
def _():
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 4
    scene.cycles.device = "CPU"
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 48, 100
    scene.frame_start, scene.frame_end = 1, 3
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = os.path.join(WORK, "render", "frame_")
    scene.chromastyle.output_dir = os.path.join(WORK, "stylized") + os.sep
    scene.chromastyle.style = "starry_night"
    bpy.ops.render.render(animation=True)
    rendered = sorted(os.listdir(os.path.join(WORK, "render")))
    # Esc after the first frame: what the modal operator's Esc does is poller.cancel()
    poller = ext.CHROMASTYLE_OT_stylize_sequence.start(None, bpy.context)
    while poller.finished < 1 and poller.poll() == "running":
        time.sleep(0.03)
    frames_before_cancel = poller.finished
    poller.cancel()
    after_cancel = os.path.exists(os.path.join(WORK, "stylized")) and os.listdir(os.path.join(WORK, "stylized"))
    status = bpy.ops.chromastyle.stylize_sequence()
    stylized = sorted(os.listdir(os.path.join(WORK, "stylized")))
    comp = bpy.ops.chromastyle.setup_compositor()
    tree, socket = ext.compositor_tree(scene)
    node = tree.nodes.get("Chromastyle frames")
    bpy.ops.render.render()
    single = bpy.ops.chromastyle.stylize_render()
    out = bpy.data.images.get("Render Result.chromastyle")
    return {"rendered": rendered, "frames_before_cancel": frames_before_cancel, "after_cancel": after_cancel,
            "status": sorted(status), "stylized": stylized, "compositor": sorted(comp),
            "node_linked": bool(node and node.outputs["Image"].is_linked),
            "node_duration": node.frame_duration if node else None, "single": sorted(single),
            "single_result": pixels(out, "render_single") if out else None}


@scenario("picture_sequence")
def _():
    """The rendered frames with a style picture: it is sent once and every frame names it; with an
    image whose file is missing, no output folder is made."""
    c = jobs.client()
    sent, named = [], []
    c.style_image = lambda *a, **kw: sent.append(type(c).style_image(c, *a, **kw)) or sent[-1]
    c.submit = lambda *a, **kw: named.append(a[5].get("style_images")) or type(c).submit(c, *a, **kw)
    try:
        scene.chromastyle.style = "natural"
        scene.chromastyle.style_image = bpy.data.images["painting linear"]
        scene.chromastyle.output_dir = os.path.join(WORK, "stylized_picture") + os.sep
        status = bpy.ops.chromastyle.stylize_sequence()
        scene.chromastyle.output_dir = os.path.join(WORK, "stylized_ghost") + os.sep
        scene.chromastyle.style_image = bpy.data.images["ghost"]
        ghost_status, ghost_message = attempt(bpy.ops.chromastyle.stylize_sequence)
    finally:
        del c.style_image, c.submit
        scene.chromastyle.style_image = None
    # the last render as the style picture (read through a saved copy, like Stylize Render Result)
    render_status = attempt(bpy.ops.chromastyle.stylize_image, image="subject", style_image="Render Result")
    return {"status": sorted(status), "frames": sorted(os.listdir(os.path.join(WORK, "stylized_picture"))),
            "sent": sent, "named": named, "ghost_status": ghost_status, "ghost_message": ghost_message,
            "ghost_folder": os.path.exists(os.path.join(WORK, "stylized_ghost")), "render_status": render_status}


@scenario("worker_restart")
def _():
    """The worker is killed while a run waits on it (a crash, or another host restarting it): the
    next poll starts a new worker and submits the job again, and the run finishes."""
    img = image_from("restart", 512, 512, [0.5] * (512 * 512 * 4))
    tasks = [jobs.Task(f"restart {i}", lambda: jobs.read_image(img),
                       lambda data, w, h, i=i: jobs.write_image(data, w, h, f"restart {i}", jobs.kind_of(img)))
             for i in range(2)]
    poller = jobs.Poller(tasks, {"styles": "natural", "tile": 128, "overlap": 16})
    assert poller.poll() == "running"          # the first task is submitted
    first = json.load(open(STATE_FILE))["pid"]
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 300
    while (state := poller.poll()) == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"state": state, "error": poller.error, "first_pid": first,
            "second_pid": json.load(open(STATE_FILE))["pid"], "outputs": len(poller.outputs)}


with open(os.path.join(WORK, "result.json"), "w") as f:
    json.dump(result, f, indent=1)
