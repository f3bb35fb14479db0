"""Frames dock widget: pick frames of an open video (k-means, uniform, this frame) into a project.

Frames are written as PNGs to ``<project>/labeled-data/<video stem>/`` with
DeepLabCut's names, then the folder opens for labeling. Selecting and writing
run as one job of the widget's :class:`~napari_posekit._napari.jobs.JobRunner`
over :func:`~napari_posekit.controllers.frames.iter_select_and_extract`; the
work never touches layers.
"""

from __future__ import annotations

from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_posekit._napari._viewer import unwrap_viewer
from napari_posekit._napari.controls import double_spin_box, row, spin_box
from napari_posekit._napari.jobs import Job, JobRunner
from napari_posekit._napari.layers import Key, video_layers
from napari_posekit.controllers.frames import (
    METHODS,
    extraction_text,
    iter_select_and_extract,
    labeled_data_folder,
    stage_text,
)

DEFAULT_COUNT = 20


class FramesWidget(QWidget):
    """Video, project, method, number of frames and part of the video; Extract frames and Add this frame."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = unwrap_viewer(napari_viewer)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.jobs = JobRunner(self.status.setText, self._update_buttons)
        self.video_box = QComboBox()
        self.project = QLineEdit()
        self.project.setPlaceholderText("project folder or its config.yaml")
        self.browse_button = QPushButton("…")
        self.browse_button.clicked.connect(self._browse)
        self.method = QComboBox()
        self.method.addItems(METHODS)
        self.count = spin_box(1, 10_000, DEFAULT_COUNT)
        self.start = double_spin_box(0.0, 100.0, 0.0, suffix=" %")
        self.stop = double_spin_box(0.0, 100.0, 100.0, suffix=" %")
        self.extract_button = QPushButton("Extract frames")
        self.extract_button.clicked.connect(self.extract)
        self.this_frame_button = QPushButton("Add this frame")
        self.this_frame_button.clicked.connect(self.add_this_frame)
        self._lay_out()
        self.viewer.layers.events.inserted.connect(self._refresh)
        self.viewer.layers.events.removed.connect(self._refresh)
        self._refresh()

    def _lay_out(self) -> None:
        form = QFormLayout()
        form.addRow("Video:", self.video_box)
        form.addRow("Project:", row(self.project, self.browse_button))
        form.addRow("Method:", self.method)
        form.addRow("Frames:", self.count)
        form.addRow("Part of video:", row(self.start, QLabel("to"), self.stop))
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(row(self.extract_button, self.this_frame_button))
        layout.addWidget(self.status)
        layout.addStretch(1)

    def _refresh(self, event=None) -> None:
        current = self.video_box.currentText()
        self.video_box.clear()
        self.video_box.addItems([layer.name for layer in video_layers(self.viewer)])
        if current:
            self.video_box.setCurrentText(current)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Project folder")
        if folder:
            self.project.setText(folder)

    @property
    def busy(self) -> bool:
        return self.jobs.busy

    def _update_buttons(self) -> None:
        self.extract_button.setEnabled(not self.busy)
        self.this_frame_button.setEnabled(not self.busy)

    def _target(self):
        """(video path, labeled-data folder) or None with a message."""
        name = self.video_box.currentText()
        if not name:
            show_error("Open a video first (File > Open).")
            return None
        labeled_data, problem = labeled_data_folder(self.project.text())
        if problem:
            show_error(problem)
            return None
        return self.viewer.layers[name].metadata[Key.VIDEO]["path"], labeled_data

    def extract(self) -> Job | None:
        """Select frames with the chosen method and write them; returns the job (or None)."""
        return self._run(None)

    def add_this_frame(self) -> Job | None:
        """Write the frame the viewer shows; returns the job (or None)."""
        return self._run([int(self.viewer.dims.current_step[0])])

    def _run(self, frames: list[int] | None) -> Job | None:
        if self.busy:
            return None
        target = self._target()
        if target is None:
            return None
        video, labeled_data = target
        method, k = self.method.currentText(), self.count.value()
        start, stop = self.start.value() / 100, self.stop.value() / 100
        return self.jobs.start(
            "extract",
            lambda job: iter_select_and_extract(video, method, k, labeled_data, frames, start, stop),
            description="Selecting frames" if frames is None else "Writing frames",
            status="Reading frames…",
            failure="Frame extraction failed",
            on_event=lambda job, event: job.report(event["progress"], text=stage_text(event)),
            on_done=self._done,
        )

    def _done(self, job: Job, result) -> None:
        text = extraction_text(result)
        self.status.setText(text)
        show_info(text)
        self.viewer.open(str(result.folder), plugin="napari-posekit")
