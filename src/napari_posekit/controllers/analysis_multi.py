"""The Analysis widget's work on several animals, without napari.

- :func:`analysis_kind` says whether a model box and a video call for the
  single-animal or the multi-animal analysis, and refuses a single-animal
  model on a multi-animal project and the reverse (:class:`ModelMismatch`,
  a message for the person).
- :class:`MultiAnalysis`: the poses of the animals of one video, held for the
  whole video (NaN where not analysed or not found), with the finder's
  identity evidence; :class:`MultiAnalyses` keeps them by video layer id.
- :func:`iter_multi_analysis`: the run's work: load the model
  (:class:`~napari_posekit.core.topdown.MultiAnimalModel`), then predict
  block after block of consecutive frames
  (:func:`~napari_posekit.core.topdown.predict_video` on one open reader).
- :class:`TrackingPlan`: what a run ends with, copied so a worker can do it:
  the poses tracked into one track per individual
  (:func:`~napari_posekit.core.topdown.track_identities`) and written as
  DeepLabCut's multi-animal ``<video stem><scorer>_el.h5`` (+ ``.csv``) beside
  the video (:func:`~napari_posekit.core.multianimal.write_tracks`).
- :func:`find_tracks_file`: predictions of several animals written earlier
  beside a video, which the widget offers to open.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_posekit.controllers.analysis import RunSpan
from napari_posekit.core.topdown_train import MULTIANIMAL_FILE

MULTI = "multi"
SINGLE = "single"
BLOCK_FRAMES = 32
"""Frames per block of a multi-animal run: the layers grow by this much."""


class ModelMismatch(ValueError):
    """A model of the other kind than the project (single- vs multi-animal); the message is for the person."""


# --------------------------------------------------------------------------- which analysis
def project_of(path: str | os.PathLike | None, levels: int = 6) -> Path | None:
    """The project folder (with ``config.yaml``) ``path`` is in or names, looking up ``levels`` folders; or None."""
    if not path:
        return None
    here = Path(path).expanduser()
    if here.suffix.lower() in (".yaml", ".yml") and here.is_file():
        return here.parent
    for folder in [here, *here.parents][: levels + 1]:
        if (folder / "config.yaml").is_file():
            return folder
    return None


def is_multianimal_project(project: Path | None) -> bool | None:
    """Whether ``project``'s config says ``multianimalproject: true``; None when unknown or unreadable."""
    if project is None:
        return None
    from napari_posekit.core.config import read_config

    try:
        return read_config(project).multianimal
    except (OSError, ValueError):
        return None


def model_is_multianimal(model: str | os.PathLike) -> bool:
    """Whether the model box names a multi-animal model: its folder, ``multianimal.json``, a checkpoint of one,
    or a multi-animal project."""
    path = Path(model).expanduser()
    if path.name == MULTIANIMAL_FILE or (path.is_dir() and (path / MULTIANIMAL_FILE).is_file()):
        return True
    if path.is_file() and path.suffix == ".pt":
        return any((parent / MULTIANIMAL_FILE).is_file() for parent in path.parents[:2])
    if path.is_dir() or path.suffix.lower() in (".yaml", ".yml"):
        return bool(is_multianimal_project(project_of(path, levels=0)))
    return False


def analysis_kind(model: str | os.PathLike, video: str | os.PathLike | None, project: Path | None = None) -> str:
    """:data:`MULTI` or :data:`SINGLE`: the analysis the model box calls for.

    A project in the box decides by its config.  A model file is checked
    against the video's project (the one the video sits in, else the
    ``project`` given, else the one the model sits in): a single-animal model
    on a multi-animal project, or the reverse, is a :class:`ModelMismatch`.
    """
    multi = model_is_multianimal(model)
    path = Path(model).expanduser()
    if (path.is_dir() and (path / "config.yaml").is_file()) or path.suffix.lower() in (".yaml", ".yml"):
        return MULTI if multi else SINGLE
    project = project_of(Path(video).parent if video else None, levels=1) or project or project_of(path)
    wanted = is_multianimal_project(project)
    if wanted and not multi:
        raise ModelMismatch(
            f"{path.name} is a single-animal model: it cannot tell apart the animals of {project.name}, a "
            f"multi-animal project. Choose the project itself (its multi-animal model) or train one in the "
            f"Training widget"
        )
    if wanted is False and multi:
        raise ModelMismatch(
            f"{path.name} is a multi-animal model but {project.name} is a single-animal project. Choose the "
            f"project itself (its single-animal model) or a checkpoint trained on it"
        )
    return MULTI if multi else SINGLE


