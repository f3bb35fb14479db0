"""The 3D path end to end on the shared 4-camera session (sleap-anipose's ``minimal_session``).

Steps, each skipped when its output exists (``--fresh`` redoes all, ``--fresh train`` some)::

    calibrate    the 4 cameras from the ChArUco board images  -> WORK/calibration.toml
    import       the four views' proofread labels (.slp) as one posekit project -> WORK/project
    train        one 2D model on all four views (posekit train --max-minutes M)  -> WORK/train.json
    analyze      the four videos (posekit analyze)              -> WORK/predictions/*.h5
    triangulate  the four prediction files with our calibration -> WORK/points3d.h5
    report       reprojection errors per camera, 2D errors against the proofread labels, the
                 session's own calibration and points3d.h5 (on back, mid and top: its side camera
                 is a broken copy of top), bone lengths, wall times, the CPU

    python benchmarks/threed_session.py --work /tmp/threed/work --minutes 10
    python benchmarks/threed_session.py --work /tmp/threed/work --steps calibrate import
    python benchmarks/threed_session.py --work /tmp/threed/work --fresh triangulate

The labels of the session are model predictions proofread in SLEAP (stored as predicted
instances), imported with ``include_predicted``. Every labeled frame of the four videos is in
the project, so the 2D errors on the videos mix training frames (95 %) and test frames.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = (
    Path(os.environ.get("POSEKIT_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
    / "sleap_anipose_minimal_session"
)
CAMERAS = ("back", "mid", "side", "top")
GOOD = ("back", "mid", "top")  # the session's calibration.toml has a broken copy of top as side
TARGET_PX = 3.0  # median reprojection error of the triangulated predictions, each camera
STEPS = ("calibrate", "import", "train", "analyze", "triangulate", "report")


# -- machine ---------------------------------------------------------------------------------
def cpu_description() -> tuple[str, str]:
    """The CPU model and its vector-instruction flags, from /proc/cpuinfo."""
    from napari_posekit.core.hardware import cpu_flags, cpu_model

    keep = ("sse", "ssse", "avx", "fma", "f16c", "amx", "vnni", "bmi")
    simd = " ".join(sorted(f for f in cpu_flags() if f.startswith(keep)))
    return f"{cpu_model()} ({os.cpu_count()} logical CPUs)", simd or "unknown"


# -- paths ---------------------------------------------------------------------------------------
class Work:
    """Where each step writes, inside the work folder."""

    def __init__(self, root: Path, data: Path):
        self.root = root
        self.data = data
        self.calibration = root / "calibration.toml"
        self.calibration_reports = root / "calibration.report.json"  # written with the calibration
        self.project = root / "project"
        self.train = root / "train.json"
        self.predictions = root / "predictions"
        self.points3d = root / "points3d.h5"
        self.timings = root / "timings.json"

    def labels(self, cam: str) -> Path:
        return self.data / cam / f"minimal_{cam}_proofread.slp"

    def video(self, cam: str) -> Path:
        return self.data / cam / f"minimal_{cam}.mp4"

    def prediction(self, cam: str) -> Path | None:
        found = sorted(
            p
            for p in self.predictions.glob(f"minimal_{cam}*.h5")
            if not p.stem.endswith(("_filtered", "_3D")) and not p.name.startswith(".")
        )
        return found[-1] if found else None

    def done(self, step: str) -> bool:
        if step == "calibrate":
            return self.calibration.is_file() and self.calibration_reports.is_file()
        if step == "import":
            return (self.project / "config.yaml").is_file()
        if step == "train":
            return self.train.is_file()
        if step == "analyze":
            return all(self.prediction(cam) is not None for cam in CAMERAS)
        if step == "triangulate":
            return self.points3d.is_file()
        return False


def _models_folder() -> str:
    from napari_posekit.core.workflow import MODELS_FOLDER

    return MODELS_FOLDER


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


# -- steps ---------------------------------------------------------------------------------------
def step_calibrate(work: Work, args) -> None:
    from napari_posekit.core.boards import read_board
    from napari_posekit.core.calibration import calibrate, write_calibration_result

    board = read_board(work.data / "board.toml")
    sources = {cam: work.data / cam / "calibration_images" for cam in CAMERAS}
    result = calibrate(board, sources)
    write_calibration_result(work.calibration, result)
    for r in result.reports:
        print(f"  {r.name}: {r.used}/{r.images} images used, reprojection median {r.error_median:.2f} px")


def step_import(work: Work, args) -> None:
    from napari_posekit.core.sleap_import import import_labels

    if work.project.exists():
        _remove(work.project)
    result = import_labels(
        [work.labels(cam) for cam in CAMERAS], work.project, scorer="proofread", include_predicted=True
    )
    print(f"  {result.config}: {len(result.bodyparts)} body parts, {result.n_frames} frames")


def _run_logged(command: list[str], log: Path) -> str:
    """Run a posekit command, its output appended to ``log``; returns its stdout. Raises on failure."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    with open(log, "a") as err:
        err.write(f"$ {' '.join(command)}\n")
        err.flush()
        done = subprocess.run(command, check=False, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        err.write(done.stdout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[2:4])} failed (status {done.returncode}); see {log}")
    return done.stdout


