"""Image quality and colorization metrics (the Levin et al. 2004 baseline is chromastyle.guided)."""
import numpy as np

from .color import lab_to_rgb, rgb_to_lab


def to_uint8(rgb):
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def psnr(a, b, peak=255.0):
    """PSNR of two uint8 images."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(peak ** 2 / mse))


def ssim(a, b, data_range=1.0, sigma=1.5):
    """SSIM of two single-channel float images (Wang et al. 2004, Gaussian window)."""
    from scipy.ndimage import gaussian_filter

    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    f = lambda x: gaussian_filter(x, sigma, truncate=3.5)  # noqa: E731
    mu_a, mu_b = f(a), f(b)
    var_a, var_b = f(a * a) - mu_a ** 2, f(b * b) - mu_b ** 2
    cov = f(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def colorfulness(rgb):
    """Hasler & Süsstrunk 2003, on 0..255 sRGB."""
    x = np.clip(rgb, 0, 1).astype(np.float64) * 255
    rg = x[..., 0] - x[..., 1]
    yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def with_luminance(rgb, L):
    """Replace the lightness of ``rgb`` with L* (0..100): 'input luminance kept'."""
    lab = rgb_to_lab(rgb.astype(np.float64))
    lab[..., 0] = L
    return np.clip(lab_to_rgb(lab), 0, 1)


def sample_hint_patches(rng, ab, count, patch=6):
    """The hint sampling of Zhang et al. 2017's test sweep: patch centres ~ N(centre, (H−P+1)/4),
    clipped; each patch filled with the ground truth's patch-mean ab. Returns (hints H×W×3, mask)."""
    h, w = ab.shape[:2]
    hints = np.zeros((h, w, 3), np.float32)
    for _ in range(count):
        y = int(np.clip(rng.normal((h - patch + 1) / 2, (h - patch + 1) / 4), 0, h - patch))
        x = int(np.clip(rng.normal((w - patch + 1) / 2, (w - patch + 1) / 4), 0, w - patch))
        hints[y:y + patch, x:x + patch, :2] = ab[y:y + patch, x:x + patch].reshape(-1, 2).mean(0) / 110
        hints[y:y + patch, x:x + patch, 2] = 1
    return hints, hints[..., 2] > 0


def warping_error(frames, flows_back, occlusion=None):
    """Lai et al. 2018: mean over t of the masked squared difference between output frame t and
    frame t−1 warped to t. flows_back[t−1]: H×W×2 flow from frame t to frame t−1 (x, y)."""
    errs = []
    for t in range(1, len(frames)):
        warped, valid = warp(frames[t - 1], flows_back[t - 1])
        if occlusion is not None:
            valid &= ~occlusion[t - 1]
        d = ((frames[t].astype(np.float64) - warped) ** 2).sum(-1)
        errs.append(d[valid].mean() if valid.any() else 0.0)
    return float(np.mean(errs))


def warp(img, flow):
    """Bilinear backward warp of H×W×C ``img`` by ``flow`` (x, y); returns (warped, valid), valid
    where the flow points inside the image. Used by the metric and by the batch stabilizer."""
    import cv2

    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx, my = gx + flow[..., 0].astype(np.float32), gy + flow[..., 1].astype(np.float32)
    warped = cv2.remap(np.asarray(img, np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    valid = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    return warped, valid
