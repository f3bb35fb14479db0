"""Analysis dock widget: run a trained model over a video layer and watch the predictions arrive.

Analysis runs :func:`~napari_posekit.controllers.analysis.iter_analysis` (the
model is loaded once and kept for the next run, then
:func:`~napari_posekit.core.inference.iter_analyze` predicts block after
block) through the widget's :class:`~napari_posekit._napari.jobs.JobRunner`;
the work never touches layers. Every block is copied into the
:class:`~napari_posekit.controllers.analysis.Analysis` of the video (held for
the whole video, keyed by the layer's id), and the runner's timer turns it
into layers at most five times a second (less often when the layers are
large), so the event loop stays responsive:

* ``"<video> predictions"``: Points ``(frame, y, x)`` with ``bodypart`` and
  ``likelihood`` features, one colour per body part (the labeled videos'
  colours); keypoints below the p-cutoff are hidden (the ``shown`` mask);
* ``"<video> skeleton"``: Vectors, the skeleton edges whose two ends are above
  the p-cutoff;
* ``"<video> tracks"``: Tracks, one per body part ``(track_id, t, y, x)``,
  from the keypoints above the p-cutoff, with a tail of the chosen length.

The model is a project (its latest checkpoint), a checkpoint or an exported
model file (``.onnx``, from the Training widget's Export or ``posekit
export``; it runs without torch). The Backend box chooses what runs the
network: "auto" takes the fastest backend that keeps the accuracy, measured
the first time a model meets this machine (the status says so while it
measures, in the job, for up to half a minute) and remembered; the status and
the line beside the box then name the backend, and the core's notes (a
backend that failed to load and the one used instead) follow the status.

A multi-animal model (a multi-animal project in the Model box, or its model
folder) analyses several animals instead
(:mod:`~napari_posekit.controllers.analysis_multi`): block after block the
``"<video> animals"`` points (coloured by individual, one symbol per body
part) and ``"<video> animals skeleton"`` grow; at the end the poses are
tracked into one track per individual, shown as one Tracks layer each
(``"<video> <individual>"``), and written as DeepLabCut's multi-animal
``<video stem><scorer>_el.h5`` (+ ``.csv``) beside the video. "Check
identities…" opens that file in the Identities widget. Such a file found
beside the chosen video is offered ("Open"). A single-animal model on a
multi-animal project, or the reverse, is refused with a message.

Stop ends a run between blocks; what was analysed stays. Save writes
DeepLabCut's ``<video stem><scorer>.h5`` and ``.csv`` beside the video, in a
job; the filter preview adds ``"<video> predictions (filtered)"`` and
``"<video> tracks (filtered)"`` next to the raw layers, and Save filtered
writes ``<stem>_filtered.h5``. Export labeled video draws the predictions on
the video in a job and writes an MP4 beside the predictions (saved first when
they are not yet). Problems (a bad model path, a model for other body parts,
a video that cannot be read) are shown as notifications and leave the layers
as they were.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from napari.layers import Image
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from napari_posekit._napari._viewer import unwrap_viewer
from napari_posekit._napari.analysis_files import MultiAnimalRuns, PredictionFiles
from napari_posekit._napari.analysis_layers import AnalysisLayers, MultiAnimalLayers, video_source
from napari_posekit._napari.controls import row, spin_box
from napari_posekit._napari.jobs import Failed, Job, JobRunner
from napari_posekit._napari.layers import Key, analysable_layers, project_config
from napari_posekit._napari.preload import preload_training_modules
from napari_posekit.controllers.analysis import (
    AUTO_BACKEND,
    FILTERS,
    RANGES,
    Analyses,
    Analysis,
    AnalysisRun,
    backend_choices,
    frame_span,
    iter_analysis,
    loading_text,
)
from napari_posekit.controllers.analysis_multi import (
    MULTI,
    ModelMismatch,
    MultiAnalyses,
    MultiAnalysis,
    MultiRun,
    analysis_kind,
    find_tracks_file,
    model_is_multianimal,
    project_of,
)
from napari_posekit.controllers.models import MODEL_FILTER
from napari_posekit.core.options import ANALYSIS_BATCH_SIZE, PCUTOFF

DEBOUNCE_MS = 120
FAST_TIP = (
    "Run the network on a crop around where the animal was a moment before, at full resolution; "
    "frames where that is unsure are redone on the whole frame"
)
TAIL_LENGTH = 20
FILTER_WINDOW = 5


class AnalysisWidget(PredictionFiles, MultiAnimalRuns, QWidget):
    """Model, video and frames, Analyze/Stop, p-cutoff and tails, save, filter and labeled-video export."""

    def __init__(self, napari_viewer):
        super().__init__()
        preload_training_modules()
        self.viewer = unwrap_viewer(napari_viewer)
        self.analyses = Analyses()
        self.multi = MultiAnalyses()
        self.last_output: Path | None = None
        self.run: AnalysisRun | None = None
        self.multi_run: MultiRun | None = None
        self._dirty = False
        self._next_draw = 0.0
        self._chosen: Image | None = None
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.jobs = JobRunner(self.status.setText, self._update_controls)
        self._build_analysis()
        self._build_predictions()
        self._lay_out()
        self.display = AnalysisLayers(self.viewer, self.pcutoff.value, self.tail_length.value)
        self.multi_display = MultiAnimalLayers(self.viewer, self.pcutoff.value, self.tail_length.value)
        self.tail_length.valueChanged.connect(self.multi_display.set_tail_length)
        self._pcutoff_timer = QTimer(self)
        self._pcutoff_timer.setSingleShot(True)
        self._pcutoff_timer.setInterval(DEBOUNCE_MS)
        self._pcutoff_timer.timeout.connect(self.apply_pcutoff)
        self.pcutoff.valueChanged.connect(lambda _value: self._pcutoff_timer.start())
        self.tail_length.valueChanged.connect(self.display.set_tail_length)
        self.range_box.currentIndexChanged.connect(self._update_controls)
        self.video_box.currentIndexChanged.connect(self._on_video_chosen)
        self.model.textChanged.connect(self._on_model_text)
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        self.viewer.layers.events.removed.connect(self._on_removed)
        for layer in self.viewer.layers:
            self._prefill_model(layer)
            if isinstance(layer, Image):
                layer.events.name.connect(self._refresh_videos)
        self._refresh_videos()
        self._update_controls()

    # -- building -------------------------------------------------------------------
    def _build_analysis(self) -> None:
        self.model = QLineEdit()
        self.model.setPlaceholderText("project folder, config.yaml, checkpoint (.pt) or exported model (.onnx)")
        self.model.setToolTip(
            "A project (its latest model), a checkpoint (.pt) or a model exported by the Training widget or "
            "'posekit export' (.onnx, runs without torch)"
        )
        self.browse_button = QPushButton("…")
        self.browse_button.setMaximumWidth(30)
        self.browse_button.clicked.connect(self._browse)
        self.backend_box = QComboBox()
        self.backend_box.addItems(backend_choices())
        self.backend_box.setCurrentText(AUTO_BACKEND)
        self.backend_box.setToolTip(
            "What runs the network. auto: the fastest backend that keeps the accuracy, measured once per model "
            "on this machine (the first analysis with a model takes up to half a minute longer) and remembered"
        )
        self.backend_used = QLabel("")
        self.backend_used.setToolTip("What ran the network in the last analysis")
        self.backend_used.setWordWrap(True)
        self.backend_used.hide()  # until a model is loaded
        self.video_box = QComboBox()
        self.range_box = QComboBox()
        self.range_box.addItems(RANGES)
        self.range_box.setCurrentText("Whole video")
        self.first, self.last = spin_box(0, 0, 0), spin_box(0, 0, 0)
        self.batch_size = spin_box(1, 1024, ANALYSIS_BATCH_SIZE)
        self.fast = QCheckBox("fast (crop around the animal)")
        self.fast.setChecked(True)
        self.fast.setToolTip(FAST_TIP)
        self.analyze_button = QPushButton("Analyze")
        self.analyze_button.clicked.connect(lambda: self.analyze())
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.found = QLabel("")
        self.found.setWordWrap(True)
        self.open_found_button = QPushButton("Open")
        self.open_found_button.setToolTip("Show the predictions of several animals found beside the video")
        self.open_found_button.clicked.connect(lambda: self.open_found())
        self.identities_button = QPushButton("Check identities…")
        self.identities_button.setToolTip(
            "Open these predictions in the Identities widget: step through the crossings, fix swaps, save corrected"
        )
        self.identities_button.clicked.connect(lambda: self.check_identities())

    def _build_predictions(self) -> None:
        self.pcutoff = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.pcutoff.setRange(0.0, 1.0)
        self.pcutoff.setDecimals(2)
        self.pcutoff.setSingleStep(0.01)
        self.pcutoff.setValue(PCUTOFF)
        self.pcutoff.setToolTip("Keypoints with a lower likelihood are hidden and left out of skeleton and tracks")
        self.tail_length = spin_box(0, 100_000, TAIL_LENGTH, suffix=" frames")
        self.save_button = QPushButton("Save predictions")
        self.save_button.clicked.connect(lambda: self.save_predictions())
        self.filter_method = QComboBox()
        for text, method in FILTERS:
            self.filter_method.addItem(text, method)
        self.filter_window = spin_box(3, 999, FILTER_WINDOW, step=2, suffix=" frames")
        self.filter_window.editingFinished.connect(self._odd_window)
        self.preview_button = QPushButton("Preview")
        self.preview_button.clicked.connect(lambda: self.preview_filter())
        self.save_filtered_button = QPushButton("Save filtered")
        self.save_filtered_button.clicked.connect(lambda: self.save_filtered())
        self.export_filtered = QCheckBox("filtered")
        self.export_filtered.setToolTip("Draw the filtered predictions (as previewed) instead of the raw ones")
        self.export_button = QPushButton("Export labeled video")
        self.export_button.clicked.connect(lambda: self.export_video())

    def _lay_out(self) -> None:
        self.span_row = QWidget()
        span = QHBoxLayout(self.span_row)
        span.setContentsMargins(0, 0, 0, 0)
        for part in (QLabel("from"), self.first, QLabel("to"), self.last):
            span.addWidget(part, 0 if isinstance(part, QLabel) else 1)
        form = QFormLayout()
        form.addRow("Model:", row(self.model, self.browse_button))
        form.addRow("Backend:", self.backend_box)
        form.addRow(self.backend_used)
        form.addRow("Video:", self.video_box)
        form.addRow("Frames:", self.range_box)
        form.addRow(self.span_row)
        form.addRow("Batch size:", self.batch_size)
        form.addRow("", self.fast)
        display = QFormLayout()
        display.addRow("p-cutoff:", self.pcutoff)
        display.addRow("Tail length:", self.tail_length)
        filters = QFormLayout()
        filters.addRow("Method:", self.filter_method)
        filters.addRow("Window:", self.filter_window)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(row(self.analyze_button, self.stop_button))
        layout.addWidget(self.status)
        self.found_row = QWidget()
        self.found_row.setLayout(row(self.found, self.open_found_button, stretch=(1,)))
        layout.addWidget(self.found_row)
        layout.addWidget(self.identities_button)
        layout.addWidget(QLabel("<b>Predictions</b>"))
        layout.addLayout(display)
        layout.addWidget(self.save_button)
        layout.addWidget(QLabel("<b>Filter</b>"))
        layout.addLayout(filters)
        layout.addLayout(row(self.preview_button, self.save_filtered_button))
        layout.addWidget(QLabel("<b>Labeled video</b>"))
        layout.addLayout(row(self.export_button, self.export_filtered, stretch=(1,)))
        layout.addStretch(1)

    # -- model and video ---------------------------------------------------------
    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Model: a checkpoint, an exported model or a project's config.yaml", "", MODEL_FILTER
        )
        if path:
            self.model.setText(str(Path(path).parent) if Path(path).name == "config.yaml" else path)

    def _on_model_text(self, text: str) -> None:
        multi = bool(text.strip()) and model_is_multianimal(text.strip())
        self.fast.setEnabled(not multi)  # several animals: always found on the whole frame, then cropped
        self.fast.setToolTip(FAST_TIP + ("; a multi-animal model always does so" if multi else ""))

    def _prefill_model(self, layer) -> None:
        config = project_config(layer)
        if config and not self.model.text().strip():
            self.model.setText(str(Path(config).parent))

    def _on_inserted(self, event) -> None:
        self._prefill_model(event.value)
        if isinstance(event.value, Image):
            event.value.events.name.connect(self._refresh_videos)
            self._refresh_videos()

    def _on_removed(self, event) -> None:
        layer = event.value
        self.analyses.forget(layer.unique_id)
        self.multi.forget(layer.unique_id)
        self.display.forget(layer)
        self.multi_display.forget(layer)
        if isinstance(layer, Image):
            layer.events.name.disconnect(self._refresh_videos)
            self._refresh_videos()

    def _refresh_videos(self, *_args) -> None:
        chosen = self._chosen
        current = chosen.name if chosen is not None and chosen in self.viewer.layers else self.video_box.currentText()
        names = [layer.name for layer in analysable_layers(self.viewer)]
        self.video_box.blockSignals(True)
        self.video_box.clear()
        self.video_box.addItems(names)
        if current in names:
            self.video_box.setCurrentText(current)
        else:  # prefer a video from the plugin's reader
            videos = [layer.name for layer in analysable_layers(self.viewer) if Key.VIDEO in layer.metadata]
            if videos:
                self.video_box.setCurrentText(videos[-1])
        self.video_box.blockSignals(False)
        self._on_video_chosen()

    def video_layer(self) -> Image | None:
        name = self.video_box.currentText()
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def _on_video_chosen(self, *_args) -> None:
        layer = self.video_layer()
        n = int(layer.data.shape[0]) if layer is not None else 1
        for box in (self.first, self.last):
            box.setRange(0, max(n - 1, 0))
        if layer is not self._chosen:  # another video: the range is all of it
            self._chosen = layer
            self.first.setValue(0)
            self.last.setValue(max(n - 1, 0))
        self._update_controls()

    def _update_controls(self, *_args) -> None:
        self.span_row.setVisible(self.range_box.currentText() == "Frame range")
        running, exporting = self.jobs.running("analyze"), self.jobs.running("export")
        writing = exporting is not None or self.jobs.running("save") is not None
        have = self.current_analysis() is not None
        multi, layer = self.current_multi(), self.video_layer()
        found = find_tracks_file(video_source(layer).path) if layer is not None and multi is None else None
        self.found_row.setVisible(found is not None)
        self.found.setText(f"Predictions of several animals beside the video: {found.name}" if found else "")
        self.open_found_button.setEnabled(not self.jobs.busy)
        self.identities_button.setVisible(multi is not None)
        self.identities_button.setEnabled(multi is not None and multi.saved is not None and not self.jobs.busy)
        self.analyze_button.setEnabled(running is None and self.jobs.running("track") is None)
        self.stop_button.setEnabled((running is not None and not running.stop_requested) or exporting is not None)
        self.preview_button.setEnabled(have and running is None)
        for button in (self.save_button, self.save_filtered_button, self.export_button):
            button.setEnabled(have and running is None and not writing)
        if multi is not None and not have:  # several animals: saved as DeepLabCut's multi-animal file
            self.save_button.setEnabled(running is None and not writing and self.jobs.running("track") is None)

    def current_analysis(self) -> Analysis | None:
        layer = self.video_layer()
        return self.analyses.get(layer.unique_id) if layer is not None else None

    def current_multi(self) -> MultiAnalysis | None:
        """The chosen video's analysis of several animals, if any."""
        layer = self.video_layer()
        return self.multi.get(layer.unique_id) if layer is not None else None

    def shown_layers(self, analysis: Analysis) -> dict[str, Any]:
        """The layers showing ``analysis``: ``points``, ``skeleton``, ``tracks`` and the filter preview's."""
        return self.display.of(analysis)

    def current_frame(self, layer: Image) -> int:
        """The frame of ``layer`` the viewer shows."""
        frame = layer.world_to_data(self.viewer.dims.point)[0]
        return int(min(max(round(float(frame)), 0), layer.data.shape[0] - 1))

    def frame_span(self, layer: Image) -> tuple[int, int]:
        """``(start, stop)`` of the frames to analyse."""
        which = self.range_box.currentText()
        current = self.current_frame(layer) if which == "Current frame" else 0
        return frame_span(which, int(layer.data.shape[0]), current, self.first.value(), self.last.value())

    # -- analysis -----------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """A job runs: analysis, saving or export."""
        return self.jobs.busy

    def _fail(self, what: str, message: str) -> None:
        self.status.setText(f"{what}: {message}")
        show_error(f"{what}: {message}")

    def analyze(self, which: str | None = None) -> Job | None:
        """Analyse the chosen frames in a job; returns the job, or None with a message.

        ``which`` is one of ``"Current frame"``, ``"Frame range"``, ``"Whole video"``
        (default: the widget's choice).
        """
        if self.jobs.running("analyze") or self.jobs.running("track"):
            return None
        if which is not None:
            self.range_box.setCurrentText(which)
        layer = self.video_layer()
        model = self.model.text().strip()
        problem = None
        if layer is None:
            problem = "open a video first (File > Open)"
        elif layer.multiscale or layer.ndim != 3:
            problem = f"{layer.name} is not a video or a stack of 2D images"
        elif not model:
            problem = (
                "choose a model: a project folder, its config.yaml, a checkpoint (.pt) or an exported model (.onnx)"
            )
        elif not Path(model).expanduser().exists():
            problem = f"{model}: no such project, checkpoint or model file"
        if problem:
            self._fail("Cannot analyse", problem)
            return None
        source = video_source(layer)
        start, stop = self.frame_span(layer)
        projects = [project_config(other) for other in self.viewer.layers if project_config(other)]
        try:
            kind = analysis_kind(model, source.path, project_of(projects[-1]) if projects else None)
        except ModelMismatch as err:
            self._fail("Cannot analyse", str(err))
            return None
        if kind == MULTI:
            return self._analyze_multi(layer, model, source, start, stop)
        run = AnalysisRun(layer.unique_id, start, stop, source.n_frames, video_path=source.path)
        frames = str(source.path) if source.path else layer.data
        cached, batch_size, fast = self.analyses.predictor, self.batch_size.value(), self.fast.isChecked()
        backend = self.backend_box.currentText()
        self.run = run

        def work(job: Job):
            def report(line: str) -> None:  # from the worker: recorded, the runner's timer shows it
                job.report(text=loading_text(line))

            return iter_analysis(
                model, cached, frames, start, stop, batch_size, fast, job.stopping, backend=backend, report=report
            )

        return self.jobs.start(
            "analyze",
            work,
            description=f"Analyzing {layer.name}",
            total=stop - start,
            status=run.start_text(),
            failure="Analysis failed",
            on_event=lambda job, event: self._on_event(run, job, event),
            on_tick=lambda job: self._draw(run),
            on_done=lambda job, result: self._on_returned(run, result),
            on_failed=lambda job, failed: self._on_returned(run, failed),
            on_finished=lambda job: self._on_finished(run),
        )

    def stop(self) -> None:
        """Ask the analysis to stop after the current block (what was analysed stays), or the export to stop."""
        self.jobs.stop("export", None)
        self.jobs.stop("analyze")

    # the runner's progress bar lets later signals through when it is drawn: the handlers take their run along
    def _on_event(self, run: AnalysisRun, job: Job, event: dict[str, Any]) -> None:
        replaced = self.analyses.receive(run, event)
        if replaced is not None:  # another model: its layers show the new predictions, its filter preview goes
            self.display.drop_filtered(run.layer_id)
        if event["event"] == "ready":
            self.backend_used.setText(run.backend_text())
            self.backend_used.setVisible(bool(run.backend))
            job.report(text=run.model_text())
        if event["event"] == "chunk":
            self._dirty = True
            job.report(done=run.done, text=run.status_text(), eta_s=run.eta_s())

    def _draw(self, run: AnalysisRun, final: bool = False) -> None:
        """Show what arrived: every so often (drawing takes at most a fifth of the time), all of it at the end."""
        now = time.monotonic()
        if self._dirty and run.analysis is not None and (final or now >= self._next_draw):
            self._dirty = False
            self.show_analysis(run.analysis, grow=not final)
            self._next_draw = time.monotonic() + 4 * (time.monotonic() - now)

    def _on_returned(self, run: AnalysisRun, result) -> None:
        if run.analysis is not None:
            run.analysis.refilter(self.pcutoff.value())  # the preview follows
        self._dirty = True
        self._draw(run, final=True)
        if not isinstance(result, Failed):
            layer = self.display.video(run.layer_id)
            self.status.setText(run.finished_text(layer.name if layer is not None else "the video"))

    def _on_finished(self, run: AnalysisRun) -> None:
        if self.run is run:
            self.run = None

    # -- layers ------------------------------------------------------------------
    def adopt(self, analysis: Analysis) -> None:
        """Take ``analysis`` (predictions made elsewhere for one of the viewer's videos) as this widget's own.

        Its layers are drawn and Save, Preview and Export work on it as on an analysis run here.
        """
        self.analyses.adopt(analysis)
        if analysis.saved is not None:
            self.last_output = analysis.saved
        self.show_analysis(analysis)
        self._update_controls()

    def show_analysis(
        self, analysis: Analysis, create: bool = True, grow: bool = False, data_changed: bool = True
    ) -> None:
        """Update the layers of ``analysis`` (and its filter preview) from its arrays.

        ``create`` adds the layers that are missing. ``grow`` (while an analysis
        runs) lets the Points layer grow in large steps, the rows past the
        predictions hidden. Without ``data_changed`` (a new p-cutoff) only what
        is shown changes.
        """
        self.display.show(analysis, create=create, grow=grow, data_changed=data_changed)

    def apply_pcutoff(self) -> None:
        """Hide keypoints below the p-cutoff and redraw skeletons and tracks (and the filter previews)."""
        self._pcutoff_timer.stop()
        running = self.run.analysis if self.run is not None else None
        for analysis in self.analyses:
            if analysis is running:  # redrawn with what arrives next
                self._dirty = True
                continue
            analysis.refilter(self.pcutoff.value())
            if self.display.of(analysis):
                self.show_analysis(analysis, create=False, data_changed=False)
        running = self.multi_run.analysis if self.multi_run is not None else None
        for multi in self.multi:
            if multi is not running:
                self.multi_display.show(multi, create=False)
