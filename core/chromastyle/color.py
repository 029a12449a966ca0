"""sRGB (D65) <-> CIE L*a*b*, written once for numpy arrays and torch tensors.

Channels are last (..., 3). Only operators, ``where`` and ``einsum`` are used, so the
same code runs on numpy in the pipeline and on torch inside the network and its
ONNX export.
"""
import functools
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_RGB_TO_XYZ = [[0.412453, 0.357580, 0.180423],
               [0.212671, 0.715160, 0.072169],
               [0.019334, 0.119193, 0.950227]]
_XYZ_TO_RGB = [[3.24048134, -1.53715152, -0.49853633],
               [-0.96925495, 1.87599, 0.04155593],
               [0.05564664, -0.20404134, 1.05731107]]
_WHITE = (0.95047, 1.0, 1.08883)  # D65, 2 degree observer (as skimage)


def _xp(x):
    return sys.modules[type(x).__module__.split(".")[0]]


def _const(x, values):
    """A constant with x's type, dtype and device."""
    xp = _xp(x)
    if xp.__name__ == "torch":
        return xp.tensor(values, dtype=x.dtype, device=x.device)
    return xp.asarray(values, dtype=x.dtype)


def _matmul(x, m):
    return _xp(x).einsum("...c,dc->...d", x, _const(x, m))


def srgb_to_linear(c):
    xp = _xp(c)
    return xp.where(c > 0.04045, ((c.clip(0.04045, None) + 0.055) / 1.055) ** 2.4, c / 12.92)


def linear_to_srgb(c):
    xp = _xp(c)
    return xp.where(c > 0.0031308, 1.055 * c.clip(0.0031308, None) ** (1 / 2.4) - 0.055, c * 12.92)


def rgb_to_lab(rgb):
    """sRGB in [0, 1] -> L* in [0, 100], a*, b* (about -110..110)."""
    xp = _xp(rgb)
    xyz = _matmul(srgb_to_linear(rgb), _RGB_TO_XYZ)
    xyz = xyz / _const(xyz, _WHITE)
    f = xp.where(xyz > 0.008856, xyz.clip(0.008856, None) ** (1 / 3), 7.787 * xyz + 16 / 116)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    lum = xp.where(xyz[..., 1] > 0.008856, 116 * fy - 16, 903.3 * xyz[..., 1])
    return xp.stack([lum, 500 * (fx - fy), 200 * (fy - fz)], -1)


def lab_to_linear(lab):
    """L*a*b* -> linear RGB, not clipped."""
    xp = _xp(lab)

    def inverse_f(f):
        return xp.where(f > 0.2068966, f * f * f, (f - 16 / 116) / 7.787)   # f·f·f: pow(…, 3) is slower

    fy = (lab[..., 0] + 16) / 116
    xyz = (inverse_f(fy + lab[..., 1] / 500) * _WHITE[0], inverse_f(fy), inverse_f(fy - lab[..., 2] / 200) * _WHITE[2])
    # channel by channel rather than a stacked matrix product: a large picture is memory-bound
    return xp.stack([sum(m * c for m, c in zip(row, xyz)) for row in _XYZ_TO_RGB], -1)


def lab_to_rgb(lab):
    """L*a*b* -> sRGB, not clipped (out-of-gamut values fall outside [0, 1])."""
    return linear_to_srgb(lab_to_linear(lab))


def lightness(rgb):
    """L* alone (0..100) of a numpy sRGB image (H×W×3, or H×W gray), from luminance Y only.

    Through 16-bit lookup tables: a large image is mostly pow() calls otherwise, and L* from 16-bit
    quantised sRGB differs by less than 0.01."""
    idx = np.rint(np.clip(rgb, 0, 1) * 65535).astype(np.uint16)
    if idx.ndim == 2:
        return _LIGHTNESS_LUT[idx]
    y = _LINEAR_LUT[idx] @ np.asarray(_RGB_TO_XYZ[1], np.float32)
    return _lightness_of_y(y)


def _lightness_of_y(y):
    return np.where(y > 0.008856, 116 * np.cbrt(y) - 16, 903.3 * y).astype(np.float32)


_LINEAR_LUT = srgb_to_linear(np.linspace(0, 1, 65536, dtype=np.float64)).astype(np.float32)
_LIGHTNESS_LUT = _lightness_of_y(_LINEAR_LUT)


