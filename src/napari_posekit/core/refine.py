"""Refining machine labels into human labels without ever losing a human label.

DeepLabCut's refinement loop: outlier frames are extracted with the network's
predictions beside them as *machine labels*
(``labeled-data/<video>/machinelabels-iter<i>.h5``, key ``df_with_missing``,
the network's scorer, coords ``x``, ``y``, ``likelihood``; its CSV copy is
``machinelabels.csv``), a person corrects them, and the corrected frames join
the human labels in ``CollectedData_<scorer>.h5/.csv``.

:func:`load_refinement` reads a ``labeled-data/<video>`` folder into a
:class:`Refinement`: one row per image (every image file in the folder and
every row of either label file), human and machine coordinates side by side.
:func:`save_refinement` (or :meth:`Refinement.save`) merges the person's work
back. The rules:

* Only images the person **accepted** (or edited by deleting a body part) take
  the edited coordinates; they become rows of CollectedData (scorer, index
  style and column order of the existing file) and leave the machine-label
  files, so they are not offered again.
* A body part the person **deleted** is NaN in CollectedData and stays NaN:
  nothing is filled in from machine labels later.
* Every other row and body part of CollectedData is written back exactly as it
  is on disk at the moment of saving (re-read then, so labels saved meanwhile
  by someone else are kept), bit for bit. Machine labels never overwrite or
  complete a human label; this is why :func:`napari_posekit.core.project.merge_collected`,
  which fills human gaps from machine labels, is not used here: a deleted
  body part would come back.
* An image with both human labels and a machine-label row is a **conflict**:
  the human labels win (they are what :attr:`Refinement.xy` shows) unless the
  person accepted the image. Conflicts are listed on load and on save.
* Writes are atomic (:func:`~napari_posekit.core.project.write_collected`):
  CollectedData is replaced first, then the machine-label files. A failure
  while writing CollectedData leaves every file as it was; a failure after it
  leaves the accepted rows in both files, where the human rows win, so nothing
  is lost either way.

Everything here is napari-free.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .project import (
    COLLECTED_KEY,
    COLUMN_NAMES,
    IMAGE_EXTENSIONS,
    ProjectError,
    _atomic_write_files,
    _image_keys,
    collected_path,
    collected_to_arrays,
    config_bodyparts,
    index_style,
    read_collected,
    read_config,
    write_collected,
)

__all__ = [
    "MACHINE_CSV",
    "Refinement",
    "SavedRefinement",
    "find_machinelabels",
    "load_refinement",
    "machinelabels_path",
    "read_machinelabels",
    "save_refinement",
    "write_machinelabels",
]

#: DeepLabCut writes the CSV copy of the newest machine labels under this one name.
MACHINE_CSV = "machinelabels.csv"
_MACHINE_RE = re.compile(r"machinelabels-iter(\d+)\.h5")


# --------------------------------------------------------------------------------------
# Machine-label files
# --------------------------------------------------------------------------------------


def machinelabels_path(folder: str | os.PathLike, iteration: int = 0) -> Path:
    """``<folder>/machinelabels-iter<iteration>.h5``, DeepLabCut's name for machine labels."""
    return Path(folder) / f"machinelabels-iter{int(iteration)}.h5"