def step_train(work: Work, args) -> None:
    command = [
        sys.executable,
        "-m",
        "napari_posekit.cli",
        "train",
        str(work.project),
        "--max-minutes",
        str(args.minutes),
    ]
    if args.device:
        command += ["--device", args.device]
    out = _run_logged(command, work.root / "train.log")
    checkpoint = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("model saved:"))
    evaluation = out.split("model saved:", 1)[1].split("\n", 1)[1].strip()
    work.train.write_text(json.dumps({"checkpoint": checkpoint, "minutes": args.minutes, "evaluation": evaluation}))
    print(f"  {checkpoint}\n" + "\n".join(f"  {line}" for line in evaluation.splitlines()))


def step_analyze(work: Work, args) -> None:
    work.predictions.mkdir(parents=True, exist_ok=True)
    videos = [str(work.video(cam)) for cam in CAMERAS]
    command = [sys.executable, "-m", "napari_posekit.cli", "analyze", str(work.project), *videos]
    command += ["--output-dir", str(work.predictions), "--local", "--overwrite"]
    if args.device:
        command += ["--device", args.device]
    print("  " + _run_logged(command, work.root / "analyze.log").strip().replace("\n", "\n  "))


def _pcutoff(work: Work) -> float:
    from napari_posekit.core.config import read_config

    return float(read_config(work.project).get("pcutoff", 0.6))


def step_triangulate(work: Work, args) -> None:
    from napari_posekit.core.cameras import read_calibration
    from napari_posekit.core.points3d import Points3D, write_points3d
    from napari_posekit.core.triangulation import triangulate
    from napari_posekit.core.views import read_views

    views = read_views({cam: work.prediction(cam) for cam in CAMERAS})
    rig = read_calibration(work.calibration).subset(list(CAMERAS))
    tri = triangulate(rig, views.points, views.likelihood, pcutoff=_pcutoff(work))
    write_points3d(work.points3d, Points3D(views.bodyparts, views.frames, tri.points3d, tri.error, tri.cameras))
    found = np.isfinite(tri.points3d).all(-1).mean()
    print(f"  {work.points3d}: {100 * found:.1f} % of the points triangulated")


# -- comparisons ----------------------------------------------------------------------------------
def similarity_align(source: np.ndarray, target: np.ndarray, trim: float = 3.0) -> tuple[np.ndarray, float]:
    """``source`` ``(N, 3)`` moved onto ``target`` by the least-squares rotation, translation and scale.

    Returns the moved points (NaN rows stay NaN) and the scale. Rows with a NaN in
    either array are left out of the fit; after a first fit, so are rows more than
    ``trim`` times the median distance away (one wrong body part must not bend the fit).
    """
    ok = np.isfinite(source).all(1) & np.isfinite(target).all(1)
    for _ in range(2):
        a, b = source[ok], target[ok]
        ma, mb = a.mean(0), b.mean(0)
        a0, b0 = a - ma, b - mb
        u, s, vt = np.linalg.svd(b0.T @ a0 / len(a))
        d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
        rotation = u @ d @ vt
        scale = float(np.trace(np.diag(s) @ d) / (a0**2).sum(1).mean())
        moved = (scale * (source - ma) @ rotation.T) + mb
        distance = np.linalg.norm(moved - target, axis=1)
        with np.errstate(invalid="ignore"):
            ok = ok & (distance <= trim * np.nanmedian(distance[ok]))
    return moved, scale


