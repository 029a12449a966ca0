"""Fast checks of the Blender extension's option mapping with a fake `bpy` (no Blender needed), on the
bundle `chromastyle install blender` builds."""
import importlib.util
import sys
import types
import zipfile

import pytest

from chromastyle import install


@pytest.fixture(scope="module")
def extension(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundle")
    with zipfile.ZipFile(install.build_blender_zip(folder)) as z:
        z.extractall(folder / "chromastyle_blender")
    prop = lambda **kw: kw  # noqa: E731
    bpy = types.ModuleType("bpy")
    bpy.props = types.SimpleNamespace(**{name: prop for name in (
        "BoolProperty", "EnumProperty", "FloatProperty", "IntProperty", "PointerProperty", "StringProperty")})
    bpy.types = types.SimpleNamespace(PropertyGroup=object, Operator=object, Panel=object, Image=object)
    saved = {k: sys.modules.get(k) for k in ("bpy", "bpy.props")}
    sys.modules.update({"bpy": bpy, "bpy.props": bpy.props})
    spec = importlib.util.spec_from_file_location("chromastyle_blender", folder / "chromastyle_blender" / "__init__.py",
                                                  submodule_search_locations=[str(folder / "chromastyle_blender")])
    module = importlib.util.module_from_spec(spec)
    sys.modules["chromastyle_blender"] = module
    spec.loader.exec_module(module)
    yield module
    for name in [n for n in sys.modules if n == "chromastyle_blender" or n.startswith("chromastyle_blender.")]:
        del sys.modules[name]
    for k, v in saved.items():
        if v is None:
            sys.modules.pop(k, None)
        else:
            sys.modules[k] = v


def settings(**values):
    return types.SimpleNamespace(**{"style": "natural", "strength": 1.0, "keep": "none", "seed": -1,
                                    "stroke_scale": 1.0, "style_image": None, "style_image_strength": 1.0, **values})


def test_option_mapping(extension):
    assert extension.worker_options(settings()) == {"styles": "natural", "keep": "none", "tileable": False,
                                                    "seed": None, "stroke_scale": 1.0}
    assert extension.worker_options(settings(style="great_wave", strength=0.5, seed=3, keep="colors",
                                             stroke_scale=2.5), tileable=True) == \
        {"styles": "great_wave:0.5", "keep": "colors", "tileable": True, "seed": 3, "stroke_scale": 2.5}


def test_stroke_scale_property_is_bounded(extension):
    prop = extension.ChromastyleSettings.__annotations__["stroke_scale"]
    assert (prop["min"], prop["max"], prop["default"]) == (0.25, 4.0, 1.0)


def test_style_picture_is_sent_once_and_named(extension, monkeypatch):
    sent = []
    worker = types.SimpleNamespace(style_image=lambda data, w, h, channels, dtype, colorspace:
                                   sent.append((w, h, channels, dtype, colorspace)) or f"sha256:{len(sent)}")
    monkeypatch.setattr(extension, "client", lambda: worker)
    monkeypatch.setattr(extension, "read_image", lambda image: (bytes(20 * 10 * 16), 20, 10, "linear"))
    painting = types.SimpleNamespace(name="painting", type="IMAGE", size=(20, 10))
    assert "style_images" not in extension.run_options(settings())
    options = extension.run_options(settings(style_image=painting, style_image_strength=0.5))
    assert options["style_images"] == [{"id": "sha256:1", "strength": 0.5}]
    assert sent == [(20, 10, 4, "float32", "linear")]   # float images are scene-linear
    # the operator's property names an image instead of the sidebar's
    monkeypatch.setattr(extension.bpy, "data", types.SimpleNamespace(images={"other": painting}), raising=False)
    assert extension.run_options(settings(), picture="other")["style_images"][0]["id"] == "sha256:2"
    with pytest.raises(ValueError, match="no image 'gone' to use as the style picture"):
        extension.run_options(settings(style_image=painting), picture="gone")
    ghost = types.SimpleNamespace(name="ghost", type="IMAGE", size=(0, 0))
    with pytest.raises(ValueError, match="'ghost' has no pixels"):
        extension.run_options(settings(style_image=ghost))
    assert len(sent) == 2


def test_style_picture_strength_is_bounded(extension):
    prop = extension.ChromastyleSettings.__annotations__["style_image_strength"]
    assert (prop["min"], prop["max"], prop["default"]) == (0.0, 1.0, 1.0)
