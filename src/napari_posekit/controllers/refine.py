"""The Refine widget's state and decisions, without napari or Qt.

The loop is DeepLabCut's ``extract_outlier_frames`` / ``refine_labels`` /
``merge_datasets`` / retrain. The widget shows it; :class:`RefineController`
remembers it between jobs and checks each request before its job starts:

- :meth:`RefineController.find_task` says where a search's predictions come
  from; :meth:`~RefineController.found` keeps its :class:`Candidates`, whose
  list rows are :func:`candidate_rows`.
- :meth:`RefineController.accept_task` checks which frames Accept writes;
  :meth:`~RefineController.accepted` keeps the :class:`Corrections` of the
  folder they were opened in (accepted, edited and deleted labels) and
  :meth:`~RefineController.save` merges them into CollectedData.
- :meth:`RefineController.retrain_task` checks fine-tuning and
  :meth:`~RefineController.retrained_with` keeps the errors before and after.
- :class:`JobProgress`: a job's events as a progress fraction and a status text.
- With "Include label suspects", :meth:`RefineController.rows` merges the
  project's label suspects (:class:`LabelRow`, from the fast label checks of
  :class:`~napari_posekit.controllers.training.LabelChecks`) into the outlier
  frames' ranking, on the common scale of :func:`common_score`.

The jobs themselves are in :mod:`.refine_jobs`, the reports after saving and
retraining in :mod:`.refine_results` (both re-exported here).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_posekit.controllers.models import model_key, model_name
from napari_posekit.controllers.refine_jobs import (
    Accepted,
    AcceptTask,
    Candidates,
    FindTask,
    Predictions,
    RetrainTask,
    iter_analyse,
    iter_find,
    iter_retrain,
    predictions_from_file,
    predictions_from_points,
    retrain_kwargs,
    write_accepted,
)
from napari_posekit.controllers.refine_results import (
    COMPARISON_COLUMNS,
    Retrained,
    Saved,
    compare_errors,
    comparison_rows,
    comparison_text,
    saved_text,
)
from napari_posekit.controllers.training import LabelChecks
from napari_posekit.core.frames import frame_of_image
from napari_posekit.core.labels import Edit, LabelStore
from napari_posekit.core.outliers import OutlierError

__all__ = [
    "COMPARISON_COLUMNS",
    "AcceptTask",
    "Accepted",
    "CandidateRow",
    "Candidates",
    "Corrections",
    "FindTask",
    "JobProgress",
    "LabelRow",
    "Predictions",
    "RefineController",
    "RetrainTask",
    "Retrained",
    "Saved",
    "candidate_rows",
    "common_score",
    "compare_errors",
    "comparison_rows",
    "comparison_text",
    "found_text",
    "iter_analyse",
    "iter_find",
    "iter_retrain",
    "label_rows",
    "merged_rows",
    "predictions_from_file",
    "predictions_from_points",
    "project_bodyparts",
    "retrain_kwargs",
    "saved_text",
    "write_accepted",
]


def found_text(c: Candidates) -> str:
    """What the status line says after a search."""
    flagged = int(c.scores.flagged.sum())
    if not c.picked:
        return f"No outlier frames in {c.video_name} with these settings" + (
            f" ({flagged} flagged frames are in the project already)." if flagged else "."
        )
    text = (
        f"{flagged} of {c.scores.n_frames} frames flagged (predictions: {c.predictions.origin}); {len(c.picked)} picked"
    )
    if c.excluded:
        text += f", {len(c.excluded)} frames already in the project left out"
    return text + "."


@dataclass(frozen=True)
class CandidateRow:
    """One row of the candidate list."""

    frame: int
    score: float
    jump_px: float
    uncertain: float
    fitting_px: float
    status: str  # "", "picked", "accepted", "corrected" or "in project"
    picked: bool

    @property
    def checkable(self) -> bool:
        """Only frames not in the project yet can be accepted."""
        return self.status in ("", "picked")

    def texts(self) -> list[str]:
        return [
            str(self.frame),
            f"{self.score:.2f}",
            f"{self.jump_px:.1f}",
            f"{self.uncertain:.0%}",
            f"{self.fitting_px:.1f}",
            self.status,
        ]


def candidate_rows(c: Candidates, accepted: set[int], corrected: set[int]) -> list[CandidateRow]:
    """The picked frames and the pool they came from, highest score first, with what became of each."""
    s, picked = c.scores, set(c.picked)
    rows = []
    for frame in sorted(set(c.pool) | picked, key=lambda f: (-s.combined[f], f)):
        status = (
            "corrected"
            if frame in corrected
            else "accepted"
            if frame in accepted
            else "in project"
            if frame in c.excluded
            else "picked"
            if frame in picked
            else ""
        )
        rows.append(
            CandidateRow(
                int(frame),
                float(s.combined[frame]),
                float(s.jump_px[frame]),
                float(s.uncertain[frame]),
                float(s.fitting_px[frame]),
                status,
                frame in picked,
            )
        )
    return rows


# --------------------------------------------------------------------------- label suspects
def common_score(frame_score: float) -> float:
    """An outlier frame's combined score on the scale of label suspects, where 1 is the flag threshold.

    A label suspect's score is already on that scale: ``SUSPECT_SCORE`` (1)
    at its check's flag threshold, higher for stronger evidence (a clear
    left/right swap scores 3 or more). An outlier frame's combined score is 0
    at its flag threshold (no jump or distance beyond epsilon, no body part
    below the p-bound) and 1 for each criterion at the typical level of the
    video's outliers (see :class:`~napari_posekit.core.outlier_scores.OutlierScores`).
    Adding 1 puts both thresholds at 1: a frame just past epsilon ranks with a
    label just past its check's threshold, a typical outlier frame (2) below a
    clear swap, a frame flagged by all three criteria (4) above it. The
    frames' own order is kept.
    """
    return 1.0 + float(frame_score)


_SUSPECT_PHRASES = {
    "swap": "{parts} swapped",
    "geometry": "{parts} out of shape",
    "collapse": "{parts} at one point",
    "appearance": "{parts} {look} misplaced",
    "duplicate": "image labeled twice",
    "disagreement": "{parts} far from the model",
    "missing": "{parts} not labeled",
    "extra": "{parts} labeled where nothing is",
}


@dataclass(frozen=True)
class LabelRow:
    """One label suspect of the project in the candidate list (it cannot be accepted: fix it in its labels)."""

    image: str  # the CollectedData key, labeled-data/<video>/<image>.png
    bodyparts: tuple[str, ...]
    kind: str
    score: float  # the suspect's score: 1 at its check's threshold
    reason: str
    checkable = False
    picked = False
    frame = None
    status = ""

    @property
    def name(self) -> str:
        """The image's file name without its suffix (``img0102``)."""
        return Path(self.image).stem

    def describe(self) -> str:
        """``leftear/rightear swapped in img0102``."""
        phrase = _SUSPECT_PHRASES.get(self.kind, "{parts} " + self.kind)
        look = "looks" if len(self.bodyparts) == 1 else "look"
        return f"{phrase.format(parts='/'.join(self.bodyparts), look=look)} in {self.name}"

    def texts(self) -> list[str]:
        """The cells: ``label``, the score and ``label: <what> in <image>`` (the widget spans it over the rest)."""
        return ["label", f"{self.score:.2f}", f"label: {self.describe()}"]

    def tooltip(self) -> str:
        return f"{self.image}: {self.reason}"

    def status_text(self) -> str:
        """What the status line says when the row is chosen."""
        where, reason = "/".join(Path(self.image).parts[-2:]), self.reason.rstrip()
        reason += "" if reason.endswith((".", "…")) else "."
        return (
            f"{where}: {reason} Fix it in its keypoints layer and save (Labeling widget), or use the "
            f"Label QA widget for one-click fixes."
        )


