"""The v2 generator: a colour network that sees through a frozen VGG16 and a style network with
conditional instance norm, plus the multi-scale discriminator used for the styles.

Both networks run at a *working resolution* (the pipeline brings the result to full resolution
with the input's own detail), so the style network may use instance norm: it always sees the
whole picture, never a tile.
"""
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..color import lab_to_rgb, rgb_to_lab
from .perception import VGG16

AB_SCALE = 110.0  # contract: hints and ab carry a*/110, b*/110
COLOR_FEATURES = ("relu2_2", "relu3_3", "relu4_3")


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


def as_dict(args):
    d = asdict(args)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


# -- colour ---------------------------------------------------------------------------------

@dataclass
class ColorArgs:
    pretrained: bool = True     # False: the same VGG16 with random weights (the control)
    encoder_width: int = 64     # a random encoder may be narrower (small test models)
    width8: int = 192           # decoder width at 1/8 and 1/4 of the working resolution
    width4: int = 96
    blocks8: int = 2
    blocks4: int = 2
    z_dim: int = 8
    bin_step: float = 10.0
    temperature: float = 0.38   # annealed mean of the ab distribution (Zhang et al. 2016)
    class_mix: float = 0.5      # away from hints: mix · annealed class mean + (1 − mix) · regression
    neutral_ends: bool = False  # undo the class rebalancing where the picture is near black or white
    global_width: int = 0       # > 0: a global-context branch of this width (0: none, as shipped)


def pool_hints(hints, k):
    """Hints (a, b, mask) averaged over k×k cells: the mean colour of the hinted pixels and the
    fraction of the cell that is hinted."""
    mask = hints[:, 2:3]
    cover = F.avg_pool2d(mask, k)
    ab = F.avg_pool2d(hints[:, :2] * mask, k) / cover.clamp_min(1e-6)
    return torch.cat([ab * (cover > 0), cover], 1)


def hint_reach(hints4, near=4, fade=4):
    """Where the hints speak for the picture, at 1/4 resolution, 0..1: 1 within ``near`` cells
    (16 pixels) of any hint, fading to 0 over ``fade`` more; 0 everywhere without hints."""
    hinted = (hints4[:, 2:3] > 0).float()
    close = F.max_pool2d(hinted, 2 * near + 1, stride=1, padding=near)
    return F.avg_pool2d(close, 2 * fade + 1, stride=1, padding=fade, count_include_pad=False)


class ZBlock(nn.Module):
    """Residual block whose second conv is modulated by the latent z (FiLM, zero-initialised, so
    z = 0 is exactly the unmodulated network)."""

    def __init__(self, ch, z_dim, dilation=1):
        super().__init__()
        self.a = nn.Conv2d(ch, ch, 3, padding=dilation, dilation=dilation)
        self.b = nn.Conv2d(ch, ch, 3, padding=dilation, dilation=dilation)
        self.film = nn.Linear(z_dim, 2 * ch, bias=False)
        nn.init.zeros_(self.film.weight)

    def forward(self, x, z):
        gamma, beta = self.film(z)[:, :, None, None].chunk(2, 1)
        y = self.b(F.leaky_relu(self.a(x), 0.2)) * (1 + gamma) + beta
        return x + 0.5 * F.leaky_relu(y, 0.2)


