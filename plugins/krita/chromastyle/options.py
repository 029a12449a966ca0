"""Docker settings -> worker options; kept in Krita's settings between sessions."""
KEEP = ("none", "luminance", "colors")
DEFAULTS = {"style": "natural", "strength": 1.0, "hint_layer": "", "keep": "none", "tileable": False,
            "seed": -1, "stroke_scale": 1.0, "frames": "keyframes", "style_layer": "", "style_layer_strength": 1.0}
STROKE_SCALE = (0.25, 4.0)   # a style's brush strokes, relative to the picture


class OptionError(Exception):
    pass


def worker_options(settings):
    s = {**DEFAULTS, **settings}
    strength = float(s["strength"])
    if not 0 <= strength <= 1:
        raise OptionError("strength must be between 0 and 1")
    if s["keep"] not in KEEP:
        raise OptionError(f"keep must be one of {', '.join(KEEP)}")
    if not 0 <= float(s["style_layer_strength"]) <= 1:
        raise OptionError("the style reference's strength must be between 0 and 1")
    stroke_scale = float(s["stroke_scale"])
    if not STROKE_SCALE[0] <= stroke_scale <= STROKE_SCALE[1]:
        raise OptionError("the stroke scale must be between 0.25 and 4")
    style = str(s["style"]).strip() or "natural"
    styles = style if (style == "natural" or ":" in style or "," in style) else f"{style}:{strength:g}"
    seed = int(s["seed"])
    return {"styles": styles, "keep": s["keep"], "tileable": bool(s["tileable"]),
            "seed": None if seed < 0 else seed, "stroke_scale": stroke_scale}


def load(krita):
    out = dict(DEFAULTS)
    for key, default in DEFAULTS.items():
        raw = krita.readSetting("chromastyle", key, str(default))
        try:
            out[key] = type(default)(raw) if not isinstance(default, bool) else raw == "True"
        except ValueError:
            pass
    return out


def save(krita, settings):
    for key, value in settings.items():
        if key in DEFAULTS:
            krita.writeSetting("chromastyle", key, str(value))
