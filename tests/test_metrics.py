import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from chromastyle import cli, metrics as M
from chromastyle.guided import guided_upsample, levin_propagate
from chromastyle.color import lab_to_rgb, rgb_to_lab
from conftest import photo


def test_psnr_ssim_match_skimage():
    rng = np.random.default_rng(0)
    a = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 20, a.shape), 0, 255).astype(np.uint8)
    assert M.psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b), abs=1e-9)
    x = rng.random((80, 80))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    ref = structural_similarity(x, y, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert M.ssim(x, y) == pytest.approx(ref, abs=0.01)
    assert M.ssim(x, x) == pytest.approx(1.0)


def test_colorfulness_orders_images():
    img = photo(size=(96, 64))
    gray = np.repeat(img.mean(-1, keepdims=True), 3, -1)
    assert M.colorfulness(gray) < 1 < M.colorfulness(img)


def point_hints(shape, points):
    """Hints of the given a*b* at single pixels: [(y, x, (a, b)), …] -> (H×W×2 values, H×W mask)."""
    hints, mask = np.zeros(shape + (2,)), np.zeros(shape, bool)
    for y, x, ab in points:
        hints[y, x], mask[y, x] = ab, True
    return hints, mask


def test_levin_propagates_hints_along_edges():
    """Two flat regions split by an edge; one hint in each: each region takes its hint's colour."""
    L = np.full((40, 40), 30.0)
    L[:, 20:] = 70.0
    hints, mask = point_hints((40, 40), [(20, 5, (40, 10)), (20, 35, (-30, 50))])
    ab = levin_propagate(L, hints, mask)
    assert np.allclose(ab[:, :18], (40, 10), atol=2)
    assert np.allclose(ab[:, 22:], (-30, 50), atol=2)
    assert np.allclose(levin_propagate(L, hints, np.zeros_like(mask)), 0)


def test_levin_guide_stops_values_at_the_guides_edges():
    """Equal lightness everywhere, so luminance alone spreads one hint over the whole picture; a
    guide with two regions (the network's colours) keeps it on its own side."""
    L = np.full((30, 30), 50.0)
    hints, mask = point_hints((30, 30), [(15, 3, (40, 0)), (15, 27, (-40, 0))])
    guide = np.zeros((30, 30, 2))
    guide[:, 10:] = 0.3
    plain = levin_propagate(L, hints, mask)
    guided = levin_propagate(L, hints, mask, guide=guide, guide_sigma=0.015)
    assert plain[:, 5:9, 0].mean() < 25          # without the guide the two hints blend across it
    assert np.allclose(guided[:, :9], (40, 0), atol=2)
    assert np.allclose(guided[:, 11:], (-40, 0), atol=2)


def test_levin_guide_with_sharp_colour_edges_at_the_border_stays_finite():
    """Where the guide changes by more than ~0.4 between neighbours, the edge-padded pixels beyond the
    border could out-weigh every real neighbour by e^700: the weights must stay finite."""
    rng = np.random.default_rng(0)
    L = rng.random((24, 24)) * 100
    guide = rng.random((24, 24, 2))
    hints, mask = point_hints((24, 24), [(12, 12, (30, -20))])
    with np.errstate(over="raise", invalid="raise"):
        ab = levin_propagate(L, hints, mask, prior=np.zeros((24, 24, 2)), prior_weight=1e-5,
                             guide=guide, guide_sigma=0.015)
    assert np.isfinite(ab).all()
    assert np.allclose(ab[12, 12], (30, -20))


def test_levin_similar_features_carry_values_to_regions_that_do_not_touch():
    """Two dark strips split by a light band, a red hint on the left strip and a blue one in the band:
    along the luminance the right strip can only take the band's blue; with non-local neighbours of
    equal lightness it takes the left strip's red."""
    L = np.full((20, 40), 30.0)
    L[:, 10:30] = 70.0
    hints, mask = point_hints((20, 40), [(10, 3, (50, 0)), (10, 20, (-50, 0))])
    local = levin_propagate(L, hints, mask)
    similar = levin_propagate(L, hints, mask, similar=L[..., None] / 100, similar_weight=0.5)
    assert local[:, 32:, 0].mean() < -40
    assert similar[:, 32:, 0].mean() > 20
    assert similar[:, 12:28, 0].mean() < -20                 # the band keeps its own hint


def test_levin_beats_gray_on_a_photo():
    img = photo(size=(96, 96)).astype(np.float64)
    lab = rgb_to_lab(img)
    hints, mask = M.sample_hint_patches(np.random.default_rng(0), lab[..., 1:], 30)
    ab = levin_propagate(lab[..., 0], hints[..., :2] * 110, mask)
    out = np.clip(lab_to_rgb(np.concatenate([lab[..., :1], ab], -1)), 0, 1)
    gray = M.with_luminance(np.repeat(img.mean(-1, keepdims=True), 3, -1), lab[..., 0])
    assert M.psnr(M.to_uint8(out), M.to_uint8(img)) > M.psnr(M.to_uint8(gray), M.to_uint8(img)) + 1


def test_warping_error_is_zero_for_a_perfect_pan():
    img = photo(size=(80, 60))
    frames = [img[:, i:i + 60] for i in range(3)]   # the camera pans one pixel right per frame
    flow = np.zeros((60, 60, 2))
    flow[..., 0] = 1.0  # frame t at x is frame t-1 at x+1
    assert M.warping_error(frames, [flow, flow]) < 1e-10
    noisy = [f + np.random.default_rng(i).normal(0, 0.05, f.shape) for i, f in enumerate(frames)]
    assert M.warping_error(noisy, [flow, flow]) > 1e-3


def test_eval_command_prints_the_tables(tiny_model, tmp_path, capsys):
    from PIL import Image

    data = tmp_path / "photos"
    data.mkdir()
    Image.fromarray(M.to_uint8(photo(size=(120, 90)))).save(data / "p.png")
    sheet = tmp_path / "sheet.png"
    assert cli.main(["eval", str(tiny_model), "--data", str(data), "--limit", "1", "--sheet", str(sheet),
                     "--styles-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Levin et al. 2004" in out and "| hints | 0 | 1 | 2 | 5 | 10 | 20 | 50 | 100 |" in out
    assert "z = 0 bit-identical: True" in out
    assert Image.open(sheet).size == (160 * 5, 160)  # photo, gray, natural, alpha, beta


def test_guided_upsampling_puts_chroma_edges_on_luminance_edges():
    """A chroma field known at 1/4 resolution comes back at full size with its edge where the
    full-resolution luminance has it, not smeared over the low resolution's cells."""
    import cv2

    L = np.full((64, 64), 0.3, np.float32)
    L[:, 29:] = 0.8                                  # an edge that falls inside a 4-pixel cell
    ab = np.where(L[..., None] > 0.5, 0.4, -0.4).astype(np.float32) * np.ones(2, np.float32)
    L_low = cv2.resize(L, (16, 16), interpolation=cv2.INTER_AREA)
    ab_low = cv2.resize(ab, (16, 16), interpolation=cv2.INTER_AREA)
    up = guided_upsample(L, L_low, ab_low)
    bilinear = cv2.resize(ab_low, (64, 64), interpolation=cv2.INTER_LINEAR)
    assert np.abs(up - ab).mean() < 0.3 * np.abs(bilinear - ab).mean()
    assert np.abs(up[:, :24] + 0.4).max() < 0.05 and np.abs(up[:, 34:] - 0.4).max() < 0.05
