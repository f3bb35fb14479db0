"""Keypoint labels being edited: undo/redo and a crash-safe journal.

A :class:`LabelStore` holds the labels of one set of images (one
``labeled-data/<video>/`` folder): an ``(n_images, n_bodyparts, 2)`` array of
``(x, y)``, NaN where a body part is not placed. Every change is an
:class:`Edit` (the old and new value of each touched cell), so it can be
undone and redone, and every edit is appended to a journal file beside the
labels and flushed to disk before the call returns. After a crash, opening the
store with the same journal replays the edits made since the last save;
saving empties the journal.

The store is napari-free: the labeling widget translates between a Points
layer and :meth:`LabelStore.update`, and reads positions back after undo.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Edit", "JournalError", "LabelStore", "journal_path", "pending_journals"]

JOURNAL_VERSION = 1


class JournalError(Exception):
    """The recovery journal cannot be written or does not belong to these labels."""


@dataclass(frozen=True)
class Edit:
    """One undoable change: per touched cell ``(image, bodypart)``, old and new ``(x, y)``."""

    cells: tuple[tuple[int, int], ...]
    old: np.ndarray  # (n_cells, 2), NaN = absent
    new: np.ndarray  # (n_cells, 2)
    label: str = "edit"

    def inverse(self) -> Edit:
        return Edit(self.cells, self.new, self.old, f"undo {self.label}")

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "cells": [list(c) for c in self.cells],
            "new": [[None if np.isnan(v) else float(v) for v in xy] for xy in self.new],
        }


JOURNAL_SUFFIX = ".posekit-journal.jsonl"


def journal_path(labels_file: str | os.PathLike) -> Path:
    """The journal beside a labels file: ``.<name>.posekit-journal.jsonl``."""
    p = Path(labels_file)
    return p.with_name(f".{p.stem}{JOURNAL_SUFFIX}")


def pending_journals(folder: str | os.PathLike) -> list[Path]:
    """The journals of a folder's ``CollectedData_<scorer>`` files that hold unsaved edits, sorted by name.

    A journal with content holds edits made since the labels were last
    saved (saving empties it); they are recovered by opening the folder for
    labeling. A folder that does not exist has none.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = folder.glob(f".CollectedData_*{JOURNAL_SUFFIX}")
    return sorted(p for p in found if p.is_file() and p.stat().st_size)


