"""Identities dock widget: review the crossings of several tracked animals and fix identity swaps in a few clicks.

**Open…** (or a SLEAP/DeepLabCut predictions layer already in the viewer)
reads a multi-animal predictions file; one with more tracks than **Animals**
(fragments) is stitched into one track per animal. The animals appear in
their own colours (points, skeleton, one Tracks layer each), and the video
beside the file is opened when the viewer has none.

The timeline shows each animal's identity confidence, where each is tracked,
and the crossings (shaded); clicking it moves the viewer to that frame.
**Next crossing** / **Previous crossing** (N / B) land on the frame where a swap
most likely happened. **Swap from this frame on** (X) exchanges the two chosen
animals from the current frame to the end; **Swap in range** only between two
frames; **Merge tracks** joins a fragment into another track. Every edit is
undoable (**Undo**/**Redo**, Ctrl+Z / Ctrl+Shift+Z on the points), and
**Save corrected** writes ``<name>_corrected.h5``/``.slp`` beside the file
that was opened, never over it. The logic lives in
:class:`~napari_posekit.controllers.identities.IdentitySession`.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path

from napari.utils.notifications import show_error
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGridLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_posekit._napari._viewer import unwrap_viewer
from napari_posekit._napari.controls import row, spin_box
from napari_posekit._napari.identity_layers import IdentityLayers
from napari_posekit._napari.identity_timeline import IdentityTimeline
from napari_posekit._napari.jobs import JobRunner, error_message
from napari_posekit._napari.layers import Key, individual_colors, is_video_layer, marker_size
from napari_posekit.controllers.identities import DEFAULT_ANIMALS, IdentitySession, animals_from_config

__all__ = ["IdentityWidget"]

SUFFIXES = (".slp", ".h5", ".csv")


def _button(text: str, tip: str, slot) -> QPushButton:
    button = QPushButton(text)
    button.setToolTip(tip)
    button.clicked.connect(lambda: slot())
    return button


def layer_file(layer) -> Path | None:
    """The predictions file a layer was read from (SLEAP reader's ``source``, predictions reader's ``path``)."""
    meta = getattr(layer, "metadata", None) or {}
    for key in ("source", Key.PATH):
        value = meta.get(key)
        if isinstance(value, str) and Path(value).suffix.lower() in SUFFIXES and Path(value).is_file():
            return Path(value)
    return None


def _shortcut(ref: weakref.ref, name: str):
    """A viewer key binding calling the widget's ``name`` while the widget lives (a closed dock ignores it)."""

    def press(_viewer) -> None:
        widget = ref()
        if widget is not None:
            try:
                getattr(widget, name)()
            except RuntimeError:  # the Qt side of the widget is gone
                pass

    return press


