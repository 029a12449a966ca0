"""Image I/O, hints, padding, colour merges. numpy + Pillow (+ pypng for 16-bit PNG)."""
import io
import logging
import os
import stat
import tempfile
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps

from .color import lab_to_rgb_in_gamut, rgb_to_lab
from .errors import UserError

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 200_000_000  # far above 8K; guards against decompression bombs
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@dataclass
class Picture:
    """sRGB pixels as float32 H×W×3 in [0, 1] plus what is needed to write them back alike."""
    rgb: np.ndarray                   # read from a gray file: a read-only view of one channel (copy to edit)
    alpha: np.ndarray | None = None   # kept in its original dtype and values, never touched
    depth: int = 8                    # 8, 16 or 32 (float)
    gray: bool = False

    @property
    def size(self):
        return self.rgb.shape[1], self.rgb.shape[0]


def _png_bit_depth(head):
    return head[24] if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) > 25 else None


def _read_png16(f):
    import png  # pypng: Pillow reads 16-bit colour PNGs as 8-bit

    width, height, rows, info = png.Reader(file=f).asDirect()
    planes = info["planes"]
    arr = np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(height, width, planes)
    alpha = arr[..., -1] if planes in (2, 4) else None
    if planes < 3:
        return Picture(gray_to_rgb(arr[..., 0].astype(np.float32) / 65535), alpha, 16, True)
    return Picture(arr[..., :3].astype(np.float32) / 65535, alpha, 16, False)


