"""Checkpoints -> a model folder of the contract (version 2): color.onnx (the main file, with the
model's metadata), style.onnx and describe.onnx (an example picture -> its style descriptor)."""
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from ..engine import CONTRACT
from ..errors import UserError
from .loop import load_checkpoint
from .nets import ColorArgs, ColorNet, StyleArgs, StyleEncoder, StyleNet

COLOR_SIZE = 256   # long side of the colour graph's working picture (what it was trained at)


def load_color(ckpt, **overrides):
    """The colour network of a decoder checkpoint, with the frozen encoder; ``overrides`` may set
    the decoding (temperature, class_mix, neutral_ends)."""
    ck = load_checkpoint(ckpt)
    net = ColorNet(ColorArgs(**{**ck["args"], **overrides})).eval()
    net.decoder.load_state_dict(ck["net"])
    if "class_weights" in ck:
        net.decoder.set_class_weights(ck["class_weights"])
    elif net.args.neutral_ends:
        raise UserError(f"{ckpt} has no class weights, which the neutral ends decoding needs")
    return net, ck


def load_style(ckpt):
    ck = load_checkpoint(ckpt)
    args = StyleArgs(**{**ck["args"], "widths": tuple(ck["args"]["widths"])})
    net = StyleNet(args).eval()
    net.load_state_dict(ck["net"])
    return net, ck


def _to_onnx(net, inputs, names, output, dynamic, path, opset):
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, inputs, str(path), input_names=names, output_names=[output],
                          opset_version=opset, dynamic_axes=dynamic, dynamo=False)


