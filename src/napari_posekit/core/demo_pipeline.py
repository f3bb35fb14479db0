"""The end-to-end demo, napari-free: the product's whole job on the built-in synthetic sample.

:func:`run_pipeline` does what a person does with a new recording, with the
project's own functions at every step:

1. writes the synthetic sample video with its exact ground truth
   (:func:`~napari_posekit.core.sample.write_sample`);
2. creates a DeepLabCut project for it (:func:`~napari_posekit.core.project.create_project`),
   picks frames by k-means (:func:`~napari_posekit.core.frames.select_kmeans`,
   :func:`~napari_posekit.core.frames.extract_frames`) and labels them from the
   ground truth (``CollectedData_<scorer>.h5/.csv`` through
   :func:`~napari_posekit.core.collected_data.write_collected`);
3. trains with a time budget (:func:`~napari_posekit.core.workflow.train_project`)
   and evaluates (:func:`~napari_posekit.core.workflow.evaluate_project`);
4. analyses the whole video (:func:`~napari_posekit.core.inference.analyze_video`)
   into DeepLabCut prediction files and draws a labeled video
   (:func:`~napari_posekit.core.labeled_video.iter_labeled_video`);
5. measures the predictions against the ground truth on every frame.

Output layout (``output_dir``)::

    sample/                 the video and its ground-truth CSV; reused when the same sample was written
                            before (the names hold a digest of the rendered frames, so a reused file is
                            never stale)
    project/<task>-<scorer>-<date>/
                            the DeepLabCut project: config.yaml, videos/, labeled-data/, posekit-models/;
                            the predictions (.h5/.csv/_meta.json) and the labeled video sit beside the video
                            in videos/, as DeepLabCut puts them. Deleted and made afresh on every run.
    summary.json            errors, timings and paths of the last run
    .posekit-demo           marks the folder as the demo's, so a rerun may clear project/

:func:`check_output_dir` checks the folder before any work: a path that is a
file, lies under a file or cannot be written, or a folder holding a
``project/`` the demo did not make, raises :class:`DemoError` with the reason.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .options import TRAIN_BATCH_SIZE
from .project import ensure_writable_folder

__all__ = [
    "DemoError",
    "DemoOptions",
    "DemoResult",
    "TextProgress",
    "check_output_dir",
    "format_result",
    "run_pipeline",
]

MARKER = ".posekit-demo"
TASK = "demo"
SCORER = "posekit"
#: What a run replaces in an output folder the demo made.
_RUN_OUTPUTS = ("project", "summary.json", "screenshot.png")

Progress = Callable[..., None]


class DemoError(RuntimeError):
    """The demo cannot run (the message says why); raised before any work starts."""


@dataclass
class DemoOptions:
    """Sizes and budget of the demo (defaults chosen by measurement, see the README's Quick start)."""

    n_frames: int = 300
    height: int = 360
    width: int = 480
    seed: int = 0
    n_labeled: int = 40
    minutes: float = 2.0
    epochs: int | None = None
    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    input_scale: float = 1.0
    input_size: tuple[int, int] | None = (128, 128)
    batch_size: int = TRAIN_BATCH_SIZE
    trail: int = 10
    device: str | None = None


@dataclass
class DemoResult:
    """What :func:`run_pipeline` made: paths, errors in pixels and seconds per step."""

    output_dir: Path
    video: Path
    groundtruth_csv: Path
    config: Path
    labeled_frames: list[int]
    collected: tuple[Path, Path]
    checkpoint: Path
    evaluation_files: list[Path]
    train_error_px: float
    test_error_px: float
    predictions: Path
    predictions_csv: Path
    labeled_video: Path
    mean_error_px: float
    unlabeled_error_px: float
    bodypart_error_px: dict[str, float]
    missing_keypoints: int
    n_frames: int
    summary: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def project(self) -> Path:
        return self.config.parent


# --------------------------------------------------------------------------- output folder
def _reason(err: OSError) -> str:
    return err.strerror or str(err)


def check_output_dir(output_dir: str | os.PathLike) -> Path:
    """The absolute output folder, created and checked writable; :class:`DemoError` when it cannot be used.

    Nothing is removed here; :func:`run_pipeline` clears the previous run's
    ``project/`` only in a folder marked as the demo's.
    """
    out = Path(output_dir).expanduser().absolute()
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            what = "the output folder" if parent == out else f"a part of the output folder's path ({parent})"
            raise DemoError(f"cannot write to {out}: {what} is a file, not a folder; choose another --output-dir")
        if parent.exists():
            break
    try:
        ensure_writable_folder(out)
    except OSError as err:
        raise DemoError(f"cannot write to {out}: {_reason(err)}; choose another --output-dir") from err
    if not (out / MARKER).is_file():
        taken = [name for name in _RUN_OUTPUTS if (out / name).exists()]
        if taken:
            raise DemoError(
                f"{out} holds {', '.join(taken)} that the demo did not make; it will not replace them: "
                f"choose another --output-dir"
            )
    return out


def _start_fresh(out: Path) -> None:
    """Remove the previous run's project, summary and screenshot; mark the folder as the demo's."""
    for name in _RUN_OUTPUTS:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    (out / MARKER).write_text("made by 'posekit demo': project/, summary.json, screenshot.png are replaced on reruns\n")


# --------------------------------------------------------------------------- progress
def _clock(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "--:--"
    seconds = round(max(seconds, 0.0))
    return f"{seconds // 60}:{seconds % 60:02d}"


class TextProgress:
    """Plain-text progress bars with elapsed time and ETA, one line per step.

    Call with ``(step, fraction, eta_s=None, note="")``; a new ``step`` ends
    the previous line. On a terminal the line is redrawn in place (at most
    every ``interval`` seconds); otherwise a line is printed every 10 %.
    """

    def __init__(self, stream: TextIO | None = None, width: int = 28, interval: float = 0.25):
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.interval = interval
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.step: str | None = None
        self.t0 = 0.0
        self.last_draw = 0.0
        self.last_tenth = -1
        self.line = ""

    def __call__(self, step: str, fraction: float, eta_s: float | None = None, note: str = "") -> None:
        now = time.monotonic()
        if step != self.step:
            self.close()
            self.step, self.t0, self.last_draw, self.last_tenth = step, now, 0.0, -1
        fraction = min(max(float(fraction), 0.0), 1.0)
        elapsed = now - self.t0
        if eta_s is None and fraction > 0:
            eta_s = elapsed * (1.0 - fraction) / fraction
        filled = round(self.width * fraction)
        self.line = (
            f"{step:<9s} [{'#' * filled}{'-' * (self.width - filled)}] {100 * fraction:3.0f}%  "
            f"{_clock(elapsed)} elapsed, ETA {_clock(eta_s if fraction < 1 else 0.0)}" + (f"  {note}" if note else "")
        )
        if self.tty:
            if now - self.last_draw >= self.interval or fraction >= 1.0:
                self.stream.write("\r\033[K" + self.line)
                self.stream.flush()
                self.last_draw = now
        elif int(10 * fraction) > self.last_tenth:
            self.last_tenth = int(10 * fraction)
            self.stream.write(self.line + "\n")
            self.stream.flush()

    def close(self) -> None:
        """End the current line."""
        if self.step is not None and self.tty:
            self.stream.write("\r\033[K" + self.line + "\n")
            self.stream.flush()
        self.step = None


def _drive(gen: Generator[Any, None, Any], on_item: Callable[[Any], None]) -> Any:
    """Run ``gen`` to its end, passing every item to ``on_item``; returns its return value."""
    while True:
        try:
            item = next(gen)
        except StopIteration as finished:
            return finished.value
        on_item(item)


# --------------------------------------------------------------------------- steps
def _make_project(out: Path, options: DemoOptions, progress: Progress, log: Callable[[str], None]):
    """Sample, project, k-means frames and their ground-truth labels; returns ``(sample, config, frames, files)``."""
    from .collected_data import arrays_to_collected, write_collected
    from .config import read_config, write_config
    from .frames import extract_frames, iter_select_kmeans
    from .project import create_project
    from .sample import write_sample

    sample = write_sample(
        out / "sample", n_frames=options.n_frames, height=options.height, width=options.width, seed=options.seed
    )
    behaviour = sample.behaviour
    log(
        f"sample video: {sample.video} ({options.n_frames} frames, {options.width}x{options.height}) "
        f"with exact ground truth {sample.groundtruth_csv.name}"
    )
    (out / "project").mkdir()
    config = create_project(
        out / "project", TASK, SCORER, [sample.video], list(behaviour.bodyparts), behaviour.skeleton, copy_videos=True
    )
    settings = read_config(config)
    settings["numframes2pick"] = int(options.n_labeled)
    write_config(config, settings)
    video = config.parent / "videos" / sample.video.name
    progress("k-means", 0.0)
    frames = _drive(iter_select_kmeans(video, options.n_labeled, seed=options.seed), lambda f: progress("k-means", f))
    extracted = extract_frames(video, frames, config.parent / "labeled-data")
    keys = [p.relative_to(config.parent).as_posix() for p in extracted.paths]
    labels = arrays_to_collected(keys, list(behaviour.bodyparts), behaviour.keypoints[extracted.frames], SCORER)
    collected = write_collected(labels, extracted.folder, SCORER)
    return sample, config, list(extracted.frames), collected


def _train(config: Path, options: DemoOptions, progress: Progress, log: Callable[[str], None]):
    """Train with the project's trainer and evaluate; returns ``(checkpoint, evaluation)``."""
    from .workflow import evaluate_project, train_project

    extra: dict[str, Any] = {}
    if options.input_size is not None:
        extra["input_size"] = tuple(options.input_size)
    gen = train_project(
        config,
        backbone=options.backbone,
        pretrained=options.pretrained,
        max_minutes=options.minutes,
        epochs=options.epochs,
        batch_size=options.batch_size,
        input_scale=options.input_scale,
        seed=options.seed,
        device=options.device,
        **extra,
    )
    state = {"note": ""}

    def on_item(p: dict[str, Any]) -> None:
        if p.get("event") == "warning":
            log(f"warning: {p['message']}")
            return
        if p.get("event") == "evaluated":
            state["note"] = f"epoch {p['epoch']}, test error {p['test_error_px']:.2f} px"
        elif not state["note"] or "loss" in state["note"]:
            state["note"] = f"epoch {p['epoch']}, loss {p['loss']:.4f}"
        progress("training", p["progress"], p.get("eta_s"), state["note"])

    progress("training", 0.0, note="loading the network")
    checkpoint = _drive(gen, on_item)
    progress("training", 1.0, 0.0, state["note"])
    evaluation = evaluate_project(config, checkpoint, device=options.device or "cpu")
    return checkpoint, evaluation


def _analyse(config: Path, video: Path, options: DemoOptions, progress: Progress):
    """The whole video through the project's analysis engine; returns ``(predictor, h5)``."""
    from .inference import Predictor, analyze_video
    from .train import default_device

    progress("analysis", 0.0, note="loading the model")
    predictor = Predictor.load(config.parent, device=options.device or default_device())
    gen = analyze_video(predictor, video, overwrite=True)
    h5 = _drive(gen, lambda p: progress("analysis", p["done"] / p["total"], note=f"{p['fps']:.0f} frames/s"))
    return predictor, Path(h5)


def _labeled_video(predictor, h5: Path, video: Path, pcutoff: float, options: DemoOptions, progress: Progress):
    """``<predictions stem>_labeled.mp4`` beside the predictions, with skeleton and trails."""
    from .labeled_video import iter_labeled_video, labeled_video_path
    from .predictions import read_predictions

    progress("video", 0.0)
    predictions = read_predictions(h5)
    total = predictions.n_frames
    gen = iter_labeled_video(
        video,
        predictions.xy,
        predictions.likelihood,
        predictions.bodyparts,
        labeled_video_path(h5),
        skeleton=predictor.skeleton,
        pcutoff=pcutoff,
        trail_length=options.trail,
    )
    return Path(_drive(gen, lambda done: progress("video", done / max(total, 1))))


def _errors(h5: Path, truth: np.ndarray, bodyparts, labeled: list[int]) -> dict[str, Any]:
    """Euclidean pixel error of the predictions against the ground truth, every frame and body part."""
    from .predictions import read_predictions

    predictions = read_predictions(h5)
    order = [list(predictions.bodyparts).index(bp) for bp in bodyparts]
    xy = predictions.xy[:, order]
    if xy.shape != truth.shape:
        raise DemoError(f"{h5}: predictions for {xy.shape[0]} frames, the video has {truth.shape[0]}")
    err = np.linalg.norm(xy - truth, axis=-1)  # (frames, body parts), NaN where nothing was predicted
    unlabeled = np.ones(len(err), bool)
    unlabeled[labeled] = False
    missing = int(np.isnan(err).sum())
    return {
        "mean_error_px": float(np.nanmean(err)) if missing < err.size else float("nan"),
        "unlabeled_error_px": float(np.nanmean(err[unlabeled])) if unlabeled.any() else float("nan"),
        "bodypart_error_px": {bp: float(np.nanmean(err[:, k])) for k, bp in enumerate(bodyparts)},
        "missing_keypoints": missing,
    }


def _write_summary(result: DemoResult, options: DemoOptions) -> Path:
    def plain(value):
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    path = result.summary = result.output_dir / "summary.json"
    data = {"options": plain(asdict(options)), **plain(asdict(result))}
    tmp = path.with_name(".summary.json.tmp")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=True))
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- the pipeline
def run_pipeline(
    output_dir: str | os.PathLike,
    options: DemoOptions | None = None,
    *,
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
) -> DemoResult:
    """Sample -> project -> k-means frames labeled from the ground truth -> training -> analysis -> labeled video.

    ``progress(step, fraction, eta_s=None, note="")`` is called as each step
    goes (:class:`TextProgress` draws it in a terminal); ``log(text)`` gets a
    line per finished step. Returns a :class:`DemoResult`; ``summary.json``
    in the output folder records it. Raises :class:`DemoError` before any
    work when the output folder cannot be used (:func:`check_output_dir`).
    """
    options = options or DemoOptions()
    progress = progress or (lambda *args, **kwargs: None)
    log = log or (lambda text: None)
    out = check_output_dir(output_dir)
    _start_fresh(out)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    sample, config, frames, collected = _make_project(out, options, progress, log)
    timings["project"] = time.perf_counter() - t0
    log(f"project: {config.parent} ({len(frames)} frames picked by k-means, labels {collected[0].name})")

    t = time.perf_counter()
    checkpoint, evaluation = _train(config, options, progress, log)
    timings["training"] = time.perf_counter() - t
    log(
        f"model: {checkpoint} (train error {evaluation.error('train'):.2f} px, "
        f"test error {evaluation.error('test'):.2f} px on the labeled frames)"
    )

    t = time.perf_counter()
    video = config.parent / "videos" / sample.video.name
    predictor, h5 = _analyse(config, video, options, progress)
    timings["analysis"] = time.perf_counter() - t

    t = time.perf_counter()
    pcutoff = float(evaluation.pcutoff)
    labeled = _labeled_video(predictor, h5, video, pcutoff, options, progress)
    timings["labeled_video"] = time.perf_counter() - t
    if hasattr(progress, "close"):
        progress.close()

    errors = _errors(h5, sample.behaviour.keypoints, list(sample.behaviour.bodyparts), frames)
    timings["total"] = time.perf_counter() - t0
    result = DemoResult(
        output_dir=out,
        video=video,
        groundtruth_csv=sample.groundtruth_csv,
        config=config,
        labeled_frames=frames,
        collected=collected,
        checkpoint=Path(checkpoint),
        evaluation_files=list(evaluation.files),
        train_error_px=evaluation.error("train"),
        test_error_px=evaluation.error("test"),
        predictions=h5,
        predictions_csv=h5.with_suffix(".csv"),
        labeled_video=labeled,
        n_frames=len(sample.behaviour.keypoints),
        timings=timings,
        **errors,
    )
    _write_summary(result, options)
    return result


