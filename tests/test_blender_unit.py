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
    bpy.types = types.SimpleNamespace(PropertyGroup=object, Operator=object, Panel=object)
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
                                    "stroke_scale": 1.0, **values})


def test_option_mapping(extension):
    assert extension.worker_options(settings()) == {"styles": "natural", "keep": "none", "tileable": False,
                                                    "seed": None, "stroke_scale": 1.0}
    assert extension.worker_options(settings(style="great_wave", strength=0.5, seed=3, keep="colors",
                                             stroke_scale=2.5), tileable=True) == \
        {"styles": "great_wave:0.5", "keep": "colors", "tileable": True, "seed": 3, "stroke_scale": 2.5}


def test_stroke_scale_property_is_bounded(extension):
    prop = extension.ChromastyleSettings.__annotations__["stroke_scale"]
    assert (prop["min"], prop["max"], prop["default"]) == (0.25, 4.0, 1.0)
