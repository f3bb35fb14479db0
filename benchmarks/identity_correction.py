"""Identity correction: how many swaps and clicks does the Identities widget need to restore the true identities?

Two parts::

    python benchmarks/identity_correction.py            # fly clip (5 seeds x 3 planted swaps) + centered pair
    python benchmarks/identity_correction.py --seeds 1 --swaps 6

**Fly clip** (``sleap_fly_clip``: 2 flies, 1500 frames, proofread tracks).
The true tracks are corrupted with identity swaps the way a tracker makes them:
a seeded choice of the clip's crossings (where the flies come close,
:func:`~napari_posekit.core.tracking.find_crossings` on the truth), each
swapped from a random frame inside it to the end
(:func:`~napari_posekit.core.identity_edits.swap_from`). Then the correction
is replayed through :class:`~napari_posekit.controllers.identities.IdentitySession`
as a person would use the widget: press **Next crossing** (1 click), look at
the animals there (an oracle compares them with the truth a few frames after
the crossing), press **Swap from this frame on** (1 click) when they are
swapped; if some frames around the crossing are still wrong, fix them with
**Swap in range** (type two frames and press: 3 clicks). Counted: crossings
reviewed, swaps, clicks, and the frames whose identities still differ from the
truth at the end. Two landings are compared: the session's (the frame where a
swap most likely happened, :func:`~napari_posekit.core.identity_edits.swap_frame`)
and the crossing's first frame.

**Centered pair** (``sleap_centered_pair_predictions``: model predictions, 27
track fragments, 2 flies, no ground truth): stitching's tracks and time, the
crossings a person must review (and how many frames they cover), and how many
of them the motion check flags as looking swapped.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_posekit.controllers.identities import SEARCH_MARGIN, IdentitySession
from napari_posekit.core.hardware import cpu_model
from napari_posekit.core.identity_edits import swap_from
from napari_posekit.core.multianimal import Tracks, read_tracks
from napari_posekit.core.tracking import find_crossings

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("POSEKIT_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
FLY = SHARED / "sleap_fly_clip" / "clip.slp"
PAIR = SHARED / "sleap_centered_pair_predictions" / "centered_pair_predictions.slp"
LOOK_AFTER = 3  # the person judges the identities this many frames after a crossing


def wrong_frames(tracks: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``(T,)`` True where the two animals of ``tracks`` match the truth better the other way round."""
    xy, true = tracks[..., :2].astype(float), truth[..., :2].astype(float)

    def dist(p, q):
        d = np.linalg.norm(p - q, axis=-1)
        return np.nanmean(np.where(np.isfinite(d), d, np.nan), axis=-1)

    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        kept = dist(xy[:, 0], true[:, 0]) + dist(xy[:, 1], true[:, 1])
        swapped = dist(xy[:, 0], true[:, 1]) + dist(xy[:, 1], true[:, 0])
    return np.isfinite(kept) & np.isfinite(swapped) & (swapped < kept)


@dataclass
class Replay:
    planted: int
    crossings: int
    reviewed: int
    swaps: int
    range_fixes: int
    clicks: int
    wrong_before: int
    wrong_after: int


def corrupt(truth: Tracks, crossings: list, n: int, rng: np.random.Generator) -> tuple[Tracks, list[int]]:
    """``truth`` with ``n`` identity swaps, each from a random frame inside one of ``crossings`` to the end."""
    chosen = sorted(rng.choice(len(crossings), size=min(n, len(crossings)), replace=False).tolist())
    tracks, at = truth, []
    for k in chosen:
        c = crossings[k]
        f = int(rng.integers(c.start, c.stop)) if c.stop > c.start else c.start
        tracks = swap_from(tracks, max(f, 1), 0, 1)
        at.append(max(f, 1))
    return tracks, at


