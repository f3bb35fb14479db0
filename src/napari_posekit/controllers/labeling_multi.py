"""Labeling several animals, without napari: which cell is which, copy per individual, swap two individuals.

Labels of several animals are kept in one ``(n_images, n_columns, 2)`` array,
as the single-animal :class:`~napari_posekit.core.labels.LabelStore` keeps
body parts: a *column* is one ``(individual, body part)`` pair. The columns
come individual by individual (every body part of the first, then of the
second, ...), then DeepLabCut's unique body parts under the individual
``single``. Undo, redo and the journal therefore work unchanged; this module
says which column is which and computes the new labels of the Labeling
widget's multi-animal commands, each of which becomes one edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "SINGLE",
    "Columns",
    "complete_images",
    "copy_previous",
    "next_incomplete",
    "next_unplaced",
    "progress",
    "swap_individuals",
]

#: The individual DeepLabCut files store unique body parts under.
SINGLE = "single"
#: Between the individual and the body part in a column's name (the journal's header lists them).
SEPARATOR = "/"


@dataclass(frozen=True)
class Columns:
    """The ``(individual, body part)`` columns of multi-animal labels.

    ``bodyparts`` are DeepLabCut's ``multianimalbodyparts`` (each individual
    has them all), ``unique`` its ``uniquebodyparts`` (one each per image,
    under the individual ``single``).
    """

    individuals: tuple[str, ...]
    bodyparts: tuple[str, ...]
    unique: tuple[str, ...] = ()
    pairs: tuple[tuple[str, str], ...] = field(init=False, repr=False)

    def __post_init__(self):
        for what, names in (("individuals", self.individuals), ("body parts", (*self.bodyparts, *self.unique))):
            names = [str(n) for n in names]
            if any(not n for n in names):
                raise ValueError(f"{what} must have non-empty names, got {names}")
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{what} listed twice: {repeated}")
        if SINGLE in self.individuals and self.unique:
            raise ValueError(f"an individual may not be named {SINGLE!r}: unique body parts are stored under it")
        object.__setattr__(self, "individuals", tuple(self.individuals))
        object.__setattr__(self, "bodyparts", tuple(self.bodyparts))
        object.__setattr__(self, "unique", tuple(self.unique))
        pairs = [(ind, bp) for ind in self.individuals for bp in self.bodyparts]
        object.__setattr__(self, "pairs", tuple(pairs + [(SINGLE, u) for u in self.unique]))

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def names(self) -> list[str]:
        """One name per column, ``individual/bodypart`` (the label store's and journal's column names)."""
        return [f"{ind}{SEPARATOR}{bp}" for ind, bp in self.pairs]

    @property
    def all_bodyparts(self) -> list[str]:
        """Every body part name: the individuals' parts, then the unique ones."""
        return [*self.bodyparts, *self.unique]

    def index(self, individual: str, bodypart: str) -> int:
        """The column of ``bodypart`` of ``individual`` (a unique part's column, whatever the individual)."""
        if bodypart in self.unique:
            return self.pairs.index((SINGLE, bodypart))
        try:
            return self.pairs.index((individual, bodypart))
        except ValueError:
            raise KeyError(f"no column for individual {individual!r} and body part {bodypart!r}") from None

    def of_individual(self, individual: str) -> np.ndarray:
        """The columns of one individual (``single``: the unique parts)."""
        return np.array([k for k, (ind, _) in enumerate(self.pairs) if ind == individual], dtype=int)

    def split(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(n, C, 2)`` as ``(n, I, K, 2)`` per individual and ``(n, U, 2)`` unique parts."""
        xy = np.asarray(xy)
        n_ind = len(self.individuals) * len(self.bodyparts)
        per = xy[:, :n_ind].reshape(len(xy), len(self.individuals), len(self.bodyparts), 2)
        return per, xy[:, n_ind:]

    def join(self, per_individual: np.ndarray, unique: np.ndarray | None = None) -> np.ndarray:
        """Inverse of :meth:`split`: ``(n, I, K, 2)`` and ``(n, U, 2)`` as ``(n, C, 2)``."""
        per = np.asarray(per_individual, dtype=float)
        n = len(per)
        unique = np.full((n, len(self.unique), 2), np.nan) if unique is None else np.asarray(unique, dtype=float)
        return np.concatenate([per.reshape(n, -1, 2), unique.reshape(n, len(self.unique), 2)], axis=1)


def _placed(xy: np.ndarray) -> np.ndarray:
    return ~np.isnan(np.asarray(xy, dtype=float)).any(axis=-1)


def copy_previous(
    xy: np.ndarray, columns: Columns, target: int, individuals: Sequence[str] | None = None
) -> tuple[np.ndarray, dict[str, int]]:
    """Labels with each individual's missing parts on ``target`` copied from that individual's last labeled image.

    For every individual of ``individuals`` (default: all of them and the
    unique parts) the closest earlier image where it has a label is the
    source, so an animal that was absent on the image just before is copied
    from where it was last seen. Parts already placed on ``target`` stay.
    Returns the new ``(n, C, 2)`` labels and the source image of each
    individual that got labels.
    """
    new = np.array(xy, dtype=float)
    placed = _placed(new)
    wanted = list(columns.individuals) + ([SINGLE] if columns.unique else []) if individuals is None else individuals
    sources: dict[str, int] = {}
    for ind in wanted:
        cols = columns.of_individual(ind)
        if not len(cols):
            raise KeyError(f"no individual {ind!r}")
        earlier = np.flatnonzero(placed[:target][:, cols].any(axis=1))
        if not len(earlier):
            continue
        source = int(earlier[-1])
        fill = cols[placed[source, cols] & ~placed[target, cols]]
        if len(fill):
            new[target, fill] = new[source, fill]
            sources[ind] = source
    return new, sources


def swap_individuals(xy: np.ndarray, columns: Columns, image: int, a: str, b: str) -> np.ndarray:
    """Labels with individuals ``a`` and ``b`` exchanged on ``image`` (all their body parts)."""
    if a == b:
        raise ValueError(f"pick two different individuals to swap, not {a!r} twice")
    for ind in (a, b):
        if ind not in columns.individuals:
            raise KeyError(f"no individual {ind!r} (individuals: {list(columns.individuals)})")
    old = np.asarray(xy, dtype=float)
    new = old.copy()
    ca, cb = columns.of_individual(a), columns.of_individual(b)
    new[image, ca], new[image, cb] = old[image, cb], old[image, ca]
    return new


def next_unplaced(placed_row: np.ndarray, after: int = -1) -> int | None:
    """The next column after ``after`` not placed on an image (wrapping), or None when all are.

    Columns go individual by individual, so after an individual's last missing
    part comes the next individual's first missing one.
    """
    missing = np.flatnonzero(~np.asarray(placed_row, dtype=bool))
    if not len(missing):
        return None
    later = missing[missing > after]
    return int(later[0] if len(later) else missing[0])


def complete_images(xy: np.ndarray, columns: Columns) -> np.ndarray:
    """``(n_images,)`` bool: images with a label on which every animal there has all its parts.

    An animal absent from an image is normal; one label makes it present. The
    unique parts must all be placed.
    """
    placed = _placed(xy)
    n_ind = len(columns.individuals) * len(columns.bodyparts)
    per = placed[:, :n_ind].reshape(len(placed), len(columns.individuals), len(columns.bodyparts))
    animals_done = (per.all(axis=2) | ~per.any(axis=2)).all(axis=1)
    return placed.any(axis=1) & animals_done & placed[:, n_ind:].all(axis=1)


def progress(xy: np.ndarray, columns: Columns) -> tuple[int, int, int]:
    """``(complete images, partly labeled images, all images)`` of multi-animal labels (see :func:`complete_images`)."""
    complete = complete_images(xy, columns)
    labeled = _placed(xy).any(axis=1)
    return int(complete.sum()), int((labeled & ~complete).sum()), len(complete)


def next_incomplete(xy: np.ndarray, columns: Columns, image: int, step: int = 1) -> int | None:
    """The next image after ``image`` (``step`` 1 forward, -1 backward, wrapping) that is not complete, or None."""
    incomplete = ~complete_images(xy, columns)
    n = len(incomplete)
    for k in range(1, n + 1):
        if incomplete[(image + step * k) % n]:
            return (image + step * k) % n
    return None