def label_rows(suspects) -> list[LabelRow]:
    """The label suspects (the core's ranked ``Suspect`` objects) as rows."""
    return [LabelRow(s.image, tuple(s.bodyparts), s.kind, float(s.score), s.reason) for s in suspects]


def merged_rows(frames: Sequence[CandidateRow], labels: Sequence[LabelRow]) -> list[CandidateRow | LabelRow]:
    """Outlier frames and label suspects in one ranking, highest :func:`common_score` first.

    Frame rows carry their common score; ties go to frames first, then to
    the earlier frame, then to the label list's own order.
    """
    keyed = [((-common_score(r.score), 0, r.frame, 0), replace(r, score=common_score(r.score))) for r in frames]
    keyed += [((-r.score, 1, 0, i), r) for i, r in enumerate(labels)]
    return [row for _, row in sorted(keyed, key=lambda item: item[0])]


# --------------------------------------------------------------------------- correcting
@dataclass(eq=False)
class Corrections:
    """A labeled-data folder opened for correction, and what the person did to it since it was opened or saved."""

    folder: Path
    store: LabelStore  # the labels shown (the layer's label session owns it)
    scorer: str | None = None
    baseline: np.ndarray = None  # labels as opened or last saved
    accepted: set[str] = field(default_factory=set)  # images accepted here, not saved yet
    touched: set[str] = field(default_factory=set)  # images edited since the last save

    def __post_init__(self):
        if self.baseline is None:
            self.baseline = np.array(self.store.xy)

    @property
    def images(self) -> list[str]:
        return self.store.images

    @property
    def bodyparts(self) -> list[str]:
        return self.store.bodyparts

    @property
    def unsaved(self) -> bool:
        return bool(self.accepted or self.touched or self.store.unsaved_edits)

    def index(self, frame: int) -> int | None:
        """The image of video frame ``frame``, or None."""
        for i, name in enumerate(self.images):
            if frame_of_image(name) == frame:
                return i
        return None

    def accept(self, frames: Sequence[int]) -> None:
        frames = set(frames)
        self.accepted.update(name for name in self.images if frame_of_image(name) in frames)

    def accepted_frames(self) -> set[int]:
        return {f for f in map(frame_of_image, self.accepted) if f is not None}

    def record(self, edit: Edit | None) -> None:
        """An edit of the labels: its images count as corrected."""
        if edit is not None:
            self.touched.update(self.images[i] for i, _ in edit.cells)

    def deleted_cells(self) -> list[tuple[str, str]]:
        """``(image, body part)`` labelled when opened (or saved) and deleted since."""
        was = np.isfinite(self.baseline).all(axis=2)
        now = np.isfinite(np.asarray(self.store.xy)).all(axis=2)
        return [(self.images[i], self.bodyparts[b]) for i, b in zip(*np.nonzero(was & ~now))]

    def save(self) -> Saved:
        """Merge the accepted and edited images into CollectedData; returns what was written.

        Raises :class:`~napari_posekit.core.project.ProjectError` (or an
        ``OSError``) with nothing on disk changed. The caller marks the store
        saved.
        """
        from napari_posekit.core.refine import align_xy, load_refinement, save_refinement

        xy = np.array(self.store.xy)
        accepted = sorted(self.accepted | self.touched)
        refinement = load_refinement(self.folder, scorer=self.scorer or None)
        rows = align_xy(refinement, self.images, self.bodyparts, xy)
        deleted = [(name, bp) for name, bp in self.deleted_cells() if bp in refinement.bodyparts]
        result = save_refinement(refinement, rows, accepted=accepted, deleted=deleted)
        self.baseline = xy
        self.accepted.clear()
        self.touched.clear()
        return Saved(result, accepted)


