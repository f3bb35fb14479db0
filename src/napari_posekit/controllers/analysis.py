"""The Analysis widget's predictions, runs and files, without napari.

- :class:`Analysis`: the predictions of one video, held for the whole video
  (NaN where not analysed or not found), keyed by the id of the video's
  layer; the widget maps ids to layers.  :class:`Analyses` holds them and the
  model loaded last, and decides when a run replaces what a video had.
- :class:`AnalysisRun`: one run over a span of frames, its progress and
  texts (with the backend the network runs on); :func:`iter_analysis` is its
  work (load the model: a project, a checkpoint or an exported ``.onnx``
  file, on the backend asked for or the fastest one; then predict block after
  block) and :func:`frame_span` the frames a choice stands for.
  :func:`backend_choices` lists what the widget's Backend box offers and
  :func:`loading_text` turns the backend choice's reports into status lines.
- Files: :class:`PredictionsWrite` (what Save writes, copied so a worker can
  write it while the widget goes on), :class:`ExportPlan` and
  :func:`iter_export` (the labeled video, after the predictions it needs).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_posekit.controllers.models import resolve_model

RANGES = ("Current frame", "Frame range", "Whole video")
FILTERS = (("median", "median"), ("Savitzky–Golay", "savgol"))
AUTO_BACKEND = "auto"
CHOOSING_TEXT = "Choosing the fastest backend for this model (once; it can take half a minute)…"


def backend_choices() -> list[str]:
    """``"auto"`` (the fastest backend that keeps the accuracy) and every backend name of the core."""
    from napari_posekit.core.backends import BACKENDS

    return [AUTO_BACKEND, *BACKENDS]


def loading_text(line: str) -> str:
    """The status line for a report of the backend choice (the measurement that runs once per model)."""
    line = str(line).strip()
    if line.lower().startswith("choosing the fastest backend"):
        return CHOOSING_TEXT
    return line[:1].upper() + line[1:]


def runs(mask: np.ndarray) -> list[list[int]]:
    """``[[start, stop], ...]`` of the runs of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], np.asarray(mask).astype(np.int8), [0]])))
    return [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]


# --------------------------------------------------------------------------- analyses
@dataclass(frozen=True)
class VideoSource:
    """What an analysis needs to know of its video layer, read when it is needed (a layer can be renamed)."""

    name: str
    n_frames: int
    height: int
    width: int
    fps: float | None = None
    path: Path | None = None
    """The video file, when the layer was opened from one."""
    folder: str | None = None
    """Where the layer came from (a folder or a file), for a save dialog."""


@dataclass(eq=False)
class Analysis:
    """Predictions of one video, held for the whole video (NaN where not analysed or not found)."""

    layer_id: Any
    model_key: tuple
    bodyparts: list[str]
    skeleton: list[tuple[str, str]]
    scorer: str
    checkpoint: Path | None
    video_path: Path | None
    xy: np.ndarray
    likelihood: np.ndarray
    analysed: np.ndarray
    failed: dict[int, str] = field(default_factory=dict)
    saved: Path | None = None
    filtered: tuple[np.ndarray, np.ndarray] | None = None
    filter_options: dict | None = None

    @classmethod
    def new(cls, layer_id: Any, n_frames: int, predictor, key: tuple, video_path: Path | None) -> Analysis:
        k = len(predictor.bodyparts)
        return cls(
            layer_id=layer_id,
            model_key=key,
            bodyparts=list(predictor.bodyparts),
            skeleton=list(predictor.skeleton),
            scorer=predictor.scorer,
            checkpoint=predictor.checkpoint,
            video_path=video_path,
            xy=np.full((n_frames, k, 2), np.nan),
            likelihood=np.zeros((n_frames, k)),
            analysed=np.zeros(n_frames, bool),
        )

    def add(self, chunk) -> None:
        """Take one block of predictions (``start``, ``stop``, ``xy``, ``likelihood``, ``failed``)."""
        s, e = chunk.start, chunk.stop
        self.xy[s:e] = chunk.xy
        self.likelihood[s:e] = chunk.likelihood
        self.analysed[s:e] = True
        for i in range(s, e):
            self.failed.pop(i, None)
        self.failed.update(chunk.failed)

    def present(self) -> np.ndarray:
        """``(N, K)``: analysed and found."""
        return self.analysed[:, None] & np.isfinite(self.xy).all(axis=2)

    def refilter(self, pcutoff: float) -> None:
        """Filter again with the previewed options (after new predictions or a new p-cutoff)."""
        if self.filtered is not None and self.filter_options is not None:
            self.filtered = filtered(self, pcutoff=pcutoff, **self.filter_options)

    def metadata(self, source: VideoSource) -> dict:
        """What a prediction file records about this analysis (``_meta.json``)."""
        failed = sorted(self.failed)
        return {
            "video": str(self.video_path) if self.video_path else None,
            "layer": source.name,
            "n_frames": len(self.xy),
            "fps": source.fps,
            "width": source.width,
            "height": source.height,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "skeleton": [list(e) for e in self.skeleton],
            "analysed_frames": runs(self.analysed),
            "failed_frames": failed,
            "failed_reasons": {str(i): self.failed[i] for i in failed[:100]},
        }


