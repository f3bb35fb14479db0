"""``posekit triangulate``: 3D points from several calibrated cameras' 2D predictions."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from napari_posekit.core.triangulation import THRESHOLD


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``triangulate`` to the ``posekit`` parser's subcommands."""
    p = sub.add_parser(
        "triangulate",
        help="3D body parts from the 2D predictions of calibrated cameras (DeepLabCut _3D.h5/.csv)",
        description="Triangulates every frame and body part from the cameras that see it (likelihood >= "
        "--pcutoff), weighted by likelihood, leaving out cameras that disagree (RANSAC over camera pairs). "
        "Writes OUTPUT.h5 (key df_with_missing: scorer/bodyparts/coords x, y, z; key quality: coords error "
        "(mean reprojection error, px) and cameras (cameras used)), OUTPUT.csv and OUTPUT_quality.csv.",
    )
    p.add_argument("calibration", help="anipose calibration.toml (camera names as in --camera)")
    p.add_argument(
        "--camera",
        action="append",
        required=True,
        metavar="NAME=PREDICTIONS",
        help="a camera of the calibration and its 2D predictions: posekit/DeepLabCut .h5/.csv, SLEAP .slp or "
        "SLEAP analysis .h5 (repeat for every camera, at least 2)",
    )
    p.add_argument("--output", required=True, help="the 3D points file to write (.h5; .csv files go beside it)")
    p.add_argument(
        "--pcutoff", type=float, default=0.0, help="2D points with a lower likelihood are not used (default 0)"
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=THRESHOLD,
        help=f"reprojection error (px) under which a camera agrees with the others (default {THRESHOLD:g})",
    )
    p.add_argument("--min-cameras", type=int, default=2, help="cameras that must agree on a point (default 2)")
    p.add_argument("--no-robust", action="store_true", help="use every camera that sees a point (plain least squares)")
    p.add_argument(
        "--trim",
        action="store_true",
        help="when the cameras' files hold different frames, keep the frames all of them have",
    )
    p.add_argument("--skeleton", default=None, metavar="A-B,C-D", help="body-part pairs for --smooth's limb lengths")
    p.add_argument(
        "--smooth",
        action="store_true",
        help="smooth over time with constant limb lengths (robust least squares; see --smooth-weight)",
    )
    p.add_argument(
        "--smooth-weight", type=float, default=None, help="weight of the acceleration term (default: see smoothing3d)"
    )
    p.add_argument(
        "--length-weight", type=float, default=None, help="weight of the limb-length term (default: see smoothing3d)"
    )
    p.add_argument("--scorer", default=None, help="the scorer level of the output table (default posekit_3D)")
    p.set_defaults(func=_triangulate)


def parse_skeleton(text: str) -> list[tuple[str, str]]:
    """``"a-b,c-d"`` as ``[("a", "b"), ("c", "d")]``; a ValueError says which item is wrong."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        ends = item.split("-")
        if len(ends) != 2 or not all(e.strip() for e in ends):
            raise ValueError(f"--skeleton: {item!r} is not two body parts joined by '-' (e.g. head-neck)")
        pairs.append((ends[0].strip(), ends[1].strip()))
    return pairs


def parse_cameras(items: list[str]) -> dict[str, str]:
    """``["name=path", ...]`` as ``{name: path}``; a ValueError names a malformed or repeated camera."""
    files: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ValueError(f"--camera {item!r}: expected NAME=PREDICTIONS, e.g. --camera top=top.h5")
        if name.strip() in files:
            raise ValueError(f"--camera {name.strip()!r} given twice")
        files[name.strip()] = path.strip()
    return files


def _errors() -> tuple[type[BaseException], ...]:
    return (ValueError, FileNotFoundError, OSError)


def _triangulate(args: argparse.Namespace) -> int:
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            result = run(args)
        for w in caught:
            if issubclass(w.category, UserWarning):
                print(f"warning: {w.message}", file=sys.stderr)
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written", file=sys.stderr)
        return 130
    except _errors() as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(result)
    return 0


def run(args: argparse.Namespace) -> str:
    """Do the command's work; returns the summary to print. Raises a ValueError/OSError on bad input."""
    import numpy as np

    from napari_posekit.core.cameras import read_calibration
    from napari_posekit.core.points3d import SCORER, Points3D, write_points3d
    from napari_posekit.core.triangulation import iter_triangulate, reprojection_errors
    from napari_posekit.core.views import read_views

    output = Path(args.output)
    if output.suffix.lower() != ".h5":
        raise ValueError(f"--output {output}: the 3D points file must end with .h5")
    if not output.parent.is_dir():
        raise ValueError(f"--output {output}: the folder {output.parent} does not exist")
    files = parse_cameras(args.camera)
    if len(files) < 2:
        raise ValueError(f"triangulation needs at least 2 cameras; --camera was given for {', '.join(files)} only")
    skeleton = parse_skeleton(args.skeleton) if args.skeleton else None
    rig = read_calibration(args.calibration)
    missing = [name for name in files if name not in rig.names]
    if missing:
        raise ValueError(
            f"{args.calibration}: no camera {', '.join(map(repr, missing))}; the calibration has "
            f"{', '.join(rig.names)} and --camera gave {', '.join(files)}"
        )
    rig = rig.subset(list(files))
    rig.check_geometry()
    views = read_views(files, trim=args.trim, skeleton=skeleton)
    work = iter_triangulate(
        rig,
        views.points,
        views.likelihood,
        pcutoff=args.pcutoff,
        threshold=args.threshold,
        min_cameras=args.min_cameras,
        robust=not args.no_robust,
    )
    from napari_posekit.core._generators import drive

    tri = drive(work)
    points, error, cameras = tri.points3d, tri.error, tri.cameras
    if args.smooth:
        from napari_posekit.core.smoothing3d import smooth_points3d

        points = smooth_points3d(
            points, views.bodyparts, views.skeleton, smooth=args.smooth_weight, length=args.length_weight
        )
        errs = reprojection_errors(rig, points, views.points)
        used = tri.used & np.isfinite(points).all(axis=-1)[None]
        with np.errstate(invalid="ignore"):
            error = np.where(used.any(0), np.nansum(np.where(used, errs, 0), 0) / np.maximum(used.sum(0), 1), np.nan)
    out = Points3D(views.bodyparts, views.frames, points, error, cameras, scorer=args.scorer or SCORER)
    write_points3d(output, out)
    summary = _summary(output, views, tri, rig, points)
    if args.smooth:
        summary += f"\n  smoothed over time with {len(views.skeleton)} skeleton edges held at constant length"
    return summary


def _summary(output: Path, views, tri, rig, points) -> str:
    import numpy as np

    from napari_posekit.core.triangulation import reprojection_errors

    n = tri.cameras.size
    found = int(np.isfinite(points).all(axis=-1).sum())
    errs = reprojection_errors(rig, tri.points3d, views.points)
    head = f"{output}: {len(views.frames)} frames x {len(views.bodyparts)} body parts, "
    lines = [head + f"{found} of {n} points triangulated ({100.0 * found / max(n, 1):.1f}%)"]
    for c, name in enumerate(views.cameras):
        used = tri.used[c]
        med = float(np.median(errs[c][used])) if used.any() else float("nan")
        lines.append(f"  {name}: used for {int(used.sum())} points, median reprojection error {med:.2f} px")
    return "\n".join(lines)
