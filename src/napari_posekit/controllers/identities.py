"""The Identities widget's state, napari-free: open predictions, stitch, review crossings, fix identities, save.

An :class:`IdentitySession` holds the tracks of several animals as they are
being corrected:

1. :meth:`IdentitySession.open` reads a DeepLabCut multi-animal ``.h5``/``.csv``
   or a SLEAP ``.slp`` (:func:`~napari_posekit.core.multianimal.read_tracks`);
   a file with more tracks than animals (fragments) is stitched into one track
   per animal (:func:`~napari_posekit.core.tracking.stitch`).
2. The crossings (animals close together, or an uncertain identity) are found
   with :func:`~napari_posekit.core.tracking.find_crossings`;
   :meth:`~IdentitySession.next_crossing` and
   :meth:`~IdentitySession.previous_crossing` step through them and land on the
   frame where a swap, if any, most likely happened
   (:func:`~napari_posekit.core.identity_edits.swap_frame`).
3. Edits (:meth:`~IdentitySession.swap_from`, :meth:`~IdentitySession.swap_range`,
   :meth:`~IdentitySession.merge`) go through
   :mod:`napari_posekit.core.identity_edits`; each pushes the previous tracks
   on an undo stack, and :meth:`~IdentitySession.undo`/:meth:`~IdentitySession.redo`
   walk it.
4. :meth:`~IdentitySession.save` writes ``<stem>_corrected.h5`` (or ``.slp``)
   beside the file that was opened, atomically; the opened file is never
   written, and saving again replaces the corrected file.

Frames in this API are video frame numbers (what napari's frame slider
shows); they are mapped to array indices through ``tracks.frames``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from napari_posekit.core import identity_edits as edits
from napari_posekit.core.multianimal import Tracks, read_tracks, write_tracks

__all__ = ["DEFAULT_ANIMALS", "CrossingView", "IdentitySession", "animals_from_config", "corrected_path"]

#: Animals assumed when neither the caller nor a project's config.yaml says how many there are.
DEFAULT_ANIMALS = 2
CORRECTED = "_corrected"
#: Frames before and after a crossing searched for the frame where a swap happened (trackers often swap late).
SEARCH_MARGIN = 5


def corrected_path(path: str | os.PathLike) -> Path:
    """Where the corrected copy of the predictions ``path`` goes: ``<stem>_corrected.h5`` (``.slp`` for SLEAP).

    A file that is itself a corrected copy maps to itself, so correcting it
    further replaces it rather than making ``_corrected_corrected``.
    """
    path = Path(path)
    suffix = ".slp" if path.suffix.lower() == ".slp" else ".h5"
    stem = path.stem
    if stem.endswith(CORRECTED):
        return path.with_suffix(suffix)
    return path.with_name(f"{stem}{CORRECTED}{suffix}")


def animals_from_config(path: str | os.PathLike) -> list[str] | None:
    """The individuals of the DeepLabCut multi-animal project a predictions file belongs to, if one is found.

    Looks for ``config.yaml`` beside the file and one and two folders up
    (predictions usually sit in the project's ``videos/``).
    """
    from napari_posekit.core.config import read_config

    here = Path(path).resolve().parent
    for folder in (here, here.parent, here.parent.parent):
        config = folder / "config.yaml"
        if config.is_file():
            try:
                data = read_config(config)
            except (OSError, ValueError):
                return None
            names = data.get("individuals") if data.get("multianimalproject") else None
            return [str(n) for n in names] if names else None
    return None


@dataclass(frozen=True)
class CrossingView:
    """A crossing as the widget shows it, in video frame numbers (``stop`` inclusive)."""

    start: int
    stop: int
    pair: tuple[int, int]
    kind: str
    focus: int  # the frame to show: where a swap most likely happened
    gain: float  # pixels of motion a swap at ``focus`` would save (> 0: looks swapped)
    reviewed: bool = False


@dataclass
class _History:
    past: list[tuple[Tracks, str]] = field(default_factory=list)
    future: list[tuple[Tracks, str]] = field(default_factory=list)


class IdentitySession:
    """Tracks of several animals under correction, with crossings, undo/redo and saving beside the raw file."""

    def __init__(self, tracks: Tracks, path: str | os.PathLike | None = None, *, stitched_from: int | None = None):
        self.path = None if path is None else Path(path)
        self.raw = tracks
        self.tracks = tracks
        self.stitched_from = stitched_from
        self.saved_path: Path | None = None
        self._saved_version: Tracks | None = tracks if stitched_from is None else None
        self._history = _History()
        self._reviewed: set[tuple[int, int, tuple[int, int]]] = set()
        self._focus: dict[tuple[int, int, tuple[int, int]], int] = {}
        self.crossings: list = []
        self._views: list[CrossingView] = []
        self._find_crossings()

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def open(
        cls, path: str | os.PathLike, *, n_animals: int | None = None, names: list[str] | None = None
    ) -> IdentitySession:
        """Read ``path``; stitch it into ``n_animals`` tracks when it holds more.

        ``n_animals`` defaults to the length of ``names``, then to the
        individuals of the project's config.yaml, then to :data:`DEFAULT_ANIMALS`.
        Stitched tracks take ``names`` (or the config's individuals) when there
        are enough, else ``animal1``, ``animal2``, ...
        """
        path = Path(path)
        tracks = read_tracks(path)
        if names is None and n_animals is None:
            names = animals_from_config(path)
        if n_animals is None:
            n_animals = len(names) if names else DEFAULT_ANIMALS
        if n_animals < 1:
            raise ValueError(f"the number of animals must be at least 1, not {n_animals}")
        if tracks.n_individuals <= n_animals:
            return cls(tracks, path)
        return cls(stitched(tracks, n_animals, names), path, stitched_from=tracks.n_individuals)

    # -- frames ----------------------------------------------------------------------------
    @property
    def frames(self) -> np.ndarray:
        return self.tracks.frames

    def index_of(self, frame: int) -> int:
        """The array index of video frame ``frame`` (the next tracked frame if it has none; clipped)."""
        i = int(np.searchsorted(self.frames, int(frame), side="left"))
        return min(max(i, 0), len(self.frames) - 1)

    def frame_of(self, index: int) -> int:
        return int(self.frames[min(max(int(index), 0), len(self.frames) - 1)])

    @property
    def individuals(self) -> list[str]:
        return list(self.tracks.individuals)

    def present(self) -> np.ndarray:
        """``(T, I)`` True where each individual has a pose."""
        return edits.present(self.tracks)

    def confidence(self) -> np.ndarray | None:
        """``(T, I)`` identity confidence, or None when the file has none."""
        return self.tracks.identity

    # -- crossings ---------------------------------------------------------------------------
    def _find_crossings(self) -> None:
        from napari_posekit.core.tracking import find_crossings

        poses = self.tracks.poses
        self.crossings = find_crossings(poses, self.tracks.identity) if poses.shape[1] > 1 else []
        views = []
        for c in self.crossings:
            a, b = (int(i) for i in c.individuals)
            focus, gain = edits.swap_frame(self.tracks, c.start - SEARCH_MARGIN, c.stop + SEARCH_MARGIN, a, b)
            key = (c.start, c.stop, (a, b))
            # a crossing keeps the frame it first landed on: after a swap there the best frame moves,
            # and the crossing must not come round again under Next
            focus = self._focus.setdefault(key, focus)
            views.append(
                CrossingView(
                    start=self.frame_of(c.start),
                    stop=self.frame_of(c.stop - 1),
                    pair=(a, b),
                    kind=str(c.kind),
                    focus=self.frame_of(focus),
                    gain=gain,
                    reviewed=key in self._reviewed,
                )
            )
        self._views = views

    @property
    def crossing_views(self) -> list[CrossingView]:
        return list(self._views)

    def _visit(self, k: int) -> CrossingView:
        c = self.crossings[k]
        self._reviewed.add((c.start, c.stop, tuple(int(i) for i in c.individuals)))
        view = self._views[k]
        self._views[k] = CrossingView(**{**view.__dict__, "reviewed": True})
        return self._views[k]

    def next_crossing(self, frame: int) -> CrossingView | None:
        """The first crossing whose frame to show comes after ``frame`` (marked reviewed), or None."""
        for k, view in enumerate(self._views):
            if view.focus > frame:
                return self._visit(k)
        return None

    def previous_crossing(self, frame: int) -> CrossingView | None:
        """The last crossing whose frame to show comes before ``frame`` (marked reviewed), or None."""
        for k in range(len(self._views) - 1, -1, -1):
            if self._views[k].focus < frame:
                return self._visit(k)
        return None

    def crossing_near(self, frame: int) -> CrossingView | None:
        """The crossing containing ``frame``, else the one whose frames are nearest to it."""
        if not self._views:
            return None

        def gap(view: CrossingView) -> int:
            return 0 if view.start <= frame <= view.stop else min(abs(view.start - frame), abs(view.stop - frame))

        return min(self._views, key=gap)

    def default_pair(self, frame: int) -> tuple[int, int]:
        """The two individuals to swap at ``frame``: the nearest crossing's, else the first two."""
        near = self.crossing_near(frame)
        if near is not None:
            return near.pair
        return (0, 1) if self.tracks.n_individuals > 1 else (0, 0)

    @property
    def reviewed(self) -> int:
        return sum(view.reviewed for view in self._views)

    # -- edits ---------------------------------------------------------------------------------
    @property
    def n_edits(self) -> int:
        """Edits in effect (undone edits do not count)."""
        return len(self._history.past)

    @property
    def can_undo(self) -> bool:
        return bool(self._history.past)

    @property
    def can_redo(self) -> bool:
        return bool(self._history.future)

    @property
    def dirty(self) -> bool:
        """True when the tracks differ from what was last saved (or stitched tracks were never saved)."""
        return self.tracks is not self._saved_version

    def _apply(self, tracks: Tracks, text: str) -> str:
        self._history.past.append((self.tracks, text))
        self._history.future.clear()
        self.tracks = tracks
        self._find_crossings()
        return f"{text} ({self._count()})."

    def _count(self) -> str:
        n = self.n_edits
        return f"{n} edit{'s' if n != 1 else ''}"

    def _names(self, a: int, b: int) -> str:
        return f"{self.tracks.individuals[a]} and {self.tracks.individuals[b]}"

    def swap_from(self, frame: int, a: int, b: int) -> str:
        """Exchange individuals ``a`` and ``b`` from video frame ``frame`` to the end; returns the status text."""
        i = self.index_of(frame)
        tracks = edits.swap_from(self.tracks, i, a, b)
        return self._apply(tracks, f"Swapped {self._names(a, b)} from frame {self.frame_of(i)} on")

    def swap_range(self, first: int, last: int, a: int, b: int) -> str:
        """Exchange ``a`` and ``b`` on video frames ``first`` to ``last`` (both included); returns the status text."""
        first, last = sorted((int(first), int(last)))
        i = self.index_of(first)
        j = int(np.searchsorted(self.frames, last, side="right"))
        if j <= i:
            raise ValueError(f"no tracked frame between {first} and {last}")
        tracks = edits.swap_range(self.tracks, i, j, a, b)
        shown = f"frames {self.frame_of(i)}–{self.frame_of(j - 1)}"
        return self._apply(tracks, f"Swapped {self._names(a, b)} on {shown}")

    def merge(self, keep: int, other: int) -> str:
        """Fill ``keep``'s missing frames from ``other`` and empty ``other``; returns the status text."""
        n = int(edits.present(self.tracks, other).sum()) if 0 <= other < self.tracks.n_individuals else 0
        tracks = edits.merge(self.tracks, keep, other)
        names = self.tracks.individuals
        return self._apply(tracks, f"Merged {names[other]} into {names[keep]}, {n} frame{'s' if n != 1 else ''}")

    def undo(self) -> str:
        if not self._history.past:
            return "Nothing to undo."
        tracks, text = self._history.past.pop()
        self._history.future.append((self.tracks, text))
        self.tracks = tracks
        self._find_crossings()
        return f"Undid: {text} ({self._count()})."

    def redo(self) -> str:
        if not self._history.future:
            return "Nothing to redo."
        tracks, text = self._history.future.pop()
        self._history.past.append((self.tracks, text))
        self.tracks = tracks
        self._find_crossings()
        return f"Redid: {text} ({self._count()})."

    # -- saving ----------------------------------------------------------------------------------
    @property
    def target(self) -> Path | None:
        """The corrected file :meth:`save` writes, or None for tracks that came from no file."""
        return None if self.path is None else corrected_path(self.path)

    def save(self, path: str | os.PathLike | None = None) -> list[Path]:
        """Write the corrected tracks beside the opened file (or to ``path``); never over the opened file.

        Returns the files written (the ``.h5`` with its ``.csv`` and metadata,
        or the ``.slp``).
        """
        target = Path(path) if path is not None else self.target
        if target is None:
            raise ValueError("these tracks came from no file: choose where to save them")
        if self.path is not None and target.resolve() == self.path.resolve() and not self.path.stem.endswith(CORRECTED):
            raise ValueError(f"{target} is the file that was opened: the corrected tracks go beside it, not over it")
        written = write_tracks(target, self.tracks, video=self.tracks.video)
        self._saved_version = self.tracks
        self.saved_path = target
        return written

    def summary(self) -> str:
        """One line about the tracks: animals, frames, stitching, crossings."""
        t = self.tracks
        names = t.individuals if t.n_individuals <= 6 else [*t.individuals[:3], "…", t.individuals[-1]]
        what = "animals" if self.stitched_from is not None or t.n_individuals <= 6 else "tracks"
        text = f"{t.n_individuals} {what} ({', '.join(names)}), {t.n_frames} frames"
        if self.stitched_from is not None:
            text += f"; stitched from {self.stitched_from} tracks"
        n = len(self._views)
        return text + f"; {n} crossing{'s' if n != 1 else ''} to review."


def stitched(tracks: Tracks, n_animals: int, names: list[str] | None = None) -> Tracks:
    """``tracks`` (fragments) joined into ``n_animals`` tracks by :func:`~napari_posekit.core.tracking.stitch`."""
    from napari_posekit.core.tracking import stitch

    result = stitch(tracks.poses, n_animals)
    if names is not None and len(names) >= n_animals:
        individuals = [str(n) for n in names[:n_animals]]
    else:
        individuals = [f"animal{k + 1}" for k in range(n_animals)]
    confidence = getattr(result, "confidence", None)
    return replace(
        tracks.copy(),
        poses=np.asarray(result.poses, dtype=np.float32),
        individuals=individuals,
        identity=None if confidence is None else np.asarray(confidence, dtype=np.float32),
    )
