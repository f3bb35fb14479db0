"""The Calibration widget's decisions, without Qt or napari.

- The form: :func:`check_form` turns the board file, the camera rows and the
  output path into a :class:`CalibrationPlan` (or a :class:`CalibrationError`
  that names what is wrong); :func:`session_rows` fills the rows from a session
  folder with one sub-folder per camera; :func:`iter_run_calibration` runs the
  core's calibration and stops it when asked.
- The report: :func:`camera_rows` (reprojection error per camera) and
  :func:`rejected_rows` (which image was left out, and why).
- The 2D view: :func:`frame_slots` (which image of a camera shows at each
  matched frame), :func:`tile_offsets` (cameras side by side),
  :func:`detected_corners` and :func:`reprojected_corners` (per-frame
  ``(frame, y, x)`` points).
- The 3D view, in world coordinates ``(x, y, z)``: :func:`frustum_segments`,
  :func:`frustum_depth`, :func:`board_outline_segments`,
  :func:`board_corner_points` and :func:`rig_view_direction`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_posekit.core.cameras import CalibrationError, Camera, Rig
from napari_posekit.core.video import VIDEO_EXTENSIONS

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
DEFAULT_OUTPUT = "calibration.toml"
FRUSTUM_SHARE = 0.2
"""A frustum is drawn this deep: a share of the typical camera-to-board distance (or of the baseline)."""


@dataclass
class CalibrationPlan:
    """What one calibration run needs: the board file, a source per camera (in order), the output file."""

    board: Path
    sources: dict[str, Path]
    output: Path


# --------------------------------------------------------------------------- the form
def check_form(board: str, rows: Sequence[tuple[str, str]], output: str) -> CalibrationPlan:
    """The plan for a board file, ``(camera name, video or image folder)`` rows and an output path.

    Raises :class:`CalibrationError` naming the first problem: no board file
    or one that does not describe a board, fewer than two cameras, a camera without a name or a source, a name used
    twice, a source that is neither a video nor a folder of images, an output
    that is not a ``.toml`` in an existing folder.  An empty output means
    ``calibration.toml`` beside the board file.
    """
    from napari_posekit.core.boards import read_board

    board_path = _existing_file(board, "board file (board.toml)")
    read_board(board_path)  # a bad board is told now, not after the job has started
    sources: dict[str, Path] = {}
    for i, (name, source) in enumerate(rows, start=1):
        name, source = name.strip(), source.strip()
        if not name and not source:
            continue
        if not name:
            raise CalibrationError(f"camera row {i}: give the camera a name")
        if name in sources:
            raise CalibrationError(f"camera {name!r} is listed twice; camera names must be unique")
        if not source:
            raise CalibrationError(f"camera {name!r}: choose its calibration video or image folder")
        sources[name] = _source(name, source)
    if len(sources) < 2:
        raise CalibrationError(f"a rig needs at least two cameras; the table has {len(sources)}")
    return CalibrationPlan(board_path, sources, output_path(output, board_path))


def output_path(text: str, board: Path) -> Path:
    """The output calibration file: ``text``, or ``calibration.toml`` beside the board when empty."""
    path = Path(text.strip()).expanduser() if text.strip() else board.parent / DEFAULT_OUTPUT
    if path.is_dir():
        path = path / DEFAULT_OUTPUT
    if path.suffix.lower() != ".toml":
        raise CalibrationError(f"output {path}: a calibration file ends in .toml")
    if not path.parent.is_dir():
        raise CalibrationError(f"output {path}: the folder {path.parent} does not exist")
    return path


def _existing_file(text: str, what: str) -> Path:
    if not text.strip():
        raise CalibrationError(f"choose the {what}")
    path = Path(text.strip()).expanduser()
    if not path.is_file():
        raise CalibrationError(f"{what}: no such file: {path}")
    return path


def _source(name: str, text: str) -> Path:
    path = Path(text).expanduser()
    if not path.exists():
        raise CalibrationError(f"camera {name!r}: no such video or folder: {path}")
    if path.is_dir():
        if not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir()):
            raise CalibrationError(
                f"camera {name!r}: the folder {path} holds no images ({', '.join(IMAGE_EXTENSIONS)})"
            )
    elif path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise CalibrationError(f"camera {name!r}: {path.name} is neither a video nor a folder of images")
    return path


def session_rows(folder: str | os.PathLike) -> list[tuple[str, str]]:
    """``(camera, source)`` rows of a session folder with one sub-folder per camera.

    A camera's source is its ``calibration_images`` folder when it has one,
    else the sub-folder itself when it holds images, else a video in it whose
    name contains ``calib``.  Raises
    :class:`CalibrationError` when no sub-folder has either.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CalibrationError(f"{folder}: not a folder")
    rows = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        images = sub / "calibration_images"
        videos = sorted(p for p in sub.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS and "calib" in p.name.lower())
        if images.is_dir():
            rows.append((sub.name, str(images)))
        elif any(p.suffix.lower() in IMAGE_EXTENSIONS for p in sub.iterdir()):
            rows.append((sub.name, str(sub)))
        elif videos:
            rows.append((sub.name, str(videos[0])))
    if not rows:
        raise CalibrationError(
            f"{folder}: no camera folders with calibration_images/ or a calibration video; add the cameras by hand"
        )
    return rows


