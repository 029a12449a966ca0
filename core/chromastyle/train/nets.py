"""The generator (colorize + stylize in one pass) and the multi-scale discriminator.

No layer uses statistics over the image (no batch, instance or group norm): every
output pixel depends only on its receptive field and on the style/z vector, so tiles
computed separately agree wherever their receptive fields agree, and tiled inference
has no seams. Style and z enter through FiLM (a per-channel scale and shift computed
from the condition vector), the spatially uniform part of conditional instance norm.
"""
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..color import lab_to_rgb, rgb_to_lab

AB_SCALE = 110.0  # contract: hints carry a*/110, b*/110


def ab_bins(step=10.0):
    """Centres of the quantized a*b* bins that some sRGB colour reaches (Zhang et al. 2016)."""
    grid = np.arange(-110 + step / 2, 110, step)
    a, b = np.meshgrid(grid, grid, indexing="ij")
    lum = np.linspace(5, 95, 46)
    lab = np.stack(np.broadcast_arrays(lum[:, None, None], a[None], b[None]), -1)
    rgb = lab_to_rgb(lab)
    # a cell counts as in gamut when some lightness puts its centre (nearly) inside sRGB
    inside = ((rgb > -0.02) & (rgb < 1.02)).all(-1).any(0)
    return np.stack([a[inside], b[inside]], -1).astype(np.float32)


@dataclass
class GeneratorArgs:
    styles: list = field(default_factory=lambda: ["natural"])
    z_dim: int = 8
    widths: tuple = (16, 32, 64, 96)
    res_blocks: int = 4
    cond_dim: int = 64
    bin_step: float = 10.0
    temperature: float = 0.38   # annealed mean of the ab distribution (Zhang et al. 2016)
    class_mix: float = 0.5      # output ab = mix * annealed class mean + (1 - mix) * regression

    def to_dict(self):
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d


class FiLMConv(nn.Module):
    """conv -> per-channel scale/shift from the condition -> LeakyReLU."""

    def __init__(self, cin, cout, cond_dim, stride=1, dilation=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation)
        self.film = nn.Linear(cond_dim, 2 * cout)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.act = act

    def forward(self, x, cond):
        gamma, beta = self.film(cond)[:, :, None, None].chunk(2, 1)
        x = self.conv(x) * (1 + gamma) + beta
        return F.leaky_relu(x, 0.2) if self.act else x


class ResBlock(nn.Module):
    def __init__(self, ch, cond_dim, dilation):
        super().__init__()
        self.a = FiLMConv(ch, ch, cond_dim, dilation=dilation)
        self.b = FiLMConv(ch, ch, cond_dim, dilation=dilation, act=False)
        self.scale = nn.Parameter(torch.tensor(0.1))

    def forward(self, x, cond):
        return x + self.scale * self.b(self.a(x, cond), cond)