def replay(tracks: Tracks, truth: Tracks, *, land_on_start: bool) -> Replay:
    """Correct ``tracks`` through the session as a person would; count swaps and clicks."""
    session = IdentitySession(tracks)
    wrong_before = int(wrong_frames(tracks.poses, truth.poses).sum())
    frame, clicks, swaps, fixes = -1, 0, 0, 0
    while True:
        view = session.next_crossing(frame)
        if view is None:
            break
        clicks += 1
        show = view.start if land_on_start else view.focus
        frame = view.focus
        last = session.index_of(view.stop)
        after = min(last + LOOK_AFTER, len(session.frames) - 1)
        if wrong_frames(session.tracks.poses[after : after + 1], truth.poses[after : after + 1])[0]:
            session.swap_from(show, *view.pair)
            swaps += 1
            clicks += 1
        lo = max(session.index_of(view.start) - SEARCH_MARGIN, 0)
        hi = min(last + SEARCH_MARGIN + 1, len(session.frames))
        bad = np.flatnonzero(wrong_frames(session.tracks.poses[lo:hi], truth.poses[lo:hi])) + lo
        if len(bad):  # a few frames around the crossing still wrong: Swap in range (two frames typed, one press)
            session.swap_range(session.frame_of(bad[0]), session.frame_of(bad[-1]), *view.pair)
            fixes += 1
            clicks += 3
    return Replay(
        planted=0,
        crossings=len(session.crossing_views),
        reviewed=session.reviewed,
        swaps=swaps,
        range_fixes=fixes,
        clicks=clicks,
        wrong_before=wrong_before,
        wrong_after=int(wrong_frames(session.tracks.poses, truth.poses).sum()),
    )


def fly_clip(seeds: int, n_swaps: int) -> None:
    truth = read_tracks(FLY)
    crossings = find_crossings(truth.poses, None)
    span = sum(c.stop - c.start for c in crossings)
    print(f"fly clip: {truth.n_frames} frames, {truth.individuals}; {len(crossings)} crossings on the truth")
    print(f"  ({span} frames; closest {min(c.min_distance for c in crossings):.1f} px)")
    header = f"{'landing':<14}{'seed':>5}{'planted':>8}{'crossings':>10}{'swaps':>6}{'range':>6}"
    print(header + f"{'clicks':>7}{'wrong before':>13}{'wrong after':>12}")
    totals: dict[str, list[Replay]] = {"swap frame": [], "crossing start": []}
    for seed in range(seeds):
        corrupted, _at = corrupt(truth, crossings, n_swaps, np.random.default_rng(seed))
        for name, runs in totals.items():
            r = replay(corrupted, truth, land_on_start=name == "crossing start")
            r.planted = min(n_swaps, len(crossings))
            runs.append(r)
            print(
                f"{name:<14}{seed:>5}{r.planted:>8}{r.crossings:>10}{r.swaps:>6}{r.range_fixes:>6}"
                f"{r.clicks:>7}{r.wrong_before:>13}{r.wrong_after:>12}"
            )
    for name, runs in totals.items():
        print(
            f"  {name}: median {statistics.median(r.swaps for r in runs)} swaps, "
            f"{statistics.median(r.range_fixes for r in runs)} range fixes, "
            f"{statistics.median(r.clicks for r in runs)} clicks "
            f"({statistics.median(r.clicks / max(r.planted, 1) for r in runs):.1f} per planted swap), "
            f"frames still wrong: max {max(r.wrong_after for r in runs)}"
        )
    session = IdentitySession(truth)
    t0 = time.perf_counter()
    for _ in range(5):
        session.swap_from(700, 0, 1)
    dt = (time.perf_counter() - t0) / 5
    print(f"  one edit (swap + crossings found again) on {truth.n_frames} frames: {dt * 1e3:.0f} ms")


def centered_pair() -> None:
    raw = read_tracks(PAIR)
    t0 = time.perf_counter()
    session = IdentitySession.open(PAIR, n_animals=2)
    dt = time.perf_counter() - t0
    views = session.crossing_views
    frames = sum(v.stop - v.start + 1 for v in views)
    flagged = [v for v in views if v.gain > 0]
    present = session.present()
    print(
        f"centered pair: {raw.n_individuals} tracks -> {session.tracks.n_individuals} after stitching "
        f"(read + stitch + crossings {dt:.1f} s); each animal tracked on "
        f"{', '.join(f'{int(n)}' for n in present.sum(axis=0))} of {session.tracks.n_frames} frames"
    )
    print(
        f"  {len(views)} crossings to review ({frames} frames, "
        f"{sum(v.kind == 'close' for v in views)} close, {sum(v.kind == 'ambiguous' for v in views)} uncertain); "
        f"{len(flagged)} look swapped by the motion check "
        f"({', '.join(str(v.focus) for v in flagged) or 'none'}); reviewing all: {len(views)} clicks of Next crossing"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--swaps", type=int, default=3, help="identity swaps planted per seed")
    args = parser.parse_args()
    print(f"{cpu_model()} ({os.cpu_count()} CPUs), Python {platform.python_version()}, numpy {np.__version__}")
    if FLY.exists():
        fly_clip(args.seeds, args.swaps)
    else:
        print(f"skipped the fly clip: {FLY} not found")
    if PAIR.exists():
        centered_pair()
    else:
        print(f"skipped the centered pair: {PAIR} not found")


if __name__ == "__main__":
    main()