def camera_name_for(source: str | os.PathLike) -> str:
    """A camera name a source suggests: its folder's name (the one above ``calibration_images``), or the video's stem."""
    path = Path(source)
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return path.stem
    return path.parent.name if path.name.lower() in ("calibration_images", "calibration") else path.name


def iter_run_calibration(plan: CalibrationPlan, stop=None, **options) -> Generator[float, None, Any]:
    """Read the board, run the core's calibration (yielding its fractions), write the result.

    Returns the :class:`~napari_posekit.core.calibration.CalibrationResult`, or
    None when ``stop()`` turned true (the generator is closed; nothing is written).
    """
    from napari_posekit.core.boards import read_board
    from napari_posekit.core.calibration import iter_calibrate, write_calibration_result

    board = read_board(plan.board)
    work = iter_calibrate(board, {name: str(path) for name, path in plan.sources.items()}, **options)
    try:
        while True:
            if stop is not None and stop():
                return None
            try:
                fraction = next(work)
            except StopIteration as done:
                result = done.value
                break
            yield fraction
    finally:
        work.close()
    write_calibration_result(plan.output, result)
    return result


def result_text(result, output: Path | None) -> str:
    """One line after a calibration: cameras, used images, median error, and where it was written."""
    used = sum(r.used for r in result.reports)
    images = sum(r.images for r in result.reports)
    errors = [r.error_median for r in result.reports if math.isfinite(r.error_median)]
    median = f"{float(np.median(errors)):.2f} px" if errors else "n/a"
    text = f"{len(result.reports)} cameras, {used} of {images} images used, median reprojection error {median}"
    return f"{text}; written to {output}" if output is not None else text