def find_machinelabels(folder: str | os.PathLike) -> list[Path]:
    """The ``machinelabels-iter<i>.h5`` files of a folder, oldest iteration first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _MACHINE_RE.fullmatch(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def read_machinelabels(path: str | os.PathLike) -> pd.DataFrame:
    """One machine-label file: CollectedData-shaped, coords ``x``, ``y`` (and usually ``likelihood``)."""
    return read_collected(path, likelihood=True)


def write_machinelabels(df: pd.DataFrame, path: str | os.PathLike, *, csv: bool = True) -> Path:
    """Write machine labels atomically as DeepLabCut does.

    The ``.h5`` is ``df.to_hdf(path, key="df_with_missing", mode="w")`` (pandas'
    fixed format) and, with ``csv``, ``machinelabels.csv`` beside it is the
    same table as text. Both temporary files are complete before either file
    is replaced. An empty table removes both files instead.
    """
    path = Path(path)
    csv_file = path.with_name(MACHINE_CSV)
    if len(df) == 0:
        for target in (path, csv_file if csv else None):
            if target is not None:
                try:
                    target.unlink(missing_ok=True)
                except OSError as err:
                    raise ProjectError(f"cannot remove the empty machine-label file: {err.strerror or err}", target)
        return path

    def write_h5(tmp: Path) -> None:
        df.to_hdf(tmp, key=COLLECTED_KEY, mode="w")

    writers = {path: write_h5}
    if csv:
        writers[csv_file] = lambda tmp: df.to_csv(tmp)
    _atomic_write_files(writers)
    return path


# --------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------


def _norm(key: str) -> str:
    return str(key).replace("\\", "/")


def _keys(df: pd.DataFrame) -> list[str]:
    return [_norm(k) for k in _image_keys(df.index)]


def _index_entry(key: str, like: pd.DataFrame | None, style: str) -> str | tuple[str, ...]:
    """The index entry for image ``key`` in the style (and path separator) of ``like``."""
    parts = tuple(_norm(key).split("/"))
    if style == "multi":
        return parts
    sep = "/"
    if like is not None and len(like) and any("\\" in str(k) for k in like.index):
        sep = "\\"
    return sep.join(parts)


def _project_config(folder: Path):
    root = folder.parent.parent
    if folder.parent.name == "labeled-data" and (root / "config.yaml").is_file():
        return read_config(root)
    return None


def _human_file(folder: Path, scorer: str | None) -> Path | None:
    """The CollectedData file of ``folder`` (``.h5`` preferred), or None when there is none yet."""
    if scorer is not None:
        for suffix in (".h5", ".csv"):
            path = collected_path(folder, scorer, suffix)
            if path.is_file():
                return path
        return None
    found = sorted(folder.glob("CollectedData_*.h5")) or sorted(folder.glob("CollectedData_*.csv"))
    if len(found) > 1:
        raise ProjectError(f"several CollectedData files, pass the scorer: {[f.name for f in found]}", folder)
    return found[0] if found else None


def _read_human(folder: Path, scorer: str | None) -> tuple[pd.DataFrame | None, Path | None]:
    path = _human_file(folder, scorer)
    if path is None:
        return None, None
    df = read_collected(path)
    if df.columns.nlevels != 3:
        raise ProjectError("refinement handles single-animal labels (scorer/bodyparts/coords)", path)
    return df, path


def _read_machine(folder: Path) -> tuple[list[tuple[Path, pd.DataFrame]], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Every machine-label file and ``{image key: (xy (K', 2), likelihood (K',)), ...}`` by body part name.

    A later iteration's row replaces an earlier one for the same image.
    """
    files = []
    rows: dict[str, dict[str, tuple[float, float, float]]] = {}
    for path in find_machinelabels(folder):
        df = read_machinelabels(path)
        if df.columns.nlevels != 3:
            raise ProjectError("refinement handles single-animal machine labels (scorer/bodyparts/coords)", path)
        files.append((path, df))
        scorer = df.columns.get_level_values("scorer")[0]
        parts = list(dict.fromkeys(df.columns.get_level_values("bodyparts")))
        has_p = "likelihood" in set(df.columns.get_level_values("coords"))
        for key, (_, row) in zip(_keys(df), df.iterrows()):
            rows[key] = {
                bp: (
                    row[(scorer, bp, "x")],
                    row[(scorer, bp, "y")],
                    row[(scorer, bp, "likelihood")] if has_p else np.nan,
                )
                for bp in parts
            }
    return files, rows


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


@dataclass
class SavedRefinement:
    """What :func:`save_refinement` wrote.

    ``collected``: the CollectedData ``.h5`` (None when there is none because
    nothing was ever saved; it is only rewritten when something changed).
    ``added``: images that became new rows of CollectedData; ``updated``:
    existing rows that took edited coordinates; ``deleted``: ``(image,
    bodypart)`` set to NaN; ``removed_from_machine``: images taken out of
    the machine-label files; ``conflicts``: images that still have both human
    labels and a machine-label row (the human labels were kept).
    """

    collected: Path | None
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[tuple[str, str]] = field(default_factory=list)
    removed_from_machine: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)


