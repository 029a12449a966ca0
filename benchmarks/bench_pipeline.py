"""Seconds per megapixel and peak RSS of the default model on this machine's CPU.

Each size runs in a fresh process so its peak RSS is its own. Prints a table; not a test.
    python benchmarks/bench_pipeline.py [--sizes 1024x1024,2048x2048,3840x2160] [--repeat 2]
"""
import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import numpy as np
from chromastyle import pipeline
w, h, repeat, model, style = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] or None, sys.argv[5]
rng = np.random.default_rng(0)
img = rng.random((h, w), dtype=np.float32)
pipeline.run(img[:64, :64], model=model)                  # load the model, warm up
best = float("inf")
for _ in range(repeat):
    t = time.perf_counter()
    pipeline.run(img, model=model, styles=style)
    best = min(best, time.perf_counter() - t)
print(json.dumps({"seconds": best, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1024x1024,2048x2048,3840x2160")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--model", default="")
    ap.add_argument("--style", default="natural")
    args = ap.parse_args()
    print(f"| size | MP | seconds | s/MP | peak RSS (MB) |   style={args.style}")
    print("|---|---|---|---|---|")
    for size in args.sizes.split(","):
        w, h = map(int, size.split("x"))
        out = subprocess.run([sys.executable, "-c", CHILD, str(w), str(h), str(args.repeat), args.model, args.style],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        mp = w * h / 1e6
        print(f"| {w}×{h} | {mp:.1f} | {r['seconds']:.2f} | {r['seconds'] / mp:.3f} | {r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
