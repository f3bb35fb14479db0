"""Calibrating synchronised cameras with a board: intrinsics, then extrinsics by bundle adjustment.

:func:`iter_calibrate` takes a :class:`~napari_posekit.core.boards.Board` and one
video or image folder per camera. Frames are matched across cameras by index: the
frame number in synchronised videos, the position in natural order within image
folders (``x-9.jpg`` before ``x-10.jpg``). The steps:

1. Detect the board in every image (:meth:`Board.detect`). Images with too few
   corners, or corners all on one line, are set aside with the reason.
2. Intrinsics per camera with OpenCV (matrix and the 5-parameter distortion, ``k3``
   fixed at 0 unless ``fix_k3=False``); images whose median reprojection error is an
   outlier are rejected and the camera calibrated again.
3. With two cameras or more: the board's pose in each image (planar PnP), camera
   pairs related by the robust mean of their per-frame relative poses, chained over
   a spanning tree that prefers the pairs sharing most frames, from the first
   camera, which is the world origin (as in anipose).
4. Bundle adjustment (SciPy ``least_squares``, sparse Jacobian, robust ``soft_l1``
   loss by default) of every camera's extrinsics (and intrinsics, by default) and the
   board poses of frames that two or more cameras saw. Images that disagree with
   the joint fit are rejected and the fit is run again.

A single camera is calibrated too (intrinsics only, at the origin); the file says
so in its metadata and triangulation refuses it. :func:`write_calibration_result`
writes the anipose ``calibration.toml`` and a ``<stem>.report.json`` sidecar with
every detection, the board poses and the per-camera reports
(:mod:`~napari_posekit.core.calibration_files`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from napari_posekit.core.boards import Board
from napari_posekit.core.cameras import CalibrationError, Rig

__all__ = [
    "CalibrationError",
    "CalibrationResult",
    "CameraReport",
    "ImageDetection",
    "calibrate",
    "calibration_frames",
    "iter_calibrate",
    "read_calibration_result",
    "write_calibration_result",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass
class ImageDetection:
    """The board as found in one image of one camera, and whether the calibration used it."""

    camera: str
    name: str  # the image file's name, or "frame N" of a video
    frame: int  # the index that matches images across cameras
    corners: np.ndarray  # (K, 2) pixels
    ids: np.ndarray  # (K,) corner ids (rows of Board.object_points())
    used: bool
    reason: str  # why it was not used; "" when used
    error: float  # median reprojection error (px) after calibration; NaN when not used


@dataclass
class CameraReport:
    """One camera's summary: images, detections used and rejected, reprojection error."""

    name: str
    size: tuple[int, int]  # (width, height)
    images: int
    detected: int
    used: int
    rejected: int
    error_median: float
    error_p90: float


@dataclass
class CalibrationResult:
    """A calibrated rig with everything that went into it."""

    rig: Rig
    board: Board
    detections: list[ImageDetection]
    board_poses: dict[int, np.ndarray]  # frame -> 4x4 board-to-world transform
    reports: list[CameraReport]
    sources: dict[str, str] = field(default_factory=dict)  # camera -> its video or image folder
    options: dict = field(default_factory=dict)  # the options of iter_calibrate


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def calibration_frames(path: str | os.PathLike) -> list[tuple[int, str]]:
    """``(frame index, name)`` of a calibration video or folder of images, in matching order.

    A folder's images (PNG, JPEG, BMP, TIFF) are taken in natural order and numbered
    from 0; a video's frames are ``frame 0``, ``frame 1`` ...
    """
    path = Path(path)
    if path.is_dir():
        names = sorted(
            (p.name for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), key=_natural_key
        )
        if not names:
            raise CalibrationError(f"{path}: no images in this folder (PNG, JPEG, BMP or TIFF)")
        return list(enumerate(names))
    if not path.exists():
        raise CalibrationError(f"{path}: no such video or image folder")
    from napari_posekit.core.video import VideoError, VideoReader

    try:
        with VideoReader(path) as reader:
            n = len(reader)
    except (VideoError, OSError) as err:
        raise CalibrationError(f"{path}: cannot read the video: {err}") from None
    if n == 0:
        raise CalibrationError(f"{path}: the video has no frames")
    return [(i, f"frame {i}") for i in range(n)]


def _iter_images(path: Path, frames: list[tuple[int, str]]):
    """``(frame, name, grey image)`` of the listed frames of a folder or video."""
    import cv2

    if path.is_dir():
        for frame, name in frames:
            image = cv2.imread(str(path / name), cv2.IMREAD_GRAYSCALE)
            if image is None:
                raise CalibrationError(f"{path / name}: cannot read the image")
            yield frame, name, image
        return
    from napari_posekit.core.video import VideoError, VideoReader

    reader = VideoReader(path, readahead=0, max_decoders=1)
    try:
        for frame, name in frames:
            try:
                rgb = reader.get(frame)
            except (VideoError, OSError) as err:
                raise CalibrationError(f"{path}: cannot decode {name}: {err}") from None
            yield frame, name, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    finally:
        reader.close()


