"""Calibrated cameras: the pinhole model with OpenCV's 5-parameter distortion, and
the anipose ``calibration.toml`` that stores a rig of them.

A :class:`Camera` maps world points to pixels as OpenCV does: rotate and translate
into the camera's frame (``rotation`` is a Rodrigues vector, world to camera), divide
by depth, distort with ``k1, k2, p1, p2, k3`` and apply the camera ``matrix``.
:meth:`Camera.undistort` is the inverse of the last two steps, giving normalised
image coordinates in which triangulation is linear.

The file layout is anipose's, read and written unchanged by anipose, aniposelib and
sleap-anipose: one table per camera (``[cam_0]``, ``[cam_1]`` ...) with ``name``,
``size`` (width, height), ``matrix``, ``distortions``, ``rotation`` and
``translation``, and a ``[metadata]`` table.  Units are those of the board (the
shared example uses millimetres).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_posekit.core.filesafety import atomic_write_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "CalibrationError",
    "Camera",
    "Rig",
    "read_calibration",
    "rodrigues",
    "rotation_vector",
    "write_calibration",
]

CAMERA_KEYS = ("name", "size", "matrix", "distortions", "rotation", "translation")


class CalibrationError(ValueError):
    """A calibration file, board or rig that cannot be used, with the reason in words."""


def rodrigues(rvec: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` from Rodrigues vectors ``(..., 3)`` (as ``cv2.Rodrigues``)."""
    r = np.asarray(rvec, dtype=np.float64)
    theta = np.linalg.norm(r, axis=-1)[..., None, None]
    safe = np.where(theta < 1e-12, 1.0, theta)
    k = r / safe[..., 0]
    kx, ky, kz = k[..., 0], k[..., 1], k[..., 2]
    zero = np.zeros_like(kx)
    cross = np.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], axis=-1).reshape(r.shape[:-1] + (3, 3))
    eye = np.broadcast_to(np.eye(3), cross.shape)
    out = eye + np.sin(theta) * cross + (1.0 - np.cos(theta)) * (cross @ cross)
    return np.where(theta < 1e-12, eye, out)


