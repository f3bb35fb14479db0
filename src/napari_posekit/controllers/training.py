"""The Training widget's settings, run progress and evaluation, without Qt.

- :class:`TrainSettings`: what the widget's controls hold, with the defaults
  of :class:`~napari_posekit.core.options.TrainOptions`; :func:`train_kwargs`
  turns them into :func:`~napari_posekit.core.workflow.train_project`'s
  keyword arguments and checks them (:class:`SettingsError`).
- :class:`LossHistory`: the loss per step and the test error per evaluation
  that the loss curve draws (a resumed run replaces the steps it repeats).
- :class:`TrainingRun`: one run's progress as the core reports it, and the
  texts the widget shows about it.
- :func:`iter_train_multi` trains a multi-animal project's finder, then pose
  network, as one run (one loss curve, progress and ETA for both).
- Evaluation: :func:`evaluation_table` (the summary table's cells),
  :func:`evaluation_text`, :func:`worst_images`, :func:`find_image` (which
  open image stack shows an evaluated image) and :func:`evaluation_points`
  (the predictions of the images of one stack).
- Label checks before training: :func:`check_project_labels` runs the fast
  checks (no model) as a :class:`LabelAdvice` (the line "Labels: 2 suspects
  (1 swap, 1 geometry) — review them in Label QA" and its tooltip);
  :class:`LabelChecks` keeps the latest and says when the label files changed
  (:func:`labels_fingerprint`) and which training warnings repeat it. The
  Refine widget uses them too.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_posekit.controllers.models import model_name
from napari_posekit.core.options import TRAIN_MINUTES, TrainOptions, train_option_names, train_options

BACKBONES = ("efficientnet_lite0", "resnet18", "resnet50", "mobilenetv3_large_100")
SPLITS = ("random", "block")
WORST_SHOWN = 10
MAX_WARNINGS_SHOWN = 3
RECENT_LOSSES = 20


# --------------------------------------------------------------------------- settings
class SettingsError(ValueError):
    """Settings no training run can use; the message is for the person."""


@dataclass
class TrainSettings:
    """The Training widget's controls: 0 stands for "default" (scale) and "no limit" (epochs, minutes)."""

    backbone: str
    pretrained: bool
    batch_size: int
    lr: float
    split: str
    epochs: int = 0
    minutes: float = TRAIN_MINUTES
    input_scale: float = 0.0

    @classmethod
    def defaults(cls) -> TrainSettings:
        """The core's training defaults, with the widget's time budget instead of an epoch count."""
        options = TrainOptions()
        return cls(
            backbone=options.backbone,
            pretrained=bool(options.pretrained),
            batch_size=options.batch_size,
            lr=options.lr,
            split=options.split,
            epochs=0,
            minutes=TRAIN_MINUTES,
            input_scale=options.input_scale or 0.0,
        )