# --------------------------------------------------------------------------- progress
@dataclass
class JobProgress:
    """A find or retrain job's events as a progress fraction and a status text."""

    kind: str  # "find" or "retrain"
    format_eta: Callable[[float | None], str] = lambda seconds: "?"
    fraction: float = 0.0
    losses: list[float] = field(default_factory=list)
    test_px: float | None = None
    analysed: bool = False

    def record(self, event: dict[str, Any]) -> str | None:
        """Take one event; returns the status text it gives (None: the text stays)."""
        which = event.get("event")
        if which == "stage":
            return event["text"]
        if which == "analyze":
            self.analysed = True
            done = event["done"] / max(event["total"], 1)
            self.fraction = 0.8 * done if self.kind == "find" else 0.85 + 0.15 * done
            text = f"Analysing: {event['done']}/{event['total']} frames"
            return text + (f" · {event['fps']:.1f} frames/s" if event.get("fps") else "")
        if which == "select":
            start = 0.8 if self.analysed else 0.0
            self.fraction = start + (1 - start) * event["progress"]
            return "Reading the candidate frames…"
        if "epoch" in event:  # a training step, or the test error after an epoch
            return self._training(event)
        return None

    def _training(self, event: dict[str, Any]) -> str:
        if event.get("event") == "evaluated":
            self.test_px = event.get("test_error_px")
        else:
            self.losses = (self.losses + [float(event["loss"])])[-20:]
        self.fraction = 0.85 * float(event.get("progress", 0.0))
        text = f"Fine-tuning: epoch {event['epoch']}"
        if self.losses:
            text += f" · loss {np.mean(self.losses):.4f}"
        if self.test_px is not None:
            text += f" · test {float(self.test_px):.2f} px"
        return text + f" · ETA {self.format_eta(event.get('eta_s'))}"


