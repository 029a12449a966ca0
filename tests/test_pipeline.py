import numpy as np
import pytest

from chromastyle import pipeline
from chromastyle.color import rgb_to_lab
from chromastyle.errors import UserError
from chromastyle.imaging import Cancelled, Picture
from conftest import SHIPPED_MODEL, photo


def test_style_vector_mixing_and_errors():
    names = ["natural", "a", "b"]
    assert np.allclose(pipeline.style_vector("natural", names), [1, 0, 0])
    assert np.allclose(pipeline.style_vector("a", names), [0, 1, 0])
    assert np.allclose(pipeline.style_vector("a:0.25", names), [0.75, 0.25, 0])
    assert np.allclose(pipeline.style_vector("a:0.5,b:0.25", names), [0.25, 0.5, 0.25])
    assert np.allclose(pipeline.style_vector("a:1,b:1", names), [0, 0.5, 0.5])
    with pytest.raises(UserError, match="unknown style 'c'"):
        pipeline.style_vector("c", names)
    with pytest.raises(UserError, match="between 0 and 1"):
        pipeline.style_vector("a:1.5", names)
    with pytest.raises(UserError, match="not a number"):
        pipeline.style_vector("a:lots", names)


def test_options_validation():
    with pytest.raises(UserError, match="keep"):
        pipeline.Options(keep="everything").check()
    with pytest.raises(UserError, match="unknown option"):
        pipeline.Options.from_dict({"stlye": "a"})


def test_shapes_alpha_and_determinism(tiny_model):
    rng = np.random.default_rng(0)
    rgb = rng.random((37, 53, 3)).astype(np.float32)
    alpha = (rng.random((37, 53)) * 255).astype(np.uint8)
    out = pipeline.run(Picture(rgb, alpha, 16), model=str(tiny_model), styles="alpha")
    assert out.rgb.shape == rgb.shape and out.depth == 16 and out.alpha is alpha
    again = pipeline.run(Picture(rgb, alpha, 16), model=str(tiny_model), styles="alpha")
    assert np.array_equal(out.rgb, again.rgb)  # z = 0 is bit-identical run to run
    varied = pipeline.run(rgb, model=str(tiny_model), styles="alpha", seed=3)
    assert np.abs(varied - out.rgb).mean() > 1e-4
    gray = pipeline.run(rgb[..., 0], model=str(tiny_model))
    assert gray.shape == rgb.shape


def test_keep_luminance_and_keep_colors(tiny_model):
    rgb = np.random.default_rng(1).random((40, 48, 3)).astype(np.float32) * 0.8 + 0.1
    lum = pipeline.run(rgb, model=str(tiny_model), styles="alpha", keep="luminance")
    assert np.abs(rgb_to_lab(lum)[..., 0] - rgb_to_lab(rgb)[..., 0]).max() < 0.5
    col = pipeline.run(rgb, model=str(tiny_model), styles="alpha", keep="colors")
    plain = pipeline.run(rgb, model=str(tiny_model), styles="alpha")
    in_gamut = (np.abs(col - rgb) < 0.99).all(-1)
    assert np.abs(rgb_to_lab(col)[..., 0] - rgb_to_lab(plain)[..., 0])[in_gamut].mean() < 1.0
    assert np.abs(rgb_to_lab(col)[..., 1:] - rgb_to_lab(rgb)[..., 1:]).mean() < 2.0


def test_hints_must_match_and_progress_is_monotonic(tiny_model):
    rgb = np.zeros((300, 260, 3), np.float32)
    with pytest.raises(UserError, match="hints are"):
        pipeline.run(rgb, hints=np.zeros((10, 10, 3), np.float32), model=str(tiny_model))
    seen = []
    pipeline.run(rgb, model=str(tiny_model), tile=128, overlap=16, progress=seen.append)
    assert len(seen) > 4 and seen == sorted(seen) and seen[-1] == 1.0
    with pytest.raises(Cancelled):
        pipeline.run(rgb, model=str(tiny_model), tile=128, overlap=16, cancel=lambda: len(seen) > 6,
                     progress=seen.append)


def border_jump(img, axis, positions):
    """Mean absolute colour step across the given rows/columns vs. everywhere else."""
    d = np.abs(np.diff(img, axis=axis)).sum(-1)
    d = d if axis == 1 else d.T
    at = d[:, positions].mean()
    mask = np.ones(d.shape[1], bool)
    mask[positions] = False
    return at, d[:, mask].mean()


def test_tiles_leave_no_seams(smooth_image):
    """Tiles are blended where they overlap; the model has no per-tile statistics."""
    tile, overlap = 160, 48
    tiled = pipeline.run(smooth_image, model=str(SHIPPED_MODEL), styles="starry_night:0.7",
                         tile=tile, overlap=overlap)
    whole = pipeline.run(smooth_image, model=str(SHIPPED_MODEL), styles="starry_night:0.7", tile=2048)
    for axis, length in ((1, smooth_image.shape[1]), (0, smooth_image.shape[0])):
        # every column where one tile's influence ends or begins, in image coordinates
        from chromastyle.imaging import tile_spans
        padded = -(-(length + 2 * overlap) // 8) * 8
        shift = overlap + (padded - length - 2 * overlap) // 2
        edges = sorted({e - shift for s, t in tile_spans(padded, tile, overlap, 8) for e in (s, t)
                        if 0 < e - shift < length - 1})
        assert edges, "the test image must span several tiles"
        near = sorted({p for e in edges for p in range(e - 2, e + 2) if 0 <= p < length - 1})
        at, elsewhere = border_jump(tiled, axis, near)
        assert at <= 1.25 * elsewhere, (axis, at, elsewhere)
    assert np.abs(tiled - whole).mean() < 0.05


def test_tileable_texture_stays_seamless():
    """A seamless texture stylized in tileable mode still tiles: the wrap-around step is
    no larger than the steps inside the image."""
    img = photo(size=(192, 160))
    texture = np.concatenate([img, img[:, ::-1]], 1)          # mirror: seamless left-right
    texture = np.concatenate([texture, texture[::-1]], 0)      # and top-bottom
    out = pipeline.run(texture, model=str(SHIPPED_MODEL), styles="great_wave", tileable=True)
    tiled = np.tile(out, (2, 2, 1))
    h, w = out.shape[:2]
    for axis, n in ((1, w), (0, h)):
        at, elsewhere = border_jump(tiled, axis, [n - 1])
        plain_at, _ = border_jump(np.tile(pipeline.run(texture, model=str(SHIPPED_MODEL),
                                                       styles="great_wave"), (2, 2, 1)), axis, [n - 1])
        assert at <= 1.5 * elsewhere, (axis, at, elsewhere, plain_at)


def test_default_model_runs_offline_on_the_sample():
    from chromastyle.imaging import read_image
    from conftest import SAMPLE

    pic = read_image(SAMPLE)
    assert pic.gray
    out = pipeline.run(pic)
    lab = rgb_to_lab(out.rgb)
    dl = np.abs(lab[..., 0] - rgb_to_lab(pic.rgb)[..., 0])
    # natural keeps L*; only colours clipped into sRGB near black or white move a little
    assert np.percentile(dl, 99) < 2.0 and dl.mean() < 0.3   # 1-2 L* units are below what the eye sees
    assert np.hypot(lab[..., 1], lab[..., 2]).mean() > 3  # and adds colour
