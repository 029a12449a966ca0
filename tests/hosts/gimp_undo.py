# Runs inside the GUI gimp-3.0 (python-fu-eval) under Xvfb: opens a display, runs the plug-in in
# replace mode, then waits while the test presses Ctrl+Z in the real window, and dumps the pixels.
import json
import time

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio  # noqa: E402

params = json.load(open(PARAMS))  # noqa: F821 - set by the -b line
work = params["work"]
out = {}


def pixels(layer):
    w, h = layer.get_width(), layer.get_height()
    return bytes(layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.CLAMP))


def save(name, data):
    with open(f"{work}/{name}.rgba", "wb") as f:
        f.write(data)


image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(params["image"]))
image.clean_all()
Gimp.Display.new(image)
layer = image.get_layers()[0]
save("undo_before", pixels(layer))
out["base_type_before"] = image.get_base_type().value_nick
proc = Gimp.get_pdb().lookup_procedure("plug-in-chromastyle")
cfg = proc.create_config()
cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
cfg.set_property("image", image)
cfg.set_core_object_array("drawables", [layer])
cfg.set_property("style", "the_scream")
cfg.set_property("output", "replace")
out["status"] = proc.run(cfg).index(0).value_nick
Gimp.displays_flush()
save("undo_after_run", pixels(layer))
out["base_type_after_run"] = image.get_base_type().value_nick
open(f"{work}/ready", "w").close()
deadline = time.time() + 60   # the test presses Ctrl+Z until the image is gray again
while image.get_base_type() != Gimp.ImageBaseType.GRAY and time.time() < deadline:
    time.sleep(0.2)
time.sleep(0.5)
layer = image.get_layers()[0]
save("undo_after_undo", pixels(layer))
out["base_type_after_undo"] = image.get_base_type().value_nick
out["size"] = [layer.get_width(), layer.get_height()]
with open(f"{work}/undo_result.json", "w") as f:
    json.dump(out, f)