@dataclass
class Refinement:
    """A ``labeled-data/<video>`` folder's human and machine labels, one row per image.

    Attributes
    ----------
    folder:
        The folder.
    scorer:
        The human scorer (``CollectedData_<scorer>``): the existing file's,
        else the project's ``scorer``.
    bodyparts:
        Column order of ``human``/``machine``: the CollectedData file's, else
        the project's, else the machine labels'.
    images:
        Image keys as in CollectedData's index joined with ``/``
        (``labeled-data/<video>/img042.png``), sorted: every image file in the
        folder and every image named by a label file.
    human, machine:
        ``(N, K, 2)`` float64 ``(x, y)``, NaN where there is no label.
    machine_likelihood:
        ``(N, K)``, NaN without a machine label.
    in_human, in_machine:
        ``(N,)`` whether the image has a row in CollectedData / in a machine-label file.
    conflicts:
        Images with human labels (at least one body part) and a machine-label
        row; the human labels are shown and kept unless the image is accepted.
    collected:
        The CollectedData file read (None when the folder has none yet).
    machine_files:
        The machine-label files read.
    """

    folder: Path
    scorer: str
    bodyparts: list[str]
    images: list[str]
    human: np.ndarray
    machine: np.ndarray
    machine_likelihood: np.ndarray
    in_human: np.ndarray
    in_machine: np.ndarray
    conflicts: list[str]
    collected: Path | None
    machine_files: list[Path]

    @property
    def human_labeled(self) -> np.ndarray:
        """``(N,)`` images with at least one human-labeled body part."""
        return np.isfinite(self.human).all(axis=2).any(axis=1) if len(self.images) else np.zeros(0, bool)

    @property
    def source(self) -> np.ndarray:
        """``(N,)`` where :attr:`xy` comes from: ``"human"``, ``"machine"`` or ``"none"``."""
        out = np.full(len(self.images), "none", dtype=object)
        out[self.in_machine & ~self.human_labeled] = "machine"
        out[self.human_labeled] = "human"
        return out

    @property
    def xy(self) -> np.ndarray:
        """``(N, K, 2)`` what to show: the human labels of an image that has any, else its machine labels."""
        return np.where(self.human_labeled[:, None, None], self.human, self.machine)

    def index_of(self, image: str | int) -> int:
        """Row of ``image``: a key, a file name (``img042.png``) or a row number."""
        if isinstance(image, (int, np.integer)) and not isinstance(image, bool):
            if not 0 <= int(image) < len(self.images):
                raise ValueError(f"image row {image} is outside 0..{len(self.images) - 1}")
            return int(image)
        key = _norm(str(image))
        if key in self._rows:
            return self._rows[key]
        matches = [i for i, k in enumerate(self.images) if k.rsplit("/", 1)[-1] == key]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise ValueError(f"{image!r} is not an image of {self.folder}")
        raise ValueError(f"{image!r} names several images: {[self.images[i] for i in matches]}")

    @property
    def _rows(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.images)}

    def save(
        self,
        xy: np.ndarray,
        *,
        accepted: Iterable[str | int] = (),
        deleted: Iterable[tuple[str | int, str]] = (),
    ) -> SavedRefinement:
        """See :func:`save_refinement`."""
        return save_refinement(self, xy, accepted=accepted, deleted=deleted)


