"""DeepLabCut's labels table, ``CollectedData_<scorer>.h5``/``.csv``: reading, writing, converting, checking.

**The table.** A DataFrame with float64 values and a column MultiIndex
``(scorer, bodyparts, coords)`` (``(scorer, individuals, bodyparts, coords)``
for multi-animal projects), coords ``x`` and ``y``, NaN where a body part is not
labeled. The row index is either the legacy string index
(``labeled-data/m4s1/img0000.png``) or, from DeepLabCut 2.2 on, a MultiIndex
(``('labeled-data', 'm4s1', 'img0000.png')``). Both are read, and a write keeps
the style the DataFrame has.

**The files.** The HDF5 file is written like DeepLabCut's own writers
(``df.to_hdf(path, key="df_with_missing", mode="w")``, pandas' *fixed*
format, the only one that stores a row MultiIndex together with column
MultiIndex), the CSV with ``df.to_csv(path)``; floats come out in Python's
shortest round-trip form, exactly as DeepLabCut's files are. Both files are
written atomically (:mod:`~napari_posekit.core.filesafety`): a folder that
cannot be written raises :class:`~napari_posekit.core.project.ProjectError`
and leaves the old files untouched.

**Rows.** :func:`update_collected`, the save of the Labeling widget and of
napari's writer, gives a row to every image with a label and keeps every row
the file had, empty or not, as DeepLabCut's own labeling tools do.

Everything here is napari-free.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from .config import config_bodyparts
from .filesafety import error_reason, write_atomically
from .project import IMAGE_EXTENSIONS, ProjectError

__all__ = [
    "COLLECTED_KEY",
    "COLUMN_NAMES",
    "COLUMN_NAMES_MULTIANIMAL",
    "arrays_to_collected",
    "check_bodyparts",
    "collected_path",
    "collected_to_arrays",
    "index_style",
    "merge_collected",
    "read_collected",
    "to_multi_index",
    "to_string_index",
    "update_collected",
    "write_collected",
]

#: HDF5 key of CollectedData and prediction files.
COLLECTED_KEY = "df_with_missing"
#: Column level names of single-animal CollectedData.
COLUMN_NAMES = ["scorer", "bodyparts", "coords"]
#: Column level names of multi-animal CollectedData.
COLUMN_NAMES_MULTIANIMAL = ["scorer", "individuals", "bodyparts", "coords"]

IndexStyle = Literal["string", "multi"]

# --------------------------------------------------------------------------------------
# CollectedData: reading and writing
# --------------------------------------------------------------------------------------


def collected_path(folder_or_path: str | os.PathLike, scorer: str | None = None, suffix: str = ".h5") -> Path:
    """``<folder>/CollectedData_<scorer><suffix>``, or ``path`` with ``suffix`` when a file path is given."""
    p = Path(folder_or_path)
    if p.suffix.lower() in (".h5", ".csv"):
        return p.with_suffix(suffix)
    if not scorer:
        raise ProjectError("a scorer is needed to name the CollectedData file", p)
    return p / f"CollectedData_{scorer}{suffix}"


def _find_collected(folder: Path) -> Path:
    found = sorted(folder.glob("CollectedData_*.h5")) or sorted(folder.glob("CollectedData_*.csv"))
    if not found:
        raise ProjectError("no CollectedData_<scorer>.h5 or .csv in this folder", folder)
    if len(found) > 1:
        raise ProjectError(f"several CollectedData files, pass one of them: {[f.name for f in found]}", folder)
    return found[0]


def _read_hdf(path: Path) -> pd.DataFrame:
    try:
        with pd.HDFStore(path, mode="r") as store:
            keys = store.keys()
            if "/" + COLLECTED_KEY in keys:
                key = COLLECTED_KEY
            elif len(keys) == 1:
                key = keys[0]  # e.g. napari-deeplabcut writes key "keypoints"
            else:
                raise ProjectError(f"no '{COLLECTED_KEY}' table in the HDF5 file (keys: {keys})", path)
            df = store.get(key)
    except ProjectError:
        raise
    except Exception as err:
        raise ProjectError(f"cannot read the HDF5 file: {error_reason(err)}", path) from err
    if not isinstance(df, pd.DataFrame):
        raise ProjectError(f"'{key}' is a {type(df).__name__}, not a DataFrame", path)
    return df


def _csv_header(path: Path) -> tuple[int, list[str]]:
    """``(number of index columns, column level names)`` from a DeepLabCut CSV's header rows."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [row for _, row in zip(range(5), csv.reader(f))]
    except OSError as err:
        raise ProjectError(f"cannot read the CSV file: {error_reason(err)}", path) from err
    except (csv.Error, UnicodeDecodeError) as err:
        raise ProjectError(f"not a CSV text file: {err}", path) from err
    if not rows or not rows[0] or rows[0][0] != "scorer":
        first = rows[0][0] if rows and rows[0] else ""
        raise ProjectError(f"malformed header: the first row must start with 'scorer', not {first!r}", path)
    n_index = 1
    while n_index < len(rows[0]) and rows[0][n_index] == "":
        n_index += 1
    names = COLUMN_NAMES_MULTIANIMAL if len(rows) > 1 and rows[1] and rows[1][0] == "individuals" else COLUMN_NAMES
    for level, name in enumerate(names):
        got = rows[level][0] if level < len(rows) and rows[level] else None
        if got != name:
            raise ProjectError(
                f"malformed header: expected {len(names)} header rows {'/'.join(names)}, "
                f"but row {level + 1} starts with {got!r}",
                path,
            )
    return n_index, names