def _labels(work: Work) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """``(C, 120, 15, 2)`` proofread labels of the four views, the node names and the edges."""
    from napari_posekit.core.sleap import load_slp

    loaded = [load_slp(work.labels(cam)) for cam in CAMERAS]
    return np.stack([lab.xy[:, 0] for lab in loaded]), loaded[0].node_names, loaded[0].edges


def _median(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else float("nan")


def _bone_lengths(points: np.ndarray, nodes: list[str], edges) -> np.ndarray:
    """``(F, E)`` distances between the ends of each skeleton edge."""
    a = [nodes.index(e[0]) for e in edges]
    b = [nodes.index(e[1]) for e in edges]
    return np.linalg.norm(points[:, a] - points[:, b], axis=-1)


def _bone_consistency(points: np.ndarray, nodes, edges) -> float:
    """Median over edges of the spread of the edge's length over frames (std / median, %)."""
    lengths = _bone_lengths(points, nodes, edges)
    cv = [np.nanstd(col) / np.nanmedian(col) for col in lengths.T if np.isfinite(col).sum() > 2]
    return 100 * float(np.median(cv))


def _reprojection_table(rig, points3d, points2d, used=None) -> list[str]:
    from napari_posekit.core.triangulation import reprojection_errors

    errors = reprojection_errors(rig, points3d, points2d)
    cells = []
    for c, name in enumerate(rig.names):
        mask = np.isfinite(errors[c]) if used is None else used[c]
        cells.append(f"{name} {_median(errors[c][mask]):.2f}")
    return cells


def report_predictions(work: Work, labels: np.ndarray, nodes: list[str]) -> None:
    """Per camera: reprojection errors of the triangulated predictions, 2D errors against the labels."""
    from napari_posekit.core.cameras import read_calibration
    from napari_posekit.core.triangulation import reprojection_errors, triangulate
    from napari_posekit.core.views import read_views

    views = read_views({cam: work.prediction(cam) for cam in CAMERAS})
    rig = read_calibration(work.calibration).subset(list(CAMERAS))
    pcutoff = _pcutoff(work)
    tri = triangulate(rig, views.points, views.likelihood, pcutoff=pcutoff)  # as the triangulate step
    labels = labels[:, views.frames][:, :, [nodes.index(b) for b in views.bodyparts]]
    with np.errstate(invalid="ignore"):
        seen = views.likelihood >= pcutoff
    errors = reprojection_errors(rig, tri.points3d, views.points)
    print(f"\nPredictions (pcutoff {pcutoff:g}) triangulated with our calibration, per camera:")
    print(
        f"  {'camera':<7}{'reproj. px used':>16}{'used %':>8}{'reproj. px seen':>16}{'seen %':>8}"
        f"{'2D px vs labels: median':>25}{'p90':>7}{'median seen':>13}  target <= {TARGET_PX:g} px"
    )
    for c, cam in enumerate(CAMERAS):
        used = tri.used[c]
        distance = np.linalg.norm(views.points[c] - labels[c], axis=-1)
        finite = distance[np.isfinite(distance)]
        p90 = float(np.percentile(finite, 90)) if len(finite) else float("nan")
        print(
            f"  {cam:<7}{_median(errors[c][used]):>16.2f}{100 * used.mean():>8.1f}"
            f"{_median(errors[c][seen[c]]):>16.2f}{100 * seen[c].mean():>8.1f}"
            f"{_median(distance):>25.2f}{p90:>7.2f}{_median(distance[seen[c]]):>13.2f}"
            f"  {'met' if _median(errors[c][used]) <= TARGET_PX else 'NOT met'}"
        )
    found = np.isfinite(tri.points3d).all(-1)
    print(f"  triangulated: {100 * found.mean():.1f} % of {found.size} points")


def _per_bodypart(rig, labels: np.ndarray, nodes: list[str]) -> None:
    """Median reprojection error of each body part's labels, all cameras, plain least squares."""
    from napari_posekit.core.triangulation import reprojection_errors, triangulate

    points = triangulate(rig, labels, robust=False).points3d
    errors = reprojection_errors(rig, points, labels)
    cells = [f"{name} {_median(errors[:, :, j]):.1f}" for j, name in enumerate(nodes)]
    print("  per body part (ours, 4 cameras, every camera used), px: " + ", ".join(cells))


def _predictions_against_labels(predicted: np.ndarray, labels3d: np.ndarray, nodes: list[str]) -> None:
    """3D distance between the triangulated predictions and labels, both with our 4 cameras (no fit)."""
    distance = np.linalg.norm(predicted - labels3d, axis=-1)
    parts = np.array([_median(distance[:, j]) for j in range(len(nodes))])
    worst = np.argsort(-np.nan_to_num(parts))[:3]
    print(
        f"  our predictions vs the labels, both with our 4 cameras (same frame, no fit): median "
        f"{_median(distance):.2f} mm, p90 {np.nanpercentile(distance, 90):.2f} mm; worst body parts "
        + ", ".join(f"{nodes[j]} {parts[j]:.1f} mm" for j in worst)
    )


def report_reference(work: Work, labels: np.ndarray, nodes: list[str], edges, predicted3d) -> None:
    """Our calibration against the session's own, on the proofread labels of back, mid and top."""
    import h5py

    from napari_posekit.core.cameras import read_calibration
    from napari_posekit.core.triangulation import triangulate

    ours = read_calibration(work.calibration).subset(list(CAMERAS))
    theirs = read_calibration(work.data / "calibration.toml").subset(list(GOOD))
    good = [CAMERAS.index(cam) for cam in GOOD]
    with h5py.File(work.data / "points3d.h5", "r") as f:
        session = np.asarray(f["tracks"])[:, 0]
    runs = {
        "ours, 4 cameras": (ours, labels),
        "ours, back/mid/top": (ours.subset(list(GOOD)), labels[good]),
        "theirs, back/mid/top": (theirs, labels[good]),
    }
    tri = {name: triangulate(rig, pts) for name, (rig, pts) in runs.items()}
    print("\nProofread labels triangulated, median reprojection error (px) per camera used:")
    for name, (rig, pts) in runs.items():
        print(f"  {name:<22}" + "  ".join(_reprojection_table(rig, tri[name].points3d, pts, tri[name].used)))

    _per_bodypart(ours, labels, nodes)
    reference = tri["theirs, back/mid/top"].points3d
    shape = reference.shape
    compared = {name: t.points3d for name, t in tri.items() if name != "theirs, back/mid/top"}
    compared["session points3d.h5 (4 cams)"] = session
    if predicted3d is not None:
        compared["our predictions, 4 cameras"] = predicted3d
    print(
        "\nAgainst the labels triangulated with their calibration (back/mid/top), after a similarity fit "
        "(refit without points over 3x the median distance):"
    )
    print(f"  {'3D points':<32}{'scale':>8}{'median mm':>11}{'p90 mm':>9}{'bone spread %':>15}")
    print(
        f"  {'(reference itself)':<32}{1.0:>8.4f}{0.0:>11.2f}{0.0:>9.2f}{_bone_consistency(reference, nodes, edges):>15.2f}"
    )
    for name, points in compared.items():
        moved, scale = similarity_align(points.reshape(-1, 3), reference.reshape(-1, 3))
        distance = np.linalg.norm(moved - reference.reshape(-1, 3), axis=1)
        p90 = float(np.nanpercentile(distance, 90))
        spread = _bone_consistency(points.reshape(shape), nodes, edges)
        print(f"  {name:<32}{scale:>8.4f}{_median(distance):>11.2f}{p90:>9.2f}{spread:>15.2f}")
    if predicted3d is not None:
        _predictions_against_labels(predicted3d, tri["ours, 4 cameras"].points3d, nodes)
    ours3, theirs3 = ours.subset(list(GOOD)), theirs
    centres_ours = np.stack([c.center() for c in ours3.cameras])
    centres_theirs = np.stack([c.center() for c in theirs3.cameras])
    moved, scale = similarity_align(centres_ours, centres_theirs, trim=np.inf)
    residual = np.linalg.norm(moved - centres_theirs, axis=1)
    print(
        "  camera centres (back/mid/top) after a similarity fit: "
        + ", ".join(f"{cam} {r:.1f} mm" for cam, r in zip(GOOD, residual))
        + f" (scale {scale:.4f})"
    )


def step_report(work: Work, args) -> None:
    print("\nOur calibration, per camera (board images):")
    from napari_posekit.core.calibration import read_calibration_result

    for r in read_calibration_result(work.calibration).reports:
        print(
            f"  {r.name:<6} {r.used:>2}/{r.images} images, reprojection median "
            f"{r.error_median:.2f} px, p90 {r.error_p90:.2f}"
        )
    labels, nodes, edges = _labels(work)
    predicted3d = None
    if work.done("triangulate"):
        report_predictions(work, labels, nodes)
        from napari_posekit.core.points3d import read_points3d

        points = read_points3d(work.points3d)
        predicted3d = np.full(labels.shape[1:3] + (3,), np.nan)
        predicted3d[points.frames] = points.points[:, [points.bodyparts.index(n) for n in nodes]]
    else:
        print("\n(no triangulated predictions yet: run the train, analyze and triangulate steps)")
    if work.train.is_file():
        train = json.loads(work.train.read_text())
        print(f"\nModel ({train['minutes']} min): {train['checkpoint']}")
        print("  " + train["evaluation"].replace("\n", "\n  "))
    report_reference(work, labels, nodes, edges, predicted3d)


RUNNERS = {
    "calibrate": step_calibrate,
    "import": step_import,
    "train": step_train,
    "analyze": step_analyze,
    "triangulate": step_triangulate,
    "report": step_report,
}
OUTPUTS = {
    "calibrate": lambda w: [w.calibration, w.calibration_reports],
    "import": lambda w: [w.project],
    "train": lambda w: [w.train, w.project / _models_folder()],
    "analyze": lambda w: [w.predictions],
    "triangulate": lambda w: [w.points3d],
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the minimal_session folder")
    ap.add_argument("--work", type=Path, default=Path("/tmp/threed/work"), help="work folder (outside the repository)")
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget in minutes (default 10)")
    ap.add_argument("--device", default=None, help="cpu, cuda or mps for training and analysis")
    ap.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS), help="steps to run (default all)")
    ap.add_argument("--fresh", nargs="*", choices=STEPS, default=None, help="redo these steps (none named: all)")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"error: {args.data}: the session folder is missing", file=sys.stderr)
        return 1
    args.work.mkdir(parents=True, exist_ok=True)
    work = Work(args.work.resolve(), args.data.resolve())
    fresh = set(STEPS if args.fresh == [] else args.fresh or [])
    timings = json.loads(work.timings.read_text()) if work.timings.is_file() else {}
    for step in STEPS:
        if step not in args.steps:
            continue
        if step in fresh:
            for path in OUTPUTS.get(step, lambda w: [])(work):
                _remove(path)
        if work.done(step):
            print(
                f"[{step}] kept (exists; --fresh {step} redoes it), took {timings.get(step, float('nan')):.0f} s before"
            )
            continue
        print(f"[{step}]", flush=True)
        start = time.perf_counter()
        RUNNERS[step](work, args)
        timings[step] = time.perf_counter() - start
        work.timings.write_text(json.dumps(timings, indent=1))
    cpu, flags = cpu_description()
    print("\nWall time per step (s): " + ", ".join(f"{s} {timings[s]:.0f}" for s in STEPS if s in timings))
    print(f"CPU: {cpu}\nCPU flags: {flags}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
