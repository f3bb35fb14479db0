"""Tracking with identities (core.tracking) on the two SLEAP files in ../shared/data::

    python benchmarks/stitch_tracks.py            # both parts, ~15 s
    python benchmarks/stitch_tracks.py --seeds 5  # the fly clip with more shufflings

Centered pair (``sleap_centered_pair_predictions``, predictions, 27 tracks of 2
flies): the file's tracks are the tracklets; ``stitch`` makes 2 tracks of them.
Printed: tracklets in -> tracks out, instances kept and dropped, frames with
both flies, crossings found, and the time taken.  Then the same instances with
their tracks forgotten, tracked from scratch (``track``), compared with the
stitched tracks.

Fly clip (``sleap_fly_clip``, 1500 frames, every frame's 2 flies proofread):
each frame's two instances are put in a random order (the tracks destroyed),
``track`` with n=2 recovers them, and the result is scored against the true
tracks: IDF1, identity switches and how long the assignment that is best on
the first frame stays the best.  Also with the detections degraded (2 px noise
on every part, 10% of the parts and 3% of the instances missing), the kind of
input a network gives, and with 40 occlusions of 6-40 frames (one fly, or
both) that the frame-to-frame linking cannot bridge, so the stitching must;
with ghosts (in 5% of the frames a false detection: a fly's copy moved
10-40 px, some parts lost); and all three.  The scores count the detections
left, not the poses that were hidden.  Per variant: IDF1 (lowest-highest over
the seeds), identity switches (counted once per fly) and in how many runs,
the lowest best-on-first-kept fraction, how many of the places where
identities switched lie inside (or within 2 frames of) a crossing that
``find_crossings`` flags on the result (what the correction widget steps
through), the crossings per run, and the median time of ``track``.  And the crossings on the true tracks, next to the
frame where the thoraxes come closest.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from napari_posekit.core.sleap import load_slp
from napari_posekit.core.tracking import find_crossings, identity_metrics, stitch, track

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("POSEKIT_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
CENTERED_PAIR = SHARED / "sleap_centered_pair_predictions" / "centered_pair_predictions.slp"
FLY_CLIP = SHARED / "sleap_fly_clip" / "clip.slp"


def by_track(labels) -> np.ndarray:
    """(T, tracks, K, 3): one slot per SLEAP track."""
    n_frames, _, n_parts, _ = labels.xy.shape
    out = np.full((n_frames, len(labels.track_names), n_parts, 3), np.nan, np.float32)
    frames, slots = np.nonzero(labels.instance_track >= 0)
    tracks = labels.instance_track[frames, slots]
    out[frames, tracks, :, :2] = labels.xy[frames, slots]
    out[frames, tracks, :, 2] = labels.scores[frames, slots]
    return out


def centered_pair() -> None:
    labels = load_slp(CENTERED_PAIR)
    tracklets = by_track(labels)
    seen = np.isfinite(tracklets[..., 0]).any(-1)
    start = time.perf_counter()
    result = stitch(tracklets, 2)
    took = time.perf_counter() - start
    kept = np.isfinite(result.poses[..., 0]).any(-1)
    crossings = find_crossings(result.poses, result.confidence)
    kinds = {k: sum(c.kind == k for c in crossings) for k in ("close", "ambiguous")}
    print(f"centered pair: {seen.shape[1]} tracklets -> {result.n_animals} tracks in {took * 1000:.0f} ms")
    print(
        f"  instances: {int(seen.sum())} in, {int(kept.sum())} kept, {int(seen.sum() - kept.sum())} dropped "
        f"({int((result.assignment < 0).sum())} whole tracklets dropped)"
    )
    print(f"  frames with both flies: {int(kept.all(1).sum())} of {len(kept)}")
    print(
        f"  crossings: {len(crossings)} ({kinds['close']} close, {kinds['ambiguous']} ambiguous), "
        f"{sum(c.stop - c.start for c in crossings)} frames; confidence min {np.nanmin(result.confidence):.2f}, "
        f"mean {np.nanmean(result.confidence):.3f}"
    )
    detections = np.concatenate([labels.xy, labels.scores[..., None]], axis=-1).astype(np.float32)
    start = time.perf_counter()
    relinked = track(detections, 2)
    took = time.perf_counter() - start
    scores = identity_metrics(relinked.poses, result.poses)
    print(
        f"  tracked from scratch (tracks forgotten): {took * 1000:.0f} ms, against the stitched tracks "
        f"IDF1 {scores['idf1']:.4f}, {scores['switches']} switches"
    )


def degrade(poses: np.ndarray, rng) -> np.ndarray:
    out = poses.copy()
    out[..., :2] += rng.normal(0, 2.0, out[..., :2].shape)
    out[rng.random(out.shape[:3]) < 0.10, :2] = np.nan
    out[rng.random(out.shape[:2]) < 0.03] = np.nan
    return out


def fragment(poses: np.ndarray, rng) -> np.ndarray:
    """40 occlusions of 6-40 frames: one fly unseen (or both, one time in three)."""
    out = poses.copy()
    for start, length in zip(rng.integers(0, len(out), 40), rng.integers(6, 41, 40)):
        flies = [0, 1] if rng.random() < 1 / 3 else [int(rng.integers(2))]
        out[start : start + length, flies] = np.nan
    return out


def with_ghosts(poses: np.ndarray, rng) -> np.ndarray:
    """A third slot: in 5% of the frames a false detection, a copy of one fly moved 10-40 px with some parts lost."""
    ghosts = np.full_like(poses[:, :1], np.nan)
    for t in np.flatnonzero(rng.random(len(poses)) < 0.05):
        ghost = poses[t, int(rng.integers(2))].copy()
        angle = rng.uniform(0, 2 * np.pi)
        ghost[:, :2] += rng.uniform(10, 40) * np.array([np.cos(angle), np.sin(angle)])
        ghost[rng.random(len(ghost)) < rng.uniform(0, 0.7), :2] = np.nan
        ghosts[t, 0] = ghost
    return np.concatenate([poses, ghosts], axis=1)


def everything(poses: np.ndarray, rng) -> np.ndarray:
    return with_ghosts(fragment(degrade(poses, rng), rng), rng)


def fly_clip(seeds: int) -> None:
    labels = load_slp(FLY_CLIP)
    truth = by_track(labels)
    n_frames = len(truth)
    thorax = labels.node_names.index("thorax")
    apart = np.linalg.norm(truth[:, 0, thorax, :2] - truth[:, 1, thorax, :2], axis=-1)
    closest = int(np.nanargmin(apart))
    crossings = find_crossings(truth)
    print(f"fly clip: {n_frames} frames, {truth.shape[1]} flies ({', '.join(labels.track_names)})")
    print(
        f"  crossings on the true tracks: {len(crossings)}: "
        + ", ".join(f"{c.start}-{c.stop - 1} ({c.min_distance:.0f} px)" for c in crossings)
        + f"; thoraxes closest at frame {closest} ({apart[closest]:.1f} px): "
        + ("inside one" if any(c.start <= closest < c.stop for c in crossings) else "MISSED")
    )
    variants = (
        ("shuffled", lambda p, r: p),
        ("+ degraded", degrade),
        ("+ fragmented", fragment),
        ("+ ghosts", with_ghosts),
        ("all three", everything),
    )
    for name, make in variants:
        rows = []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            seen = make(truth, rng)
            det = np.stack([seen[t, rng.permutation(seen.shape[1])] for t in range(n_frames)])
            start = time.perf_counter()
            result = track(det, 2)
            took = time.perf_counter() - start
            # against the true tracks where a detection was left (what was never seen cannot be tracked)
            reachable = np.where(np.isnan(seen[:, :2, :, 0]).all(-1)[..., None, None], np.nan, truth)
            scores = identity_metrics(result.poses, reachable)
            crossings = find_crossings(result.poses, result.confidence)
            scores["flagged"] = sum(
                any(c.start - 2 <= f < c.stop + 2 for c in crossings) for f in set(scores["switch_frames"])
            )
            scores["crossings"] = len(crossings)
            rows.append((scores, took))
        _report(name, rows)


def _report(name: str, rows: list[tuple[dict, float]]) -> None:
    idf1 = [s["idf1"] for s, _ in rows]
    switched = sum(len(set(s["switch_frames"])) for s, _ in rows)
    print(
        f"  {name:13s} IDF1 {min(idf1):.4f}-{max(idf1):.4f} | switches {sum(s['switches'] for s, _ in rows)} "
        f"in {sum(s['switches'] > 0 for s, _ in rows)}/{len(rows)} runs | best-on-first kept "
        f"{min(s['best_on_first_kept'] for s, _ in rows):.4f} | switch places in a crossing "
        f"{sum(s['flagged'] for s, _ in rows)}/{switched} | crossings/run "
        f"{np.median([s['crossings'] for s, _ in rows]):.0f} | {np.median([t for _, t in rows]) * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="shufflings of the fly clip")
    args = parser.parse_args()
    centered_pair()
    fly_clip(args.seeds)


if __name__ == "__main__":
    main()
