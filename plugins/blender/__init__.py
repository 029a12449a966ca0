"""Chromastyle for Blender: colorize and stylize images, image textures and rendered frames.

The model runs in the chromastyle worker (started on demand); this extension uses only bpy, the
standard library and the worker client (client.py, added by the build step)."""
import os
import shutil
import tempfile
import time

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from . import client as client_lib
from .jobs import Poller, StagedFolder, Task, client, kind_of, read_image, save_image_atomically, write_image
from .messages import explain

_styles = [("natural", "Natural (colorize only)", "")]


def style_items(self, context):
    return _styles


class ChromastyleSettings(bpy.types.PropertyGroup):
    style: EnumProperty(name="Style", items=style_items)
    strength: FloatProperty(name="Strength", min=0.0, max=1.0, default=1.0)
    stroke_scale: FloatProperty(name="Stroke Scale", min=0.25, max=4.0, default=1.0,
                                description="Size of the style's brush strokes relative to the picture")
    keep: EnumProperty(name="Keep", items=[("none", "Nothing", "Colorize and stylize freely"),
                                            ("luminance", "Luminance", "Only add colour (pure colorization)"),
                                            ("colors", "Colours", "Only stylize lightness")], default="none")
    seed: IntProperty(name="Seed", min=-1, default=-1, description="Variation seed; -1 for the canonical result")
    in_place: BoolProperty(name="In place", default=False,
                           description="Overwrite the image (a copy of the original is kept)")
    output_dir: StringProperty(name="Output", subtype="DIR_PATH", default="//chromastyle/",
                               description="Folder for stylized animation frames")
    style_image: PointerProperty(type=bpy.types.Image, name="Style Picture",
                                 description="Any image to use as a style (it mixes with the style above)")
    style_image_strength: FloatProperty(name="Picture Strength", min=0.0, max=1.0, default=1.0,
                                        description="How strongly the style picture applies")


def worker_options(settings, tileable=False):
    style = settings.style or "natural"
    styles = style if style == "natural" else f"{style}:{settings.strength:g}"
    return {"styles": styles, "keep": settings.keep, "tileable": tileable,
            "seed": None if settings.seed < 0 else settings.seed, "stroke_scale": round(settings.stroke_scale, 4)}


def read_style_picture(image):
    """A style picture's pixels as read_image gives them (float images are scene-linear); render
    results through a saved copy."""
    if image.type in ("RENDER_RESULT", "COMPOSITING"):
        return read_render_result(image.name, [])
    if 0 in image.size:
        raise ValueError(f"the style picture '{image.name}' has no pixels (is its file missing?); "
                         "choose another image")
    return read_image(image)


def run_options(settings, tileable=False, picture=""):
    """worker_options plus the style picture (the image named ``picture``, else the sidebar's), sent
    to the worker once per run: every image and frame of the run names the same picture."""
    options = worker_options(settings, tileable)
    image = settings.style_image
    if picture:
        image = bpy.data.images.get(picture)
        if image is None:
            raise ValueError(f"there is no image '{picture}' to use as the style picture")
    if image is not None:
        data, w, h, colorspace = read_style_picture(image)
        ref = client().style_image(data, w, h, 4, "float32", colorspace)
        options["style_images"] = [{"id": ref, "strength": round(settings.style_image_strength, 4)}]
    return options