def _read_csv(path: Path) -> pd.DataFrame:
    n_index, names = _csv_header(path)
    kwargs = {}
    if int(pd.__version__.split(".")[0]) < 3:
        kwargs["float_precision"] = "round_trip"  # pandas 3 parses floats exactly by default
    try:
        df = pd.read_csv(
            path,
            header=list(range(len(names))),
            index_col=list(range(n_index)) if n_index > 1 else 0,
            **kwargs,
        )
    except Exception as err:
        raise ProjectError(f"cannot parse the CSV file: {error_reason(err)}", path) from err
    df = _with_first_row_back(df)
    if isinstance(df.index, pd.MultiIndex):
        # folder names such as "1234" must stay strings (as DeepLabCut's guarantee_multiindex_rows does)
        df.index = pd.MultiIndex.from_arrays(
            [df.index.get_level_values(i).astype(str) for i in range(df.index.nlevels)], names=df.index.names
        )
    return df


def _with_first_row_back(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the first row pandas took for the index names, when that row was an empty image row.

    Below a header of several rows, pandas reads a row whose values are all
    empty as the names of the index. DeepLabCut's files name no index, so a
    "name" that is an image file is the first image, with no label yet.
    """
    names = [str(n) for n in df.index.names if n is not None]
    if len(names) != df.index.nlevels or not names[-1].lower().endswith(IMAGE_EXTENSIONS):
        return df
    index = pd.MultiIndex.from_tuples([tuple(names)]) if df.index.nlevels > 1 else pd.Index(names)
    first = pd.DataFrame(np.nan, index=index, columns=df.columns)
    rest = df.copy()
    rest.index = rest.index.set_names([None] * df.index.nlevels)
    return pd.concat([first, rest])


def _validate_collected(df: pd.DataFrame, path=None, likelihood: bool = False) -> pd.DataFrame:
    """Check the column layout of CollectedData; returns it with float64 values and DLC level names."""
    cols = df.columns
    if not isinstance(cols, pd.MultiIndex) or cols.nlevels not in (3, 4):
        raise ProjectError(
            f"columns must have 3 levels scorer/bodyparts/coords (or 4 with individuals), got {cols.nlevels} level(s)",
            path,
        )
    names = COLUMN_NAMES if cols.nlevels == 3 else COLUMN_NAMES_MULTIANIMAL
    if list(cols.names) != names:
        if all(n is None for n in cols.names):
            df = df.copy()
            df.columns = cols.set_names(names)
            cols = df.columns
        else:
            raise ProjectError(f"column levels must be named {names}, got {list(cols.names)}", path)
    allowed = {"x", "y", "likelihood"} if likelihood else {"x", "y"}
    coords = list(dict.fromkeys(cols.get_level_values("coords")))
    wrong = [c for c in coords if c not in allowed]
    if wrong:
        raise ProjectError(f"coords must be {sorted(allowed)}, found {wrong}", path)
    points = cols.droplevel("coords")
    for point in dict.fromkeys(points):
        have = sorted(cols[points == point].get_level_values("coords"))
        if "x" not in have or "y" not in have or len(have) != len(set(have)):
            label = point if isinstance(point, str) else "/".join(map(str, point))
            raise ProjectError(f"body part {label!r} must have one x and one y column, has {have}", path)
    if cols.duplicated().any():
        raise ProjectError(f"duplicate columns: {list(cols[cols.duplicated()])}", path)
    scorers = list(dict.fromkeys(cols.get_level_values("scorer")))
    if len(scorers) != 1:
        raise ProjectError(f"expected one scorer, found {scorers}", path)
    bad = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c].dtype)]
    if bad:
        raise ProjectError(f"non-numeric values in column(s) {bad[:3]}", path)
    if any(dt != np.float64 for dt in df.dtypes):
        df = df.astype(np.float64)
    return df


def _with_scorer(df: pd.DataFrame, scorer: str) -> pd.DataFrame:
    """A copy of single-scorer ``df`` whose scorer level is ``scorer``."""
    out = df.copy()
    out.columns = df.columns.remove_unused_levels().set_levels([scorer], level="scorer")
    return out


def read_collected(
    path: str | os.PathLike,
    bodyparts: Sequence[str] | Mapping | None = None,
    *,
    likelihood: bool = False,
) -> pd.DataFrame:
    """Read ``CollectedData_<scorer>.h5`` (key ``df_with_missing``) or ``.csv``.

    ``path`` may also be a ``labeled-data/<video>`` folder holding one
    CollectedData file (the ``.h5`` is preferred). The row index is returned as
    stored: legacy strings or DeepLabCut ≥ 2.2's MultiIndex. Multi-animal files
    (4 column levels) are read too. ``bodyparts`` (a list, or a config mapping)
    is checked against the file with :func:`check_bodyparts`. ``likelihood``
    also accepts ``likelihood`` coords (machine labels). Raises
    :class:`ProjectError` for a missing or malformed file.
    """
    path = Path(path)
    if path.is_dir():
        path = _find_collected(path)
    if not path.exists():
        raise ProjectError("file not found", path)
    suffix = path.suffix.lower()
    if suffix == ".h5":
        df = _read_hdf(path)
    elif suffix == ".csv":
        df = _read_csv(path)
    else:
        raise ProjectError("expected a .h5 or .csv CollectedData file", path)
    df = _validate_collected(df, path, likelihood=likelihood)
    if df.index.has_duplicates:
        raise ProjectError(f"images listed twice: {_image_keys(df.index[df.index.duplicated()])[:5]}", path)
    if bodyparts is not None:
        check_bodyparts(df, bodyparts, path)
    return df


def write_collected(
    df: pd.DataFrame,
    folder_or_path: str | os.PathLike,
    scorer: str | None = None,
    *,
    hdf_format: Literal["fixed", "table"] = "fixed",
) -> tuple[Path, Path]:
    """Write ``df`` as ``CollectedData_<scorer>.h5`` and ``.csv``, both atomically; returns both paths.

    ``folder_or_path`` is a ``labeled-data/<video>`` folder or the ``.h5``/``.csv``
    path. ``scorer`` defaults to the DataFrame's scorer; a different one
    replaces the scorer level (as ``deeplabcut.convertcsv2h5`` does). The HDF5
    file is ``df.to_hdf(path, key="df_with_missing", mode="w")`` (pandas'
    *fixed* format, like DeepLabCut's writers; ``hdf_format="table"`` works only
    with a string index), the CSV ``df.to_csv(path)``. The index style is kept.
    Both temporary files are complete before either target is replaced.
    """
    if not isinstance(df, pd.DataFrame):
        raise ProjectError(f"expected a DataFrame, got {type(df).__name__}")
    target = Path(folder_or_path)
    df = _validate_collected(df, target)
    own = df.columns.get_level_values("scorer")[0]
    scorer = scorer or own
    if scorer != own:
        df = _with_scorer(df, scorer)
    if df.index.has_duplicates:
        raise ProjectError(f"images listed twice: {_image_keys(df.index[df.index.duplicated()])[:5]}", target)
    if hdf_format == "table" and isinstance(df.index, pd.MultiIndex):
        raise ProjectError("pandas' table format cannot store a row MultiIndex; use hdf_format='fixed'", target)
    h5 = collected_path(target, scorer, ".h5")
    csv_file = collected_path(target, scorer, ".csv")

    def write_h5(tmp: Path) -> None:
        df.to_hdf(tmp, key=COLLECTED_KEY, mode="w", format=hdf_format)

    write_atomically({h5: write_h5, csv_file: lambda tmp: df.to_csv(tmp)}, error=ProjectError)
    return h5, csv_file


def update_collected(
    target: str | os.PathLike,
    images: Sequence[str],
    bodyparts: Sequence[str],
    xy: np.ndarray,
    scorer: str,
    *,
    index_style: IndexStyle = "multi",
) -> tuple[Path, Path]:
    """Save the labels of ``images`` into the CollectedData file at ``target``; returns the .h5 and .csv paths.

    ``target`` is as for :func:`write_collected`, ``xy`` ``(n_images,
    n_bodyparts, 2)`` with NaN where a body part is not placed. A row is
    written for every image with a label and for every image the file has a
    row for, even when all its labels were removed: such a row stays, empty,
    as in the files of DeepLabCut's labeling tools (which skip empty rows when
    they train). An image without labels that never had a row gets none.
    Rows of the file for images not in ``images`` (their image files missing
    from the folder, say) and the values of body parts only the file has are
    kept as they are. Images are matched by file name, so a file written on
    Windows or before its folder was renamed matches too. The file's index
    style is kept; ``index_style`` is for a new file.
    """
    images = [str(image) for image in images]
    xy = np.asarray(xy, dtype=np.float64)
    old = _existing_collected(target, scorer)
    had = set() if old is None else {_file_name(key) for key in _image_keys(old.index)}
    rows = [i for i, image in enumerate(images) if _file_name(image) in had or (~np.isnan(xy[i])).any()]
    style = index_style if old is None else ("multi" if isinstance(old.index, pd.MultiIndex) else "string")
    df = arrays_to_collected([images[i] for i in rows], bodyparts, xy[rows], scorer, index_style=style)
    if old is not None:
        df = _with_rows_of(df, old)
    return write_collected(df, target, scorer)


def _file_name(key: str) -> str:
    return _split_image_path(key)[-1]


def _existing_collected(target: str | os.PathLike, scorer: str) -> pd.DataFrame | None:
    """The CollectedData a save to ``target`` replaces (its .h5, else its .csv), or None."""
    for suffix in (".h5", ".csv"):
        path = collected_path(target, scorer, suffix)
        if path.is_file():
            df = read_collected(path)
            _single_animal(df, "saving labels")
            return df
    return None


def _with_rows_of(new: pd.DataFrame, old: pd.DataFrame) -> pd.DataFrame:
    """``new`` completed by the rows and body parts that only ``old`` (the file it replaces) has."""
    old = _with_scorer(old, new.columns.get_level_values("scorer")[0])
    if isinstance(new.index, pd.MultiIndex) and not isinstance(old.index, pd.MultiIndex):
        old = to_multi_index(old)
    old_names = [_file_name(key) for key in _image_keys(old.index)]
    new_names = [_file_name(key) for key in _image_keys(new.index)]
    extra = old.columns[~old.columns.isin(new.columns)]
    out = new.reindex(columns=new.columns.append(extra))
    if len(extra):
        position = {name: i for i, name in enumerate(old_names)}
        values = np.full((len(new), len(extra)), np.nan)
        matched = [(i, position[name]) for i, name in enumerate(new_names) if name in position]
        if matched:
            mine, theirs = zip(*matched)
            values[list(mine)] = old[extra].to_numpy(np.float64)[list(theirs)]
        out[extra] = values
    saved = set(new_names)
    carried = old.loc[[name not in saved for name in old_names]]
    if len(carried) == 0:
        return out
    return pd.concat([out, carried.reindex(columns=out.columns)])


# --------------------------------------------------------------------------------------
# Index styles and conversion to arrays
# --------------------------------------------------------------------------------------


def index_style(df: pd.DataFrame) -> IndexStyle:
    """``"multi"`` for DeepLabCut ≥ 2.2's row MultiIndex, ``"string"`` for the legacy path index."""
    return "multi" if isinstance(df.index, pd.MultiIndex) else "string"


