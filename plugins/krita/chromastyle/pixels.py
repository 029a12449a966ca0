"""Krita pixel data <-> the worker's format, with the standard library only (no numpy).

Krita's pixelData is BGRA for 8/16-bit integer RGBA layers, RGBA for float, and (gray, alpha)
for GRAYA. The worker takes and returns RGBA (or gray+alpha in, RGBA out)."""
from array import array

DEPTHS = {"U8": ("uint8", "B", 255), "U16": ("uint16", "H", 65535), "F32": ("float32", "f", 1.0)}


class UnsupportedLayer(Exception):
    pass


def depth_info(depth):
    if depth not in DEPTHS:
        raise UnsupportedLayer(f"{depth} layers are not supported; convert the image to 8-bit, 16-bit "
                               "integer or 32-bit float (Image ▸ Convert Image Color Space)")
    return DEPTHS[depth]


def colorspace(profile):
    """The worker's name for a profile's tone curve: Krita's linear profiles (the default for 16-bit
    and float documents) are marked g10."""
    return "linear" if "g10" in (profile or "") else "srgb"


def swap_red_blue(data, typecode):
    a = array(typecode)
    a.frombytes(bytes(data))
    a[0::4], a[2::4] = a[2::4], a[0::4]
    return a.tobytes()


def to_worker(data, model, depth):
    """-> (bytes, channels, dtype) for the worker."""
    dtype, typecode, _ = depth_info(depth)
    if model == "RGBA":
        return (swap_red_blue(data, typecode) if typecode != "f" else bytes(data)), 4, dtype
    if model == "GRAYA":
        return bytes(data), 2, dtype
    raise UnsupportedLayer(f"{model} layers are not supported; use an RGB or grayscale image")


def from_worker(data, depth):
    """Worker RGBA result -> pixel data of an RGBA layer of ``depth``."""
    _, typecode, _ = depth_info(depth)
    return swap_red_blue(data, typecode) if typecode != "f" else bytes(data)


def mask_alpha(data, selection, depth):
    """Multiply the alpha of RGBA pixel data by a selection mask (one byte per pixel, 0-255)."""
    _, typecode, _ = depth_info(depth)
    a = array(typecode)
    a.frombytes(bytes(data))
    sel = bytes(selection)
    alpha = a[3::4]
    if typecode == "f":
        a[3::4] = array("f", (v * s / 255 for v, s in zip(alpha, sel)))
    else:
        a[3::4] = array(typecode, (v * s // 255 for v, s in zip(alpha, sel)))
    return a.tobytes()