class Generator(nn.Module):
    """(L, hints, style, z) -> sRGB, as in the model contract; also returns the heads for the losses."""

    multiple = 8

    def __init__(self, args: GeneratorArgs):
        super().__init__()
        self.args = args
        w0, w1, w2, w3 = args.widths
        c = args.cond_dim
        self.cond = nn.Sequential(nn.Linear(len(args.styles) + args.z_dim, c), nn.LeakyReLU(0.2),
                                  nn.Linear(c, c), nn.LeakyReLU(0.2))
        self.e1 = FiLMConv(4, w0, c)
        self.e2 = FiLMConv(w0, w1, c, stride=2)
        self.e2b = FiLMConv(w1, w1, c)
        self.e4 = FiLMConv(w1, w2, c, stride=2)
        self.e4b = FiLMConv(w2, w2, c)
        self.e8 = FiLMConv(w2, w3, c, stride=2)
        dil = [1, 2, 4, 8, 1, 2, 4, 8]
        self.res = nn.ModuleList(ResBlock(w3, c, dil[i % len(dil)]) for i in range(args.res_blocks))
        self.u4 = nn.Conv2d(w3, w2, 1)
        self.d4 = FiLMConv(w2 + 3, w2, c)   # + pooled hints: a short path for the artist's colours
        self.d4b = FiLMConv(w2, w2, c)
        self.u2 = nn.Conv2d(w2, w1, 1)
        self.d2 = FiLMConv(w1, w1, c)
        bins = torch.from_numpy(ab_bins(args.bin_step)) / AB_SCALE
        self.register_buffer("bins", bins, persistent=False)
        self.head_class = nn.Conv2d(w2, len(bins), 1)
        self.head_reg = nn.Conv2d(w2, 2, 1)
        self.head_lum = nn.Conv2d(w1, 1, 3, padding=1)
        self.head_ab = nn.Conv2d(w1, 2, 3, padding=1)   # stylization's own chroma detail at 1/2
        for head in (self.head_lum, self.head_ab):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, L, hints, style, z, heads=False):
        cond = self.cond(torch.cat([style, z], 1))
        x1 = self.e1(torch.cat([L - 0.5, hints], 1), cond)
        x2 = self.e2b(self.e2(x1, cond), cond)
        x4 = self.e4b(self.e4(x2, cond), cond)
        x = self.e8(x4, cond)
        for block in self.res:
            x = block(x, cond)
        x = F.interpolate(self.u4(x), scale_factor=2.0, mode="bilinear", align_corners=False) + x4
        x = self.d4b(self.d4(torch.cat([x, F.avg_pool2d(hints, 4) * 4], 1), cond), cond)
        logits = self.head_class(x)
        # softmax over the last axis + matmul: ONNX Runtime runs this ~15× faster than a softmax
        # over the channel axis of NCHW followed by an einsum
        prob = torch.softmax(logits.permute(0, 2, 3, 1) / self.args.temperature, -1)
        ab_class = (prob @ self.bins).permute(0, 3, 1, 2)
        ab_reg = torch.tanh(self.head_reg(x))
        ab4 = self.args.class_mix * ab_class + (1 - self.args.class_mix) * ab_reg
        y = F.interpolate(self.u2(x), scale_factor=2.0, mode="bilinear", align_corners=False) + x2
        y = self.d2(y, cond)
        # Natural colorization (all weight on style 0) keeps
        # luminance exactly; stylization may change it, in proportion to its strength.
        stylized = (1 - style[:, :1])[:, :, None, None]
        ab = F.interpolate(ab4, scale_factor=4.0, mode="bilinear", align_corners=False)
        ab = ab + stylized * F.interpolate(0.5 * torch.tanh(self.head_ab(y)), scale_factor=2.0,
                                           mode="bilinear", align_corners=False)
        dL = F.interpolate(0.5 * torch.tanh(self.head_lum(y)), scale_factor=2.0, mode="bilinear",
                           align_corners=False)
        L_out = (L + stylized * dL).clamp(0, 1)
        lab = torch.cat([L_out * 100, ab * AB_SCALE], 1)
        rgb = lab_to_rgb(lab.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).clamp(0, 1)
        if heads:
            return rgb, {"logits": logits, "ab_reg": ab_reg, "ab": ab, "L": L_out}
        return rgb


class PatchDiscriminator(nn.Module):
    """Spectral-norm PatchGAN with a projection term per style (Miyato & Koyama 2018)."""

    def __init__(self, n_styles, width=32, depth=3):
        super().__init__()
        sn = nn.utils.spectral_norm
        layers, c = [], 3
        for i in range(depth):
            layers += [sn(nn.Conv2d(c, width * 2 ** i, 4, 2, 1)), nn.LeakyReLU(0.2)]
            c = width * 2 ** i
        self.body = nn.Sequential(*layers)
        self.out = sn(nn.Conv2d(c, 1, 3, padding=1))
        self.embed = sn(nn.Linear(n_styles, c, bias=False))

    def forward(self, rgb, style):
        h = self.body(rgb * 2 - 1)
        proj = (h * self.embed(style)[:, :, None, None]).sum(1, keepdim=True)
        return self.out(h) + proj


class MultiScaleDiscriminator(nn.Module):
    def __init__(self, n_styles, scales=2, width=32):
        super().__init__()
        self.nets = nn.ModuleList(PatchDiscriminator(n_styles, width) for _ in range(scales))

    def forward(self, rgb, style):
        outs = []
        for i, net in enumerate(self.nets):
            outs.append(net(F.avg_pool2d(rgb, 2 ** i) if i else rgb, style))
        return outs


def lab_inputs(rgb):
    """NCHW sRGB batch -> (L in [0,1], ab / 110)."""
    lab = rgb_to_lab(rgb.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    return lab[:, :1] / 100, lab[:, 1:] / AB_SCALE