# --------------------------------------------------------------------------- the predictions
@dataclass(eq=False)
class MultiAnalysis:
    """Poses of several animals over one video, held for the whole video (NaN where not analysed or not found)."""

    layer_id: Any
    model_key: tuple
    individuals: list[str]
    bodyparts: list[str]
    skeleton: list[tuple[str, str]]
    scorer: str
    video_path: Path | None
    poses: np.ndarray  # (T, I, K, 3), as shown: tracked once tracking ran
    evidence: np.ndarray  # (T, I, I), rows in the finder's order (``raw``'s)
    analysed: np.ndarray  # (T,)
    identity: np.ndarray | None = None  # (T, I) once tracked
    tracked: bool = False
    saved: Path | None = None
    model_folder: Path | None = None
    raw: np.ndarray | None = None  # (T, I, K, 3) as the finder assigned them: what tracking starts from

    def __post_init__(self) -> None:
        if self.raw is None:
            self.raw = self.poses.copy()

    @classmethod
    def new(cls, layer_id: Any, n_frames: int, model, key: tuple, video_path: Path | None) -> MultiAnalysis:
        n, k = len(model.individuals), len(model.bodyparts)
        return cls(
            layer_id=layer_id,
            model_key=key,
            individuals=list(model.individuals),
            bodyparts=list(model.bodyparts),
            skeleton=[tuple(e) for e in model.skeleton],
            scorer=model.scorer,
            video_path=video_path,
            poses=np.full((n_frames, n, k, 3), np.nan, np.float32),
            evidence=np.full((n_frames, n, n), np.nan, np.float32),
            analysed=np.zeros(n_frames, bool),
            model_folder=getattr(model, "folder", None),
        )

    @classmethod
    def of_tracks(cls, layer_id: Any, n_frames: int, tracks, path: Path | None) -> MultiAnalysis:
        """Predictions read from a file (:func:`~napari_posekit.core.multianimal.read_tracks`), as tracked."""
        n, k = tracks.n_individuals, len(tracks.bodyparts)
        frames = np.asarray(tracks.frames, dtype=np.int64)
        inside = (frames >= 0) & (frames < n_frames)
        analysis = cls(
            layer_id=layer_id,
            model_key=("file", str(path)),
            individuals=list(tracks.individuals),
            bodyparts=list(tracks.bodyparts),
            skeleton=[tuple(e) for e in tracks.skeleton],
            scorer=tracks.scorer,
            video_path=Path(tracks.video) if tracks.video else None,
            poses=np.full((n_frames, n, k, 3), np.nan, np.float32),
            evidence=np.full((n_frames, n, n), np.nan, np.float32),
            analysed=np.zeros(n_frames, bool),
            identity=np.zeros((n_frames, n), np.float32),
            tracked=True,
            saved=path,
        )
        analysis.poses[frames[inside]] = tracks.poses[inside]
        analysis.raw[frames[inside]] = tracks.poses[inside]
        analysis.analysed[frames[inside]] = True
        if tracks.identity is not None:
            analysis.identity[frames[inside]] = tracks.identity[inside]
        return analysis

    def add(self, start: int, poses: np.ndarray, evidence: np.ndarray) -> None:
        """Take one block of untracked poses from frame ``start`` on."""
        stop = start + len(poses)
        self.poses[start:stop] = poses
        self.raw[start:stop] = poses
        self.evidence[start:stop] = evidence
        self.analysed[start:stop] = True
        self.tracked = False

    @property
    def frames(self) -> np.ndarray:
        """The analysed frames."""
        return np.flatnonzero(self.analysed)

    def tracks(self, pcutoff: float | None = None):
        """The analysed frames as :class:`~napari_posekit.core.multianimal.Tracks` (body parts below ``pcutoff`` left out)."""
        from napari_posekit.core.multianimal import Tracks
        from napari_posekit.core.topdown import identity_of

        frames = self.frames
        poses = self.poses[frames].copy()
        if pcutoff is not None:
            poses[~(poses[..., 2] >= pcutoff)] = np.nan
        identity = self.identity[frames] if self.identity is not None else identity_of(self.evidence[frames])
        return Tracks(
            poses=poses,
            individuals=list(self.individuals),
            bodyparts=list(self.bodyparts),
            frames=frames.astype(np.int64),
            scorer=self.scorer,
            identity=np.asarray(identity, np.float32),
            skeleton=list(self.skeleton),
            video=str(self.video_path) if self.video_path else None,
        )

    def take_tracked(self, tracks) -> None:
        """Put tracked poses (of :meth:`tracks`' frames) back, with their identity confidence."""
        frames = np.asarray(tracks.frames, dtype=np.int64)
        self.poses[frames] = tracks.poses
        if self.identity is None:
            self.identity = np.zeros(self.poses.shape[:2], np.float32)
        if tracks.identity is not None:
            self.identity[frames] = tracks.identity
        self.tracked = True


