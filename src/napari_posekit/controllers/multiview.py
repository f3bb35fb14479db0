"""The multi-view labeling aid, without napari or Qt: which view is which camera, epipolar curves, proposals.

A project is *multi-view* when its folder holds a ``calibration.toml`` (anipose's
format, :func:`~napari_posekit.core.cameras.read_calibration`).  Each video or
``labeled-data`` folder belongs to the camera whose name appears in its name
(:func:`camera_of`): the name's words must appear, in order and whole, among the
words of the folder or video stem, words being split at anything but letters and
digits and before a capital that follows a small letter or digit (``minimal_back``,
``back-2024`` and DeepLabCut's ``minimal_backDLC_resnet50…`` are camera ``back``;
``backyard`` is not; ``cam1`` does not match ``cam10``; case does not matter).  When several
camera names fit one name, the longest match wins only if it contains every
other one (``top`` and ``top_left`` → ``top_left``); otherwise the name is
ambiguous and :class:`CameraMatchError` says which cameras fit.

For one frame, :func:`frame_geometry` takes each view's labels ``(J, 2)`` and
gives, per view, the projection of every body part labeled in at least two views
(triangulated with the core's :func:`~napari_posekit.core.triangulation.triangulate`)
and, for each body part the view misses, its epipolar curve from every view that has
it.  :func:`proposals` turns the
projections into labels for the views that miss them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_posekit.core.cameras import CalibrationError, Camera, Rig

__all__ = [
    "CALIBRATION_FILE",
    "CameraMatchError",
    "EpipolarCurve",
    "FrameGeometry",
    "Proposal",
    "camera_of",
    "epipolar_curve",
    "find_calibration",
    "frame_geometry",
    "match_cameras",
    "proposals",
]

CALIBRATION_FILE = "calibration.toml"
"""The file name that makes a project folder (or session folder) multi-view."""

CURVE_SAMPLES = 200
"""Samples along an epipolar curve (each distorted on its own, so the curve bends with the lens)."""


class CameraMatchError(ValueError):
    """A video or folder name that fits several camera names (or none, where one is needed)."""


def find_calibration(folder: str | os.PathLike | None) -> Path | None:
    """The ``calibration.toml`` of a project or session folder (or of the folder of a file), or None."""
    if folder is None:
        return None
    folder = Path(folder)
    for candidate in (folder, folder.parent, folder.parent.parent):
        path = candidate / CALIBRATION_FILE
        if path.is_file():
            return path
    return None


def _words(text: str) -> list[str]:
    """Lower-case words: split at every character that is not a letter or digit, and before a capital after a
    small letter or digit (``minimal_topDLC_resnet50`` is ``minimal top dlc resnet50``)."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", text)
    return [w for w in re.split(r"[^0-9a-z]+", text.lower()) if w]


def _fits(name_words: list[str], words: list[str]) -> bool:
    n = len(name_words)
    return n > 0 and any(words[i : i + n] == name_words for i in range(len(words) - n + 1))


def camera_of(stem: str, cameras: Sequence[str]) -> str | None:
    """The camera of a video/folder stem by the naming rule (module docstring); None when no name fits.

    Raises :class:`CameraMatchError` when several camera names fit and none contains the others.
    """
    words = _words(Path(stem).stem if "/" in stem or "\\" in stem else stem)
    fitting = [cam for cam in cameras if _fits(_words(cam), words)]
    if len(fitting) <= 1:
        return fitting[0] if fitting else None
    longest = max(fitting, key=lambda cam: len(_words(cam)))
    if all(_fits(_words(other), _words(longest)) for other in fitting):
        return longest
    raise CameraMatchError(
        f"'{stem}' fits several cameras ({', '.join(fitting)}); rename it so that exactly one camera name appears"
    )


def match_cameras(paths: Iterable[str | os.PathLike], cameras: Sequence[str]) -> dict[str, Path]:
    """``{camera: path}`` for the paths whose stem names a camera; two paths for one camera is an error."""
    found: dict[str, Path] = {}
    for path in map(Path, paths):
        cam = camera_of(path.stem, cameras)
        if cam is None:
            continue
        if cam in found and found[cam] != path:
            raise CameraMatchError(f"two files for camera '{cam}': {found[cam].name} and {path.name}; keep one")
        found[cam] = path
    return found