def _split_image_path(path: str) -> tuple[str, ...]:
    sep = "/" if "/" in path else "\\"
    return tuple(path.split(sep))


def _image_keys(index: pd.Index) -> list[str]:
    """Image paths of an index as strings (MultiIndex entries joined with ``/``)."""
    if isinstance(index, pd.MultiIndex):
        return ["/".join(map(str, entry)) for entry in index]
    return [str(entry) for entry in index]


def _multi_index(paths: Sequence[str], names=None) -> pd.MultiIndex:
    tuples = [_split_image_path(p) for p in paths]
    depths = {len(t) for t in tuples}
    if len(depths) > 1:
        raise ProjectError(f"image paths have different depths, cannot make a MultiIndex: {sorted(depths)}")
    if not tuples:
        return pd.MultiIndex.from_arrays([[], [], []], names=names)
    return pd.MultiIndex.from_tuples(tuples, names=names)


def to_multi_index(df: pd.DataFrame) -> pd.DataFrame:
    """A copy with DeepLabCut ≥ 2.2's row MultiIndex (paths split on ``/``, or ``\\`` for Windows paths)."""
    if isinstance(df.index, pd.MultiIndex):
        return df.copy()
    out = df.copy()
    out.index = _multi_index([str(p) for p in df.index])
    return out