def open_regular_file(path):
    """Open ``path`` for reading if it is a regular file. A FIFO would block and a device such as
    /dev/zero never ends, so both are refused before anything is read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a pipe or a device?)"
            raise UserError(f"cannot read {path}: it is {kind}")
        if st.st_size == 0:
            raise UserError(f"{path} is empty")
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


_pillow_limit = threading.Lock()


@contextmanager
def open_image(path, max_pixels=DEFAULT_MAX_PIXELS):
    """Yield ``(PIL image, file)`` for a file whose header says it has at most ``max_pixels``
    pixels. Every failure of the decoders (untrusted bytes make them raise all kinds of
    exceptions) becomes a UserError naming the file; nothing is decoded before the size check.

    Pillow has a decompression-bomb limit of its own; while we read, it is ours (--max-pixels)."""
    path = Path(path)
    with open_regular_file(path) as f, _pillow_limit, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            im = Image.open(f)
            if im.width * im.height > max_pixels:   # checked here, to say how large it is
                raise _bomb(path, max_pixels, f"it is {im.width}×{im.height} = {im.width * im.height:,} pixels")
            Image.MAX_IMAGE_PIXELS = max_pixels    # for what Pillow finds while decoding (GIF frames…)
            yield im, f
        except UserError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _bomb(path, max_pixels, "it decodes to more pixels") from None
        except Exception as e:   # noqa: BLE001 — decoders of untrusted data raise anything
            log.debug("reading %s", path, exc_info=True)
            raise UserError(f"cannot read {path} as an image: {_describe(e)}") from None
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _bomb(path, max_pixels, what):
    return UserError(f"{path} is too large: {what}, above the limit of {max_pixels:,} "
                     "(--max-pixels; raise it if the file is trusted)")


def _describe(e):
    text = str(e).strip()
    if isinstance(e, MemoryError):
        return "not enough memory to decode it"
    return f"{text} ({type(e).__name__})" if text else type(e).__name__


def read_image(path, max_pixels=DEFAULT_MAX_PIXELS):
    """Read any Pillow image (8/16-bit, float, gray, RGB(A), palette, CMYK) as sRGB."""
    with open_image(path, max_pixels) as (im, f):
        if im.format == "PNG":
            f.seek(0)
            if _png_bit_depth(f.read(26)) == 16:
                f.seek(0)
                return _read_png16(f)
        im.load()
        return _from_pil(ImageOps.exif_transpose(im))


def _to_srgb(im, icc):
    """Convert through the embedded ICC profile, if any, to sRGB."""
    if not icc:
        return im.convert("RGB")
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError):
        return im.convert("RGB")


def gray_to_rgb(g):
    """H×W → H×W×3 as a read-only view: a gray picture's three equal channels cost one's memory
    and no copying (a 4K gray file: 33 MB instead of 100)."""
    return np.broadcast_to(g[..., None], g.shape + (3,))


def _from_pil(im):
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im).astype(np.float32)
        scale = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        g = np.clip(arr / scale, 0, 1)
        return Picture(gray_to_rgb(g), None, 16, True)
    if mode == "F":
        g = np.clip(np.asarray(im, np.float32), 0, 1)
        return Picture(gray_to_rgb(g), None, 32, True)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode == "PA":
        im, mode = im.convert("RGBA"), "RGBA"
    alpha = np.asarray(im.getchannel("A")) if mode in ("RGBA", "LA", "La", "RGBa") else None
    gray = mode in ("1", "L", "LA", "La")
    if gray and not im.info.get("icc_profile"):
        return Picture(gray_to_rgb(np.asarray(im.convert("L"), np.float32) / 255), alpha, 8, True)
    rgb = _to_srgb(im if mode in ("RGB", "CMYK") else im.convert("RGB"), im.info.get("icc_profile"))
    return Picture(np.asarray(rgb, np.float32) / 255, alpha, 8, gray)


def write_image(path, picture: Picture, inputs=()):
    """Write atomically (temp file + rename) next to the destination; never over an input.
    Every failure (the parent is a file, no permission, read-only, disk full, the destination is
    a folder) is a UserError naming the file, and leaves neither a partial output nor a temp file."""
    path = Path(path)
    for src in inputs:
        if Path(src).exists() and path.exists() and os.path.samefile(src, path):
            raise UserError(f"refusing to overwrite the input {src}; choose another output")
    suffix = path.suffix.lower()
    if suffix not in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"):
        raise UserError(f"unsupported output type '{suffix}' for {path}; use .png, .jpg, .tif or .webp")
    if path.is_dir():
        raise UserError(f"cannot write {path}: a folder of that name is in the way")
    tmp = None
    try:
        data = encode_image(picture, suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix + ".part", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)   # mkstemp makes 0600; an output is an ordinary file
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"cannot write {path}: {_os_reason(e, path)}") from None
    finally:
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)


def refuse_collisions(pairs):
    """``pairs`` of (input, output): refuse, before anything runs, when two inputs would write the
    same output (shot.jpg and shot.png both become shot.png: one result would be lost). Names are
    compared case-insensitively, as they are on macOS, Windows and most network shares."""
    first, clashes = {}, []
    for src, dst in pairs:
        key = os.path.normcase(os.path.abspath(dst)).casefold()
        if key in first:
            clashes.append(f"{first[key]} and {src} would both write {dst}")
        else:
            first[key] = src
    if clashes:
        more = f" (and {len(clashes) - 3} more)" if len(clashes) > 3 else ""
        raise UserError("; ".join(clashes[:3]) + more + "; nothing was written: rename one of each pair "
                        "or process them into separate folders")


def _os_reason(e, path):
    if isinstance(e, (FileExistsError, NotADirectoryError)):
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            return f"{blocker} is a file, not a folder"
    if isinstance(e, IsADirectoryError):
        return "a folder of that name is in the way"
    return e.strerror or str(e)


# zlib level of written PNGs: level 1 writes a 4K picture about 4× faster than Pillow's default 6,
# for files about 20 % larger (measured on a stylized 4K frame: 0.7 s, 9.0 MB against 2.7 s, 7.5 MB)
PNG_COMPRESSION = 1


def encode_image(picture: Picture, suffix=".png"):
    rgb = np.clip(picture.rgb, 0, 1)
    alpha = picture.alpha
    buf = io.BytesIO()
    if picture.depth >= 16 and suffix == ".png":
        import png

        arr = np.round(rgb * 65535).astype(np.uint16)
        if alpha is not None:
            a = alpha.astype(np.uint16) * 257 if alpha.dtype == np.uint8 else alpha.astype(np.uint16)
            arr = np.concatenate([arr, a[..., None]], -1)
        planes = arr.shape[-1]
        png.Writer(arr.shape[1], arr.shape[0], bitdepth=16, greyscale=False, alpha=planes == 4,
                   compression=PNG_COMPRESSION).write(buf, arr.reshape(arr.shape[0], -1))
        return buf.getvalue()
    im = Image.fromarray(np.round(rgb * 255).astype(np.uint8), "RGB")
    if alpha is not None and suffix not in (".jpg", ".jpeg"):
        a = alpha if alpha.dtype == np.uint8 else np.round(alpha / 257).astype(np.uint8)
        im.putalpha(Image.fromarray(a, "L"))
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}.get(suffix, suffix[1:].upper())
    im.save(buf, fmt, **{"JPEG": {"quality": 95}, "PNG": {"compress_level": PNG_COMPRESSION}}.get(fmt, {}))
    return buf.getvalue()


# -- hints ---------------------------------------------------------------------------------

def hints_from_rgba(rgba):
    """An H×W×4 hint layer (float in [0,1] or uint8): every pixel with alpha > 0 is a hint;
    its colour's a*b* become the hint. Returns H×W×3 float32 (a/110, b/110, mask)."""
    rgba = np.asarray(rgba)
    mask = rgba[..., 3] > 0
    # only the painted pixels are converted: a 4K layer with a few strokes is mostly empty
    rgb = rgba[mask, :3].astype(np.float64)
    lab = rgb_to_lab(rgb / 255 if rgba.dtype == np.uint8 else rgb)
    hints = np.zeros(rgba.shape[:2] + (3,), np.float32)
    hints[mask, 0] = lab[:, 1] / 110
    hints[mask, 1] = lab[:, 2] / 110
    hints[mask, 2] = 1
    return hints


