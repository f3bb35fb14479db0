"""``posekit calibrate``: calibrate synchronised cameras with a board (anipose ``calibration.toml``)."""

from __future__ import annotations

import argparse
import math
import sys


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``calibrate`` to the ``posekit`` parser's subcommands."""
    p = sub.add_parser(
        "calibrate",
        help="calibrate synchronised cameras from board videos or image folders (anipose calibration.toml)",
        description="Detects the board in every image, calibrates each camera's intrinsics, then all extrinsics "
        "together by bundle adjustment (the first camera is the world origin). Frames match across cameras by "
        "frame number in videos, by natural order of the file names in image folders. Writes OUTPUT (anipose "
        "format) and <stem>.report.json beside it, both or neither. A single camera gets intrinsics only.",
    )
    p.add_argument("output", help="the calibration.toml to write")
    p.add_argument(
        "--board",
        required=True,
        help="anipose board.toml: board_x, board_y (SQUARES across and down, not inner corners), square_length, "
        "and marker_length, marker_bits, dict_size for ChArUco (without them: a checkerboard)",
    )
    p.add_argument(
        "--camera",
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="a camera's name and its calibration video or image folder (repeat for each camera)",
    )
    p.add_argument("--every", type=int, default=1, metavar="N", help="use every N-th frame (default 1: all)")
    p.add_argument(
        "--min-corners", type=int, default=8, help="fewest ChArUco corners an image needs to be used (default 8)"
    )
    p.add_argument("--k3", action="store_true", help="estimate the distortion k3 too (default: k3 = 0)")
    p.add_argument(
        "--fixed-intrinsics",
        action="store_true",
        help="keep each camera's intrinsics from its own calibration in the bundle adjustment",
    )
    p.set_defaults(func=_calibrate)


def parse_cameras(values: list[str]) -> dict[str, str]:
    """``NAME=PATH`` arguments as a dict; ValueError naming a malformed or repeated camera."""
    cameras: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        name = name.strip()
        if not sep or not name or not path:
            raise ValueError(f"--camera {value!r}: expected NAME=PATH (a camera name, '=', a video or image folder)")
        if name in cameras:
            raise ValueError(f"--camera {name!r} is given twice ({cameras[name]} and {path}); camera names must differ")
        cameras[name] = path
    return cameras


def _fmt(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:.3f}"


def print_report(result, file=None) -> None:
    """One block per camera: images, detections used and rejected with reasons, reprojection error."""
    file = sys.stdout if file is None else file
    for rep in result.reports:
        print(
            f"camera {rep.name} ({rep.size[0]}x{rep.size[1]}): {rep.images} images, board found in {rep.detected}, "
            f"used {rep.used}, rejected {rep.rejected}; reprojection error median {_fmt(rep.error_median)} px, "
            f"p90 {_fmt(rep.error_p90)} px",
            file=file,
        )
        for det in result.detections:
            if det.camera == rep.name and not det.used and len(det.ids):
                print(f"  rejected {det.name}: {det.reason}", file=file)
        missing = [d.name for d in result.detections if d.camera == rep.name and not len(d.ids)]
        if missing:
            shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
            print(f"  board not found in {len(missing)}: {shown}", file=file)


def _calibrate(args) -> int:
    from tqdm import tqdm

    from napari_posekit.core.boards import read_board
    from napari_posekit.core.calibration import iter_calibrate, write_calibration_result
    from napari_posekit.core.cameras import CalibrationError

    try:
        cameras = parse_cameras(args.camera)
        if args.every < 1:
            raise ValueError(f"--every must be at least 1, got {args.every}")
        board = read_board(args.board)
        work = iter_calibrate(
            board,
            cameras,
            every=args.every,
            min_corners=args.min_corners,
            fix_k3=not args.k3,
            refine_intrinsics=not args.fixed_intrinsics,
        )
        with tqdm(total=100, unit="%", desc="calibrating", file=sys.stderr, mininterval=0.5) as bar:
            while True:
                try:
                    fraction = next(work)
                except StopIteration as done:
                    result = done.value
                    break
                bar.update(round(100 * fraction) - bar.n)
        if len(result.rig) == 1:
            print("note: one camera: intrinsics only (triangulation needs two or more)", file=sys.stderr)
        print_report(result)
        path = write_calibration_result(args.output, result)
    except (CalibrationError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
    print(f"written: {path} and {path.with_name(path.stem + '.report.json').name}")
    return 0
