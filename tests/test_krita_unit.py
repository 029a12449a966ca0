"""Fast checks of the Krita plug-in's pure parts (options, pixel formats) without Krita."""
import importlib.util
import struct

import pytest

from conftest import ROOT

PKG = ROOT / "plugins" / "krita" / "chromastyle"


def load(name):
    spec = importlib.util.spec_from_file_location(f"krita_chromastyle_{name}", PKG / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


options = load("options")
pixels = load("pixels")


def test_option_mapping():
    assert options.worker_options({}) == {"styles": "natural", "keep": "none", "tileable": False, "seed": None,
                                          "stroke_scale": 1.0}
    assert options.worker_options({"style": "the_scream", "strength": 0.25, "seed": 4, "keep": "luminance",
                                   "stroke_scale": 2.5}) == \
        {"styles": "the_scream:0.25", "keep": "luminance", "tileable": False, "seed": 4, "stroke_scale": 2.5}
    with pytest.raises(options.OptionError):
        options.worker_options({"strength": 3})
    with pytest.raises(options.OptionError):
        options.worker_options({"keep": "both"})
    for bad in (0.2, 4.5):
        with pytest.raises(options.OptionError, match="stroke scale"):
            options.worker_options({"stroke_scale": bad})


class FakeKrita:
    def __init__(self):
        self.store = {}

    def readSetting(self, group, key, default):
        return self.store.get((group, key), default)

    def writeSetting(self, group, key, value):
        self.store[(group, key)] = value


def test_settings_round_trip():
    k = FakeKrita()
    s = {**options.DEFAULTS, "style": "great_wave", "strength": 0.5, "tileable": True, "seed": 9, "stroke_scale": 0.5}
    options.save(k, s)
    assert options.load(k) == s


def test_pixel_formats_round_trip():
    bgra8 = bytes([10, 20, 30, 40, 50, 60, 70, 80])
    rgba, channels, dtype = pixels.to_worker(bgra8, "RGBA", "U8")
    assert (rgba, channels, dtype) == (bytes([30, 20, 10, 40, 70, 60, 50, 80]), 4, "uint8")
    assert pixels.from_worker(rgba, "U8") == bgra8
    bgra16 = struct.pack("<8H", 1, 2, 3, 4, 500, 600, 700, 800)
    rgba16, _, dtype = pixels.to_worker(bgra16, "RGBA", "U16")
    assert dtype == "uint16" and struct.unpack("<8H", rgba16) == (3, 2, 1, 4, 700, 600, 500, 800)
    f32 = struct.pack("<4f", 0.1, 0.2, 0.3, 1.0)
    assert pixels.to_worker(f32, "RGBA", "F32") == (f32, 4, "float32")
    assert pixels.to_worker(b"\x10\xff" * 3, "GRAYA", "U8") == (b"\x10\xff" * 3, 2, "uint8")
    with pytest.raises(pixels.UnsupportedLayer, match="not supported"):
        pixels.to_worker(b"", "RGBA", "F16")
    with pytest.raises(pixels.UnsupportedLayer, match="not supported"):
        pixels.to_worker(b"", "CMYKA", "U8")


def test_linear_profiles_are_sent_as_linear():
    """Krita's 16-bit and float documents default to linear (g10) profiles."""
    assert pixels.colorspace("Gray-D50-elle-V2-g10.icc") == "linear"
    assert pixels.colorspace("sRGB-elle-V2-g10.icc") == "linear"
    assert pixels.colorspace("sRGB-elle-V2-srgbtrc.icc") == "srgb"
    assert pixels.colorspace("") == "srgb"


def test_selection_masks_alpha():
    data = bytes([1, 2, 3, 255, 4, 5, 6, 200])
    assert pixels.mask_alpha(data, bytes([255, 0]), "U8") == bytes([1, 2, 3, 255, 4, 5, 6, 0])
    f = struct.pack("<8f", 0, 0, 0, 1.0, 0, 0, 0, 1.0)
    out = struct.unpack("<8f", pixels.mask_alpha(f, bytes([0, 255]), "F32"))
    assert out[3] == 0 and out[7] == pytest.approx(1.0)


def test_style_reference_settings():
    assert options.DEFAULTS["style_layer"] == "" and options.DEFAULTS["style_layer_strength"] == 1.0
    # the reference is sent by the runner; the options only check its strength
    assert "style_images" not in options.worker_options({"style_layer": "painting", "style_layer_strength": 0.5})
    for bad in (-0.1, 1.5):
        with pytest.raises(options.OptionError, match="style reference's strength"):
            options.worker_options({"style_layer": "painting", "style_layer_strength": bad})
    k = FakeKrita()
    options.save(k, {**options.DEFAULTS, "style_layer": "painting", "style_layer_strength": 0.25})
    assert options.load(k)["style_layer"] == "painting" and options.load(k)["style_layer_strength"] == 0.25

