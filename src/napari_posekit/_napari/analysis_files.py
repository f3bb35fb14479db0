"""Save, filter preview and labeled-video export, and the analysis of several animals: parts of the Analysis widget.

:class:`PredictionFiles` and :class:`MultiAnimalRuns` are mixed into
:class:`~napari_posekit._napari._analysis_widget.AnalysisWidget`; they work on
the widget's current analysis, controls and job runner.  Files are written in
jobs (a long video's predictions take a while to write); only the dialogs
asking where and the filter preview run in the GUI thread.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from napari.utils.notifications import show_info
from qtpy.QtWidgets import QFileDialog

from napari_posekit._napari.analysis_layers import video_source
from napari_posekit._napari.jobs import Job
from napari_posekit.controllers.analysis import (
    AUTO_BACKEND,
    Analysis,
    PredictionsWrite,
    VideoSource,
    default_path,
    export_plan,
    filtered,
    h5_path,
    iter_export,
    loading_text,
    suggested_path,
)
from napari_posekit.controllers.analysis_multi import (
    MultiAnalysis,
    MultiRun,
    TrackingPlan,
    find_tracks_file,
    iter_multi_analysis,
    read_tracks_file,
    tracks_path,
)


class PredictionFiles:
    """Save predictions, preview and save filtered ones, export a labeled video (a part of the Analysis widget)."""

    # -- saving ------------------------------------------------------------------
    def _need_analysis(self, what: str) -> Analysis | None:
        analysis = self.current_analysis()
        if analysis is None:
            layer = self.video_layer()
            target = f" of {layer.name}" if layer is not None else ""
            self._fail(f"Cannot {what}", f"there are no predictions{target} yet; analyse the video first")
        elif self.jobs.running("analyze"):
            self._fail(f"Cannot {what}", "wait for the analysis to end (or stop it)")
            return None
        return analysis

    def _source(self, analysis: Analysis) -> VideoSource:
        return video_source(self.display.video(analysis.layer_id))

    def _raw_path(self, analysis: Analysis) -> Path | None:
        """Where the raw predictions go: beside the video, where they were saved, or where the person says."""
        path = default_path(analysis)
        if path is not None:
            return path
        path, _ = QFileDialog.getSaveFileName(
            self, "Save predictions", str(suggested_path(analysis, self._source(analysis))), "Predictions (*.h5)"
        )
        return h5_path(path) if path else None

    def _write(self, write: PredictionsWrite, what: str, on_done) -> Job | None:
        job = self.jobs.start(
            "save",
            lambda job: write.write(),
            description=f"Saving {write.path.name}",
            total=None,
            failure=f"Cannot save the {what}",
            on_done=lambda job, path: on_done(path),
        )
        if job is None:
            self._fail(f"Cannot save the {what}", "wait for the files being written")
        return job

    def save_predictions(self, path: str | os.PathLike | None = None) -> Job | None:
        """Write the predictions as DeepLabCut's ``.h5`` + ``.csv`` (+ ``_meta.json``) in a job; its result is the ``.h5``.

        Default: ``<video stem><scorer>.h5`` beside a video file; an image stack asks where.
        """
        multi = self.current_multi()
        if multi is not None and self.current_analysis() is None:
            return self._save_multi(multi, path)
        analysis = self._need_analysis("save")
        target = None if analysis is None else Path(path) if path is not None else self._raw_path(analysis)
        if target is None:
            return None
        return self._write(
            PredictionsWrite.of(analysis, self._source(analysis), target),
            "predictions",
            lambda written: self._on_saved(analysis, written),
        )

    def _save_multi(self, multi: MultiAnalysis, path: str | os.PathLike | None) -> Job | None:
        """Write the predictions of several animals (DeepLabCut's multi-animal ``.h5`` + ``.csv``) in a job."""
        from napari_posekit.core.multianimal import write_tracks

        if self.jobs.running("analyze") or self.jobs.running("track"):
            self._fail("Cannot save", "wait for the analysis to end (or stop it)")
            return None
        if path is None:
            start = multi.saved or tracks_path(multi, self.video_layer().name, self._source_of(multi).folder)
            path, _ = QFileDialog.getSaveFileName(self, "Save predictions", str(start or ""), "Predictions (*.h5)")
            if not path:
                return None
        tracks, target = multi.tracks(), h5_path(path)  # copies: the worker writes its own

        def saved(written: list[Path]) -> None:
            multi.saved = Path(written[0])
            self.multi_display.show(multi, create=False)  # the points name their file (for Identities)
            self._on_saved(None, Path(written[0]))

        return self.jobs.start(
            "save",
            lambda job: write_tracks(target, tracks, video=tracks.video),
            description=f"Saving {target.name}",
            total=None,
            failure="Cannot save the predictions",
            on_done=lambda job, written: saved(written),
        )

    def _source_of(self, multi: MultiAnalysis) -> VideoSource:
        return video_source(self.display.video(multi.layer_id))

    def _on_saved(self, analysis: Analysis | None, written: Path, filtered: bool = False) -> None:
        if not filtered and analysis is not None:
            analysis.saved = written
        self.last_output = written
        text = f"Saved the {'filtered ' if filtered else ''}predictions: {written}"
        self.status.setText(text)
        show_info(text)

    # -- filter --------------------------------------------------------------------
    def _odd_window(self) -> None:
        if self.filter_window.value() % 2 == 0:
            self.filter_window.setValue(self.filter_window.value() + 1)

    def filter_options(self) -> dict[str, Any]:
        self._odd_window()
        return {"method": self.filter_method.currentData(), "window": int(self.filter_window.value())}

    def preview_filter(self) -> Analysis | None:
        """Filter the predictions and show them beside the raw ones."""
        analysis = self._need_analysis("filter")
        if analysis is None:
            return None
        options = self.filter_options()
        try:
            analysis.filtered = filtered(analysis, pcutoff=self.pcutoff.value(), **options)
        except ValueError as err:
            self._fail("Cannot filter", str(err))
            return None
        analysis.filter_options = options
        self.show_analysis(analysis)
        self.status.setText(
            f"Filter preview: {self.filter_method.currentText()}, window {options['window']} frames, "
            f"p-cutoff {self.pcutoff.value():.2f}."
        )
        return analysis

    def _filtered_write(self, analysis: Analysis, path: str | os.PathLike) -> PredictionsWrite | None:
        """The filtered predictions to write to ``path``, previewed first when the preview is not current."""
        options = self.filter_options()
        if (analysis.filtered is None or analysis.filter_options != options) and self.preview_filter() is None:
            return None
        return PredictionsWrite.of(
            analysis, self._source(analysis), path, filter_options={**options, "pcutoff": float(self.pcutoff.value())}
        )

    def save_filtered(self, path: str | os.PathLike | None = None) -> Job | None:
        """Write the filtered predictions as ``<stem>_filtered.h5`` (+ ``.csv``) in a job; its result is the ``.h5``."""
        from napari_posekit.core.filtering import filtered_path

        analysis = self._need_analysis("save filtered predictions")
        if analysis is None:
            return None
        if path is None:
            raw = self._raw_path(analysis)
            if raw is None:
                return None
            path = filtered_path(raw)
        write = self._filtered_write(analysis, path)
        if write is None:
            return None
        return self._write(write, "filtered predictions", lambda written: self._on_saved(analysis, written, True))

    # -- labeled video -------------------------------------------------------------
    def export_video(self, path: str | os.PathLike | None = None) -> Job | None:
        """Write the video with the predictions drawn on it, in a job; returns the job (or None).

        The frames from the first to the last analysed one are written, with the
        p-cutoff, tail length and colours of the layers, to
        ``<predictions stem>_labeled.mp4`` beside the predictions (saved first
        when they are not yet); with *filtered* checked, the filter preview's
        predictions (saved first) and ``<stem>_filtered_labeled.mp4``.
        """
        from napari_posekit.core.filtering import filtered_path
        from napari_posekit.core.labeled_video import labeled_video_path

        analysis = self._need_analysis("export a labeled video")
        if analysis is None or self.jobs.running("export"):
            return None
        use_filtered, writes = self.export_filtered.isChecked(), []
        if path is None:
            h5 = analysis.saved or self._raw_path(analysis)
            if h5 is None:
                return None
            if analysis.saved is None:
                writes.append(PredictionsWrite.of(analysis, self._source(analysis), h5))
            if use_filtered:
                h5 = filtered_path(h5)
                writes.append(self._filtered_write(analysis, h5))
                if writes[-1] is None:
                    return None
            path = labeled_video_path(h5)
        elif use_filtered and analysis.filtered is None and self.preview_filter() is None:
            return None
        source = self._source(analysis)
        frames = str(source.path) if source.path else self.display.video(analysis.layer_id).data
        plan = export_plan(
            analysis,
            frames,
            path,
            filtered=use_filtered,
            pcutoff=self.pcutoff.value(),
            tail_length=self.tail_length.value(),
            fps=source.fps,
            writes=tuple(writes),
        )
        return self.jobs.start(
            "export",
            lambda job: iter_export(plan, job.stopping),
            description=f"Labeled video {plan.path.name}",
            total=plan.n_frames,
            status=f"Writing {plan.path.name}…",
            failure="Cannot export the labeled video",
            on_event=lambda job, event: self._on_export_event(analysis, job, event),
            on_done=self._on_exported,
        )

    def _on_export_event(self, analysis: Analysis, job: Job, event: dict[str, Any]) -> None:
        if event["event"] == "saved":
            self._on_saved(analysis, event["path"], event["filtered"])
            self.status.setText(f"Writing {job.description.removeprefix('Labeled video ')}…")
        else:
            job.report(done=event["done"])

    def _on_exported(self, job: Job, result) -> None:
        if result is None:
            self.status.setText("Labeled video stopped; nothing was written.")
            return
        self.last_output = Path(result)
        text = f"Wrote the labeled video: {result}"
        self.status.setText(text)
        show_info(text)


class MultiAnimalRuns:
    """Analyse several animals block by block, track them, write and open their files (a part of the Analysis widget)."""

    def _analyze_multi(self, layer, model: str, source, start: int, stop: int) -> Job | None:
        run = MultiRun(layer.unique_id, start, stop, source.n_frames, video_path=source.path)
        frames = str(source.path) if source.path else layer.data
        cached, batch_size, backend = self.analyses.predictor, self.batch_size.value(), self.backend_box.currentText()
        self.multi_run = run

        def work(job: Job):
            def report(line: str) -> None:
                job.report(text=loading_text(line))

            return iter_multi_analysis(
                model, cached, frames, start, stop, batch_size, job.stopping, backend=backend, report=report
            )

        return self.jobs.start(
            "analyze",
            work,
            description=f"Analyzing the animals of {layer.name}",
            total=stop - start,
            status=run.start_text(),
            failure="Analysis failed",
            on_event=lambda job, event: self._on_multi_event(run, job, event),
            on_tick=lambda job: self._draw_multi(run),
            on_done=lambda job, result: self._track_multi(run),
            on_failed=lambda job, failed: self._end_multi(run, draw=True),
            on_finished=lambda job: self._update_controls(),
        )

    def _on_multi_event(self, run: MultiRun, job: Job, event: dict[str, Any]) -> None:
        self.multi.receive(run, event)
        if event["event"] == "ready":
            self.analyses.predictor = (run.key, run.model, event.get("backend", AUTO_BACKEND))
            self.backend_used.setText(f"The networks run on {run.model.backend}.")
            self.backend_used.setVisible(True)
            job.report(text=run.model_text())
        else:
            self._dirty = True
            job.report(done=run.done, text=run.status_text(), eta_s=run.eta_s())

    def _draw_multi(self, run: MultiRun, final: bool = False) -> None:
        now = time.monotonic()
        if self._dirty and run.analysis is not None and (final or now >= self._next_draw):
            self._dirty = False
            self.multi_display.show(run.analysis)
            self._next_draw = time.monotonic() + 4 * (time.monotonic() - now)

    def _track_multi(self, run: MultiRun) -> None:
        """Draw all that arrived, then track the animals and write the file in a job of its own."""
        self._dirty = True
        self._draw_multi(run, final=True)
        analysis, layer = run.analysis, self.display.video(run.layer_id)
        if analysis is None or layer is None:
            self._end_multi(run)
            self.status.setText(
                "Stopped before any frame was analysed." if layer is not None else "The video was closed."
            )
            return
        source = video_source(layer)
        plan = TrackingPlan.of(analysis, tracks_path(analysis, layer.name, source.folder))
        where = f" and writing {plan.path.name}" if plan.path is not None else ""
        self.jobs.start(
            "track",
            lambda job: plan.run(),
            description=f"Tracking the animals of {layer.name}",
            total=None,
            status=f"Tracking the animals{where}…",
            failure="Tracking failed",
            on_done=lambda job, result: self._on_tracked(run, analysis, layer.name, *result),
            on_finished=lambda job: self._end_multi(run),
        )

    def _end_multi(self, run: MultiRun, draw: bool = False) -> None:
        """The run is over (tracked, failed or stopped early): what arrived is shown, the p-cutoff applies to it."""
        if draw:
            self._dirty = True
            self._draw_multi(run, final=True)
        if self.multi_run is run:
            self.multi_run = None

    def _on_tracked(self, run: MultiRun, analysis: MultiAnalysis, name: str, tracks, written, note: str) -> None:
        analysis.take_tracked(tracks)
        run.note = note
        if written:
            analysis.saved = written[0]
            self.last_output = written[0]
        run.written = written
        self.multi_display.show(analysis)
        self.status.setText(run.finished_text(name))

    def open_found(self) -> Job | None:
        """Open the predictions of several animals found beside the chosen video (in a job)."""
        layer = self.video_layer()
        path = find_tracks_file(video_source(layer).path) if layer is not None else None
        if path is None:
            return None
        layer_id, n = layer.unique_id, int(layer.data.shape[0])
        return self.jobs.start(
            "open",
            lambda job: read_tracks_file(path, layer_id, n),
            description=f"Opening {path.name}",
            total=None,
            failure=f"Cannot open {path.name}",
            on_done=lambda job, analysis: self._on_opened(analysis),
        )

    def _on_opened(self, analysis: MultiAnalysis) -> None:
        self.multi.adopt(analysis)
        self.last_output = analysis.saved
        self.multi_display.show(analysis)
        self.status.setText(f"Opened {analysis.saved.name}: {', '.join(analysis.individuals)}.")

    def check_identities(self):
        """Open the chosen video's predictions of several animals in the Identities widget; returns that widget."""
        multi = self.current_multi()
        if multi is None or multi.saved is None:
            self._fail("Cannot check identities", "analyse the video with a multi-animal model first")
            return None
        try:
            _dock, widget = self.viewer.window.add_plugin_dock_widget("napari-posekit", "Identities")
        except Exception as err:  # noqa: BLE001 - a viewer without the plugin's widgets says so
            self._fail("Cannot open the Identities widget", str(err))
            return None
        if hasattr(widget, "open"):
            widget.open(multi.saved)
        return widget