def hints_from_file(path, size, max_pixels=DEFAULT_MAX_PIXELS):
    """Read a hint image (PNG with alpha; painted where alpha > 0) that must match ``size``."""
    w, h = size
    with open_image(path, max_pixels) as (im, _):
        if im.size not in ((w, h), (h, w)):   # checked before decoding (EXIF may turn it)
            raise _size_mismatch(path, im.size, size)
        im = ImageOps.exif_transpose(im).convert("RGBA")
    if im.size != (w, h):
        raise _size_mismatch(path, im.size, size)
    return hints_from_rgba(np.asarray(im))


def _size_mismatch(path, got, size):
    return UserError(f"the hint image {path} is {got[0]}×{got[1]} but the image is "
                     f"{size[0]}×{size[1]}; paint the hints on a layer of the same size")


def parse_color(color):
    if isinstance(color, str):
        c = color.lstrip("#")
        if len(c) != 6:
            raise UserError(f"colour '{color}' is not #rrggbb")
        try:
            return tuple(int(c[i:i + 2], 16) / 255 for i in (0, 2, 4))
        except ValueError:
            raise UserError(f"colour '{color}' is not #rrggbb") from None
    rgb = tuple(float(v) for v in color)
    return tuple(v / 255 for v in rgb) if max(rgb) > 1 else rgb


def hints_from_points(points, size, radius=2):
    """[(x, y, colour), …] -> hint array; each point paints a (2r+1)² square."""
    w, h = size
    rgba = np.zeros((h, w, 4), np.float32)
    for x, y, color in points:
        if not (0 <= x < w and 0 <= y < h):
            raise UserError(f"hint point ({x}, {y}) lies outside the {w}×{h} image")
        rgba[max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1] = (*parse_color(color), 1)
    return hints_from_rgba(rgba)


# -- padding ----------------------------------------------------------------------------------

def pad_hwc(arr, margin, circular=False):
    """Pad the first two (spatial) axes by ``margin``: mirrored (no dark frame), or wrapped for
    tileable textures."""
    widths = [(margin, margin)] * 2 + [(0, 0)] * (arr.ndim - 2)
    return np.pad(arr, widths, mode="wrap" if circular else "symmetric")


class Cancelled(Exception):
    """Raised inside a run when its cancel callback returns True."""


def merge_lab(source_rgb, result_rgb, keep):
    """keep='luminance': input L*, output a*b* (pure colorization); keep='colors': output L*,
    input a*b* (stylize luminance only)."""
    if keep in (None, "none"):
        return result_rgb
    src, res = rgb_to_lab(source_rgb), rgb_to_lab(result_rgb)
    lab = np.concatenate([src[..., :1], res[..., 1:]] if keep == "luminance"
                         else [res[..., :1], src[..., 1:]], -1)
    return lab_to_rgb_in_gamut(lab).astype(np.float32)
