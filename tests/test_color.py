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