# --------------------------------------------------------------------------- the report
def _px(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "–"


def camera_rows(result) -> list[list[str]]:
    """Per camera: name, used / images, images without the board, rejected ones, median and p90 error (px)."""
    return [
        [
            r.name,
            f"{r.used} / {r.images}",
            str(r.images - r.detected),
            str(r.rejected),
            _px(r.error_median),
            _px(r.error_p90),
        ]
        for r in result.reports
    ]


@dataclass
class ImageRow:
    """One row of the images table: a rejected image (or a used one), its matched frame and the reason."""

    camera: str
    name: str
    frame: int
    reason: str
    error: float

    def cells(self) -> list[str]:
        return [self.camera, self.name, str(self.frame), self.reason or f"used, {_px(self.error)} px"]


def rejected_rows(result) -> list[ImageRow]:
    """The rejected images, camera by camera in frame order, each with its reason."""
    order = {r.name: i for i, r in enumerate(result.reports)}
    rows = [
        ImageRow(d.camera, d.name, int(d.frame), d.reason or "rejected", float(d.error))
        for d in result.detections
        if not d.used
    ]
    return sorted(rows, key=lambda r: (order.get(r.camera, len(order)), r.frame))


# --------------------------------------------------------------------------- the 2D view
def frame_slots(frames: Sequence[tuple[int, str]]) -> list[str | None]:
    """The image name shown at each matched frame ``0..max`` (None where this camera has none)."""
    if not frames:
        return []
    slots: list[str | None] = [None] * (max(int(i) for i, _ in frames) + 1)
    for i, name in frames:
        slots[int(i)] = name
    return slots


def tile_offsets(sizes: Sequence[tuple[int, int]], gap_share: float = 0.05) -> list[float]:
    """The x offset of each camera's image when they are laid side by side (``sizes`` as width, height)."""
    offsets, x = [], 0.0
    gap = gap_share * max((w for w, _ in sizes), default=0)
    for w, _h in sizes:
        offsets.append(x)
        x += w + gap
    return offsets


def detected_corners(detections, camera: str) -> tuple[np.ndarray, np.ndarray]:
    """The detected corners of ``camera``'s images as ``(n, 3)`` ``(frame, y, x)`` points, and which were used."""
    points, used = [], []
    for d in detections:
        corners = np.asarray(d.corners, dtype=float).reshape(-1, 2)
        if d.camera != camera or not len(corners):
            continue
        points.append(np.column_stack([np.full(len(corners), float(d.frame)), corners[:, 1], corners[:, 0]]))
        used.append(np.full(len(corners), bool(d.used)))
    if not points:
        return np.empty((0, 3)), np.empty(0, dtype=bool)
    return np.concatenate(points), np.concatenate(used)


def corner_spacing(detections, camera: str) -> float | None:
    """The typical distance (px) between neighbouring detected corners in ``camera``'s images (None without any)."""
    gaps = []
    for d in detections:
        corners = np.asarray(d.corners, dtype=float).reshape(-1, 2)
        if d.camera == camera and len(corners) >= 2:
            dist = np.linalg.norm(corners[:, None] - corners[None], axis=2)
            np.fill_diagonal(dist, np.inf)
            gaps.append(float(np.median(dist.min(axis=1))))
    return float(np.median(gaps)) if gaps else None


def board_world_points(object_points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Board points ``(n, 3)`` (board frame) in world coordinates through a 4x4 board-to-world ``pose``."""
    pose = np.asarray(pose, dtype=float)
    return np.asarray(object_points, dtype=float) @ pose[:3, :3].T + pose[:3, 3]


def reprojected_corners(result, camera: str) -> np.ndarray:
    """Where the calibrated ``camera`` puts each detected corner, as ``(n, 3)`` ``(frame, y, x)`` points.

    A corner is the board's object point through the board's pose at that
    frame and the camera's projection; frames without a pose have none.
    """
    try:
        cam = result.rig.camera(camera)
    except CalibrationError:
        return np.empty((0, 3))
    objects = np.asarray(result.board.object_points(), dtype=float)
    points = []
    for d in result.detections:
        pose = result.board_poses.get(int(d.frame))
        ids = np.asarray(d.ids, dtype=int).ravel()
        if d.camera != camera or pose is None or not len(ids):
            continue
        pixels = cam.project(board_world_points(objects[ids], pose))
        points.append(np.column_stack([np.full(len(ids), float(d.frame)), pixels[:, 1], pixels[:, 0]]))
    points = np.concatenate(points) if points else np.empty((0, 3))
    return points[np.isfinite(points).all(axis=1)]


# --------------------------------------------------------------------------- the 3D view
def frustum_corners(camera: Camera, depth: float) -> tuple[np.ndarray, np.ndarray]:
    """The camera centre ``(3,)`` and where its image corners' rays are at ``depth`` ``(4, 3)``.

    Corners in order top-left, top-right, bottom-right, bottom-left of the
    image; world coordinates.  Distortion is undone, so the frustum shows what
    the camera really sees.
    """
    w, h = camera.size
    pixels = np.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]]) - 0.5
    normal = camera.undistort(pixels)
    if not np.all(np.isfinite(normal)) or np.max(np.abs(normal)) > 20:  # a wild distortion model
        normal = Camera(camera.name, camera.size, camera.matrix).undistort(pixels)
    rays = np.column_stack([normal, np.ones(4)])
    centre = camera.center()
    return centre, centre + depth * rays @ camera.rotation_matrix()


def frustum_segments(camera: Camera, depth: float) -> np.ndarray:
    """Line segments ``(10, 2, 3)`` of a camera's frustum: four rays, the image rectangle, a roof over its top edge.

    The roof (a small triangle over the image's top edge) shows which way is
    up in the camera's image.
    """
    centre, c = frustum_corners(camera, depth)
    top_mid = (c[0] + c[1]) / 2
    up = (c[0] - c[3]) / np.linalg.norm(c[0] - c[3]) * 0.25 * np.linalg.norm(c[0] - c[1])
    left, right, apex = c[0] + (c[1] - c[0]) * 0.2, c[0] + (c[1] - c[0]) * 0.8, top_mid + up
    segments = [(centre, corner) for corner in c]
    segments += [(c[i], c[(i + 1) % 4]) for i in range(4)]
    segments += [(left, apex), (apex, right)]
    return np.asarray(segments, dtype=float)


def frustum_depth(rig: Rig, board_points: np.ndarray | None = None) -> float:
    """How deep to draw the frusta: a share of the median camera-to-board distance, else of the baseline."""
    centres = np.stack([cam.center() for cam in rig.cameras])
    if board_points is not None and len(board_points):
        target = np.nanmean(np.asarray(board_points, dtype=float).reshape(-1, 3), axis=0)
        distance = float(np.median(np.linalg.norm(centres - target, axis=1)))
    elif len(centres) > 1:
        pairs = [np.linalg.norm(a - b) for i, a in enumerate(centres) for b in centres[i + 1 :]]
        distance = float(np.median(pairs))
    else:
        distance = 0.0
    return FRUSTUM_SHARE * distance if math.isfinite(distance) and distance > 0 else 1.0


def board_outline(board) -> np.ndarray:
    """The four corners ``(4, 3)`` of the board's inner-corner grid, in the board's frame (z = 0)."""
    objects = np.asarray(board.object_points(), dtype=float)
    lo, hi = objects[:, :2].min(axis=0), objects[:, :2].max(axis=0)
    return np.array([[lo[0], lo[1], 0], [hi[0], lo[1], 0], [hi[0], hi[1], 0], [lo[0], hi[1], 0]], dtype=float)


def board_outline_segments(board, poses: Mapping[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The outline of the board at every pose: segments ``(4 F, 2, 3)`` in world coordinates, and their frames."""
    outline = board_outline(board)
    segments, frames = [], []
    for frame in sorted(poses):
        c = board_world_points(outline, poses[frame])
        segments += [(c[i], c[(i + 1) % 4]) for i in range(4)]
        frames += [int(frame)] * 4
    return np.asarray(segments, dtype=float).reshape(-1, 2, 3), np.asarray(frames, dtype=int)


def board_corner_points(board, poses: Mapping[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every inner corner of the board at every pose ``(F N, 3)`` in world coordinates, and their frames."""
    objects = np.asarray(board.object_points(), dtype=float)
    points = [board_world_points(objects, poses[f]) for f in sorted(poses)]
    frames = [np.full(len(objects), int(f)) for f in sorted(poses)]
    if not points:
        return np.empty((0, 3)), np.empty(0, dtype=int)
    return np.concatenate(points), np.concatenate(frames)


def rig_view_direction(rig: Rig, poses: Mapping[int, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A direction to look at the rig from, and the up direction of that view (world coordinates).

    With board poses: the boards' mean normal, pointing away from the cameras
    that saw them (a board on an arena floor is then seen from above); else the
    cameras' mean viewing direction.  Up is the cameras' mean up (image rows
    grow downwards: -y), made to differ from the view direction.
    """
    rotations = np.stack([cam.rotation_matrix() for cam in rig.cameras])
    forward = rotations[:, 2, :].mean(axis=0)  # each camera's optical axis (z) in world coordinates
    if poses:
        centre = np.mean([cam.center() for cam in rig.cameras], axis=0)
        normals = [np.asarray(p, dtype=float)[:3, 2] for p in poses.values()]
        away = [n if n @ (np.asarray(p)[:3, 3] - centre) >= 0 else -n for n, p in zip(normals, poses.values())]
        if np.linalg.norm(np.mean(away, axis=0)) > 1e-6:
            forward = np.mean(away, axis=0)
    if np.linalg.norm(forward) < 1e-6:  # cameras facing each other and no board: look from the first one
        forward = rotations[0, 2, :]
    forward = forward / np.linalg.norm(forward)
    for up in (-rotations[:, 1, :].mean(axis=0), -rotations[0, 1, :], rotations[0, 0, :]):
        if np.linalg.norm(np.cross(forward, up)) > 1e-3 * np.linalg.norm(up):
            return forward, up / np.linalg.norm(up)
    return forward, np.array([1.0, 0.0, 0.0]) if abs(forward[0]) < 0.9 else np.array([0.0, 1.0, 0.0])


def camera_frames(result, camera: str, source: str | os.PathLike | None = None) -> list[tuple[int, str]]:
    """``(frame, name)`` of every image of ``camera``: listed from its source, else from the result's detections."""
    if source is not None and Path(source).exists():
        from napari_posekit.core.calibration import calibration_frames

        try:
            return list(calibration_frames(source))
        except (NotImplementedError, CalibrationError, OSError):
            pass
    return sorted({(int(d.frame), d.name) for d in result.detections if d.camera == camera})


def result_sources(result, rows: Sequence[tuple[str, str]], recorded: Mapping[str, str] | None = None) -> dict:
    """Where each calibrated camera's images are: as the result recorded them, else the table's row of that name."""
    table = {name.strip(): source.strip() for name, source in rows if name.strip() and source.strip()}
    out = {}
    for name in result.rig.names:
        for candidate in ((recorded or {}).get(name), table.get(name)):
            if candidate and Path(candidate).expanduser().exists():
                out[name] = Path(candidate).expanduser()
                break
    return out