class ColorDecoder(nn.Module):
    """VGG16 features of the luminance, the hints, their classical propagation and z -> the ab
    distribution (classification) and a regression at 1/4 resolution.

    The regression is a correction to the hints' propagation by Levin et al.'s optimisation
    (``propagated``, zero without hints; its head starts at zero), so with hints the network starts
    from the classical method and learns to do better; without hints it is a plain regression."""

    def __init__(self, args: ColorArgs):
        super().__init__()
        self.args = args
        c8, c4 = args.width8, args.width4
        # per-channel feature statistics, set once from data (set_feature_stats): raw VGG
        # activations range over hundreds, and unnormalised they train badly
        e = args.encoder_width
        for name, ch in zip(COLOR_FEATURES, (2 * e, 4 * e, 8 * e)):
            self.register_buffer(f"mean_{name}", torch.zeros(ch))
            self.register_buffer(f"std_{name}", torch.ones(ch))
        self.in8 = nn.Conv2d(8 * e, c8, 1)
        self.mix8 = nn.Conv2d(c8 + 5, c8, 3, padding=1)
        self.blocks8 = nn.ModuleList(ZBlock(c8, args.z_dim, 1 + i % 2) for i in range(args.blocks8))
        if args.global_width:
            # the whole picture's relu4_3 statistics modulate the 1/8 and 1/4 features (Iizuka et al.
            # 2016's global fusion): 3×3 stacks see a small window and cannot tell a product shot on
            # white from a landscape; zero-initialised, so it starts as the network without it
            self.global_in = nn.Linear(16 * e, args.global_width)
            self.global_film = nn.Linear(args.global_width, 2 * (c8 + c4))
            nn.init.zeros_(self.global_film.weight)
            nn.init.zeros_(self.global_film.bias)
        self.up4 = nn.Conv2d(c8, c4, 1)
        self.in4 = nn.Conv2d(4 * e, c4, 1)
        self.in2 = nn.Conv2d(2 * e, c4, 1)
        self.mix4 = nn.Conv2d(c4 + 7, c4, 3, padding=1)
        self.blocks4 = nn.ModuleList(ZBlock(c4, args.z_dim, 1 + i % 2) for i in range(args.blocks4))
        bins = torch.from_numpy(ab_bins(args.bin_step)) / AB_SCALE
        self.register_buffer("bins", bins, persistent=False)
        # log of the training's class weights (set_class_weights), for the decoding's neutral_ends
        self.register_buffer("log_class_weights", torch.zeros(len(bins)), persistent=False)
        self.head_class = nn.Conv2d(c4, len(bins), 1)
        self.head_reg = nn.Conv2d(c4, 2, 1)
        nn.init.zeros_(self.head_reg.weight)
        nn.init.zeros_(self.head_reg.bias)

    def set_feature_stats(self, feats):
        for name in COLOR_FEATURES:
            f = feats[name].float()
            getattr(self, f"mean_{name}").copy_(f.mean((0, 2, 3)))
            getattr(self, f"std_{name}").copy_(f.std((0, 2, 3)).clamp_min(1e-3))

    def set_class_weights(self, weights):
        self.log_class_weights.copy_(torch.as_tensor(weights).float().log())

    def norm(self, feats, name):
        f = feats[name].float()
        return (f - getattr(self, f"mean_{name}")[:, None, None]) / getattr(self, f"std_{name}")[:, None, None]

    def forward(self, feats, L, hints, propagated, z):
        """feats: relu2_2 pooled to 1/4, relu3_3 (1/4), relu4_3 (1/8); propagated: N,2 at 1/4.
        Returns (logits, ab_reg, reach) at 1/4 resolution."""
        hints4 = pool_hints(hints, 4)
        reach = hint_reach(hints4)
        x = F.leaky_relu(self.in8(self.norm(feats, "relu4_3")), 0.2)
        x = torch.cat([x, pool_hints(hints, 8), F.avg_pool2d(propagated, 2)], 1)
        x = F.leaky_relu(self.mix8(x), 0.2)
        film = self.global_context(feats) if self.args.global_width else None
        if film is not None:
            x = x * (1 + film[0]) + film[1]
        for block in self.blocks8:
            x = block(x, z)
        x = F.interpolate(self.up4(x), scale_factor=2.0, mode="bilinear", align_corners=False)
        x = F.leaky_relu(x + self.in4(self.norm(feats, "relu3_3")) + self.in2(self.norm(feats, "relu2_2")), 0.2)
        x = torch.cat([x, hints4, propagated, reach, F.avg_pool2d(L, 4) - 0.5], 1)
        x = F.leaky_relu(self.mix4(x), 0.2)
        if film is not None:
            x = x * (1 + film[2]) + film[3]
        for block in self.blocks4:
            x = block(x, z)
        ab_reg = (propagated + self.head_reg(x)).clamp(-1, 1)
        return self.head_class(x), ab_reg, reach

    def global_context(self, feats):
        """FiLM scales and shifts for the 1/8 and the 1/4 features (N, C, 1, 1 each) from the mean
        and deviation over the picture of each normalised relu4_3 channel."""
        f = self.norm(feats, "relu4_3")
        mean = f.mean((2, 3))
        std = ((f - mean[:, :, None, None]) ** 2).mean((2, 3)).add(1e-6).sqrt()
        g = F.leaky_relu(self.global_in(torch.cat([mean, std], 1)), 0.2)
        c8, c4 = self.args.width8, self.args.width4
        return self.global_film(g)[:, :, None, None].split([c8, c8, c4, c4], 1)

    def decode(self, logits, ab_reg, reach, L=None, temperature=None, class_mix=None):
        """The annealed mean of the class distribution mixed with the regression, the regression
        alone where hints reach. With ``neutral_ends`` (and L, N,1 at the working size) the
        logits are first calibrated where the picture is near black or white."""
        t = self.args.temperature if temperature is None else temperature
        mix = self.args.class_mix if class_mix is None else class_mix
        logits = logits.permute(0, 2, 3, 1)
        if self.args.neutral_ends and L is not None:
            logits = logits - ends_weight(F.avg_pool2d(L, 4)).permute(0, 2, 3, 1) * self.log_class_weights
        # softmax over the last axis + matmul: ONNX Runtime runs this far faster than a softmax
        # over the channel axis of NCHW followed by an einsum
        prob = torch.softmax(logits / t, -1)
        ab_class = (prob @ self.bins).permute(0, 3, 1, 2)
        m = mix * (1 - reach)
        return m * ab_class + (1 - m) * ab_reg


