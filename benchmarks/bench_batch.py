"""Batch throughput (frames/s) for 1280×720 and 1920×1080 sequences with 1 and 2 workers, the
stabilizer's cost and effect (warping error, Lai et al. 2018), and Ray's overhead vs. local.

    python benchmarks/bench_batch.py [--frames 8] [--no-ray]
Prints figures; not a test. Sequences are synthetic pans over a photo (ground-truth flow known)."""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from chromastyle import batch, metrics, pipeline

SAMPLE = Path(__file__).resolve().parents[1] / "core" / "chromastyle" / "samples" / "astronaut_gray.png"


def pan(w, h, n, step):
    big = Image.open(SAMPLE).convert("RGB").resize((w + step * n, h), Image.BICUBIC)
    arr = np.asarray(big, np.float32) / 255
    return [np.ascontiguousarray(arr[:, t * step:t * step + w]) for t in range(n)]


def write(frames, folder):
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        Image.fromarray(metrics.to_uint8(f)).save(folder / f"f_{i:04d}.png")
    return batch.list_inputs(folder)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--style", default="starry_night")
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    opts = pipeline.Options(styles=args.style)
    pipeline.run(np.zeros((64, 64, 3), np.float32), options=opts)
    print(f"| sequence | backend | workers | stabilize | frames/s |   ({args.frames} frames, style {args.style})")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for w, h in ((1280, 720), (1920, 1080)):
            inputs = write(pan(w, h, args.frames, 4), tmp / f"in{w}")
            runs = [("local", 1, False), ("local", 2, False), ("local", 1, True)]
            if not args.no_ray:
                runs.append(("ray", 2, False))
            for backend, workers, stab in runs:
                out = tmp / f"out{w}_{backend}{workers}{stab}"
                r = batch.run_batch(inputs, out, opts, workers=workers, stabilize=stab, backend=backend)
                assert not r.failed, r.failed
                print(f"| {w}×{h} | {backend} | {workers} | {'yes' if stab else 'no'} | {len(r.done) / r.seconds:.2f} |")
        # effect of the stabilizer on a 640×360 pan, ground-truth flow
        frames = pan(640, 360, 12, 3)
        t = time.perf_counter()
        raw = batch.process_frames(frames, opts)
        t_raw = time.perf_counter() - t
        t = time.perf_counter()
        stable = batch.process_frames(frames, opts, stabilize=True)
        t_stab = time.perf_counter() - t
        flow = np.zeros(frames[0].shape[:2] + (2,))
        flow[..., 0] = 3
        e_raw = metrics.warping_error(raw, [flow] * (len(frames) - 1))
        e_stab = metrics.warping_error(stable, [flow] * (len(frames) - 1))
        ssim = np.mean([metrics.ssim(a.mean(-1), b.mean(-1)) for a, b in zip(stable, raw)])
        print(f"\nstabilizer, 640×360 pan, 12 frames: warping error {e_raw:.5f} per-frame -> {e_stab:.5f} "
              f"stabilized ({100 * e_stab / e_raw:.0f} %), time {t_stab / t_raw:.2f}× per-frame, "
              f"SSIM stabilized vs per-frame {ssim:.3f}")


if __name__ == "__main__":
    main()