# --------------------------------------------------------------------------- epipolar curves
@dataclass
class EpipolarCurve:
    """The epipolar curve of ``bodypart`` labeled in view ``source``, drawn in view ``target``."""

    source: str
    target: str
    bodypart: str
    xy: list[np.ndarray]  # pieces (n_i, 2) in the target's pixels, inside its image


def _fold_radius2(cam: Camera) -> float:
    """Squared normalised radius up to which the lens's radial distortion grows with the radius.

    Beyond it (strong barrel distortion) points far outside the view would fold back into the image.
    """
    k1, k2, _p1, _p2, k3 = cam.distortions
    r2 = np.linspace(0.0, 25.0, 5001)
    slope = 1 + 3 * k1 * r2 + 5 * k2 * r2**2 + 7 * k3 * r2**3  # d(r * radial(r)) / dr
    bad = np.flatnonzero(slope <= 0)
    return float(r2[bad[0]]) if len(bad) else np.inf


def _normalised_box(cam: Camera, margin: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper corners, in normalised coordinates, of the region the image shows."""
    w, h = cam.size
    t = np.linspace(0.0, 1.0, 50)
    border = np.concatenate(
        [
            np.column_stack([t * (w - 1), np.zeros_like(t)]),
            np.column_stack([t * (w - 1), np.full_like(t, h - 1)]),
            np.column_stack([np.zeros_like(t), t * (h - 1)]),
            np.column_stack([np.full_like(t, w - 1), t * (h - 1)]),
        ]
    )
    norm = cam.undistort(border)
    lo, hi = np.nanmin(norm, axis=0), np.nanmax(norm, axis=0)
    pad = (hi - lo) * margin
    return lo - pad, hi + pad


def _clip_line(a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The part of the 2D line through homogeneous points ``a`` and ``b`` inside the box ``lo``–``hi``."""
    line = np.cross(a, b)  # l0 x + l1 y + l2 = 0
    hits = []
    for x in (lo[0], hi[0]):
        if abs(line[1]) > 1e-15:
            y = -(line[0] * x + line[2]) / line[1]
            if lo[1] <= y <= hi[1]:
                hits.append((x, y))
    for y in (lo[1], hi[1]):
        if abs(line[0]) > 1e-15:
            x = -(line[1] * y + line[2]) / line[0]
            if lo[0] <= x <= hi[0]:
                hits.append((x, y))
    if len(hits) < 2:
        return None
    hits = np.asarray(hits)
    d = np.linalg.norm(hits[:, None] - hits[None], axis=2)
    i, j = np.unravel_index(np.argmax(d), d.shape)
    return hits[i], hits[j]


def epipolar_curve(source: Camera, target: Camera, xy: np.ndarray, samples: int = CURVE_SAMPLES) -> list[np.ndarray]:
    """Pixels of ``target`` that see a point of the ray through pixel ``xy`` of ``source``, as curve pieces.

    The ray (only its part in front of both cameras) is a straight line in the target's
    normalised coordinates; it is sampled evenly there and every sample is distorted
    with the target's lens, so the curve follows the distortion.  Pieces are the runs
    of samples inside the target image.
    """
    ray = np.append(source.undistort(np.asarray(xy, dtype=float)), 1.0)
    r_t = target.rotation_matrix()
    a = r_t @ source.center() + target.translation  # the source's centre, in target coordinates
    b = r_t @ (source.rotation_matrix().T @ ray)  # the ray's direction, in target coordinates
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return []
    lo, hi = _normalised_box(target)
    ends = _clip_line(a, b, lo, hi)
    if ends is None:
        return []
    t = np.linspace(0.0, 1.0, samples)[:, None]
    q = ends[0] * (1 - t) + ends[1] * t
    homog = np.column_stack([q, np.ones(len(q))])
    # q ~ alpha * a + beta * b with positive weights: in front of the target (scale 1) and the source (beta/alpha >= 0)
    weights = np.linalg.lstsq(np.column_stack([a, b]), homog.T, rcond=None)[0].T
    valid = (weights[:, 0] >= -1e-12) & (weights[:, 1] >= -1e-12)
    valid &= (q**2).sum(axis=1) < _fold_radius2(target)
    pixels = target.distort(homog)
    w, h = target.size
    inside = valid & (pixels[:, 0] >= -0.5) & (pixels[:, 0] <= w - 0.5) & (pixels[:, 1] >= -0.5)
    inside &= pixels[:, 1] <= h - 0.5
    return [pixels[run] for run in _runs(inside) if len(run) >= 2]


def _runs(mask: np.ndarray) -> list[np.ndarray]:
    idx = np.flatnonzero(mask)
    if not len(idx):
        return []
    return np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)


