"""The Refine widget's controls and how they show the controller's state, without the viewer.

:class:`RefineView` lays out the three sections of the Refine dock widget
(finding outliers, correcting them, retraining), fills the candidate list and
the error table from the rows the controller computes, and reads the
settings back. :class:`~napari_posekit._napari._refine_widget.RefineWidget`
adds the viewer, the jobs and the label session.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_posekit._napari.score_curve import ScoreCurve
from napari_posekit.controllers.refine import COMPARISON_COLUMNS, CandidateRow, LabelRow
from napari_posekit.core.options import OUTLIER_EPSILON
from napari_posekit.core.outliers import OUTLIER_METHODS

METHOD_NAMES = {"jump": "jumps", "uncertain": "low p", "fitting": "off track"}
METHOD_TIPS = {
    "jump": "a body part moves more than epsilon pixels from one frame to the next",
    "uncertain": "body parts with a likelihood below the p-bound, or not found",
    "fitting": "a body part is more than epsilon pixels from its smoothed trajectory",
}
CANDIDATE_COLUMNS = (
    ("frame", "video frame; checked frames are accepted for labeling ('label': a suspect label of the project)"),
    ("score", "combined outlier score"),
    ("jump px", "largest move of a body part since the previous frame"),
    ("low p", "fraction of body parts below the p-bound"),
    ("off track px", "largest distance of a body part from its smoothed trajectory"),
    ("status", ""),
)
_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
_LEFT = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
COMMON_SCORE_TIP = (
    "score on one scale, 1 at the flag threshold: outlier frames 1 + their combined score, "
    "label suspects their check's score (a clear swap 3 or more)"
)


def _button(text: str, tip: str = "") -> QPushButton:
    button = QPushButton(text)
    if tip:
        button.setToolTip(tip)
    return button


def _spin(
    low: float,
    high: float,
    value: float,
    *,
    decimals: int | None = None,
    suffix: str = "",
    step: float | None = None,
    tip: str = "",
    special: str = "",
) -> QSpinBox | QDoubleSpinBox:
    box = QSpinBox() if decimals is None else QDoubleSpinBox()
    if decimals is not None:
        box.setDecimals(decimals)
    box.setRange(low, high)
    if step is not None:
        box.setSingleStep(step)
    if suffix:
        box.setSuffix(suffix)
    if special:
        box.setSpecialValueText(special)
    if tip:
        box.setToolTip(tip)
    box.setValue(value)
    return box


class RefineView(QWidget):
    """Settings, the candidate list and plot, Accept/Save, the retraining settings and the error table."""

    def __init__(self):
        super().__init__()
        self._build_search()
        self._build_candidates()
        self._build_retrain()
        self._lay_out()

    # -- building ---------------------------------------------------------------------
    def _build_search(self) -> None:
        self.project = QLineEdit()
        self.project.setPlaceholderText("project config.yaml or folder")
        self.browse_button = _button("…")
        self.browse_button.setMaximumWidth(30)
        self.browse_button.clicked.connect(self._browse)
        self.video_box = QComboBox()
        self.video_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.video_box.setMinimumContentsLength(16)  # long video names do not widen the dock
        self.count = _spin(1, 1000, 10)
        self.methods = {m: QCheckBox(METHOD_NAMES[m]) for m in OUTLIER_METHODS}
        for method, box in self.methods.items():
            box.setChecked(True)
            box.setToolTip(METHOD_TIPS[method])
        self.epsilon = _spin(
            0.0,
            10_000.0,
            OUTLIER_EPSILON,
            decimals=1,
            suffix=" px",
            tip="Jumps and distances from the smoothed track above this count",
        )
        self.p_bound = _spin(
            0.0, 1.0, 0.01, decimals=3, step=0.01, tip="Body parts predicted with a lower likelihood are uncertain"
        )
        self.reanalyse_first = QCheckBox("analyse the video again")
        self.reanalyse_first.setToolTip("Predict the video anew with the project's latest model")
        self.include_labels = QCheckBox("Include label suspects")
        self.include_labels.setToolTip(
            "List the project's suspect labels (left/right swaps, misplaced parts, duplicates; fast checks, no "
            "model) with the outlier frames, in one ranking"
        )
        self.find_button = _button("Find outliers")
        self.stop_button = _button("Stop")
        self.status = QLabel("")
        self.status.setWordWrap(True)

    def _build_candidates(self) -> None:
        self.curve = ScoreCurve()
        self.table = QTableWidget(0, len(CANDIDATE_COLUMNS))
        self.table.setHorizontalHeaderLabels([name for name, _ in CANDIDATE_COLUMNS])
        for c, (_, tip) in enumerate(CANDIDATE_COLUMNS):
            self.table.horizontalHeaderItem(c).setToolTip(tip)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setMinimumHeight(160)
        self.accept_button = _button(
            "Accept for labeling",
            "Write the checked frames into labeled-data/<video>/ "
            "with their predictions as machine labels, and open them for correction",
        )
        self.save_button = _button(
            "Save", "Merge the corrected frames into CollectedData (human labels stay as they are)"
        )
        self.refine_label = QLabel("")
        self.refine_label.setWordWrap(True)
        self.labels_label = QLabel("")
        self.labels_label.setWordWrap(True)
        self.labels_label.hide()
        self.rows_shown: list[CandidateRow | LabelRow] = []

    def _build_retrain(self) -> None:
        self.epochs = _spin(0, 100_000, 5, special="no limit")
        self.minutes = _spin(0.0, 100_000.0, 3.0, decimals=1, suffix=" min", special="no limit")
        self.reanalyse_after = QCheckBox("re-analyse the video")
        self.reanalyse_after.setChecked(True)
        self.retrain_button = _button("Retrain", "Fine-tune the project's latest model on the merged labels")
        self.eval_label = QLabel("")
        self.eval_label.setWordWrap(True)
        self.eval_table = QTableWidget(0, 0)
        self.eval_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.eval_table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.eval_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.eval_table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.eval_table.hide()

    @staticmethod
    def _row(*widgets) -> QHBoxLayout:
        row = QHBoxLayout()
        for widget in widgets:
            row.addWidget(widget)
        return row

    def _lay_out(self) -> None:
        form = QFormLayout()
        form.addRow("Project:", self._row(self.project, self.browse_button))
        form.addRow("Video:", self.video_box)
        form.addRow("Frames:", self.count)
        form.addRow("Criteria:", self._row(*self.methods.values()))
        form.addRow("Epsilon:", self.epsilon)
        form.addRow("p-bound:", self.p_bound)
        form.addRow("", self.reanalyse_first)
        form.addRow("", self.include_labels)
        retrain = QFormLayout()
        retrain.addRow("Epochs:", self.epochs)
        retrain.addRow("Time budget:", self.minutes)
        content = QWidget()  # scrolls rather than squeezes in a short dock
        layout = QVBoxLayout(content)
        layout.addLayout(form)
        layout.addLayout(self._row(self.find_button, self.stop_button))
        layout.addWidget(self.status)
        layout.addWidget(self.curve)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.labels_label)
        layout.addLayout(self._row(self.accept_button, self.save_button))
        layout.addWidget(self.refine_label)
        layout.addWidget(QLabel("<b>Retrain</b>"))
        layout.addLayout(retrain)
        layout.addLayout(self._row(self.reanalyse_after, self.retrain_button))
        layout.addWidget(self.eval_label)
        layout.addWidget(self.eval_table)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(content)
        scroll.setMinimumWidth(content.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
        self._content, self._scroll = content, scroll
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

    def sizeHint(self) -> QSize:
        content = self._content
        width = max(content.sizeHint().width(), content.minimumSizeHint().width(), 400)
        return QSize(width + self._scroll.verticalScrollBar().sizeHint().width() + 6, content.sizeHint().height())

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Project config.yaml", "", "config.yaml (config.yaml)")
        if path:
            self.project.setText(path)

    # -- reading the settings -----------------------------------------------------------
    def options(self) -> dict[str, Any]:
        """Keyword arguments of ``outlier_scores`` from the settings."""
        methods = tuple(m for m, box in self.methods.items() if box.isChecked())
        return {"methods": methods, "epsilon": float(self.epsilon.value()), "p_bound": float(self.p_bound.value())}

    def _checked_frames(self) -> list[int]:
        frames = []
        for r in range(self.table.rowCount()):
            item = self.table.item(r, 0)
            if item is not None and item.checkState() == Qt.CheckState.Checked:
                frames.append(int(item.data(Qt.ItemDataRole.UserRole)))
        return frames

    def set_checked(self, frames) -> None:
        """Check exactly ``frames`` in the list (the frames Accept writes)."""
        frames = {int(f) for f in frames}
        self.table.blockSignals(True)
        for r in range(self.table.rowCount()):
            item = self.table.item(r, 0)
            if item.flags() & Qt.ItemFlag.ItemIsUserCheckable:
                frame = int(item.data(Qt.ItemDataRole.UserRole))
                item.setCheckState(Qt.CheckState.Checked if frame in frames else Qt.CheckState.Unchecked)
        self.table.blockSignals(False)
        self._update_controls()

    def _update_controls(self, *_args) -> None:
        """Enable the buttons for what can be done now (the widget decides)."""

    # -- showing ------------------------------------------------------------------------
    def show_rows(self, rows: list[CandidateRow | LabelRow], labels_text: str = "") -> None:
        """Fill the candidate list: picked frames checked and bold, frames in the project not checkable.

        A label suspect's row says what it is over the columns of the frames' measures; ``labels_text``
        is the line under the list about the label suspects (hidden when empty).
        """
        self.labels_label.setText(labels_text)
        self.labels_label.setVisible(bool(labels_text))
        self.table.blockSignals(True)
        self.table.clearSpans()
        self.table.setRowCount(0)
        self.table.setRowCount(len(rows))
        self.rows_shown = list(rows)
        merged = any(isinstance(row, LabelRow) for row in rows)
        self.table.horizontalHeaderItem(1).setToolTip(COMMON_SCORE_TIP if merged else CANDIDATE_COLUMNS[1][1])
        for r, row in enumerate(rows):
            if isinstance(row, LabelRow):
                self._label_row(r, row)
                continue
            for col, text in enumerate(row.texts()):
                item = QTableWidgetItem(text)
                item.setTextAlignment(_RIGHT if 0 < col < 5 else _LEFT)
                if row.picked:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(r, col, item)
            first = self.table.item(r, 0)
            first.setData(Qt.ItemDataRole.UserRole, row.frame)
            if row.checkable:
                first.setFlags(first.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                first.setCheckState(Qt.CheckState.Checked if row.picked else Qt.CheckState.Unchecked)
        self.table.blockSignals(False)

    def _label_row(self, r: int, row: LabelRow) -> None:
        for col, text in enumerate(row.texts()):
            item = QTableWidgetItem(text)
            item.setTextAlignment(_RIGHT if col == 1 else _LEFT)
            item.setToolTip(row.tooltip())
            if col == 0:
                font = item.font()
                font.setItalic(True)
                item.setFont(font)
            self.table.setItem(r, col, item)
        self.table.setSpan(r, 2, 1, len(CANDIDATE_COLUMNS) - 2)

    def show_comparison(self, rows: list[tuple[str, list[str]]], text: str) -> None:
        """The error table (one row before, one after retraining) and the line under it."""
        table = self.eval_table
        table.clear()
        table.setRowCount(len(rows))
        table.setColumnCount(len(COMPARISON_COLUMNS))
        table.setHorizontalHeaderLabels([header for _, header, _ in COMPARISON_COLUMNS])
        table.setVerticalHeaderLabels(["before", "after"][: len(rows)])
        for c, (_, _, tip) in enumerate(COMPARISON_COLUMNS):
            table.horizontalHeaderItem(c).setToolTip(tip)
        for r, (tip, cells) in enumerate(rows):
            for c, value in enumerate(cells):
                item = QTableWidgetItem(value)
                item.setTextAlignment(_RIGHT)
                item.setToolTip(tip)
                table.setItem(r, c, item)
        table.resizeRowsToContents()
        height = table.horizontalHeader().sizeHint().height() + 2 * table.frameWidth()
        height += sum(table.rowHeight(r) for r in range(table.rowCount()))
        table.setFixedHeight(max(height + 2, 40))
        table.show()
        self.eval_label.setText(text)