def train_kwargs(settings: TrainSettings, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for ``train_project`` from the settings (and ``overrides``); checked.

    ``input_scale`` is left out at 0 (the core chooses); epochs and minutes
    at 0 are None (no limit).  Raises :class:`SettingsError` with a message
    for the person when no run could use them.
    """
    options: dict[str, Any] = {
        "backbone": settings.backbone.strip(),
        "pretrained": bool(settings.pretrained),
        "batch_size": int(settings.batch_size),
        "lr": float(settings.lr),
        "split": settings.split,
        "epochs": int(settings.epochs) or None,
        "max_minutes": float(settings.minutes) or None,
    }
    if settings.input_scale > 0:
        options["input_scale"] = float(settings.input_scale)
    options.update(overrides)
    if options.get("epochs") is None and options.get("max_minutes") is None:
        raise SettingsError("set a number of epochs or a time budget (both are 'no limit')")
    if not options.get("backbone"):
        raise SettingsError("choose a backbone")
    if options.get("split") not in SPLITS:
        raise SettingsError(f"the test split is one of {', '.join(SPLITS)}, not {options.get('split')!r}")
    names = set(train_option_names())
    try:
        train_options(**{k: v for k, v in options.items() if k in names}).check()
    except ValueError as err:
        raise SettingsError(str(err)) from err
    return options


# --------------------------------------------------------------------------- progress
@dataclass
class LossHistory:
    """Training loss per step and test error (pixels) per evaluation, in step order."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    test_steps: list[int] = field(default_factory=list)
    test_errors: list[float] = field(default_factory=list)

    def clear(self) -> None:
        for values in (self.steps, self.losses, self.test_steps, self.test_errors):
            values.clear()

    def add_loss(self, step: int, loss: float) -> None:
        """Record one step (a resumed run replaces what it repeats); losses that are not positive are left out."""
        while self.steps and self.steps[-1] >= step:
            self.steps.pop(), self.losses.pop()
        if math.isfinite(loss) and loss > 0:
            self.steps.append(int(step))
            self.losses.append(float(loss))

    def add_test(self, step: int, error_px: float) -> None:
        while self.test_steps and self.test_steps[-1] >= step:
            self.test_steps.pop(), self.test_errors.pop()
        if math.isfinite(error_px):
            self.test_steps.append(int(step))
            self.test_errors.append(float(error_px))


@dataclass
class TrainingRun:
    """One training run's progress, from the events of ``train_project``."""

    project: Path
    resume: bool = False
    progress: dict[str, Any] = field(default_factory=dict)
    recent_losses: list[float] = field(default_factory=list)
    warnings: int = 0
    stopped: bool = False
    multi: bool = False  # a multi-animal project, trained by iter_train_multi

    def record(self, event: dict[str, Any], history: LossHistory) -> str:
        """Take one event: ``"warning"``, ``"evaluated"`` (a test error) or ``"step"``; the history follows."""
        kind = event.get("event")
        if kind == "warning":
            self.warnings += 1
            return "warning"
        if kind == "evaluated":
            error = event.get("test_error_px")
            if error is not None:
                history.add_test(int(event["step"]), float(error))
        else:
            kind = "step"
            history.add_loss(int(event["step"]), float(event["loss"]))
            self.recent_losses = (self.recent_losses + [float(event["loss"])])[-RECENT_LOSSES:]
        self.progress = event
        return kind

    def show_warning(self) -> bool:
        """Whether the warning just recorded is among the first few shown on their own."""
        return self.warnings <= MAX_WARNINGS_SHOWN

    def more_warnings(self) -> str | None:
        """The line about the warnings that were not shown, or None."""
        more = self.warnings - MAX_WARNINGS_SHOWN
        return f"… and {more} more warnings about the labels" if more > 0 else None

    @property
    def fraction(self) -> float:
        return min(max(float(self.progress.get("progress", 0.0)), 0.0), 1.0)

    @property
    def eta_s(self) -> float | None:
        return self.progress.get("eta_s")

    @property
    def epoch(self) -> Any:
        return self.progress.get("epoch", "?")

    def status_text(self, history: LossHistory, eta: str) -> str:
        """``epoch 2 · loss 0.0123 · test 3.45 px · ETA 1:23`` (``eta`` is the formatted time left)."""
        parts = [f"epoch {self.epoch}"]
        if self.progress.get("stage") in STAGES:
            parts.insert(0, STAGES[self.progress["stage"]])
        if self.recent_losses:
            parts.append(f"loss {np.mean(self.recent_losses):.4f}")
        if history.test_errors:
            parts.append(f"test {history.test_errors[-1]:.2f} px")
        parts.append(f"ETA {eta}")
        return " · ".join(parts)

    def finished_text(self, checkpoint: Path) -> str:
        """What the status says when the run ended with ``checkpoint`` (a multi-animal run: its model folder)."""
        try:
            where = checkpoint.relative_to(self.project)
        except ValueError:
            where = checkpoint
        if self.multi:
            from napari_posekit.core.topdown_train import MULTIANIMAL_FILE

            if not (checkpoint / MULTIANIMAL_FILE).is_file():
                return "Stopped before the multi-animal model was complete; Start trains it again."
            done = "Stopped early; the" if self.stopped else "Trained the"
            return f"{done} multi-animal model (animal finder and pose network): {where}. Analyse videos with it."
        if self.stopped:
            return f"Stopped at epoch {self.epoch}; checkpoint saved: {where}. Resume continues it."
        return f"Finished after epoch {self.epoch}; checkpoint: {where}. Evaluating…"


# --------------------------------------------------------------------------- several animals
STAGES = {"finder": "finding the animals", "pose": "body parts"}  # what each network learns
NOT_EVALUATED = "a multi-animal model is not evaluated here yet; analyse a video and review it in Identities"
_SHARED_OPTIONS = ("backbone", "pretrained", "batch_size", "lr", "split")


def iter_train_multi(
    project: str | os.PathLike, *, stop=None, max_minutes: float | None = None, epochs: int | None = None, **options
) -> Generator[dict[str, Any], None, Path]:
    """Train a multi-animal project's model with :func:`train_kwargs`'s ``options``; returns the model folder.

    Settings at their defaults and the input scale are left to the core; steps, ``progress`` and ``eta_s``
    run over both networks.
    """
    from napari_posekit.core.topdown import iter_train_multianimal

    defaults = TrainOptions()
    options.pop("input_scale", None)
    for name in _SHARED_OPTIONS:
        if name in options and options[name] == getattr(defaults, name):
            del options[name]
    gen = iter_train_multianimal(project, minutes=max_minutes, epochs=epochs, stop=stop, **options)
    stage, offset, last, t0 = None, 0, 0, time.monotonic()
    try:
        while True:
            event = dict(next(gen))
            if event.get("stage") != stage:
                stage, offset = event.get("stage"), last
            if "step" in event:
                event["step"] = last = int(event["step"]) + offset
            overall = float(event.get("overall", event.get("progress", 0.0)))
            elapsed = time.monotonic() - t0
            eta = elapsed * (1 - overall) / overall if overall > 0 else None
            if max_minutes:
                eta = min(eta if eta is not None else math.inf, max(60 * max_minutes - elapsed, 0.0))
            event.update(progress=overall, eta_s=eta)
            yield event
    except StopIteration as done:
        return done.value
    finally:
        gen.close()


# --------------------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class Table:
    """A table's cells as text, with headers and tooltips."""

    headers: list[str]
    tooltips: list[str]
    rows: list[str]
    cells: list[list[str]]


def evaluation_table(evaluation) -> Table:
    """The summary table: one row per split; images, errors, per body part and PCK columns."""
    summary = evaluation.summary
    parts = [c for c in summary.columns if c.endswith("_error_px") and c != "mean_error_px"]
    pck = [c for c in summary.columns if c.startswith("pck@")]
    cutoff = f"{evaluation.pcutoff:g}"
    columns = [  # (summary column, header, format, tooltip)
        ("images", "images", "{:.0f}", "labeled images"),
        ("mean_error_px", "error px", "{:.2f}", "mean error over labeled keypoints (pixels)"),
        (
            "mean_error_px_pcutoff",
            f"p>{cutoff} px",
            "{:.2f}",
            f"mean error of keypoints predicted with likelihood >= {cutoff} (pixels)",
        ),
        *[(c, c[: -len("_error_px")], "{:.2f}", f"{c[: -len('_error_px')]}: mean error (pixels)") for c in parts],
        *[
            (
                c,
                "PCK@" + c[4:].removesuffix("px"),
                "{:.0%}",
                f"keypoints within {c[4:].removesuffix('px')} px of the label",
            )
            for c in pck
        ],
    ]
    cells = [
        [
            "–" if pd.isna(summary[column].iloc[r]) else fmt.format(summary[column].iloc[r])
            for column, _, fmt, _ in columns
        ]
        for r in range(len(summary))
    ]
    return Table(
        headers=[c[1] for c in columns],
        tooltips=[c[3] for c in columns],
        rows=[str(s) for s in summary["split"]],
        cells=cells,
    )


def evaluation_text(evaluation) -> str:
    """``<model>, <n> epochs: test error 1.23 px, train 0.98 px``."""
    epochs = int(evaluation.summary["epochs"].iloc[0]) if "epochs" in evaluation.summary else "?"
    return (
        f"{model_name(evaluation.checkpoint)}, {epochs} epochs: test error {evaluation.error('test'):.2f} px, "
        f"train {evaluation.error('train'):.2f} px"
    )


def worst_images(evaluation, n: int = WORST_SHOWN) -> list[tuple[str, str]]:
    """``(text, image)`` of the ``n`` test images with the largest errors, worst first."""
    worst = evaluation.worst_test.head(n)
    out = []
    for image, error in zip(worst["image"], worst["mean_error_px"]):
        value = "n/a" if pd.isna(error) else f"{error:.1f} px"
        out.append((f"{Path(str(image)).name}  {value}", str(image)))
    return out


def _slashes(name: Any) -> str:
    return str(name).replace("\\", "/")


@dataclass(frozen=True)
class ImageStack:
    """What :func:`find_image` needs of an open stack of labeled images (a keypoints layer)."""

    key: Any
    images: Sequence[str]
    folder: str | None = None
    config: str | None = None


def find_image(image: str, stacks: Sequence[ImageStack], project: Path | None) -> tuple[Any, int] | None:
    """``(stack key, index)`` of the stack showing ``image``, else None.

    Stacks of other projects than ``project`` are skipped; stacks opened from
    a folder outside any project count.  The image matches by its relative
    path, else by its folder and file name, else by file name.
    """
    image = _slashes(image)
    parts = image.split("/")
    folder_name = parts[-2] if len(parts) > 1 else None
    same = [s for s in stacks if not s.config or project is None or Path(s.config).resolve().parent == project]
    for match in (
        lambda name, stack: name == image,
        lambda name, stack: name.split("/")[-1] == parts[-1] and Path(str(stack.folder or "")).name == folder_name,
        lambda name, stack: name.split("/")[-1] == parts[-1],
    ):
        for stack in same:
            for index, name in enumerate(_slashes(n) for n in stack.images):
                if match(name, stack):
                    return stack.key, index
    return None


def evaluation_points(
    per_image: pd.DataFrame, images: Sequence[str]
) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    """The predictions of the evaluated images among ``images`` (one stack, in its frame order).

    Returns Points data ``(M, 3)`` (frame, y, x), each point's body part, its
    likelihood and the body parts of the model.
    """
    index = {_slashes(name): i for i, name in enumerate(images)}
    bodyparts = [c[: -len("_likelihood")] for c in per_image.columns if c.endswith("_likelihood")]
    data, parts, likelihood = [], [], []
    for r, image in enumerate(per_image["image"]):
        frame = index.get(_slashes(image))
        if frame is None:
            continue
        record = per_image.iloc[r]
        for bp in bodyparts:
            x, y = float(record[f"{bp}_x"]), float(record[f"{bp}_y"])
            if math.isfinite(x) and math.isfinite(y):
                data.append((frame, y, x))
                parts.append(bp)
                likelihood.append(float(record[f"{bp}_likelihood"]))
    return np.asarray(data, dtype=float).reshape(-1, 3), parts, np.asarray(likelihood, dtype=float), bodyparts


def evaluation_target(checkpoint: str | os.PathLike | None, last: Path | None, project: Path) -> Path | None:
    """The checkpoint to evaluate: the one asked for, else the last one trained here when it is of ``project``."""
    if checkpoint:
        return Path(checkpoint)
    if last is not None and last.is_relative_to(project.resolve()):
        return last
    return None


# --------------------------------------------------------------------------- label checks
LABEL_POLL_MS = 2000
"""How often a widget that shows label advice looks whether the label files changed (a few ``stat`` calls)."""

_PLURALS = {"swap": "swaps", "collapse": "collapses", "duplicate": "duplicates", "disagreement": "disagreements"}


def labels_fingerprint(project: str | os.PathLike) -> tuple:
    """What the label checks read (config, CollectedData, decisions files) as ``(file, size, mtime)``.

    The advice is out of date when this changes: labels saved by any widget
    or command, a suspect marked as correct, the config's body parts edited.
    """
    root = Path(project)
    labeled = root / "labeled-data"
    files = [root / "config.yaml", *sorted(labeled.glob("*/CollectedData_*.h5")), *sorted(labeled.glob("*/*.json"))]
    out = []
    for file in files:
        try:
            stat = file.stat()
        except OSError:
            continue
        out.append((file.as_posix(), stat.st_size, stat.st_mtime_ns))
    return tuple(out)


def kind_counts(suspects: Sequence[Any]) -> str:
    """``1 swap, 2 geometry``: the suspects per kind, most frequent first (ties in the order of the list)."""
    counts: dict[str, int] = {}
    for suspect in suspects:
        counts[suspect.kind] = counts.get(suspect.kind, 0) + 1
    ordered = sorted(counts.items(), key=lambda item: -item[1])
    return ", ".join(f"{n} {_PLURALS.get(kind, kind) if n > 1 else kind}" for kind, n in ordered)


@dataclass
class LabelAdvice:
    """The fast label checks of one project, as the widgets show them before training.

    ``report`` is the core's :class:`~napari_posekit.core.label_suspects.CheckReport`
    (ranked, suspects marked correct left out), ``error`` why the labels could
    not be checked, ``fingerprint`` the label files as they were checked.
    """

    project: Path
    fingerprint: tuple = ()
    report: Any = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def suspects(self) -> list:
        return list(self.report.suspects) if self.report is not None else []

    def text(self) -> str:
        """``Labels: 2 suspects (1 swap, 1 geometry) — review them in Label QA`` (or none found, or not checked)."""
        if self.error is not None:
            return f"Labels: not checked — {self.error}"
        suspects = self.suspects
        if not suspects:
            return "Labels: no suspects found"
        n = len(suspects)
        return f"Labels: {n} suspect{'s' if n > 1 else ''} ({kind_counts(suspects)}) — review them in Label QA"

    def tooltip(self) -> str:
        """The top suspect's reason, then what was left out and why some checks could not run."""
        if self.error is not None:
            return self.error
        lines = []
        suspects = self.suspects
        if suspects:
            top = suspects[0]
            lines.append(f"Most suspect: {top.image}: {top.reason}")
        report = self.report
        if report is not None and report.dismissed:
            lines.append(f"{report.dismissed} suspects marked as correct are not counted.")
        if report is not None:
            lines.extend(report.notes)
        lines.append(f"Fast checks (no model) took {self.seconds:.1f} s; training does not wait for them.")
        return "\n".join(lines)


def load_project_labels(project: str | os.PathLike) -> Any:
    """The project's :class:`~napari_posekit.core.label_suspects.LabelSet`, or a :class:`LabelAdvice` saying why not.

    Widgets call it in the GUI thread: the label files (HDF5) are never read
    by two threads at once (training reads them in its worker).
    """
    from napari_posekit.core.label_suspects import project_label_set

    root = Path(project)
    fingerprint = labels_fingerprint(root)
    try:
        return project_label_set(root)
    except Exception as err:  # noqa: BLE001 - advice: unreadable labels say so in the line
        return LabelAdvice(root, fingerprint, error=_error_text(err))


def check_project_labels(
    project: str | os.PathLike, check: Any = None, *, labels: Any = None, fingerprint: tuple | None = None
) -> LabelAdvice:
    """Run the fast label checks (no model) on ``project``; any failure (unreadable labels…) becomes ``error``.

    ``check(project or labels) -> CheckReport`` defaults to
    :func:`~napari_posekit.core.label_qa.check_labels` without
    cross-validation; ``labels`` (a LabelSet read already, with the
    ``fingerprint`` of the files it was read from) spares reading the files.
    """
    import time

    root = Path(project)
    fingerprint = labels_fingerprint(root) if fingerprint is None else fingerprint
    started = time.perf_counter()
    try:
        if check is None:
            from napari_posekit.core.label_qa import check_labels

            report = check_labels(root if labels is None else labels, cross_validate=False)
        else:
            report = check(root if labels is None else labels)
    except Exception as err:  # noqa: BLE001 - advice: a failing check says so in the line, never stops the widget
        return LabelAdvice(root, fingerprint, error=_error_text(err), seconds=time.perf_counter() - started)
    return LabelAdvice(root, fingerprint, report, seconds=time.perf_counter() - started)


def _error_text(err: BaseException) -> str:
    from napari_posekit.core.project import ProjectError

    text = str(err) or type(err).__name__
    if isinstance(err, OSError) and err.filename:
        return f"{err.strerror or text}: {err.filename}"
    if isinstance(err, (ProjectError, ValueError, OSError, KeyError)):
        return text
    return f"the checks failed ({type(err).__name__}: {text})"


_LABEL_WARNING = re.compile(r"\blabel suspects?\b|\bswapped\b")


class LabelChecks:
    """The latest label advice of a widget, and when it must be computed again."""

    def __init__(self):
        self.advice: LabelAdvice | None = None

    def stale(self, project: Path | None) -> bool:
        """Whether ``project``'s labels must be checked (never checked, another project, files changed)."""
        if project is None:
            return False
        advice = self.advice
        return advice is None or advice.project != project or advice.fingerprint != labels_fingerprint(project)

    def checked(self, advice: LabelAdvice) -> None:
        self.advice = advice

    def current(self, project: Path | None) -> LabelAdvice | None:
        """The advice for ``project`` when it is the latest one (even when the files changed since)."""
        advice = self.advice
        return advice if advice is not None and project is not None and advice.project == project else None

    def text(self, project: Path | None, checking: bool) -> tuple[str, str]:
        """The label line and its tooltip for the chosen project."""
        if project is None:
            return "", ""
        advice = self.current(project)
        if checking or advice is None:
            return "Labels: checking…", "The fast label checks run (no model; about a second)"
        return advice.text(), advice.tooltip()

    def shown_already(self, event: dict[str, Any], project: Path | None, checking: bool = False) -> bool:
        """Whether a training warning repeats what the label line says (a swap or the suspect count).

        While the line is ``checking`` (training started right after the project was chosen), it will say so.
        """
        if event.get("event") != "warning" or not _LABEL_WARNING.search(str(event.get("message", ""))):
            return False
        if checking:
            return True
        advice = self.current(project)
        return advice is not None and bool(advice.suspects) and not self.stale(project)