def load_refinement(folder: str | os.PathLike, *, scorer: str | None = None) -> Refinement:
    """Read a ``labeled-data/<video>`` folder's CollectedData and machine labels.

    ``scorer`` picks ``CollectedData_<scorer>`` when the folder has several
    (default: the only one, else the project's ``scorer`` for a new file).
    Raises :class:`ProjectError` for unreadable or multi-animal files, or when
    no scorer can be found for a folder without CollectedData.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ProjectError("not a folder", folder)
    config = _project_config(folder)
    human_df, human_path = _read_human(folder, scorer)
    machine_files, machine_rows = _read_machine(folder)

    if human_df is not None:
        scorer = str(human_df.columns.get_level_values("scorer")[0])
        keys, bodyparts, human_xy = collected_to_arrays(human_df)
        keys = [_norm(k) for k in keys]
    else:
        scorer = scorer or (str(config["scorer"]) if config is not None and config.get("scorer") else None)
        if not scorer:
            raise ProjectError("no CollectedData file and no project scorer: pass scorer=", folder)
        bodyparts = config_bodyparts(config) if config is not None else []
        if not bodyparts:
            for _, df in machine_files:
                bodyparts = list(dict.fromkeys(df.columns.get_level_values("bodyparts")))
        keys, human_xy = [], np.zeros((0, len(bodyparts), 2))

    on_disk = [
        f"labeled-data/{folder.name}/{p.name}"
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    ]
    images = sorted(set(keys) | set(machine_rows) | set(on_disk))
    rows = {k: i for i, k in enumerate(images)}
    n, k = len(images), len(bodyparts)
    human = np.full((n, k, 2), np.nan)
    in_human = np.zeros(n, bool)
    for j, key in enumerate(keys):
        human[rows[key]] = human_xy[j]
        in_human[rows[key]] = True
    machine = np.full((n, k, 2), np.nan)
    likelihood = np.full((n, k), np.nan)
    in_machine = np.zeros(n, bool)
    for key, parts in machine_rows.items():
        i = rows[key]
        in_machine[i] = True
        for b, bp in enumerate(bodyparts):
            if bp in parts:
                machine[i, b] = parts[bp][:2]
                likelihood[i, b] = parts[bp][2]
    labeled = np.isfinite(human).all(axis=2).any(axis=1) if n else np.zeros(0, bool)
    conflicts = [images[i] for i in np.flatnonzero(labeled & in_machine)]
    return Refinement(
        folder=folder,
        scorer=scorer,
        bodyparts=list(bodyparts),
        images=images,
        human=human,
        machine=machine,
        machine_likelihood=likelihood,
        in_human=in_human,
        in_machine=in_machine,
        conflicts=conflicts,
        collected=human_path,
        machine_files=[p for p, _ in machine_files],
    )


# --------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------


def save_refinement(
    refinement: Refinement,
    xy: np.ndarray,
    *,
    accepted: Iterable[str | int] = (),
    deleted: Iterable[tuple[str | int, str]] = (),
) -> SavedRefinement:
    """Merge a person's corrections into ``CollectedData_<scorer>.h5/.csv``; see the module docstring.

    Parameters
    ----------
    refinement
        What :func:`load_refinement` returned; ``xy`` rows follow its
        ``images`` and columns its ``bodyparts``.
    xy
        ``(N, K, 2)`` the coordinates as the person left them (NaN: no label).
        Only the rows of accepted images are read.
    accepted
        Images whose coordinates become human labels (keys, file names or row
        numbers): machine-label images the person checked and corrected, and
        human-labeled images the person edited.
    deleted
        ``(image, bodypart)`` pairs the person deleted: NaN in CollectedData
        whatever ``xy`` says. On a human-labeled image that is not accepted
        only that body part changes; a machine-label image with a deletion
        counts as accepted.

    Returns
    -------
    SavedRefinement
        The CollectedData ``.h5`` written and what changed.

    Raises
    ------
    ValueError
        ``xy`` of the wrong shape, infinite coordinates in an accepted row, an
        unknown image or body part.
    ProjectError
        A file cannot be read or written; CollectedData is then unchanged.
    """
    r = refinement
    xy = np.asarray(xy, dtype=np.float64)
    n, k = len(r.images), len(r.bodyparts)
    if xy.shape != (n, k, 2):
        raise ValueError(f"xy must have shape (n_images, n_bodyparts, 2) = ({n}, {k}, 2), got {xy.shape}")
    take = {r.index_of(i) for i in accepted}
    removals: dict[int, set[int]] = {}
    for image, bodypart in deleted:
        if bodypart not in r.bodyparts:
            raise ValueError(f"unknown body part {bodypart!r}; the labels have {r.bodyparts}")
        removals.setdefault(r.index_of(image), set()).add(r.bodyparts.index(bodypart))

    # the files as they are now: rows saved since loading are kept as they are on disk
    human_df, _ = _read_human(r.folder, r.scorer)
    machine_files, _ = _read_machine(r.folder)
    if human_df is None:
        columns = pd.MultiIndex.from_product([[r.scorer], r.bodyparts, ["x", "y"]], names=COLUMN_NAMES)
        style = index_style(machine_files[-1][1]) if machine_files else "multi"
        out = pd.DataFrame(np.zeros((0, len(columns))), columns=columns)
        if style == "multi":
            out.index = pd.MultiIndex.from_arrays([[], [], []])
    else:
        out = human_df.copy()
        style = index_style(human_df)
    file_parts = list(dict.fromkeys(out.columns.get_level_values("bodyparts")))
    missing = [bp for bp in r.bodyparts if bp not in file_parts]
    if missing:
        raise ProjectError(f"body parts {missing} are not in the CollectedData file any more", r.folder)
    row_of = {key: j for j, key in enumerate(_keys(out))}
    labeled = r.human_labeled
    for i in list(removals):
        if i not in take and not labeled[i] and r.in_machine[i]:
            take.add(i)  # a deletion on a machine-label image is an edit of that image

    bad = [r.images[i] for i in sorted(take) if np.isinf(xy[i]).any()]
    if bad:
        raise ValueError(f"infinite coordinates in {bad[:5]}")
    values = out.to_numpy(copy=True)
    col = {(bp, c): j for j, (_, bp, c) in enumerate(out.columns)}
    added, updated, removed = [], [], []
    new_rows: list[tuple[str, np.ndarray]] = []
    for i in sorted(take):
        key = r.images[i]
        row = xy[i].copy()
        for b in removals.get(i, ()):
            row[b] = np.nan
        if key in row_of:
            j = row_of[key]
            before = values[j].copy()
            for b, bp in enumerate(r.bodyparts):
                values[j, col[(bp, "x")]], values[j, col[(bp, "y")]] = row[b]
            if not np.array_equal(before, values[j], equal_nan=True):
                updated.append(key)
        else:
            full = np.full(len(out.columns), np.nan)
            for b, bp in enumerate(r.bodyparts):
                full[col[(bp, "x")]], full[col[(bp, "y")]] = row[b]
            new_rows.append((key, full))
            added.append(key)
    deleted_done = []
    for i, parts in removals.items():
        key = r.images[i]
        if i in take:
            deleted_done.extend((key, r.bodyparts[b]) for b in sorted(parts))
            continue
        if key not in row_of:
            continue
        j = row_of[key]
        for b in sorted(parts):
            bp = r.bodyparts[b]
            if not (np.isnan(values[j, col[(bp, "x")]]) and np.isnan(values[j, col[(bp, "y")]])):
                values[j, col[(bp, "x")]] = values[j, col[(bp, "y")]] = np.nan
                if key not in updated:
                    updated.append(key)
            deleted_done.append((key, bp))

    changed = bool(new_rows) or not np.array_equal(values, out.to_numpy(), equal_nan=True)
    merged = pd.DataFrame(values, index=out.index, columns=out.columns)
    if new_rows:
        entries = [_index_entry(key, human_df, style) for key, _ in new_rows]
        if style == "multi":
            index = pd.MultiIndex.from_tuples(entries, names=out.index.names)
        else:
            index = pd.Index(entries, name=out.index.name)
        extra = pd.DataFrame(np.stack([v for _, v in new_rows]), index=index, columns=out.columns)
        was_sorted = human_df is None or human_df.index.is_monotonic_increasing
        merged = pd.concat([merged, extra]) if len(merged) else extra
        if was_sorted:
            merged = merged.sort_index()
    target = (r.collected if r.collected is not None else collected_path(r.folder, r.scorer)).with_suffix(".h5")
    if changed:
        write_collected(merged, target, r.scorer)

    taken = {r.images[i] for i in take}
    newest = machine_files[-1][0] if machine_files else None
    for path, df in machine_files:
        keys = _keys(df)
        drop = [key in taken for key in keys]
        if any(drop):
            removed.extend(key for key, d in zip(keys, drop) if d)
            write_machinelabels(df.loc[[not d for d in drop]], path, csv=path == newest)
    remaining = set()
    for _, df in machine_files:
        remaining.update(_keys(df))
    final_keys = set(_keys(merged))
    human_now = merged.to_numpy()
    labeled_now = {
        key for key, row in zip(_keys(merged), human_now) if np.isfinite(row.reshape(-1, 2)).all(axis=1).any()
    }
    conflicts = sorted((remaining - taken) & final_keys & labeled_now)
    return SavedRefinement(
        collected=target if target.is_file() else None,
        added=added,
        updated=updated,
        deleted=deleted_done,
        removed_from_machine=sorted(set(removed)),
        conflicts=conflicts,
    )