def filtered(analysis: Analysis, method: str, window: int, pcutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """The analysis' predictions filtered over time (``xy``, ``likelihood``); ValueError for bad options."""
    from napari_posekit.core.filtering import filter_predictions

    return filter_predictions(analysis.xy, analysis.likelihood, method=method, window=window, pcutoff=pcutoff)


@dataclass
class RunSpan:
    """Frames ``start`` to ``stop`` (not included) of a video, and how far a run over them got."""

    layer_id: Any
    start: int
    stop: int
    n_frames: int
    """Frames of the whole video."""
    video_path: Path | None = None
    key: tuple | None = None
    done: int = 0
    fps: float = 0.0

    @property
    def total(self) -> int:
        return self.stop - self.start

    def eta_s(self) -> float | None:
        return (self.total - self.done) / self.fps if self.fps > 0 else None


@dataclass
class AnalysisRun(RunSpan):
    """One run of the model over frames ``start`` to ``stop`` (not included) of a video."""

    analysis: Analysis | None = None
    predictor: Any = None
    failed: int = 0

    @property
    def backend(self) -> str | None:
        """What runs the network (e.g. ``"onnxruntime-int8"``), once the model is loaded."""
        return getattr(self.predictor, "backend", None) if self.predictor is not None else None

    @property
    def notes(self) -> list[str]:
        """What the backend choice had to say (a backend that failed to load, the one used instead)."""
        return list(getattr(self.predictor, "notes", None) or []) if self.predictor is not None else []

    def model_text(self) -> str:
        """``Model loaded on onnxruntime-int8.`` and the notes of the backend choice."""
        text = f"Model loaded on {self.backend}." if self.backend else "Model loaded."
        return " ".join([text, *self.notes])

    def backend_text(self) -> str:
        """``The network runs on onnxruntime-int8.`` and the notes of the backend choice; empty before loading.

        Kept beside the status line, which the progress replaces within a tenth of a second.
        """
        return " ".join([f"The network runs on {self.backend}.", *self.notes]) if self.backend else ""

    def start_text(self) -> str:
        what = f"frame {self.start}" if self.total == 1 else f"frames {self.start}–{self.stop - 1}"
        return f"Loading the model to analyse {what}…"

    def status_text(self) -> str:
        parts = [f"{self.done}/{self.total} frames", f"{self.fps:.1f} frames/s"]
        if self.failed:
            parts.append(f"{self.failed} frames could not be decoded")
        if self.backend:
            parts.append(f"on {self.backend}")
        return " · ".join(parts)

    def finished_text(self, name: str) -> str:
        speed = f"{self.fps:.1f} frames/s" + (f" on {self.backend}" if self.backend else "")
        if self.done < self.total:
            text = f"Stopped: {self.done} of {self.total} frames of {name} analysed ({speed})."
        else:
            what = f"frame {self.start}" if self.total == 1 else f"{self.total} frames"
            text = f"Analysed {what} of {name} ({speed})."
        if self.failed:
            text += f" {self.failed} frames could not be decoded (no predictions there)."
        return " ".join([text, *self.notes])


class Analyses:
    """The analyses of the viewer's videos by layer id, and the model loaded last (kept for the next run).

    ``predictor`` is ``(model key, predictor, backend asked for)``.
    """

    def __init__(self) -> None:
        self._by_id: dict[Any, Analysis] = {}
        self.predictor: tuple[tuple, Any, str] | None = None

    def get(self, layer_id: Any) -> Analysis | None:
        return self._by_id.get(layer_id)

    def __iter__(self) -> Iterator[Analysis]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)

    def adopt(self, analysis: Analysis) -> None:
        """Take ``analysis`` as its layer's (replacing what it had)."""
        self._by_id[analysis.layer_id] = analysis

    def forget(self, layer_id: Any) -> Analysis | None:
        return self._by_id.pop(layer_id, None)

    def receive(self, run: AnalysisRun, event: dict[str, Any]) -> Analysis | None:
        """Take one event of :func:`iter_analysis`; return the analysis it replaced, if any.

        ``"ready"``: the model is loaded (and kept).  ``"chunk"``: a block of
        predictions; the first one of a run starts a new analysis when the
        video had none, or one by another model or of another length (only
        then is what the video had replaced; the same model on another
        backend adds to what the video had).
        """
        if event["event"] == "ready":
            self.predictor = (event["key"], event["predictor"], event.get("backend", AUTO_BACKEND))
            run.predictor, run.key = event["predictor"], event["key"]
            return None
        replaced = None
        if run.analysis is None:
            analysis = self._by_id.get(run.layer_id)
            if analysis is None or analysis.model_key != run.key or len(analysis.xy) != run.n_frames:
                replaced = analysis
                analysis = Analysis.new(run.layer_id, run.n_frames, run.predictor, run.key, run.video_path)
                self._by_id[run.layer_id] = analysis
            run.analysis = analysis
        chunk = event["chunk"]
        run.analysis.add(chunk)
        run.done, run.fps = event["done"], event["fps"]
        run.failed += len(chunk.failed)
        return replaced


