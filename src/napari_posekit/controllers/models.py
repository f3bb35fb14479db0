"""Which model a path means: a project folder, its ``config.yaml``, a checkpoint or an exported model file.

Every widget that takes a model box resolves it here, to the same answer:

- :func:`project_folder`: the project a text names (a folder or its
  ``config.yaml``), or None.
- :func:`resolve_model`: the checkpoint a project (its latest model) or a
  checkpoint path stands for, or an exported model file (``.onnx``, see
  :func:`is_exported`) as it is, with its version key and model name
  (:class:`ModelRef`); :func:`latest_checkpoint` the checkpoint of a
  project, or None when it has no model yet.
- :data:`MODEL_FILTER`: the file dialogs' filter for a model.
- Export (the Training widget's "Export model…"): :func:`export_path` (where
  a checkpoint is written by default, beside it), :func:`run_export` (the
  core's :func:`~napari_posekit.core.export.export_model` with its stages as
  progress fractions) and :class:`ExportResult` (the file written, its size,
  the line the widget shows).
- :func:`model_key`: what tells two versions of a checkpoint apart
  (fine-tuning writes the new model under the same name).
- :func:`model_name`: the model folder's name of a checkpoint
  (``<Task><date>-trainset95shuffle1``).
- :func:`resume_checkpoint`: the checkpoint Resume would continue.

The core's :mod:`~napari_posekit.core.workflow` imports torch; it is imported
only when a function needs it (never for an exported model).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from napari_posekit.core.project import ProjectError, project_root

YAML_SUFFIXES = (".yaml", ".yml")
EXPORTED_SUFFIX = ".onnx"
MODEL_FILTER = "Models (*.pt *.onnx config.yaml);;Checkpoints (*.pt);;Exported models (*.onnx);;All files (*)"
"""What a file dialog for a model offers: checkpoints, exported models and project configs."""


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: its checkpoint (or exported model) file, version key and name."""

    checkpoint: Path
    key: tuple[str, int]
    name: str

    @property
    def exported(self) -> bool:
        """Whether the model is an exported file (``.onnx``: runs without torch)."""
        return is_exported(self.checkpoint)


def is_exported(path: str | os.PathLike | None) -> bool:
    """Whether ``path`` names an exported model file (``.onnx``)."""
    return bool(path) and Path(path).suffix.lower() == EXPORTED_SUFFIX


def project_folder(text: str | os.PathLike | None) -> Path | None:
    """The project folder ``text`` names (the folder or its ``config.yaml``), or None when it is no project."""
    text = str(text or "").strip()
    if not text:
        return None
    try:
        return project_root(text)
    except ProjectError:
        return None


def model_name(checkpoint: str | os.PathLike) -> str:
    """The model folder's name (``<Task><date>-trainset95shuffle1``) of a checkpoint; an exported model's file name."""
    checkpoint = Path(checkpoint)
    if is_exported(checkpoint):
        return checkpoint.name
    return checkpoint.parent.parent.name if checkpoint.parent.name == "train" else checkpoint.parent.name


def model_key(checkpoint: str | os.PathLike | None) -> tuple[str, int] | None:
    """``(resolved path, modification time)``: what tells two versions of a checkpoint apart; None if unreadable."""
    if not checkpoint:
        return None
    try:
        path = Path(checkpoint).resolve()
        return str(path), path.stat().st_mtime_ns
    except OSError:
        return None


def latest_checkpoint(project: str | os.PathLike | None) -> Path | None:
    """The project's most recently written checkpoint, or None (no project, no model yet)."""
    from napari_posekit.core.workflow import ProjectError
    from napari_posekit.core.workflow import latest_checkpoint as latest

    if project is None:
        return None
    try:
        return latest(project)
    except ProjectError:
        return None


def resolve_model(model: str | os.PathLike) -> ModelRef:
    """The checkpoint a project folder, ``config.yaml`` (its latest model) or checkpoint path stands for.

    An exported model file (``.onnx``) stands for itself (and torch is not
    imported).  Raises :class:`FileNotFoundError` for a path that does not
    exist and :class:`~napari_posekit.core.project.ProjectError` for a
    project without a trained model.
    """
    path = Path(model).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such project, checkpoint or model file")
    if path.is_dir() or path.suffix in YAML_SUFFIXES:
        from napari_posekit.core.workflow import latest_checkpoint as latest

        checkpoint = latest(path)
    else:
        checkpoint = path
    key = model_key(checkpoint)
    if key is None:
        raise FileNotFoundError(f"{checkpoint}: the checkpoint cannot be read")
    return ModelRef(checkpoint=checkpoint, key=key, name=model_name(checkpoint))


