import io

import numpy as np
import pytest
from PIL import Image

from chromastyle import imaging
from chromastyle.errors import UserError
from conftest import swapped_primaries_icc


def save(tmp_path, arr_or_img, name, **kw):
    im = arr_or_img if isinstance(arr_or_img, Image.Image) else Image.fromarray(arr_or_img)
    path = tmp_path / name
    im.save(path, **kw)
    return path


def test_reads_gray_rgb_rgba_palette_cmyk(tmp_path):
    rng = np.random.default_rng(0)
    rgb = (rng.random((20, 30, 3)) * 255).astype(np.uint8)
    gray = imaging.read_image(save(tmp_path, rgb[..., 0], "g.png"))
    assert gray.gray and gray.depth == 8 and gray.rgb.shape == (20, 30, 3)
    assert np.allclose(gray.rgb[..., 2], rgb[..., 0] / 255, atol=1e-6)
    # a gray file's three channels are one array: a 4K gray picture must not cost three
    assert np.shares_memory(gray.rgb[..., 0], gray.rgb[..., 2])
    la = imaging.read_image(save(tmp_path, Image.fromarray(rgb[..., :2], "LA"), "la.png"))
    assert la.gray and np.array_equal(la.alpha, rgb[..., 1]) and np.allclose(la.rgb[..., 1], rgb[..., 0] / 255)
    rgba = np.dstack([rgb, (rng.random((20, 30)) * 255).astype(np.uint8)])
    pic = imaging.read_image(save(tmp_path, rgba, "a.png"))
    assert np.array_equal(pic.alpha, rgba[..., 3])
    assert np.allclose(pic.rgb, rgb / 255, atol=1e-6)
    pal = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16)
    pic = imaging.read_image(save(tmp_path, pal, "p.png"))
    assert np.allclose(pic.rgb, np.asarray(pal.convert("RGB")) / 255, atol=1e-6)
    cmyk = Image.fromarray(rgb).convert("CMYK")
    pic = imaging.read_image(save(tmp_path, cmyk, "c.jpg", quality=100))
    assert np.abs(pic.rgb - rgb / 255).mean() < 0.05


def test_alpha_passes_through_untouched(tmp_path):
    rgba = np.zeros((8, 9, 4), np.uint8)
    rgba[..., 3] = np.arange(72).reshape(8, 9)
    pic = imaging.read_image(save(tmp_path, rgba, "a.png"))
    imaging.write_image(tmp_path / "out.png", pic)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png"))[..., 3], rgba[..., 3])


def test_16_bit_in_gives_16_bit_out(tmp_path):
    import png

    rng = np.random.default_rng(1)
    arr = (rng.random((10, 12, 3)) * 65535).astype(np.uint16)
    path = tmp_path / "in16.png"
    with open(path, "wb") as f:
        png.Writer(12, 10, bitdepth=16, greyscale=False).write(f, arr.reshape(10, -1))
    pic = imaging.read_image(path)
    assert pic.depth == 16
    assert np.allclose(pic.rgb, arr / 65535, atol=1e-7)
    imaging.write_image(tmp_path / "out16.png", pic)
    _, _, rows, info = png.Reader(filename=str(tmp_path / "out16.png")).asDirect()
    assert info["bitdepth"] == 16
    out = np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(10, 12, 3)
    assert np.array_equal(out, arr)


def test_16_bit_gray_and_float(tmp_path):
    g16 = (np.arange(200, dtype=np.uint16) * 300).reshape(10, 20)
    pic = imaging.read_image(save(tmp_path, Image.fromarray(g16), "g16.png"))
    assert pic.depth == 16 and np.allclose(pic.rgb[..., 1], g16 / 65535, atol=1e-6)
    f = np.linspace(0, 1, 200, dtype=np.float32).reshape(10, 20)
    pic = imaging.read_image(save(tmp_path, Image.fromarray(f), "f.tif"))
    assert pic.depth == 32 and np.allclose(pic.rgb[..., 2], f)


def test_exif_orientation_applied(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :5] = 255  # white on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = save(tmp_path, arr, "r.jpg", exif=exif, quality=100)
    pic = imaging.read_image(path)
    assert pic.rgb.shape[:2] == (20, 10)
    assert pic.rgb[:5].mean() > 0.9 and pic.rgb[-5:].mean() < 0.1  # left went to the top


def test_icc_profile_converted_to_srgb(tmp_path):
    arr = np.zeros((4, 4, 3), np.uint8)
    arr[..., 0] = 255
    path = save(tmp_path, arr, "icc.png", icc_profile=swapped_primaries_icc())
    pic = imaging.read_image(path)
    r, g, b = pic.rgb[0, 0]
    assert g > 0.8 and r < 0.2, pic.rgb[0, 0]


@pytest.mark.parametrize("content", [b"", b"not an image at all", None])
def test_bad_files_give_clear_errors(tmp_path, content):
    path = tmp_path / "bad.png"
    if content is None:  # truncated PNG
        buf = io.BytesIO()
        Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 100).save(buf, "PNG")
        content = buf.getvalue()[:60]
    path.write_bytes(content)
    with pytest.raises(UserError, match="bad.png"):
        imaging.read_image(path)
    with pytest.raises(UserError, match="cannot read"):
        imaging.read_image(tmp_path / "missing.png")


def test_decompression_bomb_refused(tmp_path):
    path = save(tmp_path, np.zeros((100, 100), np.uint8), "big.png")
    with pytest.raises(UserError, match="above the limit"):
        imaging.read_image(path, max_pixels=5000)


def test_hints_from_image_and_points(tmp_path):
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[2, 3] = (255, 0, 0, 255)
    rgba[5, 6] = (0, 0, 255, 10)
    path = save(tmp_path, rgba, "hints.png")
    hints = imaging.hints_from_file(path, (12, 10))
    assert hints[..., 2].sum() == 2
    assert hints[2, 3, 0] > 0.6  # red: large a*
    assert hints[5, 6, 1] < -0.8  # blue: very negative b*
    with pytest.raises(UserError, match="same size"):
        imaging.hints_from_file(path, (13, 10))
    pts = imaging.hints_from_points([(3, 2, "#ff0000"), (6, 5, (0, 0, 255))], (12, 10), radius=0)
    assert np.allclose(pts, hints, atol=1e-6)
    with pytest.raises(UserError, match="outside"):
        imaging.hints_from_points([(30, 2, "#ff0000")], (12, 10))


def test_write_is_atomic_and_never_overwrites_input(tmp_path):
    src = save(tmp_path, np.zeros((4, 4, 3), np.uint8), "in.png")
    pic = imaging.read_image(src)
    with pytest.raises(UserError, match="overwrite"):
        imaging.write_image(src, pic, inputs=[src])
    with pytest.raises(UserError, match="unsupported"):
        imaging.write_image(tmp_path / "x.xyz", pic)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]
    imaging.write_image(tmp_path / "out.png", pic)
    assert (tmp_path / "out.png").stat().st_mode & 0o777 == 0o666 & ~imaging._UMASK   # not mkstemp's 0600


def test_padding_mirrors_or_wraps():
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert np.array_equal(imaging.pad_hwc(img, 2)[2:5, 2:6], img)
    assert np.array_equal(imaging.pad_hwc(img, 1)[0, 1:5], img[0])           # mirrored
    assert np.array_equal(imaging.pad_hwc(img, 1, circular=True)[0, 1:5], img[-1])   # wrapped
    rgb = np.zeros((5, 6, 3), np.float32)
    assert imaging.pad_hwc(rgb, 3).shape == (11, 12, 3)


