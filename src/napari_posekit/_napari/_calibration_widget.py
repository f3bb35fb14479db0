"""Calibration dock widget: calibrate synchronised cameras with a board, and look at how well it went.

The form names the board file, one calibration video or image folder per camera
and the output ``calibration.toml``; Calibrate runs the core's calibration as a
job of the widget's :class:`~napari_posekit._napari.jobs.JobRunner` (progress
bar, Stop) and writes the result with its report.  Open… reads an earlier
result instead.  Either way the viewer shows every camera's images side by side
with the detected corners (green: used, red: rejected) and the re-projected
ones (cyan crosses); the tables give the error per camera and the rejected
images (a click jumps to one); Show rig in 3D draws the cameras and board poses
(see :mod:`~napari_posekit._napari.calibration_layers`).
"""

from __future__ import annotations

from pathlib import Path

from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFormLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_posekit._napari import calibration_layers as cl
from napari_posekit._napari._viewer import unwrap_viewer
from napari_posekit._napari.controls import row, spin_box
from napari_posekit._napari.jobs import Job, JobRunner, error_message
from napari_posekit.controllers import calibration as ctl
from napari_posekit.core.cameras import CalibrationError

CAMERA_COLUMNS = ("Camera", "Used", "No board", "Rejected", "Median", "p90")
IMAGE_COLUMNS = ("Camera", "Image", "Frame", "Reason")
VIDEO_FILTER = "Videos (*.mp4 *.avi *.mov *.mkv *.m4v *.mpg *.mpeg *.webm *.wmv);;All files (*)"


def _table(columns, *, editable: bool) -> QTableWidget:
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(list(columns))
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    table.verticalHeader().setVisible(False)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    if not editable:
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    return table


def _fill(table: QTableWidget, rows: list[list[str]]) -> None:
    table.setRowCount(len(rows))
    for r, cells in enumerate(rows):
        for c, text in enumerate(cells):
            table.setItem(r, c, QTableWidgetItem(text))


