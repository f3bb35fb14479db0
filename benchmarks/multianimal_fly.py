"""The multi-animal model on the two-fly clip: accuracy, identity and speed (issue 18's protocol).

Trains the top-down model (:mod:`napari_posekit.core.topdown`) on every 10th
frame of frames 0-999 of ``sleap_fly_clip`` (labels from ``clip.slp``, frames
decoded from ``clip.mp4``) for at most ``--minutes`` minutes in all, then
judges it on frames 1000-1499, never trained on:

- **accuracy**: mean keypoint error with the best per-frame matching of
  predicted to true flies, over the labeled keypoints found (predicted with a
  likelihood of at least ``PCUTOFF``, 0.6); the share of labeled keypoints
  found; both again at SLEAP's default peak threshold, 0.2;
- **identity**, without any correction: the share of frames whose best
  assignment of predicted to true flies is the one best on frame 1000; IDF1
  and identity switches (:func:`napari_posekit.core.tracking.identity_metrics`);
  for the finder's frame-by-frame assignment and after tracking;
- **speed**: frames/s end to end (decoding in a thread, both networks,
  tracking) with ``--threads`` threads, and the seconds of each stage.

    python benchmarks/multianimal_fly.py --minutes 15 --json fly.json
    python benchmarks/multianimal_fly.py --minutes 1 --eval-frames 100    # a quick check
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sleap_fly_clip"


LOW_CUTOFF = 0.2  # SLEAP's default peak threshold, reported beside DeepLabCut's pcutoff


def _load(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def fly_labels(folder: Path) -> tuple[np.ndarray, list[str], list[str], list[tuple[str, str]]]:
    """``(xy (1500, 2, K, 2) by track, track names, node names, edges)`` from ``clip.slp``."""
    from napari_posekit.core.sleap import load_slp

    labels = load_slp(folder / "clip.slp")
    n_frames = int(labels.frame_indices.max()) + 1
    xy = np.full((n_frames, len(labels.track_names), labels.n_nodes, 2), np.nan)
    for row, frame in enumerate(labels.frame_indices):
        for slot, track in enumerate(labels.instance_track[row]):
            if track >= 0:
                xy[frame, track] = labels.xy[row, slot]
    return xy, list(labels.track_names), list(labels.node_names), list(labels.edges)


def decode(video: Path, frames) -> np.ndarray:
    from napari_posekit.core.video import VideoReader

    reader = VideoReader(video)
    try:
        return np.stack([np.asarray(reader.get(int(i))) for i in frames])
    finally:
        reader.close()


def accuracy(pred: np.ndarray, truth: np.ndarray, pcutoff: float) -> dict:
    """Best per-frame matching of predicted to true animals; errors over the keypoints found."""
    t, n = truth.shape[:2]
    perms = list(itertools.permutations(range(n)))
    errors, found, labeled, best, found_low, errors_all = [], 0, 0, [], 0, []
    for f in range(t):
        costs = []
        for perm in perms:
            d = np.linalg.norm(pred[f, list(perm), :, :2] - truth[f, :, :, :2], axis=-1)
            costs.append(np.nanmean(d) if np.isfinite(d).any() else np.inf)
        b = int(np.argmin(costs))
        best.append(b)
        p = pred[f, list(perms[b])]
        present = np.isfinite(truth[f, ..., :2]).all(-1)
        ok = present & np.isfinite(p[..., :2]).all(-1) & (np.nan_to_num(p[..., 2]) >= pcutoff)
        labeled += int(present.sum())
        found += int(ok.sum())
        distance = np.linalg.norm(p[..., :2] - truth[f, ..., :2], axis=-1)
        errors.extend(distance[ok].tolist())
        low = present & np.isfinite(p[..., :2]).all(-1) & (np.nan_to_num(p[..., 2]) >= LOW_CUTOFF)
        found_low += int(low.sum())
        errors_all.extend(distance[low].tolist())
    best = np.asarray(best)
    e = np.asarray(errors)
    return {
        "mean_error_px": float(e.mean()) if e.size else None,
        "median_error_px": float(np.median(e)) if e.size else None,
        "p95_error_px": float(np.percentile(e, 95)) if e.size else None,
        "found_pct": 100.0 * found / max(labeled, 1),
        f"found_pct_at_{LOW_CUTOFF}": 100.0 * found_low / max(labeled, 1),
        f"mean_error_px_at_{LOW_CUTOFF}": float(np.mean(errors_all)) if errors_all else None,
        "best_on_first_kept_pct": 100.0 * float((best == best[0]).mean()),
        "assignment_changes": int((np.diff(best) != 0).sum()),
    }


def identity(pred: np.ndarray, truth: np.ndarray) -> dict:
    try:
        from napari_posekit.core.tracking import identity_metrics
    except ImportError:
        return {}
    m = identity_metrics(pred, truth)
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in m.items()}


def _options(pairs: list[str]) -> dict:
    """``NAME=VALUE`` pairs as keyword arguments, values read as JSON where they parse (numbers, true, null)."""
    options = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            options[name] = json.loads(value)
        except ValueError:
            options[name] = value
    return options


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--minutes", type=float, default=15.0, help="training budget, both networks (default 15)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-frames", type=int, default=500, help="frames judged from 1000 on (default 500)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--model", type=Path, help="a trained model folder: skip training")
    ap.add_argument("--out", type=Path, help="where the model is written (default: a temporary folder)")
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a training option for both networks, or one with a finder_/pose_ prefix (e.g. pose_ema_decay=0.98)",
    )
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from napari_posekit.core.hardware import cpu_description
    from napari_posekit.core.options import PCUTOFF
    from napari_posekit.core.topdown import MultiAnimalModel, iter_train_topdown, predict_video, track_identities

    report: dict = {
        "cpu": cpu_description(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {len(os.sched_getaffinity(0))} usable",
        "threads": args.threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "minutes": args.minutes,
        "options": _options(args.option),
    }
    _load(f"CPU {report['cpu']}; {report['machine']}; {args.threads} threads")
    xy, individuals, nodes, edges = fly_labels(args.data)
    video = args.data / "clip.mp4"
    train_frames = np.arange(0, 1000, 10)
    folder = args.model
    if folder is None:
        folder = args.out or Path(tempfile.mkdtemp(prefix="posekit-fly-")) / "model"
        images = decode(video, train_frames)
        _load(f"training on {len(images)} frames for at most {args.minutes} minutes -> {folder}")
        t0 = time.perf_counter()
        gen = iter_train_topdown(
            images, xy[train_frames], individuals, nodes, folder=folder, minutes=args.minutes,
            skeleton=edges, train_fraction=1.0, eval_every=0, **_options(args.option),
        )  # fmt: skip
        last, steps = None, {}
        for event in gen:
            steps[event["stage"]] = event["step"]
            if last is None or event["stage"] != last["stage"] or event["step"] % 50 == 0:
                _load(f"{event['stage']} step {event['step']} loss {event['loss']:.4f} overall {event['overall']:.2f}")
            last = event
        report["train_s"] = round(time.perf_counter() - t0, 1)
        report["train_steps"] = steps
        report["description"] = json.loads((folder / "multianimal.json").read_text())
        del images
    t = time.perf_counter()
    probe = decode(video, train_frames[::6])
    model = MultiAnimalModel.load(
        folder, backend=args.backend, probe_frames=probe, probe_xy=xy[train_frames[::6]], report=_load
    )
    report["load_s"] = round(time.perf_counter() - t, 1)
    report["backend"] = model.backend
    _load(f"backends: {model.backend}")

    stop = 1000 + args.eval_frames
    truth = np.concatenate([xy[1000:stop], np.ones((*xy[1000:stop].shape[:3], 1))], axis=-1)
    # warm-up (graphs, threads) outside the timing
    model.predict(probe[:8], batch_size=args.batch_size)
    timings: dict = {}
    t = time.perf_counter()
    frames, poses, evidence = predict_video(
        model, video, start=1000, stop=stop, batch_size=args.batch_size, timings=timings
    )
    t_predict = time.perf_counter() - t
    t = time.perf_counter()
    tracked, confidence = track_identities(poses, evidence)
    t_track = time.perf_counter() - t
    n = len(frames)
    report["speed"] = {
        "frames": n,
        "end_to_end_fps": n / (t_predict + t_track),
        "predict_fps": n / t_predict,
        "ms_per_frame": {k: 1000 * v / n for k, v in timings.items()} | {"tracking": 1000 * t_track / n},
    }
    t = time.perf_counter()
    decode(video, range(1000, 1000 + min(n, 200)))
    report["speed"]["ms_per_frame"]["decode_alone"] = 1000 * (time.perf_counter() - t) / min(n, 200)
    report["finder_order"] = accuracy(poses, truth, PCUTOFF) | identity(poses, truth)
    report["tracked"] = accuracy(tracked, truth, PCUTOFF) | identity(tracked, truth)
    report["identity_confidence_mean"] = float(np.nanmean(confidence))
    report["targets"] = "mean error <= 4 px, found >= 95 %, identity kept >= 99 %, >= 40 frames/s"
    print(json.dumps(report, indent=2, default=str))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
