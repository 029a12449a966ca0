import numpy as np
import pytest
from skimage import color as skcolor

from chromastyle.color import lab_to_rgb, rgb_to_lab


def test_rgb_to_lab_matches_skimage():
    rng = np.random.default_rng(0)
    rgb = np.concatenate([rng.random((5000, 3)), np.eye(3), [[0, 0, 0], [1, 1, 1], [1e-4, 2e-3, 0.04]]])
    assert np.abs(rgb_to_lab(rgb) - skcolor.rgb2lab(rgb)).max() < 1e-4


def test_lab_to_rgb_matches_skimage():
    rng = np.random.default_rng(1)
    lab = np.stack([rng.uniform(0, 100, 5000), rng.uniform(-60, 60, 5000), rng.uniform(-60, 60, 5000)], -1)
    ours = lab_to_rgb(lab)
    ref = skcolor.lab2rgb(lab)
    inside = ((ours >= 0) & (ours <= 1)).all(-1)
    assert inside.mean() > 0.3
    assert np.abs(ours[inside] - ref[inside]).max() < 1e-4


def test_round_trip_and_torch_agree():
    torch = pytest.importorskip("torch")
    rgb = np.random.default_rng(2).random((32, 32, 3))
    assert np.abs(lab_to_rgb(rgb_to_lab(rgb)) - rgb).max() < 1e-6
    t = rgb_to_lab(torch.from_numpy(rgb)).numpy()
    assert np.abs(t - rgb_to_lab(rgb)).max() < 1e-9


def test_out_of_gamut_colours_keep_lightness_and_hue():
    from chromastyle.color import lab_to_rgb_in_gamut

    lab = np.array([[90.0, -60, 90], [20, 80, -100], [50, 10, 10]])   # two far outside sRGB
    rgb = lab_to_rgb_in_gamut(lab)
    assert rgb.min() >= 0 and rgb.max() <= 1
    back = rgb_to_lab(rgb)
    assert np.abs(back[:, 0] - lab[:, 0]).max() < 0.5                  # lightness kept
    hue = lambda x: np.arctan2(x[:, 2], x[:, 1])  # noqa: E731
    assert np.abs(hue(back) - hue(lab)).max() < 0.05                   # hue kept
    assert np.allclose(back[2], lab[2], atol=0.05)                      # in gamut: unchanged


def test_a_picture_of_many_chunks_is_mapped_as_one():
    """Gamut mapping works a chunk at a time on several threads: every chunk lands in its place."""
    from chromastyle import color

    rng = np.random.default_rng(3)
    n = 3 * color._GAMUT_CHUNK + 17
    lab = np.stack([rng.uniform(0, 100, n), rng.normal(0, 40, n), rng.normal(0, 40, n)], -1).astype(np.float32)
    whole = color._to_srgb_in_gamut(lab.copy())
    assert np.array_equal(color.lab_to_rgb_in_gamut(lab.reshape(1, n, 3))[0], whole)
    assert color.lab_to_rgb_in_gamut(np.zeros((0, 3), np.float32)).shape == (0, 3)