class MultiAnalyses:
    """The multi-animal analyses of the viewer's videos by layer id."""

    def __init__(self) -> None:
        self._by_id: dict[Any, MultiAnalysis] = {}

    def get(self, layer_id: Any) -> MultiAnalysis | None:
        return self._by_id.get(layer_id)

    def __iter__(self) -> Iterator[MultiAnalysis]:
        return iter(list(self._by_id.values()))

    def adopt(self, analysis: MultiAnalysis) -> None:
        self._by_id[analysis.layer_id] = analysis

    def forget(self, layer_id: Any) -> MultiAnalysis | None:
        return self._by_id.pop(layer_id, None)

    def receive(self, run: MultiRun, event: dict[str, Any]) -> None:
        """Take one event of :func:`iter_multi_analysis`; a new model (or video length) starts a new analysis."""
        if event["event"] == "ready":
            run.model, run.key = event["model"], event["key"]
            return
        if run.analysis is None:
            analysis = self._by_id.get(run.layer_id)
            if analysis is None or analysis.model_key != run.key or len(analysis.poses) != run.n_frames:
                analysis = MultiAnalysis.new(run.layer_id, run.n_frames, run.model, run.key, run.video_path)
                self._by_id[run.layer_id] = analysis
            run.analysis = analysis
        run.analysis.add(event["start"], event["poses"], event["evidence"])
        run.done, run.fps = event["done"], event["fps"]


@dataclass
class MultiRun(RunSpan):
    """One multi-animal run over frames ``start`` to ``stop`` (not included) of a video."""

    analysis: MultiAnalysis | None = None
    model: Any = None
    written: list[Path] = field(default_factory=list)
    note: str = ""

    def start_text(self) -> str:
        return f"Loading the multi-animal model to analyse frames {self.start}–{self.stop - 1}…"

    def model_text(self) -> str:
        model = self.model
        names = ", ".join(getattr(model, "individuals", []) or [])
        backend = getattr(model, "backend", "")
        return f"Multi-animal model loaded ({names}){f' on {backend}' if backend else ''}."

    def status_text(self) -> str:
        n = len(getattr(self.model, "individuals", []) or [])
        return f"{self.done}/{self.total} frames · {self.fps:.1f} frames/s · {n} animals"

    def finished_text(self, name: str) -> str:
        """After tracking and writing: the frames, the speed, where the file went (and why it is not tracked)."""
        speed = f"{self.fps:.1f} frames/s"
        done = "analysed" if self.note else "analysed and tracked"
        if self.done < self.total:
            text = f"Stopped: {self.done} of {self.total} frames of {name} {done} ({speed})."
        else:
            text = f"{done.capitalize()} {self.total} frames of {name} ({speed})."
        if self.written:
            text += f" Wrote {self.written[0]}."
        return f"{text} {self.note}".strip()


def load_multi_model(
    model: str | os.PathLike, cached: tuple | None, source: Any, *, backend: str, report=None
) -> tuple[tuple, Any]:
    """``(key, MultiAnimalModel)`` named by the model box (``cached`` when it is the same, on the same backend).

    Slow: call it off the GUI thread.  A project with single-animal models
    only, or a single-animal checkpoint, is a
    :class:`~napari_posekit.core.checkpoint.CheckpointError` that says so.
    """
    from napari_posekit.core.topdown import MultiAnimalModel, find_model_folder

    folder = find_model_folder(Path(model).expanduser())
    description = folder / MULTIANIMAL_FILE
    key = (MULTI, str(folder.resolve()), description.stat().st_mtime_ns)
    if cached is not None and cached[0] == key and (cached[2] if len(cached) > 2 else None) == backend:
        return key, cached[1]
    from napari_posekit.core.inference import probe_frames

    frames = probe_frames(source, count=8) if source is not None else None
    loaded = MultiAnimalModel.load(folder, backend=backend, probe_frames=frames, report=report)
    return key, loaded


def _reader(source: Any):
    """One reader for the whole run (consecutive blocks keep the decoder where it is); ``(frames, close)``."""
    if isinstance(source, (str, os.PathLike)):
        from napari_posekit.core.video import VideoReader

        reader = VideoReader(source, readahead=0, cache_bytes=0, max_decoders=1, convert_threads=1)
        return reader, reader.close
    return source, lambda: None