def project_bodyparts(project: Path | None) -> list[str] | None:
    """The project's body parts, in its order (None without a project, or when its config names none)."""
    if project is None:
        return None
    from napari_posekit.core.config import config_bodyparts, read_config

    return list(config_bodyparts(read_config(project))) or None


# --------------------------------------------------------------------------- the controller
class RefineController:
    """What the Refine widget remembers between jobs, and its checks before each one."""

    def __init__(self):
        self.candidates: Candidates | None = None
        self.corrections: Corrections | None = None
        self.retrained: Retrained | None = None
        self.comparison: dict[str, dict[str, float]] = {}
        self.corrected: set[str] = set()  # images saved from machine labels here
        self.cache: dict[Any, Predictions] = {}  # video id -> predictions made here
        self.stale: dict[Any, tuple] = {}  # predictions layer id -> its fingerprint when a newer model was trained
        self.label_checks = LabelChecks()  # the project's label suspects, for "Include label suspects"
        self.include_labels = False

    def forget(self, layer_id: Any) -> None:
        """A layer left the viewer."""
        self.cache.pop(layer_id, None)
        if self.candidates is not None and self.candidates.video == layer_id:
            self.candidates = None

    # -- finding ------------------------------------------------------------------
    def find_task(
        self,
        *,
        video: Any,
        video_name: str,
        video_path: Path | None,
        source: Any,
        n_frames: int,
        project: Path | None,
        bodyparts: list[str] | None,
        options: dict[str, Any],
        n: int,
        fresh: bool,
        shown: Callable[[], Predictions | None],
    ) -> FindTask:
        """Where the predictions come from, in order: made here or shown in a layer for the current model;
        the current model (its file or an analysis); without a model, the newest prediction file of the video.

        ``shown()`` reads the predictions of the layer that shows the video's
        (None when there is none or it is stale). Raises :class:`OutlierError`
        when there are no predictions and no model, or ``ValueError`` for
        settings no search can use.
        """
        from napari_posekit.controllers.models import latest_checkpoint
        from napari_posekit.core.predictions import find_predictions

        if not options.get("methods"):
            raise ValueError("tick at least one criterion")
        checkpoint = latest_checkpoint(project)
        key = model_key(checkpoint)
        folder = project / "labeled-data" / (video_path.stem if video_path else video_name) if project else None
        task = FindTask(
            video,
            video_name,
            video_path,
            source,
            n_frames,
            bodyparts,
            options,
            n,
            folder,
            model=checkpoint,
            overwrite=fresh,
        )
        if not fresh:
            cached = self.cache.get(video)
            if cached is not None and len(cached.xy) == n_frames and cached.is_current(checkpoint, key):
                task.predictions = cached
                return task
            predictions = shown()
            if predictions is not None and predictions.is_current(checkpoint, key):
                task.predictions = predictions
                return task
        if checkpoint is not None:
            return task
        if fresh:
            raise OutlierError("the project has no trained model to analyse the video with; train one first")
        found = find_predictions(video_path) if video_path is not None else []
        found = [p for p in found if not p.stem.endswith("_filtered")] or found
        if not found:
            what = "the project has no trained model" if project is not None else "no project is chosen"
            raise OutlierError(
                f"{video_name} has no predictions and {what} to analyse it with; train a model "
                f"or analyse the video first"
            )
        task.prediction_file = found[0]
        return task

    def found(self, c: Candidates) -> str:
        """A search ended with ``c``; returns the status text."""
        if c.analysed:  # kept for the next search
            self.cache[c.video] = c.predictions
        previous = self.candidates
        if previous is not None and previous.video == c.video and previous.previous is not None:
            c.previous = previous.previous
        self.candidates = c
        return found_text(c)

    def rows(self, project: Path | None = None) -> list[CandidateRow | LabelRow]:
        """The candidate list: the outlier frames, merged with ``project``'s label suspects when they are included."""
        frames = []
        if self.candidates is not None:
            frames = candidate_rows(self.candidates, self.accepted_frames(), self.corrected_frames())
        advice = self.label_checks.current(project) if self.include_labels else None
        if advice is None:
            return frames
        return merged_rows(frames, label_rows(advice.suspects))

    def labels_text(self, project: Path | None, checking: bool) -> str:
        """The line under the list about the label suspects (empty when they are not included)."""
        if not self.include_labels:
            return ""
        if project is None:
            return "Label suspects: choose the project first."
        text, _tip = self.label_checks.text(project, checking)
        return text.replace("Labels:", "Label suspects:", 1)

    def accepted_frames(self) -> set[int]:
        return self.corrections.accepted_frames() if self.corrections is not None else set()

    def corrected_frames(self) -> set[int]:
        return {f for f in map(frame_of_image, self.corrected) if f is not None}

    # -- accepting ----------------------------------------------------------------------
    def accept_task(self, frames: Sequence[int], project: Path | None) -> AcceptTask:
        """The frames to write, checked; ValueError says why they cannot be."""
        c = self.candidates
        if c is None:
            raise ValueError("find outliers first")
        frames = sorted({int(f) for f in frames})
        if not frames:
            raise ValueError("check the frames to label in the list")
        if project is None:
            raise ValueError("choose the project the frames go to")
        if c.video_path is None:
            raise ValueError(f"{c.video_name} is not a video file; open the video with File > Open")
        if self.corrections is not None and self.corrections.unsaved:
            raise ValueError(f"save the corrections in labeled-data/{self.corrections.folder.name} first")
        return AcceptTask(project, c.video_path, frames, c.predictions)

    def accepted(self, frames: Sequence[int]) -> None:
        """The accepted frames were written and opened for correction (in :attr:`corrections`)."""
        if self.corrections is not None:
            self.corrections.accept(frames)
        if self.candidates is not None:
            self.candidates.excluded |= set(frames)

    # -- saving ---------------------------------------------------------------------
    def save(self) -> Saved:
        """Merge the corrections into CollectedData (see :meth:`Corrections.save`)."""
        if self.corrections is None:
            raise ValueError("accept outlier frames first")
        accepted = set(self.corrections.accepted)
        saved = self.corrections.save()
        self.corrected |= accepted
        return saved

    # -- retraining -------------------------------------------------------------------
    def retrain_task(self, project: Path | None, epochs: int, minutes: float, **overrides: Any) -> RetrainTask:
        """Fine-tuning the project's latest model, checked; ValueError says why it cannot start."""
        from napari_posekit.controllers.models import latest_checkpoint

        if project is None:
            raise ValueError("choose a project first")
        if self.corrections is not None and self.corrections.unsaved:
            raise ValueError("save the corrections first: training reads the saved labels")
        checkpoint = latest_checkpoint(project)
        if checkpoint is None:
            raise ValueError("the project has no trained model yet; train one in the Training widget")
        options = retrain_kwargs(checkpoint, epochs, minutes, **overrides)
        return RetrainTask(project, checkpoint, options, set(self.corrected))

    def retrained_with(self, result: Retrained, corrected: set[str]) -> None:
        """Keep the retrained model's errors and, when it re-analysed the searched video, its new scores."""
        self.retrained = result
        self.comparison = compare_errors(result, corrected)
        if result.predictions is None:
            return
        self.cache[result.video] = result.predictions
        c = self.candidates
        if c is not None and c.video == result.video and result.scores is not None:
            c.previous, c.scores, c.predictions = c.scores.combined, result.scores, result.predictions

    def retrained_text(self, result: Retrained) -> str:
        text = (
            f"{'Stopped' if result.stopped else 'Retrained'}: {model_name(result.checkpoint)}, "
            f"{result.checkpoint.name}."
        )
        if result.scores is not None:
            text += f" Re-analysed: {int(result.scores.flagged.sum())} frames flagged now."
        return text
