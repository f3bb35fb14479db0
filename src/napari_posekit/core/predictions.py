"""Pose prediction files, read and written as DeepLabCut's ``analyze_videos`` does.

DeepLabCut writes the predictions for ``<video>.mp4`` beside the video as::

    <video stem><scorer>.h5           key "df_with_missing", pandas "table" format
    <video stem><scorer>.csv          the same table as text (3 header rows)
    <video stem><scorer>_meta.pickle  how the file was made

where the scorer names the network, e.g.
``DLC_resnet50_openfieldOct30shuffle1_200000``. The table has one row per
frame (the index is the frame number) and float64 columns under a MultiIndex
``(scorer, bodyparts, coords)`` with coords ``x``, ``y``, ``likelihood``;
multi-animal files have a fourth level, ``(scorer, individuals, bodyparts,
coords)``. A body part that was not found has NaN coordinates.

:func:`write_predictions` writes the same ``.h5`` and ``.csv`` and, instead of
the pickle, ``<video stem><scorer>_meta.json``. Every file is written under a
temporary name in its folder and moved into place with :func:`os.replace`
(:mod:`~napari_posekit.core.filesafety`), the HDF5 file last, so an
interrupted write never leaves a file that looks complete and an existing
``.h5`` always has its ``.csv`` and ``_meta.json``.

:func:`read_predictions` reads these files and DeepLabCut's own (``.h5`` with
any key, ``.csv`` with 3 or 4 header rows) into :class:`Predictions`.

Everything here is napari-free.
"""

from __future__ import annotations

import csv
import datetime as _dt
import errno
import glob
import json
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .collected_data import COLLECTED_KEY, COLUMN_NAMES, COLUMN_NAMES_MULTIANIMAL
from .filesafety import error_reason, write_atomically

__all__ = [
    "COORDS",
    "PREDICTIONS_KEY",
    "Predictions",
    "csv_path",
    "find_predictions",
    "meta_path",
    "prediction_stem",
    "predictions_dataframe",
    "read_predictions",
    "write_predictions",
]

#: HDF5 key of prediction files (the same as CollectedData's).
PREDICTIONS_KEY = COLLECTED_KEY
#: The coords of each body part in a prediction file, in DeepLabCut's order.
COORDS = ("x", "y", "likelihood")
#: Suffix of the JSON file that describes how a prediction file was made.
META_SUFFIX = "_meta.json"


@dataclass
class Predictions:
    """Predicted keypoints of one video.

    Attributes
    ----------
    xy:
        ``(n_frames, n_points, 2)`` float64 ``(x, y)`` in pixels, NaN where a
        point was not found.
    likelihood:
        ``(n_frames, n_points)`` float64.
    bodyparts:
        The body part of each point (column), ``n_points`` entries. In a
        multi-animal file a body part appears once per individual.
    scorer:
        The scorer level of the table (``DLC_<network>_<task><date>shuffle<n>_<iterations>``).
    frames:
        ``(n_frames,)`` int64 frame numbers (the table's index).
    individual_of:
        The individual of each point for multi-animal files, else None. A
        multi-animal file keeps every point as a column of ``xy`` in file order,
        so ``xy[:, j]`` is ``bodyparts[j]`` of ``individual_of[j]``.
    path:
        The file read, or None.
    metadata:
        The ``_meta.json`` beside the file when there is one, else None.
    """

    xy: np.ndarray
    likelihood: np.ndarray
    bodyparts: list[str]
    scorer: str
    frames: np.ndarray
    individual_of: list[str] | None = None
    path: Path | None = None
    metadata: dict | None = field(default=None, repr=False)

    @property
    def individuals(self) -> list[str] | None:
        """The individuals in file order (multi-animal files), else None."""
        return None if self.individual_of is None else list(dict.fromkeys(self.individual_of))

    @property
    def labels(self) -> list[str]:
        """One name per point: the body part, or ``individual/bodypart`` for multi-animal files."""
        if self.individual_of is None:
            return list(self.bodyparts)
        return [f"{ind}/{bp}" for ind, bp in zip(self.individual_of, self.bodyparts)]

    @property
    def n_frames(self) -> int:
        return int(self.xy.shape[0])

    def to_dataframe(self) -> pd.DataFrame:
        """The table as DeepLabCut writes it (see :func:`predictions_dataframe`)."""
        return predictions_dataframe(
            self.xy, self.likelihood, self.bodyparts, self.scorer, frames=self.frames, individual_of=self.individual_of
        )


# --------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------


