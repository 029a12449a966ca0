"""Edge-aware classical steps around the network: propagating values from a few pixels along the
luminance (Levin, Lischinski & Weiss 2004) and bringing a low-resolution field to full resolution
along the full-resolution luminance's edges (fast guided filter, He & Sun 2015)."""
import numpy as np


def levin_propagate(L, values, mask, prior=None, prior_weight=0.0, guide=None, guide_sigma=1.0,
                    similar=None, similar_weight=0.0, similar_count=10):
    """Colorization using Optimization (Levin et al. 2004), for any per-pixel values.

    L: H×W lightness (0..100); values: H×W×C, read where ``mask`` (H×W bool) is set; elsewhere
    neighbouring pixels of similar lightness get similar values: u_r = Σ_s w_rs u_s with the masked
    pixels fixed, w_rs ∝ exp(−(Y_r − Y_s)² / σ_r²) over each 3×3 window. Returns H×W×C (zeros where
    nothing is given).

    With a ``prior`` (H×W×C) and ``prior_weight`` λ > 0 each free pixel is instead pulled toward the
    prior too: (1 + λ) u_r = Σ_s w_rs u_s + λ prior_r. Near the given pixels u follows them along
    the edges; farther than about 1/√λ pixels it returns to the prior.

    With a ``guide`` (H×W×G) the weights also fall with the guide's difference between the two
    pixels, w_rs ∝ exp(−(Y_r − Y_s)² / σ_r² − ‖g_r − g_s‖² / guide_sigma²): values stop at the
    guide's edges too (e.g. the network's colour boundaries between objects of equal lightness).

    With ``similar`` features (H×W×F) and ``similar_weight`` β > 0 each free pixel also averages the
    pixels nearest to it in that feature space, wherever they are (its ``similar_count`` nearest and
    those it is among the nearest of: the non-local neighbours of KNN matting, Chen et al. 2013):
    (1 + λ) u_r = (1 − β) Σ_s w_rs u_s + β mean_knn(r) u + λ prior_r. Values then reach regions that
    look alike but do not touch (the patches of sky between branches).
    """
    import scipy.sparse as sp
    from scipy.sparse.linalg import splu

    h, w = L.shape
    c = values.shape[-1]
    screened = prior is not None and prior_weight > 0
    if not mask.any():
        return prior.astype(np.float64) if screened else np.zeros((h, w, c))
    y = L.astype(np.float64) / 100
    n = h * w
    idx = np.arange(n).reshape(h, w)
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]

    def neighbours(a):  # each pixel's 8 neighbours (edge-padded), stacked along a new first axis
        pad = np.pad(a, ((1, 1), (1, 1)) + ((0, 0),) * (a.ndim - 2), mode="edge")
        return np.stack([pad[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in shifts])

    neigh = neighbours(y)
    # pixels outside the image (edge padding) get no weight
    valid = np.stack([((np.arange(h)[:, None] + dy >= 0) & (np.arange(h)[:, None] + dy < h) &
                       (np.arange(w)[None] + dx >= 0) & (np.arange(w)[None] + dx < w)) for dy, dx in shifts])
    # as the authors' getColorExact.m: σ² = 0.6·var of the window, at least enough that the
    # closest neighbour keeps weight 0.01, and at least 2e-6
    count = valid.sum(0) + 1
    mean = (np.where(valid, neigh, 0).sum(0) + y) / count
    var = (np.where(valid, (neigh - mean) ** 2, 0).sum(0) + (y - mean) ** 2) / count
    d2 = (neigh - y[None]) ** 2
    closest = np.where(valid, d2, np.inf).min(0)
    sigma2 = np.maximum(np.maximum(0.6 * var, closest / np.log(100)), 2e-6)
    exponent = d2 / sigma2[None]
    if guide is not None:
        g = guide.astype(np.float64)
        exponent = exponent + ((neighbours(g) - g) ** 2).sum(-1) / guide_sigma ** 2
        # a pixel whose every neighbour differs strongly keeps its largest weight, not 0/0
        exponent -= np.where(valid, exponent, np.inf).min(0)
    # outside the image the exponent may lie far below the valid minimum: exp of it would overflow
    wts = np.exp(-np.where(valid, exponent, np.inf))
    wts /= wts.sum(0, keepdims=True)
    fixed = mask.ravel()
    diagonal = np.where(fixed, 1.0, 1.0 + prior_weight) if screened else np.ones(n)
    rows, cols, vals = [idx.ravel()], [idx.ravel()], [diagonal]
    for k, (dy, dx) in enumerate(shifts):
        ok = valid[k].ravel() & ~fixed
        src = idx.ravel()[ok]
        dst = np.clip(np.arange(h)[:, None] + dy, 0, h - 1) * w + np.clip(np.arange(w)[None] + dx, 0, w - 1)
        rows.append(src)
        cols.append(dst.ravel()[ok])
        vals.append(-wts[k].ravel()[ok])
    if similar is not None and similar_weight > 0:
        from scipy.spatial import cKDTree

        features = similar.reshape(n, -1).astype(np.float64)
        nearest = cKDTree(features).query(features, similar_count + 1, workers=-1)[1][:, 1:]
        # symmetric (s is r's neighbour or r is s's), so a hinted pixel pulls the pixels that
        # resemble it even though its own row is fixed; each row averages its neighbours
        pairs = sp.coo_matrix((np.ones(nearest.size), (np.repeat(idx.ravel(), similar_count), nearest.ravel())),
                              shape=(n, n)).tocsr()
        pairs = ((pairs + pairs.T) > 0).tocoo()
        ok = ~fixed[pairs.row]
        degree = np.bincount(pairs.row, minlength=n)
        vals = [vals[0]] + [v * (1 - similar_weight) for v in vals[1:]]
        rows.append(pairs.row[ok])
        cols.append(pairs.col[ok])
        vals.append(-similar_weight / degree[pairs.row[ok]])
    A = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    b = np.where(fixed[:, None], values.reshape(n, c), 0.0)
    if screened:
        b = b + np.where(fixed[:, None], 0.0, prior_weight * prior.reshape(n, c))
    return splu(A).solve(b).reshape(h, w, c)


def box(x, r):
    """Mean over (2r+1)² windows, edges mirrored (OpenCV's default border)."""
    import cv2

    return cv2.blur(x, (2 * r + 1, 2 * r + 1))


def guided_upsample(guide, guide_low, values_low, radius=2, eps=1e-3):
    """Fast guided filter: fit values_low ≈ a·guide_low + b in each (2r+1)² window of the low
    resolution, smooth a and b, bring them to the guide's size and apply them to the full-resolution
    guide. Edges of the values follow the guide's edges; flat areas stay smooth.

    guide: H×W float32 (e.g. L*/100); guide_low: h×w, the guide at the values' resolution;
    values_low: h×w×C. Returns H×W×C float32.
    """
    import cv2

    I = guide_low.astype(np.float32)
    p = values_low.astype(np.float32)
    mean_I = box(I, radius)
    var_I = box(I * I, radius) - mean_I ** 2
    mean_p = box(p, radius)
    cov = box(p * I[..., None], radius) - mean_p * mean_I[..., None]
    a = cov / (var_I[..., None] + eps)
    b = mean_p - a * mean_I[..., None]
    size = guide.shape[1], guide.shape[0]
    a = cv2.resize(box(a, radius), size, interpolation=cv2.INTER_LINEAR)
    b = cv2.resize(box(b, radius), size, interpolation=cv2.INTER_LINEAR)
    a, b = a.reshape(guide.shape + (-1,)), b.reshape(guide.shape + (-1,))
    return a * guide.astype(np.float32)[..., None] + b