def store_fp16(model, min_size=4096):
    """Store large float32 weights as float16, each followed by a Cast back to float32: the file
    halves, and ONNX Runtime folds the casts when it loads the graph, so it still computes in
    float32 (fast on CPUs) with weights rounded to float16."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    casts = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < min_size:
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), name + "_fp16"))
        casts.append(helper.make_node("Cast", [name + "_fp16"], [name], to=TensorProto.FLOAT))
    for i, node in enumerate(casts):
        graph.node.insert(i, node)
    return model


def export(color_ckpt, style_ckpt, out_dir, fp16=True, opset=17, **decoding):
    """Write OUT_DIR/color.onnx, style.onnx and describe.onnx; ``decoding`` may set temperature,
    class_mix and neutral_ends. Returns the main file's path."""
    import onnx

    color, color_ck = load_color(color_ckpt, **decoding)
    style, style_ck = load_style(style_ckpt)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = 1
    z_dim = color.args.z_dim
    meta = {
        "chromastyle.contract": CONTRACT,
        "chromastyle.graphs": json.dumps({"color": "color.onnx", "style": "style.onnx",
                                          "describe": "describe.onnx"}),
        "chromastyle.styles": json.dumps(style.args.styles),
        "chromastyle.held_out_styles": json.dumps(style_ck.get("config", {}).get("holdout", [])),
        "chromastyle.z_dim": str(z_dim),
        "chromastyle.color_size": str(COLOR_SIZE),
        "chromastyle.stroke_size": str(style.args.stroke_size),
        "chromastyle.color_multiple": str(color.multiple),
        "chromastyle.style_multiple": str(style.multiple),
        "chromastyle.encoder": "vgg16-pretrained" if color.args.pretrained else "vgg16-random",
        "chromastyle.temperature": str(color.args.temperature),
        "chromastyle.class_mix": str(color.args.class_mix),
        "chromastyle.neutral_ends": str(color.args.neutral_ends).lower(),
        "chromastyle.steps": json.dumps({"color": color_ck.get("step", 0), "style": style_ck.get("step", 0)}),
    }
    hw = {0: "N", 2: "H", 3: "W"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _to_onnx(color, (torch.rand(n, 1, 64, 64), torch.zeros(n, 3, 64, 64), torch.zeros(n, 2, 16, 16),
                         torch.zeros(n, z_dim)),
                 ["L", "hints", "propagated", "z"], "ab",
                 {"L": hw, "hints": hw, "propagated": hw, "z": {0: "N"}, "ab": hw}, tmp / "color.onnx", opset)
        s, d = len(style.args.styles), style.args.descriptor_dim
        _to_onnx(style, (torch.rand(n, 3, 64, 64), torch.full((n, s), 0.5 / s), torch.rand(n, d),
                         torch.full((n, 1), 0.5)),
                 ["image", "style", "example", "example_weight"], "rgb",
                 {"image": hw, "style": {0: "N"}, "example": {0: "N"}, "example_weight": {0: "N"}, "rgb": hw},
                 tmp / "style.onnx", opset)
        _to_onnx(StyleEncoder(style.args).eval(), (torch.rand(1, 3, 64, 64),), ["image"], "descriptor",
                 {"image": hw, "descriptor": {0: "N"}}, tmp / "describe.onnx", opset)
        for name, role in (("color.onnx", "color"), ("style.onnx", "style"), ("describe.onnx", "describe")):
            model = onnx.load(str(tmp / name))
            if fp16:
                store_fp16(model)
            del model.metadata_props[:]
            props = meta if role == "color" else {"chromastyle.contract": CONTRACT}
            for k, v in {**props, "chromastyle.role": role,
                         "chromastyle.precision": "fp16-weights" if fp16 else "fp32"}.items():
                model.metadata_props.add(key=k, value=v)
            part = out_dir / (name + ".part")
            onnx.save(model, str(part))
            os.replace(part, out_dir / name)
    return out_dir / "color.onnx"


def register(model_dir, registry_path):
    """Write each file's sha256 and size into the registry.toml entry named like the model's folder,
    keeping the rest of the file as it is."""
    import re

    from ..models import sha256_of

    model_dir, registry_path = Path(model_dir), Path(registry_path)
    name = model_dir.name
    text = registry_path.read_text()
    start = text.find(f'name = "{name}"')
    if start < 0:
        raise ValueError(f"{registry_path} has no model named {name!r}")
    end = text.find("[[model]]", start)
    end = len(text) if end < 0 else end
    entry = text[start:end]
    for path in sorted(model_dir.glob("*.onnx")):
        block = re.search(rf'\[\[model\.files\]\]\s*name = "{re.escape(path.name)}".*?(?=\[\[|\[model\.|\Z)',
                          entry, re.S)
        if not block:
            raise ValueError(f"{registry_path}: model {name!r} lists no file {path.name!r}")
        new = re.sub(r'sha256 = "[0-9a-f]*"', f'sha256 = "{sha256_of(path)}"', block.group(0), count=1)
        new = re.sub(r"size = \d+", f"size = {path.stat().st_size}", new, count=1)
        entry = entry[:block.start()] + new + entry[block.end():]
    registry_path.write_text(text[:start] + entry + text[end:])


def decoding_sweep(color_ckpt, photos, temperatures=(0.2, 0.3, 0.38, 0.5, 0.7, 1.0), mixes=(0.5, 0.75, 1.0),
                   neutral_ends=False):
    """PSNR (8-bit RGB, input luminance kept) and colourfulness without hints for each decoding of
    a colour checkpoint on ``photos`` (H×W×3 in [0, 1]), to choose the temperature and class mix at
    export. Returns {(temperature, mix): (psnr, colourfulness)}, the photos' colourfulness and the
    PSNR of a gray image (a*b* = 0)."""
    import torch.nn.functional as F

    from .. import metrics as M
    from ..color import lab_to_rgb, rgb_to_lab
    from ..guided import guided_upsample
    from .nets import encoder_features

    net, _ = load_color(color_ckpt, neutral_ends=neutral_ends)
    scores = {(t, m): [] for t in temperatures for m in mixes}
    truth, gray = [], []
    for rgb in photos:
        lab = rgb_to_lab(rgb.astype(np.float64))
        L = (lab[..., 0] / 100).astype(np.float32)
        truth.append(M.colorfulness(rgb))
        gray.append(M.psnr(M.to_uint8(M.with_luminance(np.repeat(rgb.mean(-1, keepdims=True), 3, -1), lab[..., 0])),
                           M.to_uint8(rgb)))
        x = torch.from_numpy(L)[None, None]
        with torch.no_grad():
            heads = net.decoder(encoder_features(net.encoder, x), x, torch.zeros(1, 3, *L.shape),
                                torch.zeros(1, 2, L.shape[0] // 4, L.shape[1] // 4), torch.zeros(1, net.args.z_dim))
            for t, m in scores:
                ab = F.interpolate(net.decoder.decode(*heads, x, t, m), scale_factor=4.0, mode="bilinear",
                                   align_corners=False)[0].numpy().transpose(1, 2, 0)
                ab = guided_upsample(L, L, ab) * 110
                out = np.clip(lab_to_rgb(np.concatenate([lab[..., :1], ab], -1)), 0, 1)
                scores[t, m].append((M.psnr(M.to_uint8(out), M.to_uint8(rgb)), M.colorfulness(out)))
    return {k: tuple(np.mean(v, 0)) for k, v in scores.items()}, float(np.mean(truth)), float(np.mean(gray))
