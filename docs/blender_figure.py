"""The before/after figure of docs/blender.md: renders Blender's default scene with Cycles and stylizes
the render with the extension's operator. Run with a Python that has bpy, with a worker running:

    chromastyle serve --state-file /tmp/w.json &
    CHROMASTYLE_STATE_FILE=/tmp/w.json BPY_PYTHON docs/blender_figure.py dist/chromastyle-blender-*.zip
"""
import os
import sys
import tempfile
from array import array

import bpy

ZIP = sys.argv[1]
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "images", "blender_before_after.png")
bpy.ops.extensions.package_install_files(filepath=ZIP, repo="user_default", enable_on_install=True)
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = 32
scene.cycles.device = "CPU"
scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 320, 240, 100
bpy.ops.render.render()
bpy.ops.chromastyle.refresh_styles()
scene.chromastyle.style = "starry_night"
assert bpy.ops.chromastyle.stylize_render() == {"FINISHED"}
tmp = os.path.join(tempfile.mkdtemp(), "render.png")
bpy.data.images["Render Result"].save_render(tmp)
before = bpy.data.images.load(tmp)
after = bpy.data.images["Render Result.chromastyle"]
w, h = before.size
combo = bpy.data.images.new("combo", 2 * w, h, alpha=True)
a, b = array("f", bytes(16 * w * h)), array("f", bytes(16 * w * h))
before.pixels.foreach_get(a)
after.pixels.foreach_get(b)
rows = array("f")
for y in range(h):
    rows.extend(a[y * w * 4:(y + 1) * w * 4])
    rows.extend(b[y * w * 4:(y + 1) * w * 4])
combo.pixels.foreach_set(rows)
combo.filepath_raw = OUT
combo.file_format = "PNG"
combo.save()
print(OUT)