class _Run:
    """Modal with a timer when invoked from the UI (ESC cancels, the UI stays live); a plain loop
    when executed from a script or in background mode."""
    style_image: StringProperty(name="Style Picture", description="An image (bpy.data.images) to use as a style; "
                                "empty: the sidebar's Style Picture", options={"SKIP_SAVE"})

    def tasks(self, context):
        raise NotImplementedError

    def start(self, context):
        tileable = getattr(self, "tileable", False)   # textures default to tileable
        return Poller(self.tasks(context), run_options(context.scene.chromastyle, tileable, self.style_image))

    def execute(self, context):
        try:
            poller = self.start(context)
        except (client_lib.WorkerError, ValueError, KeyError) as e:
            self.report({"ERROR"}, explain(e, "blender", client()))
            return {"CANCELLED"}
        state = "running"
        while state == "running":
            state = poller.poll()
            if state == "running":
                time.sleep(0.03)
        return self.end(poller, state)

    def invoke(self, context, event):
        try:
            self.poller = self.start(context)
        except (client_lib.WorkerError, ValueError, KeyError) as e:
            self.report({"ERROR"}, explain(e, "blender", client()))
            return {"CANCELLED"}
        wm = context.window_manager
        self.timer = wm.event_timer_add(0.1, window=context.window)
        wm.progress_begin(0, 1000)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        wm = context.window_manager
        if event.type == "ESC":
            self.poller.cancel()
            self.stop(context)
            self.report({"WARNING"}, "Cancelled; nothing of this run was kept.")
            return {"CANCELLED"}
        if event.type == "TIMER":
            state = self.poller.poll()
            wm.progress_update(int(self.poller.progress * 1000))
            if state != "running":
                self.stop(context)
                return self.end(self.poller, state)
        return {"PASS_THROUGH"}

    def stop(self, context):
        wm = context.window_manager
        wm.event_timer_remove(self.timer)
        wm.progress_end()

    def end(self, poller, state):
        if state == "failed":
            self.report({"ERROR"}, poller.error)
            return {"CANCELLED"}
        self.report({"INFO"}, f"Chromastyle: {poller.finished} image(s) done")
        return {"FINISHED"}


class CHROMASTYLE_OT_refresh_styles(bpy.types.Operator):
    bl_idname = "chromastyle.refresh_styles"
    bl_label = "Refresh Styles"
    bl_description = "Ask the chromastyle worker for its model's styles"

    def execute(self, context):
        try:
            styles = client().styles()
        except client_lib.WorkerError as e:
            self.report({"ERROR"}, explain(e, "blender", client()))
            return {"CANCELLED"}
        _styles[:] = [(s["slug"], s["name"], "") for s in styles]
        return {"FINISHED"}


class CHROMASTYLE_OT_stylize_image(_Run, bpy.types.Operator):
    bl_idname = "chromastyle.stylize_image"
    bl_label = "Colorize & Stylize"
    bl_description = "Colorize and stylize the image into a new image (or in place)"
    bl_options = {"REGISTER", "UNDO"}
    image: StringProperty(name="Image", description="Image to process (default: the Image Editor's)")

    def target(self, context):
        if self.image:
            return bpy.data.images[self.image]
        space = context.space_data
        if getattr(space, "image", None) is None:
            raise ValueError("open an image in the Image Editor first")
        return space.image

    def tasks(self, context):
        image = self.target(context)
        in_place = context.scene.chromastyle.in_place

        def finish(data, w, h):
            result = write_image(data, w, h, f"{image.name}.chromastyle", kind_of(image))
            if not in_place:
                return result
            backup = image.copy()
            backup.name = f"{image.name} (before chromastyle)"
            backup.use_fake_user = True
            image.pixels.foreach_set(_pixels(result))
            image.update()
            bpy.data.images.remove(result)
            return image
        return [Task(image.name, lambda: read_image(image), finish)]


def _pixels(img):
    from array import array
    buf = array("f", bytes(4 * len(img.pixels)))
    img.pixels.foreach_get(buf)
    return buf


class CHROMASTYLE_OT_stylize_texture(_Run, bpy.types.Operator):
    bl_idname = "chromastyle.stylize_texture"
    bl_label = "Stylize Texture"
    bl_description = "Bake a stylized copy of the Image Texture node's image and use it (revert keeps the original)"
    bl_options = {"REGISTER", "UNDO"}
    material: StringProperty(name="Material")
    node: StringProperty(name="Node")
    tileable: BoolProperty(name="Tileable", default=True, description="Keep the texture seamless")

    def find_node(self, context):
        if self.material and self.node:
            return bpy.data.materials[self.material].node_tree.nodes[self.node]
        node = getattr(context, "active_node", None)
        if node is None or node.type != "TEX_IMAGE" or node.image is None:
            raise ValueError("select an Image Texture node with an image")
        return node

    def tasks(self, context):
        node = self.find_node(context)
        original = node.image

        def finish(data, w, h):
            result = write_image(data, w, h, f"{original.name}.chromastyle", kind_of(original))
            result.pack()
            node["chromastyle_original"] = original.name
            node.image = result
            return result
        return [Task(original.name, lambda: read_image(original), finish)]


