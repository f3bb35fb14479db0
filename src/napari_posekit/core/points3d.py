"""Triangulated 3D points in DeepLabCut's ``_3D.h5``/``.csv`` layout, with a quality table beside them.

The main table is what DeepLabCut's ``triangulate`` writes: one row per frame (the
index is the frame number) and float64 columns under a MultiIndex
``(scorer, bodyparts, coords)`` with coords ``x``, ``y``, ``z``, stored in the
``.h5`` under the key ``df_with_missing`` (pandas ``table`` format) and as a ``.csv``
with three header rows beside it. A point that could not be triangulated is NaN.

How well each point is supported is kept apart, so that the main table stays
DeepLabCut's: the same ``.h5`` holds a second table under the key ``quality`` with
columns ``(scorer, bodyparts, coords)`` and coords ``error`` (mean reprojection
error in pixels over the cameras used) and ``cameras`` (how many cameras were
used, 0 where the point is NaN), and ``<stem>_quality.csv`` holds it as text.

:func:`read_points3d` reads these files and DeepLabCut's own (``.h5`` or ``.csv``;
a multi-animal file's first individual, with a warning).

Everything here is napari-free.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from napari_posekit.core.filesafety import error_reason, write_atomically

__all__ = [
    "COORDS3D",
    "POINTS3D_KEY",
    "QUALITY_COORDS",
    "QUALITY_KEY",
    "Points3D",
    "Points3DError",
    "points3d_dataframe",
    "quality_csv_path",
    "read_points3d",
    "write_points3d",
]

POINTS3D_KEY = "df_with_missing"
QUALITY_KEY = "quality"
COORDS3D = ("x", "y", "z")
QUALITY_COORDS = ("error", "cameras")
COLUMN_NAMES = ["scorer", "bodyparts", "coords"]
SCORER = "posekit_3D"


class Points3DError(ValueError):
    """A 3D points file or array that cannot be read or written, naming the file and the reason."""


@dataclass
class Points3D:
    """3D points of one animal.

    Attributes:
        bodyparts: ``J`` body part names.
        frames: ``(F,)`` int frame numbers.
        points: ``(F, J, 3)`` world coordinates, NaN where not triangulated.
        error: ``(F, J)`` mean reprojection error in pixels, or None when unknown.
        cameras: ``(F, J)`` int number of cameras used, or None when unknown.
        scorer: The scorer level of the table.
    """

    bodyparts: list[str]
    frames: np.ndarray
    points: np.ndarray
    error: np.ndarray | None = None
    cameras: np.ndarray | None = None
    scorer: str = SCORER


def quality_csv_path(h5_path: str | os.PathLike) -> Path:
    """``<stem>_quality.csv`` beside ``<stem>.h5``."""
    h5_path = Path(h5_path)
    return h5_path.with_name(h5_path.stem + "_quality.csv")


def _check(points: Points3D) -> None:
    f, j = len(points.frames), len(points.bodyparts)
    if np.shape(points.points) != (f, j, 3):
        raise Points3DError(f"points must be (frames, body parts, 3) = ({f}, {j}, 3); got {np.shape(points.points)}")
    for name in ("error", "cameras"):
        value = getattr(points, name)
        if value is not None and np.shape(value) != (f, j):
            raise Points3DError(f"{name} must be (frames, body parts) = ({f}, {j}); got {np.shape(value)}")
    if len(set(points.bodyparts)) != j:
        raise Points3DError(f"body parts listed twice: {points.bodyparts}")


def points3d_dataframe(points: Points3D) -> pd.DataFrame:
    """The main table, as DeepLabCut's ``triangulate`` makes it."""
    _check(points)
    columns = pd.MultiIndex.from_product([[points.scorer], points.bodyparts, list(COORDS3D)], names=COLUMN_NAMES)
    values = np.asarray(points.points, dtype=np.float64).reshape(len(points.frames), -1)
    return pd.DataFrame(values, columns=columns, index=pd.Index(np.asarray(points.frames, dtype=np.int64)))