def prediction_stem(video_path: str | os.PathLike, scorer: str) -> str:
    """``<video stem><scorer>``, the stem of DeepLabCut's prediction files for a video.

    ``scorer`` must start with ``DLC`` (``DLC_resnet50_openfieldOct30shuffle1_200000``):
    that is how DeepLabCut and :func:`find_predictions` tell prediction files from
    other files beside the video.
    """
    scorer = str(scorer)
    if not scorer.startswith("DLC"):
        raise ValueError(
            f"a prediction scorer starts with 'DLC' (as DLC_resnet50_taskOct30shuffle1_1000), got {scorer!r}"
        )
    return f"{Path(video_path).stem}{scorer}"


def csv_path(h5_path: str | os.PathLike) -> Path:
    """The ``.csv`` written beside a prediction ``.h5``."""
    return Path(h5_path).with_suffix(".csv")


def meta_path(h5_path: str | os.PathLike) -> Path:
    """The ``<stem>_meta.json`` written beside a prediction ``.h5`` (or ``.csv``)."""
    path = Path(h5_path)
    return path.with_name(path.stem + META_SUFFIX)


def find_predictions(video_path: str | os.PathLike, folder: str | os.PathLike | None = None) -> list[Path]:
    """Prediction files ``<video stem>DLC*.h5`` of a video, newest first.

    ``folder`` defaults to the video's folder. Filtered files
    (``..._filtered.h5``) are included; a folder that does not exist gives an
    empty list.
    """
    video_path = Path(video_path)
    folder = video_path.parent if folder is None else Path(folder)
    if not folder.is_dir():
        return []
    pattern = glob.escape(video_path.stem) + "DLC*.h5"
    found = []
    for path in folder.glob(pattern):
        try:
            if path.is_file():
                found.append((path.stat().st_mtime_ns, path))
        except OSError:
            continue
    found.sort(key=lambda item: (-item[0], item[1].name))
    return [path for _, path in found]


# --------------------------------------------------------------------------------------
# Arrays <-> DataFrame
# --------------------------------------------------------------------------------------


def _check_arrays(
    xy, likelihood, bodyparts, frames, individual_of
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray | None, list[str] | None]:
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 3 or xy.shape[2] != 2:
        raise ValueError(f"xy must have shape (n_frames, n_bodyparts, 2), got {xy.shape}")
    n, k = xy.shape[:2]
    likelihood = np.asarray(likelihood, dtype=np.float64)
    if likelihood.shape != (n, k):
        raise ValueError(f"likelihood must have shape (n_frames, n_bodyparts) = {(n, k)}, got {likelihood.shape}")
    if isinstance(bodyparts, str):
        raise TypeError(f"bodyparts must be a list of names, got the string {bodyparts!r}")
    bodyparts = [str(b) for b in bodyparts]
    if len(bodyparts) != k:
        raise ValueError(f"xy has {k} body parts per frame but {len(bodyparts)} names were given: {bodyparts}")
    if individual_of is not None:
        individual_of = [str(i) for i in individual_of]
        if len(individual_of) != k:
            raise ValueError(f"individual_of needs one individual per body part ({k}), got {len(individual_of)}")
        points = list(zip(individual_of, bodyparts))
    else:
        points = bodyparts
    if len(set(points)) != len(points):
        twice = sorted({str(p) for p in points if points.count(p) > 1})
        raise ValueError(f"body parts listed twice: {twice}")
    if frames is not None:
        values = np.asarray(frames)
        if values.shape != (n,):
            raise ValueError(f"frames must have one frame number per row ({n}), got shape {values.shape}")
        numeric = values.dtype.kind in "iuf"
        if n and (not numeric or not np.all(np.isfinite(values)) or np.any(values != np.round(values))):
            raise ValueError("frames must be integer frame numbers")
        frames = values.astype(np.int64)
        if np.any(frames < 0):
            raise ValueError("frame numbers must not be negative")
        if len(np.unique(frames)) != n:
            raise ValueError("frame numbers listed twice")
    return xy, likelihood, bodyparts, frames, individual_of


