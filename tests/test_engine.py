import json

import numpy as np
import onnx
import pytest

from chromastyle import engine
from chromastyle.errors import ModelError, UserError

ALL = ["CUDAExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider",
       "CoreMLExecutionProvider", "CPUExecutionProvider"]


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
    m = engine.OnnxModel(tiny_model, device="cpu")
    assert m.info.styles == ["natural", "alpha", "beta"]
    assert m.info.multiple == 8 and m.info.z_dim == 8
    assert m.info.providers == ["CPUExecutionProvider"] and not m.info.notice


def test_cuda_asked_but_cpu_runs_is_reported(tiny_model):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    m = engine.OnnxModel(tiny_model, device="cuda")
    assert m.info.providers == ["CPUExecutionProvider"]
    assert "CUDA was asked for, but CPU runs" in m.info.notice


def test_other_contract_and_corrupt_files_are_refused(tiny_model, tmp_path):
    model = onnx.load(str(tiny_model))
    for p in model.metadata_props:
        if p.key == "chromastyle.contract":
            p.value = "2"
    onnx.save(model, str(tmp_path / "v2.onnx"))
    with pytest.raises(ModelError, match="contract 1"):
        engine.OnnxModel(tmp_path / "v2.onnx")
    (tmp_path / "bad.onnx").write_bytes(tiny_model.read_bytes()[:500])
    with pytest.raises(ModelError, match="corrupt"):
        engine.OnnxModel(tmp_path / "bad.onnx")
    with pytest.raises(ModelError, match="does not exist"):
        engine.OnnxModel(tmp_path / "none.onnx")


def test_parse_metadata_errors():
    with pytest.raises(ModelError, match="broken"):
        engine.parse_metadata({"chromastyle.contract": "1", "chromastyle.styles": "[",
                               "chromastyle.multiple": "8", "chromastyle.z_dim": "8"}, "m")
    info = engine.parse_metadata({"chromastyle.contract": "1", "chromastyle.styles": json.dumps(["natural"]),
                                  "chromastyle.multiple": "8", "chromastyle.z_dim": "4"}, "m")
    assert info.z_dim == 4


def test_torch_engine_runs_checkpoints_like_onnx(tiny_model):
    torch = pytest.importorskip("torch")  # noqa: F841
    ckpt = tiny_model.with_suffix(".pt")
    t = engine.load_model(ckpt)
    o = engine.load_model(tiny_model)
    rng = np.random.default_rng(0)
    L = rng.random((1, 1, 48, 64), np.float32)
    hints = np.zeros((1, 3, 48, 64), np.float32)
    style = np.array([[0.3, 0.7, 0]], np.float32)
    z = rng.standard_normal((1, 8)).astype(np.float32)
    assert np.abs(t.run(L, hints, style, z) - o.run(L, hints, style, z)).max() < 1e-3
