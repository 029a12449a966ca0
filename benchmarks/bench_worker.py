"""Worker vs in-process time (1 MP and 3840×2160), and a burst of concurrent clients.

    python benchmarks/bench_worker.py [--clients 50]
Starts its own worker on 127.0.0.1 with a private state file; prints figures, not a test.
"""
import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from chromastyle import pipeline
from chromastyle.client import Client


def interleaved(a, b, repeat):
    """Median seconds of a and b, run alternately after one warm-up each (this machine is noisy)."""
    a()
    b()
    ta, tb = [], []
    for _ in range(repeat):
        for fn, times in ((a, ta), (b, tb)):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        client = Client(Path(tmp) / "worker.json", python=sys.executable)
        client.connect()
        try:
            pipeline.run(np.zeros((64, 64), np.float32))
            print("| image | in-process (s, median) | worker (s, median) | overhead |")
            print("|---|---|---|---|")
            for w, h in ((1024, 1024), (3840, 2160)):
                px = (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)
                local, remote = interleaved(lambda: pipeline.run(px.astype(np.float32) / 255),
                                            lambda: client.run(px.tobytes(), w, h, 3, "uint8"), args.repeat)
                print(f"| {w}×{h} | {local:.3f} | {remote:.3f} | {100 * (remote / local - 1):+.1f} % |")
            small = (np.random.default_rng(1).random((128, 128, 3)) * 255).astype(np.uint8).tobytes()
            latencies, errors = [], []

            def one():
                c = Client(Path(tmp) / "worker.json", autostart=False)
                t = time.perf_counter()
                try:
                    out = c.run(small, 128, 128, 3, "uint8")
                    assert len(out) == len(small)
                    latencies.append(time.perf_counter() - t)
                except Exception as e:  # counted as lost
                    errors.append(e)
            threads = [threading.Thread(target=one) for _ in range(args.clients)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            total = time.perf_counter() - t0
            q = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else [0] * 19
            print(f"\nburst: {args.clients} clients × one 128² job: {len(latencies)} completed, {len(errors)} lost, "
                  f"{total:.2f} s in all; latency p50 {statistics.median(latencies):.3f} s, p95 {q[18]:.3f} s")
        finally:
            client.stop()


if __name__ == "__main__":
    main()