def to_string_index(df: pd.DataFrame) -> pd.DataFrame:
    """A copy with the legacy string index (MultiIndex entries joined with ``/``)."""
    out = df.copy()
    if isinstance(df.index, pd.MultiIndex):
        out.index = pd.Index(_image_keys(df.index), name=None)
    return out


def _single_animal(df: pd.DataFrame, what: str) -> None:
    if df.columns.nlevels != 3:
        raise ProjectError(
            f"{what} handles single-animal data (scorer/bodyparts/coords), got {df.columns.nlevels} column levels"
        )


def collected_to_arrays(df: pd.DataFrame) -> tuple[list[str], list[str], np.ndarray]:
    """``(image_paths, bodyparts, xy)`` from single-animal CollectedData.

    ``image_paths`` are the index as strings (MultiIndex entries joined with
    ``/``), ``bodyparts`` in column order, ``xy`` a float64 array
    ``(n_images, n_bodyparts, 2)`` of ``(x, y)``, NaN where not labeled.
    """
    df = _validate_collected(df, likelihood=True)
    _single_animal(df, "collected_to_arrays")
    scorer = df.columns.get_level_values("scorer")[0]
    bodyparts = list(dict.fromkeys(df.columns.get_level_values("bodyparts")))
    cols = [(scorer, bp, c) for bp in bodyparts for c in ("x", "y")]
    xy = df.loc[:, cols].to_numpy(np.float64).reshape(len(df), len(bodyparts), 2)
    return _image_keys(df.index), bodyparts, xy


