"""Whole-process time and peak RSS of `chromastyle run` on this machine's CPU, per size and style.

Each run is a fresh `python -m chromastyle run IN -o OUT.png` (start-up, model load, reading,
the model, writing: what a user waits for). The input is the bundled sample photo scaled to each
size. Prints a table with the median of --repeat runs and the ratio to the first size; not a test.
    python benchmarks/bench_pipeline.py [--sizes 1024x1024,3840x2160] [--styles natural,starry_night]
                                        [--hints N]   (N colour hints painted as 1%-wide squares)
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

SAMPLE = Path(__file__).resolve().parents[1] / "core" / "chromastyle" / "samples" / "astronaut_gray.png"


# `python -m chromastyle …` that also reports its own peak RSS when it exits
CLI = ("import resource, runpy, sys\n"
       "sys.argv = ['chromastyle'] + sys.argv[1:]\n"
       "try:\n    runpy.run_module('chromastyle', run_name='__main__')\n"
       "finally:\n    print('peak_rss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")


def hint_image(size, count, seed=0):
    """A transparent PNG with ``count`` squares of random colour, as an artist paints hints."""
    w, h = size
    rng = np.random.default_rng(seed)
    side = max(2, w // 100)
    rgba = np.zeros((h, w, 4), np.uint8)
    for _ in range(count):
        x, y = rng.integers(0, w - side), rng.integers(0, h - side)
        rgba[y:y + side, x:x + side] = (*rng.integers(0, 256, 3), 255)
    return Image.fromarray(rgba, "RGBA")


def run_once(src, dst, style, hints=None):
    """Seconds and peak RSS (MB) of one CLI process."""
    t = time.perf_counter()
    extra = ["--hints", str(hints)] if hints else []
    done = subprocess.run([sys.executable, "-c", CLI, "run", str(src), "-o", str(dst), "--style", style, *extra],
                          capture_output=True, text=True, env={**os.environ, "CHROMASTYLE_OFFLINE": "1"})
    seconds = time.perf_counter() - t
    if done.returncode:
        raise SystemExit(done.stderr)
    rss = int(done.stderr.rsplit("peak_rss_kb", 1)[1].split()[0])
    return seconds, rss / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1024x1024,3840x2160")
    ap.add_argument("--styles", default="natural,starry_night")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hints", type=int, default=0, help="also paint this many colour hints")
    args = ap.parse_args()
    sizes = [tuple(map(int, s.split("x"))) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        inputs, hints = {}, {}
        for w, h in sizes:
            inputs[w, h] = Path(tmp) / f"in_{w}x{h}.png"
            Image.open(SAMPLE).convert("L").resize((w, h), Image.BICUBIC).save(inputs[w, h], compress_level=1)
            if args.hints:
                hints[w, h] = Path(tmp) / f"hints_{w}x{h}.png"
                hint_image((w, h), args.hints).save(hints[w, h])
        print("| style | size | MP | seconds (median) | × first size | peak RSS (MB) |")
        print("|---|---|---|---|---|---|")
        for style in args.styles.split(","):
            first = None
            for w, h in sizes:
                runs = [run_once(inputs[w, h], Path(tmp) / "out.png", style, hints.get((w, h)))
                        for _ in range(args.repeat)]
                seconds, rss = statistics.median(r[0] for r in runs), max(r[1] for r in runs)
                first = first or seconds
                print(f"| {style} | {w}×{h} | {w * h / 1e6:.1f} | {seconds:.2f} | {seconds / first:.2f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
