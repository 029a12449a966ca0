"""The one call every front end uses: image (+ hints, styles, options) -> image."""
import threading
from collections import OrderedDict
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from . import models
from .color import lightness
from .engine import load_model
from .errors import UserError
from .imaging import Picture, merge_lab, run_tiled

KEEP_MODES = ("none", "luminance", "colors")


@dataclass
class Options:
    """What an artist chooses; the CLI, the worker and batch all map onto this."""
    styles: str = "natural"       # "starry_night:0.7,great_wave:0.3"; strength defaults to 1
    keep: str = "none"            # none | luminance | colors
    tileable: bool = False
    stroke_scale: float = 1.0     # size of a style's strokes relative to the picture (0.25..4)
    seed: int | None = None       # None: the canonical result (z = 0); else a variation
    model: str | None = None      # registry name or a .onnx/.pt path; None: the default model
    device: str = "auto"
    tile: int = 1024
    overlap: int = 64

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
        if not 128 <= int(self.tile) <= 8192 or not 0 <= int(self.overlap) < int(self.tile) // 2:
            raise UserError("tile must be 128..8192 and overlap below half the tile")
        if not isinstance(self.stroke_scale, (int, float)) or not 0.25 <= self.stroke_scale <= 4:
            raise UserError("stroke_scale must be a number from 0.25 to 4")
        if self.seed is not None and not isinstance(self.seed, int):
            raise UserError("seed must be an integer")
        parse_styles(self.styles)


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
        if not 0 <= s <= 1:
            raise UserError(f"strength of style '{name}' is {s}; it must be between 0 and 1")
    return pairs or [("natural", 1.0)]


def style_vector(spec, style_names):
    """Style mixing weights per the contract: (1-s)·onehot(natural) + Σ s_k·onehot(k).
    Strengths that add up to more than 1 are scaled to sum to 1."""
    w = np.zeros(len(style_names), np.float32)
    for name, s in parse_styles(spec):
        if name not in style_names:
            raise UserError(f"unknown style '{name}'; run `chromastyle styles` to list them")
        if name != "natural":
            w[style_names.index(name)] += s
    total = w.sum()
    if total > 1:
        w /= total
    w[0] += 1 - w.sum()
    return w


_models = OrderedDict()   # small LRU: (path, device) -> loaded model
_models_lock = threading.Lock()
MODEL_CACHE_SIZE = 3


def resolve_model_path(name_or_path=None):
    if name_or_path and (Path(name_or_path).suffix in (".onnx", ".pt") or Path(name_or_path).exists()):
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


def run(image, hints=None, options=None, progress=None, cancel=None, **kw):
    """Colorize and stylize one image.

    image: a Picture, or an H×W×3 / H×W float array in [0, 1] (sRGB).
    hints: H×W×3 (a/110, b/110, mask) from imaging.hints_from_*; None for none.
    Returns the same kind: a Picture (alpha, bit depth kept) or an H×W×3 float32 array.
    """
    opts = options or Options(**kw)
    opts.check()
    picture = image if isinstance(image, Picture) else None
    rgb = picture.rgb if picture else np.asarray(image, np.float32)
    gray = rgb if rgb.ndim == 2 else rgb[..., 0] if picture and picture.gray else None
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, -1)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 1:
        raise UserError(f"expected an H×W×3 image, got shape {rgb.shape}")
    if hints is not None and hints.shape[:2] != rgb.shape[:2]:
        raise UserError(f"hints are {hints.shape[1]}×{hints.shape[0]} but the image is "
                        f"{rgb.shape[1]}×{rgb.shape[0]}")
    model = get_model(opts.model, opts.device)
    info = model.info
    style = style_vector(opts.styles, info.styles)[None]
    z = latent(opts.seed, info.z_dim)[None]
    h, w = rgb.shape[:2]
    channels = np.zeros((4, h, w), np.float32)   # L, then the hints' a, b, mask: the model's inputs
    channels[0] = lightness(rgb if gray is None else gray) / 100
    if hints is not None:
        channels[1:] = hints.transpose(2, 0, 1)

    def infer(tile):
        return model.run(np.ascontiguousarray(tile[None, :1]), np.ascontiguousarray(tile[None, 1:]), style, z)[0]

    out = run_tiled(infer, channels, 3, int(opts.tile), int(opts.overlap), info.multiple,
                    circular=opts.tileable, progress=progress, cancel=cancel).transpose(1, 2, 0)
    out = merge_lab(rgb, np.clip(out, 0, 1), opts.keep)
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
