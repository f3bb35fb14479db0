"""Training dock widget: train a pose model on a project, watch the loss, evaluate, inspect the worst frames.

Training runs :func:`~napari_posekit.core.workflow.train_project` through the
widget's :class:`~napari_posekit._napari.jobs.JobRunner`; the work never
touches layers or widgets. Each step's progress is recorded by
:class:`~napari_posekit.controllers.training.TrainingRun`; the runner's timer
redraws the status, the progress bar and the loss curve at most ten times a
second, so the event loop stays responsive however fast the steps come. Stop
asks the generator to stop between steps (it saves a checkpoint first);
Resume continues that checkpoint. When training ends, the model is evaluated
and the test images with the largest errors are listed: clicking one shows it
with the network's predictions next to the labels. A multi-animal project trains its animal finder,
then its pose network, as one run (``iter_train_multi``); the status says where the model is.

Before training, the project's labels go through the fast label checks (no
model; a few seconds, in a job of their own): the line above Start counts
the suspects ("Labels: 2 suspects (1 swap, 1 geometry) — review them in Label
QA"), with the top one's reason as its tooltip. It is advice: Start is never
blocked. The checks run again when the project changes, when its label files
change (saved by any widget, a suspect marked correct) and with "Check labels";
:class:`~napari_posekit.controllers.training.LabelChecks` decides, and keeps
the warnings of training that repeat the line out of the notifications.

"Export model…" writes the project's latest model as a self-contained ONNX
file (:func:`~napari_posekit.controllers.models.run_export`, in a job of its
own): float32, or int8 calibrated on the project's labeled frames. A save
dialog offers the core's default name beside the checkpoint; the line under
the button shows the stages, then the file written and its size (or why it
could not be written). The Analysis widget and ``posekit analyze`` run such a
file without torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Points
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_posekit._napari._viewer import unwrap_viewer
from napari_posekit._napari.controls import double_spin_box, row, spin_box
from napari_posekit._napari.jobs import Job, JobRunner, format_eta
from napari_posekit._napari.label_advice import LabelCheckJobs
from napari_posekit._napari.layers import Key, bodypart_colors, is_image_stack_layer, project_config
from napari_posekit._napari.loss_curve import LossCurve
from napari_posekit._napari.preload import preload_training_modules
from napari_posekit.controllers.analysis_multi import is_multianimal_project
from napari_posekit.controllers.models import (
    EXPORT_FILTER,
    ExportResult,
    export_path,
    latest_checkpoint,
    model_name,
    onnx_path,
    project_folder,
    resume_checkpoint,
    run_export,
)
from napari_posekit.controllers.training import (
    BACKBONES,
    NOT_EVALUATED,
    SPLITS,
    WORST_SHOWN,
    ImageStack,
    SettingsError,
    TrainingRun,
    TrainSettings,
    evaluation_points,
    evaluation_table,
    evaluation_target,
    evaluation_text,
    find_image,
    iter_train_multi,
    train_kwargs,
    worst_images,
)
from napari_posekit.core.workflow import Evaluation, iter_evaluate_project, train_project

_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter


class TrainingWidget(QWidget):
    """Settings, Start/Stop/Resume, a live loss curve, the evaluation table and the worst test images."""

    def __init__(self, napari_viewer):
        super().__init__()
        preload_training_modules()
        self.viewer = unwrap_viewer(napari_viewer)
        self.evaluation: Evaluation | None = None
        self.checkpoint: Path | None = None
        self.predictions_layer: Points | None = None
        self.run: TrainingRun | None = None
        self._evaluate_when_done: Path | None = None
        self._evaluated_project: Path | None = None
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.eval_label = QLabel("")
        self.eval_label.setWordWrap(True)
        self.jobs = JobRunner(self.status.setText, self._update_buttons)
        self.eval_jobs = JobRunner(self.eval_label.setText, self._update_buttons)
        self.export_label = QLabel("")
        self.export_label.setWordWrap(True)
        self.export_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.export_jobs = JobRunner(self.export_label.setText, self._update_buttons)
        self.exported: ExportResult | None = None
        self.label_jobs = LabelCheckJobs(self, lambda: project_folder(self.project.text()), self._show_label_advice)
        self.label_checks = self.label_jobs.checks
        self._build_settings(TrainSettings.defaults())
        self._build_actions()
        self._build_evaluation()
        self._build_export()
        self._lay_out()
        self.project.textChanged.connect(self._update_buttons)
        self.project.textChanged.connect(lambda _text: self.label_jobs.run(force=False))
        self.split.currentTextChanged.connect(self._update_buttons)
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        for layer in self.viewer.layers:
            if not self.project.text() and project_config(layer):
                self.project.setText(project_config(layer))
        self._update_buttons()
        self.label_jobs.watch(True)

    # -- building -------------------------------------------------------------
    def _build_settings(self, defaults: TrainSettings) -> None:
        self.project = QLineEdit()
        self.project.setPlaceholderText("project config.yaml or folder")
        self.browse_button = QPushButton("…")
        self.browse_button.setMaximumWidth(30)
        self.browse_button.clicked.connect(self._browse)
        self.backbone = QComboBox()
        self.backbone.setEditable(True)
        self.backbone.addItems(BACKBONES)
        self.backbone.setCurrentText(defaults.backbone)
        self.pretrained = QCheckBox("ImageNet weights")
        self.pretrained.setChecked(defaults.pretrained)
        self.input_scale = double_spin_box(
            0.0,
            4.0,
            defaults.input_scale,
            step=0.05,
            special="default",
            tip="Scale images by this factor for the network (default: from the labels, 1 unless the animal spans "
            "more than a 224-px crop; Resume keeps the trained scale)",
        )
        self.batch_size = spin_box(1, 1024, defaults.batch_size)
        self.epochs = spin_box(
            0,
            1_000_000,
            defaults.epochs,
            special="no limit",
            tip="Passes over the training images; training ends at this or the time budget",
        )
        self.minutes = double_spin_box(
            0.0,
            100_000.0,
            defaults.minutes,
            decimals=1,
            suffix=" min",
            special="no limit",
            tip="Wall-clock training time; the learning rate schedule follows it",
        )
        self.lr = double_spin_box(1e-6, 1.0, defaults.lr, decimals=6, step=1e-4)
        self.split = QComboBox()
        self.split.addItems(SPLITS)
        self.split.setCurrentText(defaults.split)
        self.split.setToolTip("random: test images drawn at random; block: the last labeled images, a contiguous block")

    def _build_actions(self) -> None:
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(lambda: self.start())
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.resume_button = QPushButton("Resume")
        self.resume_button.clicked.connect(lambda: self.start(resume=True))
        self.curve = LossCurve()
        self.labels_label = QLabel("")
        self.labels_label.setWordWrap(True)
        self.check_labels_button = QPushButton("Check labels")
        self.check_labels_button.setToolTip(
            "Look for labeling mistakes (left/right swaps, misplaced parts, duplicates) without a model; "
            "the Label QA widget lists them with fixes"
        )
        self.check_labels_button.clicked.connect(lambda: self.label_jobs.run())

    def _build_evaluation(self) -> None:
        self.evaluate_button = QPushButton("Evaluate")
        self.evaluate_button.clicked.connect(lambda: self.evaluate())
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.table.hide()  # until there is an evaluation
        self.worst = QListWidget()
        self.worst.setMaximumHeight(170)
        self.worst.itemClicked.connect(lambda item: self.jump_to_worst(self.worst.row(item)))

    def _build_export(self) -> None:
        self.int8 = QCheckBox("int8 (calibrated on the labeled frames)")
        self.int8.setToolTip(
            "Quantise the network to 8-bit integers, calibrated on the project's labeled frames: a smaller file "
            "that often runs faster on a CPU (about 15 s to export). Unchecked: float32, exactly the trained model"
        )
        self.export_button = QPushButton("Export model…")
        self.export_button.clicked.connect(lambda: self.export_model())

    def _lay_out(self) -> None:
        form = QFormLayout()
        form.addRow("Project:", row(self.project, self.browse_button))
        form.addRow("Backbone:", self.backbone)
        form.addRow("", self.pretrained)
        form.addRow("Input scale:", self.input_scale)
        form.addRow("Batch size:", self.batch_size)
        form.addRow("Epochs:", self.epochs)
        form.addRow("Time budget:", self.minutes)
        form.addRow("Learning rate:", self.lr)
        form.addRow("Test split:", self.split)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(row(self.labels_label, self.check_labels_button, stretch=(1,)))
        layout.addLayout(row(self.start_button, self.stop_button, self.resume_button))
        layout.addWidget(self.status)
        layout.addWidget(self.curve, 1)
        layout.addLayout(row(QLabel("<b>Evaluation</b>"), self.evaluate_button, stretch=(1,)))
        layout.addWidget(self.eval_label)
        layout.addWidget(self.table)
        layout.addWidget(QLabel("Worst test images (click to show with predictions):"))
        layout.addWidget(self.worst)
        layout.addLayout(row(QLabel("<b>Export</b>"), self.int8, self.export_button, stretch=(0, 1)))
        layout.addWidget(self.export_label)

    # -- project and settings -------------------------------------------------
    def _on_inserted(self, event) -> None:
        config = project_config(event.value)
        if config and self.jobs.running("train") is None:
            self.project.setText(config)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Project config.yaml", "", "config.yaml (config.yaml)")
        if path:
            self.project.setText(path)

    def settings(self) -> TrainSettings:
        """What the controls hold."""
        return TrainSettings(
            backbone=self.backbone.currentText(),
            pretrained=self.pretrained.isChecked(),
            batch_size=self.batch_size.value(),
            lr=self.lr.value(),
            split=self.split.currentText(),
            epochs=self.epochs.value(),
            minutes=self.minutes.value(),
            input_scale=self.input_scale.value(),
        )

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``train_project`` from the settings (SettingsError when no run could use them)."""
        return train_kwargs(self.settings())

    # -- label checks ---------------------------------------------------------
    def _show_label_advice(self) -> None:
        text, tip = self.label_checks.text(project_folder(self.project.text()), self.label_jobs.busy)
        self.labels_label.setText(text)
        self.labels_label.setToolTip(tip)
        self.labels_label.setVisible(bool(text))
        self.check_labels_button.setEnabled(not self.label_jobs.busy)

    # -- training -------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.jobs.busy or self.eval_jobs.busy or self.export_jobs.busy

    def _fail(self, what: str, message: str) -> None:
        self.status.setText(f"{what}: {message}")
        show_error(f"{what}: {message}")

    def start(self, resume: bool = False, **overrides) -> Job | None:
        """Start (or resume) training; returns the job, or None with a message.

        ``overrides`` are further keyword arguments for ``train_project``
        (e.g. ``input_size``, ``device``).
        """
        if self.busy:
            return None
        project = project_folder(self.project.text())
        if project is None:
            text = self.project.text().strip()
            self._fail(
                "Cannot train", f"'{text}' is not a project (no config.yaml)" if text else "choose a project first"
            )
            return None
        multi = bool(is_multianimal_project(project))
        try:
            options = train_kwargs(self.settings(), **overrides)
            if multi and resume:
                raise SettingsError("a multi-animal model cannot be resumed yet; Start trains it again")
        except SettingsError as err:
            self._fail("Cannot train", str(err))
            return None
        self.run = TrainingRun(project, resume=resume, multi=multi)
        self._evaluate_when_done = None
        if not resume:
            self.curve.clear()
        train = iter_train_multi if multi else train_project
        return self.jobs.start(
            "train",
            lambda job: train(project, stop=job.stopping, **({} if multi else {"resume": resume}), **options),
            description="Resuming training" if resume else "Training",
            status="Resuming training…" if resume else "Starting training…",
            failure="Training failed",
            on_event=self._on_progress,
            on_tick=lambda job: self.curve.update(),
            on_done=self._on_trained,
            on_finished=self._on_train_finished,
        )

    def stop(self) -> None:
        """Ask training to stop after the current step; it saves a checkpoint first."""
        self.jobs.stop("train", "Stopping: saving a checkpoint…")

    def _on_progress(self, job: Job, event: dict[str, Any]) -> None:
        # only record here: the runner's timer draws (steps can come faster than the screen needs)
        run = self.run
        if self.label_checks.shown_already(event, run.project, self.label_jobs.busy):
            return  # the label line says it already
        if run.record(event, self.curve.history) == "warning":
            if run.show_warning():
                show_warning(str(event.get("message")))
            return
        job.description = f"Training: epoch {run.epoch}"
        job.report(run.fraction, text=run.status_text(self.curve.history, format_eta(run.eta_s)), eta_s=run.eta_s)

    def _on_trained(self, job: Job, checkpoint) -> None:
        self.run.stopped = job.stop_requested
        text = self.run.finished_text(Path(checkpoint))
        self.status.setText(text)
        show_info(text)
        if not self.run.multi:  # a multi-animal model is not evaluated here (yet)
            self.checkpoint = Path(checkpoint)
            self._evaluate_when_done = None if self.run.stopped else self.checkpoint  # after the job

    def _on_train_finished(self, job: Job) -> None:
        more = self.run.more_warnings()
        if more:
            show_warning(more)
        self.curve.update()
        self._evaluate_pending()

    def _evaluate_pending(self) -> None:
        """Evaluate the model a finished run wrote, once the run's job has ended."""
        if self._evaluate_when_done is not None and not self.busy:
            checkpoint, self._evaluate_when_done = self._evaluate_when_done, None
            self.evaluate(checkpoint)

    def _update_buttons(self, *_args) -> None:
        job = self.jobs.running("train")
        resumable = resume_checkpoint(project_folder(self.project.text()), self.split.currentText()) is not None
        self.start_button.setEnabled(not self.busy)
        self.resume_button.setEnabled(not self.busy and resumable)
        self.stop_button.setEnabled(job is not None and not job.stop_requested)
        self.evaluate_button.setEnabled(not self.busy)
        exportable = self.export_source() is not None
        self.export_button.setEnabled(not self.busy and exportable)
        self.export_button.setToolTip(
            "Write the project's latest model as one ONNX file (runs without torch: Analysis, posekit analyze, "
            "onnxruntime, OpenVINO)"
            if exportable
            else "Train a model first: the project has none to export"
        )

    # -- export ---------------------------------------------------------------
    def export_source(self) -> Path | None:
        """The checkpoint Export writes: the project's latest model, or None (no project, no model yet)."""
        return latest_checkpoint(project_folder(self.project.text()))

    def export_model(self, output: str | os.PathLike | None = None, int8: bool | None = None) -> Job | None:
        """Export the project's latest model in a job; returns it, or None (busy, no model, dialog cancelled).

        ``output`` defaults to a save dialog (offering the file beside the
        checkpoint); ``int8`` to the checkbox.  A file chosen in the dialog
        replaces one of that name (the dialog asked); a given ``output`` never does.
        """
        if self.busy:
            return None
        checkpoint = self.export_source()
        if checkpoint is None:
            self._export_failed("the project has no trained model yet; train one first")
            return None
        int8 = self.int8.isChecked() if int8 is None else bool(int8)
        overwrite = False
        if output is None:
            chosen, _ = QFileDialog.getSaveFileName(
                self, "Export model as ONNX", str(export_path(checkpoint, int8)), EXPORT_FILTER
            )
            if not chosen:
                return None
            output, overwrite = chosen, Path(chosen).exists()  # the dialog asked about that file
        output = onnx_path(output)
        kind = "int8" if int8 else "float32"

        def report(job: Job, fraction: float | None, line: str) -> None:
            job.report(fraction, text=f"Exporting ({kind}): {line}")  # drawn by the runner's timer

        return self.export_jobs.start(
            "export",
            lambda job: run_export(
                checkpoint,
                output,
                int8=int8,
                overwrite=overwrite,
                progress=lambda fraction, line: report(job, fraction, line),
            ),
            description=f"Exporting the model ({kind})",
            status=f"Exporting {model_name(checkpoint)} ({kind}) to {output.name}…",
            failure="Export failed",
            on_done=lambda job, result: self._on_exported(result, project_folder(self.project.text())),
        )

    def _export_failed(self, message: str) -> None:
        self.export_label.setText(f"Cannot export: {message}")
        show_error(f"Cannot export: {message}")

    def _on_exported(self, result: ExportResult, project: Path | None) -> None:
        self.exported = result
        self.export_label.setText(result.text(project))
        self.export_label.setToolTip(str(result.path))
        show_info(result.text())

    # -- evaluation -----------------------------------------------------------
    def evaluate(self, checkpoint: str | os.PathLike | None = None) -> Job | None:
        """Evaluate ``checkpoint`` (default: the last one trained here, else the project's latest) in a job."""
        if self.busy:
            return None
        project = project_folder(self.project.text())
        if project is None or is_multianimal_project(project):
            self._fail("Cannot evaluate", NOT_EVALUATED if project else "choose a project first")
            return None
        target = evaluation_target(checkpoint, self.checkpoint, project)
        return self.eval_jobs.start(
            "evaluate",
            lambda job: iter_evaluate_project(project, target, stop=job.stopping),
            description="Evaluating",
            status="Evaluating…",
            failure="Evaluation failed",
            on_event=lambda job, e: job.report(
                e["done"] / max(e["total"], 1), text=f"Evaluating: {e['done']}/{e['total']} images"
            ),
            on_done=lambda job, result: self._on_evaluated(project, result),
            on_finished=self._on_eval_finished,
        )

    def _on_eval_finished(self, job: Job) -> None:
        self.status.setText(self.status.text().removesuffix(" Evaluating…"))

    def _on_evaluated(self, project: Path, evaluation: Evaluation | None) -> None:
        if evaluation is None:  # stopped: nothing was evaluated or written
            self.eval_label.setText("Evaluation stopped.")
            return
        self.evaluation = evaluation
        self._evaluated_project = project.resolve()
        self._fill_table(evaluation)
        self._fill_worst(evaluation)
        self.eval_label.setText(evaluation_text(evaluation))

    def _fill_table(self, evaluation: Evaluation) -> None:
        table = evaluation_table(evaluation)
        self.table.clear()
        self.table.setRowCount(len(table.rows))
        self.table.setColumnCount(len(table.headers))
        self.table.setHorizontalHeaderLabels(table.headers)
        self.table.setVerticalHeaderLabels(table.rows)
        for c, tooltip in enumerate(table.tooltips):
            self.table.horizontalHeaderItem(c).setToolTip(tooltip)
        for r, cells in enumerate(table.cells):
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setTextAlignment(_RIGHT)
                self.table.setItem(r, c, item)
        self.table.show()
        self._fit_table()

    def _fit_table(self) -> None:
        """Exactly as high as its rows (plus a scroll bar when the columns do not fit)."""
        self.table.resizeRowsToContents()
        height = self.table.horizontalHeader().sizeHint().height() + 2 * self.table.frameWidth()
        height += sum(self.table.rowHeight(r) for r in range(self.table.rowCount()))
        height += self.table.horizontalScrollBar().sizeHint().height()
        self.table.setFixedHeight(max(height, 40))

    def _fill_worst(self, evaluation: Evaluation) -> None:
        self.worst.clear()
        worst = worst_images(evaluation)
        for text, image in worst:
            item = QListWidgetItem(text)
            item.setToolTip(image)
            item.setData(Qt.ItemDataRole.UserRole, image)
            self.worst.addItem(item)
        if not worst:
            self.worst.addItem("(no test images)")

    # -- worst frames -----------------------------------------------------------
    def _find_image(self, image: str) -> tuple[Points, int] | None:
        """The keypoints layer of the evaluated project showing ``image``, and its frame index there."""
        layers = [layer for layer in self.viewer.layers if is_image_stack_layer(layer)]
        stacks = [
            ImageStack(i, layer.metadata[Key.IMAGES], layer.metadata.get(Key.FOLDER), layer.metadata.get(Key.CONFIG))
            for i, layer in enumerate(layers)
        ]
        found = find_image(image, stacks, self._evaluated_project)
        return (layers[found[0]], found[1]) if found is not None else None

    def jump_to_worst(self, row: int) -> None:
        """Show the ``row``-th worst test image with the model's predictions (opening the project if needed)."""
        if self.evaluation is None:
            return
        worst = self.evaluation.worst_test.head(WORST_SHOWN)
        if not 0 <= row < len(worst):
            return
        image = str(worst["image"].iloc[row])
        found = self._find_image(image)
        if found is None and self._evaluated_project is not None:
            folder = (self._evaluated_project / image).parent
            if folder.is_dir():
                self.viewer.open(str(folder), plugin="napari-posekit")
                found = self._find_image(image)
        if found is None:
            self._fail("Cannot show", f"{image} is not open in the viewer and could not be opened")
            return
        layer, frame = found
        self._show_predictions(layer)
        step = list(self.viewer.dims.current_step)
        step[0] = frame
        self.viewer.dims.current_step = tuple(step)
        self.viewer.layers.selection.active = layer

    def _show_predictions(self, layer: Points) -> None:
        """A read-only Points layer with the predictions for the images of ``layer``."""
        evaluation = self.evaluation
        data, parts, likelihood, bodyparts = evaluation_points(evaluation.per_image, layer.metadata[Key.IMAGES])
        colors = layer.metadata.get(Key.COLORS) or bodypart_colors(bodyparts)
        fallback = bodypart_colors(bodyparts)
        features = pd.DataFrame({"bodypart": pd.Categorical(parts, categories=bodyparts), "likelihood": likelihood})
        face = np.array([tuple(colors.get(bp, fallback[bp])) for bp in parts], dtype=float).reshape(-1, 4)
        name = f"predictions ({model_name(evaluation.checkpoint)})"
        metadata = {
            Key.PREDICTIONS: True,
            Key.READONLY: True,
            Key.CHECKPOINT: str(evaluation.checkpoint),
            Key.FOLDER: layer.metadata.get(Key.FOLDER),
        }
        existing = next((other for other in self.viewer.layers if other.name == name), None)
        if isinstance(existing, Points) and existing.metadata.get(Key.PREDICTIONS):
            predictions = existing
            predictions.data = data
            predictions.features = features
            if len(face):
                predictions.face_color = face
            predictions.symbol = "cross"
            predictions.metadata.update(metadata)
        else:
            sizes = np.asarray(layer.size, dtype=float).ravel()
            size = float(np.median(sizes)) if sizes.size else 8.0
            predictions = self.viewer.add_points(
                data,
                ndim=3,
                name=name,
                features=features,
                symbol="cross",
                size=size,
                border_width=0,
                metadata=metadata,
                **({"face_color": face} if len(face) else {}),
            )
        predictions.editable = False
        self.predictions_layer = predictions
