"""Our styles beside G'MIC's patch-based `stylize` (the engine of the G'MIC-Qt plug-in) and, as the
reference for what the VGG16 losses can reach, a Gatys et al. 2016 optimisation: the VGG16 style
scores of `chromastyle eval` (style ratio, texture ratio, content) and seconds per image, from the
gray validation photos. Needs the `gmic` command (Debian package gmic) unless --methods leaves it out.

    python benchmarks/compare_gmic.py [--photos 3] [--styles starry_night,great_wave,the_scream]
                                      [--size 256] [--gatys-steps 200] [--methods chromastyle,gmic,gatys]
"""
import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from chromastyle import metrics as M
from chromastyle import pipeline
from chromastyle.color import rgb_to_lab
from chromastyle.evaluate import StyleScorer, _gray_input, validation_photos
from chromastyle.train.data import default_data_dir
from chromastyle.train.losses import (CONTENT_LAYER, STYLE_LAYERS, content_loss, gram_targets,
                                      luminance_image, style_loss)


def gatys(scorer, content, painting, steps, style_weight=10.0):
    """Optimise the pixels (from the gray content image) for the Gram losses at relu1_1…relu4_1,
    in colour and in lightness, plus the content loss at relu4_2 (Adam, lr 0.02)."""
    vgg = scorer.vgg
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1), np.float32))[None]  # noqa: E731
    with torch.no_grad():
        target = gram_targets(vgg, t(painting))
        content_target = vgg(t(content), (CONTENT_LAYER,))[CONTENT_LAYER]
    img = t(content).clone().requires_grad_(True)
    opt = torch.optim.Adam([img], lr=0.02)
    for _ in range(steps):
        x = img.clamp(0, 1)
        f = vgg(x, STYLE_LAYERS + (CONTENT_LAYER,))
        loss = style_weight * (style_loss(f, [target["rgb"]]) +
                               style_loss(vgg(luminance_image(x), STYLE_LAYERS), [target["texture"]]))
        loss = loss + content_loss(f[CONTENT_LAYER], content_target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return img.detach().clamp(0, 1)[0].numpy().transpose(1, 2, 0)


def gmic(gray, painting_path, tmp):
    src, out = Path(tmp) / "in.png", Path(tmp) / "out.png"
    Image.fromarray(M.to_uint8(gray)).save(src)
    subprocess.run(["gmic", str(src), str(painting_path), "stylize[0]", "[1]", "rm[1]", "o", str(out)],
                   check=True, capture_output=True)
    return np.asarray(Image.open(out).convert("RGB"), np.float32) / 255


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=3)
    ap.add_argument("--styles", default="starry_night,great_wave,the_scream")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--gatys-steps", type=int, default=200)
    ap.add_argument("--methods", default="chromastyle,gmic,gatys")
    args = ap.parse_args()
    scorer = StyleScorer()
    files, _ = validation_photos(None, args.photos)
    chosen = args.methods.split(",")
    methods = {}
    if "chromastyle" in chosen:
        methods["chromastyle"] = lambda gray, slug, path, tmp: pipeline.run(gray, styles=slug)
        pipeline.run(np.zeros((64, 64, 3), np.float32), styles="natural")   # load the model first
    if "gmic" in chosen:
        if not shutil.which("gmic"):
            sys.exit("compare_gmic: no `gmic` command: install it (Debian: apt-get install gmic), "
                     "or leave it out with --methods chromastyle,gatys")
        methods["G'MIC stylize"] = lambda gray, slug, path, tmp: gmic(gray, path, tmp)
    if "gatys" in chosen:
        methods[f"Gatys ({args.gatys_steps} steps)"] = lambda gray, slug, path, tmp: gatys(
            scorer, gray, scorer.painting(path, (gray.shape[1], gray.shape[0])), args.gatys_steps)
    rows = {name: [] for name in methods}
    with tempfile.TemporaryDirectory() as tmp:
        for slug in args.styles.split(","):
            path = default_data_dir() / "styles" / f"{slug}.jpg"
            for photo_path in files:
                img = Image.open(photo_path).convert("RGB").resize((args.size, args.size), Image.BICUBIC)
                rgb = np.asarray(img, np.float32) / 255
                gray = _gray_input(rgb_to_lab(rgb.astype(np.float64)))
                painting = scorer.painting(path, (args.size, args.size))
                for name, method in methods.items():
                    t = time.perf_counter()
                    out = method(gray, slug, path, tmp)
                    seconds = time.perf_counter() - t
                    s = scorer.scores(out.astype(np.float32), rgb, painting)
                    rows[name].append((seconds, s["style"], s["texture"], s["content"]))
    print(f"{args.photos} photos × {args.styles} at {args.size}², from gray; ratios: lower is closer to the painting")
    print("| method | seconds per image | style ratio | texture ratio | content |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        s, st, tx, c = np.mean(r, 0)
        print(f"| {name} | {s:.2f} | {st:.3f} | {tx:.3f} | {c:.3f} |")


if __name__ == "__main__":
    main()
