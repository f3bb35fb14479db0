"""The 3D widget's inputs and decisions, without napari or Qt.

- :func:`find_session_files`: a calibration's cameras, each with its video and 2D
  prediction file found beside the calibration by the camera naming rule
  (:func:`~napari_posekit.controllers.multiview.camera_of`), and a 3D file.
- :func:`iter_load_scene`: read the calibration, open the videos, read the 2D
  predictions and the 3D points (progress as fractions); returns a :class:`Scene`.
- :func:`iter_triangulate_scene`: triangulate a scene's 2D predictions.
- :class:`Scene`: everything on one frame axis (frame numbers are indices):
  reprojections of the 3D points into every camera, each camera's distance
  between prediction and reprojection, the 3D points' error and which points
  stand out above a threshold (:meth:`Scene.flags`, :meth:`Scene.summary`).
- :func:`tile_offsets`: where each view goes when they are tiled side by side.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_posekit.controllers.multiview import CameraMatchError, camera_of
from napari_posekit.core.cameras import CalibrationError, Rig, read_calibration

__all__ = [
    "ERROR_THRESHOLD",
    "Scene",
    "SessionFiles",
    "find_session_files",
    "iter_load_scene",
    "iter_triangulate_scene",
    "points3d_from_triangulation",
    "tile_offsets",
]

ERROR_THRESHOLD = 10.0
"""Reprojection error (px) above which a point stands out, until the widget's box says otherwise."""
PREDICTION_SUFFIXES = (".analysis.h5", ".h5", ".csv", ".slp")
"""2D prediction files, in order of preference when one camera has several."""
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".webm", ".wmv", ".flv", ".mj2", ".ogv")
TILE_GAP = 0.04
"""Space between tiled views, as a share of the larger view side."""


@dataclass
class SessionFiles:
    """What a 3D session is made of; ``cameras`` are the ones used (a broken camera can be left out)."""

    calibration: Path
    cameras: list[str]
    videos: dict[str, Path | None] = field(default_factory=dict)
    predictions: dict[str, Path | None] = field(default_factory=dict)
    points3d: Path | None = None


def _suffix_rank(path: Path) -> int | None:
    name = path.name.lower()
    for rank, suffix in enumerate(PREDICTION_SUFFIXES):
        if name.endswith(suffix):
            return rank
    return None


def _is_calibration_file(path: Path, root: Path) -> bool:
    words = " ".join(path.relative_to(root).parts).lower()
    return "calibration" in words or "points3d" in words or path.stem.lower().endswith("_3d")


def find_session_files(calibration: str | os.PathLike, cameras: Sequence[str] | None = None) -> SessionFiles:
    """The videos, 2D predictions and 3D file beside ``calibration`` (its folder and one level below).

    A file belongs to the camera its name names (:func:`camera_of`); calibration
    recordings (a ``calibration`` folder or file name) are not session videos.  When
    one camera has several prediction files, ``.analysis.h5`` is preferred, then
    ``.h5``, ``.csv`` and ``.slp``.  The 3D file is the first ``points3d*.h5`` or
    ``*_3D.h5`` that :func:`~napari_posekit.core.views.read_points3d` can read.
    """
    calibration = Path(calibration)
    rig = read_calibration(calibration)
    names = list(cameras) if cameras is not None else rig.names
    root = calibration.parent
    files = sorted(p for pattern in ("*", "*/*") for p in root.glob(pattern) if p.is_file())
    videos: dict[str, Path | None] = dict.fromkeys(names)
    found: dict[str, tuple[int, Path]] = {}
    for path in files:
        if _is_calibration_file(path, root):
            continue
        cam = camera_of(path.stem.split(".")[0], names)
        if cam is None:
            continue
        if path.suffix.lower() in VIDEO_SUFFIXES:
            if videos[cam] is not None:
                raise CameraMatchError(f"two videos for camera '{cam}': {videos[cam].name} and {path.name}; keep one")
            videos[cam] = path
        elif (rank := _suffix_rank(path)) is not None:
            if cam in found and found[cam][0] == rank:
                raise CameraMatchError(
                    f"two prediction files for camera '{cam}': {found[cam][1].name} and {path.name}; choose one"
                )
            if cam not in found or rank < found[cam][0]:
                found[cam] = (rank, path)
    predictions = {cam: found[cam][1] if cam in found else None for cam in names}
    candidates = [p for p in files if p.suffix == ".h5" and (p.stem.startswith("points3d") or p.stem.endswith("_3D"))]
    return SessionFiles(calibration, names, videos, predictions, next(filter(_readable_points3d, candidates), None))