class CalibrationWidget(QWidget):
    """Board, cameras and output; Calibrate / Stop / Open…; the report tables; Show rig in 3D."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = unwrap_viewer(napari_viewer)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.jobs = JobRunner(self.status.setText, self._update_buttons)
        self.result = None
        self.image_rows: list[ctl.ImageRow] = []
        self.rig_view = cl.RigView(self.viewer, self._rig_changed)
        self.board = QLineEdit()
        self.board.setPlaceholderText("board.toml (anipose)")
        self.output = QLineEdit()
        self.output.setPlaceholderText("calibration.toml (default: beside the board file)")
        self.cameras = _table(("Camera", "Video or image folder"), editable=True)
        self.every = spin_box(1, 10_000, 1, tip="Use every n-th image or video frame (long calibration videos)")
        self.camera_report = _table(CAMERA_COLUMNS, editable=False)
        self.image_report = _table(IMAGE_COLUMNS, editable=False)
        self.image_report.cellClicked.connect(self.jump_to)
        self.buttons = {
            name: QPushButton(text)
            for name, text in [
                ("board", "…"),
                ("output", "…"),
                ("add", "Add camera"),
                ("remove", "Remove"),
                ("folder", "Folder…"),
                ("video", "Video…"),
                ("session", "From session folder…"),
                ("calibrate", "Calibrate"),
                ("stop", "Stop"),
                ("open", "Open calibration…"),
                ("rig", "Show rig in 3D"),
            ]
        }
        self.buttons["rig"].setCheckable(True)
        for name, slot in [
            ("board", self._browse_board),
            ("output", self._browse_output),
            ("add", lambda: self.add_camera()),
            ("remove", self.remove_camera),
            ("folder", self._browse_folder),
            ("video", self._browse_video),
            ("session", self._browse_session),
            ("calibrate", lambda: self.calibrate()),
            ("stop", lambda: self.jobs.stop("calibrate")),
            ("open", lambda: self.open_calibration()),
        ]:
            self.buttons[name].clicked.connect(slot)
        self.buttons["rig"].toggled.connect(self.show_rig)
        self._lay_out()
        self._update_buttons()

    def _lay_out(self) -> None:
        b = self.buttons
        form = QFormLayout()
        form.addRow("Board:", row(self.board, b["board"], stretch=(1,)))
        form.addRow("Output:", row(self.output, b["output"], stretch=(1,)))
        form.addRow("Every n-th frame:", self.every)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(QLabel("Cameras (one calibration video or image folder each):"))
        layout.addWidget(self.cameras)
        layout.addLayout(row(b["add"], b["remove"], b["folder"], b["video"]))
        layout.addLayout(row(b["session"]))
        layout.addLayout(row(b["calibrate"], b["stop"], b["open"]))
        layout.addWidget(self.status)
        layout.addWidget(QLabel("Images and reprojection error (px) per camera:"))
        layout.addWidget(self.camera_report)
        layout.addWidget(QLabel("Rejected images (click one to show it):"))
        layout.addWidget(self.image_report)
        layout.addWidget(b["rig"])
        self.cameras.setMinimumHeight(110)
        self.cameras.setWordWrap(False)
        self.cameras.setTextElideMode(Qt.TextElideMode.ElideLeft)  # the end of a path names the camera's folder
        self.status.setMinimumHeight(4 * self.status.fontMetrics().lineSpacing())
        self.camera_report.setMinimumHeight(110)
        self.camera_report.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)  # no scrolling
        self.camera_report.horizontalHeader().setStretchLastSection(False)

    # -- the camera table ------------------------------------------------------------
    def add_camera(self, name: str = "", source: str = "") -> None:
        """Append a row (its name defaults to ``cam<n>``)."""
        r = self.cameras.rowCount()
        self.cameras.insertRow(r)
        self.cameras.setItem(r, 0, QTableWidgetItem(name or f"cam{r + 1}"))
        self.cameras.setItem(r, 1, QTableWidgetItem(source))
        self.cameras.setCurrentCell(r, 1)

    def remove_camera(self) -> None:
        rows = sorted({i.row() for i in self.cameras.selectedIndexes()} or {self.cameras.currentRow()}, reverse=True)
        for r in rows:
            if r >= 0:
                self.cameras.removeRow(r)

    def rows(self) -> list[tuple[str, str]]:
        """The table as ``(camera name, source)`` rows."""
        cell = self.cameras.item
        return [
            ((cell(r, 0).text() if cell(r, 0) else ""), (cell(r, 1).text() if cell(r, 1) else ""))
            for r in range(self.cameras.rowCount())
        ]

    def set_rows(self, rows: list[tuple[str, str]]) -> None:
        self.cameras.setRowCount(0)
        for name, source in rows:
            self.add_camera(name, source)

    def fill_from_session(self, folder: str) -> bool:
        """One row per camera sub-folder of ``folder`` (and its board.toml when the board is empty)."""
        try:
            rows = ctl.session_rows(folder)
        except CalibrationError as err:
            self._problem(str(err))
            return False
        self.set_rows(rows)
        board = Path(folder) / "board.toml"
        if not self.board.text().strip() and board.is_file():
            self.board.setText(str(board))
        self.status.setText(f"{len(rows)} cameras from {folder}")
        return True

    def set_source(self, path: str) -> None:
        """Give the current camera row (a new one when there is none) this source; unnamed rows take its name."""
        if not path:
            return
        if self.cameras.rowCount() == 0 or self.cameras.currentRow() < 0:
            self.add_camera(source=path)
        r = self.cameras.currentRow()
        self.cameras.setItem(r, 1, QTableWidgetItem(path))
        name = self.cameras.item(r, 0)
        if name is None or not name.text().strip() or name.text() == f"cam{r + 1}":
            self.cameras.setItem(r, 0, QTableWidgetItem(ctl.camera_name_for(path)))

    def _browse_folder(self) -> None:
        self.set_source(QFileDialog.getExistingDirectory(self, "Calibration image folder"))

    def _browse_video(self) -> None:
        self.set_source(QFileDialog.getOpenFileName(self, "Calibration video", "", VIDEO_FILTER)[0])

    def _browse_session(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Session folder (one sub-folder per camera)")
        if folder:
            self.fill_from_session(folder)

    def _browse_board(self) -> None:
        path = QFileDialog.getOpenFileName(self, "Board file", "", "Board (*.toml);;All files (*)")[0]
        if path:
            self.board.setText(path)

    def _browse_output(self) -> None:
        path = QFileDialog.getSaveFileName(self, "Write the calibration to", "", "Calibration (*.toml)")[0]
        if path:
            self.output.setText(path)

    # -- running ---------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.jobs.busy

    def _update_buttons(self) -> None:
        for name in ("calibrate", "open", "session", "add", "remove"):
            self.buttons[name].setEnabled(not self.busy)
        self.buttons["stop"].setEnabled(self.busy)
        self.buttons["rig"].setEnabled(self.result is not None and not self.busy)

    def _problem(self, text: str) -> None:
        self.status.setText(text)
        show_error(text)

    def calibrate(self, **options) -> Job | None:
        """Check the form and run the calibration as a job; returns it (None with a message when the form is wrong).

        ``options`` go to :func:`~napari_posekit.core.calibration.iter_calibrate` (``every`` comes from the form).
        """
        if self.busy:
            return None
        try:
            plan = ctl.check_form(self.board.text(), self.rows(), self.output.text())
        except CalibrationError as err:
            self._problem(str(err))
            return None
        self.output.setText(str(plan.output))
        options = {"every": self.every.value(), **options}
        return self.jobs.start(
            "calibrate",
            lambda job: ctl.iter_run_calibration(plan, job.stopping, **options),
            description="Calibrating",
            failure="Calibration failed",
            on_event=lambda job, fraction: job.report(fraction, text=f"Calibrating… {100 * fraction:.0f}%"),
            on_done=lambda job, result: self._calibrated(result, plan),
        )

    def _calibrated(self, result, plan: ctl.CalibrationPlan) -> None:
        if result is None:
            self.status.setText("Calibration stopped; nothing was written.")
            return
        self.show_result(result, plan.sources)
        text = ctl.result_text(result, plan.output)
        self.status.setText(text)
        show_info(text)

    def open_calibration(self, path: str | None = None) -> bool:
        """Show an earlier result: a calibration.toml and its report sidecar.

        The images come from where the result recorded them, else from the
        table's rows or the camera folders beside the file; an empty table is
        filled with them.
        """
        if path is None:
            path = QFileDialog.getOpenFileName(self, "Open a calibration", "", "Calibration (*.toml)")[0]
            if not path:
                return False
        from napari_posekit.core.calibration import read_calibration_result

        try:
            result = read_calibration_result(path)
        except Exception as err:  # noqa: BLE001 - a file that cannot be read is a message, never a crash
            self._problem(f"Cannot open the calibration: {error_message(err)}")
            return False
        sources = ctl.result_sources(result, self._rows_or_session(path), result.sources)
        if not any(name.strip() for name, _ in self.rows()):  # an empty form takes the opened calibration's
            self.set_rows([(name, str(source)) for name, source in sources.items()])
            self.every.setValue(int(result.options.get("every", 1)))
        self.show_result(result, sources)
        self.status.setText(ctl.result_text(result, None) + f" ({path})")
        return True

    def _rows_or_session(self, path: str) -> list[tuple[str, str]]:
        """The table's rows, or the camera folders beside the calibration file when the table is empty."""
        rows = [(name, source) for name, source in self.rows() if name.strip() and source.strip()]
        if rows:
            return rows
        try:
            return ctl.session_rows(Path(path).parent)
        except CalibrationError:
            return []

    # -- showing ---------------------------------------------------------------------
    def show_result(self, result, sources: dict) -> None:
        """Fill the tables and put the result's layers into the viewer (in 2D)."""
        self.rig_view.hide()
        self.result = result
        _fill(self.camera_report, ctl.camera_rows(result))
        self.image_rows = ctl.rejected_rows(result)
        _fill(self.image_report, [r.cells() for r in self.image_rows])
        try:
            cl.replace_layers(self.viewer, cl.calibration_2d_data(result, sources))
        except (OSError, ValueError) as err:
            self._problem(f"Cannot show the calibration images: {err}")
        self.viewer.reset_view()
        self._update_buttons()

    def jump_to(self, r: int, _column: int = 0) -> None:
        """Show the image of row ``r`` of the rejected images (its matched frame)."""
        if 0 <= r < len(self.image_rows):
            if self.rig_view.shown:
                self.rig_view.hide()
            if self.viewer.dims.ndim >= 3:
                self.viewer.dims.set_current_step(0, self.image_rows[r].frame)

    def show_rig(self, on: bool) -> None:
        """Switch to the 3D rig view (cameras and board poses) or back to the images."""
        if on and self.result is not None and not self.rig_view.shown:
            self.rig_view.show(self.result)
        elif not on and self.rig_view.shown:
            self.rig_view.hide()
        self._rig_changed()

    def _rig_changed(self) -> None:
        button, shown = self.buttons["rig"], self.rig_view.shown
        button.blockSignals(True)
        button.setChecked(shown)
        button.setText("Back to the images" if shown else "Show rig in 3D")
        button.blockSignals(False)
