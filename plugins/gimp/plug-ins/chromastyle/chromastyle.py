#!/usr/bin/env python3
"""GIMP 3 plug-in: Filters ▸ Artistic ▸ Colorize & Stylize…

Standard library + GIMP's introspection API + the chromastyle worker client and its messages,
which `chromastyle install gimp` copies next to this file. The model runs in the worker process.

Every selected layer goes through the worker before the image is touched, so a failed or cancelled
run leaves the image exactly as it was.
"""
import os
import signal
import sys
import traceback

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, GLib, GObject  # noqa: E402

import chromastyle_client as client_lib  # noqa: E402  (next to this file: GIMP runs it as a script)
from chromastyle_messages import explain  # noqa: E402

PROC = "plug-in-chromastyle"
KEEP = ("none", "luminance", "colors")
OUTPUTS = ("new-layer", "replace")
STROKE_SCALE = (0.25, 4.0)   # a style's brush strokes, relative to the picture
CONTEXT = 64  # pixels of context around a selection, so colours near its edge are judged well


class UserFacingError(Exception):
    """Returned as the PDB error, which GIMP shows; never a traceback."""


def options_from_config(config):
    """Procedure arguments -> (worker options, output mode, hint layer)."""
    style = (config.get_property("style") or "natural").strip()
    strength = float(config.get_property("strength"))
    keep = config.get_property("keep") or "none"
    output = config.get_property("output") or "new-layer"
    if keep not in KEEP:
        raise UserFacingError(f"keep must be one of {', '.join(KEEP)}, not '{keep}'")
    if output not in OUTPUTS:
        raise UserFacingError(f"output must be new-layer or replace, not '{output}'")
    if not 0.0 <= strength <= 1.0:
        raise UserFacingError("strength must be between 0 and 1")
    stroke_scale = float(config.get_property("stroke-scale"))
    if not STROKE_SCALE[0] <= stroke_scale <= STROKE_SCALE[1]:
        raise UserFacingError("the stroke scale must be between 0.25 and 4")
    styles = style if (":" in style or "," in style or style == "natural") else f"{style}:{strength:g}"
    seed = int(config.get_property("seed"))
    options = {"styles": styles, "keep": keep, "tileable": bool(config.get_property("tileable")),
               "seed": None if seed < 0 else seed, "stroke_scale": stroke_scale}
    return options, output, config.get_property("hint-layer")


def style_pictures_from_config(config):
    """Procedure arguments -> (style picture layer or None, style picture file or None, strength)."""
    strength = float(config.get_property("style-picture-strength"))
    if not 0.0 <= strength <= 1.0:
        raise UserFacingError("the style picture's strength must be between 0 and 1")
    return config.get_property("style-picture"), config.get_property("style-picture-file"), strength


def drawable_rgba8(drawable):
    """A whole drawable as RGBA8 bytes (the worker keeps style pictures 8-bit anyway)."""
    w, h = drawable.get_width(), drawable.get_height()
    r = Gegl.Rectangle.new(0, 0, w, h)
    return bytes(drawable.get_buffer().get(r, 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.CLAMP)), w, h


def file_rgba8(file):
    """An image file, as GIMP opens it (any format it reads), flattened to RGBA8 bytes; the image is
    closed again."""
    name = file.get_parse_name()
    if not file.query_exists(None):
        raise UserFacingError(f"the style picture file '{name}' does not exist; choose another file")
    try:
        picture = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, file)
        why = None if picture else Gimp.get_pdb().get_last_error()
    except GLib.Error as e:   # a failed PDB call may raise instead of returning None
        picture, why = None, e.message
    if picture is None:
        raise UserFacingError(f"GIMP could not open the style picture '{name}' ({why}); choose an image file")
    try:
        return drawable_rgba8(picture.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE))
    finally:
        picture.delete()


def send_style_pictures(c, layer, file, strength):
    """Send the style picture(s) to the worker once; -> the options' style_images entries."""
    pictures = ([drawable_rgba8(layer)] if layer is not None else []) + ([file_rgba8(file)] if file is not None else [])
    return [{"id": c.style_image(pixels, w, h, 4), "strength": strength} for pixels, w, h in pictures]


def pixel_format(precision_is_8bit):
    """GEGL format and the worker dtype for reading/writing a drawable."""
    return ("R'G'B'A u8", "uint8") if precision_is_8bit else ("R'G'B'A float", "float32")