def predictions_dataframe(
    xy: np.ndarray,
    likelihood: np.ndarray,
    bodyparts: Sequence[str],
    scorer: str,
    frames: Sequence[int] | np.ndarray | None = None,
    *,
    individual_of: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The DataFrame DeepLabCut's ``analyze_videos`` writes, from arrays.

    Parameters
    ----------
    xy:
        ``(n_frames, n_bodyparts, 2)`` ``(x, y)``; NaN stays NaN.
    likelihood:
        ``(n_frames, n_bodyparts)``, written as given (also where ``xy`` is NaN).
    bodyparts:
        One name per column of ``xy``.
    scorer:
        The scorer level.
    frames:
        Frame numbers, the row index; default ``0..n_frames-1`` (a RangeIndex, as DeepLabCut's).
    individual_of:
        For multi-animal tables: the individual of each body part column. The
        columns then have four levels ``(scorer, individuals, bodyparts, coords)``.

    Returns
    -------
    pandas.DataFrame
        float64 values, columns ``(scorer, bodyparts, coords)`` with coords
        ``x, y, likelihood`` for each body part in order.
    """
    xy, likelihood, bodyparts, frames, individual_of = _check_arrays(xy, likelihood, bodyparts, frames, individual_of)
    n, k = likelihood.shape
    scorer = str(scorer)
    if individual_of is None:
        tuples = [(scorer, bp, c) for bp in bodyparts for c in COORDS]
        names = COLUMN_NAMES
    else:
        tuples = [(scorer, ind, bp, c) for ind, bp in zip(individual_of, bodyparts) for c in COORDS]
        names = COLUMN_NAMES_MULTIANIMAL
    if tuples:
        columns = pd.MultiIndex.from_tuples(tuples, names=names)
    else:
        columns = pd.MultiIndex.from_arrays([[] for _ in names], names=names)
    values = np.concatenate([xy, likelihood[..., None]], axis=2).reshape(n, 3 * k)
    index = pd.RangeIndex(n) if frames is None else pd.Index(frames, dtype=np.int64)
    return pd.DataFrame(values, index=index, columns=columns)


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def _plain(value, where: str = "metadata"):
    """``value`` as plain JSON data (Paths and numpy values converted, non-finite floats as null)."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return _plain(value.item(), where)
    if isinstance(value, np.ndarray):
        return _plain(value.tolist(), where)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (_dt.date, _dt.datetime, _dt.time)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return [_plain(v, where) for v in sorted(value, key=str)]
    raise ValueError(f"{where} is a {type(value).__name__}, which cannot be written as JSON")


def write_predictions(
    path_h5: str | os.PathLike,
    xy: np.ndarray,
    likelihood: np.ndarray,
    bodyparts: Sequence[str],
    scorer: str,
    *,
    frames: Sequence[int] | np.ndarray | None = None,
    individual_of: Sequence[str] | None = None,
    csv: bool = True,
    metadata: Mapping | None = None,
) -> Path:
    """Write predictions as DeepLabCut does; returns the ``.h5`` path.

    Parameters
    ----------
    path_h5:
        The ``.h5`` file, usually ``<video folder>/<video stem><scorer>.h5``
        (see :func:`prediction_stem`). Its folder must exist.
    xy, likelihood, bodyparts, scorer, frames, individual_of:
        As for :func:`predictions_dataframe`.
    csv:
        Also write ``<stem>.csv`` (DeepLabCut's ``save_as_csv``). With False an
        existing ``.csv`` is left as it is.
    metadata:
        Written, with ``scorer``, ``bodyparts`` (``individuals``), ``n_rows``,
        ``written`` and ``software`` set from this file, as ``<stem>_meta.json``
        (e.g. the video path, its frame count and fps, the checkpoint, frames
        that failed). Values must be JSON data, paths or numpy values.

    Notes
    -----
    The HDF5 file is ``df.to_hdf(path, key="df_with_missing", format="table",
    mode="w")`` and the CSV ``df.to_csv(path)``, as in DeepLabCut. All files
    are complete under temporary names before any is moved into place; the
    ``.h5`` is moved last. A folder that cannot be written raises OSError
    (PermissionError, FileNotFoundError, ...) naming the folder, and leaves
    the existing files as they were.
    """
    path_h5 = Path(path_h5)
    if path_h5.suffix.lower() != ".h5":
        raise ValueError(f"{path_h5}: a prediction file ends with .h5")
    df = predictions_dataframe(xy, likelihood, bodyparts, scorer, frames, individual_of=individual_of)
    meta = dict(_plain(dict(metadata or {})))
    meta.update(
        scorer=str(scorer),
        bodyparts=list(dict.fromkeys(df.columns.get_level_values("bodyparts"))),
        n_rows=len(df),
        written=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        software=f"napari-posekit {_version()}",
    )
    if individual_of is not None:
        meta["individuals"] = list(dict.fromkeys(df.columns.get_level_values("individuals")))
    text = json.dumps(meta, indent=2, allow_nan=False) + "\n"

    def write_h5(tmp: Path) -> None:
        df.to_hdf(tmp, key=PREDICTIONS_KEY, format="table", mode="w")

    def write_meta(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    writers: dict[Path, Callable[[Path], None]] = {meta_path(path_h5): write_meta}
    if csv:
        writers[csv_path(path_h5)] = lambda tmp: df.to_csv(tmp)
    writers[path_h5] = write_h5
    write_atomically(writers)
    return path_h5


def _version() -> str:
    from napari_posekit import __version__

    return __version__


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_LABELS_HINT = (
    "this looks like a CollectedData labels file (rows are images); read it with core.collected_data.read_collected"
)


def _read_h5(path: Path) -> pd.DataFrame:
    try:
        with pd.HDFStore(path, mode="r") as store:
            keys = list(store.keys())
            ordered = sorted(keys, key=lambda k: k != "/" + PREDICTIONS_KEY)
            for key in ordered:
                try:
                    obj = store.get(key)
                except Exception:  # noqa: BLE001, S112 - a node pandas cannot read is not a prediction table
                    continue
                if isinstance(obj, pd.DataFrame) and isinstance(obj.columns, pd.MultiIndex):
                    return obj
    except Exception as err:  # not HDF5, damaged, or not written by pandas
        raise ValueError(f"{path}: cannot read the HDF5 file: {error_reason(err)}") from err
    raise ValueError(f"{path}: no table of pose predictions in the HDF5 file (keys: {keys})")


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [row for _, row in zip(range(5), csv.reader(f))]
    except (csv.Error, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a CSV text file: {err}") from err
    if not rows or not rows[0] or rows[0][0] != "scorer":
        first = rows[0][0] if rows and rows[0] else ""
        raise ValueError(f"{path}: not a DeepLabCut table: the first row must start with 'scorer', not {first!r}")
    if len(rows[0]) > 1 and rows[0][1] == "":
        raise ValueError(f"{path}: the rows are not frame numbers; {_LABELS_HINT}")
    names = COLUMN_NAMES_MULTIANIMAL if len(rows) > 1 and rows[1] and rows[1][0] == "individuals" else COLUMN_NAMES
    for level, name in enumerate(names):
        got = rows[level][0] if level < len(rows) and rows[level] else None
        if got != name:
            raise ValueError(
                f"{path}: not a DeepLabCut table: expected {len(names)} header rows {'/'.join(names)}, "
                f"but row {level + 1} starts with {got!r}"
            )
    kwargs = {}
    if int(pd.__version__.split(".")[0]) < 3:
        kwargs["float_precision"] = "round_trip"  # pandas 3 parses floats exactly by default
    first = rows[len(names)] if len(rows) > len(names) else []
    if _is_index_name_row(first):  # a named index (pandas writes its name on a row of its own)
        kwargs["skiprows"] = [len(names)]
    # No index_col: with it, pandas takes a first data row whose values are all
    # empty ("0,,,,,,", a frame where nothing was found and the likelihood is
    # NaN) for the index name and drops that frame. The first column is the index.
    try:
        df = pd.read_csv(path, header=list(range(len(names))), **kwargs)
    except Exception as err:  # pandas raises many kinds
        raise ValueError(f"{path}: cannot parse the CSV file: {error_reason(err)}") from err
    if df.shape[1] == 0:
        raise ValueError(f"{path}: cannot parse the CSV file: no columns")
    index = pd.Index(df.iloc[:, 0].to_numpy())
    df = df.iloc[:, 1:]
    df.index = index
    return df


def _is_index_name_row(row: Sequence[str]) -> bool:
    """Whether a CSV row after the header rows names the index (``frame,,,``) rather than holding a frame."""
    if not row or not row[0] or any(value != "" for value in row[1:]):
        return False
    name = row[0]
    try:
        float(name)
    except ValueError:
        return not any(c in name for c in "/\\.")  # not a frame number, nor an image path
    return False


def _frame_numbers(index: pd.Index, path: Path) -> np.ndarray:
    if index.nlevels > 1:
        raise ValueError(f"{path}: the rows are not frame numbers; {_LABELS_HINT}")
    if len(index) == 0:
        return np.zeros(0, np.int64)
    if pd.api.types.is_integer_dtype(index.dtype):
        frames = index.to_numpy(np.int64)
    elif pd.api.types.is_float_dtype(index.dtype) and np.all(np.isfinite(index)) and np.all(index == np.round(index)):
        frames = index.to_numpy(np.float64).astype(np.int64)
    else:
        first = str(index[0])
        if "/" in first or "\\" in first or first.lower().endswith(_IMAGE_SUFFIXES):
            raise ValueError(f"{path}: the rows are not frame numbers; {_LABELS_HINT}")
        raise ValueError(f"{path}: the rows must be frame numbers, found {first!r}")
    if np.any(frames < 0):
        raise ValueError(f"{path}: negative frame numbers")
    if len(np.unique(frames)) != len(frames):
        raise ValueError(f"{path}: frame numbers listed twice")
    return frames


def _from_dataframe(df: pd.DataFrame, path: Path) -> Predictions:
    cols = df.columns
    if not isinstance(cols, pd.MultiIndex) or cols.nlevels not in (3, 4):
        raise ValueError(
            f"{path}: not pose predictions: the columns must have 3 levels scorer/bodyparts/coords "
            f"(or 4 with individuals), got {cols.nlevels}"
        )
    scorers = list(dict.fromkeys(cols.get_level_values(0)))
    if len(scorers) != 1:
        raise ValueError(f"{path}: expected one scorer, found {scorers}")
    multi = cols.nlevels == 4
    coords = [str(c) for c in cols.get_level_values(-1)]
    wrong = sorted(set(coords) - set(COORDS))
    if wrong:
        raise ValueError(f"{path}: not pose predictions: coords must be x, y and likelihood, found {wrong}")
    if cols.duplicated().any():
        raise ValueError(f"{path}: duplicate columns: {list(cols[cols.duplicated()])[:3]}")
    try:
        if not all(pd.api.types.is_numeric_dtype(dtype) for dtype in df.dtypes):
            df = df.apply(pd.to_numeric)
        values = df.to_numpy(np.float64)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: non-numeric values in the table: {err}") from err
    points = list(dict.fromkeys(tuple(map(str, c[1:-1])) for c in cols))
    position = {(tuple(map(str, c[1:-1])), str(c[-1])): j for j, c in enumerate(cols)}
    n, k = len(df), len(points)
    xy = np.full((n, k, 2), np.nan)
    likelihood = np.full((n, k), np.nan)
    for p, point in enumerate(points):
        missing = [c for c in ("x", "y") if (point, c) not in position]
        if missing:
            raise ValueError(f"{path}: body part {'/'.join(point)!r} has no {' and no '.join(missing)} column")
        xy[:, p, 0] = values[:, position[point, "x"]]
        xy[:, p, 1] = values[:, position[point, "y"]]
        if (point, "likelihood") in position:
            likelihood[:, p] = values[:, position[point, "likelihood"]]
        else:  # labels or other tables without likelihood: every point that is there counts as certain
            likelihood[:, p] = np.where(np.isfinite(xy[:, p]).all(axis=1), 1.0, np.nan)
    return Predictions(
        xy=xy,
        likelihood=likelihood,
        bodyparts=[point[-1] for point in points],
        scorer=str(scorers[0]),
        frames=_frame_numbers(df.index, path),
        individual_of=[point[0] for point in points] if multi else None,
        path=path,
    )


def _read_meta(path: Path) -> dict | None:
    meta = meta_path(path)
    if not meta.is_file():
        return None
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        warnings.warn(f"{meta}: cannot read the metadata: {err}", RuntimeWarning, stacklevel=3)
        return None
    return data if isinstance(data, dict) else None


def read_predictions(path: str | os.PathLike) -> Predictions:
    """Read a prediction ``.h5`` or ``.csv`` (ours or DeepLabCut's) into :class:`Predictions`.

    ``.h5``: the ``df_with_missing`` table, else the first table with
    MultiIndex columns. ``.csv``: 3 header rows ``scorer/bodyparts/coords``,
    or 4 with ``individuals`` (multi-animal), then one row per frame.

    Multi-animal files keep one column of ``xy`` per (individual, body part)
    in file order, with :attr:`Predictions.individual_of` naming the
    individual. Body parts without ``likelihood`` columns get likelihood 1.0
    where both coordinates are present and NaN where they are not.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        The file is not a pose prediction table; the message names the file
        and the reason. Labels files (``CollectedData``, whose rows are image
        paths rather than frame numbers) are rejected with a hint to
        :func:`napari_posekit.core.collected_data.read_collected`.
    """
    path = Path(path)
    if not path.is_file():
        if path.is_dir():
            raise ValueError(f"{path}: is a folder, not a prediction file")
        raise FileNotFoundError(errno.ENOENT, "prediction file not found", str(path))
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5", ".hdf"):
        df = _read_h5(path)
    elif suffix == ".csv":
        df = _read_csv(path)
    else:
        raise ValueError(f"{path}: expected a .h5 or .csv prediction file")
    predictions = _from_dataframe(df, path)
    predictions.metadata = _read_meta(path)
    return predictions