def ends_weight(L):
    """0 for mid-tones, rising to 1 from L* 70 to 85 and from L* 30 to 15. The rebalanced training
    (Zhang et al. 2016) buys colour by favouring rare saturated bins; near black and white, where
    most surfaces are neutral in photos, that favour paints warm or pink casts on white walls,
    product shots and black backgrounds, so there the decoding removes it (logits − log w)."""
    L = L * 100
    return (L - 70).div(15).clamp(0, 1) + (30 - L).div(15).clamp(0, 1)


def gray_srgb(L):
    """L*/100 -> the sRGB value of a gray of that lightness: what the encoder sees in a gray photo."""
    lab = torch.cat([L * 100, torch.zeros_like(L), torch.zeros_like(L)], 1)
    return lab_to_rgb(lab.permute(0, 2, 3, 1))[..., :1].permute(0, 3, 1, 2).clamp(0, 1)


def encoder_features(vgg, L):
    """The decoder's inputs from the frozen encoder, which sees L (N,1,H,W in [0,1]) as a gray photo."""
    f = vgg(gray_srgb(L), COLOR_FEATURES)
    f["relu2_2"] = F.avg_pool2d(f["relu2_2"], 2)
    return f


class ColorNet(nn.Module):
    """The colour graph: (L, hints, the hints' propagation at 1/4, z) at the working resolution ->
    ab (a/110, b/110), same size."""

    multiple = 8

    def __init__(self, args: ColorArgs):
        super().__init__()
        self.args = args
        self.encoder = VGG16("conv4_3", pretrained=args.pretrained, width=args.encoder_width)
        self.decoder = ColorDecoder(args)

    def forward(self, L, hints, propagated, z):
        logits, ab_reg, reach = self.decoder(encoder_features(self.encoder, L), L, hints, propagated, z)
        ab4 = self.decoder.decode(logits, ab_reg, reach, L)
        return F.interpolate(ab4, scale_factor=4.0, mode="bilinear", align_corners=False)


# -- style ----------------------------------------------------------------------------------

@dataclass
class StyleArgs:
    styles: list = field(default_factory=lambda: ["natural"])
    widths: tuple = (24, 48, 96)
    res_blocks: int = 5
    stroke_size: int = 384      # long side of the working picture at stroke scale 1
    cond_dim: int = 64
    descriptor_dim: int = 1920  # VGG16 channel means and deviations, relu1_1 … relu4_1 (30 × width)
    encoder_width: int = 64     # the VGG16 that describes pictures (narrower and random: test models)
    encoder_pretrained: bool = True


def style_descriptor(vgg, painting):
    """What the style network knows of a painting: the mean and standard deviation of each channel
    of its VGG16 features at relu1_1 … relu4_1 (the statistics AdaIN matches), 1×1920."""
    feats = vgg(painting, ("relu1_1", "relu2_1", "relu3_1", "relu4_1"))
    return torch.cat([torch.cat([f.mean((2, 3)), f.std((2, 3))], 1) for f in feats.values()], 1)


class CondInstanceNorm(nn.Module):
    """Instance norm with a scale and shift computed from the style condition (conditional
    instance norm, Dumoulin et al. 2017, with the parameters predicted as in Ghiasi et al. 2017)."""

    def __init__(self, ch, cond_dim):
        super().__init__()
        self.affine = nn.Linear(cond_dim, 2 * ch)
        nn.init.zeros_(self.affine.weight)
        nn.init.zeros_(self.affine.bias)

    def forward(self, x, cond):
        gamma, beta = self.affine(cond)[:, :, None, None].chunk(2, 1)
        return F.instance_norm(x, eps=1e-5) * (1 + gamma) + beta


class StyleConv(nn.Module):
    def __init__(self, cin, cout, cond_dim, k=3, stride=1, act=True):
        super().__init__()
        self.pad = k // 2
        self.conv = nn.Conv2d(cin, cout, k, stride)
        self.norm = CondInstanceNorm(cout, cond_dim)
        self.act = act

    def forward(self, x, cond):
        x = self.norm(self.conv(F.pad(x, [self.pad] * 4, mode="reflect")), cond)
        return F.relu(x) if self.act else x


