"""Calibrating synchronised cameras with a board: intrinsics, then extrinsics by bundle adjustment.

The API (filled in over the following modules): :func:`calibration_frames`,
:func:`iter_calibrate`, :func:`calibrate`, :func:`write_calibration_result` and
:func:`read_calibration_result`.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Mapping
from dataclasses import dataclass
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


def calibration_frames(path: str | os.PathLike) -> list[tuple[int, str]]:
    """``(frame index, name)`` of a calibration video or folder of images, in matching order."""
    raise NotImplementedError


def iter_calibrate(
    board: Board, sources: Mapping[str, str | os.PathLike], **options
) -> Generator[float, None, CalibrationResult]:
    """Calibrate the cameras ``sources`` (name -> video or image folder); yields the fraction done."""
    raise NotImplementedError
    yield 0.0


def calibrate(board: Board, sources: Mapping[str, str | os.PathLike], **options) -> CalibrationResult:
    """:func:`iter_calibrate` run to the end."""
    from napari_posekit.core._generators import drive

    return drive(iter_calibrate(board, sources, **options))


def write_calibration_result(path: str | os.PathLike, result: CalibrationResult) -> Path:
    """Write ``calibration.toml`` and its ``<stem>.report.json`` beside it, together and atomically."""
    raise NotImplementedError


def read_calibration_result(path: str | os.PathLike) -> CalibrationResult:
    """The result written by :func:`write_calibration_result` (the TOML and its sidecar)."""
    raise NotImplementedError