# --------------------------------------------------------------------------- one frame of several views
@dataclass
class FrameGeometry:
    """What the aid draws for one frame: per target view, projections and epipolar curves."""

    cameras: list[str]
    bodyparts: list[str]
    points3d: np.ndarray  # (J, 3), NaN where fewer than two views have the body part
    projections: np.ndarray  # (C, J, 2) pixels of points3d in every view
    labeled: np.ndarray  # (C, J) bool: the view has the body part
    curves: list[EpipolarCurve] = field(default_factory=list)

    def curves_in(self, target: str) -> list[EpipolarCurve]:
        return [c for c in self.curves if c.target == target]


def frame_geometry(
    rig: Rig, labels: Mapping[str, np.ndarray], bodyparts: Sequence[str], *, curves: bool = True
) -> FrameGeometry:
    """Triangulate one frame's labels ``{camera: (J, 2) pixels, NaN = missing}`` and build the aid's drawings.

    Cameras missing from ``labels`` get nothing drawn.  A body part labeled in two or
    more views is triangulated from all of them and projected into every view; a body
    part a view misses gets, in that view, the epipolar curve from each view that has it
    (``curves=False``: no curves).
    """
    from napari_posekit.core.triangulation import triangulate

    names = [cam for cam in rig.names if cam in labels]
    if len(names) < 2:
        raise CalibrationError(
            f"the labeling aid needs two or more views of the calibration ({', '.join(rig.names)}); "
            f"open: {', '.join(labels) or 'none'}"
        )
    sub = rig.subset(names)
    j = len(bodyparts)
    points2d = np.stack([np.asarray(labels[cam], dtype=float).reshape(j, 2) for cam in names])
    labeled = np.isfinite(points2d).all(axis=2)
    points3d = np.full((j, 3), np.nan)
    enough = labeled.sum(axis=0) >= 2
    if enough.any():
        result = triangulate(sub, points2d[:, enough], min_cameras=2, robust=False)
        points3d[enough] = result.points3d
    projections = sub.project(points3d)
    out = FrameGeometry(names, list(bodyparts), points3d, projections, labeled)
    if curves:
        for s, src in enumerate(sub.cameras):
            for k in np.flatnonzero(labeled[s]):
                for t, tgt in enumerate(sub.cameras):
                    if not labeled[t, k]:
                        pieces = epipolar_curve(src, tgt, points2d[s, k])
                        out.curves.append(EpipolarCurve(src.name, tgt.name, bodyparts[k], pieces))
    return out


@dataclass(frozen=True)
class Proposal:
    """A label to place: ``bodypart`` at pixel ``(x, y)`` of view ``camera``."""

    camera: str
    bodypart: str
    x: float
    y: float


def proposals(geometry: FrameGeometry, rig: Rig) -> list[Proposal]:
    """Labels for every body part a view misses and two or more others have, where it lands inside the image."""
    out = []
    for c, cam in enumerate(geometry.cameras):
        w, h = rig.camera(cam).size
        for k, bp in enumerate(geometry.bodyparts):
            if geometry.labeled[c, k]:
                continue
            x, y = geometry.projections[c, k]
            if np.isfinite(x) and np.isfinite(y) and 0 <= x <= w - 0.5 and 0 <= y <= h - 0.5:
                out.append(Proposal(cam, bp, float(x), float(y)))
    return out