def region(drawable, context=CONTEXT):
    """The part of the layer to process: the selection's bounds plus some context (the whole
    layer when nothing is selected), or None when the selection misses the layer."""
    ok, x, y, w, h = drawable.mask_intersect()
    if not ok:
        return None
    x0, y0 = max(0, x - context), max(0, y - context)
    x1 = min(drawable.get_width(), x + w + context)
    y1 = min(drawable.get_height(), y + h + context)
    return x0, y0, x1 - x0, y1 - y0


def offsets(item):
    """(x, y) of a layer in the image; PyGObject returns (ok, x, y)."""
    result = item.get_offsets()
    return tuple(result[-2:])


def read_hints(hint_layer, drawable, rect):
    """RGBA8 bytes of the hint layer over the drawable's rect (transparent outside it)."""
    if hint_layer is None:
        return None
    (dx, dy), (hx, hy) = offsets(drawable), offsets(hint_layer)
    x, y, w, h = rect
    r = Gegl.Rectangle.new(x + dx - hx, y + dy - hy, w, h)
    return bytes(hint_layer.get_buffer().get(r, 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.NONE))


class ChromaStyle(Gimp.PlugIn):
    def do_query_procedures(self):
        return [PROC]

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        proc = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run, None)
        proc.set_image_types("RGB*, GRAY*")
        proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE | Gimp.ProcedureSensitivityMask.DRAWABLES)
        proc.set_menu_label("Colorize & Stylize…")
        proc.add_menu_path("<Image>/Filters/Artistic/")
        proc.set_documentation(
            "Colorize and stylize layers with the chromastyle GAN",
            "Colorizes gray layers (optionally guided by colour hints painted on a hint layer) and "
            "transfers a painting's style, in one pass of one model run by the local chromastyle worker.",
            name)
        proc.set_attribution("chromastyle authors", "chromastyle authors", "2026")
        rw = GObject.ParamFlags.READWRITE
        proc.add_string_argument("style", "_Style", "Style slug (see `chromastyle styles`), or a mix "
                                 "'a:0.6,b:0.4'", "natural", rw)
        proc.add_double_argument("strength", "S_trength", "How strongly the style applies", 0.0, 1.0, 1.0, rw)
        proc.add_double_argument("stroke-scale", "Stroke s_cale", "Size of the style's brush strokes relative "
                                 "to the picture", *STROKE_SCALE, 1.0, rw)
        proc.add_layer_argument("hint-layer", "_Hint layer", "Layer whose painted pixels are colour hints",
                                True, rw)
        proc.add_string_argument("keep", "_Keep", "none | luminance (pure colorization) | colors "
                                 "(stylize lightness only)", "none", rw)
        proc.add_boolean_argument("tileable", "T_ileable", "Keep a seamless texture seamless", False, rw)
        proc.add_int_argument("seed", "S_eed", "Variation seed; -1 for the canonical result", -1, 2 ** 31 - 1, -1, rw)
        proc.add_string_argument("output", "_Output", "new-layer | replace", "new-layer", rw)
        proc.add_drawable_argument("style-picture", "Style _picture", "A layer of any open image to use as a style",
                                   True, rw)
        proc.add_file_argument("style-picture-file", "Style picture _file", "An image file to use as a style",
                               Gimp.FileChooserAction.OPEN, True, None, rw)
        proc.add_double_argument("style-picture-strength", "Style picture st_rength",
                                 "How strongly the style picture applies (it mixes with the style above)",
                                 0.0, 1.0, 1.0, rw)
        return proc

    def run(self, procedure, run_mode, image, drawables, config, run_data):
        try:
            if run_mode == Gimp.RunMode.INTERACTIVE and not self.dialog(procedure, config):
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
            options, output, hint_layer = options_from_config(config)
            style_layer, style_file, style_strength = style_pictures_from_config(config)
            layers = [d for d in drawables if isinstance(d, Gimp.Layer) and d not in (hint_layer, style_layer)]
            if not layers:
                raise UserFacingError("select at least one layer (other than the hint layer and the style picture) "
                                      "to process")
            if style_layer is not None or style_file is not None:
                options["style_images"] = send_style_pictures(worker(), style_layer, style_file, style_strength)
            process(image, layers, options, output, hint_layer)
        except Exception as e:  # a message a person can read; a bug's traceback goes to GIMP's terminal output
            if not isinstance(e, (UserFacingError, client_lib.WorkerError)):
                traceback.print_exc()
            # GIMP shows the returned message itself ("Execution error for 'Colorize & Stylize…': …")
            message = explain(e, "gimp", _worker)
            return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error.new_literal(
                GLib.quark_from_string("chromastyle"), message, 0))
        return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())

    def dialog(self, procedure, config):
        gi.require_version("GimpUi", "3.0")
        gi.require_version("Gtk", "3.0")
        from gi.repository import GimpUi, Gtk

        GimpUi.init("chromastyle")
        dlg = GimpUi.ProcedureDialog.new(procedure, config, "Colorize & Stylize")
        try:  # the styles the worker's model knows, as a drop-down bound to the "style" argument
            styles = worker().styles()
            store = Gtk.ListStore(str, str)
            for s in styles:
                store.append([s["slug"], s["name"]])
            combo = GimpUi.prop_string_combo_box_new(config, "style", store, 0, 1)
            box = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
            box.pack_start(Gtk.Label(label="Style"), False, False, 0)
            box.pack_start(combo, True, True, 0)
            box.show_all()
            dlg.get_content_area().pack_start(box, False, False, 6)
            dlg.fill(["strength", "stroke-scale", "hint-layer", "keep", "tileable", "seed", "output",
                      "style-picture", "style-picture-file", "style-picture-strength"])
        except client_lib.WorkerError as e:
            Gimp.message(f"Colorize & Stylize: {explain(e, 'gimp', _worker)}")
            dlg.fill(None)
        ok = dlg.run()
        dlg.destroy()
        return ok


