"""Label QA dock widget: find labeling mistakes in a keypoints layer, look at each, fix it in one click.

**Check labels** runs :func:`~napari_posekit.core.label_qa.iter_check_labels`
on the chosen keypoints layer's labels as they are now (saved or not): the
fast checks (left/right swaps, shape outliers, two body parts at one point,
an image labeled twice) and, with **Cross-validate**, a model trained in
k folds that predicts each image it did not see (disagreement, missing and
extra labels). The ranked suspects are listed with their score and reason;
a plot shows each image's highest score. Clicking a row (or the plot) shows
that image with the suspect labels ringed (magenta; other suspects orange)
and the suggested fix as a white cross with a line from the label.

The fixes (**Swap pair**, **Move to suggestion**, **Delete label**) are edits
of the layer's one :class:`~napari_posekit._napari.label_session.LabelSession`:
journaled, undoable here (**Undo**) and with Ctrl+Z, and shown in the
Labeling widget. A suspect whose labels changed since the check is listed as
fixed. **Mark as correct** records the person's decision in the project
(:func:`~napari_posekit.core.label_qa.mark_correct`): the next run leaves the
suspect out as long as its labels stay where they are. **Save labels** writes
CollectedData as the Labeling widget does.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
from napari.layers import Points
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_posekit._napari import label_qa_layers
from napari_posekit._napari._viewer import unwrap_viewer
from napari_posekit._napari.controls import attach_chosen_layer, double_spin_box, refill_layer_box, row, spin_box
from napari_posekit._napari.jobs import JobRunner, error_message
from napari_posekit._napari.label_session import Change, LabelSession, session_for
from napari_posekit._napari.layers import Key, is_keypoints_layer
from napari_posekit._napari.score_curve import ScoreCurve
from napari_posekit.controllers import label_qa as qa
from napari_posekit.core.label_suspects import CheckReport, LabelSet, Suspect

__all__ = ["LabelQAWidget"]

DONE_COLOR = QColor(120, 200, 130)
_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter


def _button(text: str, tip: str) -> QPushButton:
    button = QPushButton(text)
    button.setToolTip(tip)
    return button


def layer_root(layer: Points) -> Path | None:
    """The project folder of a keypoints layer (its config.yaml's, or its ``labeled-data/<video>`` folder's)."""
    meta = layer.metadata
    if meta.get(Key.CONFIG):
        return Path(meta[Key.CONFIG]).parent
    folder = Path(meta[Key.FOLDER]) if meta.get(Key.FOLDER) else None
    if folder is not None and folder.parent.name == "labeled-data":
        return folder.parent.parent
    return None


class LabelQAWidget(QWidget):
    """Ranked suspect labels of a keypoints layer, with the image, the suggested fix and one-click fixes."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = unwrap_viewer(napari_viewer)
        self.controller = qa.LabelQAController()
        self.layer: Points | None = None
        self.session: LabelSession | None = None
        self._build()
        self.jobs = JobRunner(self.status.setText, self._update_controls)
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self.viewer.dims.events.current_step.connect(self._on_step)
        self._refresh_layers()

    # -- building ------------------------------------------------------------------------
    def _build(self) -> None:
        self.layer_box = QComboBox()
        self.layer_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.layer_box.setMinimumContentsLength(14)
        self.layer_box.currentIndexChanged.connect(self._on_layer_chosen)
        self.check_button = _button("Check labels", "Look for labeling mistakes in the chosen layer's labels")
        self.check_button.clicked.connect(lambda: self.check())
        self.stop_button = _button("Stop", "Stop the cross-validation (the fast checks' findings are kept)")
        self.stop_button.clicked.connect(lambda: self.jobs.stop())
        self.cross_validate = QCheckBox("Cross-validate")
        self.cross_validate.setToolTip(
            "Also train a model in k folds and compare each label with the prediction of the model "
            "that did not see its image (slower; finds wrong, missing and extra labels)"
        )
        self.folds = spin_box(2, 20, 5, suffix=" folds", tip="Models trained, each without one part of the images")
        self.minutes = double_spin_box(0.5, 600.0, 10.0, decimals=1, suffix=" min", tip="Time for the whole run")
        for box in (self.folds, self.minutes):  # typed or scrolled: no +/- buttons, so the text fits a narrow dock
            box.setButtonSymbols(QAbstractSpinBox.ButtonSymbols.NoButtons)
            box.setAlignment(Qt.AlignmentFlag.AlignRight)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.summary = QLabel("Not checked yet.")
        self.summary.setWordWrap(True)
        self.kind_box = QComboBox()
        self.kind_box.setToolTip("Show the suspects of one kind")
        self.kind_box.currentIndexChanged.connect(self._on_kind_chosen)
        self.zoom = QCheckBox("zoom in")
        self.zoom.setChecked(True)
        self.zoom.setToolTip("Centre the view on the chosen suspect's animal and zoom to it")
        self.curve = ScoreCurve()
        self.curve.setMinimumHeight(80)
        self.curve.setMaximumHeight(100)
        self.curve.setToolTip("Highest suspect score per image; orange: open, green: done. Click to show an image.")
        self.curve.frame_clicked.connect(lambda frame: self.show_image(frame))
        self.curve.hide()
        self._build_table()
        self.detail = QLabel("")
        self.detail.setWordWrap(True)
        self.swap_button = _button("Swap pair", "Exchange the two labels (left/right)")
        self.move_button = _button("Move to suggestion", "Put the labels where the white crosses are")
        self.delete_button = _button("Delete label", "Remove the suspect labels from this image")
        self.correct_button = _button("Mark as correct", "The labels are right: the next checks leave them out")
        self.undo_button = _button("Undo", "Undo the last edit of these labels (also Ctrl+Z)")
        self.save_button = _button("Save labels", "Write the labels to the project's CollectedData")
        for button, slot in (
            (self.swap_button, lambda: self.fix("swap")),
            (self.move_button, lambda: self.fix("move")),
            (self.delete_button, lambda: self.fix("delete")),
            (self.correct_button, lambda: self.mark_correct()),
            (self.undo_button, lambda: self.undo()),
            (self.save_button, lambda: self.save()),
        ):
            button.clicked.connect(slot)
        self._lay_out()

    def _build_table(self) -> None:
        self.table = QTableWidget(0, len(qa.ROW_COLUMNS))
        self.table.setHorizontalHeaderLabels([name for name, _ in qa.ROW_COLUMNS])
        for c, (_, tip) in enumerate(qa.ROW_COLUMNS):
            self.table.horizontalHeaderItem(c).setToolTip(tip)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.setMinimumHeight(150)
        self.table.setWordWrap(False)
        self.table.currentCellChanged.connect(lambda r, _c, _pr, _pc: self.select_row(r))

    def _lay_out(self) -> None:
        layout = QVBoxLayout(self)
        layout.addLayout(row(QLabel("Keypoints layer:"), self.layer_box, stretch=(0, 1)))
        layout.addLayout(row(self.cross_validate, self.folds, self.minutes, stretch=(1, 0, 0)))
        layout.addLayout(row(self.check_button, self.stop_button, stretch=(1, 0)))
        layout.addWidget(self.status)
        layout.addWidget(self.summary)
        layout.addLayout(row(QLabel("Show:"), self.kind_box, self.zoom, stretch=(0, 1, 0)))
        layout.addWidget(self.curve)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.detail)
        fixes = QGridLayout()
        for i, button in enumerate(
            (
                self.swap_button,
                self.move_button,
                self.delete_button,
                self.correct_button,
                self.undo_button,
                self.save_button,
            )
        ):
            fixes.addWidget(button, i // 3, i % 3)
        layout.addLayout(fixes)

    # -- the keypoints layer -------------------------------------------------------------
    def _refresh_layers(self, event=None) -> None:
        refill_layer_box(self, [layer for layer in self.viewer.layers if is_keypoints_layer(layer)])
        self._update_controls()

    def _on_layer_chosen(self, index: int) -> None:
        attach_chosen_layer(self, index)

    def attach(self, layer: Points) -> None:
        """Check ``layer``'s labels from now on (its label session, shared with the other widgets)."""
        if layer is self.layer:
            return
        self.detach()
        self.layer, self.session = layer, session_for(layer, self.viewer)
        self.session.subscribe(self._on_change)
        session = self.session
        # undo/redo from the viewer as in the Labeling widget (the same session, so either binding does the same)
        layer.bind_key("Control-z", lambda _layer: session.undo(), overwrite=True)
        layer.bind_key("Control-Shift-z", lambda _layer: session.redo(), overwrite=True)
        self._show_report(None)

    def detach(self) -> None:
        """Stop checking the layer; its QA layers leave the viewer (the label session goes on)."""
        layer, session = self.layer, self.session
        self.layer, self.session = None, None
        if session is not None:
            session.unsubscribe(self._on_change)
        label_qa_layers.remove(self.viewer, layer)
        self._show_report(None)

    def _on_change(self, change: Change) -> None:
        if change.kind == "adding":
            return
        if change.kind == "closed":
            self.detach()
            return
        self._refresh()

    # -- the labels as they are now ---------------------------------------------------------
    @property
    def images(self) -> list[str]:
        return [str(i).replace("\\", "/") for i in self.session.images] if self.session is not None else []

    @property
    def xy(self) -> np.ndarray | None:
        return np.asarray(self.session.store.xy) if self.session is not None else None

    def current_labels(self) -> LabelSet:
        """The labels the checks read: the layer's as they are now, the project's other folders' as saved."""
        meta = self.layer.metadata
        root = layer_root(self.layer)
        return qa.label_set(
            self.images,
            self.session.bodyparts,
            self.xy,
            root=root,
            project=qa.project_labels(root),
            skeleton=meta.get(Key.SKELETON) or (),
            machine=self.session.machine,
            keep=set(meta.get(Key.KEPT_ROWS) or ()),
        )

    # -- checking ---------------------------------------------------------------------------
    def check(self):
        """Run the checks in a job on the labels as they are now; returns the job, or None."""
        if self.session is None:
            self._fail("Cannot check", "open a project's labels first (File > Open a labeled-data folder)")
            return None
        if self.jobs.busy:
            return None
        try:
            labels = self.current_labels()
        except ValueError as err:
            self._fail("Cannot check", error_message(err))
            return None
        if not labels.images:
            self._fail("Cannot check", f"{self.layer.name} has no labels yet")
            return None
        cross = self.cross_validate.isChecked()
        if cross:
            from napari_posekit._napari.preload import preload_training_modules

            preload_training_modules()
        options = {"cross_validate": cross, "folds": int(self.folds.value()), "max_minutes": self.minutes.value()}
        session = self.session

        def work(job):
            from napari_posekit.core.label_qa import iter_check_labels

            return iter_check_labels(labels, stop=job.stopping, **options)

        return self.jobs.start(
            "check",
            work,
            description="Checking the labels",
            failure="Labels not checked",
            on_event=lambda job, event: job.report(event.get("progress"), text=event.get("message")),
            on_done=lambda job, report: self._on_checked(session, report),
        )

    def _on_checked(self, session: LabelSession, report: CheckReport | None) -> None:
        if session is not self.session or report is None:
            return
        self.status.setText(
            "Click a row or the plot to see a suspect (magenta rings; white crosses: the suggested fix), then fix it below."
            if report.suspects
            else "No suspect labels."
        )
        self._show_report(report)
        first = self.controller.visible()[:1]
        if first:
            self.select(first[0])

    def _show_report(self, report: CheckReport | None) -> None:
        self.controller.set_report(report, self.images)
        self.curve.setVisible(report is not None)
        self._fill_kinds()
        self._refresh()

    def _fill_kinds(self) -> None:
        choices = self.controller.kind_choices()
        self.kind_box.blockSignals(True)
        self.kind_box.clear()
        for kind, text in choices:
            self.kind_box.addItem(text, kind)
        kinds = [kind for kind, _ in choices]
        self.kind_box.setCurrentIndex(kinds.index(self.controller.kind) if self.controller.kind in kinds else 0)
        self.kind_box.blockSignals(False)

    def _on_kind_chosen(self, index: int) -> None:
        if index >= 0:
            self.controller.set_kind(self.kind_box.itemData(index))
            if self.controller.current not in self.controller.visible():
                self.controller.choose(None)
            self._refresh()

    # -- showing ----------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Redraw the list, the plot, the layers, the summary and the buttons from the controller and labels."""
        c, xy, images = self.controller, self.xy, self.images
        rows = c.rows(xy, images)
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        self.table.setRowCount(len(rows))
        selected = -1
        for r, line in enumerate(rows):
            for col, text in enumerate(line.texts()):
                item = QTableWidgetItem(text)
                item.setToolTip(line.suspect.reason)
                if col in (0, 4):
                    item.setTextAlignment(_RIGHT)
                if line.done:
                    item.setForeground(DONE_COLOR)
                self.table.setItem(r, col, item)
            if line.suspect is c.current:
                selected = r
        if selected >= 0:
            self.table.setCurrentCell(selected, 0)
        else:
            self.table.clearSelection()
        self.table.blockSignals(False)
        self.summary.setText(html.escape(c.summary(xy, images)) + self._notes())
        if c.report is not None and xy is not None:
            picked, done = c.frames(images, xy)
            self.curve.set_scores(c.image_scores(images), picked, done)
        self._show_detail()
        self._draw()
        self._update_controls()

    def _notes(self, shown: int = 2) -> str:
        """The report's first notes as small lines (all of them in the summary's tooltip)."""
        report = self.controller.report
        notes = report.notes if report is not None else []
        self.summary.setToolTip("\n".join(f"• {note}" for note in notes))
        lines = [html.escape(note) for note in notes[:shown]]
        if len(notes) > shown:
            lines.append(f"… and {len(notes) - shown} more notes (hover to read them)")
        return "".join(f"<br><small>• {line}</small>" for line in lines)

    def _show_detail(self) -> None:
        s = self.controller.current
        if s is None:
            self.detail.setText("")
            return
        status = self.controller.status(s, self.xy, self.images)
        also = f" Also: {', '.join(s.evidence)}." if s.evidence else ""
        done = f" <b>({status})</b>" if status else ""
        self.detail.setText(f"<b>{qa.short_name(s.image)}</b>: {s.reason}{also}{done}")

    def _draw(self) -> None:
        if self.layer is None or self.layer not in self.viewer.layers:
            return
        c, xy, images = self.controller, self.xy, self.images
        if c.report is None:
            label_qa_layers.remove(self.viewer, self.layer)
            return
        shown = [s for s in c.visible() if not c.status(s, xy, images)]
        if c.current is not None and c.current not in shown:
            shown.append(c.current)
        label_qa_layers.draw(self.viewer, self.layer, xy, images, self.session.bodyparts, shown, c.current)

    def _update_controls(self) -> None:
        busy = self.jobs.busy
        ready = self.session is not None
        self.check_button.setEnabled(ready and not busy)
        self.stop_button.setEnabled(busy)
        s = self.controller.current
        allowed = qa.fixes(s, self.xy, self.images, self.session.bodyparts) if s is not None and ready else ()
        self.swap_button.setEnabled("swap" in allowed)
        self.move_button.setEnabled("move" in allowed)
        self.delete_button.setEnabled("delete" in allowed)
        self.correct_button.setEnabled(s is not None and ready)
        self.undo_button.setEnabled(ready and self.session.store.can_undo)
        self.save_button.setEnabled(ready and Key.LABELS_FILE in self.layer.metadata)

    # -- choosing ---------------------------------------------------------------------------
    def select_row(self, r: int) -> None:
        rows = self.controller.rows()
        if 0 <= r < len(rows):
            self.select(rows[r].suspect)

    def select(self, suspect: Suspect) -> None:
        """Make ``suspect`` the current one and show its image."""
        self.controller.choose(suspect)
        images = self.images
        if suspect.image in images:
            frame = images.index(suspect.image)
            self._go_to(frame)
            if self.zoom.isChecked():
                label_qa_layers.focus(self.viewer, self.layer, self.xy, frame, suspect)
        self._refresh()

    def show_image(self, frame: int) -> None:
        """Show image ``frame`` and choose its highest-ranked suspect, if it has one."""
        images = self.images
        if not 0 <= frame < len(images):
            return
        suspect = self.controller.first_on(images[frame])
        if suspect is not None:
            self.select(suspect)
        else:
            self._go_to(frame)

    def _go_to(self, frame: int) -> None:
        if self.viewer.dims.ndim >= 3:
            self.viewer.dims.set_current_step(0, int(frame))
        if self.layer is not None and self.layer in self.viewer.layers:
            self.viewer.layers.selection.active = self.layer

    def _on_step(self, _event=None) -> None:
        if self.viewer.dims.ndim >= 3 and self.controller.report is not None:
            self.curve.set_current(int(self.viewer.dims.current_step[0]))

    # -- deciding ---------------------------------------------------------------------------
    def fix(self, fix: str) -> bool:
        """Apply ``fix`` (``"swap"``, ``"move"``, ``"delete"``) to the current suspect as one undoable edit."""
        s = self.controller.current
        if s is None or self.session is None:
            return False
        try:
            new, label = qa.fix_xy(fix, s, self.xy, self.images, self.session.bodyparts)
        except ValueError as err:
            self._fail("Not fixed", str(err))
            return False
        edit = self.session.apply(new, label=label)
        if edit is not None:
            self.status.setText(f"{label.removeprefix('QA: ').capitalize()} (Undo takes it back).")
        return edit is not None

    def mark_correct(self) -> Path | None:
        """Record that the current suspect's labels are right; it leaves the list. Returns the decisions file."""
        s = self.controller.current
        if s is None or self.session is None:
            return None
        from napari_posekit.core.label_qa import mark_correct

        try:
            path = mark_correct(self.current_labels(), s)
        except ValueError as err:
            self._fail("Not marked", error_message(err))
            return None
        self.controller.mark_correct(s)
        nxt = self.controller.next_open(None, self.xy, self.images)
        self.status.setText(f"{qa.short_name(s.image)}: {', '.join(s.bodyparts)} marked correct ({path.name}).")
        self._fill_kinds()
        if nxt is not None:
            self.select(nxt)
        else:
            self._refresh()
        return path

    def undo(self) -> None:
        if self.session is not None:
            self.session.undo()

    def save(self) -> bool:
        """Write the labels to CollectedData (the Labeling widget's save); True when written."""
        if self.session is None:
            return False
        from napari_posekit._napari._project_reader import save_labels

        try:
            h5, _csv = save_labels(self.session.store, self.layer)
        except Exception as err:  # noqa: BLE001 - shown to the person; nothing on disk changed
            self._fail("Labels not saved", error_message(err))
            return False
        self.session.mark_saved()
        self.status.setText(f"Saved {h5.name}.")
        show_info(f"Labels saved to {h5}")
        return True

    def _fail(self, what: str, message: str) -> None:
        self.status.setText(f"{what}: {message}")
        show_error(f"{what}: {message}")
