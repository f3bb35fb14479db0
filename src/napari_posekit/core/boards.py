"""Calibration boards: ChArUco and plain checkerboards, described as anipose does.

An anipose ``board.toml`` holds ``board_x`` and ``board_y``, the number of SQUARES
along the board's width (columns) and height (rows), and ``square_length`` in the
unit the calibration will have (the shared example uses millimetres). A ChArUco
board adds ``marker_length`` (same unit), ``marker_bits`` (4 for 4x4 markers) and
``dict_size`` (50, 100, 250 or 1000): together they name one of OpenCV's predefined
ArUco dictionaries (``DICT_4X4_1000`` ...). Without the marker keys the board is a
checkerboard.

Either way the points are the inner corners, ``(board_x - 1) * (board_y - 1)`` of
them. Corner ``id`` sits in row ``id // (board_x - 1)`` and column
``id % (board_x - 1)``, at ``(column, row) * square_length`` on the board plane
(``z = 0``), the first corner at the origin. A checkerboard is found whole or not at
all; a ChArUco board may be seen in part, each corner keeping its id.

Boards printed with OpenCV before 4.6 (and anipose's older ones) differ from the
current ChArUco layout when the number of rows is even; :meth:`Board.detect` tries
that legacy layout when the current one finds nothing, and keeps to the one that
worked.

Everything here is napari-free; OpenCV is imported when a board detects.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_posekit.core.cameras import CalibrationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["ARUCO_DICTIONARIES", "Board", "read_board"]

#: (marker_bits, dict_size) -> the name of OpenCV's predefined dictionary.
ARUCO_DICTIONARIES = {
    (bits, size): f"DICT_{bits}X{bits}_{size}" for bits in (4, 5, 6, 7) for size in (50, 100, 250, 1000)
}

_SUBPIX_CRITERIA = (3, 40, 0.001)  # cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, iterations, epsilon


@dataclass
class Board:
    """A calibration board (see the module notes for what the numbers mean)."""

    kind: str  # "charuco" | "checkerboard"
    board_x: int  # squares along the width (columns)
    board_y: int  # squares along the height (rows)
    square_length: float
    marker_length: float | None = None
    marker_bits: int | None = None
    dict_size: int | None = None
    _legacy: bool | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in ("charuco", "checkerboard"):
            raise CalibrationError(f"board kind must be 'charuco' or 'checkerboard', not {self.kind!r}")
        self.board_x, self.board_y = int(self.board_x), int(self.board_y)
        if self.board_x < 3 or self.board_y < 3:
            raise CalibrationError(
                f"board_x and board_y count squares and must be at least 3; got {self.board_x} x {self.board_y}"
            )
        self.square_length = float(self.square_length)
        if not self.square_length > 0:
            raise CalibrationError(f"square_length must be positive, got {self.square_length}")
        if self.kind == "charuco":
            if self.marker_length is None or self.marker_bits is None or self.dict_size is None:
                raise CalibrationError("a ChArUco board needs marker_length, marker_bits and dict_size")
            self.marker_length = float(self.marker_length)
            self.marker_bits, self.dict_size = int(self.marker_bits), int(self.dict_size)
            if not 0 < self.marker_length < self.square_length:
                raise CalibrationError(
                    f"marker_length ({self.marker_length}) must be positive and smaller than "
                    f"square_length ({self.square_length})"
                )
            if (self.marker_bits, self.dict_size) not in ARUCO_DICTIONARIES:
                raise CalibrationError(
                    f"no ArUco dictionary with marker_bits = {self.marker_bits} and dict_size = {self.dict_size}; "
                    "marker_bits is 4, 5, 6 or 7 and dict_size 50, 100, 250 or 1000"
                )
            markers = (self.board_x * self.board_y) // 2
            if markers > self.dict_size:
                raise CalibrationError(
                    f"a {self.board_x} x {self.board_y} ChArUco board has {markers} markers, more than the "
                    f"{self.dict_size} of its dictionary"
                )
        else:
            self.marker_length = self.marker_bits = self.dict_size = None

    # ------------------------------------------------------------------ geometry
    @property
    def inner(self) -> tuple[int, int]:
        """Inner corners along the width and the height."""
        return self.board_x - 1, self.board_y - 1

    @property
    def n_corners(self) -> int:
        return (self.board_x - 1) * (self.board_y - 1)

    def object_points(self) -> np.ndarray:
        """``(N, 3)`` positions of the inner corners on the board plane; row ``i`` is corner ``i``."""
        nx, ny = self.inner
        col, row = np.meshgrid(np.arange(nx), np.arange(ny))
        xy = np.stack([col.ravel(), row.ravel()], axis=1) * self.square_length
        return np.hstack([xy, np.zeros((len(xy), 1))])

    def neighbours(self) -> np.ndarray:
        """``(M, 2)`` ids of corner pairs one square apart (along rows, then along columns)."""
        nx, ny = self.inner
        ids = np.arange(self.n_corners).reshape(ny, nx)
        across = np.stack([ids[:, :-1].ravel(), ids[:, 1:].ravel()], axis=1)
        down = np.stack([ids[:-1, :].ravel(), ids[1:, :].ravel()], axis=1)
        return np.vstack([across, down])

    def to_dict(self) -> dict:
        """The board as anipose's ``board.toml`` holds it."""
        out = {"board_x": self.board_x, "board_y": self.board_y, "square_length": self.square_length}
        if self.kind == "charuco":
            out |= {"marker_length": self.marker_length, "marker_bits": self.marker_bits, "dict_size": self.dict_size}
        return out

    def describe(self) -> str:
        nx, ny = self.inner
        if self.kind == "charuco":
            return (
                f"ChArUco {self.board_x} x {self.board_y} squares of {self.square_length:g} "
                f"({nx} x {ny} inner corners, markers {self.marker_length:g}, "
                f"{ARUCO_DICTIONARIES[(self.marker_bits, self.dict_size)]})"
            )
        return f"checkerboard {self.board_x} x {self.board_y} squares of {self.square_length:g} ({nx} x {ny} inner corners)"

    # ------------------------------------------------------------------ detection
    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Corners ``(K, 2)`` (float64, pixels) and their ids ``(K,)`` in a grey or RGB image.

        Empty arrays when the board is not found.
        """
        import cv2

        gray = np.asarray(image)
        if gray.ndim == 3:
            gray = cv2.cvtColor(gray, cv2.COLOR_RGB2GRAY if gray.shape[2] == 3 else cv2.COLOR_RGBA2GRAY)
        if gray.dtype != np.uint8:
            gray = np.clip(gray, 0, 255).astype(np.uint8)
        if self.kind == "checkerboard":
            return self._detect_checkerboard(cv2, gray)
        return self._detect_charuco(cv2, gray)

    def _detect_checkerboard(self, cv2, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flags = cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_EXHAUSTIVE | cv2.CALIB_CB_ACCURACY
        found, corners = cv2.findChessboardCornersSB(gray, self.inner, flags)
        if not found:
            flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
            found, corners = cv2.findChessboardCorners(gray, self.inner, flags)
            if not found:
                return _empty()
            corners = cv2.cornerSubPix(gray, corners.astype(np.float32), (5, 5), (-1, -1), _SUBPIX_CRITERIA)
        corners = corners.reshape(-1, 2).astype(np.float64)
        return _canonical_order(gray, corners, self.inner), np.arange(self.n_corners)

    def _detect_charuco(self, cv2, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        layouts = [self._legacy] if self._legacy is not None else [False, True]
        if self.board_y % 2:  # an odd number of rows: both layouts are the same board
            layouts = [False]
        for legacy in layouts:
            corners, ids, _, _ = _charuco_detector(
                self.board_x,
                self.board_y,
                self.square_length,
                self.marker_length,
                self.marker_bits,
                self.dict_size,
                legacy,
            ).detectBoard(gray)
            if corners is not None and ids is not None and len(ids) > 0:
                if len(layouts) > 1:
                    self._legacy = legacy
                corners = cv2.cornerSubPix(gray, corners.astype(np.float32), (3, 3), (-1, -1), _SUBPIX_CRITERIA)
                return corners.reshape(-1, 2).astype(np.float64), ids.ravel().astype(np.int64)
        return _empty()


@functools.lru_cache(maxsize=8)
def _charuco_detector(board_x, board_y, square_length, marker_length, marker_bits, dict_size, legacy: bool):
    """OpenCV's ChArUco detector for a board (made once per board and layout)."""
    import cv2

    dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, ARUCO_DICTIONARIES[(marker_bits, dict_size)]))
    board = cv2.aruco.CharucoBoard((board_x, board_y), square_length, marker_length, dictionary)
    board.setLegacyPattern(legacy)
    return cv2.aruco.CharucoDetector(board)


