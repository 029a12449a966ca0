import json
import shutil

import numpy as np
import onnx
import pytest

from chromastyle import engine
from chromastyle.errors import ModelError, UserError

ALL = ["CUDAExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider",
       "CoreMLExecutionProvider", "CPUExecutionProvider"]
META = {"chromastyle.contract": "2", "chromastyle.role": "color", "chromastyle.styles": json.dumps(["natural"]),
        "chromastyle.z_dim": "4", "chromastyle.color_size": "256", "chromastyle.stroke_size": "384",
        "chromastyle.color_multiple": "8", "chromastyle.style_multiple": "4",
        "chromastyle.graphs": json.dumps({"color": "color.onnx", "style": "style.onnx"})}


def test_provider_order_and_override():
    assert engine.choose_providers("auto", ALL) == ALL
    assert engine.choose_providers("auto", ["CPUExecutionProvider", "CoreMLExecutionProvider"]) == \
        ["CoreMLExecutionProvider", "CPUExecutionProvider"]
    assert engine.choose_providers("auto", ["AzureExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert engine.choose_providers("cuda", ["CPUExecutionProvider"]) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert engine.choose_providers("cpu", ALL) == ["CPUExecutionProvider"]
    with pytest.raises(UserError, match="unknown device"):
        engine.choose_providers("tpu", ALL)


def test_reads_metadata_and_reports_provider(tiny_model):
    m = engine.Model(tiny_model, device="cpu")
    assert m.info.styles == ["natural", "alpha", "beta"]
    assert (m.info.color_multiple, m.info.style_multiple, m.info.z_dim) == (8, 4, 8)
    assert (m.info.color_size, m.info.stroke_size) == (256, 384)
    assert m.info.providers == ["CPUExecutionProvider"] and not m.info.notice


def test_both_graphs_run_at_any_working_size(tiny_model):
    m = engine.Model(tiny_model, device="cpu")
    rng = np.random.default_rng(0)
    ab = m.colorize(rng.random((1, 1, 48, 64), np.float32), np.zeros((1, 3, 48, 64), np.float32),
                    np.zeros((1, 2, 12, 16), np.float32), np.zeros((1, 8), np.float32))
    assert ab.shape == (1, 2, 48, 64) and np.abs(ab).max() <= 1
    out = m.stylize(rng.random((2, 3, 36, 52), np.float32), np.array([[0, 1, 0], [0.5, 0, 0.5]], np.float32))
    assert out.shape == (2, 3, 36, 52) and 0 <= out.min() and out.max() <= 1


def test_cuda_asked_but_cpu_runs_is_reported(tiny_model):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    m = engine.Model(tiny_model, device="cuda")
    assert m.info.providers == ["CPUExecutionProvider"]
    assert "CUDA was asked for, but CPU runs" in m.info.notice


def test_other_contracts_missing_graphs_and_corrupt_files_are_refused(tiny_model, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(tiny_model.parent, folder)
    model = onnx.load(str(folder / "color.onnx"))
    for p in model.metadata_props:
        if p.key == "chromastyle.contract":
            p.value = "1"
    onnx.save(model, str(folder / "old.onnx"))
    with pytest.raises(ModelError, match="contract 2"):
        engine.Model(folder / "old.onnx")
    with pytest.raises(ModelError, match="contract 2"):   # the style graph is not a main file
        engine.Model(folder / "style.onnx")
    (folder / "bad.onnx").write_bytes((folder / "color.onnx").read_bytes()[:500])
    with pytest.raises(ModelError, match="corrupt"):
        engine.Model(folder / "bad.onnx")
    with pytest.raises(ModelError, match="does not exist"):
        engine.Model(folder / "none.onnx")
    (folder / "describe.onnx").unlink()
    with pytest.raises(ModelError, match="graph describe.onnx that is missing"):
        engine.Model(folder / "color.onnx")
    (folder / "style.onnx").unlink()
    with pytest.raises(ModelError, match="graph style.onnx that is missing"):
        engine.Model(folder / "color.onnx")


def test_parse_metadata_errors():
    with pytest.raises(ModelError, match="broken"):
        engine.parse_metadata({**META, "chromastyle.styles": "["}, "m")
    with pytest.raises(ModelError, match="broken"):
        engine.parse_metadata({k: v for k, v in META.items() if k != "chromastyle.stroke_size"}, "m")
    info, graphs = engine.parse_metadata(META, "m")
    assert info.z_dim == 4 and graphs["style"] == "style.onnx"