class CHROMASTYLE_OT_revert_texture(bpy.types.Operator):
    bl_idname = "chromastyle.revert_texture"
    bl_label = "Revert Texture"
    bl_description = "Put the original image back into the Image Texture node"
    bl_options = {"REGISTER", "UNDO"}
    material: StringProperty(name="Material")
    node: StringProperty(name="Node")

    def execute(self, context):
        node = (bpy.data.materials[self.material].node_tree.nodes[self.node] if self.material
                else getattr(context, "active_node", None))
        name = node.get("chromastyle_original") if node else None
        if not name or name not in bpy.data.images:
            self.report({"ERROR"}, "this node has no chromastyle original to revert to")
            return {"CANCELLED"}
        node.image = bpy.data.images[name]
        del node["chromastyle_original"]
        return {"FINISHED"}


def read_render_result(name, kind):
    """The render result's (or Viewer's) pixels, through a temporary EXR copy (they are not readable
    directly), which is gone again afterwards; ``kind`` receives the copy's kind_of()."""
    src = bpy.data.images.get(name)
    if src is None:
        raise ValueError(f"there is no '{name}' image: render first (F12)")
    folder = tempfile.mkdtemp(prefix="chromastyle-")
    try:
        src.save_render(os.path.join(folder, "render.exr"))
        img = bpy.data.images.load(os.path.join(folder, "render.exr"), check_existing=False)
        try:
            kind[:] = kind_of(img)
            return read_image(img)
        finally:
            bpy.data.images.remove(img)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class CHROMASTYLE_OT_stylize_render(_Run, bpy.types.Operator):
    bl_idname = "chromastyle.stylize_render"
    bl_label = "Stylize Render Result"
    bl_description = "Stylize the last render (or the Viewer image) into a new image"
    source: StringProperty(name="Source", default="Render Result")

    def tasks(self, context):
        if self.source not in bpy.data.images:
            raise ValueError(f"there is no '{self.source}' image: render first (F12)")
        kind = []

        def finish(data, w, h):
            return write_image(data, w, h, f"{self.source}.chromastyle", kind)
        return [Task(self.source, lambda: read_render_result(self.source, kind), finish)]


def frame_paths(scene):
    return [(f, bpy.path.abspath(scene.render.frame_path(frame=f))) for f in
            range(scene.frame_start, scene.frame_end + 1, scene.frame_step)]


class CHROMASTYLE_OT_stylize_sequence(_Run, bpy.types.Operator):
    bl_idname = "chromastyle.stylize_sequence"
    bl_label = "Stylize Rendered Animation"
    bl_description = "Stylize every rendered frame into a parallel image sequence"

    def start(self, context):
        """Frames are written into a staged copy of the output folder, moved into place once all
        are done: a failed or cancelled run leaves the folder as it was."""
        scene = context.scene
        frames = [(f, p) for f, p in frame_paths(scene) if os.path.exists(p)]
        if not frames:
            raise ValueError("no rendered frames found: render the animation first (Ctrl F12)")
        # before the staged folder: a bad picture leaves none
        options = run_options(scene.chromastyle, picture=getattr(self, "style_image", ""))
        staged = StagedFolder(bpy.path.abspath(scene.chromastyle.output_dir))
        sequence = f"blender-{scene.name}-{time.time()}"   # rendered frames: temporally consistent
        tasks = [Task(f"frame {f}", lambda path=path: read_frame(path),
                      lambda data, w, h, path=path: finish_frame(data, w, h, path, staged),
                      sequence={"id": sequence, "reset": i == 0}) for i, (f, path) in enumerate(frames)]
        return Poller(tasks, options, staged)


def read_frame(path):
    img = bpy.data.images.load(path, check_existing=False)
    try:
        return read_image(img)
    finally:
        bpy.data.images.remove(img)


def finish_frame(data, w, h, path, staged):
    """The stylized frame, saved like the rendered one under its name in the staged folder."""
    like = bpy.data.images.load(path, check_existing=False)
    kind = kind_of(like)
    bpy.data.images.remove(like)
    result = write_image(data, w, h, "chromastyle frame", kind)
    target = staged.path(os.path.basename(path))
    try:
        save_image_atomically(result, target)
    finally:
        bpy.data.images.remove(result)
    return target


