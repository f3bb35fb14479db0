"""Refine dock widget: find where the network fails, correct those frames, retrain — in one viewer session.

The loop, DeepLabCut's ``extract_outlier_frames`` / ``refine_labels`` /
``merge_datasets`` / retrain, in one dock widget:

1. **Find outliers** scores every frame of a video's predictions with
   :func:`~napari_posekit.core.outliers.outlier_scores` (jumps, low likelihood,
   distance from the smoothed trajectory) and picks diverse frames with
   :func:`~napari_posekit.core.outliers.iter_select_outliers`. The predictions
   are the Analysis widget's layer for the video when it holds the current
   model's predictions, else the model's prediction file beside the video, else
   a fresh analysis with the project's latest model (or any prediction file
   when the project has no model). The ranked candidates are listed with their
   scores, and a small plot shows the combined score over the video with the
   picked frames marked; clicking a row or the plot shows that frame.
2. **Accept for labeling** writes the checked frames as PNGs into
   ``labeled-data/<video>/`` with their predictions as machine labels
   (``machinelabels-iter<i>.h5``) and opens the folder as an editable keypoints
   layer: machine labels are diamonds with a yellow ring, human labels discs.
   Drag the wrong points, delete the invisible ones (select, then Delete);
   every edit goes to the folder's crash-safe journal first, through the
   layer's one :class:`~napari_posekit._napari.label_session.LabelSession`
   (shared with the Labeling widget).
3. **Save** merges with :func:`~napari_posekit.core.refine.save_refinement`:
   the accepted frames become human labels in CollectedData, deletions stay
   deleted, every other human label is written back bit for bit.
4. **Retrain** fine-tunes the current checkpoint on the merged labels
   (``train_project(..., init_from=checkpoint)``), optionally re-analyses the
   video, and shows the error of the model before and after on the corrected
   frames and on the earlier labels.

**Include label suspects** ranks the project's suspect labels (fast checks) with the outlier frames on one
scale (:func:`~napari_posekit.controllers.refine.common_score`); choosing one shows its image for correction.

The widget is a view: :class:`~napari_posekit.controllers.refine.RefineController`
holds the state and makes the decisions, :class:`~napari_posekit._napari.refine_view.RefineView`
the controls. The long work (analysing, scoring, reading frames, writing the
accepted frames and reading the folder back, fine-tuning) runs in the
:class:`~napari_posekit._napari.jobs.JobRunner`, one job at a time; jobs never
touch layers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image, Points
from napari.utils.notifications import show_error, show_info, show_warning

from napari_posekit._napari import label_advice, refine_layers
from napari_posekit._napari._viewer import unwrap_viewer
from napari_posekit._napari.jobs import KNOWN_ERRORS, JobRunner, error_message, format_eta
from napari_posekit._napari.label_session import Change, LabelSession, session_for
from napari_posekit._napari.layers import Key, analysable_layers
from napari_posekit._napari.preload import preload_training_modules
from napari_posekit._napari.refine_view import RefineView
from napari_posekit.controllers import refine
from napari_posekit.controllers.models import model_name, project_folder
from napari_posekit.core.frames import frame_of_image
from napari_posekit.core.project import ProjectError

__all__ = ["RefineWidget"]

EXPECTED_ERRORS = (ProjectError, *KNOWN_ERRORS)


class RefineWidget(RefineView):
    """Outlier frames of a video, their correction as machine labels, the merge and the retraining."""

    def __init__(self, napari_viewer):
        super().__init__()
        preload_training_modules()
        self.viewer = unwrap_viewer(napari_viewer)
        self.controller = refine.RefineController()
        self.jobs = JobRunner(self.status.setText, self._update_controls)
        self.session: LabelSession | None = None  # the label session of the folder opened for correction
        self.image_layer: Image | None = None  # that folder's images
        self.predictions_layer: Points | None = None  # the retrained model's predictions
        self.saved = None  # what the last save wrote (core.refine's result)
        self._progress = refine.JobProgress("find", format_eta)
        self._chosen: Image | None = None
        self.label_jobs = label_advice.LabelCheckJobs(self, self.project_path, self._show_candidates)
        self.controller.label_checks = self.label_jobs.checks
        self._showing_labels: list = []  # the layers of a label suspect's folder, while they are shown
        self._connect()
        self._refresh_videos()
        self._update_controls()

    def _connect(self) -> None:
        self.project.textChanged.connect(self._update_controls)
        self.video_box.currentIndexChanged.connect(self._on_video_chosen)
        self.find_button.clicked.connect(lambda: self.find_outliers())
        self.stop_button.clicked.connect(self.stop)
        self.include_labels.toggled.connect(self._on_include_labels)
        self.curve.frame_clicked.connect(lambda frame: self.jump_to_frame(frame))
        self.table.cellClicked.connect(lambda row, _col: self.jump_to_row(row))
        self.table.itemChanged.connect(lambda _item: self._update_controls())
        self.accept_button.clicked.connect(lambda: self.accept())
        self.save_button.clicked.connect(lambda: self.save())
        self.retrain_button.clicked.connect(lambda: self.retrain())
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        self.viewer.layers.events.removed.connect(self._on_removed)
        self.viewer.dims.events.current_step.connect(self._on_step)
        for layer in self.viewer.layers:
            self._prefill_project(layer)
            if isinstance(layer, Image):
                layer.events.name.connect(self._refresh_videos)

    # -- the controller's state ----------------------------------------------------------
    @property
    def candidates(self) -> refine.Candidates | None:
        return self.controller.candidates

    @property
    def corrections(self) -> refine.Corrections | None:
        return self.controller.corrections

    @property
    def retrained(self) -> refine.Retrained | None:
        return self.controller.retrained

    @property
    def comparison(self) -> dict[str, dict[str, float]]:
        return self.controller.comparison

    @property
    def corrected(self) -> set[str]:
        return self.controller.corrected

    @property
    def busy(self) -> bool:
        return self.jobs.busy

    def deleted_cells(self) -> list[tuple[str, str]]:
        """``(image, body part)`` labelled when opened (or saved) and deleted since."""
        return self.corrections.deleted_cells() if self.corrections is not None else []

    # -- inputs ------------------------------------------------------------------------
    def _prefill_project(self, layer) -> None:
        if self.project.text().strip() or self.busy:
            return
        config = refine_layers.layer_project(layer)
        if config:
            self.project.setText(config)

    def _on_inserted(self, event) -> None:
        self._prefill_project(event.value)
        if isinstance(event.value, Image):
            event.value.events.name.connect(self._refresh_videos)
            self._refresh_videos()

    def _on_removed(self, event) -> None:
        layer = event.value
        had = self.candidates
        self.controller.forget(layer.unique_id)
        if self.session is not None and layer is self.session.layer:
            self._detach()
        if self.predictions_layer is layer:
            self.predictions_layer = None
        if had is not None and self.candidates is None:
            self._show_candidates()
        if isinstance(layer, Image):
            layer.events.name.disconnect(self._refresh_videos)
            self._refresh_videos()

    def _refresh_videos(self, *_args) -> None:
        chosen = self._chosen
        current = chosen.name if chosen is not None and chosen in self.viewer.layers else self.video_box.currentText()
        refine_images = {self.image_layer.name} if self.image_layer is not None else set()
        names = [layer.name for layer in analysable_layers(self.viewer) if layer.name not in refine_images]
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

    def _on_video_chosen(self, *_args) -> None:
        self._chosen = self.video_layer()
        self._update_controls()

    def video_layer(self) -> Image | None:
        name = self.video_box.currentText()
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def _layer(self, layer_id: Any):
        """The layer with ``unique_id`` ``layer_id`` in the viewer, or None."""
        return next((layer for layer in self.viewer.layers if layer.unique_id == layer_id), None)

    @staticmethod
    def video_path(layer: Image) -> Path | None:
        return refine_layers.video_path(layer)

    def project_path(self) -> Path | None:
        return project_folder(self.project.text())

    # -- jobs -----------------------------------------------------------------------------
    def _fail(self, what: str, message: str) -> None:
        self.status.setText(f"{what}: {message}")
        show_error(f"{what}: {message}")

    def _update_controls(self, *_args) -> None:
        busy = self.busy
        stopping = all(job.stop_requested for job in self.jobs.jobs.values())
        self.find_button.setEnabled(not busy)
        self.stop_button.setEnabled(busy and not stopping)
        self.accept_button.setEnabled(not busy and self.candidates is not None and bool(self._checked_frames()))
        self.save_button.setEnabled(not busy and self.corrections is not None and self.corrections.unsaved)
        self.retrain_button.setEnabled(not busy and self.project_path() is not None)

    def stop(self) -> None:
        """Ask the running job to stop (training saves a checkpoint first)."""
        self.jobs.stop()

    def _start(self, kind: str, work, description: str, on_done, failure: str, on_failed=None):
        self._progress = refine.JobProgress(kind, format_eta)
        return self.jobs.start(
            kind,
            work,
            description=description,
            failure=failure,
            on_event=self._on_event,
            on_done=on_done,
            on_failed=on_failed,
        )

    def _on_event(self, job, event: dict[str, Any]) -> None:
        if event.get("event") == "warning":
            show_warning(str(event.get("message")))
            return
        text = self._progress.record(event)
        job.report(self._progress.fraction, text=text)

    # -- find outliers -----------------------------------------------------------------
    def _shown_predictions(self, video: Image, n_frames: int, bodyparts: list[str] | None):
        """The predictions of the layer that shows ``video``'s, unless a newer model was trained since."""
        shown = refine_layers.find_predictions_layer(self.viewer, video)
        if shown is None or self.controller.stale.get(shown.unique_id) == refine_layers.fingerprint(shown):
            return None
        return refine_layers.predictions_from_layer(shown, n_frames, bodyparts)

    def find_outliers(self):
        """Score the chosen video's predictions and pick outlier frames in a job; returns it, or None."""
        if self.busy:
            return None
        layer = self.video_layer()
        if layer is None:
            self._fail("Cannot find outliers", "open a video first (File > Open)")
            return None
        if layer.multiscale or layer.ndim != 3:
            self._fail("Cannot find outliers", f"{layer.name} is not a video or a stack of 2D images")
            return None
        text, project = self.project.text().strip(), self.project_path()
        if text and project is None:
            self._fail("Cannot find outliers", f"'{text}' is not a project (no config.yaml)")
            return None
        video_path, n_frames = self.video_path(layer), int(layer.data.shape[0])
        try:
            bodyparts = refine.project_bodyparts(project)
            task = self.controller.find_task(
                video=layer.unique_id,
                video_name=layer.name,
                video_path=video_path,
                source=str(video_path) if video_path else layer.data,
                n_frames=n_frames,
                project=project,
                bodyparts=bodyparts,
                options=self.options(),
                n=int(self.count.value()),
                fresh=self.reanalyse_first.isChecked(),
                shown=lambda: self._shown_predictions(layer, n_frames, bodyparts),
            )
        except EXPECTED_ERRORS as err:
            self._fail("Cannot find outliers", error_message(err))
            return None
        what = (
            "Scoring"
            if task.predictions is not None
            else "Reading and scoring"
            if task.prediction_file
            else "Analysing and scoring"
        )
        return self._start(
            "find",
            lambda job: refine.iter_find(task, job.stopping),
            f"{what} {layer.name}",
            self._on_found,
            "Cannot find outliers",
        )

    def _on_found(self, _job, result: refine.Candidates | None) -> None:
        if result is None:
            self.status.setText("Stopped; no outliers were picked.")
            return
        if self._layer(result.video) is None:
            return
        self.status.setText(self.controller.found(result))
        self._show_candidates()

    def _show_candidates(self) -> None:
        c = self.candidates
        project = self.project_path()
        self.show_rows(self.controller.rows(project), self.controller.labels_text(project, self.label_jobs.busy))
        if c is None:
            self.curve.set_scores(np.zeros(0), [], set())
        else:
            done = self.controller.accepted_frames() | self.controller.corrected_frames()
            self.curve.set_scores(c.scores.combined, c.picked, done, c.previous)
        self._update_controls()

    # -- navigation ----------------------------------------------------------------------
    def _show(self, show_folder: bool) -> None:
        """Show the refine folder's layers or the video's (the other group is hidden: their frames differ)."""
        video = self._layer(self.candidates.video) if self.candidates is not None else self.video_layer()
        points = self.session.layer if self.session is not None else None
        folder = refine_layers.folder_group(self.viewer, points, self.image_layer)
        refine_layers.set_visible(folder, show_folder)
        refine_layers.set_visible(refine_layers.video_group(self.viewer, video) if video else [], not show_folder)

    def jump_to_frame(self, frame: int) -> None:
        """Show video frame ``frame``: in the refine layer when it was accepted there, else in the video."""
        frame, showing_labels, self._showing_labels = int(frame), self._showing_labels, []
        refine_layers.set_visible([layer for layer in showing_labels if layer in self.viewer.layers], False)
        c = self.corrections
        index = c.index(frame) if c is not None and self.session is not None else None
        if index is not None:
            self._show(show_folder=True)
            self.viewer.dims.set_current_step(0, index)
            self.viewer.layers.selection.active = self.session.layer
        else:
            if self.session is not None or showing_labels:
                self._show(show_folder=False)
            self.viewer.dims.set_current_step(0, frame)
        self.curve.set_current(frame)

    def jump_to_row(self, row: int) -> None:
        if 0 <= row < len(self.rows_shown):
            chosen = self.rows_shown[row]
            if isinstance(chosen, refine.LabelRow):
                self.jump_to_label(chosen)
            else:
                self.jump_to_frame(chosen.frame)

    def _on_step(self, _event=None) -> None:
        if self._showing_labels:
            self.curve.set_current(None)
            return
        if self.candidates is None or self.viewer.dims.ndim < 3:
            return
        step = int(self.viewer.dims.current_step[0])
        layer, c = (self.session.layer if self.session else None), self.corrections
        if layer is not None and c is not None and layer.visible and getattr(self.image_layer, "visible", False):
            step = frame_of_image(c.images[step]) if 0 <= step < len(c.images) else None
        self.curve.set_current(step)

    # -- label suspects -------------------------------------------------------------------
    def _on_include_labels(self, on: bool) -> None:
        self.controller.include_labels = on
        self.label_jobs.watch(on)
        self._show_candidates()

    def jump_to_label(self, row: refine.LabelRow) -> None:
        """Show a label suspect's image in the project's keypoints layer (opening its folder when none shows it)."""
        video = self._layer(self.candidates.video) if self.candidates is not None else self.video_layer()
        hide = refine_layers.video_group(self.viewer, video) if video is not None else []
        if self.session is not None:
            hide += refine_layers.folder_group(self.viewer, self.session.layer, self.image_layer)
        shown = label_advice.show_labeled(self.viewer, row.image, self.project_path(), hide)
        if shown is None:
            self._fail("Cannot show", f"{row.image} is not open in the viewer and could not be opened")
            return
        self._showing_labels = shown
        self.curve.set_current(None)
        self.status.setText(row.status_text())

    # -- accept ----------------------------------------------------------------------------
    def accept(self, frames: list[int] | None = None):
        """Write the checked frames (or ``frames``) into the project in a job, then open them for correction.

        Returns the job, or None (with a message) when the frames cannot be written now.
        """
        if self.busy:
            return None
        try:
            task = self.controller.accept_task(
                self._checked_frames() if frames is None else frames, self.project_path()
            )
        except ValueError as err:
            self._fail("Cannot accept", str(err))
            return None
        # two layers must never claim the same folder: an unsaved one wins and nothing is written
        problem = refine_layers.unsaved_claim(self.viewer, task.folder)
        if problem:
            self._fail("Cannot accept", problem)
            return None
        return self._start(
            "accept",
            lambda job: refine_layers.read_folder(refine.write_accepted(task)),
            f"Writing {len(task.frames)} frames",
            self._on_accepted,
            "Cannot accept",
        )

    def _on_accepted(self, _job, accepted: refine.Accepted) -> None:
        if accepted.taken:
            show_info(f"Frames {accepted.taken} are in the project already; they are left as they are.")
        if not accepted.frames:
            self.status.setText("Nothing written: every checked frame is in the project already.")
            return
        if "error" in accepted.extra:
            self._fail("Cannot open the frames", f"{accepted.folder}: {error_message(accepted.extra['error'])}")
            return
        for text in accepted.extra.get("warnings", []):
            show_warning(text)
        if self._open_folder(accepted.folder, accepted.extra["layers"]) is None:
            return
        frames = accepted.frames
        self.controller.accepted(frames)
        self._show_candidates()
        self.refine_label.setText(
            f"{len(frames)} frames to correct in the selected keypoints layer: machine labels are yellow-ringed "
            f"diamonds ({len(self.session.machine)}), human labels discs. Drag wrong points, delete invisible ones "
            f"(select, Delete), then Save."
        )
        name = accepted.machine_file.name if accepted.machine_file else "machine labels"
        self.status.setText(
            f"Wrote {len(frames)} frames and their machine labels ({name}) to labeled-data/{accepted.folder.name}/."
        )
        self.jump_to_frame(frames[0])
        self._update_controls()

    def _open_folder(self, folder: Path, layer_data: list[tuple]) -> Points | None:
        """Replace the layers showing ``folder`` by the ones read back, and attach to the keypoints."""
        problem = refine_layers.unsaved_claim(self.viewer, folder)
        if problem:  # edited while the frames were written
            self._fail("Cannot open the frames", f"{problem}; then open {folder}")
            return None
        points, image = refine_layers.replace_folder_layers(self.viewer, folder, layer_data)
        if points is None:
            self._fail("Cannot open the frames", f"{folder} opened without a keypoints layer")
            return None
        self._attach(points, image, folder)
        return points

    # -- editing -------------------------------------------------------------------------
    def _attach(self, layer: Points, image: Image | None, folder: Path) -> None:
        self._detach()
        session = session_for(layer, self.viewer)
        self.session, self.image_layer = session, image
        session.subscribe(self._on_labels)
        self.controller.corrections = refine.Corrections(
            Path(folder), session.store, layer.metadata.get(Key.SCORER) or None
        )
        self._refresh_videos()
        refine_layers.style_labels(self.session)
        self.viewer.layers.selection.active = layer
        layer.mode = "select"  # drag to move, Delete to remove

    def _detach(self) -> None:
        session, self.session = self.session, None
        self.image_layer = None
        self.controller.corrections = None
        if session is not None:
            session.unsubscribe(self._on_labels)
        self._update_controls()

    def _on_labels(self, change: Change) -> None:
        """The refine layer's labels changed (here, in the Labeling widget, by undo or recovery)."""
        if change.kind == "adding":
            return
        if change.kind == "closed":
            self._detach()
            return
        if change.kind in ("edit", "undo", "redo") and self.corrections is not None:
            self.corrections.record(change.edit)  # a reviewed machine label is the person's now
        refine_layers.style_labels(self.session)
        self._update_status()
        self._update_controls()

    def _update_status(self) -> None:
        c = self.corrections
        if c is None or self.session is None:
            return
        edited = c.store.unsaved_edits
        state = f"{edited} unsaved edits" if edited else ("unsaved" if c.unsaved else "saved")
        self.refine_label.setText(
            f"{len(c.accepted)} accepted frames, {len(self.session.machine)} machine labels left to review "
            f"(yellow diamonds) · {state}"
        )

    def save(self):
        """Merge the accepted and edited frames into CollectedData in a job; returns the job, or None with a message.

        The layer takes no edits while the job writes, so the journal is emptied of exactly
        what was written; :attr:`saved` is the result.
        """
        c, session = self.corrections, self.session
        if c is None or session is None:
            self._fail("Cannot save", "accept outlier frames first")
            return None
        if self.busy:
            self._fail("Cannot save", "wait for the running job to end")
            return None
        layer, editable, edits = session.layer, session.layer.editable, session.store.unsaved_edits
        layer.editable = False

        def finished(_job) -> None:
            layer.editable = editable
            self._update_controls()

        def failed(_job, failure) -> None:
            self.status.setText(f"Corrections not saved: {failure.message}; nothing on disk changed")

        return self.jobs.start(
            "save",
            lambda job: self.controller.save(),
            description="Saving the corrections",
            total=None,
            failure="Corrections not saved",
            on_done=lambda job, saved: self._on_saved(session, edits, saved),
            on_failed=failed,
            on_finished=finished,
        )

    def _on_saved(self, session, edits: int, saved) -> None:
        self.saved = saved.result
        if session.store.unsaved_edits == edits:  # nothing changed while the job wrote (an undo could)
            session.mark_saved()
        images = set(saved.images)
        session.mark_reviewed(i for i, name in enumerate(self.controller.corrections.images) if name in images)
        meta = session.layer.metadata
        meta[Key.KEPT_ROWS] = sorted(set(meta.get(Key.KEPT_ROWS, [])) | {name.split("/")[-1] for name in images})
        if saved.result.collected is not None:
            meta[Key.LABELS_FILE] = str(saved.result.collected)
        self._show_candidates()
        text = refine.saved_text(saved)
        self.status.setText(text + ".")
        show_info(text)
        self._update_status()

    # -- retrain ----------------------------------------------------------------------------
    def retrain(self, **overrides):
        """Fine-tune the latest model on the merged labels in a job; returns it, or None with a message.

        ``overrides`` are further keyword arguments of ``train_project`` (e.g. ``batch_size``, ``device``).
        """
        if self.busy:
            return None
        project = self.project_path()
        try:
            task = self.controller.retrain_task(project, self.epochs.value(), self.minutes.value(), **overrides)
        except ValueError as err:
            self._fail("Cannot retrain", str(err))
            return None
        video = self._layer(self.candidates.video) if self.candidates is not None else self.video_layer()
        if self.reanalyse_after.isChecked() and video is not None:
            video_path = self.video_path(video)
            task.reanalyse, task.video, task.video_path = True, video.unique_id, video_path
            task.source = str(video_path) if video_path else video.data
            task.n_frames = int(video.data.shape[0])
        task.bodyparts = refine.project_bodyparts(project)
        task.score_options = self.options() if self.options()["methods"] else {}
        self.eval_label.setText(f"Fine-tuning {model_name(task.checkpoint)}…")
        return self._start(
            "retrain",
            lambda job: refine.iter_retrain(task, job.stopping),
            "Retraining",
            lambda job, result: self._on_retrained(task, result),
            "Retraining failed",
            on_failed=lambda job, failed: self.eval_label.setText(""),
        )

    def _on_retrained(self, task: refine.RetrainTask, result: refine.Retrained) -> None:
        for layer in self.viewer.layers:  # predictions shown now were made by the model before
            if (
                isinstance(layer, Points)
                and layer.metadata.get(Key.PREDICTIONS)
                and layer is not self.predictions_layer
            ):
                self.controller.stale[layer.unique_id] = refine_layers.fingerprint(layer)
        self.controller.retrained_with(result, task.corrected)
        self.show_comparison(
            refine.comparison_rows(result, self.comparison), refine.comparison_text(result, self.comparison)
        )
        video = self._layer(result.video) if result.video is not None else None
        if result.predictions is not None and video is not None:
            self.predictions_layer = refine_layers.show_predictions(
                self.viewer, video, result.predictions, self.predictions_layer
            )
            self._show_candidates()
        text = self.controller.retrained_text(result)
        self.status.setText(text)
        show_info(text)
