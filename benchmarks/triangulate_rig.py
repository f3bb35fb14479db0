#!/usr/bin/env python
"""Benchmark of multi-camera triangulation: robustness, speed and the shared real session.

Run by hand (it is not a test), from the repository root::

    python benchmarks/triangulate_rig.py            # full run (a few minutes on 2 cores)
    python benchmarks/triangulate_rig.py --quick    # smoke run: a tenth of the hour, fewer repetitions

1. Robustness. A synthetic rig of 6 cameras (1280x1024, focal 1400-1900 px, radial and
   tangential distortion, on a ring of radius 1 m, 400-550 mm up, all looking at the
   origin) and 10,000 points uniform in a 300 mm cube. Every view gets 2 px Gaussian
   noise. Then 10% of the points are made confidently wrong in two cameras (uniform
   random image positions, likelihood 0.99), two ways: (a) the same 10% of the points in
   both cameras, (b) an independent 10% in each camera (19% of the points touched).
   Reported: the 90th percentile of the 3D error of the robust triangulation (and its
   ratio to the noise-only case), and of plain weighted least squares (``robust=False``),
   plus the median 3D error over the corrupted points only. Medians over ``--reps`` seeds.
2. Speed. 4 cameras x 15 body parts x 108,000 frames (1 hour at 30 fps): a random-walk
   animal projected into a 4-camera rig, 2 px noise, likelihood uniform in 0.3-1, 5% of
   the 2D points missing. Timed end to end from the arrays (undistortion, RANSAC,
   refinement, reprojection errors) with ``triangulate``; also ``robust=False``. The
   process is pinned to 2 CPUs and BLAS/OpenMP to 2 threads. Then the files of that size:
   writing the 4 prediction files (``write_predictions``, .h5 + .csv), reading them back
   (``read_views``), writing and reading the 3D result (``write_points3d``,
   ``read_points3d``), and smoothing (``smooth_points3d``) of the first ``--smooth-frames``
   frames, extrapolated to the hour.
3. Real data. ``../shared/data/sleap_anipose_minimal_session``: its ``calibration.toml``
   restricted to back, mid and top (its ``side`` camera is a broken copy of ``top``), the
   proofread SLEAP analysis files (and the .slp, which must give the same points).
   Reported: the median reprojection error per camera (over the points it was used for,
   and over every point it saw), and the median 3D distance to the session's own
   ``points3d.h5`` (made by sleap-anipose with all four cameras).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_posekit.core.cameras import Camera, Rig, read_calibration, rotation_vector
from napari_posekit.core.triangulation import reprojection_errors, triangulate

SESSION = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sleap_anipose_minimal_session"


def cpu() -> tuple[str, str]:
    model, flags = "unknown", ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and model == "unknown":
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            flags = line.split(":", 1)[1].strip()
    return model, flags


def look_at(center):
    center = np.asarray(center, dtype=float)
    z = -center / np.linalg.norm(center)
    x = np.cross(z, (0.0, 0.0, 1.0))
    x /= np.linalg.norm(x)
    rot = np.stack([x, np.cross(z, x), z])
    return rotation_vector(rot), -rot @ center


def make_rig(n: int) -> Rig:
    cams = []
    for i in range(n):
        angle = 2 * np.pi * i / n
        rvec, tvec = look_at((1000 * np.cos(angle), 1000 * np.sin(angle), 400 + 150 * (i % 2)))
        f = 1400.0 + 100 * i
        matrix = [[f, 0, 640 + 5 * i], [0, f, 512 - 3 * i], [0, 0, 1]]
        cams.append(Camera(f"cam{i}", (1280, 1024), matrix, (-0.2, 0.05, 0.001, -0.001, 0.0), rvec, tvec))
    return Rig(cams)


def p90(truth, tri) -> float:
    return float(np.nanpercentile(np.linalg.norm(tri.points3d - truth, axis=-1), 90))


def robustness(reps: int, n: int = 10000) -> None:
    rig = make_rig(6)
    rows: dict[str, list[float]] = {}
    for seed in range(reps):
        rng = np.random.default_rng(seed)
        truth = rng.uniform(-150, 150, (n, 3))
        clean = rig.project(truth) + rng.normal(0, 2.0, (6, n, 2))
        like = np.full((6, n), 0.99)
        rows.setdefault("noise only, robust", []).append(p90(truth, triangulate(rig, clean, like)))
        rows.setdefault("noise only, least squares", []).append(p90(truth, triangulate(rig, clean, like, robust=False)))
        for label, same in (("(a) same 10% in 2 cams", True), ("(b) own 10% per cam", False)):
            pix = clean.copy()
            picks = [rng.permutation(n)[: n // 10]] * 2 if same else [rng.permutation(n)[: n // 10] for _ in range(2)]
            for cam, bad in zip((1, 4), picks, strict=True):
                pix[cam, bad] = rng.uniform((0, 0), (1280, 1024), (len(bad), 2))
            touched = np.unique(np.concatenate(picks))
            rob = triangulate(rig, pix, like)
            lsq = triangulate(rig, pix, like, robust=False)
            rows.setdefault(f"{label}, robust", []).append(p90(truth, rob))
            rows.setdefault(f"{label}, least squares", []).append(p90(truth, lsq))
            for name, tri in (("robust", rob), ("least squares", lsq)):
                err = np.linalg.norm(tri.points3d[touched] - truth[touched], axis=-1)
                rows.setdefault(f"{label}, {name}, corrupted points' median", []).append(float(np.nanmedian(err)))
    med = {k: statistics.median(v) for k, v in rows.items()}
    base = med["noise only, robust"]
    print(f"\n1. Robustness: 6 cameras, {n} points, 2 px noise, median over {reps} seeds (3D error, mm)")
    print(f"{'case':58s} {'p90 / median':>12s} {'x noise-only':>13s}")
    for k, v in med.items():
        print(f"{k:58s} {v:12.3f} {v / base:13.2f}")
    for label in ("(a) same 10% in 2 cams", "(b) own 10% per cam"):
        ratio = med[f"{label}, least squares"] / med[f"{label}, robust"]
        deep = (
            med[f"{label}, least squares, corrupted points' median"] / med[f"{label}, robust, corrupted points' median"]
        )
        print(f"{label}: least squares / robust: p90 {ratio:.1f}x, corrupted points' median {deep:.1f}x")


def walking_animal(frames: int, parts: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    body = np.cumsum(rng.normal(0, 2.0, (frames, 3)), axis=0)
    body = 120 * np.tanh(body / 120)  # stays in the volume
    offsets = rng.normal(0, 30, (parts, 3))
    return body[:, None] + offsets[None] + rng.normal(0, 1.0, (frames, parts, 3))


def speed(frames: int, parts: int, reps: int, smooth_frames: int) -> None:
    rig = make_rig(4)
    rng = np.random.default_rng(1)
    truth = walking_animal(frames, parts)
    pixels = rig.project(truth) + rng.normal(0, 2.0, (4, frames, parts, 2))
    like = rng.uniform(0.3, 1.0, (4, frames, parts))
    pixels[rng.random((4, frames, parts)) < 0.05] = np.nan
    n = frames * parts
    print(f"\n2. Speed: 4 cameras x {parts} body parts x {frames} frames = {n} points, median of {reps}")
    print(f"{'step':44s} {'seconds':>9s} {'points/s':>11s}")
    for robust in (True, False):
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            tri = triangulate(rig, pixels, like, robust=robust)
            times.append(time.perf_counter() - t0)
        t = statistics.median(times)
        name = "triangulate, robust (RANSAC)" if robust else "triangulate, least squares"
        print(f"{name:44s} {t:9.2f} {n / t:11.0f}")
        if robust:
            result = tri
    err = np.linalg.norm(result.points3d - truth, axis=-1)
    print(f"  (robust: median 3D error {np.nanmedian(err):.2f} mm, {np.isfinite(err).mean():.1%} triangulated)")
    files(rig, pixels, like, result, parts, smooth_frames, frames)


def timed(label: str, func, n: int | None = None):
    t0 = time.perf_counter()
    out = func()
    t = time.perf_counter() - t0
    print(f"{label:44s} {t:9.2f} {'' if n is None else f'{n / t:11.0f}'}")
    return out


def files(rig, pixels, like, tri, parts, smooth_frames, frames) -> None:
    from napari_posekit.core.points3d import Points3D, read_points3d, write_points3d
    from napari_posekit.core.predictions import write_predictions
    from napari_posekit.core.smoothing3d import smooth_points3d
    from napari_posekit.core.views import read_views

    names = [f"p{j}" for j in range(parts)]
    with tempfile.TemporaryDirectory() as tmp:
        paths = {cam.name: Path(tmp) / f"{cam.name}DLC.h5" for cam in rig.cameras}

        def write_all():
            for c, path in enumerate(paths.values()):
                write_predictions(path, pixels[c], like[c], names, "DLC_bench")

        timed("write 4 prediction files (.h5 + .csv)", write_all)
        views = timed("read_views of the 4 .h5 files", lambda: read_views(paths))
        csvs = {k: v.with_suffix(".csv") for k, v in paths.items()}
        timed("read_views of the 4 .csv files", lambda: read_views(csvs))
        assert views.points.shape == pixels.shape
        out = Points3D(names, np.arange(frames), tri.points3d, tri.error, tri.cameras)
        h5 = Path(tmp) / "out_3D.h5"
        timed("write_points3d (.h5 + .csv + quality)", lambda: write_points3d(h5, out))
        timed("read_points3d .h5", lambda: read_points3d(h5))
        timed("read_points3d .csv (+ quality .csv)", lambda: read_points3d(h5.with_suffix(".csv")))
    skeleton = [(names[j], names[j + 1]) for j in range(parts - 1)]
    part = tri.points3d[:smooth_frames]
    t0 = time.perf_counter()
    smooth_points3d(part, names, skeleton)
    t = time.perf_counter() - t0
    label = f"smooth_points3d, {smooth_frames} frames"
    print(f"{label:44s} {t:9.2f} {smooth_frames * parts / t:11.0f}  (hour: ~{t * frames / smooth_frames:.0f} s)")


def real_data() -> None:
    if not SESSION.is_dir():
        print(f"\n3. Real data: {SESSION} missing, skipped")
        return
    import h5py

    from napari_posekit.core.views import read_views

    cams = ["back", "mid", "top"]
    rig = read_calibration(SESSION / "calibration.toml").subset(cams)
    views = read_views({c: SESSION / c / f"minimal_{c}_proofread.analysis.h5" for c in cams})
    slp = read_views({c: SESSION / c / f"minimal_{c}_proofread.slp" for c in cams})
    same = np.array_equal(views.points, slp.points, equal_nan=True)
    with h5py.File(SESSION / "points3d.h5", "r") as f:
        reference = np.asarray(f["tracks"])[:, 0]
    print(
        f"\n3. Real data: {SESSION.name}, cameras {', '.join(cams)}, {views.points.shape[1]} frames x "
        f"{views.points.shape[2]} nodes (.slp gives the same points: {same})"
    )
    print(f"{'method':16s} " + " ".join(f"{c + ' used/seen px':>20s}" for c in cams) + f" {'vs points3d.h5 mm':>18s}")
    for robust in (True, False):
        tri = triangulate(rig, views.points, views.likelihood, robust=robust)
        err = reprojection_errors(rig, tri.points3d, views.points)
        seen = np.isfinite(views.points).all(axis=-1)
        cells = []
        for c in range(len(cams)):
            used = np.median(err[c][tri.used[c]])
            saw = np.nanmedian(err[c][seen[c]])
            cells.append(f"{used:9.2f}/{saw:<9.2f}".rjust(20))
        dist = np.nanmedian(np.linalg.norm(reference - tri.points3d, axis=-1))
        print(f"{'robust' if robust else 'least squares':16s} " + " ".join(cells) + f" {dist:18.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the hour, fewer repetitions")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--smooth-frames", type=int, default=3000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, allowed[:2])
    model, flags = cpu()
    print(f"CPU: {model}; pinned to CPUs {sorted(os.sched_getaffinity(0))}; numpy {np.__version__}")
    print(f"flags: {flags}")
    reps = args.reps or (1 if args.quick else 3)
    robustness(reps=max(reps, 3) if not args.quick else 1)
    speed(frames=10800 if args.quick else 108000, parts=15, reps=reps, smooth_frames=args.smooth_frames)
    real_data()


if __name__ == "__main__":
    main()
