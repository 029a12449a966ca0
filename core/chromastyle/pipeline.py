"""The one call every front end uses: image (+ hints, styles, options) -> image."""
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, fields
from pathlib import Path

import cv2
import numpy as np

from . import models
from .color import lab_to_rgb_in_gamut, lightness, rgb_to_lab
from .engine import load_model
from .errors import UserError
from .guided import guided_upsample, levin_propagate
from .imaging import Cancelled, Picture, gray_to_rgb, merge_lab, pad_hwc

KEEP_MODES = ("none", "luminance", "colors")


@dataclass
class Options:
    """What an artist chooses; the CLI, the worker and batch all map onto this."""
    styles: str = "natural"       # "starry_night:0.7,great_wave:0.3"; strength defaults to 1
    keep: str = "none"            # none | luminance | colors
    tileable: bool = False
    stroke_scale: float = 1.0     # size of a style's strokes relative to the picture (0.25..4)
    seed: int | None = None       # None: the canonical result (z = 0); else a variation
    # pictures as styles: [[ref, strength], …]; ref is an image file, an H×W×3 array, or the key
    # "sha256:…" of a picture given to add_style_image (what the worker's clients send)
    style_images: list = field(default_factory=list)
    model: str | None = None      # registry name or a model's main .onnx file; None: the default
    device: str = "auto"

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise UserError(f"unknown option(s): {', '.join(sorted(unknown))}")
        opts = cls(**d)
        opts.check()
        return opts

    def check(self):
        if self.keep not in KEEP_MODES:
            raise UserError(f"keep must be one of {', '.join(KEEP_MODES)}, not '{self.keep}'")
        if not isinstance(self.stroke_scale, (int, float)) or not 0.25 <= self.stroke_scale <= 4:
            raise UserError("stroke_scale must be a number from 0.25 to 4")
        if self.seed is not None and not isinstance(self.seed, int):
            raise UserError("seed must be an integer")
        parse_styles(self.styles)
        for item in self.style_images:
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise UserError("style_images must be a list of [picture, strength] pairs")
            check_strength("style image", item[1])


def parse_styles(spec):
    """"a:0.7,b" -> [("a", 0.7), ("b", 1.0)]; strengths must lie in [0, 1]."""
    if isinstance(spec, (list, tuple)):
        pairs = [(str(n), float(s)) for n, s in spec]
    else:
        pairs = []
        for part in filter(None, (p.strip() for p in str(spec).split(","))):
            name, _, strength = part.partition(":")
            try:
                pairs.append((name.strip(), float(strength) if strength else 1.0))
            except ValueError:
                raise UserError(f"style strength in '{part}' is not a number") from None
    for name, s in pairs:
        check_strength(f"style '{name}'", s)
    return pairs or [("natural", 1.0)]


def check_strength(what, s):
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 <= s <= 1:
        raise UserError(f"strength of {what} is {s}; it must be a number between 0 and 1")


def style_vector(spec, style_names, image_strength=0.0):
    """Style mixing weights per the contract: (1-s)·onehot(natural) + Σ s_k·onehot(k), and the
    weight of the style pictures (their strengths added). Strengths that add up to more than 1
    are scaled to sum to 1. Returns (weights of the named styles, weight of the pictures)."""
    w = np.zeros(len(style_names), np.float32)
    for name, s in parse_styles(spec):
        if name not in style_names:
            raise UserError(f"unknown style '{name}'; run `chromastyle styles` to list them")
        if name != "natural":
            w[style_names.index(name)] += s
    total = w.sum() + image_strength
    if total > 1:
        w /= total
        image_strength /= total
    w[0] += 1 - w.sum() - image_strength
    return w, float(image_strength)


# -- pictures as styles --------------------------------------------------------------------------

STYLE_IMAGE_SIDE = 768      # style pictures are kept at most this large (descriptors need less)
STYLE_IMAGE_CACHE = 64
_style_images = OrderedDict()   # "sha256:…" -> uint8 H×W×3
_descriptors = OrderedDict()    # (model path, key) -> descriptor
_style_lock = threading.Lock()