@dataclass
class LabelStore:
    """Labels of ``images`` × ``bodyparts`` with undo/redo and an optional journal.

    ``xy`` is copied; use :attr:`xy` (read-only view) to read the current state.
    """

    images: list[str]
    bodyparts: list[str]
    xy: np.ndarray
    journal: Path | None = None
    _undo: list[Edit] = field(default_factory=list, repr=False)
    _redo: list[Edit] = field(default_factory=list, repr=False)

    def __post_init__(self):
        self.images = list(self.images)
        self.bodyparts = list(self.bodyparts)
        xy = np.array(self.xy, dtype=np.float64)
        if xy.shape != (len(self.images), len(self.bodyparts), 2):
            raise ValueError(f"labels must have shape ({len(self.images)}, {len(self.bodyparts)}, 2), got {xy.shape}")
        self._xy = xy
        self.xy = self._xy.view()
        self.xy.flags.writeable = False
        self.journal = Path(self.journal) if self.journal is not None else None
        self._journal_file = None
        self.unsaved_edits = 0

    @classmethod
    def empty(cls, images: Sequence[str], bodyparts: Sequence[str], **kwargs) -> LabelStore:
        return cls(list(images), list(bodyparts), np.full((len(images), len(bodyparts), 2), np.nan), **kwargs)

    # -- queries -----------------------------------------------------------
    def placed(self) -> np.ndarray:
        """``(n_images, n_bodyparts)`` bool: which body parts are placed."""
        return ~np.isnan(self._xy).any(axis=2)

    def progress(self) -> tuple[int, int, int]:
        """``(complete images, partly labeled images, all images)``."""
        placed = self.placed()
        complete = int(placed.all(axis=1).sum())
        partly = int((placed.any(axis=1) & ~placed.all(axis=1)).sum())
        return complete, partly, len(self.images)

    def next_unplaced(self, image: int, after: int = -1) -> int | None:
        """Index of the next body part after ``after`` not yet placed on ``image`` (wrapping), or None."""
        missing = np.flatnonzero(~self.placed()[image])
        if len(missing) == 0:
            return None
        later = missing[missing > after]
        return int(later[0] if len(later) else missing[0])

    def next_incomplete_image(self, image: int, step: int = 1) -> int | None:
        """The next image (``step`` +1 forward, -1 backward, wrapping) that is not fully labeled."""
        incomplete = ~self.placed().all(axis=1)
        n = len(self.images)
        for k in range(1, n + 1):
            j = (image + step * k) % n
            if incomplete[j]:
                return j
        return None

    def previous_labeled_image(self, image: int) -> int | None:
        """The closest earlier image with at least one label."""
        any_placed = self.placed().any(axis=1)
        earlier = np.flatnonzero(any_placed[:image])
        return int(earlier[-1]) if len(earlier) else None

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    # -- edits ---------------------------------------------------------------
    def set(
        self, image: int, bodypart: int | str, xy: tuple[float, float] | None, label: str | None = None
    ) -> Edit | None:
        """Place or move (``xy``) or delete (None) one body part on one image."""
        b = self.bodyparts.index(bodypart) if isinstance(bodypart, str) else int(bodypart)
        new = self._xy.copy()
        new[image, b] = (np.nan, np.nan) if xy is None else xy
        if label is None:
            label = "delete" if xy is None else ("move" if self.placed()[image, b] else "place")
        return self.update(new, label=label)

    def copy_from(self, source: int, target: int) -> Edit | None:
        """Copy the labels of ``source`` onto the body parts ``target`` lacks (one undo step)."""
        new = self._xy.copy()
        fill = self.placed()[source] & ~self.placed()[target]
        new[target, fill] = self._xy[source, fill]
        return self.update(new, label=f"copy labels from {self.images[source]}")

    def update(self, new_xy: np.ndarray, label: str = "edit") -> Edit | None:
        """Make the labels equal ``new_xy``, recording the difference as one edit.

        Returns the edit, or None when nothing changed.
        """
        new_xy = np.asarray(new_xy, dtype=np.float64)
        if new_xy.shape != self._xy.shape:
            raise ValueError(f"labels must have shape {self._xy.shape}, got {new_xy.shape}")
        same = (new_xy == self._xy) | (np.isnan(new_xy) & np.isnan(self._xy))
        changed = np.argwhere(~same.all(axis=2))
        if len(changed) == 0:
            return None
        cells = tuple((int(i), int(b)) for i, b in changed)
        idx = tuple(np.asarray(cells).T)
        edit = Edit(cells, self._xy[idx].copy(), new_xy[idx].copy(), label)
        self._apply(edit)
        self._undo.append(edit)
        self._redo.clear()
        return edit

    def undo(self) -> Edit | None:
        if not self._undo:
            return None
        edit = self._undo[-1]
        self._apply(edit.inverse())  # may raise JournalError: then nothing changed
        self._redo.append(self._undo.pop())
        return edit

    def redo(self) -> Edit | None:
        if not self._redo:
            return None
        edit = self._redo[-1]
        self._apply(edit)
        self._undo.append(self._redo.pop())
        return edit

    def _apply(self, edit: Edit) -> None:
        self._write_journal(edit)  # on disk before it counts
        idx = tuple(np.asarray(edit.cells).T)
        self._xy[idx] = edit.new
        self.unsaved_edits += 1

    # -- journal -------------------------------------------------------------
    def _header(self) -> dict:
        return {"posekit_journal": JOURNAL_VERSION, "images": self.images, "bodyparts": self.bodyparts}

    def _write_journal(self, edit: Edit) -> None:
        if self.journal is None:
            return
        try:
            if self._journal_file is None:
                new = not self.journal.exists() or self.journal.stat().st_size == 0
                self._journal_file = open(self.journal, "a", encoding="utf-8")  # noqa: SIM115 - kept open
                if new:
                    self._journal_file.write(json.dumps(self._header()) + "\n")
            self._journal_file.write(json.dumps(edit.to_json()) + "\n")
            self._journal_file.flush()
            os.fsync(self._journal_file.fileno())
        except OSError as err:
            raise JournalError(f"{self.journal}: cannot write the recovery journal ({err.strerror or err})") from err

    def pending_recovery(self) -> int:
        """Number of journaled edits waiting to be replayed (0 when there is no journal)."""
        return len(self._read_journal())

    def _read_journal(self) -> list[dict]:
        if self.journal is None or not self.journal.exists():
            return []
        lines = self.journal.read_text(encoding="utf-8").splitlines()
        if not lines:
            return []
        try:
            header = json.loads(lines[0])
        except json.JSONDecodeError as err:
            raise JournalError(f"{self.journal}: not a recovery journal") from err
        if header.get("posekit_journal") != JOURNAL_VERSION or header.get("bodyparts") != self.bodyparts:
            raise JournalError(f"{self.journal}: belongs to other labels (body parts {header.get('bodyparts')})")
        journal_images = header["images"]
        edits = []
        for line in lines[1:]:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                break  # a line cut by the crash: everything before it is intact
            entry["cells"] = [(journal_images[i], b) for i, b in entry["cells"]]
            edits.append(entry)
        return edits

    def recover(self) -> int:
        """Replay the journal's edits onto these labels (one undo step); returns how many.

        Images are matched by name, so images added since still line up.
        Replayed edits stay in the journal until :meth:`mark_saved`.
        """
        edits = self._read_journal()
        if not edits:
            return 0
        position = {name: i for i, name in enumerate(self.images)}
        new = self._xy.copy()
        for entry in edits:
            for (name, b), xy in zip(entry["cells"], entry["new"]):
                if name in position:
                    new[position[name], b] = [np.nan if v is None else v for v in xy]
        journal, self.journal = self.journal, None
        try:
            edit = self.update(new, label="recover unsaved edits")
        finally:
            self.journal = journal
        # One consolidated entry under the current image list replaces the old
        # journal (written aside, then renamed: a crash now loses nothing).
        self.close_journal()
        tmp = journal.with_name(journal.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(self._header()) + "\n")
            if edit is not None:
                f.write(json.dumps(edit.to_json()) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, journal)
        return len(edits)

    def mark_saved(self) -> None:
        """Call after the labels were written: the journal is emptied."""
        self.close_journal()
        if self.journal is not None and self.journal.exists():
            self.journal.unlink()
        self.unsaved_edits = 0

    def close_journal(self) -> None:
        if self._journal_file is not None:
            self._journal_file.close()
            self._journal_file = None