def frame_span(which: str, n_frames: int, current: int, first: int, last: int) -> tuple[int, int]:
    """``(start, stop)`` of the frames a choice of :data:`RANGES` stands for."""
    if which == "Current frame":
        return current, current + 1
    if which == "Frame range":
        first, last = sorted((first, last))
        return min(first, n_frames - 1), min(last, n_frames - 1) + 1
    return 0, n_frames


def load_predictor(
    model: str | os.PathLike,
    cached: tuple | None = None,
    source: Any = None,
    *,
    backend: str = AUTO_BACKEND,
    report: Callable[[str], None] | None = None,
) -> tuple[tuple, Any]:
    """``(model key, predictor)``: the model a box names, on ``backend`` (``cached`` when it is the same).

    ``model`` is a project folder, its ``config.yaml``, a checkpoint or an
    exported model (``.onnx``, loaded without torch, on the CPU).  With
    ``"auto"`` the core measures the backends the first time it meets a
    model on this machine (``report`` gets its lines; frames of ``source``,
    a video path or an array, help when the model has no labeled frames).
    Slow: call it off the GUI thread.
    """
    from napari_posekit.core.predictor import Predictor

    model_ref = resolve_model(model)
    if cached is not None and cached[0] == model_ref.key:
        asked = cached[2] if len(cached) > 2 else AUTO_BACKEND
        if asked == backend:
            return model_ref.key, cached[1]
    if model_ref.exported:
        device = "cpu"
    else:
        from napari_posekit.core.train import default_device

        device = default_device()

    def probe():
        from napari_posekit.core.inference import probe_frames

        return probe_frames(source) if source is not None else None

    predictor = Predictor.load(model_ref.checkpoint, device=device, backend=backend, probe_frames=probe, report=report)
    return model_ref.key, predictor


def iter_analysis(
    model: str,
    cached: tuple | None,
    source: Any,
    start: int,
    stop: int,
    batch_size: int,
    fast: bool,
    should_stop: Callable[[], bool],
    *,
    backend: str = AUTO_BACKEND,
    report: Callable[[str], None] | None = None,
) -> Generator[dict[str, Any], None, int]:
    """Load the model (:func:`load_predictor`; ``cached`` when it is the same), then predict block after block.

    Yields ``{"event": "ready", "key", "predictor", "backend"}`` once
    (``backend``: what was asked for) and ``{"event": "chunk", "chunk",
    "done", "fps"}`` per block; returns the frames done.  ``source`` is a
    video path or an array of frames.
    """
    from napari_posekit.core.inference import iter_analyze

    key, predictor = load_predictor(model, cached, source, backend=backend, report=report)
    yield {"event": "ready", "key": key, "predictor": predictor, "backend": backend}
    done = 0
    t0 = time.monotonic()
    for chunk in iter_analyze(
        predictor, source, start=start, stop=stop, batch_size=batch_size, fast=fast, should_stop=should_stop
    ):
        done += len(chunk.xy)
        yield {"event": "chunk", "chunk": chunk, "done": done, "fps": done / max(time.monotonic() - t0, 1e-9)}
    return done