def _readable_points3d(path: Path) -> bool:
    """Whether ``path`` is a 3D file the core reads (anipose's own ``points3d.h5`` is not one)."""
    from napari_posekit.core.views import read_points3d

    try:
        read_points3d(path)
    except (OSError, ValueError):
        return False
    return True


# --------------------------------------------------------------------------- the scene
def _dense(frames: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """``values`` (F, ...) placed at rows ``frames`` of an ``(n, ...)`` array of NaN."""
    out = np.full((n, *values.shape[1:]), np.nan)
    frames = np.asarray(frames, dtype=int)
    ok = (frames >= 0) & (frames < n)
    out[frames[ok]] = values[ok]
    return out


@dataclass
class Scene:
    """A calibrated session on one frame axis ``0 .. n_frames - 1``.

    ``points2d`` ``(C, n, J, 2)`` and ``likelihood`` ``(C, n, J)`` are the cameras' 2D
    predictions (None without them); ``points3d`` ``(n, J, 3)`` the 3D points and
    ``error3d`` ``(n, J)`` their mean reprojection error (None without 3D points).
    """

    rig: Rig
    bodyparts: list[str]
    skeleton: list[tuple[str, str]]
    n_frames: int
    videos: dict[str, Any] = field(default_factory=dict)  # camera -> VideoReader
    points2d: np.ndarray | None = None
    likelihood: np.ndarray | None = None
    points3d: np.ndarray | None = None
    error3d: np.ndarray | None = None

    @property
    def cameras(self) -> list[str]:
        return self.rig.names

    def sizes(self) -> list[tuple[int, int]]:
        """``(width, height)`` of each camera's image: its video's, else the calibration's."""
        out = []
        for cam in self.rig.cameras:
            video = self.videos.get(cam.name)
            out.append((video.metadata.width, video.metadata.height) if video is not None else cam.size)
        return out

    def reprojections(self) -> np.ndarray | None:
        """``(C, n, J, 2)`` pixels of the 3D points in every camera (None without 3D points)."""
        return None if self.points3d is None else self.rig.project(self.points3d)

    def camera_errors(self) -> np.ndarray | None:
        """``(C, n, J)`` px between each camera's 2D prediction and the reprojection (NaN where either is missing)."""
        reproj = self.reprojections()
        if reproj is None or self.points2d is None:
            return None
        return np.linalg.norm(reproj - self.points2d, axis=-1)

    def set_points3d(self, points3d: np.ndarray, error: np.ndarray | None = None) -> None:
        """Take 3D points ``(n, J, 3)``; without ``error`` it is the mean of the cameras' errors."""
        self.points3d = np.asarray(points3d, dtype=float)
        if error is None:
            errors = self.camera_errors()
            if errors is None:
                error = np.full(self.points3d.shape[:2], np.nan)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: no camera sees the point
                    error = np.nanmean(errors, axis=0)
        self.error3d = np.asarray(error, dtype=float)

    def flags(self, threshold: float) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Which 3D points ``(n, J)`` and which reprojections ``(C, n, J)`` are above ``threshold`` px."""
        flag3d = None if self.error3d is None else np.nan_to_num(self.error3d, nan=0.0) > threshold
        errors = self.camera_errors()
        flag2d = None if errors is None else np.nan_to_num(errors, nan=0.0) > threshold
        return flag3d, flag2d

    def summary(self, threshold: float) -> str:
        """One line: how many 3D points are above ``threshold`` px, and how many reprojections per camera."""
        flag3d, flag2d = self.flags(threshold)
        if flag3d is None:
            return "No 3D points yet: open a 3D file or triangulate."
        shown = int(np.isfinite(self.points3d).all(axis=-1).sum())
        text = f"{int(flag3d.sum())} of {shown} 3D points above {threshold:g} px"
        if flag2d is not None:
            per = ", ".join(f"{cam} {int(n)}" for cam, n in zip(self.cameras, flag2d.sum(axis=(1, 2))))
            text += f"; reprojections above it: {per}"
        return text


def _bodypart_columns(names: Sequence[str], wanted: Sequence[str], what: str) -> np.ndarray:
    index = {bp: k for k, bp in enumerate(names)}
    missing = [bp for bp in wanted if bp not in index]
    if missing:
        raise ValueError(f"{what} has no body part {', '.join(missing)} (it has {', '.join(names)})")
    return np.array([index[bp] for bp in wanted], dtype=int)


def iter_load_scene(
    files: SessionFiles, stop: Callable[[], bool] | None = None
) -> Generator[float, None, Scene | None]:
    """Read a session: calibration, videos (lazily: only their index), 2D predictions, 3D points.

    Yields the fraction done; returns the :class:`Scene`, or None when ``stop`` said so.
    """
    from napari_posekit.core.video import VideoReader
    from napari_posekit.core.views import read_points3d, read_views

    stop = stop or (lambda: False)
    rig = read_calibration(files.calibration).subset(files.cameras)
    yield 0.05
    videos = {}
    steps = len(files.cameras) + 2
    for i, cam in enumerate(files.cameras):
        if stop():
            return None
        if files.videos.get(cam):
            videos[cam] = VideoReader(files.videos[cam], on_error="warn")
        yield 0.05 + 0.9 * (i + 1) / steps
    given = {cam: files.predictions[cam] for cam in files.cameras if files.predictions.get(cam)}
    views = None
    if given:
        if len(given) != len(files.cameras):
            lacking = [cam for cam in files.cameras if cam not in given]
            raise ValueError(f"no 2D predictions for camera {', '.join(lacking)}: give one file per camera used")
        views = read_views(given)
    yield 0.05 + 0.9 * (steps - 1) / steps
    points = read_points3d(files.points3d) if files.points3d else None
    if views is None and points is None:
        raise ValueError("nothing to show: give the cameras' 2D predictions, a 3D file, or both")
    return build_scene(rig, videos, views, points)


def build_scene(rig: Rig, videos: dict, views, points) -> Scene:
    """A :class:`Scene` from a rig (cameras in the views' order), opened videos, ``Views`` and ``Points3D``."""
    bodyparts = list(views.bodyparts if views is not None else points.bodyparts)
    lengths = [len(v) for v in videos.values()]
    for source in (views, points):
        if source is not None and len(source.frames):
            lengths.append(int(np.max(source.frames)) + 1)
    n = max(lengths or [1])
    scene = Scene(rig, bodyparts, list(views.skeleton) if views is not None else [], n, videos)
    if views is not None:
        order = [list(views.cameras).index(cam) for cam in rig.names if cam in views.cameras]
        if len(order) != len(rig):
            raise CalibrationError(
                f"the 2D predictions are for {', '.join(views.cameras)}; the cameras used are {', '.join(rig.names)}"
            )
        pts = np.asarray(views.points, dtype=float)[order]
        like = np.asarray(views.likelihood, dtype=float)[order]
        scene.points2d = np.stack([_dense(views.frames, p, n) for p in pts])
        scene.likelihood = np.stack([_dense(views.frames, p, n) for p in like])
    if points is not None:
        cols = _bodypart_columns(list(points.bodyparts), bodyparts, "the 3D file")
        xyz = _dense(points.frames, np.asarray(points.points, dtype=float)[:, cols], n)
        error = None if points.error is None else _dense(points.frames, np.asarray(points.error)[:, cols], n)
        scene.set_points3d(xyz, error)
    return scene


def points3d_from_triangulation(scene: Scene, result) -> Any:
    """The core's ``Points3D`` of a triangulation of ``scene``'s frames (for writing)."""
    from napari_posekit.core.views import Points3D

    return Points3D(
        bodyparts=list(scene.bodyparts),
        frames=np.arange(scene.n_frames),
        points=np.asarray(result.points3d, dtype=float),
        error=np.asarray(result.error, dtype=float),
        cameras=np.asarray(result.cameras),
    )


def iter_triangulate_scene(scene: Scene, stop: Callable[[], bool] | None = None, **options) -> Generator:
    """Triangulate ``scene``'s 2D predictions (``options`` go to the core); returns the ``Triangulation``.

    Closing the generator (or ``stop``) ends the work between chunks; the result is then None.
    """
    from napari_posekit.core.triangulation import iter_triangulate

    if scene.points2d is None:
        raise ValueError("triangulation needs the cameras' 2D predictions; none are open")
    stop = stop or (lambda: False)
    work = iter_triangulate(scene.rig, scene.points2d, scene.likelihood, **options)
    while True:
        if stop():
            work.close()
            return None
        try:
            yield next(work)
        except StopIteration as done:
            return done.value


# --------------------------------------------------------------------------- tiling
def tile_offsets(sizes: Sequence[tuple[int, int]], columns: int | None = None) -> list[tuple[float, float]]:
    """``(dy, dx)`` of each view in a grid (``columns`` default: about square), row by row, with a small gap."""
    if not sizes:
        return []
    columns = columns or math.ceil(math.sqrt(len(sizes)))
    width = max(w for w, _h in sizes)
    height = max(h for _w, h in sizes)
    gap = TILE_GAP * max(width, height)
    return [(float((i // columns) * (height + gap)), float((i % columns) * (width + gap))) for i in range(len(sizes))]
