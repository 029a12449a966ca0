"""Fast checks of the GIMP plug-in's argument mapping with a fake `gi` (no GIMP needed)."""
import importlib.util
import sys
import types

import pytest

from conftest import ROOT

PLUGIN = ROOT / "plugins" / "gimp" / "plug-ins" / "chromastyle" / "chromastyle.py"


@pytest.fixture(scope="module")
def plugin():
    gi = types.ModuleType("gi")
    gi.require_version = lambda *a: None
    repo = types.ModuleType("gi.repository")

    class PlugIn:
        pass
    repo.Gimp = types.SimpleNamespace(PlugIn=PlugIn, main=lambda *a: None)
    for name in ("Gegl", "GLib", "GObject"):
        setattr(repo, name, types.SimpleNamespace())
    gi.repository = repo
    saved = {k: sys.modules.get(k) for k in ("gi", "gi.repository", "chromastyle_client", "chromastyle_messages")}
    saved_path = list(sys.path)
    sys.modules.update({"gi": gi, "gi.repository": repo})
    sys.modules["chromastyle_client"] = importlib.import_module("chromastyle.client")
    spec = importlib.util.spec_from_file_location("chromastyle_messages", ROOT / "plugins" / "common" / "messages.py")
    sys.modules["chromastyle_messages"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules["chromastyle_messages"])
    spec = importlib.util.spec_from_file_location("gimp_chromastyle", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path[:] = saved_path
    for k, v in saved.items():
        if v is None:
            sys.modules.pop(k, None)
        else:
            sys.modules[k] = v


class Config:
    def __init__(self, **values):
        self.values = {"style": "natural", "strength": 1.0, "stroke-scale": 1.0, "keep": "none", "tileable": False,
                       "seed": -1, "output": "new-layer", "hint-layer": None, "style-picture": None,
                       "style-picture-file": None, "style-picture-strength": 1.0, **values}

    def get_property(self, name):
        return self.values[name]


def test_argument_mapping(plugin):
    opts, output, hint = plugin.options_from_config(Config())
    assert opts == {"styles": "natural", "keep": "none", "tileable": False, "seed": None, "stroke_scale": 1.0}
    assert output == "new-layer" and hint is None
    opts, _, _ = plugin.options_from_config(Config(style="starry_night", strength=0.4, seed=7, tileable=True,
                                                   keep="colors", **{"stroke-scale": 2.5}))
    assert opts == {"styles": "starry_night:0.4", "keep": "colors", "tileable": True, "seed": 7, "stroke_scale": 2.5}
    opts, _, _ = plugin.options_from_config(Config(style="great_wave:0.3,the_scream:0.5", strength=0.9))
    assert opts["styles"] == "great_wave:0.3,the_scream:0.5"   # an explicit mix is kept as written


@pytest.mark.parametrize("values, message", [({"keep": "all"}, "keep must be"),
                                             ({"output": "file"}, "output must be"),
                                             ({"strength": 2.0}, "between 0 and 1"),
                                             ({"stroke-scale": 0.1}, "stroke scale"),
                                             ({"stroke-scale": 5.0}, "stroke scale")])
def test_bad_arguments(plugin, values, message):
    with pytest.raises(plugin.UserFacingError, match=message):
        plugin.options_from_config(Config(**values))


class Drawable:
    def __init__(self, w, h, intersect):
        self.w, self.h, self.intersect = w, h, intersect

    def mask_intersect(self):
        return self.intersect

    def get_width(self):
        return self.w

    def get_height(self):
        return self.h

    def get_offsets(self):
        return (True, 5, 7)


def test_region_adds_context_and_clips(plugin):
    assert plugin.region(Drawable(500, 400, (True, 0, 0, 500, 400))) == (0, 0, 500, 400)
    assert plugin.region(Drawable(500, 400, (True, 100, 120, 50, 60))) == (36, 56, 178, 188)
    assert plugin.region(Drawable(500, 400, (True, 480, 0, 20, 10))) == (416, 0, 84, 74)
    assert plugin.region(Drawable(500, 400, (False, 0, 0, 0, 0))) is None
    assert plugin.offsets(Drawable(1, 1, None)) == (5, 7)
    assert plugin.pixel_format(True) == ("R'G'B'A u8", "uint8")
    assert plugin.pixel_format(False) == ("R'G'B'A float", "float32")


class Buffer:
    def get(self, rect, scale, fmt, abyss):
        return bytes(4 * rect.w * rect.h)


class File:
    def __init__(self, exists):
        self.exists = exists

    def get_parse_name(self):
        return "/pictures/gone.png"

    def query_exists(self, cancellable):
        return self.exists


class FakeClient:
    def __init__(self):
        self.sent = []

    def style_image(self, pixels, width, height, channels=3, dtype="uint8", colorspace="srgb"):
        self.sent.append((len(pixels), width, height, channels))
        return f"sha256:{len(self.sent)}"


def test_style_picture_arguments(plugin, monkeypatch):
    layer = Drawable(40, 30, None)
    layer.get_buffer = Buffer
    assert plugin.style_pictures_from_config(Config()) == (None, None, 1.0)
    assert plugin.style_pictures_from_config(Config(**{"style-picture": layer, "style-picture-strength": 0.4})) == \
        (layer, None, 0.4)
    with pytest.raises(plugin.UserFacingError, match="strength must be between 0 and 1"):
        plugin.style_pictures_from_config(Config(**{"style-picture-strength": 1.5}))
    monkeypatch.setattr(plugin, "Gegl", types.SimpleNamespace(
        Rectangle=types.SimpleNamespace(new=lambda x, y, w, h: types.SimpleNamespace(w=w, h=h)),
        AbyssPolicy=types.SimpleNamespace(CLAMP=0)))
    c = FakeClient()
    # the whole layer is sent once, as RGBA8, and named with its strength
    assert plugin.send_style_pictures(c, layer, None, 0.4) == [{"id": "sha256:1", "strength": 0.4}]
    assert c.sent == [(40 * 30 * 4, 40, 30, 4)]
    with pytest.raises(plugin.UserFacingError, match="'/pictures/gone.png' does not exist"):
        plugin.send_style_pictures(c, None, File(exists=False), 1.0)
    assert len(c.sent) == 1


@pytest.mark.parametrize("error, says", [
    ("this model cannot take a picture as a style; use one with a describe graph", "cannot use a picture as a style"),
    ("a style picture must be an RGB or gray image of at least 16×16 pixels, got shape (8, 8, 3)",
     "too small: it must be at least 16×16 pixels"),
    ("unknown style picture sha256:0123456789ab…: send it first with POST /v1/style-images", "Run again")])
def test_style_picture_errors_read_well(plugin, error, says):
    """The worker's refusals about style pictures, as the plug-ins (all three share these texts) tell them."""
    e = plugin.client_lib.WorkerError(f"the chromastyle worker refused the request (400): {error}")
    text = plugin.explain(e, "gimp")
    assert says in text and "(400)" not in text and "describe graph" not in text and "POST" not in text