_worker = None


def worker():
    global _worker
    if _worker is None:
        _worker = client_lib.Client()
        _worker.connect()
    return _worker


def process(image, layers, options, output, hint_layer):
    """Every selected layer through the worker first; then, in one undo group, the image changes:
    only the selection, and a gray image becomes RGB."""
    c = worker()
    eight_bit = image.get_precision() in (Gimp.Precision.U8_LINEAR, Gimp.Precision.U8_NON_LINEAR,
                                          Gimp.Precision.U8_PERCEPTUAL)
    fmt, dtype = pixel_format(eight_bit)   # GEGL reads gray layers as RGBA too
    results = []
    for i, source in enumerate(layers):
        rect = region(source)
        if rect is not None:
            results.append((source, rect, run_layer(c, source, rect, fmt, dtype, options, hint_layer, i, len(layers))))
    image.undo_group_start()
    try:
        if image.get_base_type() == Gimp.ImageBaseType.GRAY:
            image.convert_rgb()   # the results have colour; inside the same undo group
        for source, rect, out in results:
            target = source
            if output == "new-layer":
                target = source.copy()
                picture = " + style picture" if options.get("style_images") else ""
                target.set_name(f"{source.get_name()} ({options['styles']}{picture})")
                image.insert_layer(target, source.get_parent(), image.get_item_position(source))
            write_layer(target, rect, fmt, out)
    finally:
        image.undo_group_end()
        Gimp.displays_flush()


def run_layer(c, source, rect, fmt, dtype, options, hint_layer, index, total):
    """The worker's result for ``rect`` of the layer (the image is not touched)."""
    x, y, w, h = rect
    r = Gegl.Rectangle.new(x, y, w, h)
    pixels = bytes(source.get_buffer().get(r, 1.0, fmt, Gegl.AbyssPolicy.CLAMP))
    hints = read_hints(hint_layer, source, rect)
    Gimp.progress_init(f"Colorize & Stylize: {source.get_name()}")

    def progress(p, stage):
        Gimp.progress_update((index + p) / total)

    def on_term(*_):  # GIMP ends a plug-in whose progress was cancelled: cancel the job first
        if c.current_job:
            c.cancel(c.current_job)
        os._exit(1)
    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        out = c.run(pixels, w, h, 4, dtype, options, hints, progress=progress)
    except BaseException:
        # a cancelled progress bar makes GIMP's calls fail: take the worker's job down with us
        if c.current_job:
            try:
                c.cancel(c.current_job)
            except client_lib.WorkerError:
                pass
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    return out


def write_layer(target, rect, fmt, out):
    x, y, w, h = rect
    r = Gegl.Rectangle.new(x, y, w, h)
    shadow = target.get_shadow_buffer()
    shadow.set(r, fmt, out)
    shadow.flush()
    target.merge_shadow(True)   # applies the selection mask: only the selection changes
    target.update(x, y, w, h)


if __name__ == "__main__":
    Gimp.main(ChromaStyle.__gtype__, sys.argv)
