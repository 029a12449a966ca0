"""Our styles beside G'MIC's patch-based `stylize` (the engine of the G'MIC-Qt plug-in) on
validation photos: time, SSIM of lightness vs input (content), Gram distance ratio to the painting
(style; lower reads more as the painting). Needs the `gmic` command (Debian package gmic).

    python benchmarks/compare_gmic.py [--photos 3] [--styles starry_night,great_wave,the_scream]
"""
import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from chromastyle import metrics as M
from chromastyle import pipeline
from chromastyle.color import rgb_to_lab
from chromastyle.evaluate import SIZE, _gray_input, validation_photos
from chromastyle.train.data import default_data_dir, load_rgb
from chromastyle.train.losses import RandomFeatures, gram, style_loss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=3)
    ap.add_argument("--styles", default="starry_night,great_wave,the_scream")
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    feats = RandomFeatures()
    f = lambda rgb: feats(torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))[None]).float())  # noqa: E731
    files, _ = validation_photos(None, args.photos)
    rows = {"chromastyle": [], "G'MIC stylize": []}
    pipeline.run(np.zeros((64, 64, 3), np.float32), styles="natural")
    with tempfile.TemporaryDirectory() as tmp:
        for slug in args.styles.split(","):
            painting = default_data_dir() / "styles" / f"{slug}.jpg"
            with torch.no_grad():
                target = [gram(x) for x in f(load_rgb(painting, long_side=int(2.5 * SIZE)) / 255.0)]
            for path in files:
                img = Image.open(path).convert("RGB")
                img = img.resize((args.size, round(args.size * img.height / img.width)), Image.LANCZOS)
                rgb = np.asarray(img, np.float32) / 255
                gray = _gray_input(rgb_to_lab(rgb.astype(np.float64)))
                t = time.perf_counter()
                ours = pipeline.run(gray, styles=slug)
                t_ours = time.perf_counter() - t
                src, out = Path(tmp) / "in.png", Path(tmp) / "out.png"
                Image.fromarray(M.to_uint8(gray)).save(src)
                t = time.perf_counter()
                subprocess.run(["gmic", str(src), str(painting), "stylize[0]", "[1]", "rm[1]", "o", str(out)],
                               check=True, capture_output=True)
                t_gmic = time.perf_counter() - t
                theirs = np.asarray(Image.open(out).convert("RGB"), np.float32) / 255
                for name, result, seconds in (("chromastyle", ours, t_ours), ("G'MIC stylize", theirs, t_gmic)):
                    with torch.no_grad():
                        ratio = float(style_loss(f(result), target)) / float(style_loss(f(rgb), target))
                    ssim = M.ssim(rgb_to_lab(result.astype(np.float64))[..., 0] / 100,
                                  rgb_to_lab(rgb.astype(np.float64))[..., 0] / 100)
                    rows[name].append((seconds, ssim, ratio))
    print(f"| method | seconds per image ({args.size} px wide) | SSIM lightness vs input | Gram distance ratio |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        s, q, d = np.mean(r, 0)
        print(f"| {name} | {s:.2f} | {q:.3f} | {d:.3f} |")


if __name__ == "__main__":
    main()