def rotation_vector(matrix: np.ndarray) -> np.ndarray:
    """The Rodrigues vector ``(3,)`` of a rotation matrix (inverse of :func:`rodrigues`)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(np.asarray(matrix, dtype=np.float64)).as_rotvec()


@dataclass
class Camera:
    """One calibrated camera (pinhole, OpenCV's distortion ``k1, k2, p1, p2, k3``)."""

    name: str
    size: tuple[int, int]  # (width, height) in pixels
    matrix: np.ndarray  # 3x3 intrinsics
    distortions: np.ndarray = field(default_factory=lambda: np.zeros(5))
    rotation: np.ndarray = field(default_factory=lambda: np.zeros(3))  # Rodrigues, world -> camera
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def __post_init__(self) -> None:
        self.name = str(self.name)
        self.size = (int(self.size[0]), int(self.size[1]))
        self.matrix = _array(self.matrix, (3, 3), f"camera {self.name!r}: matrix")
        dist = np.asarray(self.distortions, dtype=np.float64).ravel()
        if dist.size > 5 and np.any(dist[5:] != 0):
            raise CalibrationError(
                f"camera {self.name!r}: {dist.size} distortion coefficients; only OpenCV's "
                "5-parameter model (k1, k2, p1, p2, k3) is supported"
            )
        self.distortions = np.concatenate([dist[:5], np.zeros(max(0, 5 - dist.size))])
        self.rotation = _array(self.rotation, (3,), f"camera {self.name!r}: rotation")
        self.translation = _array(self.translation, (3,), f"camera {self.name!r}: translation")

    # ------------------------------------------------------------------ geometry
    def rotation_matrix(self) -> np.ndarray:
        return rodrigues(self.rotation)

    def extrinsic(self) -> np.ndarray:
        """``[R | t]`` (3x4): world to camera coordinates."""
        return np.hstack([self.rotation_matrix(), self.translation[:, None]])

    def center(self) -> np.ndarray:
        """The camera's optical centre in world coordinates."""
        return -self.rotation_matrix().T @ self.translation

    def to_camera(self, points3d: np.ndarray) -> np.ndarray:
        """World points ``(..., 3)`` in this camera's coordinates (z is depth)."""
        p = np.asarray(points3d, dtype=np.float64)
        return p @ self.rotation_matrix().T + self.translation

    def project(self, points3d: np.ndarray) -> np.ndarray:
        """Pixels ``(..., 2)`` of world points ``(..., 3)``; NaN stays NaN."""
        return self.distort(self.to_camera(points3d))

    def distort(self, camera_points: np.ndarray) -> np.ndarray:
        """Pixels of points given in camera coordinates ``(..., 3)``."""
        p = np.asarray(camera_points, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = p[..., 0] / p[..., 2]
            y = p[..., 1] / p[..., 2]
        k1, k2, p1, p2, k3 = self.distortions
        r2 = x * x + y * y
        radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
        xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
        yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
        m = self.matrix
        u = m[0, 0] * xd + m[0, 1] * yd + m[0, 2]
        v = m[1, 1] * yd + m[1, 2]
        return np.stack([u, v], axis=-1)

    def undistort(self, points2d: np.ndarray, iterations: int = 20) -> np.ndarray:
        """Normalised image coordinates ``(..., 2)`` of pixels ``(..., 2)``.

        The inverse of :meth:`distort` (without the depth), by fixed-point iteration as
        OpenCV's ``undistortPoints`` does, with more iterations so that strongly
        distorted image corners come back to within a small fraction of a pixel.
        """
        pts = np.asarray(points2d, dtype=np.float64)
        m = self.matrix
        yd = (pts[..., 1] - m[1, 2]) / m[1, 1]
        xd = (pts[..., 0] - m[0, 2] - m[0, 1] * yd) / m[0, 0]
        k1, k2, p1, p2, k3 = self.distortions
        if not np.any(self.distortions):
            return np.stack([xd, yd], axis=-1)
        x, y = xd.copy(), yd.copy()
        for _ in range(iterations):
            r2 = x * x + y * y
            radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
            dx = 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
            dy = p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
            with np.errstate(divide="ignore", invalid="ignore"):
                x = (xd - dx) / radial
                y = (yd - dy) / radial
        return np.stack([x, y], axis=-1)

    # ------------------------------------------------------------------ file form
    def to_dict(self) -> dict:
        """The camera as anipose writes it (plain lists, ``size`` as width, height)."""
        return {
            "name": self.name,
            "size": [int(self.size[0]), int(self.size[1])],
            "matrix": self.matrix.tolist(),
            "distortions": self.distortions.tolist(),
            "rotation": self.rotation.tolist(),
            "translation": self.translation.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict, where: str = "camera") -> Camera:
        missing = [key for key in CAMERA_KEYS if key not in data]
        if missing:
            raise CalibrationError(
                f"{where}: missing {', '.join(missing)} (an anipose camera needs {', '.join(CAMERA_KEYS)})"
            )
        if data.get("fisheye"):
            raise CalibrationError(f"{where}: fisheye cameras are not supported (only the pinhole model)")
        size = data["size"]
        if len(size) != 2:
            raise CalibrationError(f"{where}: size must be [width, height], got {size!r}")
        try:
            return cls(
                name=data["name"],
                size=(size[0], size[1]),
                matrix=data["matrix"],
                distortions=data["distortions"],
                rotation=data["rotation"],
                translation=data["translation"],
            )
        except CalibrationError:
            raise
        except (TypeError, ValueError) as err:
            raise CalibrationError(f"{where}: {err}") from None


@dataclass
class Rig:
    """Several calibrated cameras sharing one world frame."""

    cameras: list[Camera]
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [cam.name for cam in self.cameras]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise CalibrationError(f"camera names must be unique; repeated: {', '.join(dupes)}")

    @property
    def names(self) -> list[str]:
        return [cam.name for cam in self.cameras]

    def __len__(self) -> int:
        return len(self.cameras)

    def camera(self, name: str) -> Camera:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise CalibrationError(f"no camera {name!r} in the calibration (it has {', '.join(self.names) or 'none'})")

    def subset(self, names: Sequence[str]) -> Rig:
        """The cameras ``names`` in that order; every missing name is reported at once."""
        missing = [n for n in names if n not in self.names]
        if missing:
            raise CalibrationError(
                f"camera {', '.join(map(repr, missing))} not in the calibration; it has {', '.join(self.names) or 'none'}"
            )
        return Rig([self.camera(n) for n in names], dict(self.metadata))

    def project(self, points3d: np.ndarray) -> np.ndarray:
        """Pixels ``(C, ..., 2)`` of world points ``(..., 3)`` in every camera."""
        return np.stack([cam.project(points3d) for cam in self.cameras])

    def undistort(self, points2d: np.ndarray) -> np.ndarray:
        """Normalised coordinates ``(C, ..., 2)`` of pixels ``(C, ..., 2)``, camera by camera."""
        return np.stack([cam.undistort(p) for cam, p in zip(self.cameras, points2d, strict=True)])

    def extrinsics(self) -> np.ndarray:
        """``[R | t]`` of every camera, ``(C, 3, 4)``."""
        return np.stack([cam.extrinsic() for cam in self.cameras])

    def check_geometry(self, min_baseline: float = 1e-6) -> None:
        """Refuse a rig that cannot triangulate: fewer than two cameras, or all at one point."""
        if len(self.cameras) < 2:
            raise CalibrationError(f"triangulation needs at least 2 cameras; the rig has {len(self.cameras)}")
        centers = np.stack([cam.center() for cam in self.cameras])
        spread = float(np.max(np.linalg.norm(centers - centers.mean(axis=0), axis=1)))
        if not math.isfinite(spread) or spread < min_baseline:
            raise CalibrationError(
                "degenerate rig: every camera is at the same point (no baseline to triangulate from)"
            )


def _array(value, shape: tuple[int, ...], what: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationError(f"{what}: not a numeric array: {value!r}") from None
    if arr.shape != shape:
        raise CalibrationError(f"{what}: expected shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise CalibrationError(f"{what}: contains NaN or infinite values")
    return arr


def read_calibration(path: str | os.PathLike) -> Rig:
    """The rig in an anipose ``calibration.toml``; a clear :class:`CalibrationError` otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CalibrationError(f"{path}: no such calibration file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CalibrationError(f"{path}: cannot read: {err}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise CalibrationError(f"{path}: not a valid TOML file: {err}") from None
    tables = [(key, value) for key, value in data.items() if key != "metadata" and isinstance(value, dict)]
    if not tables:
        raise CalibrationError(f"{path}: no camera tables; an anipose calibration has [cam_0], [cam_1], ...")
    tables.sort(key=lambda kv: _table_order(kv[0]))
    cameras = [Camera.from_dict(value, where=f"{path}: [{key}]") for key, value in tables]
    metadata = data.get("metadata", {})
    return Rig(cameras, dict(metadata) if isinstance(metadata, dict) else {})


def _table_order(key: str) -> tuple[int, str]:
    tail = key.rsplit("_", 1)[-1]
    return (int(tail), key) if tail.isdigit() else (1 << 30, key)


def write_calibration(path: str | os.PathLike, rig: Rig) -> Path:
    """Write ``rig`` as an anipose ``calibration.toml``, atomically."""
    import tomli_w

    data: dict = {f"cam_{i}": cam.to_dict() for i, cam in enumerate(rig.cameras)}
    data["metadata"] = _plain(rig.metadata)
    return atomic_write_text(path, tomli_w.dumps(data))


def _plain(value):
    """Metadata as TOML can hold it (NumPy values become Python ones, None is dropped)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value