class IdentityWidget(QWidget):
    """Crossings of several animals on a timeline, with swap, merge, undo and save of the corrected file."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = unwrap_viewer(napari_viewer)
        self.session: IdentitySession | None = None
        self.layers: IdentityLayers | None = None
        self._build()
        self.jobs = JobRunner(self.status.setText, self._update_controls)
        self.viewer.layers.events.inserted.connect(self._refresh_files)
        self.viewer.layers.events.removed.connect(self._refresh_files)
        self.viewer.dims.events.current_step.connect(self._on_step)
        for key, name in (("n", "next_crossing"), ("b", "previous_crossing"), ("x", "swap_from")):
            self.viewer.bind_key(key, _shortcut(weakref.ref(self), name), overwrite=True)
        self._refresh_files()
        self._update_controls()

    # -- building ------------------------------------------------------------------------------
    def _build(self) -> None:
        self.file_box = QComboBox()
        self.file_box.setToolTip("Predictions of several animals open in the viewer (SLEAP .slp, DeepLabCut .h5/.csv)")
        self.file_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.file_box.setMinimumContentsLength(14)
        self.use_button = _button("Use", "Correct the identities of the chosen predictions", self._use_chosen)
        self.open_button = _button("Open…", "Choose a predictions file of several animals", self._choose_file)
        self.animals = spin_box(
            1, 99, DEFAULT_ANIMALS, tip="How many animals the video shows: more tracks than this are stitched"
        )
        self.summary = QLabel("No predictions open.")
        self.summary.setWordWrap(True)
        self.timeline = IdentityTimeline()
        self.timeline.frame_clicked.connect(self.go_to)
        self.crossing = QLabel("")
        self.crossing.setWordWrap(True)
        self.previous_button = _button("◀ Previous crossing", "Go to the previous crossing (B)", self.previous_crossing)
        self.next_button = _button("Next crossing ▶", "Go to the next crossing (N)", self.next_crossing)
        self.first_box, self.second_box = QComboBox(), QComboBox()
        self.first_box.setToolTip("The first animal of a swap; the track that is kept in a merge")
        self.second_box.setToolTip("The second animal of a swap; the fragment merged into the first")
        self.swap_button = _button(
            "Swap from this frame on", "Exchange the two animals from the current frame to the end (X)", self.swap_from
        )
        self.range_first = spin_box(0, 0, 0, tip="First frame of the range to swap")
        self.range_last = spin_box(0, 0, 0, tip="Last frame of the range to swap (included)")
        self.range_button = _button("Swap in range", "Exchange the two animals on these frames only", self.swap_range)
        self.merge_button = _button(
            "Merge tracks", "Fill the first track's gaps from the second (fragments of one animal)", self.merge
        )
        self.undo_button = _button("Undo", "Undo the last edit (Ctrl+Z on the identities layer)", self.undo)
        self.redo_button = _button("Redo", "Redo the edit undone last (Ctrl+Shift+Z)", self.redo)
        self.save_button = _button(
            "Save corrected", "Write <name>_corrected beside the opened file (never over it)", self.save
        )
        self.status = QLabel("")
        self.status.setWordWrap(True)

        grid = QGridLayout()
        grid.addWidget(QLabel("Animals"), 0, 0)
        grid.addWidget(self.first_box, 0, 1)
        grid.addWidget(QLabel("and"), 0, 2)
        grid.addWidget(self.second_box, 0, 3)
        grid.setColumnStretch(1, 1)
        grid.addWidget(self.swap_button, 1, 0, 1, 4)
        grid.addWidget(QLabel("Frames"), 2, 0)
        grid.addWidget(self.range_first, 2, 1)
        grid.addWidget(QLabel("to"), 2, 2)
        grid.addWidget(self.range_last, 2, 3)
        grid.setColumnStretch(3, 1)
        grid.addWidget(self.range_button, 3, 0, 1, 2)
        grid.addWidget(self.merge_button, 3, 2, 1, 2)

        layout = QVBoxLayout(self)
        layout.addLayout(row(self.file_box, self.use_button, self.open_button, stretch=(1,)))
        layout.addLayout(row(QLabel("Animals in the video"), self.animals, stretch=(1,)))
        layout.addWidget(self.summary)
        layout.addWidget(self.timeline)
        layout.addLayout(row(self.previous_button, self.next_button))
        layout.addWidget(self.crossing)
        layout.addLayout(grid)
        layout.addLayout(row(self.undo_button, self.redo_button, self.save_button))
        layout.addWidget(self.status)
        layout.addStretch(1)

    # -- files -------------------------------------------------------------------------------------------
    def _refresh_files(self, event=None) -> None:
        files = []
        for layer in self.viewer.layers:
            path = layer_file(layer)
            if path is not None and str(path) not in files:
                files.append(str(path))
        current = self.file_box.currentText()
        self.file_box.blockSignals(True)
        self.file_box.clear()
        self.file_box.addItems(files)
        if current in files:
            self.file_box.setCurrentIndex(files.index(current))
        self.file_box.blockSignals(False)
        self._update_controls()

    def _use_chosen(self) -> None:
        if self.file_box.currentText():
            self.open(self.file_box.currentText())

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Predictions of several animals", "", "Predictions (*.slp *.h5 *.csv);;All files (*)"
        )
        if path:
            self.open(path)

    def open(self, path) -> None:
        """Read (and stitch) ``path`` in the background, then show it."""
        path = Path(path)
        names = animals_from_config(path)
        if names:
            self.animals.setValue(len(names))
        n = self.animals.value()

        def work(job):
            job.report(text=f"Reading {path.name} (stitching into {n} tracks if it holds more)…")
            return IdentitySession.open(path, n_animals=n, names=names)

        self.jobs.start(
            "open",
            work,
            description=f"Opening {path.name}",
            total=None,
            failure=f"Cannot open {path.name}",
            on_done=lambda _job, session: self.attach(session),
        )

    def attach(self, session: IdentitySession) -> None:
        """Show ``session``'s tracks (replacing the layers of a previous one)."""
        if self.layers is not None:
            self.layers.remove()
        self.session = session
        name = session.path.stem if session.path is not None else "tracks"
        self._open_video(session)
        size = self._point_size()
        self.layers = IdentityLayers(self.viewer, name, size=size)
        self._hide_sources(session.path)
        self.layers.show(session.tracks)
        if self.layers.points is not None:
            self.layers.points.bind_key("Control-z", lambda _layer: self.undo(), overwrite=True)
            self.layers.points.bind_key("Control-Shift-z", lambda _layer: self.redo(), overwrite=True)
        colors = individual_colors(session.individuals)
        for box in (self.first_box, self.second_box):
            box.blockSignals(True)
            box.clear()
            for k, name in enumerate(session.individuals):
                box.addItem(name)
                box.setItemData(k, QColor.fromRgbF(*(float(c) for c in colors[k])), Qt.ItemDataRole.DecorationRole)
            box.blockSignals(False)
        first, last = session.frame_of(0), session.frame_of(len(session.frames) - 1)
        for box in (self.range_first, self.range_last):
            box.setRange(first, last)
            box.setValue(self._frame())
        self.summary.setText(session.summary())
        self.status.setText(f"Opened {session.path.name if session.path else 'the tracks'}.")
        self._choose_pair(self._frame())
        self._redraw()

    def _open_video(self, session: IdentitySession) -> None:
        video = session.tracks.video
        if any(is_video_layer(layer) for layer in self.viewer.layers) or not video or not Path(video).is_file():
            return
        from napari_posekit._napari._reader import video_layer_data
        from napari_posekit.core.video import VideoError, VideoReader

        try:
            data, kwargs, _kind = video_layer_data(VideoReader(video, on_error="warn"))
        except (VideoError, OSError) as err:
            self.status.setText(f"The video {video} cannot be opened: {err}")
            return
        self.viewer.add_image(data, **kwargs)

    def _point_size(self) -> float:
        for layer in self.viewer.layers:
            if is_video_layer(layer):
                video = layer.metadata[Key.VIDEO]
                return marker_size(video.get("width"), video.get("height"))
        return 6.0

    def _hide_sources(self, path: Path | None) -> None:
        """Hide the layers the raw file was opened as (its points and skeleton), which the corrected ones replace."""
        if path is None:
            return
        for layer in self.viewer.layers:
            meta = getattr(layer, "metadata", None) or {}
            if layer_file(layer) == path or meta.get("source") == str(path):
                layer.visible = False
        for layer in list(self.viewer.layers):
            if layer.name == f"{path.name} skeleton":
                layer.visible = False

    # -- frames and crossings ------------------------------------------------------------------------------
    def _frame(self) -> int:
        return int(self.viewer.dims.current_step[0]) if self.viewer.dims.ndim else 0

    def go_to(self, frame: int) -> None:
        step = list(self.viewer.dims.current_step)
        if step:
            step[0] = int(frame)
            self.viewer.dims.current_step = tuple(step)

    def _on_step(self, event=None) -> None:
        self.timeline.set_current(self._frame())

    def _choose_pair(self, frame: int) -> None:
        if self.session is None or self.session.tracks.n_individuals < 2:
            return
        a, b = self.session.default_pair(frame)
        self.first_box.setCurrentIndex(a)
        self.second_box.setCurrentIndex(b)

    def _show_crossing(self, view, direction: str) -> None:
        if self.session is None:
            return
        if view is None:
            self.crossing.setText(f"No {direction} crossing.")
            return
        names = self.session.individuals
        what = "came close" if view.kind == "close" else "have uncertain identities"
        where = f"frame {view.start}" if view.start == view.stop else f"frames {view.start}–{view.stop}"
        k = self.session.crossing_views.index(view) + 1
        hint = (
            f" They look swapped from frame {view.focus}: press Swap if so."
            if view.gain > 0
            else f" No swap shows in their motion; shown where they are closest (frame {view.focus})."
        )
        self.crossing.setText(
            f"Crossing {k} of {len(self.session.crossing_views)}: {names[view.pair[0]]} and "
            f"{names[view.pair[1]]} {what} on {where}.{hint}"
        )
        self.first_box.setCurrentIndex(view.pair[0])
        self.second_box.setCurrentIndex(view.pair[1])
        self.range_first.setValue(view.focus)
        self.range_last.setValue(view.stop)
        self.go_to(view.focus)
        self._redraw()

    def next_crossing(self) -> None:
        if self.session is not None:
            self._show_crossing(self.session.next_crossing(self._frame()), "next")

    def previous_crossing(self) -> None:
        if self.session is not None:
            self._show_crossing(self.session.previous_crossing(self._frame()), "previous")

    # -- edits ----------------------------------------------------------------------------------------------
    def _pair(self) -> tuple[int, int]:
        return self.first_box.currentIndex(), self.second_box.currentIndex()

    def _edit(self, action) -> None:
        if self.session is None or self.jobs.busy:
            return
        try:
            text = action(self.session)
        except ValueError as err:
            self.status.setText(str(err))
            show_error(error_message(err))
            return
        self.status.setText(text)
        self.layers.show(self.session.tracks)
        self._redraw()

    def swap_from(self) -> None:
        frame = self._frame()
        self._edit(lambda s: s.swap_from(frame, *self._pair()))

    def swap_range(self) -> None:
        first, last = self.range_first.value(), self.range_last.value()
        self._edit(lambda s: s.swap_range(first, last, *self._pair()))

    def merge(self) -> None:
        self._edit(lambda s: s.merge(*self._pair()))

    def undo(self) -> None:
        self._edit(lambda s: s.undo())

    def redo(self) -> None:
        self._edit(lambda s: s.redo())

    def save(self, path=None) -> None:
        """Write the corrected file beside the opened one (or to ``path``); asks where when that folder is read-only."""
        if self.session is None:
            return
        target = Path(path) if path is not None else self.session.target
        if path is None and target is not None and not os.access(target.parent, os.W_OK):
            chosen, _ = QFileDialog.getSaveFileName(
                self,
                f"{target.parent} is read-only: save the corrected tracks as",
                str(Path.home() / target.name),
                f"Predictions (*{target.suffix})",
            )
            if not chosen:
                self.status.setText(f"Not saved: {target.parent} is read-only and no other place was chosen.")
                return
            target = Path(chosen)
        try:
            written = self.session.save(target)
        except (ValueError, OSError) as err:
            self.status.setText(f"Not saved: {err}")
            show_error(f"Not saved: {error_message(err)}")
            return
        n = self.session.n_edits
        where = "beside" if written[0].parent == self.session.path.parent else "apart from"
        self.status.setText(
            f"Saved {written[0].name} {where} {self.session.path.name} ({n} edit{'s' if n != 1 else ''}); "
            "the opened file is unchanged."
        )
        self._update_controls()

    # -- drawing --------------------------------------------------------------------------------------------
    def _redraw(self) -> None:
        s = self.session
        if s is not None:
            self.timeline.set_tracks(
                s.frames, s.present(), s.confidence(), s.individuals, individual_colors(s.individuals), s.crossing_views
            )
            edits = f"{s.n_edits} edit{'s' if s.n_edits != 1 else ''}"
            self.summary.setText(f"{s.summary()} Reviewed {s.reviewed}; {edits}.")
        self.timeline.set_current(self._frame())
        self._update_controls()

    def _update_controls(self) -> None:
        busy = hasattr(self, "jobs") and self.jobs.busy
        ready = self.session is not None and not busy
        pairs = ready and self.session.tracks.n_individuals > 1
        for button in (self.previous_button, self.next_button):
            button.setEnabled(bool(ready and self.session.crossing_views))
        for button in (self.swap_button, self.range_button, self.merge_button):
            button.setEnabled(bool(pairs))
        self.undo_button.setEnabled(bool(ready and self.session.can_undo))
        self.redo_button.setEnabled(bool(ready and self.session.can_redo))
        self.save_button.setEnabled(bool(ready and self.session.path is not None and self.session.dirty))
        self.use_button.setEnabled(bool(self.file_box.count()) and not busy)
        self.open_button.setEnabled(not busy)
