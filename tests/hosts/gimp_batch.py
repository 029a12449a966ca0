# Runs inside gimp-console-3.0 (python-fu-eval). PARAMS names a JSON file of scenarios.
# Writes result.json and raw pixel dumps into the work dir for the pytest side to check.
import json
import traceback

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio  # noqa: E402

params = json.load(open(PARAMS))  # noqa: F821 - set by the -b line
work = params["work"]
result = {"scenarios": {}}


def dump(layer, name):
    w, h = layer.get_width(), layer.get_height()
    data = layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.CLAMP)
    path = f"{work}/{name}.rgba"
    with open(path, "wb") as f:
        f.write(bytes(data))
    return {"file": path, "width": w, "height": h, "name": layer.get_name()}


def run_plugin(image, drawables, **args):
    proc = Gimp.get_pdb().lookup_procedure("plug-in-chromastyle")
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", image)
    cfg.set_core_object_array("drawables", drawables)
    for k, v in args.items():
        cfg.set_property(k, v)
    values = proc.run(cfg)
    status = values.index(0)
    error = values.index(1) if values.length() > 1 and status != Gimp.PDBStatusType.SUCCESS else None
    return str(status.value_nick), str(error) if error else None


def load(path):
    return Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))


for sc in params["scenarios"]:
    out = {}
    try:
        image = load(sc["image"])
        base = image.get_layers()[0]
        out["base_type"] = str(image.get_base_type().value_nick)
        out["before"] = dump(base, f"{sc['name']}_before")
        hint_layer = None
        if sc.get("hints"):
            # as an artist does: colour hints need an RGB image to be painted in
            image.convert_rgb()
            hint_layer = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path(sc["hints"]))
            image.insert_layer(hint_layer, None, 0)
        drawables = [base]
        if sc.get("second_layer"):
            second = base.copy()
            second.set_name("second")
            image.insert_layer(second, None, 0)
            if sc.get("second_size"):   # a larger layer, e.g. one the worker refuses
                second.scale(*sc["second_size"], False)
            drawables.append(second)
        args = dict(sc["args"])
        if sc.get("style_file"):   # a style picture from a file (GimpFile argument)
            args["style-picture-file"] = Gio.File.new_for_path(sc["style_file"])
        if sc.get("style_image"):   # a style picture that is a layer of another open image
            args["style-picture"] = load(sc["style_image"]).get_layers()[0]
        if sc.get("select"):
            x, y, w, h = sc["select"]
            image.select_rectangle(Gimp.ChannelOps.REPLACE, x, y, w, h)
        out["layers_before"] = [layer.get_name() for layer in image.get_layers()]
        if sc.get("marker"):   # the test cancels the run once it has begun
            open(f"{work}/{sc['marker']}", "w").close()
        status, error = run_plugin(image, drawables, **{**args, **({"hint-layer": hint_layer} if hint_layer else {})})
        out.update(status=status, error=error, base_type_after=str(image.get_base_type().value_nick))
        out["layers"] = [dump(layer, f"{sc['name']}_layer{i}") for i, layer in enumerate(image.get_layers())]
        out["source_after"] = dump(base, f"{sc['name']}_source_after")
    except Exception:
        out["exception"] = traceback.format_exc()
    result["scenarios"][sc["name"]] = out

with open(f"{work}/result.json", "w") as f:
    json.dump(result, f, indent=1)