def compositor_tree(scene):
    """(tree, output socket) of the scene's compositor: 5.0 uses a node group, 4.x scene.node_tree."""
    if hasattr(scene, "compositing_node_group"):
        tree = scene.compositing_node_group
        if tree is None:
            tree = bpy.data.node_groups.new("Chromastyle Compositing", "CompositorNodeTree")
            tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
            scene.compositing_node_group = tree
        out = next((n for n in tree.nodes if n.type == "GROUP_OUTPUT"), None) or tree.nodes.new("NodeGroupOutput")
        return tree, out.inputs[0]
    scene.use_nodes = True
    tree = scene.node_tree
    out = next((n for n in tree.nodes if n.type == "COMPOSITE"), None) or tree.nodes.new("CompositorNodeComposite")
    return tree, out.inputs[0]


class CHROMASTYLE_OT_setup_compositor(bpy.types.Operator):
    bl_idname = "chromastyle.setup_compositor"
    bl_label = "Use Stylized Sequence in Compositor"
    bl_description = "Add an Image node with the stylized frames and connect it to the compositor output"

    def execute(self, context):
        scene = context.scene
        out_dir = bpy.path.abspath(scene.chromastyle.output_dir)
        frames = [os.path.join(out_dir, os.path.basename(p)) for _, p in frame_paths(scene)]
        frames = [p for p in frames if os.path.exists(p)]
        if not frames:
            self.report({"ERROR"}, "no stylized frames yet: run Stylize Rendered Animation first")
            return {"CANCELLED"}
        tree, socket = compositor_tree(scene)
        node = tree.nodes.new("CompositorNodeImage")
        node.name = node.label = "Chromastyle frames"
        node.image = bpy.data.images.load(frames[0], check_existing=True)
        node.image.source = "SEQUENCE"
        node.frame_duration = len(frames)
        node.frame_start = scene.frame_start
        tree.links.new(node.outputs["Image"], socket)
        return {"FINISHED"}


def settings_ui(layout, settings):
    row = layout.row(align=True)
    row.prop(settings, "style", text="")
    row.operator("chromastyle.refresh_styles", text="", icon="FILE_REFRESH")
    layout.prop(settings, "strength", slider=True)
    layout.prop(settings, "stroke_scale")
    layout.prop(settings, "style_image")
    layout.prop(settings, "style_image_strength", slider=True)
    layout.prop(settings, "keep")
    layout.prop(settings, "seed")


class CHROMASTYLE_PT_image(bpy.types.Panel):
    bl_space_type = "IMAGE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Chromastyle"
    bl_label = "Colorize & Stylize"

    def draw(self, context):
        s = context.scene.chromastyle
        settings_ui(self.layout, s)
        self.layout.prop(s, "in_place")
        self.layout.operator("chromastyle.stylize_image")
        box = self.layout.box()
        box.label(text="Render")
        box.operator("chromastyle.stylize_render")
        box.prop(s, "output_dir")
        box.operator("chromastyle.stylize_sequence")
        box.operator("chromastyle.setup_compositor")


class CHROMASTYLE_PT_texture(bpy.types.Panel):
    bl_space_type = "NODE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Chromastyle"
    bl_label = "Stylize Texture"

    @classmethod
    def poll(cls, context):
        return getattr(context.space_data, "tree_type", "") == "ShaderNodeTree"

    def draw(self, context):
        settings_ui(self.layout, context.scene.chromastyle)
        node = context.active_node
        if node is None or node.type != "TEX_IMAGE":
            self.layout.label(text="Select an Image Texture node")
            return
        self.layout.operator("chromastyle.stylize_texture")
        if node.get("chromastyle_original"):
            self.layout.operator("chromastyle.revert_texture")


def image_menu(self, context):
    self.layout.operator("chromastyle.stylize_image", text="Colorize & Stylize…")


CLASSES = (ChromastyleSettings, CHROMASTYLE_OT_refresh_styles, CHROMASTYLE_OT_stylize_image,
           CHROMASTYLE_OT_stylize_texture, CHROMASTYLE_OT_revert_texture, CHROMASTYLE_OT_stylize_render,
           CHROMASTYLE_OT_stylize_sequence, CHROMASTYLE_OT_setup_compositor, CHROMASTYLE_PT_image,
           CHROMASTYLE_PT_texture)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.chromastyle = PointerProperty(type=ChromastyleSettings)
    bpy.types.IMAGE_MT_image.append(image_menu)


def unregister():
    bpy.types.IMAGE_MT_image.remove(image_menu)
    del bpy.types.Scene.chromastyle
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
