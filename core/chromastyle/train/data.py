"""Training data: photos in memory, a fixed validation split, paintings, hint sampling."""
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# photo-derived material textures among the training photos (rock, bark, brick…): style samples too
TEXTURE_PREFIX = "ufoai_"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def default_data_dir():
    """../shared/data next to the checkout, where the project's data lives; override with --data."""
    return Path(__file__).resolve().parents[4] / "shared" / "data"


def list_images(folder):
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def is_validation(path, percent=8):
    """A fixed split by file name: the same photos are held out on every machine and run.

    The public-domain/CC0 sample photos (prefix ``pypi_``) are always held out: the project's
    demo image comes from them, and it must not have been trained on.
    """
    name = Path(path).name
    return name.startswith("pypi_") or zlib.crc32(name.encode()) % 100 < percent


def split(folder, percent=8):
    files = list_images(folder)
    val = [p for p in files if is_validation(p, percent)]
    train = [p for p in files if not is_validation(p, percent)]
    return train, val


def load_rgb(path, short_side=None, long_side=None):
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = None
        if short_side:
            scale = short_side / min(w, h)
        elif long_side:
            scale = long_side / max(w, h)
        if scale and abs(scale - 1) > 1e-3:
            im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)
        return np.asarray(im, dtype=np.uint8)


def load_photos(files, short_side):
    return [load_rgb(p, short_side=short_side) for p in files]


def load_paintings(paths, long_side, min_side):
    """Each painting scaled so its long side is ``long_side`` but no side is below ``min_side``."""
    out = []
    for path in paths:
        img = load_rgb(path, long_side=long_side)
        if min(img.shape[:2]) < min_side:
            img = load_rgb(path, short_side=min_side)
        out.append(img)
    return out


def random_crops(rng, images, count, size):
    """count random crops (with random horizontal flips) -> float32 N,3,size,size in [0,1]."""
    batch = np.empty((count, 3, size, size), np.float32)
    for i in range(count):
        img = images[rng.integers(len(images))]
        y = rng.integers(img.shape[0] - size + 1)
        x = rng.integers(img.shape[1] - size + 1)
        crop = img[y:y + size, x:x + size]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        batch[i] = crop.transpose(2, 0, 1) / 255.0
    return batch


def sample_hints(rng, ab, p_none=0.1, p_geometric=0.125, max_patch=9, p_dense=0.0, dense=(20, 150)):
    """Hints as in Zhang et al. 2017 training: a geometric number of patches, each of a random
    size, filled with the patch's mean ground-truth ab. ab: N,2,H,W (a/110, b/110). A share
    ``p_dense`` of the crops gets a uniform count in ``dense`` instead: an artist who paints many
    hints must be served as well as one who paints a few."""
    n, _, h, w = ab.shape
    hints = np.zeros((n, 3, h, w), np.float32)
    for i in range(n):
        u = rng.random()
        count = 0 if u < p_none else rng.integers(*dense) if u < p_none + p_dense else rng.geometric(p_geometric)
        for _ in range(min(count, 200)):
            size = rng.integers(1, max_patch + 1)
            y = rng.integers(h - size + 1)
            x = rng.integers(w - size + 1)
            patch = ab[i, :, y:y + size, x:x + size]
            hints[i, :2, y:y + size, x:x + size] = patch.mean((1, 2))[:, None, None]
            hints[i, 2, y:y + size, x:x + size] = 1
    return hints


def make_pack(src, dst, short_side=192, quality=90):
    """A compact copy of a data folder (train/ + styles/) to carry to a rented GPU: photos with
    short side ``short_side``, paintings with long side 512, JPEG. Returns the size in bytes."""
    src, dst = Path(src), Path(dst)
    total = 0
    for sub, kw in (("train", {"short_side": short_side}), ("styles", {"long_side": 512})):
        (dst / sub).mkdir(parents=True, exist_ok=True)
        for path in list_images(src / sub):
            out = dst / sub / (path.stem + ".jpg")
            Image.fromarray(load_rgb(path, **kw)).save(out, quality=quality)
            total += out.stat().st_size
    return total


# -- cached encoder features for the colour decoder -------------------------------------------

def build_feature_cache(files, out, encoder, crop=192, short_side=256, seed=0, batch=8, log=print):
    """A random crop (randomly flipped) of each photo scaled to ``short_side``, and the frozen
    encoder's features of its luminance, as fp16 memory maps in ``out``: the decoder then trains
    without running the encoder. Returns the number of crops."""
    import json

    import torch

    from .nets import encoder_features, lab_inputs

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    total = len(files)
    arrays = {}
    for start in range(0, total, batch):
        chunk = [random_crops(rng, [load_rgb(p, short_side=short_side)], 1, crop)[0]
                 for p in files[start:start + batch]]
        x = torch.from_numpy(np.stack(chunk))
        with torch.no_grad():
            f = {k: v.numpy().astype(np.float16) for k, v in encoder_features(encoder, lab_inputs(x)[0]).items()}
        f["rgb"] = np.round(x.numpy().transpose(0, 2, 3, 1) * 255).astype(np.uint8)
        for name, v in f.items():
            if name not in arrays:
                arrays[name] = np.lib.format.open_memmap(out / f"{name}.npy", "w+", v.dtype, (total,) + v.shape[1:])
            arrays[name][start:start + len(chunk)] = v
        if log and (start // batch) % 50 == 0:
            log(f"cache {out.name}: {start + len(chunk)}/{total}")
    for arr in arrays.values():
        arr.flush()
    (out / "meta.json").write_text(json.dumps({"count": total, "crop": crop, "short_side": short_side,
                                               "files": [p.name for p in files]}))
    return total


def open_feature_cache(folder):
    """{"rgb": uint8 N×H×W×3, "relu…": fp16 N×C×h×w} as read-only memory maps."""
    folder = Path(folder)
    return {p.stem: np.load(p, mmap_mode="r") for p in sorted(folder.glob("*.npy"))}


def join_caches(caches):
    """Several caches seen as one: the same keys, indexable by arrays of row numbers."""
    return {k: _Joined([c[k] for c in caches]) for k in caches[0]}


class _Joined:
    def __init__(self, arrays):
        self.arrays = arrays
        self.starts = np.cumsum([0] + [len(a) for a in arrays])

    def __len__(self):
        return int(self.starts[-1])

    def __getitem__(self, idx):
        idx = np.asarray(idx)
        part = np.searchsorted(self.starts, idx, side="right") - 1
        out = np.empty((len(idx),) + self.arrays[0].shape[1:], self.arrays[0].dtype)
        for p in np.unique(part):
            sel = part == p
            out[sel] = self.arrays[p][idx[sel] - self.starts[p]]
        return out