def _empty() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 2)), np.zeros(0, dtype=np.int64)


def _canonical_order(gray: np.ndarray, corners: np.ndarray, inner: tuple[int, int]) -> np.ndarray:
    """A checkerboard's corners numbered from the same physical end in every image.

    OpenCV may start from either end of the grid (a 180 degree turn of the numbering).
    When the board's two end squares differ in colour (``board_x + board_y`` odd, as on
    most printed boards) the numbering starts next to the dark one, so that every camera
    numbers the board alike; otherwise the first corner is the one nearer the image's
    top-left. Square grids (90 degree turns) are not resolved.
    """
    import cv2

    nx, ny = inner
    if (nx + ny) % 2:  # board_x + board_y odd: the first and last inner squares differ
        grid = corners.reshape(ny, nx, 2)
        first = grid[:2, :2].reshape(-1, 2).mean(axis=0)
        last = grid[-2:, -2:].reshape(-1, 2).mean(axis=0)
        shade = [float(cv2.getRectSubPix(gray, (5, 5), tuple(map(float, p))).mean()) for p in (first, last)]
        return corners[::-1].copy() if shade[0] > shade[1] else corners
    if corners[0].sum() > corners[-1].sum():
        return corners[::-1].copy()
    return corners


def read_board(path: str | os.PathLike) -> Board:
    """The board of an anipose ``board.toml``; a :class:`CalibrationError` naming what is wrong."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CalibrationError(f"{path}: no such board file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CalibrationError(f"{path}: cannot read the board file: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise CalibrationError(f"{path}: not a valid TOML file: {err}") from None
    if isinstance(data.get("calibration"), dict):  # an anipose config.toml: the board is in [calibration]
        data = data["calibration"]
    missing = [key for key in ("board_x", "board_y", "square_length") if key not in data]
    if missing:
        raise CalibrationError(
            f"{path}: missing {', '.join(missing)} (a board needs board_x, board_y and square_length, and "
            "marker_length, marker_bits and dict_size for ChArUco)"
        )
    marker_keys = ("marker_length", "marker_bits", "dict_size")
    present = [key for key in marker_keys if key in data]
    if present and len(present) < len(marker_keys):
        absent = [key for key in marker_keys if key not in data]
        raise CalibrationError(
            f"{path}: a ChArUco board needs marker_length, marker_bits and dict_size; missing {', '.join(absent)}"
        )
    try:
        return Board(
            kind="charuco" if present else "checkerboard",
            board_x=_integer(data["board_x"], "board_x"),
            board_y=_integer(data["board_y"], "board_y"),
            square_length=float(data["square_length"]),
            marker_length=float(data["marker_length"]) if present else None,
            marker_bits=_integer(data["marker_bits"], "marker_bits") if present else None,
            dict_size=_integer(data["dict_size"], "dict_size") if present else None,
        )
    except CalibrationError as err:
        raise CalibrationError(f"{path}: {err}") from None
    except (TypeError, ValueError) as err:
        raise CalibrationError(f"{path}: {err}") from None


def _integer(value, key: str) -> int:
    if isinstance(value, bool) or not float(value).is_integer():
        raise CalibrationError(f"{key} must be a whole number, got {value!r}")
    return int(value)
