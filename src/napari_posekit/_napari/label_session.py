"""One editing session per keypoints layer, shared by every widget that edits it.

A :class:`LabelSession` is the single translator between a napari Points
layer (``frame, y, x`` with a ``bodypart`` feature) and the core
:class:`~napari_posekit.core.labels.LabelStore`, which owns undo/redo and the
crash-safe journal. It is the only listener to the layer's data events: after
every change of the layer it reads the layer back into an array and hands it to
the store as one edit (journaled once, whichever widget caused it), and keeps
the layer's ``machine_cells`` (machine labels nobody has touched yet) up to
date. After undo, redo, recovery or a refused edit it rebuilds the layer from
the store.

Widgets never build a store of their own: they call :func:`session_for` (the
same layer always gives the same session) and :meth:`LabelSession.subscribe`
to a :class:`Change` after every change, to redraw their views. The session
ends (:meth:`LabelSession.close`: listener disconnected, journal closed, a
``"closed"`` change sent) when its layer leaves the viewer; unsaved edits stay
in the journal for recovery.

Edits that would put a label outside its own image (a layer opened from a
folder of images of different sizes knows each one's ``image_sizes``) are
refused: the layer goes back to the store's labels and subscribers get a
``"refused"`` change with the reason.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
from napari.layers import Points
from napari.utils.notifications import show_error, show_warning

from napari_posekit._napari.layers import (
    Key,
    label_columns,
    layer_to_xy,
    multi_points,
    multi_style,
    outside_image,
    pair_codes,
)
from napari_posekit.core.labels import Edit, JournalError, LabelStore

__all__ = [
    "HUMAN_BORDER",
    "HUMAN_BORDER_WIDTH",
    "MACHINE_BORDER",
    "MACHINE_BORDER_WIDTH",
    "SYNC_ACTIONS",
    "Change",
    "LabelSession",
    "close_session",
    "existing_session",
    "point_cells",
    "session_for",
]

SYNC_ACTIONS = frozenset({"added", "removed", "changed"})
"""napari data-event actions after which the layer is read back into the store."""

# How widgets tell machine labels nobody has reviewed (a yellow ring) from human ones.
MACHINE_BORDER = (1.0, 0.85, 0.0, 1.0)
HUMAN_BORDER = (0.0, 0.0, 0.0, 1.0)
MACHINE_BORDER_WIDTH = 0.3
HUMAN_BORDER_WIDTH = 0.1


@dataclass(frozen=True)
class Change:
    """What happened to a session's labels, as its subscribers get it.

    ``kind`` is one of ``"adding"`` (a point is about to be added: set the
    defaults of new points now), ``"edit"`` (``edit`` is the store's edit, None
    when nothing changed; ``action`` napari's ``added``/``removed``/``changed``,
    or ``"apply"`` for :meth:`LabelSession.apply`), ``"refused"`` (``message``
    says why; the layer shows the store's labels again), ``"undo"``,
    ``"redo"``, ``"recovered"``, ``"saved"``, ``"machine"`` (machine cells
    were marked reviewed) and ``"closed"``.
    """

    kind: str
    edit: Edit | None = None
    action: str = ""
    message: str = ""


def point_cells(layer: Points, bodyparts: list[str]) -> list[tuple[int, int]]:
    """``(image, body part index)`` of every point of a keypoints layer (-1 for an unknown body part).

    On a multi-animal layer the index is the ``(individual, body part)`` column's.
    """
    if not len(layer.data):
        return []
    names = layer.features["bodypart"].astype(object)
    frames = np.round(np.asarray(layer.data)[:, 0]).astype(int).tolist()
    columns = label_columns(layer.metadata)
    if columns is not None:
        return list(zip(frames, pair_codes(layer.features, columns).tolist()))
    index = {bp: k for k, bp in enumerate(bodyparts)}
    return [(f, index.get(bp, -1)) for f, bp in zip(frames, names)]


class LabelSession:
    """The labels of one keypoints layer being edited: one store, one journal, one data-event listener.

    Create sessions with :func:`session_for`, never directly: two sessions on
    one layer would journal every edit twice.
    """

    def __init__(self, layer: Points, n_frames: int):
        meta = layer.metadata
        # several animals: one store column per (individual, body part), named "individual/bodypart"
        self.columns = label_columns(meta)
        bodyparts = self.columns.names if self.columns is not None else list(meta[Key.BODYPARTS])
        images = list(meta.get(Key.IMAGES) or range(n_frames))
        xy, duplicates = layer_to_xy(layer, len(images), bodyparts)
        self._layer = weakref.ref(layer)
        self.name = layer.name
        self.store = LabelStore([str(i) for i in images], bodyparts, xy, journal=meta.get(Key.JOURNAL))
        sizes = meta.get(Key.IMAGE_SIZES)
        self.sizes: np.ndarray | None = (  # (n_images, 2) width, height of each image, when known
            np.asarray(sizes, dtype=float).reshape(-1, 2) if sizes and len(sizes) == len(images) else None
        )
        # cells shown from machine labels that nobody has touched yet
        self.machine: set[tuple[int, int]] = {tuple(int(v) for v in c) for c in meta.get(Key.MACHINE_CELLS, [])}
        self.closed = False
        self._subscribers: list[Callable[[Change], None]] = []
        self._syncing = False
        self.pending = 0  # journaled edits of an earlier session, waiting for recover()
        try:
            self.pending = self.store.pending_recovery()
        except JournalError as err:
            show_warning(str(err))
        if len(duplicates):
            self.rebuild()
        layer.events.data.connect(self._on_data)

    # -- what it holds ---------------------------------------------------------------
    @property
    def layer(self) -> Points | None:
        """The layer, or None once it is gone."""
        return self._layer()

    @property
    def images(self) -> list[str]:
        return self.store.images

    @property
    def bodyparts(self) -> list[str]:
        return self.store.bodyparts

    def machine_points(self) -> np.ndarray:
        """``(n_points,)`` bool: which points of the layer show a machine label nobody has reviewed."""
        layer = self.layer
        if layer is None:
            return np.zeros(0, bool)
        return np.array([c in self.machine for c in point_cells(layer, self.bodyparts)], dtype=bool)

    # -- subscribers -----------------------------------------------------------------
    def subscribe(self, callback: Callable[[Change], None]) -> None:
        """Call ``callback(change)`` after every change (in the GUI thread)."""
        if callback not in self._subscribers:
            self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[Change], None]) -> None:
        if callback in self._subscribers:
            self._subscribers.remove(callback)

    def _notify(self, change: Change) -> None:
        for callback in list(self._subscribers):
            callback(change)

    @contextmanager
    def syncing(self) -> Iterator[None]:
        """Change the layer without the change becoming an edit (restyling, rebuilding)."""
        before, self._syncing = self._syncing, True
        try:
            yield
        finally:
            self._syncing = before

    # -- the layer's edits -------------------------------------------------------------
    def _on_data(self, event) -> None:
        action = str(getattr(event, "action", "changed")).lower().split(".")[-1]
        layer = self.layer
        if self._syncing or self.closed or layer is None:
            return
        if action == "adding":
            self._notify(Change("adding"))
            return
        if action not in SYNC_ACTIONS:
            return
        xy, duplicates = layer_to_xy(layer, len(self.images), self.bodyparts)
        refusal = self._outside(xy)
        if refusal:
            self.rebuild()  # the layer goes back to the store's labels
            show_warning(refusal)
            self._notify(Change("refused", message=refusal))
            return
        edit = self._update(xy, action)
        if len(duplicates):
            self.rebuild()
        self._notify(Change("edit", edit, action))

    def _update(self, xy: np.ndarray, label: str) -> Edit | None:
        try:
            edit = self.store.update(xy, label=label)
        except JournalError as err:
            show_error(f"{err}. The change was undone; free the folder or save elsewhere.")
            self.rebuild()
            return None
        if edit is not None:
            self.machine.difference_update(edit.cells)  # a touched machine label is now a human one
            self._write_machine_cells()
        return edit

    def _outside(self, xy: np.ndarray) -> str:
        """Why ``xy`` cannot be kept (a label placed or moved outside its own image), or ``""``.

        Only cells that differ from the store count: labels read from the file
        outside their image (the reader warns about them) do not block other edits.
        """
        if self.sizes is None:
            return ""
        old = np.asarray(self.store.xy)
        changed = ~((xy == old) | (np.isnan(xy) & np.isnan(old))).all(axis=2)
        bad = np.argwhere(changed & outside_image(xy, self.sizes))
        if not len(bad):
            return ""
        i, b = bad[0]
        w, h = self.sizes[i].astype(int)
        x, y = xy[i, b]
        return (
            f"{self.bodyparts[b]} not placed: ({x:.1f}, {y:.1f}) is outside "
            f"{self.images[i].split('/')[-1]}, which is {w}x{h} (the striped area is padding)"
        )

    def _write_machine_cells(self) -> None:
        layer = self.layer
        if layer is not None:
            layer.metadata[Key.MACHINE_CELLS] = sorted([list(c) for c in self.machine])

    def rebuild(self) -> None:
        """Make the layer show exactly the store's labels."""
        layer = self.layer
        if layer is None:
            return
        xy = self.store.xy
        if self.columns is not None:
            self._rebuild_multi(layer)
            return
        frame, part = np.nonzero(~np.isnan(xy).any(axis=2))
        data = np.column_stack([frame, xy[frame, part, 1], xy[frame, part, 0]]) if len(frame) else np.empty((0, 3))
        names = np.asarray(self.bodyparts, dtype=object)[part]
        features = pd.DataFrame(
            {"bodypart": pd.Categorical(names, categories=self.bodyparts), "individual": "", "likelihood": 1.0}
        )
        with self.syncing():
            layer.selected_data = set()
            layer.data = data
            layer.features = features

    def _rebuild_multi(self, layer: Points) -> None:
        """A multi-animal layer rebuilt: each point's individual and body part, colour and symbol."""
        data, features = multi_points(self.store.xy, self.columns)
        with self.syncing():
            layer.selected_data = set()
            layer.data = data
            layer.features = features
            if len(data):
                face, symbols = multi_style(features, self.columns)
                layer.face_color = face
                # napari's own symbol objects: its per-point check finds them faster than names (0.07 s, not 0.11 s, for 48k points)
                names, codes = np.unique(symbols.astype(str), return_inverse=True)
                kind = type(layer.current_symbol)
                layer.symbol = np.array([kind(n) for n in names], dtype=object)[codes]

    # -- commands --------------------------------------------------------------------
    def apply(self, xy: np.ndarray, label: str) -> Edit | None:
        """Make the labels ``xy`` as one edit (journaled), then show them in the layer."""
        edit = self._update(np.asarray(xy, dtype=float), label)
        if edit is not None:
            self.rebuild()
        self._notify(Change("edit", edit, "apply"))
        return edit

    def undo(self) -> Edit | None:
        return self._step("undo", self.store.undo)

    def redo(self) -> Edit | None:
        return self._step("redo", self.store.redo)

    def _step(self, kind: str, step: Callable[[], Edit | None]) -> Edit | None:
        try:
            edit = step()
        except JournalError as err:
            show_error(f"Cannot {kind}: {err}")
            return None
        if edit is not None:
            self.rebuild()
            self._notify(Change(kind, edit))
        return edit

    def recover(self) -> int:
        """Replay the journal of an earlier session onto the labels; returns how many edits."""
        n = self.store.recover()
        self.pending = 0
        self.rebuild()
        self._notify(Change("recovered"))
        return n

    def mark_saved(self) -> None:
        """Call after the labels were written: the journal is emptied."""
        self.store.mark_saved()
        self.pending = 0
        self._notify(Change("saved"))

    def mark_reviewed(self, rows: Iterable[int]) -> None:
        """The machine labels of images ``rows`` count as reviewed (they were saved as human labels)."""
        rows = set(rows)
        self.machine = {(i, b) for i, b in self.machine if i not in rows}
        self._write_machine_cells()
        self._notify(Change("machine"))

    def close(self) -> None:
        """End the session: no more edits are taken from the layer; the journal keeps what was not saved."""
        if self.closed:
            return
        self.closed = True
        layer = self.layer
        if layer is not None:
            layer.events.data.disconnect(self._on_data)
            if _SESSIONS.get(layer) is self:
                del _SESSIONS[layer]
        self.store.close_journal()
        self._notify(Change("closed"))
        self._subscribers.clear()


# --------------------------------------------------------------------------- one session per layer
_SESSIONS: weakref.WeakKeyDictionary[Points, LabelSession] = weakref.WeakKeyDictionary()
_WATCHED: weakref.WeakSet = weakref.WeakSet()  # layer lists whose removals end sessions


def _n_frames(layer: Points, viewer) -> int:
    n = int(viewer.dims.nsteps[0]) if viewer is not None and viewer.dims.ndim >= 3 else 1
    if len(layer.data):
        n = max(n, int(np.asarray(layer.data)[:, 0].max()) + 1)
    return n


def _on_layer_removed(event) -> None:
    close_session(event.value)


def session_for(layer: Points, viewer=None) -> LabelSession:
    """The one editing session of ``layer``, made on first use.

    ``viewer`` (the one showing the layer) gives the number of frames of a
    layer whose metadata names no images, and ends the session when the layer
    is removed from it.
    """
    session = _SESSIONS.get(layer)
    if session is None or session.closed:
        session = LabelSession(layer, _n_frames(layer, viewer))
        _SESSIONS[layer] = session
    if viewer is not None and viewer.layers not in _WATCHED:
        viewer.layers.events.removed.connect(_on_layer_removed)
        _WATCHED.add(viewer.layers)
    return session


def close_session(layer) -> None:
    """End the session of ``layer``, if it has one."""
    session = _SESSIONS.pop(layer, None) if isinstance(layer, Points) else None
    if session is not None:
        session.close()


def existing_session(layer) -> LabelSession | None:
    """The open session of ``layer``, without making one (None: nobody edits the layer)."""
    session = _SESSIONS.get(layer) if isinstance(layer, Points) else None
    return session if session is not None and not session.closed else None