class StyleNet(nn.Module):
    """The style graph (Johnson et al. 2016 with conditional instance norm): colorized sRGB at the
    stroke resolution + style weights (+ an example picture's descriptor) -> stylized sRGB.

    Every style is known by a descriptor (``style_descriptor``): the named paintings' are fixed
    buffers, an example picture's comes in as an input. One shared linear layer maps descriptors
    to embeddings, the weights mix the embeddings, and an MLP turns the mix into every instance
    norm's scale and shift (Ghiasi et al. 2017). Being linear, mixing embeddings is mixing
    descriptors. Trained on many descriptors (crops of paintings with their palettes rotated, and
    material textures), the network renders pictures it never saw. ``natural`` has a learned
    embedding and is trained as the identity; the pipeline skips this graph when only natural is
    asked for."""

    multiple = 4

    def __init__(self, args: StyleArgs):
        super().__init__()
        self.args = args
        c = args.cond_dim
        w0, w1, w2 = args.widths
        self.register_buffer("descriptors", torch.zeros(len(args.styles), args.descriptor_dim))
        self.register_buffer("descriptor_mean", torch.zeros(args.descriptor_dim))
        self.register_buffer("descriptor_std", torch.ones(args.descriptor_dim))
        self.embed = nn.Linear(args.descriptor_dim, c)
        self.natural = nn.Parameter(torch.zeros(c))
        self.cond = nn.Sequential(nn.LeakyReLU(0.2), nn.Linear(c, c), nn.LeakyReLU(0.2))
        self.c1 = StyleConv(3, w0, c, k=9)
        self.d1 = StyleConv(w0, w1, c, stride=2)
        self.d2 = StyleConv(w1, w2, c, stride=2)
        self.res = nn.ModuleList(nn.ModuleList([StyleConv(w2, w2, c), StyleConv(w2, w2, c, act=False)])
                                 for _ in range(args.res_blocks))
        self.u1 = StyleConv(w2, w1, c)
        self.u2 = StyleConv(w1, w0, c)
        self.out = nn.Conv2d(w0, 3, 9)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def set_descriptors(self, descriptors, population=None):
        """descriptors: one row per named painting (styles[1:]); ``population``: the descriptors
        the network is trained on, whose mean and deviation normalise every descriptor."""
        d = descriptors.float()
        pop = d if population is None else population.float()
        self.descriptor_mean.copy_(pop.mean(0))
        self.descriptor_std.copy_(pop.std(0).clamp_min(1e-3) if len(pop) > 1 else torch.ones_like(pop[0]))
        self.descriptors[1:] = d

    def embed_descriptor(self, d):
        return self.embed((d - self.descriptor_mean) / self.descriptor_std)

    def embeddings(self):
        return torch.cat([self.natural[None], self.embed_descriptor(self.descriptors[1:])])

    def forward(self, rgb, style, example=None, example_weight=None):
        """style: N×S weights of the named styles; example (N×D) with example_weight (N×1): an
        example picture's descriptor and its weight (all weights together sum to 1)."""
        mix = style @ self.embeddings()
        if example is not None:
            mix = mix + example_weight * self.embed_descriptor(example)
        cond = self.cond(mix)
        x = self.d2(self.d1(self.c1(rgb * 2 - 1, cond), cond), cond)
        for a, b in self.res:
            x = x + b(a(x, cond), cond)
        x = self.u1(F.interpolate(x, scale_factor=2.0, mode="nearest"), cond)
        x = self.u2(F.interpolate(x, scale_factor=2.0, mode="nearest"), cond)
        delta = self.out(F.pad(x, [4] * 4, mode="reflect"))
        # a change in logit space: zero is the identity, and the output stays inside [0, 1]
        p = rgb.clamp(0.004, 0.996)
        return torch.sigmoid(torch.log(p / (1 - p)) + delta)


class StyleEncoder(nn.Module):
    """The descriptor graph: an example picture (sRGB) -> its ``style_descriptor``."""

    def __init__(self, args: StyleArgs):
        super().__init__()
        self.vgg = VGG16("conv4_1", pretrained=args.encoder_pretrained, width=args.encoder_width)

    def forward(self, image):
        return style_descriptor(self.vgg, image)


# -- discriminator --------------------------------------------------------------------------

class PatchDiscriminator(nn.Module):
    """Spectral-norm PatchGAN with a projection term on the style's condition vector (Miyato &
    Koyama 2018)."""

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
        return [net(F.avg_pool2d(rgb, 2 ** i) if i else rgb, style) for i, net in enumerate(self.nets)]


def lab_inputs(rgb):
    """NCHW sRGB batch -> (L in [0,1], ab / 110)."""
    lab = rgb_to_lab(rgb.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    return lab[:, :1] / 100, lab[:, 1:] / AB_SCALE