def _detect_camera(board: Board, camera: str, path: Path, frames, done: list[int], total: int):
    """Detect the board in one camera's images; yields progress, returns (detections, (width, height))."""
    detections: list[ImageDetection] = []
    size = None
    first = None
    for frame, name, image in _iter_images(path, frames):
        here = (image.shape[1], image.shape[0])
        if size is None:
            size, first = here, name
        elif here != size:
            raise CalibrationError(
                f"camera {camera!r}: images of different sizes: {first} is {size[0]}x{size[1]}, "
                f"{name} is {here[0]}x{here[1]}"
            )
        corners, ids = board.detect(image)
        reason = "" if len(ids) else "board not found"
        detections.append(ImageDetection(camera, name, frame, corners, ids, not reason, reason, float("nan")))
        done[0] += 1
        yield 0.7 * done[0] / total
    return detections, size


def _check_sources(sources: Mapping[str, str | os.PathLike]) -> dict[str, Path]:
    if not sources:
        raise CalibrationError("no cameras to calibrate")
    paths = {}
    for name, path in sources.items():
        if not str(name).strip():
            raise CalibrationError(f"a camera needs a name (got {name!r} for {path})")
        paths[str(name)] = Path(path)
    return paths


def iter_calibrate(
    board: Board,
    sources: Mapping[str, str | os.PathLike],
    *,
    every: int = 1,
    min_corners: int = 8,
    fix_k3: bool = True,
    refine_intrinsics: bool = True,
    loss: str = "soft_l1",
    f_scale: float = 1.0,
    outlier_px: float = 1.0,
    outlier_factor: float = 4.0,
    max_intrinsic_images: int = 60,
) -> Generator[float, None, CalibrationResult]:
    """Calibrate the cameras ``sources`` (name -> video or image folder); yields the fraction done (0..1).

    Options: ``every`` (use every n-th frame), ``min_corners`` (fewest ChArUco corners
    an image needs; a checkerboard is always whole), ``fix_k3``, ``refine_intrinsics``
    (in the bundle adjustment), the robust ``loss`` and its ``f_scale`` (px), the
    outlier rule (an image is rejected when its median reprojection error exceeds both
    ``outlier_px`` and ``outlier_factor`` times its camera's median) and
    ``max_intrinsic_images`` (evenly spread images given to OpenCV's intrinsic
    calibration; the others still count everywhere else). Raises
    :class:`CalibrationError` with the reason for bad input.
    """
    from napari_posekit.core.calibration_steps import Settings, solve

    if every < 1:
        raise CalibrationError(f"every must be at least 1, got {every}")
    paths = _check_sources(sources)
    frames = {}
    for name, path in paths.items():
        try:
            frames[name] = calibration_frames(path)[::every]
        except CalibrationError as err:
            raise CalibrationError(f"camera {name!r}: {err}") from None
    total = sum(len(f) for f in frames.values())
    done = [0]
    detections: list[ImageDetection] = []
    sizes = {}
    for name, path in paths.items():
        found, sizes[name] = yield from _detect_camera(board, name, path, frames[name], done, total)
        detections.extend(found)
    _check_found(detections, list(paths))
    settings = Settings(
        min_corners=min_corners,
        fix_k3=fix_k3,
        refine_intrinsics=refine_intrinsics,
        loss=loss,
        f_scale=f_scale,
        outlier_px=outlier_px,
        outlier_factor=outlier_factor,
        max_intrinsic_images=max_intrinsic_images,
    )
    result = yield from solve(board, list(paths), sizes, detections, settings)
    result.sources = {name: str(path) for name, path in paths.items()}
    result.options = {"every": every, **asdict(settings)}
    yield 1.0
    return result


def _check_found(detections: list[ImageDetection], cameras: list[str]) -> None:
    """Refuse cameras that never saw the board, naming their images."""
    problems = []
    for cam in cameras:
        mine = [d for d in detections if d.camera == cam]
        if not any(len(d.ids) for d in mine):
            shown = ", ".join(d.name for d in mine[:5]) + (f" and {len(mine) - 5} more" if len(mine) > 5 else "")
            problems.append(f"camera {cam!r}: the board was not found in any of its {len(mine)} images ({shown})")
    if problems:
        raise CalibrationError("; ".join(problems) + ". Check the board description and the images.")


def calibrate(board: Board, sources: Mapping[str, str | os.PathLike], **options) -> CalibrationResult:
    """:func:`iter_calibrate` run to the end."""
    from napari_posekit.core._generators import drive

    return drive(iter_calibrate(board, sources, **options))


def write_calibration_result(path: str | os.PathLike, result: CalibrationResult) -> Path:
    """Write ``calibration.toml`` and its ``<stem>.report.json`` beside it, together and atomically."""
    from napari_posekit.core.calibration_files import write_result

    return write_result(path, result)


def read_calibration_result(path: str | os.PathLike) -> CalibrationResult:
    """The result written by :func:`write_calibration_result` (the TOML and its sidecar)."""
    from napari_posekit.core.calibration_files import read_result

    return read_result(path)
