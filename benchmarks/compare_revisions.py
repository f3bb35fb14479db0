#!/usr/bin/env python
"""Fast-mode analysis speed and predictions of two source trees, side by side.

For a change that must not alter behaviour (a refactor): each repetition runs
``analyze_video(..., fast=True)`` on the openfield video once with each tree's
``src`` first on ``PYTHONPATH``, in fresh processes, alternating which goes first
(A B, B A, ...).  Reports frames/s per run and the medians, and compares the two
trees' predictions (the keypoints and likelihoods written to the ``.h5``).

    git worktree add /tmp/before <revision>
    python benchmarks/compare_revisions.py --model model.pt --before /tmp/before --after . --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("POSEKIT_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
VIDEO = SHARED / "dlc_openfield-Pranav-2018-10-30" / "videos" / "m3v1mp4.mp4"

CHILD = r"""
import json, sys, time
from pathlib import Path
import numpy as np
import napari_posekit
from napari_posekit.core.inference import Predictor, analyze_video
from napari_posekit.core.predictions import read_predictions

model, video, out, batch = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
predictor = Predictor.load(model)
t0 = time.perf_counter()
done, gaps, last = 0, [], t0
gen = analyze_video(predictor, video, output_dir=out, fast=True, overwrite=True, batch_size=batch)
try:
    while True:
        event = next(gen)
        now = time.perf_counter()
        gaps.append(now - last)
        last, done = now, event["done"]
except StopIteration as end:
    h5 = end.value
elapsed = time.perf_counter() - t0
pred = read_predictions(h5)
np.save(out / "xy.npy", np.asarray(pred.xy))
np.save(out / "likelihood.npy", np.asarray(pred.likelihood))
print(json.dumps({"package": napari_posekit.__file__, "fps": done / elapsed, "frames": done,
                  "longest_gap_s": max(gaps[1:], default=0.0)}))
"""


def run(tree: Path, model: Path, video: Path, out: Path, batch: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(tree.resolve() / "src")}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(model), str(video), str(out), str(batch)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{tree}: analysis failed:\n{result.stderr[-3000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if not report["package"].startswith(str(tree.resolve())):
        raise RuntimeError(f"{tree}: imported {report['package']} instead of the tree's own package")
    return report


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--before", type=Path, required=True, help="source tree A (a checkout or worktree)")
    ap.add_argument("--after", type=Path, default=HERE.parent, help="source tree B (default: this one)")
    ap.add_argument("--video", type=Path, default=VIDEO)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    trees = {"before": args.before, "after": args.after}
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="posekit-compare-") as tmp:
        for rep in range(args.reps):
            order = ["before", "after"] if rep % 2 == 0 else ["after", "before"]
            for name in order:
                out = Path(tmp) / f"{name}-{rep}"
                runs[name].append(run(trees[name], args.model, args.video, out, args.batch_size))
                print(f"rep {rep} {name}: {runs[name][-1]['fps']:.1f} frames/s", flush=True)
        same = {}
        for array in ("xy", "likelihood"):
            a = np.load(Path(tmp) / "before-0" / f"{array}.npy")
            b = np.load(Path(tmp) / "after-0" / f"{array}.npy")
            same[array] = {
                "identical": bool(np.array_equal(a, b, equal_nan=True)),
                "max_abs_difference": float(np.nanmax(np.abs(a - b))) if a.shape == b.shape else None,
            }
    report = {
        "video": str(args.video),
        "frames_per_s": {
            name: {
                "median": round(statistics.median(r["fps"] for r in rs), 2),
                "all": [round(r["fps"], 2) for r in rs],
                "longest_gap_s": round(max(r["longest_gap_s"] for r in rs), 2),
            }
            for name, rs in runs.items()
        },
        "predictions": same,
    }
    report["after/before"] = round(
        report["frames_per_s"]["after"]["median"] / report["frames_per_s"]["before"]["median"], 3
    )
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