def quality_dataframe(points: Points3D) -> pd.DataFrame | None:
    """The quality table (coords ``error``, ``cameras``), or None when the points have neither."""
    if points.error is None and points.cameras is None:
        return None
    f, j = len(points.frames), len(points.bodyparts)
    error = np.full((f, j), np.nan) if points.error is None else np.asarray(points.error, dtype=np.float64)
    cams = np.full((f, j), np.nan) if points.cameras is None else np.asarray(points.cameras, dtype=np.float64)
    columns = pd.MultiIndex.from_product([[points.scorer], points.bodyparts, list(QUALITY_COORDS)], names=COLUMN_NAMES)
    values = np.stack([error, cams], axis=-1).reshape(f, -1)
    return pd.DataFrame(values, columns=columns, index=pd.Index(np.asarray(points.frames, dtype=np.int64)))


def write_points3d(path: str | os.PathLike, points: Points3D) -> Path:
    """Write ``<stem>.h5`` (keys ``df_with_missing`` and ``quality``), ``<stem>.csv`` and ``<stem>_quality.csv``.

    All files are complete under temporary names before any replaces its target
    (the ``.h5`` last). Returns the ``.h5`` path.

    Raises:
        Points3DError: The path does not end with ``.h5``, the arrays do not fit, or
            the folder cannot be written (the message names it).
    """
    path = Path(path)
    if path.suffix.lower() != ".h5":
        raise Points3DError(f"{path}: a 3D points file ends with .h5")
    main = points3d_dataframe(points)
    quality = quality_dataframe(points)

    def write_h5(tmp: Path) -> None:
        main.to_hdf(tmp, key=POINTS3D_KEY, format="table", mode="w")
        if quality is not None:
            quality.to_hdf(tmp, key=QUALITY_KEY, format="table", mode="a")

    writers = {path.with_suffix(".csv"): lambda tmp: main.to_csv(tmp)}
    if quality is not None:
        writers[quality_csv_path(path)] = lambda tmp: quality.to_csv(tmp)
    writers[path] = write_h5
    write_atomically(writers, error=lambda message: Points3DError(f"{path}: {message}"))
    return path


def read_points3d(path: str | os.PathLike) -> Points3D:
    """Read a 3D points ``.h5`` or ``.csv``: ours (with its quality table) or DeepLabCut's ``_3D`` files.

    Raises:
        FileNotFoundError: No such file.
        Points3DError: Not a table of ``x, y, z`` coords per body part; the message says why.
    """
    path = Path(path)
    if not path.is_file():
        if path.is_dir():
            raise Points3DError(f"{path}: is a folder, not a 3D points file")
        raise FileNotFoundError(f"{path}: no such 3D points file")
    suffix = path.suffix.lower()
    quality = None
    if suffix in (".h5", ".hdf5"):
        main, quality = _read_h5(path)
    elif suffix == ".csv":
        main = _read_csv(path)
        side = quality_csv_path(path.with_suffix(".h5"))
        if side.is_file() and side != path:
            try:
                quality = _read_csv(side)
            except Points3DError:
                quality = None
    else:
        raise Points3DError(f"{path}: expected a .h5 or .csv 3D points file")
    scorer, bodyparts, frames, values = _table(main, path, COORDS3D)
    out = Points3D(bodyparts, frames, values, scorer=scorer)
    if quality is not None:
        try:
            _, qparts, qframes, qvalues = _table(quality, path, QUALITY_COORDS)
        except Points3DError:
            return out
        if np.array_equal(qframes, frames) and set(qparts) == set(bodyparts):
            order = [qparts.index(bp) for bp in bodyparts]
            out.error = qvalues[:, order, 0]
            cams = qvalues[:, order, 1]
            out.cameras = np.where(np.isfinite(cams), cams, 0).astype(np.int64)
    return out


