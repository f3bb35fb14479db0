"""Camera calibration accuracy and time on the shared data, judged independently of the calibration's own report.

**Minimal session** (``sleap_anipose_minimal_session``, 4 cameras, ChArUco): each
calibration is judged on the corners stored in ``calibration.metadata.h5``
(``detected_corners``, cameras back, mid, side, top; detected by sleap-anipose, not
by us): every board corner seen by two or more cameras is triangulated (linear least
squares over undistorted points, a small helper here) and projected back; printed
are each camera's median reprojection error and the median |distance - 24 mm| of
neighbouring corners. Calibrations: ours (from the image folders), the session's own
``calibration.toml`` on its three good cameras (its ``side`` is a copy of ``top``),
and aniposelib 0.8 (``/tmp/anip``) when it runs with our OpenCV; when it does not,
the reason is printed.

**DeepLabCut stereo example** (``dlc_stereo_example``, 9x6 inner corners, 30 mm
squares: a 10 x 7 squares checkerboard): focal lengths and principal points against
Bouguet's toolbox results (``Calib_Results_left/right.mat``).

    OMP_WAIT_POLICY=PASSIVE taskset -c 0,1 python benchmarks/calibrate_sessions.py --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from napari_posekit.core.boards import Board, read_board
from napari_posekit.core.calibration import calibrate
from napari_posekit.core.cameras import Rig, read_calibration

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SESSION_CAMERAS = ["back", "mid", "side", "top"]


def cpu() -> tuple[str, str]:
    """The CPU model and its vector-instruction flags, from /proc/cpuinfo."""
    model, flags = "unknown CPU", ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and model == "unknown CPU":
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            wanted = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni")
            have = set(line.split(":", 1)[1].split())
            flags = " ".join(f for f in wanted if f in have)
    return model, flags


def triangulate(rig: Rig, points: np.ndarray) -> np.ndarray:
    """Linear least-squares triangulation of ``(C, N, 2)`` pixels (NaN: unseen); NaN where fewer than 2 see."""
    norm = rig.undistort(points)
    ext = rig.extrinsics()
    out = np.full((points.shape[1], 3), np.nan)
    for n in range(points.shape[1]):
        seen = np.all(np.isfinite(norm[:, n]), axis=1)
        if seen.sum() < 2:
            continue
        rows = []
        for c in np.flatnonzero(seen):
            x, y = norm[c, n]
            rows += [x * ext[c, 2] - ext[c, 0], y * ext[c, 2] - ext[c, 1]]
        a = np.asarray(rows)
        sol = np.linalg.lstsq(a[:, :3], -a[:, 3], rcond=None)[0]
        out[n] = sol
    return out


def judge(rig: Rig, corners: np.ndarray, board: Board) -> tuple[dict[str, float], float, int]:
    """Per-camera median reprojection error (px), median |spacing error| (board units), neighbour pairs."""
    errors = {name: [] for name in rig.names}
    spacing = []
    pairs = board.neighbours()
    for f in range(corners.shape[1]):
        pts3 = triangulate(rig, corners[:, f])
        proj = rig.project(pts3)
        for c, name in enumerate(rig.names):
            e = np.linalg.norm(proj[c] - corners[c, f], axis=1)
            errors[name] += e[np.isfinite(e)].tolist()
        d = np.linalg.norm(pts3[pairs[:, 0]] - pts3[pairs[:, 1]], axis=1)
        spacing += np.abs(d[np.isfinite(d)] - board.square_length).tolist()
    return {n: float(np.median(v)) for n, v in errors.items()}, float(np.median(spacing)), len(spacing)


def stored_offset(result, corners: np.ndarray) -> np.ndarray:
    """Median (x, y) offset of the stored corners from ours (frames matched by content: the stored order is
    plain file-name order, ours natural order)."""
    offsets = []
    for d in result.detections:
        c = SESSION_CAMERAS.index(d.camera)
        gaps = [np.nanmedian(np.linalg.norm(corners[c, f, d.ids] - d.corners, axis=1)) for f in range(corners.shape[1])]
        f = int(np.argmin(gaps))
        offsets.append(np.nanmedian(corners[c, f, d.ids] - d.corners, axis=0))
    return np.median(offsets, axis=0)


def stored_corners(cameras: list[str]) -> np.ndarray:
    import h5py

    with h5py.File(DATA / "sleap_anipose_minimal_session" / "calibration.metadata.h5", "r") as f:
        corners = f["detected_corners"][:]
        order = f["detected_corners"].attrs["Description"]
    for name in SESSION_CAMERAS:
        assert repr(name) in order, order
    return corners[[SESSION_CAMERAS.index(c) for c in cameras]]


def run_ours(repeat: int) -> tuple[object, list[float]]:
    session = DATA / "sleap_anipose_minimal_session"
    board = read_board(session / "board.toml")
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = calibrate(board, {c: session / c / "calibration_images" for c in SESSION_CAMERAS})
        times.append(time.perf_counter() - t)
    return result, times


ANIPOSE_SCRIPT = textwrap.dedent(
    """
    import glob, re, sys, time
    from aniposelib.boards import CharucoBoard
    from aniposelib.cameras import CameraGroup
    session, out = sys.argv[1], sys.argv[2]
    cams = ["back", "mid", "side", "top"]
    key = lambda s: [int(p) if p.isdigit() else p for p in re.split(r"(\\d+)", s)]
    board = CharucoBoard(8, 11, square_length=24.0, marker_length=18.75, marker_bits=4, dict_size=1000)
    t = time.perf_counter()
    rows = []
    for c in cams:
        images = sorted(glob.glob(f"{session}/{c}/calibration_images/*.jpg"), key=key)
        rows.append(board.detect_images(images))  # frame keys: positions in natural order
    group = CameraGroup.from_names(cams)
    for cam in group.cameras:
        cam.set_size((1280, 1024))
    group.calibrate_rows(rows, board, verbose=False)
    print("TIME", time.perf_counter() - t)
    group.dump(out)
    """
)


JAX_STAND_IN = {
    "__init__.py": textwrap.dedent(
        """
        # NumPy in place of the three jax calls aniposelib's triangulation makes: vmap, jit, config.update
        import numpy as _np
        from . import numpy

        class _Config:
            def update(self, *args):
                pass

        config = _Config()

        def jit(f):
            return f

        def vmap(f, in_axes=0):
            def mapped(*args):
                axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
                n = next(a.shape[ax] for a, ax in zip(args, axes) if ax is not None)
                pick = lambda a, ax, i: a if ax is None else _np.take(a, i, axis=ax)
                return _np.stack([f(*[pick(a, ax, i) for a, ax in zip(args, axes)]) for i in range(n)])
            return mapped
        """
    ),
    "numpy.py": "from numpy import *\nfrom numpy import linalg\n",
}


def run_aniposelib(out: Path, stand_in: Path | None = None) -> tuple[Rig | None, float, str]:
    """aniposelib from /tmp/anip (its pure-Python dependencies in /tmp/anipdeps); optionally with jax stood in."""
    paths = ["/tmp/anip", "/tmp/anipdeps"] + ([str(stand_in)] if stand_in else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    session = DATA / "sleap_anipose_minimal_session"
    proc = subprocess.run(
        [sys.executable, "-c", ANIPOSE_SCRIPT, str(session), str(out)],
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        where = [ln.strip() for ln in lines if ln.strip().startswith("File ")][-3:]
        return None, float("nan"), f"{lines[-1] if lines else 'failed'} (at {' <- '.join(reversed(where))})"
    seconds = float(next(ln.split()[1] for ln in proc.stdout.splitlines() if ln.startswith("TIME")))
    return read_calibration(out), seconds, ""


def run_stereo(repeat: int):
    from scipy.io import loadmat

    folder = DATA / "dlc_stereo_example"
    board = Board("checkerboard", board_x=10, board_y=7, square_length=30.0)
    rows, times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        sources = {}
        for side in ("left", "right"):
            (Path(tmp) / side).mkdir()
            for image in sorted(folder.glob(f"{side}*.jpg")):
                (Path(tmp) / side / image.name).symlink_to(image)
            sources[side] = Path(tmp) / side
        for _ in range(repeat):
            t = time.perf_counter()
            result = calibrate(board, sources)
            times.append(time.perf_counter() - t)
    for cam, rep in zip(result.rig.cameras, result.reports, strict=True):
        ref = loadmat(folder / f"Calib_Results_{cam.name}.mat")
        fc, cc = ref["fc"].ravel(), ref["cc"].ravel()
        focal = np.array([cam.matrix[0, 0], cam.matrix[1, 1]])
        rel = 100 * np.abs(focal - fc) / fc
        pp = float(np.linalg.norm(cam.matrix[:2, 2] - cc))
        rows.append((cam.name, focal, fc, rel, cam.matrix[:2, 2], cc, pp, rep))
    return rows, times, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs of each calibration (median time)")
    parser.add_argument("--skip-aniposelib", action="store_true")
    args = parser.parse_args()
    model, flags = cpu()
    print(f"CPU: {model} ({os.cpu_count()} CPUs visible, {len(os.sched_getaffinity(0))} usable); flags: {flags}")

    result, times = run_ours(args.repeat)
    board = result.board
    corners = stored_corners(SESSION_CAMERAS)
    print("\nMinimal session: stored corners triangulated through each calibration")
    print(
        f"{'calibration':<28}{'time s':>8}  "
        + "".join(f"{c + ' px':>9}" for c in SESSION_CAMERAS)
        + "  spacing |err| mm"
    )
    offset = stored_offset(result, corners)
    own = read_calibration(DATA / "sleap_anipose_minimal_session" / "calibration.toml")
    good = ["back", "mid", "top"]
    for label, shift in (("as stored", 0.0), ("stored - offset", offset)):
        err, spacing, n = judge(result.rig, corners - shift, board)
        row = "".join(f"{err[c]:9.3f}" for c in SESSION_CAMERAS)
        name = f"posekit, {label}"
        print(f"{name:<28}{statistics.median(times):8.1f}  {row}  {spacing:.4f} ({n} pairs)")
        err, spacing, n = judge(own.subset(good), stored_corners(good) - shift, board)
        row = "".join(f"{err[c]:9.3f}" if c in err else f"{'-':>9}" for c in SESSION_CAMERAS)
        name = f"session toml, {label}"
        print(f"{name:<28}{'-':>8}  {row}  {spacing:.4f} ({n} pairs)")
    if not args.skip_aniposelib:
        with tempfile.TemporaryDirectory() as tmp:
            rig, seconds, why = run_aniposelib(Path(tmp) / "anipose.toml")
            label = "aniposelib 0.8"
            if rig is None:
                print(f"{label:<28}  does not run with this environment: {why}")
                if "jax" in why:
                    (Path(tmp) / "jax").mkdir()
                    for name, text in JAX_STAND_IN.items():
                        (Path(tmp) / "jax" / name).write_text(text)
                    rig, seconds, why = run_aniposelib(Path(tmp) / "anipose.toml", stand_in=Path(tmp))
                    label = "aniposelib*"
                    print(
                        "  * aniposelib 0.8 with NumPy standing in for jax (vmap, jit: plain loops), in a temp folder"
                    )
        if rig is None:
            print(f"{label:<28}  fails: {why}")
        else:
            for name, shift in (("as stored", 0.0), ("stored - offset", offset)):
                err, spacing, n = judge(rig, corners - shift, board)
                row = "".join(f"{err[c]:9.3f}" for c in SESSION_CAMERAS)
                print(f"{label + ', ' + name:<28}{seconds:8.1f}  {row}  {spacing:.4f} ({n} pairs)")
    print(f"  stored corners minus ours (median, frames matched by content): {offset[0]:+.3f}, {offset[1]:+.3f} px")
    print(
        "  posekit's own report: "
        + ", ".join(
            f"{r.name} {r.error_median:.3f}/{r.error_p90:.3f} px (median/p90), {r.used}/{r.images} used"
            for r in result.reports
        )
    )

    session_times = times
    rows, times, stereo = run_stereo(args.repeat)
    print(f"\nDeepLabCut stereo example (checkerboard 10 x 7 squares, 30 mm), {statistics.median(times):.1f} s")
    print(
        f"{'camera':<8}{'fx, fy (ours)':>22}{'fx, fy (Bouguet)':>22}{'diff %':>16}{'cx, cy (ours)':>20}"
        f"{'cx, cy (Bouguet)':>20}{'dist px':>9}{'used':>6}{'px median':>10}"
    )
    for name, focal, fc, rel, pp, cc, dist, rep in rows:
        print(
            f"{name:<8}{focal[0]:11.2f}{focal[1]:11.2f}{fc[0]:11.2f}{fc[1]:11.2f}{rel[0]:8.3f}{rel[1]:8.3f}"
            f"{pp[0]:10.2f}{pp[1]:10.2f}{cc[0]:10.2f}{cc[1]:10.2f}{dist:9.2f}{rep.used:>6}{rep.error_median:10.3f}"
        )
    baseline = np.linalg.norm(stereo.rig.cameras[1].center())
    print(f"stereo baseline (ours): {baseline:.1f} mm")
    print(
        f"\nruns per calibration: {args.repeat}; times are wall clock, median (load average {os.getloadavg()[0]:.1f})"
    )
    print("minimal session runs (s): " + ", ".join(f"{t:.1f}" for t in session_times))
    print("stereo runs (s): " + ", ".join(f"{t:.1f}" for t in times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
