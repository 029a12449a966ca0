"""Losses: rebalanced ab classification, hint-aware regression, random-feature style, structure."""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


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


def soft_targets(ab4, bins, sigma=5.0 / 110):
    """Gaussian soft encoding of ground-truth ab (N,2,h,w) over the bins -> N,Q,h,w."""
    d2 = ((ab4[:, None] - bins[None, :, :, None, None]) ** 2).sum(2)
    return torch.softmax(-d2 / (2 * sigma ** 2), 1)


def class_loss(logits, ab, bins, weights):
    """Rebalanced cross-entropy at the logits' (1/4) resolution."""
    ab4 = F.adaptive_avg_pool2d(ab, logits.shape[-2:])
    target = soft_targets(ab4, bins)
    w = weights[target.argmax(1)]
    ce = -(target * F.log_softmax(logits.float(), 1)).sum(1)
    return (w * ce).mean()


def sobel(x):
    k = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], device=x.device, dtype=x.dtype) / 8
    gx = F.conv2d(x, k[None, None], padding=1)
    gy = F.conv2d(x, k.t()[None, None], padding=1)
    return torch.cat([gx, gy], 1)


class RandomFeatures(nn.Module):
    """A fixed, randomly initialised multi-scale conv net. Gram matrices of random features
    capture texture nearly as well as VGG's (Ustyuzhaninov et al. 2017), and need no download."""

    def __init__(self, widths=(32, 64, 128), seed=1234):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.weights = nn.ParameterList()
        cin = 3
        for i, cout in enumerate(widths):
            k = 5 if i == 0 else 3
            w = torch.randn(cout, cin, k, k, generator=gen) * (2 / (cin * k * k)) ** 0.5
            self.weights.append(nn.Parameter(w, requires_grad=False))
            cin = cout

    def forward(self, rgb):
        feats, x = [], rgb * 2 - 1
        for i, w in enumerate(self.weights):
            if i:
                x = F.avg_pool2d(x, 2)
            x = F.relu(F.conv2d(x, w, padding=w.shape[-1] // 2))
            feats.append(x)
        return feats


def gram(f):
    n, c, h, w = f.shape
    f = f.float().reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (h * w)


def style_loss(feats, target_grams):
    """Mean squared Gram distance per layer, each normalised by its target's size."""
    loss = 0
    for f, tg in zip(feats, target_grams):
        loss = loss + ((gram(f) - tg) ** 2).mean((1, 2)) / (tg ** 2).mean((1, 2)).clamp_min(1e-8)
    return loss.mean()


def hinge_d(real_outs, fake_outs):
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real_outs, fake_outs))


def hinge_g(fake_outs):
    return sum(-f.mean() for f in fake_outs)
