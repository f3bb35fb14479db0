"""Frames dock widget: pick frames of an open video (k-means, uniform, this frame) into a project.

Frames are written as PNGs to ``<project>/labeled-data/<video stem>/`` with
DeepLabCut's names, then the folder opens for labeling. The selection runs in a
napari ``thread_worker`` over the core generator; the worker never touches
layers.
"""

from __future__ import annotations

from pathlib import Path

from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_posekit._napari._video_widget import video_layers
from napari_posekit._napari._viewer import unwrap_viewer
from napari_posekit.core.frames import iter_extract_frames, iter_select_kmeans, select_uniform


def _select_and_extract(video: str, method: str, k: int, labeled_data: Path, frames: list[int] | None,
                        start: float = 0.0, stop: float = 1.0):
    """Generator run in a worker: yields progress fractions, returns the extraction result."""
    if frames is None:
        if method == "kmeans":
            frames = yield from iter_select_kmeans(video, k, start=start, stop=stop)
        else:
            from napari_posekit.core.video import read_metadata

            frames = select_uniform(read_metadata(video).n_frames, k, start=start, stop=stop)
    return (yield from iter_extract_frames(video, frames, labeled_data))


class FramesWidget(QWidget):
    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = unwrap_viewer(napari_viewer)
        self.worker = None
        self.video_box = QComboBox()
        self.project = QLineEdit()
        self.project.setPlaceholderText("project folder or its config.yaml")
        browse = QPushButton("…")
        browse.clicked.connect(self._browse)
        self.method = QComboBox()
        self.method.addItems(["kmeans", "uniform"])
        self.count = QSpinBox()
        self.count.setRange(1, 10_000)
        self.count.setValue(20)
        self.start = QDoubleSpinBox()
        self.stop = QDoubleSpinBox()
        for box, value in ((self.start, 0.0), (self.stop, 100.0)):
            box.setRange(0.0, 100.0)
            box.setSuffix(" %")
            box.setValue(value)
        self.extract_button = QPushButton("Extract frames")
        self.extract_button.clicked.connect(self.extract)
        self.this_frame_button = QPushButton("Add this frame")
        self.this_frame_button.clicked.connect(self.add_this_frame)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        row = QHBoxLayout()
        row.addWidget(self.project)
        row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Video:", self.video_box)
        form.addRow("Project:", row)
        form.addRow("Method:", self.method)
        form.addRow("Frames:", self.count)
        span = QHBoxLayout()
        span.addWidget(self.start)
        span.addWidget(QLabel("to"))
        span.addWidget(self.stop)
        form.addRow("Part of video:", span)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        buttons = QHBoxLayout()
        buttons.addWidget(self.extract_button)
        buttons.addWidget(self.this_frame_button)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.viewer.layers.events.inserted.connect(self._refresh)
        self.viewer.layers.events.removed.connect(self._refresh)
        self._refresh()

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

    def _target(self):
        """(video path, labeled-data folder) or None with a message."""
        name = self.video_box.currentText()
        if not name:
            show_error("Open a video first (File > Open).")
            return None
        project = Path(self.project.text()).expanduser()
        if project.name == "config.yaml":
            project = project.parent
        if not self.project.text() or not (project / "config.yaml").exists():
            show_error(f"'{project}' is not a project folder (no config.yaml); pick one first.")
            return None
        return self.viewer.layers[name].metadata["video"]["path"], project / "labeled-data"

    def extract(self):
        """Select frames with the chosen method and write them; returns the worker (or None)."""
        return self._run(None)

    def add_this_frame(self):
        """Write the frame the viewer shows; returns the worker (or None)."""
        return self._run([int(self.viewer.dims.current_step[0])])

    def _run(self, frames: list[int] | None):
        target = self._target()
        if target is None or self.worker is not None:
            return None
        video, labeled_data = target
        method, k = self.method.currentText(), self.count.value()
        worker = thread_worker(_select_and_extract, progress={"total": 100, "desc": "Selecting frames"})(
            video, method, k, labeled_data, frames, self.start.value() / 100, self.stop.value() / 100
        )
        worker.yielded.connect(lambda f: self.status.setText(f"Reading frames… {100 * f:.0f}%"))
        worker.returned.connect(self._done)
        worker.errored.connect(lambda err: show_error(f"Frame extraction failed: {err}"))
        worker.finished.connect(self._finished)
        self.worker = worker
        self.extract_button.setEnabled(False)
        worker.start()
        return worker

    def _done(self, result) -> None:
        text = f"{len(result.written)} frames written to {result.folder}"
        if result.skipped:
            text += f" ({len(result.skipped)} existed already and were kept)"
        self.status.setText(text)
        show_info(text)
        self.viewer.open(str(result.folder), plugin="napari-posekit")

    def _finished(self) -> None:
        self.worker = None
        self.extract_button.setEnabled(True)
