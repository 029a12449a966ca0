"""Losses: rebalanced ab classification (colour), VGG16 Gram style and texture, content, hinge GAN."""
import numpy as np
import torch
import torch.nn.functional as F

from ..color import lab_to_rgb, rgb_to_lab
from .perception import gram

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
CONTENT_LAYER = "relu4_2"


def ab_prior(ab_batches, bins, sigma=5.0 / 110, uniform_mix=0.5):
    """Class-rebalancing weights (Zhang et al. 2016): w ∝ 1 / ((1-λ) p̃ + λ / Q), E_p[w] = 1."""
    counts = np.zeros(len(bins))
    for ab in ab_batches:
        flat = ab.transpose(0, 2, 3, 1).reshape(-1, 2)
        nearest = ((flat[:, None, :] - bins[None]) ** 2).sum(-1).argmin(1)
        counts += np.bincount(nearest, minlength=len(bins))
    p = counts / counts.sum()
    d2 = ((bins[:, None] - bins[None]) ** 2).sum(-1)
    p = np.exp(-d2 / (2 * sigma ** 2)) @ p
    p /= p.sum()
    w = 1 / ((1 - uniform_mix) * p + uniform_mix / len(bins))
    return (w / (p * w).sum()).astype(np.float32)


def soft_targets(ab, bins, sigma=5.0 / 110):
    """Gaussian soft encoding of ground-truth ab (N,2,h,w) over the bins -> N,Q,h,w."""
    d2 = ((ab[:, None] - bins[None, :, :, None, None]) ** 2).sum(2)
    return torch.softmax(-d2 / (2 * sigma ** 2), 1)


def class_loss(logits, ab, bins, weights=None):
    """Cross-entropy against soft-encoded ab at the logits' resolution; rebalanced by ``weights``
    (per bin) when given."""
    target = soft_targets(ab, bins)
    ce = -(target * F.log_softmax(logits.float(), 1)).sum(1)
    if weights is not None:
        ce = ce * weights[target.argmax(1)]
    return ce.mean()


def luminance_image(rgb):
    """Lightness only (L*/100), each image's mean moved to 0.5, as three equal channels: what the
    texture loss and score see, so that a colour tint cannot pass for texture."""
    L = rgb_to_lab(rgb.permute(0, 2, 3, 1))[..., 0][:, None] / 100
    return (L - L.mean((2, 3), keepdim=True) + 0.5).expand(-1, 3, -1, -1)


def gram_targets(vgg, painting):
    """Gram matrices of a painting (1,3,H,W) at the style layers, in colour and in luminance."""
    rgb = vgg(painting, STYLE_LAYERS)
    lum = vgg(luminance_image(painting), STYLE_LAYERS)
    return {"rgb": [gram(rgb[k])[0] for k in STYLE_LAYERS],
            "texture": [gram(lum[k])[0] for k in STYLE_LAYERS]}


def style_loss(feats, targets):
    """Gram distance relative to the target's size, ‖G − T‖ / ‖T‖ per layer, averaged (the norm,
    not its square: an output far from the painting does not get outsized gradients). ``targets``
    is one list of per-layer Gram matrices per sample."""
    loss = 0
    for i, layer in enumerate(STYLE_LAYERS):
        t = torch.stack([tg[i] for tg in targets])
        distance = ((gram(feats[layer]) - t) ** 2).sum((1, 2)).add(1e-12).sqrt()
        loss = loss + distance / t.norm(dim=(1, 2)).clamp_min(1e-6)
    return loss.mean() / len(STYLE_LAYERS)


def content_loss(f, target):
    return F.mse_loss(f, target) / (target ** 2).mean().clamp_min(1e-8)


def tone_loss(out, photo, margin=0.25, cell=8):
    """Keeps the photo's tonal layout: lightness averaged over cell×cell blocks may move with the
    whole picture (a dark painting darkens it) but a block moving more than ``margin`` beyond that
    shift is penalised. Without it the network paints large blown-out or inverted blotches, which
    the Gram and relu4_2 losses barely see."""
    def block_lightness(rgb):
        return F.avg_pool2d(rgb_to_lab(rgb.permute(0, 2, 3, 1))[..., 0][:, None] / 100, cell)
    shift = block_lightness(out) - block_lightness(photo)
    return F.relu((shift - shift.mean((2, 3), keepdim=True)).abs() - margin).mean()


def _blur_ab(ab):
    """The 3×3 binomial blur of the core's smooth_chroma, on an (N,2,H,W) a*b* batch."""
    taps = torch.tensor([0.25, 0.5, 0.25], dtype=ab.dtype, device=ab.device)
    kernel = (taps[:, None] * taps[None]).expand(2, 1, 3, 3)
    return F.conv2d(F.pad(ab, (1, 1, 1, 1), mode="reflect"), kernel, groups=2)


def stripe_loss(out):
    """Penalises one-pixel stripes of alternating colour: the a*b* (÷110) that a 3×3 binomial blur
    removes (what the core's smooth_chroma takes out afterwards). The Gram losses reward such
    stripes and nothing else forbids them (docs/training.md); paintings have next to none."""
    ab = rgb_to_lab(out.permute(0, 2, 3, 1))[..., 1:].permute(0, 3, 1, 2) / 110
    return (ab - _blur_ab(ab)).abs().mean()


def smooth_chroma(rgb):
    """The core's ``pipeline.smooth_chroma`` on an sRGB batch (N,3,H,W), differentiable: what the
    style graph's output becomes before anyone sees it, so the losses can be taken on that."""
    lab = rgb_to_lab(rgb.clamp(0, 1).permute(0, 2, 3, 1))
    ab = _blur_ab(lab[..., 1:].permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    return lab_to_rgb(torch.cat([lab[..., :1], ab], -1)).permute(0, 3, 1, 2).clamp(0, 1)


def hinge_d(real_outs, fake_outs):
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real_outs, fake_outs))


def hinge_g(fake_outs):
    return sum(-f.mean() for f in fake_outs)