def resume_checkpoint(project: str | os.PathLike | None, split: str = "random") -> Path | None:
    """The checkpoint Resume would continue for ``split``, or None (none yet, or the config cannot be read)."""
    from napari_posekit.core.workflow import model_folder

    if project is None:
        return None
    try:
        path = model_folder(project, split=split) / "train" / "checkpoint.pt"
    except Exception:  # noqa: BLE001 - an unreadable config: nothing to resume, Start says why
        return None
    return path if path.is_file() else None


# --------------------------------------------------------------------------- export
#: How far an export is when the core reports a stage (the first words of its lines).
EXPORT_STAGES = (
    ("loading", 0.05),
    ("exporting", 0.15),
    ("reading calibration", 0.35),
    ("quantising", 0.5),
    ("writing", 0.95),
)
EXPORT_FILTER = "ONNX model (*.onnx)"


def export_path(checkpoint: str | os.PathLike, int8: bool = False) -> Path:
    """Where an export of ``checkpoint`` goes by default: ``<stem>.onnx`` (``<stem>-int8.onnx``) beside it."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}{'-int8' if int8 else ''}.onnx")


def onnx_path(path: str | os.PathLike) -> Path:
    """``path`` with the ``.onnx`` suffix (added when it has another or none)."""
    path = Path(path)
    return path if path.suffix.lower() == ".onnx" else path.with_name(path.name + ".onnx")


def export_fraction(line: str) -> float | None:
    """How far the export is when the core reports ``line``; None for a line that names no stage."""
    text = str(line).strip().lower()
    return next((fraction for stage, fraction in EXPORT_STAGES if text.startswith(stage)), None)


def format_size(n_bytes: int) -> str:
    """``812 kB``, ``3.4 MB``, ``1.20 GB``."""
    if n_bytes < 1_000_000:
        return f"{max(n_bytes, 0) / 1000:.0f} kB"
    if n_bytes < 1_000_000_000:
        return f"{n_bytes / 1e6:.1f} MB"
    return f"{n_bytes / 1e9:.2f} GB"


@dataclass(frozen=True)
class ExportResult:
    """An exported model file: where it is, its size, whether it is int8 and how long the export took."""

    path: Path
    size: int
    int8: bool
    seconds: float

    def text(self, project: str | os.PathLike | None = None) -> str:
        """``Exported the model (int8, 3.4 MB, 14 s): /path/model-int8.onnx``, the path relative to ``project``."""
        kind = "int8" if self.int8 else "float32"
        where: Path = self.path
        if project is not None:
            try:
                where = self.path.resolve().relative_to(Path(project).resolve())
            except ValueError:
                pass  # outside the project: the whole path
        return f"Exported the model ({kind}, {format_size(self.size)}, {self.seconds:.0f} s): {where}"


def run_export(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike,
    *,
    int8: bool = False,
    overwrite: bool = False,
    progress: Callable[[float | None, str], None] | None = None,
) -> ExportResult:
    """Export ``checkpoint`` to ``output`` (ONNX, float32 or int8 calibrated on its project's labeled frames).

    ``progress(fraction, line)`` gets each stage the core reports (fraction
    None when the line names no known stage).  Slow (int8: some seconds):
    call it off the GUI thread.  Raises what
    :func:`~napari_posekit.core.export.export_model` raises (its
    ``ExportError`` says what stands in the way).
    """
    import time

    from napari_posekit.core.export import export_model

    def say(line: str) -> None:
        if progress is not None:
            progress(export_fraction(line), line)

    started = time.perf_counter()
    path = export_model(checkpoint, onnx_path(output), int8=int8, overwrite=overwrite, progress=say)
    return ExportResult(Path(path), Path(path).stat().st_size, bool(int8), time.perf_counter() - started)
