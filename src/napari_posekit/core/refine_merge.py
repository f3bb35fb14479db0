"""Merging a person's corrections into CollectedData without ever losing a human label.

:func:`save_refinement` (or :meth:`~napari_posekit.core.refine.Refinement.save`)
writes what a person accepted, edited and deleted in a
:class:`~napari_posekit.core.refine.Refinement` back to the folder's files,
following the rules of :mod:`napari_posekit.core.refine`. The steps: check
the request, re-read the files as they are now, apply the edits to the
CollectedData table, write it, then take the accepted images out of the
machine-label files.

Everything here is napari-free.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .collected_data import COLUMN_NAMES, collected_path, index_style, write_collected
from .machinelabels import write_machinelabels
from .project import ProjectError
from .refine_files import _index_entry, _keys, _read_human, _read_machine

if TYPE_CHECKING:
    from .refine import Refinement

__all__ = ["SavedRefinement", "save_refinement"]


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
        ``images`` and columns its ``bodyparts`` (:func:`align_xy` lays out
        coordinates kept in another order).
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
    xy, take, removals = _requested_edits(r, xy, accepted, deleted)
    # the files as they are now: rows saved since loading are kept as they are on disk
    human_df, _ = _read_human(r.folder, r.scorer)
    machine_files, _ = _read_machine(r.folder)
    table, style = _human_table(r, human_df, machine_files)
    edits = _apply_edits(r, xy, take, removals, table)
    merged = _merged_table(table, edits, human_df, style)
    target = (r.collected if r.collected is not None else collected_path(r.folder, r.scorer)).with_suffix(".h5")
    if edits.new_rows or not np.array_equal(edits.values, table.to_numpy(), equal_nan=True):
        write_collected(merged, target, r.scorer)

    taken = {r.images[i] for i in take}
    removed = _remove_from_machine(machine_files, taken)
    return SavedRefinement(
        collected=target if target.is_file() else None,
        added=edits.added,
        updated=edits.updated,
        deleted=edits.deleted,
        removed_from_machine=sorted(set(removed)),
        conflicts=_remaining_conflicts(machine_files, taken, merged),
    )


def _requested_edits(
    r: Refinement, xy: np.ndarray, accepted: Iterable[str | int], deleted: Iterable[tuple[str | int, str]]
) -> tuple[np.ndarray, set[int], dict[int, set[int]]]:
    """Check the request: ``(xy as float64, rows taken as human labels, {row: deleted body-part columns})``.

    A deletion on a machine-label image without human labels is an edit of
    that image, so its row is taken too.
    """
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
    labeled = r.human_labeled
    for i in list(removals):
        if i not in take and not labeled[i] and r.in_machine[i]:
            take.add(i)
    bad = [r.images[i] for i in sorted(take) if np.isinf(xy[i]).any()]
    if bad:
        raise ValueError(f"infinite coordinates in {bad[:5]}")
    return xy, take, removals


def _human_table(
    r: Refinement, human_df: pd.DataFrame | None, machine_files: list[tuple[Path, pd.DataFrame]]
) -> tuple[pd.DataFrame, str]:
    """The CollectedData table to merge into (an empty one when there is no file yet) and its index style."""
    if human_df is None:
        columns = pd.MultiIndex.from_product([[r.scorer], r.bodyparts, ["x", "y"]], names=COLUMN_NAMES)
        style = index_style(machine_files[-1][1]) if machine_files else "multi"
        table = pd.DataFrame(np.zeros((0, len(columns))), columns=columns)
        if style == "multi":
            table.index = pd.MultiIndex.from_arrays([[], [], []])
    else:
        table = human_df.copy()
        style = index_style(human_df)
    file_parts = list(dict.fromkeys(table.columns.get_level_values("bodyparts")))
    missing = [bp for bp in r.bodyparts if bp not in file_parts]
    if missing:
        raise ProjectError(f"body parts {missing} are not in the CollectedData file any more", r.folder)
    return table, style


@dataclass
class _Edits:
    """The CollectedData values after the edits, the rows to append and what changed."""

    values: np.ndarray
    new_rows: list[tuple[str, np.ndarray]] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[tuple[str, str]] = field(default_factory=list)


def _apply_edits(
    r: Refinement, xy: np.ndarray, take: set[int], removals: dict[int, set[int]], table: pd.DataFrame
) -> _Edits:
    """Write the taken rows and the deletions into a copy of ``table``'s values."""
    edits = _Edits(values=table.to_numpy(copy=True))
    values = edits.values
    row_of = {key: j for j, key in enumerate(_keys(table))}
    col = {(bp, c): j for j, (_, bp, c) in enumerate(table.columns)}
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
                edits.updated.append(key)
        else:
            full = np.full(len(table.columns), np.nan)
            for b, bp in enumerate(r.bodyparts):
                full[col[(bp, "x")]], full[col[(bp, "y")]] = row[b]
            edits.new_rows.append((key, full))
            edits.added.append(key)
    for i, parts in removals.items():
        key = r.images[i]
        if i in take:
            edits.deleted.extend((key, r.bodyparts[b]) for b in sorted(parts))
            continue
        if key not in row_of:
            continue
        j = row_of[key]
        for b in sorted(parts):
            bp = r.bodyparts[b]
            if not (np.isnan(values[j, col[(bp, "x")]]) and np.isnan(values[j, col[(bp, "y")]])):
                values[j, col[(bp, "x")]] = values[j, col[(bp, "y")]] = np.nan
                if key not in edits.updated:
                    edits.updated.append(key)
            edits.deleted.append((key, bp))
    return edits


def _merged_table(table: pd.DataFrame, edits: _Edits, human_df: pd.DataFrame | None, style: str) -> pd.DataFrame:
    """``table`` with the edited values and the new rows (sorted in when the file's rows were sorted)."""
    merged = pd.DataFrame(edits.values, index=table.index, columns=table.columns)
    if not edits.new_rows:
        return merged
    entries = [_index_entry(key, human_df, style) for key, _ in edits.new_rows]
    if style == "multi":
        index = pd.MultiIndex.from_tuples(entries, names=table.index.names)
    else:
        index = pd.Index(entries, name=table.index.name)
    extra = pd.DataFrame(np.stack([v for _, v in edits.new_rows]), index=index, columns=table.columns)
    was_sorted = human_df is None or human_df.index.is_monotonic_increasing
    merged = pd.concat([merged, extra]) if len(merged) else extra
    return merged.sort_index() if was_sorted else merged


def _remove_from_machine(machine_files: list[tuple[Path, pd.DataFrame]], taken: set[str]) -> list[str]:
    """Take the ``taken`` images out of the machine-label files; returns the rows removed."""
    removed = []
    newest = machine_files[-1][0] if machine_files else None
    for path, df in machine_files:
        keys = _keys(df)
        drop = [key in taken for key in keys]
        if any(drop):
            removed.extend(key for key, d in zip(keys, drop) if d)
            write_machinelabels(df.loc[[not d for d in drop]], path, csv=path == newest)
    return removed


def _remaining_conflicts(
    machine_files: list[tuple[Path, pd.DataFrame]], taken: set[str], merged: pd.DataFrame
) -> list[str]:
    """Images left with both human labels and a machine-label row (the files' rows as read before the save)."""
    remaining = set()
    for _, df in machine_files:
        remaining.update(_keys(df))
    final_keys = set(_keys(merged))
    labeled_now = {
        key for key, row in zip(_keys(merged), merged.to_numpy()) if np.isfinite(row.reshape(-1, 2)).all(axis=1).any()
    }
    return sorted((remaining - taken) & final_keys & labeled_now)
