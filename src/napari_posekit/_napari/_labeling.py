"""Labeling dock widget: place body parts on frames of a keypoints Points layer.

The widget is a view of the layer's :class:`~napari_posekit._napari.label_session.LabelSession`,
the one place where the layer's edits become edits of the core
:class:`~napari_posekit.core.labels.LabelStore` (undo/redo and the crash-safe
journal). The session is shared with every other widget editing the same layer
(the Refine widget's corrections, for one): each edit is journaled once, and
this widget redraws its list, progress and skeleton whenever the session says
the labels changed.

Keys on the keypoints layer: Down/Up next/previous body part, D/A next/previous
frame, N next frame that is not fully labeled, C copy the labels of the previous
labeled frame onto the missing body parts, Ctrl+Z undo, Ctrl+Shift+Z redo.

Several animals (a layer listing ``individuals``: a multi-animal project, a SLEAP
file): a click places the chosen (individual, body part), each individual in its
colour and each part with its symbol, then moves to the next pair not placed.
Copy previous takes each animal from where it was last labeled; Swap exchanges
two individuals on this frame (I: next individual). Each command is one edit.

A layer opened from a project folder knows each image's own width and height
(``image_sizes`` in its metadata): the images of one folder may differ in size
and are shown padded at the bottom/right to the largest one, with label
coordinates unchanged. A click or drag that would put a label outside its own
image (in the padding, or beyond) is refused with a message, and copying labels
from a previous frame skips the ones that would land outside this frame's image:
a label outside its image is invalid data.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from napari.layers import Points, Vectors
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_posekit._napari._viewer import unwrap_viewer
from napari_posekit._napari.controls import attach_chosen_layer, refill_layer_box
from napari_posekit._napari.label_session import (
    HUMAN_BORDER,
    HUMAN_BORDER_WIDTH,
    MACHINE_BORDER,
    MACHINE_BORDER_WIDTH,
    Change,
    LabelSession,
    session_for,
)
from napari_posekit._napari.layers import (
    BODYPART_SYMBOLS,
    Key,
    bodypart_colors,
    individual_colors,
    is_keypoints_layer,
    labels_skeleton,
    multi_style,
    outside_image,
    point_defaults,
)
from napari_posekit.controllers import labeling_multi as multi
from napari_posekit.core.labels import LabelStore


class LabelingWidget(QWidget):
    """Body-part list, progress, undo/redo and save for a keypoints layer."""

    def __init__(self, napari_viewer, save: Callable[[LabelStore, Points], None] | None = None):
        super().__init__()
        self.viewer = unwrap_viewer(napari_viewer)
        if save is None:
            from napari_posekit._napari._project_reader import save_labels as save
        self.save_callback = save
        self.layer: Points | None = None
        self.session: LabelSession | None = None
        self.skeleton_layer: Vectors | None = None
        self.current = 0  # the store's column: a body part, or an (individual, body part) pair
        self.columns: multi.Columns | None = None  # several animals: which column is which

        self.layer_box = QComboBox()
        self.layer_box.currentIndexChanged.connect(self._on_layer_chosen)
        self.parts = QListWidget()
        self.parts.currentRowChanged.connect(self._on_part_chosen)
        self.individual_box = QComboBox()  # several animals only
        self.individual_box.currentIndexChanged.connect(self.set_individual)
        self.swap_box = QComboBox()  # the individual "Swap" exchanges the chosen one with
        self.copy_one_button = QPushButton("Copy previous (this animal)")
        self.copy_one_button.clicked.connect(lambda: self.copy_previous(only_chosen=True))
        self.swap_button = QPushButton("Swap on this frame")
        self.swap_button.clicked.connect(lambda: self.swap_individuals())
        self.progress = QLabel("No keypoints layer")
        self.current_label = QLabel("")
        self.frame_label = QLabel("")  # the image shown and its own size
        self.frame_label.setWordWrap(True)
        self.message = QLabel("")  # why the last click was refused
        self.message.setStyleSheet("color: #ff8c69")
        self.message.setWordWrap(True)
        self.recover_button = QPushButton("Recover unsaved edits")
        self.recover_button.clicked.connect(self.recover)
        self.recover_button.hide()
        self.skeleton_edit = QLineEdit()
        self.skeleton_edit.setPlaceholderText("skeleton: snout-leftear, snout-rightear, …")
        self.skeleton_edit.returnPressed.connect(self._on_skeleton_edited)
        buttons = QHBoxLayout()
        self.undo_button = QPushButton("Undo")
        self.redo_button = QPushButton("Redo")
        self.copy_button = QPushButton("Copy previous")
        self.next_button = QPushButton("Next unlabeled")
        self.save_button = QPushButton("Save")
        for button, slot in (
            (self.undo_button, self.undo),
            (self.redo_button, self.redo),
            (self.copy_button, self.copy_previous),
            (self.next_button, self.next_unlabeled),
            (self.save_button, self.save),
        ):
            button.clicked.connect(slot)
            buttons.addWidget(button)

        self.multi_box = QWidget()  # the individual picker and the per-animal commands
        animals = QVBoxLayout(self.multi_box)
        animals.setContentsMargins(0, 0, 0, 0)
        swap_row = (self.copy_one_button, self.swap_button, QLabel("with"), self.swap_box)
        for row in ((QLabel("Individual:"), self.individual_box), swap_row):
            line = QHBoxLayout()
            for item in row:
                line.addWidget(item, 1 if isinstance(item, QComboBox) else 0)
            animals.addLayout(line)
        self.multi_box.hide()

        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Keypoints layer:"))
        layout.addWidget(self.layer_box)
        layout.addWidget(QLabel("Body parts (click places the highlighted one):"))
        layout.addWidget(self.current_label)
        layout.addWidget(self.multi_box)
        layout.addWidget(self.parts)
        layout.addWidget(self.progress)
        layout.addWidget(self.frame_label)
        layout.addWidget(self.message)
        layout.addWidget(self.recover_button)
        layout.addWidget(self.skeleton_edit)
        layout.addLayout(buttons)
        layout.addWidget(
            QLabel(
                "<small>↓/↑ body part · D/A frame · N next unlabeled · C copy previous · "
                "I next individual · Ctrl+Z / Ctrl+Shift+Z undo/redo</small>"
            )
        )

        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self.viewer.dims.events.current_step.connect(self._update_frame_label)
        self._refresh_layers()

    # -- attaching -------------------------------------------------------------
    def _refresh_layers(self, event=None) -> None:
        refill_layer_box(self, [layer for layer in self.viewer.layers if is_keypoints_layer(layer)])

    def _on_layer_chosen(self, index: int) -> None:
        attach_chosen_layer(self, index)

    def attach(self, layer: Points) -> None:
        """Start labeling ``layer``: its metadata names the body parts, frames and files."""
        self.detach()
        session = session_for(layer, self.viewer)
        self.layer, self.session = layer, session
        session.subscribe(self._on_change)
        self.columns = session.columns
        bodyparts = session.bodyparts if self.columns is None else self.columns.all_bodyparts
        self.message.setText("")
        colors = layer.metadata.get(Key.COLORS) or bodypart_colors(bodyparts)
        self.colors = {bp: tuple(colors.get(bp, (1.0, 1.0, 1.0, 1.0))) for bp in bodyparts}
        self.parts.blockSignals(True)
        self.parts.clear()
        for k, bp in enumerate(bodyparts):
            symbol = f" ({BODYPART_SYMBOLS[k % len(BODYPART_SYMBOLS)].replace('_', ' ')})" if self.columns else ""
            item = QListWidgetItem(f"● {bp}{symbol}")
            if self.columns is None:  # several animals: the colour tells the individual, not the part
                item.setForeground(QColor.fromRgbF(*self.colors[bp]))
            self.parts.addItem(item)
        self.parts.blockSignals(False)
        self._fill_individuals()
        self._bind_keys(layer)
        layer.mode = "add"
        self._ensure_skeleton()
        self._refresh_view()
        self.skeleton_edit.setText(", ".join(f"{a}-{b}" for a, b in self._skeleton()))
        pending = session.pending
        self.recover_button.setText(f"Recover {pending} unsaved edits")
        self.recover_button.setVisible(pending > 0)
        if pending:
            show_info(f"{layer.name}: {pending} edits were not saved last time: click 'Recover unsaved edits'.")
        self.set_current(self._first_missing(self.frame) or 0)
        self._update_status()

    def detach(self) -> None:
        """Stop labeling the layer (its session goes on: other widgets may edit it, the journal keeps the edits)."""
        if self.session is not None:
            self.session.unsubscribe(self._on_change)
        self.layer = None
        self.session = None
        self.columns = None
        self.multi_box.hide()

    @property
    def store(self) -> LabelStore | None:
        """The labels being edited (the layer's session's store)."""
        return self.session.store if self.session is not None else None

    @property
    def machine(self) -> set[tuple[int, int]]:
        """``(image, body part)`` cells shown from machine labels that nobody has touched yet."""
        return self.session.machine if self.session is not None else set()

    @property
    def sizes(self) -> np.ndarray | None:
        """``(n_images, 2)`` width, height of each image, when known."""
        return self.session.sizes if self.session is not None else None

    @property
    def frame(self) -> int:
        frame = int(self.viewer.dims.current_step[0]) if self.viewer.dims.ndim >= 3 else 0
        return min(max(frame, 0), len(self.store.images) - 1) if self.store is not None else frame

    # -- syncing ---------------------------------------------------------------
    def _on_change(self, change: Change) -> None:
        """Redraw after a change of the labels, whichever widget made it."""
        if change.kind == "adding":
            # napari copies the selected point's features into the defaults when it
            # selects, so the highlighted body part is set again right before each add
            self._set_defaults()
            return
        if change.kind == "closed":
            self.detach()
            self._update_status()
            return
        if change.kind == "refused":
            self.message.setText(change.message)
            self.viewer.status = change.message
        elif change.kind == "edit" and change.edit is not None:
            self.message.setText("")
        elif change.kind == "recovered":
            self.recover_button.hide()
        self._refresh_view(restyle=False)
        if change.kind == "edit" and change.action == "added" and change.edit is not None:
            nxt = self.store.next_unplaced(self.frame, after=self.current)
            if nxt is not None:
                self.set_current(nxt)
        self._update_status()

    def _rebuild_layer(self) -> None:
        """Make the layer show exactly the store's labels."""
        self.session.rebuild()
        self._refresh_view()

    def _refresh_view(self, restyle: bool = True) -> None:
        """Redraw colours, borders and skeleton (several animals: the session restyles what it rebuilds)."""
        if self.layer is not None and len(self.layer.data):
            names = self.layer.features["bodypart"].astype(object)
            machine = self.session.machine_points()
            with self.session.syncing():
                if self.columns is not None and restyle:  # colour by individual, symbol by body part
                    face, symbols = multi_style(self.layer.features, self.columns)
                    self.layer.face_color = face
                    self.layer.symbol = symbols
                elif self.columns is None:
                    face = np.array([self.colors.get(bp, (1, 1, 1, 1)) for bp in names]).reshape(-1, 4)
                    self.layer.face_color = face
                self.layer.border_color = np.where(machine[:, None], MACHINE_BORDER, HUMAN_BORDER).reshape(-1, 4)
                self.layer.border_width = np.where(machine, MACHINE_BORDER_WIDTH, HUMAN_BORDER_WIDTH)
        self._update_skeleton()

    # -- skeleton --------------------------------------------------------------
    def _skeleton(self):
        return [tuple(e) for e in self.layer.metadata.get(Key.SKELETON, [])]

    def _ensure_skeleton(self) -> None:
        name = f"{self.layer.name} skeleton"
        if name in self.viewer.layers:
            self.skeleton_layer = self.viewer.layers[name]
        else:
            self.skeleton_layer = self.viewer.add_vectors(
                np.empty((0, 2, 3)), name=name, edge_width=1.5, edge_color="white", vector_style="line", opacity=0.8
            )
            self.viewer.layers.selection.active = self.layer
        self._update_skeleton()

    def set_skeleton(self, edges) -> None:
        """Replace the skeleton (pairs of body-part names) and redraw it."""
        bodyparts = self.store.bodyparts if self.columns is None else self.columns.all_bodyparts
        bad = [e for e in edges if e[0] not in bodyparts or e[1] not in bodyparts]
        if bad:
            raise ValueError(f"skeleton edges name unknown body parts: {bad}")
        self.layer.metadata[Key.SKELETON] = [list(e) for e in edges]
        self._update_skeleton()

    def _on_skeleton_edited(self) -> None:
        text = self.skeleton_edit.text().replace(";", ",")
        try:
            edges = [tuple(p.strip() for p in pair.split("-")) for pair in text.split(",") if pair.strip()]
            if any(len(e) != 2 for e in edges):
                raise ValueError("write edges as a-b, separated by commas")
            self.set_skeleton(edges)
        except ValueError as err:
            show_error(f"Skeleton not changed: {err}")

    def _update_skeleton(self) -> None:
        if self.skeleton_layer is not None and self.store is not None:
            xy = np.asarray(self.store.xy)
            vectors, colors = labels_skeleton(xy, self.store.bodyparts, self._skeleton(), self.columns)
            self.skeleton_layer.data = vectors
            if len(vectors):
                self.skeleton_layer.edge_color = colors

    # -- commands --------------------------------------------------------------
    def set_current(self, index: int) -> None:
        if self.store is None:
            return
        self.current = int(index) % len(self.store.bodyparts)
        if self.columns is not None:
            self._show_current_pair()
        else:
            self.parts.blockSignals(True)
            self.parts.setCurrentRow(self.current)
            self.parts.blockSignals(False)
            bp = self.store.bodyparts[self.current]
            self.current_label.setText(
                f"Next click places: <b style='color:{QColor.fromRgbF(*self.colors[bp]).name()}'>{bp}</b>"
            )
        self._set_defaults()

    def _set_defaults(self) -> None:
        """New points get the highlighted body part and its colour."""
        if self.columns is not None:
            self._set_pair_defaults()
            return
        bp = self.store.bodyparts[self.current]
        with self.session.syncing():
            self.layer.feature_defaults = pd.DataFrame(
                {
                    "bodypart": pd.Categorical([bp], categories=self.store.bodyparts),
                    "individual": [""],
                    "likelihood": [1.0],
                }
            )
            self.layer.current_face_color = QColor.fromRgbF(*self.colors[bp]).name()

    def _on_part_chosen(self, row: int) -> None:
        if row < 0:
            return
        if self.columns is None:
            self.set_current(row)
            return
        individual, _ = self.columns.pairs[self.current]
        if individual == multi.SINGLE:
            individual = self.columns.individuals[max(self.individual_box.currentIndex(), 0)]
        self.set_current(self.columns.index(individual, self.columns.all_bodyparts[row]))

    def go_to_frame(self, frame: int) -> None:
        step = list(self.viewer.dims.current_step)
        step[0] = int(np.clip(frame, 0, len(self.store.images) - 1))
        self.viewer.dims.current_step = tuple(step)
        nxt = self._first_missing(self.frame)
        self.set_current(nxt if nxt is not None else self.current)
        self._update_status()

    def _first_missing(self, frame: int) -> int | None:
        """The first body part not placed on ``frame`` (several animals: of the chosen individual first)."""
        start = -1 if self.columns is None else int(self.columns.of_individual(self.individual)[0]) - 1
        return self.store.next_unplaced(frame, after=start)

    def next_unlabeled(self) -> None:
        if self.store is None:
            return
        frame = self.store.next_incomplete_image(self.frame)
        if self.columns is not None:  # an animal absent from a frame is normal
            frame = multi.next_incomplete(self.store.xy, self.columns, self.frame)
        if frame is None:
            show_info("Every frame is fully labeled.")
        else:
            self.go_to_frame(frame)

    def copy_previous(self, only_chosen: bool = False) -> None:
        """Copy the previous labeled frame's labels onto the missing body parts of this frame.

        Several animals: each individual is copied from the last frame where it
        was labeled; ``only_chosen`` copies just the individual chosen in the picker.
        """
        if self.store is None:
            return
        if self.columns is not None:
            self._copy_previous_animals(only_chosen)
            return
        source = self.store.previous_labeled_image(self.frame)
        if source is None:
            show_info("No earlier frame has labels to copy.")
            return
        target = self.frame
        new = np.array(self.store.xy)
        fill = self.store.placed()[source] & ~self.store.placed()[target]
        new[target, fill] = self.store.xy[source, fill]
        skipped = []
        if self.sizes is not None:  # labels that would land outside this (smaller) image are not copied
            outside = outside_image(new[target : target + 1], self.sizes[target : target + 1])[0] & fill
            new[target, outside] = np.nan
            skipped = [self.store.bodyparts[b] for b in np.flatnonzero(outside)]
        self.session.apply(new, label=f"copy labels from {self.store.images[source]}")
        if skipped:
            w, h = self.sizes[target].astype(int)
            text = f"Not copied (outside this {w}x{h} image): {', '.join(skipped)}"
            self.message.setText(text)
            self.viewer.status = text
            show_info(text)
        self._update_status()

    def undo(self) -> None:
        if self.session is not None:
            self.session.undo()

    def redo(self) -> None:
        if self.session is not None:
            self.session.redo()

    def recover(self) -> None:
        if self.session is None:
            return
        n = self.session.recover()
        show_info(f"Recovered {n} unsaved edits; save to keep them.")

    def save(self) -> None:
        if self.store is None:
            return
        try:
            self.save_callback(self.store, self.layer)
        except Exception as err:  # noqa: BLE001 - shown to the person, nothing on disk changed
            show_error(f"Labels not saved: {err}")
            return
        self.session.mark_saved()

    # -- several animals -----------------------------------------------------------
    def _fill_individuals(self) -> None:
        """The Individual picker and the Swap choice, each individual in its own colour."""
        self.multi_box.setVisible(self.columns is not None)
        names = list(self.columns.individuals) if self.columns is not None else []
        self.individual_box.blockSignals(True)  # the Swap box has no listener
        for box in (self.individual_box, self.swap_box):
            box.clear()
            for name, rgba in zip(names, individual_colors(names)):
                box.addItem(f"● {name}")
                box.setItemData(box.count() - 1, QColor.fromRgbF(*rgba), Qt.ForegroundRole)
        self.swap_box.setCurrentIndex(min(1, self.swap_box.count() - 1))
        self.individual_box.blockSignals(False)

    @property
    def individual(self) -> str | None:
        """The individual chosen in the picker (None for a single-animal layer)."""
        return None if self.columns is None else self.columns.individuals[max(self.individual_box.currentIndex(), 0)]

    def set_individual(self, individual: str | int) -> None:
        """Choose the individual the next click labels (its name or position, wrapping); the body part stays."""
        if self.columns is None or self.store is None or individual == -1:
            return
        names = self.columns.individuals
        i = individual % len(names) if isinstance(individual, int) else names.index(individual)
        _, bp = self.columns.pairs[self.current]
        if bp in self.columns.unique:  # a unique part has no individual: go to the animal's first part
            bp = self.columns.bodyparts[0] if self.columns.bodyparts else bp
        self.individual_box.blockSignals(True)
        self.individual_box.setCurrentIndex(i)
        self.individual_box.blockSignals(False)
        self.set_current(self.columns.index(names[i], bp))

    def _show_current_pair(self) -> None:
        individual, bp = self.columns.pairs[self.current]
        self.parts.blockSignals(True)
        self.parts.setCurrentRow(self.columns.all_bodyparts.index(bp))
        self.parts.blockSignals(False)
        if individual != multi.SINGLE:
            i = self.columns.individuals.index(individual)
            self.individual_box.blockSignals(True)
            self.individual_box.setCurrentIndex(i)
            self.individual_box.blockSignals(False)
            if self.swap_box.currentIndex() == i:  # swap with another one than the chosen
                self.swap_box.setCurrentIndex((i + 1) % self.swap_box.count())
            color = QColor.fromRgbF(*individual_colors(self.columns.individuals)[self.individual_box.currentIndex()])
            who = f"<b style='color:{color.name()}'>{individual}</b> · "
        else:
            who = "<b>unique</b> · "
        self.current_label.setText(f"Next click places: {who}<b>{bp}</b>")

    def _set_pair_defaults(self) -> None:
        individual, bp = self.columns.pairs[self.current]
        defaults = point_defaults(self.layer.features, {"bodypart": bp, "individual": individual, "likelihood": 1.0})
        face, symbols = multi_style(defaults, self.columns)
        with self.session.syncing():
            self.layer.feature_defaults = defaults
            self.layer.current_face_color = QColor.fromRgbF(*face[0]).name()
            self.layer.current_symbol = str(symbols[0])

    def _copy_previous_animals(self, only_chosen: bool) -> None:
        target = self.frame
        chosen = [self.individual] if only_chosen else None
        new, sources = multi.copy_previous(self.store.xy, self.columns, target, chosen)
        if not sources:
            who = f"{self.individual} has" if only_chosen else "no animal has"
            show_info(f"Nothing to copy: {who} labels on an earlier frame that this frame lacks.")
            return
        if self.sizes is not None:  # labels that would land outside this (smaller) image are not copied
            outside = outside_image(new[target : target + 1], self.sizes[target : target + 1])[0]
            new[target, outside & np.isnan(self.store.xy[target]).any(axis=1)] = np.nan
        names = ", ".join(f"{ind} from {self.store.images[f].split('/')[-1]}" for ind, f in sources.items())
        self.session.apply(new, label=f"copy previous: {names}")
        self._update_status()

    def swap_individuals(self, a: str | None = None, b: str | None = None) -> None:
        """Exchange two individuals' labels on the frame shown.

        Default: the chosen individual and the one in the Swap box (the next individual when they are the same).
        """
        if self.columns is None or self.store is None:
            return
        names = self.columns.individuals
        a = a or self.individual
        b = b or names[max(self.swap_box.currentIndex(), 0)]
        if a == b:  # the chosen one with the next one
            b = names[(names.index(a) + 1) % len(names)]
        if a == b:
            return
        new = multi.swap_individuals(self.store.xy, self.columns, self.frame, a, b)
        self.session.apply(new, label=f"swap {a} and {b} on {self.store.images[self.frame]}")
        self._update_status()

    def _update_status(self) -> None:
        if self.store is None:
            self.progress.setText("No keypoints layer")
            return
        store, columns = self.store, self.columns
        complete, partly, total = store.progress() if columns is None else multi.progress(store.xy, columns)
        unsaved = f" · {self.store.unsaved_edits} unsaved edits" if self.store.unsaved_edits else " · saved"
        self.progress.setText(f"{complete}/{total} frames complete, {partly} partly labeled{unsaved}")
        self.undo_button.setEnabled(self.store.can_undo)
        self.redo_button.setEnabled(self.store.can_redo)
        self._update_frame_label()

    def _update_frame_label(self, event=None) -> None:
        """Name and size of the image shown; says so when it is padded to a larger canvas."""
        if self.store is None or self.sizes is None:
            self.frame_label.setText("")
            return
        frame = self.frame
        w, h = self.sizes[frame].astype(int)
        text = f"{self.store.images[frame].split('/')[-1]}: {w}x{h}"
        W, H = self.sizes.max(axis=0).astype(int)
        if (w, h) != (W, H):
            text += f" of the {W}x{H} canvas (striped: padding)"
        self.frame_label.setText(text)

    def _bind_keys(self, layer: Points) -> None:
        bindings = {
            "Down": lambda _l: self.set_current(self.current + 1),
            "Up": lambda _l: self.set_current(self.current - 1),
            "d": lambda _l: self.go_to_frame(self.frame + 1),
            "a": lambda _l: self.go_to_frame(self.frame - 1),
            "n": lambda _l: self.next_unlabeled(),
            "c": lambda _l: self.copy_previous(),
            "i": lambda _l: self.set_individual(self.individual_box.currentIndex() + 1),
            "Control-z": lambda _l: self.undo(),
            "Control-Shift-z": lambda _l: self.redo(),
        }
        for key, func in bindings.items():
            layer.bind_key(key, func, overwrite=True)
        self.key_bindings = bindings


def keypoints_layer_from_store(store: LabelStore, name: str, metadata: dict | None = None) -> tuple:
    """Layer data tuple for labels in a store (used by readers and tests)."""
    from napari_posekit._napari.layers import keypoints_layer_data

    return keypoints_layer_data(
        np.asarray(store.xy),
        store.bodyparts,
        name=name,
        metadata={Key.IMAGES: store.images, **(metadata or {})},
    )