def format_result(result: DemoResult) -> str:
    """What the demo made and how well it did, for the terminal."""
    t = result.timings
    parts = ", ".join(f"{bp} {e:.2f}" for bp, e in result.bodypart_error_px.items())
    lines = [
        (
            f"mean error against the ground truth over all {result.n_frames} frames: {result.mean_error_px:.2f} px "
            f"({result.unlabeled_error_px:.2f} px on the {result.n_frames - len(result.labeled_frames)} frames "
            f"never labeled; per body part: {parts})"
        ),
    ]
    if result.missing_keypoints:
        lines.append(f"  {result.missing_keypoints} keypoints were not found at all (left out of the mean)")
    lines += [
        (
            f"times: project {t.get('project', 0):.0f} s, training {t.get('training', 0):.0f} s, "
            f"analysis {t.get('analysis', 0):.0f} s, labeled video {t.get('labeled_video', 0):.0f} s "
            f"(pipeline {t.get('total', 0):.0f} s)"
        ),
        "files:",
        f"  sample video + ground truth  {result.groundtruth_csv.parent}",
        f"  DeepLabCut project           {result.config}",
        f"  labeled frames (k-means)     {result.collected[0].parent}",
        f"  labels                       {result.collected[0]} (+ .csv)",
        f"  model                        {result.checkpoint}",
        f"  evaluation                   {result.evaluation_files[0] if result.evaluation_files else '-'}",
        f"  predictions                  {result.predictions} (+ .csv, _meta.json)",
        f"  labeled video                {result.labeled_video}",
        f"  summary (errors, times)      {result.summary}",
    ]
    return "\n".join(lines)
