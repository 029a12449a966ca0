"""How much a model's styles blot the picture: blown-out or inverted areas that do not follow the photo.

For validation photos at the stroke size (384 px long), each named style and each style picture given,
at strength 1 through `pipeline.run` (colour input, stylized from its own colours):
- tone > 0.3 / > 0.4: share of 8×8 blocks whose lightness (L*/100) moves that much more than the
  whole picture's mean shift (a dark painting may darken the picture; a blotch moves one area);
- clipped: share of pixels pushed to clipping (every channel below 0.03 or above 0.97) where the
  photo was between 0.08 and 0.92.
Prints one row per style and the mean; not a test. Needs the shared data's validation photos.
    python benchmarks/blotches.py [--model PATH] [--photos 6] [--styles starry_night,…] [--pictures DIR]
"""
import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from chromastyle import pipeline
from chromastyle.color import rgb_to_lab
from chromastyle.evaluate import validation_photos
from chromastyle.train.data import list_images


def block_lightness(rgb, cell=8):
    L = rgb_to_lab(rgb)[..., 0] / 100
    h, w = L.shape[0] // cell * cell, L.shape[1] // cell * cell
    return L[:h, :w].reshape(h // cell, cell, w // cell, cell).mean((1, 3))


def blot_scores(photo, out):
    shift = block_lightness(out) - block_lightness(photo)
    local = np.abs(shift - shift.mean())
    mid = ((photo > 0.08) & (photo < 0.92)).all(-1)
    clipped = ((out > 0.97) | (out < 0.03)).all(-1) & mid
    return [float((local > 0.3).mean()), float((local > 0.4).mean()), float(clipped.mean())]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--photos", type=int, default=6)
    ap.add_argument("--styles", default="starry_night,the_scream,japanese_footbridge,great_wave")
    ap.add_argument("--pictures", type=Path, help="a folder of paintings to use as style pictures")
    args = ap.parse_args()
    files, _ = validation_photos(None, args.photos)
    photos = []
    for f in files:
        im = Image.open(f).convert("RGB")
        im.thumbnail((384, 384), Image.BICUBIC)
        photos.append(np.asarray(im, np.float32) / 255)
    runs = [(s, {"styles": s}) for s in args.styles.split(",")]
    runs += [(p.stem, {"style_images": [[str(p), 1.0]]})
             for p in (list_images(args.pictures) if args.pictures else [])]
    print("| style | tone > 0.3 | tone > 0.4 | clipped |\n|---|---|---|---|")
    rows = []
    for name, options in runs:
        scores = np.mean([blot_scores(p, pipeline.run(p, model=args.model, **options)) for p in photos], 0)
        rows.append(scores)
        print(f"| {name} | " + " | ".join(f"{100 * v:.1f} %" for v in scores) + " |", flush=True)
    print("| mean | " + " | ".join(f"{100 * v:.1f} %" for v in np.mean(rows, 0)) + " |")


if __name__ == "__main__":
    main()