def arrays_to_collected(
    image_paths: Sequence[str],
    bodyparts: Sequence[str],
    xy: np.ndarray,
    scorer: str,
    index_style: IndexStyle = "multi",
) -> pd.DataFrame:
    """Single-animal CollectedData from ``(n_images, n_bodyparts, 2)`` coordinates.

    ``index_style="multi"`` gives DeepLabCut ≥ 2.2's row MultiIndex,
    ``"string"`` the legacy path index. Inverse of :func:`collected_to_arrays`.
    """
    xy = np.asarray(xy, dtype=np.float64)
    image_paths = [str(p) for p in image_paths]
    bodyparts = list(bodyparts)
    if xy.shape != (len(image_paths), len(bodyparts), 2):
        raise ProjectError(
            f"xy must have shape (n_images, n_bodyparts, 2) = ({len(image_paths)}, {len(bodyparts)}, 2), got {xy.shape}"
        )
    if len(set(bodyparts)) != len(bodyparts):
        raise ProjectError(f"body parts listed twice: {bodyparts}")
    if index_style == "multi":
        index = _multi_index(image_paths)
    elif index_style == "string":
        index = pd.Index(image_paths)
    else:
        raise ProjectError(f"index_style must be 'multi' or 'string', got {index_style!r}")
    columns = pd.MultiIndex.from_product([[scorer], bodyparts, ["x", "y"]], names=COLUMN_NAMES)
    return pd.DataFrame(xy.reshape(len(image_paths), -1), index=index, columns=columns)