# --------------------------------------------------------------------------- files
def default_path(analysis: Analysis) -> Path | None:
    """``<video stem><scorer>.h5`` beside the video, or the path it was saved to; None for an image stack."""
    from napari_posekit.core.inference import output_paths

    if analysis.saved is not None:
        return analysis.saved
    if analysis.video_path is not None:
        return output_paths(analysis.video_path, analysis.scorer)["h5"]
    return None


def suggested_path(analysis: Analysis, source: VideoSource) -> Path:
    """Where a save dialog starts for an analysis without a video file: ``<folder>/<layer name><scorer>.h5``."""
    folder = Path(source.folder or os.getcwd())
    folder = folder if folder.is_dir() else folder.parent
    return folder / f"{source.name}{analysis.scorer}.h5"


def h5_path(path: str | os.PathLike) -> Path:
    """``path`` with the ``.h5`` suffix (added when it has another)."""
    path = Path(path)
    return path if path.suffix.lower() == ".h5" else path.with_name(path.name + ".h5")


@dataclass(frozen=True)
class PredictionsWrite:
    """DeepLabCut's ``.h5`` + ``.csv`` (+ ``_meta.json``) of predictions, copied from an analysis."""

    path: Path
    xy: np.ndarray
    likelihood: np.ndarray
    bodyparts: list[str]
    scorer: str
    metadata: dict
    filtered: bool = False

    @classmethod
    def of(
        cls, analysis: Analysis, source: VideoSource, path: str | os.PathLike, filter_options: dict | None = None
    ) -> PredictionsWrite:
        """The raw predictions, or with ``filter_options`` the filter preview's (recorded in the metadata)."""
        metadata = analysis.metadata(source)
        xy, likelihood = analysis.xy, analysis.likelihood
        if filter_options is not None:
            xy, likelihood = analysis.filtered
            metadata["filter"] = dict(filter_options)
        return cls(
            Path(path),
            xy.copy(),
            likelihood.copy(),
            list(analysis.bodyparts),
            analysis.scorer,
            metadata,
            filtered=filter_options is not None,
        )

    def write(self) -> Path:
        """Write the files (in a worker: the arrays are this write's own); returns the ``.h5``."""
        from napari_posekit.core.predictions import write_predictions

        return write_predictions(
            self.path, self.xy, self.likelihood, self.bodyparts, self.scorer, csv=True, metadata=self.metadata
        )


@dataclass(frozen=True)
class ExportPlan:
    """A labeled video to write, and the prediction files to write before it."""

    source: Any
    path: Path
    xy: np.ndarray
    likelihood: np.ndarray
    bodyparts: list[str]
    options: dict[str, Any]
    writes: tuple[PredictionsWrite, ...] = ()

    @property
    def n_frames(self) -> int:
        return self.options["stop"] - self.options["start"]


def export_plan(
    analysis: Analysis,
    source: Any,
    path: str | os.PathLike,
    *,
    filtered: bool,
    pcutoff: float,
    tail_length: int,
    fps: float | None,
    writes: tuple[PredictionsWrite, ...] = (),
) -> ExportPlan:
    """The frames from the first to the last analysed one, drawn with the display's p-cutoff and tail length."""
    xy, likelihood = analysis.filtered if filtered else (analysis.xy, analysis.likelihood)
    frames = np.flatnonzero(analysis.analysed)
    options = {
        "skeleton": list(analysis.skeleton),
        "pcutoff": float(pcutoff),
        "trail_length": int(tail_length),
        "skeleton_color": (255, 255, 255),
        "start": int(frames[0]),
        "stop": int(frames[-1]) + 1,
        "fps": fps,
    }
    return ExportPlan(source, Path(path), xy.copy(), likelihood.copy(), list(analysis.bodyparts), options, writes)


def iter_export(plan: ExportPlan, should_stop: Callable[[], bool]) -> Generator[dict[str, Any], None, Path | None]:
    """Write the plan's prediction files, then its labeled video.

    Yields ``{"event": "saved", "path", "filtered"}`` per prediction file and
    ``{"event": "frame", "done"}`` per frame written; returns the video's
    path, or None when stopped (no video is left behind).
    """
    from napari_posekit.core.labeled_video import iter_labeled_video

    for write in plan.writes:
        yield {"event": "saved", "path": write.write(), "filtered": write.filtered}
    frames = iter_labeled_video(plan.source, plan.xy, plan.likelihood, plan.bodyparts, plan.path, **plan.options)
    while True:
        if should_stop():
            frames.close()  # leaves no file behind
            return None
        try:
            done = next(frames)
        except StopIteration as finished:
            return finished.value
        yield {"event": "frame", "done": done}