def iter_multi_analysis(
    model: str,
    cached: tuple | None,
    source: Any,
    start: int,
    stop: int,
    batch_size: int,
    should_stop: Callable[[], bool],
    *,
    backend: str = "auto",
    block: int = BLOCK_FRAMES,
    report: Callable[[str], None] | None = None,
) -> Generator[dict[str, Any], None, int]:
    """Load the multi-animal model, then predict block after block of ``block`` frames.

    Yields ``{"event": "ready", "key", "model", "backend"}`` once and
    ``{"event": "block", "start", "poses", "evidence", "done", "fps"}`` per
    block (poses untracked, as the finder assigned them); returns the frames
    done.  ``source`` is a video path or an array of frames.
    """
    from napari_posekit.core.topdown import predict_video

    key, net = load_multi_model(model, cached, source, backend=backend, report=report)
    yield {"event": "ready", "key": key, "model": net, "backend": backend}
    frames, close = _reader(source)
    done, t0 = 0, time.monotonic()
    try:
        for s in range(start, stop, max(1, block)):
            if should_stop():
                break
            _, poses, evidence = predict_video(net, frames, start=s, stop=min(s + block, stop), batch_size=batch_size)
            done += len(poses)
            fps = done / max(time.monotonic() - t0, 1e-9)
            yield {"event": "block", "start": s, "poses": poses, "evidence": evidence, "done": done, "fps": fps}
    finally:
        close()
    return done


# --------------------------------------------------------------------------- tracking and files
def tracks_path(analysis: MultiAnalysis, name: str, folder: str | os.PathLike | None) -> Path | None:
    """Where a run's tracks go: ``<video stem><scorer>_el.h5`` beside the video (else in ``folder``, by the layer's
    ``name``); None when there is nowhere to write."""
    from napari_posekit.core.topdown import tracks_output_path

    if analysis.video_path is not None:
        return tracks_output_path(analysis.video_path, analysis.scorer)
    if folder:
        folder = Path(folder)
        return (folder if folder.is_dir() else folder.parent) / f"{name}{analysis.scorer}_el.h5"
    return None


@dataclass(frozen=True)
class TrackingPlan:
    """The analysed frames of a :class:`MultiAnalysis`, copied, to track and write in a worker."""

    frames: np.ndarray
    poses: np.ndarray
    evidence: np.ndarray
    template: Any  # Tracks with names, scorer, skeleton, video
    path: Path | None

    @classmethod
    def of(cls, analysis: MultiAnalysis, path: Path | None) -> TrackingPlan:
        frames = analysis.frames
        return cls(frames, analysis.raw[frames].copy(), analysis.evidence[frames].copy(), analysis.tracks(), path)

    def run(self) -> tuple[Any, list[Path], str]:
        """``(tracked Tracks, files written, note)``: one track per individual, with identity confidence.

        Should tracking keep fewer than half of the animals the finder found
        (poses too unsure to follow), the finder's frame-by-frame identities
        are kept instead and ``note`` says so, as it says when the file cannot
        be written; otherwise ``note`` is empty.
        """
        from dataclasses import replace

        from napari_posekit.core.multianimal import TracksFileError, write_tracks
        from napari_posekit.core.topdown import identity_of, track_identities

        poses, identity, note = self.poses, identity_of(self.evidence), ""
        if len(self.frames):
            try:
                tracked, confidence = track_identities(self.poses, self.evidence)
            except ValueError as err:  # poses that give the tracker nothing to measure by
                tracked, confidence, why = None, None, str(err)
            found = _animals(self.poses)
            kept = _animals(tracked) if tracked is not None else 0
            if tracked is not None and kept >= 0.5 * found:
                poses, identity = tracked, confidence
            else:
                why = f"kept only {kept} of the {found} animals found" if tracked is not None else why
                note = f"Tracking failed ({why}); the finder's identities frame by frame are kept instead."
        tracks = replace(self.template, poses=np.asarray(poses, np.float32), identity=identity)
        written = []
        try:
            written = write_tracks(self.path, tracks, video=tracks.video) if self.path is not None else []
        except (OSError, TracksFileError) as err:  # a read-only folder: the tracks stay, Save writes them elsewhere
            note = f"{note} Could not write {self.path.name} ({err}); Save predictions writes them elsewhere."
        return tracks, [Path(p) for p in written], note.strip()


def _animals(poses: np.ndarray) -> int:
    """How many (frame, individual) poses have a body part placed."""
    return int(np.isfinite(poses[..., :2]).all(-1).any(-1).sum())


def find_tracks_file(video_path: str | os.PathLike | None) -> Path | None:
    """The newest ``<video stem>*_el.h5`` beside the video (predictions of several animals), or None."""
    if video_path is None:
        return None
    video_path = Path(video_path)
    found = []
    for path in video_path.parent.glob(glob.escape(video_path.stem) + "*_el.h5"):
        try:
            found.append((path.stat().st_mtime_ns, path))
        except OSError:
            continue
    return max(found)[1] if found else None


def read_tracks_file(path: str | os.PathLike, layer_id: Any, n_frames: int) -> MultiAnalysis:
    """Predictions of several animals read from ``path`` (slow: a worker), as a tracked :class:`MultiAnalysis`."""
    from napari_posekit.core.multianimal import read_tracks

    return MultiAnalysis.of_tracks(layer_id, n_frames, read_tracks(path), Path(path))