def _remember(cache, key, value):
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > STYLE_IMAGE_CACHE:
        cache.popitem(last=False)


def style_picture(image):
    """A picture as a style is kept as 8-bit sRGB, at most STYLE_IMAGE_SIDE pixels long: from an
    image file, a Picture, H×W(×3) floats in [0, 1] or 8-bit values."""
    from .imaging import read_image

    if isinstance(image, (str, Path)):
        image = read_image(image)
    rgb = image.rgb if isinstance(image, Picture) else np.asarray(image)
    if rgb.ndim == 2:
        rgb = gray_to_rgb(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 16:
        raise UserError(f"a style picture must be an RGB or gray image of at least 16×16 pixels, "
                        f"got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    if max(h, w) > 3 * STYLE_IMAGE_SIDE:   # reduced by area first (fast); Lanczos does the last 3×
        rgb = resize(rgb, working_size(h, w, 3 * STYLE_IMAGE_SIDE, 1))
    if rgb.dtype != np.uint8:
        rgb = np.round(np.clip(np.nan_to_num(rgb.astype(np.float32, copy=False)), 0, 1) * 255).astype(np.uint8)
    if max(h, w) > STYLE_IMAGE_SIDE:
        rgb = lanczos(rgb, working_size(h, w, STYLE_IMAGE_SIDE, 1))
    return np.ascontiguousarray(rgb)


def lanczos(rgb8, size):
    """8-bit H×W×3 -> size (h, w) by Pillow's Lanczos filter: how training scaled the paintings it
    described (`train.data.load_rgb`). A style picture must be described the same way: after an area
    resize a painting's descriptor was 8-27 % off the one it was trained with, and its style ratio
    0.05 worse on the held-out paintings (`docs/training.md`)."""
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb8)).resize((size[1], size[0]), Image.LANCZOS))


def add_style_image(image):
    """Keep a picture (anything ``style_picture`` takes) for use as a style; returns its key,
    "sha256:" + the hash of the picture as kept, which Options.style_images may name. The same
    picture always gets the same key, so it is described once per model."""
    kept = style_picture(image)
    key = "sha256:" + hashlib.sha256(repr(kept.shape).encode() + kept.tobytes()).hexdigest()
    with _style_lock:
        _remember(_style_images, key, kept)
    return key


def has_style_image(key):
    with _style_lock:
        return key in _style_images


def style_descriptor(model, ref):
    """A style picture's descriptor for ``model`` (the describe graph on the picture at the
    model's stroke size), computed once per picture and model."""
    key = ref if isinstance(ref, str) and ref.startswith("sha256:") else add_style_image(ref)
    with _style_lock:
        kept = _style_images.get(key)
        found = _descriptors.get((model.info.path, key))
    if kept is None:
        raise UserError(f"the style picture {key[:19]}… is not known here (it was never sent, or was "
                        "dropped from the cache); send it again")
    if found is None:
        h, w = kept.shape[:2]
        small = lanczos(kept, working_size(h, w, model.info.stroke_size, 1)).astype(np.float32) / 255
        found = model.describe(np.ascontiguousarray(small.transpose(2, 0, 1)[None]))
        with _style_lock:
            _remember(_descriptors, (model.info.path, key), found)
    return found


def mixed_descriptor(model, style_images):
    """Several style pictures as one: their descriptors averaged by strength (the network mixes
    descriptors linearly, so this is the same as mixing them inside it). -> (descriptor or None,
    total strength)."""
    total = sum(float(s) for _, s in style_images)
    if not style_images or total <= 0:
        return None, 0.0
    d = sum(float(s) * style_descriptor(model, ref) for ref, s in style_images) / total
    return d.astype(np.float32), total


_models = OrderedDict()   # small LRU: (path, device) -> loaded model
_models_lock = threading.Lock()
MODEL_CACHE_SIZE = 3