# --------------------------------------------------------------------------------------
# Merging human and machine labels
# --------------------------------------------------------------------------------------


def merge_collected(human: pd.DataFrame, machine: pd.DataFrame) -> pd.DataFrame:
    """Human labels completed by machine labels, sorted by index.

    Every body part a human placed in an image (x or y not NaN) is kept exactly,
    together with every human row and column. Machine values only fill body
    parts without a human label and add images the human file lacks; machine
    ``likelihood`` columns are dropped. The result has the human scorer, the
    human index style and the human body parts first (machine-only body parts
    after them).
    """
    human = _validate_collected(human, likelihood=False)
    machine = _validate_collected(machine, likelihood=True)
    if human.columns.nlevels != machine.columns.nlevels:
        raise ProjectError(
            f"cannot merge {human.columns.nlevels}-level human labels "
            f"with {machine.columns.nlevels}-level machine labels"
        )
    for name, df in (("human", human), ("machine", machine)):
        if df.index.has_duplicates:
            raise ProjectError(f"{name} labels list images twice: {_image_keys(df.index[df.index.duplicated()])[:5]}")
    scorer = human.columns.get_level_values("scorer")[0]
    machine = _with_scorer(machine.loc[:, machine.columns.get_level_values("coords") != "likelihood"], scorer)
    if index_style(machine) != index_style(human):
        machine = to_multi_index(machine) if index_style(human) == "multi" else to_string_index(machine)
        machine.index = machine.index.set_names(human.index.names)

    columns = human.columns.append(machine.columns[~machine.columns.isin(human.columns)])
    index = human.index.append(machine.index[~machine.index.isin(human.index)])
    h = human.reindex(index=index, columns=columns)
    m = machine.reindex(index=index, columns=columns)
    # a body part counts as human-labeled in an image when its x or its y is set
    point_of_column, points = pd.factorize(columns.droplevel("coords"))
    is_set = h.notna().to_numpy()
    point_labeled = np.stack([is_set[:, point_of_column == p].any(axis=1) for p in range(len(points))], axis=1)
    keep_human = point_labeled[:, point_of_column]
    return h.where(keep_human, m).sort_index()


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


def check_bodyparts(df: pd.DataFrame, expected: Sequence[str] | Mapping, path=None) -> None:
    """Raise :class:`ProjectError` when the CollectedData body parts are not those of the config.

    ``expected`` is a list of body parts or a config mapping (see
    :func:`config_bodyparts`). The order may differ; missing or extra body parts
    may not. The message names both lists.
    """
    wanted = config_bodyparts(expected) if isinstance(expected, Mapping) else list(expected)
    found = list(dict.fromkeys(df.columns.get_level_values("bodyparts")))
    missing = [b for b in wanted if b not in found]
    extra = [b for b in found if b not in wanted]
    if missing or extra:
        details = []
        if missing:
            details.append(f"missing from the labels: {missing}")
        if extra:
            details.append(f"not in the config: {extra}")
        raise ProjectError(
            f"body parts of the labels {found} do not match the config's {wanted} ({'; '.join(details)})", path
        )