def _read_h5(path: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    try:
        with pd.HDFStore(path, mode="r") as store:
            keys = list(store.keys())
            main_key = "/" + POINTS3D_KEY if "/" + POINTS3D_KEY in keys else None
            if main_key is None:
                candidates = [k for k in keys if k != "/" + QUALITY_KEY]
                main_key = candidates[0] if candidates else None
            if main_key is None:
                raise Points3DError(f"{path}: no table in the HDF5 file (keys: {keys})")
            main = store.get(main_key)
            quality = store.get("/" + QUALITY_KEY) if "/" + QUALITY_KEY in keys else None
    except Points3DError:
        raise
    except Exception as err:  # not HDF5, or not written by pandas
        raise Points3DError(f"{path}: cannot read the HDF5 file: {error_reason(err)}") from err
    if not isinstance(main, pd.DataFrame):
        raise Points3DError(f"{path}: {main_key} is not a table")
    return main, quality if isinstance(quality, pd.DataFrame) else None


def _read_csv(path: Path) -> pd.DataFrame:
    with open(path, encoding="utf-8-sig") as f:
        head = [f.readline().split(",", 1)[0].strip() for _ in range(4)]
    levels = 4 if head[1] == "individuals" else 3
    if head[0] != "scorer":
        raise Points3DError(f"{path}: not a DeepLabCut table: the first row must start with 'scorer', not {head[0]!r}")
    try:
        df = pd.read_csv(path, header=list(range(levels)), index_col=0)
    except Exception as err:  # pandas raises many kinds
        raise Points3DError(f"{path}: cannot parse the CSV file: {error_reason(err)}") from err
    return df


def _table(df: pd.DataFrame, path: Path, coords: tuple[str, ...]) -> tuple[str, list[str], np.ndarray, np.ndarray]:
    """``(scorer, bodyparts, frames, values (F, J, len(coords)))`` of a 3- or 4-level table."""
    cols = df.columns
    if not isinstance(cols, pd.MultiIndex) or cols.nlevels not in (3, 4):
        raise Points3DError(f"{path}: the columns must have the levels scorer/bodyparts/coords")
    if cols.nlevels == 4:
        individuals = list(dict.fromkeys(cols.get_level_values(1)))
        if len(individuals) > 1:
            warnings.warn(
                f"{path}: {len(individuals)} individuals; reading the first, {individuals[0]!r}",
                UserWarning,
                stacklevel=4,
            )
        df = df.xs(individuals[0], axis=1, level=1, drop_level=True)
        cols = df.columns
    found = sorted({str(c) for c in cols.get_level_values(-1)})
    if not set(coords) <= set(found):
        raise Points3DError(f"{path}: coords must be {', '.join(coords)}; found {', '.join(found)}")
    scorer = str(cols.get_level_values(0)[0])
    bodyparts = [str(b) for b in dict.fromkeys(cols.get_level_values(1))]
    try:
        values = np.stack(
            [np.stack([df[(scorer, bp, c)].to_numpy(np.float64) for c in coords], axis=-1) for bp in bodyparts],
            axis=1,
        )
    except (KeyError, ValueError, TypeError) as err:
        raise Points3DError(f"{path}: missing or non-numeric columns: {err}") from None
    frames = _frames(df.index, path)
    return scorer, bodyparts, frames, values.reshape(len(df), len(bodyparts), len(coords))


def _frames(index: pd.Index, path: Path) -> np.ndarray:
    try:
        values = np.asarray(index, dtype=np.float64)
    except (TypeError, ValueError):
        raise Points3DError(f"{path}: the rows must be frame numbers, found {index[0]!r}") from None
    if values.size and (not np.all(np.isfinite(values)) or np.any(values != np.round(values))):
        raise Points3DError(f"{path}: the rows must be whole frame numbers")
    return values.astype(np.int64)
