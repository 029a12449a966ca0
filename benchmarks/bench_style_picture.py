"""A picture as the style: the time to describe it (once per picture), and a run with it against the
same run with a named style, in one process on this machine's CPU. Not a test.

    python benchmarks/bench_style_picture.py [--size 1150x900] [--repeat 5]
"""
import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from chromastyle import imaging, pipeline

ROOT = Path(__file__).resolve().parents[1]
PICTURE = ROOT / "tests" / "data" / "starry_night.jpg"
SAMPLE = ROOT / "core" / "chromastyle" / "samples" / "astronaut_gray.png"


def median_seconds(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1150x900", help="the style picture's size (default about 1 MP)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    w, h = map(int, args.size.split("x"))
    picture = np.asarray(Image.open(PICTURE).convert("RGB").resize((w, h), Image.BICUBIC), np.float32) / 255
    model = pipeline.get_model(None)
    photo = imaging.read_image(SAMPLE).rgb

    def describe():   # as a new picture each time: the caches are emptied
        pipeline._style_images.clear()
        pipeline._descriptors.clear()
        pipeline.style_descriptor(model, pipeline.add_style_image(picture))
    describe()   # loads the describe graph
    first = median_seconds(describe, args.repeat)
    key = pipeline.add_style_image(picture)
    named = median_seconds(lambda: pipeline.run(photo, styles="starry_night"), args.repeat)
    with_picture = median_seconds(lambda: pipeline.run(photo, style_images=[[key, 1.0]]), args.repeat)
    print(f"style picture {w}×{h} ({w * h / 1e6:.2f} MP): described in {first:.3f} s (median of {args.repeat})")
    print(f"run of the {photo.shape[1]}×{photo.shape[0]} sample: named style {named:.3f} s, "
          f"the picture (described before) {with_picture:.3f} s = {with_picture / named:.2f}×")


if __name__ == "__main__":
    main()
