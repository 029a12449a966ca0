from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_MODEL = ROOT / "models" / "chromastyle-vgg16" / "color.onnx"
SAMPLE = ROOT / "core" / "chromastyle" / "samples" / "astronaut_gray.png"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Never touch the user's cache or the network from a test."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("CHROMASTYLE_HOME", str(home))
    monkeypatch.setenv("CHROMASTYLE_OFFLINE", "1")
    monkeypatch.delenv("CHROMASTYLE_REGISTRY", raising=False)
    yield home


def make_tiny_model(folder, styles=("natural", "alpha", "beta"), global_width=0):
    """A real, randomly initialised model of the contract (both graphs, small random encoder), for
    plumbing tests; ``global_width`` > 0 gives its colour graph the global-context branch. Returns
    the path of its main file."""
    import torch

    from chromastyle.train.export import export
    from chromastyle.train.loop import save_checkpoint
    from chromastyle.train.nets import ColorArgs, ColorDecoder, StyleArgs, StyleNet, as_dict

    torch.manual_seed(0)
    color_args = ColorArgs(pretrained=False, encoder_width=8, width8=16, width4=16, blocks8=1, blocks4=1,
                           global_width=global_width)
    style_args = StyleArgs(styles=list(styles), widths=(8, 8, 16), res_blocks=1, encoder_width=4,
                           encoder_pretrained=False, descriptor_dim=120)
    decoder, style = ColorDecoder(color_args), StyleNet(style_args)
    with torch.no_grad():  # zero-initialised layers would make style and z ineffective
        for name, p in [*decoder.named_parameters(), *style.named_parameters()]:
            if "film" in name or "out." in name or "affine" in name or "natural" in name:
                p.normal_(0, 0.3)
    class_weights = torch.rand(len(decoder.bins)) + 0.5  # as training's rebalancing stores them
    save_checkpoint({"kind": "color", "args": as_dict(color_args), "net": decoder.state_dict(),
                     "class_weights": class_weights}, folder / "color.pt")
    save_checkpoint({"kind": "style", "args": as_dict(style_args), "net": style.state_dict()}, folder / "style.pt")
    return export(folder / "color.pt", folder / "style.pt", folder / "model")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    pytest.importorskip("torch")
    return make_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def smooth_image():
    """A smooth colour ramp, where any seam would stand out."""
    h, w = 300, 420
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([x / w, y / h, 0.5 + 0.3 * np.sin(x / 60) * np.cos(y / 50)], -1).astype(np.float32)


def photo(name="coffee.jpg", size=None):
    """A colour photo shipped with the tests (tests/data), so no test depends on the shared data."""
    from PIL import Image

    im = Image.open(ROOT / "tests" / "data" / name).convert("RGB")
    if size:
        im = im.resize(size, Image.LANCZOS)
    return np.asarray(im, np.float32) / 255


def swapped_primaries_icc():
    """A minimal ICC v2 RGB matrix/TRC profile whose red and green primaries are sRGB's green
    and red: a pixel (1, 0, 0) in it is pure sRGB green. Tests ICC handling without a file."""
    import struct

    def s15(v):
        return struct.pack(">i", round(v * 65536))

    def xyz(x, y, z):
        return b"XYZ " + b"\0" * 4 + s15(x) + s15(y) + s15(z)

    curve = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, int(2.2 * 256)) + b"\0\0"
    text = b"swapped\0"
    desc = (b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text + b"\0" * 8 + b"\0" * 3 + b"\0" * 67)
    desc += b"\0" * (-len(desc) % 4)
    tags = [(b"desc", desc), (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
            (b"rXYZ", xyz(0.3851, 0.7169, 0.0971)), (b"gXYZ", xyz(0.4361, 0.2225, 0.0139)),
            (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"\0" * 4 + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
              + b"\0" * 12 + b"acsp" + b"\0" * 24 + b"\0" * 4 + s15(0.9642) + s15(1.0) + s15(0.8249)
              + b"\0" * 48)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data
