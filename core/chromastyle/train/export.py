"""Checkpoint -> ONNX file of the model contract (fp32, fp16 or int8)."""
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from ..engine import CONTRACT
from .nets import Generator, GeneratorArgs

DYNAMIC = {"L": {0: "N", 2: "H", 3: "W"}, "hints": {0: "N", 2: "H", 3: "W"},
           "style": {0: "N"}, "z": {0: "N"}, "rgb": {0: "N", 2: "H", 3: "W"}}


def load_generator(ckpt):
    from .loop import load_checkpoint
    ck = load_checkpoint(ckpt)
    net = Generator(GeneratorArgs(**ck["generator_args"])).eval()
    net.load_state_dict(ck["generator"])
    return net, ck


def example_inputs(net, n=1, size=64, style_index=0):
    style = torch.zeros(n, len(net.args.styles))
    style[:, style_index] = 1
    return (torch.rand(n, 1, size, size), torch.zeros(n, 3, size, size), style,
            torch.zeros(n, net.args.z_dim))


def export(ckpt, out, fp16=False, int8=False, opset=17, calibration=None):
    import onnx

    net, ck = load_generator(ckpt)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, example_inputs(net), str(fp32), input_names=["L", "hints", "style", "z"],
                              output_names=["rgb"], opset_version=opset, dynamic_axes=DYNAMIC,
                              dynamo=False)
        model = onnx.load(str(fp32))
        meta = {"chromastyle.contract": CONTRACT, "chromastyle.styles": json.dumps(net.args.styles),
                "chromastyle.multiple": str(net.multiple), "chromastyle.z_dim": str(net.args.z_dim),
                "chromastyle.step": str(ck.get("step", 0)),
                "chromastyle.precision": "int8" if int8 else "fp16" if fp16 else "fp32"}
        if fp16:
            from onnxruntime.transformers.float16 import convert_float_to_float16
            # inputs and outputs stay float32: the contract does not change with precision
            model = convert_float_to_float16(model, keep_io_types=True)
        if int8:
            model = _quantize(model, net, Path(tmp), calibration)
        del model.metadata_props[:]
        for k, v in meta.items():
            model.metadata_props.add(key=k, value=v)
        tmp_out = out.with_name(out.name + ".part")
        onnx.save(model, str(tmp_out))
        os.replace(tmp_out, out)
    return out


def _quantize(model, net, tmp, calibration):
    """Static int8 (QDQ) quantization calibrated on a few inputs of every style."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static

    src, dst = tmp / "src.onnx", tmp / "int8.onnx"
    onnx.save(model, str(src))
    rng = np.random.default_rng(0)
    images = calibration if calibration is not None else rng.random((8, 1, 128, 128), np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            items = []
            for i, L in enumerate(images):
                style = np.zeros((1, len(net.args.styles)), np.float32)
                style[0, i % len(net.args.styles)] = 1
                items.append({"L": L[None].astype(np.float32), "hints": np.zeros((1, 3) + L.shape[-2:], np.float32),
                              "style": style, "z": np.zeros((1, net.args.z_dim), np.float32)})
            self.items = iter(items)

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(src), str(dst), Reader(), weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8, op_types_to_quantize=["Conv"])
    return onnx.load(str(dst))


def register(model_path, registry_path):
    """Write the file's sha256 and size into its entry in a registry.toml (the model's folder
    name is the registry name), keeping the rest of the file as it is."""
    import re

    from ..models import sha256_of

    model_path, registry_path = Path(model_path), Path(registry_path)
    name = model_path.parent.name
    text = registry_path.read_text()
    start = text.find(f'name = "{name}"')
    if start < 0:
        raise ValueError(f"{registry_path} has no model named {name!r}")
    end = text.find("[[model]]", start)
    end = len(text) if end < 0 else end
    entry = text[start:end]
    entry = re.sub(r'sha256 = "[0-9a-f]*"', f'sha256 = "{sha256_of(model_path)}"', entry, count=1)
    entry = re.sub(r"size = \d+", f"size = {model_path.stat().st_size}", entry, count=1)
    registry_path.write_text(text[:start] + entry + text[end:])