def _in_gamut(linear):
    """Which linear-RGB colours lie in sRGB, allowing 1e-4 in sRGB values. Checked in linear RGB, so
    a bisection need not apply the transfer curve (monotonic, keeping 0 and 1) at each step: its
    slope is 12.92 at 0 and 1.055 / 2.4 at 1."""
    return ((linear >= -1e-4 / 12.92) & (linear <= 1 + 2.4e-4 / 1.055)).all(-1)


_GAMUT_CHUNK = 1 << 18   # pixels mapped at a time


def lab_to_rgb_in_gamut(lab):
    """L*a*b* (numpy, ...×3) -> sRGB in [0, 1] (float32); a colour outside sRGB keeps its L* and hue
    and loses just enough chroma to fit (down to the gamut's edge at its lightness and hue, read
    from ``_chroma_limits``), instead of being clipped per channel, which would change its
    lightness. Done a quarter-million pixels at a time: a large picture stays in the CPU's caches
    instead of making a dozen full-size temporaries, and the chunks share the CPU's cores (numpy
    releases the GIL; the largest full-resolution step of a run, 1.8× faster at 4K on two cores)."""
    lab = np.asarray(lab)
    flat = lab.reshape(-1, 3)
    out = np.empty(flat.shape, np.float32)

    def convert(start):
        out[start:start + _GAMUT_CHUNK] = _to_srgb_in_gamut(flat[start:start + _GAMUT_CHUNK])

    starts = range(0, len(flat), _GAMUT_CHUNK)
    if len(starts) > 1:
        with ThreadPoolExecutor(min(len(starts), os.cpu_count() or 1)) as pool:
            list(pool.map(convert, starts))
    elif starts:
        convert(0)
    return out.reshape(lab.shape)


def _to_srgb_in_gamut(lab):
    linear = lab_to_linear(lab)
    outside = ~_in_gamut(linear)
    if outside.any():
        sub = lab[outside]
        chroma = np.hypot(sub[:, 1], sub[:, 2])
        limit = _chroma_limit(sub[:, 0], np.arctan2(sub[:, 2], sub[:, 1]))
        scale = np.minimum(1, limit / np.maximum(chroma, 1e-6)).astype(sub.dtype)
        linear[outside] = lab_to_linear(np.concatenate([sub[:, :1], sub[:, 1:] * scale[:, None]], -1))
    return _SRGB_LUT[np.rint(np.clip(linear, 0, 1) * (len(_SRGB_LUT) - 1)).astype(np.int32)]


_LIMIT_L, _LIMIT_HUE = 201, 361   # grid of the chroma limits: L* every 0.5, hue every degree


@functools.cache
def _chroma_limits():
    """The largest chroma inside sRGB for each lightness and hue of a grid (bisection, once per
    process): gamut mapping a large picture is then a table lookup, not a bisection per pixel."""
    L, hue = np.meshgrid(np.linspace(0, 100, _LIMIT_L), np.linspace(-np.pi, np.pi, _LIMIT_HUE), indexing="ij")
    low, high = np.zeros_like(L), np.full_like(L, 200.0)
    for _ in range(20):
        mid = (low + high) / 2
        fits = _in_gamut(lab_to_linear(np.stack([L, mid * np.cos(hue), mid * np.sin(hue)], -1)))
        low, high = np.where(fits, mid, low), np.where(fits, high, mid)
    return low


def _chroma_limit(L, hue):
    """The chroma limit at each (L*, hue in radians), bilinear between the grid's points."""
    table = _chroma_limits()
    y = np.clip(L, 0, 100) * ((_LIMIT_L - 1) / 100)
    x = (np.clip(hue, -np.pi, np.pi) + np.pi) * ((_LIMIT_HUE - 1) / (2 * np.pi))
    y0 = np.minimum(y.astype(np.int32), _LIMIT_L - 2)
    x0 = np.minimum(x.astype(np.int32), _LIMIT_HUE - 2)
    fy, fx = y - y0, x - x0
    top = table[y0, x0] * (1 - fx) + table[y0, x0 + 1] * fx
    bottom = table[y0 + 1, x0] * (1 - fx) + table[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


# linear -> sRGB by a 2^20-entry table: about 3× faster than the pow on a large picture, within
# 1e-5 of it (a tenth of a 16-bit step)
_SRGB_LUT = linear_to_srgb(np.linspace(0, 1, 1 << 20, dtype=np.float64)).astype(np.float32)