def resolve_model_path(name_or_path=None):
    if name_or_path and (Path(name_or_path).suffix == ".onnx" or Path(name_or_path).exists()):
        return Path(name_or_path)
    return models.model_path(name_or_path)


def get_model(name_or_path=None, device="auto"):
    key = (str(resolve_model_path(name_or_path)), device)
    with _models_lock:
        if key in _models:
            _models.move_to_end(key)
            return _models[key]
        model = load_model(key[0], device)
        _models[key] = model
        while len(_models) > MODEL_CACHE_SIZE:
            _models.popitem(last=False)
        return model


def latent(seed, z_dim):
    if seed is None:
        return np.zeros(z_dim, np.float32)
    return np.random.default_rng(seed).standard_normal(z_dim).astype(np.float32)


def working_size(h, w, long_side, multiple):
    """(h, w) scaled so the long side is ``long_side``, each a multiple of ``multiple``."""
    scale = long_side / max(h, w)
    return tuple(max(multiple, int(round(v * scale / multiple)) * multiple) for v in (h, w))


def resize(arr, size):
    """H×W(×C) float32 -> size (h, w): area average when shrinking, bilinear when enlarging."""
    h, w = size
    shrink = h * w < arr.shape[0] * arr.shape[1]
    out = cv2.resize(arr, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return out.reshape((h, w) + arr.shape[2:])


def hints_at(hints, size):
    """Hints (a, b, mask) at another size: the mean colour of the hinted pixels of each cell, and
    a hint wherever a cell has any."""
    mask = hints[..., 2:3]
    pooled = resize(np.concatenate([hints[..., :2] * mask, mask], -1), size)
    cover = pooled[..., 2:3]
    has = cover > 1e-6
    out = np.zeros(size + (3,), np.float32)
    out[..., :2] = np.where(has, pooled[..., :2] / np.maximum(cover, 1e-6), 0)
    out[..., 2:] = has
    return out


def is_gray(rgb, tolerance=2 / 255):
    return rgb.ndim == 2 or float(np.abs(rgb - rgb.mean(-1, keepdims=True)).max()) <= tolerance


# The hints are spread once more after the network, at half the working size: there each pixel's
# 3×3 window reaches twice as far, and on validation photos that `chromastyle eval` does not use it
# scored 0.1 dB more at 2 and 10 hints than at the working size (the same at 100) and solves 5-8×
# faster (docs/training.md).
# How strongly the network's colours pull that propagation (screened Levin, λ): they take over
# about 1/√λ pixels away from any hint. Chosen on validation photos that
# `chromastyle eval` does not use: with the colour graph of this scale, hints spread along the
# luminance beat the network's own colours wherever hints reach (`docs/training.md`).
HINT_PRIOR_WEIGHT = 1e-5
# The same propagation also stops where the network's own colours change (σ in a*/110 per pixel):
# hints do not cross a colour boundary the network sees between objects of equal lightness. On the
# same photos 0.015 gained 0.1-0.15 dB at 10 and 100 hints; 0.005 lost at 100, 0.1 changed nothing.
HINT_GUIDE_SIGMA = 0.015
# ...and each pixel also averages, with this share of its weight, the pixels nearest to it in (position,
# lightness, the network's a*b*), so hints reach look-alike regions they do not touch (KNN matting's
# non-local neighbours); features: (x, y) / long side, L*/100, a*b*/110 × HINT_SIMILAR_AB. On the same
# photos +0.2-0.35 dB at 10 and 100 hints (measured at the working size); 10 neighbours gained
# 0.01-0.07 dB more but made the sparse solve 1.5-2× slower (far links fill in its LU factors).
HINT_SIMILAR_WEIGHT = 0.5
HINT_SIMILAR_COUNT = 5
HINT_SIMILAR_AB = 2.0


def colorize(model, L, hints, z, progress):
    """Chroma (a*/110, b*/110) for full-resolution lightness L (H×W, 0..1): the hints' colours
    propagated along the luminance (Levin et al. 2004) at 1/4 of the colour graph's working size,
    the colour graph, which starts from that propagation and corrects it; with hints, the hints
    propagated once more at half the working size with the network's colours as the prior and as a
    second guide beside the luminance, so they are honoured whatever the network did and stop at
    the colour boundaries it sees, and across to pixels that look alike (lightness and the network's
    colours) even where they do not touch, brought to the working size along the luminance with the
    painted pixels kept exactly; then guided upsampling to full size."""
    info = model.info
    h, w = L.shape
    size = working_size(h, w, min(info.color_size, max(h, w)), info.color_multiple)
    quarter = (size[0] // 4, size[1] // 4)
    L_small = resize(L, size)
    feed = np.zeros(size + (3,), np.float32) if hints is None else hints_at(hints, size)
    propagated = np.zeros(quarter + (2,), np.float32)
    if feed[..., 2].any():
        hints4 = hints_at(feed, quarter)
        propagated = levin_propagate(resize(L_small, quarter) * 100, hints4[..., :2], hints4[..., 2] > 0)
    progress(0.3)
    chw = lambda a: np.ascontiguousarray(a.transpose(2, 0, 1)[None], np.float32)  # noqa: E731
    ab = model.colorize(L_small[None, None], chw(feed), chw(propagated), z)[0].transpose(1, 2, 0)
    progress(0.5)
    if feed[..., 2].any():
        half = (size[0] // 2, size[1] // 2)
        L_half, feed_half, ab_half = resize(L_small, half), hints_at(feed, half), resize(ab, half)
        ys, xs = np.mgrid[:half[0], :half[1]] / max(half)
        similar = np.dstack([xs, ys, L_half, ab_half * HINT_SIMILAR_AB])
        spread = levin_propagate(L_half * 100, feed_half[..., :2], feed_half[..., 2] > 0, prior=ab_half,
                                 prior_weight=HINT_PRIOR_WEIGHT, guide=ab_half, guide_sigma=HINT_GUIDE_SIGMA,
                                 similar=similar, similar_weight=HINT_SIMILAR_WEIGHT,
                                 similar_count=HINT_SIMILAR_COUNT)
        # brought to the working size along its luminance; the painted pixels keep their hints exactly
        ab = np.where(feed[..., 2:] > 0, feed[..., :2], guided_upsample(L_small, L_half, spread))
    progress(0.6)
    return guided_upsample(L, L_small, ab)


def smooth_chroma(rgb):
    """sRGB with its a*b* blurred by the 3×3 binomial filter, L* kept. The style graphs of this
    project paint one-pixel stripes of alternating colour (red/cyan lines: a* and b* swing 7-27
    units from pixel to pixel, against 0.5-3.5 in the paintings and 0.5 in photos; the Gram losses
    they were trained with reward them); the binomial filter removes exactly that frequency and
    keeps the strokes, which are in the lightness and wider than a pixel."""
    lab = rgb_to_lab(np.clip(rgb, 0, 1)).astype(np.float32)
    taps = np.array([0.25, 0.5, 0.25], np.float32)
    lab[..., 1:] = cv2.sepFilter2D(lab[..., 1:], -1, taps, taps, borderType=cv2.BORDER_REFLECT)
    return lab_to_rgb_in_gamut(lab)


def stylize(model, rgb, style, stroke_scale, example=None, example_weight=0.0):
    """The style graph at the stroke scale's working size, given the paintings' weights (several
    paintings, and the style pictures' descriptor, mix inside the network); its colours cleaned of
    one-pixel stripes (``smooth_chroma``); its change to the picture brought to full size, scaled by
    the total strength (1 − natural's weight) and added, so the input's detail is kept and strokes
    keep their size relative to the picture whatever the resolution."""
    info = model.info
    h, w = rgb.shape[:2]
    size = working_size(h, w, info.stroke_size / stroke_scale, info.style_multiple)
    small = resize(rgb, size)
    strength = 1 - float(style[0, 0])
    paintings = style.copy()
    paintings[0, 0] = 0
    total = paintings.sum() + example_weight
    # a mirrored margin (keeping the size a multiple), cut off after: the graph paints a bright line
    # along its output's right edge, where its stride-2 sampling and nearest-neighbour upsampling
    # fall out of step with the picture (right-edge gradient 1.9x the interior's without it)
    m = 2 * info.style_multiple
    padded = pad_hwc(small, m)
    styled = model.stylize(np.ascontiguousarray(padded.transpose(2, 0, 1)[None]), paintings / total,
                           example, example_weight / total)[0].transpose(1, 2, 0)[m:m + size[0], m:m + size[1]]
    styled = smooth_chroma(styled)
    return np.clip(rgb + strength * resize(styled - small, (h, w)), 0, 1)


def run(image, hints=None, options=None, progress=None, cancel=None, **kw):
    """Colorize and stylize one image.

    image: a Picture, or an H×W×3 / H×W float array in [0, 1] (sRGB).
    hints: H×W×3 (a/110, b/110, mask) from imaging.hints_from_*; None for none.
    Returns the same kind: a Picture (alpha, bit depth kept) or an H×W×3 float32 array.

    A gray input is colorized (so is any input when hints are given or only ``natural`` is asked:
    that is recolouring); a colour input is stylized from its own colours.
    """
    opts = options or Options(**kw)
    opts.check()
    picture = image if isinstance(image, Picture) else None
    rgb = picture.rgb if picture else np.asarray(image, np.float32)
    if rgb.ndim == 2:
        rgb = gray_to_rgb(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 1:
        raise UserError(f"expected an H×W×3 image, got shape {rgb.shape}")
    if hints is not None and hints.shape[:2] != rgb.shape[:2]:
        raise UserError(f"hints are {hints.shape[1]}×{hints.shape[0]} but the image is "
                        f"{rgb.shape[1]}×{rgb.shape[0]}")
    model = get_model(opts.model, opts.device)
    info = model.info
    example, image_strength = mixed_descriptor(model, opts.style_images)
    style, example_weight = style_vector(opts.styles, info.styles, image_strength)
    style = style[None]
    z = latent(opts.seed, info.z_dim)[None]
    h, w = rgb.shape[:2]
    if opts.tileable:   # wrap around: what leaves one edge comes back at the other
        margin = max(8, max(h, w) // 8)
        rgb = pad_hwc(rgb, margin, circular=True)
        hints = None if hints is None else pad_hwc(hints, margin, circular=True)

    def step(fraction):
        if cancel is not None and cancel():
            raise Cancelled()
        if progress:
            progress(fraction)

    step(0.0)
    stylized = style[0, 0] < 1
    out = rgb
    gray_file = picture is not None and picture.gray
    if gray_file or is_gray(rgb) or hints is not None or not stylized:
        # a gray file's three channels are equal: one is enough (a large picture is memory-bound)
        L = lightness(rgb[..., 0] if gray_file else rgb) / 100
        ab = colorize(model, L, hints, z, step)
        out = lab_to_rgb_in_gamut(np.concatenate([L[..., None] * 100, ab * 110], -1)).astype(np.float32)
    step(0.7)
    if stylized:
        out = stylize(model, out, style, float(opts.stroke_scale), example, example_weight)
    if opts.tileable:
        out = out[margin:margin + h, margin:margin + w]
        rgb = rgb[margin:margin + h, margin:margin + w]
    out = merge_lab(rgb, out, opts.keep)
    step(1.0)
    if picture:
        return Picture(out, picture.alpha, picture.depth, False)
    return out


def styles(model=None):
    """[(slug, display name)] of a model, in index order."""
    path = resolve_model_path(model)
    info = get_model(str(path)).info
    names = {}
    if model is None or not Path(str(model)).exists():
        try:
            names = models.get_entry(model).styles
        except UserError:
            names = {}
    return [(s, names.get(s, s.replace("_", " ").capitalize())) for s in info.styles]
