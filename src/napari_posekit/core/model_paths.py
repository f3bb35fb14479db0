"""Where a project's models live: the ``posekit-models`` folder, named as DeepLabCut names ``dlc-models``.

Torch-free, so that finding a project's latest model costs no imports.
"""

from __future__ import annotations

import os
from pathlib import Path

from .config import read_config
from .options import TRAIN_FRACTION
from .project import ProjectError, project_root

__all__ = ["MODELS_FOLDER", "latest_checkpoint", "model_folder", "project_of_checkpoint"]

MODELS_FOLDER = "posekit-models"


def model_folder(
    project: str | os.PathLike, *, train_fraction: float | None = None, shuffle: int = 1, split: str = "random"
) -> Path:
    """The model folder of a training set, named as DeepLabCut names its ``dlc-models`` folders."""
    root = project_root(project)
    config = read_config(root)
    if train_fraction is None:
        train_fraction = _config_train_fraction(config)
    name = (
        f"{config.get('Task', 'project')}{config.get('date', '')}-trainset{round(100 * train_fraction)}shuffle{shuffle}"
    )
    if split == "block":
        name += "-block"
    return root / MODELS_FOLDER / f"iteration-{int(config.get('iteration', 0) or 0)}" / name


def _config_train_fraction(config) -> float:
    value = config.get("TrainingFraction", [TRAIN_FRACTION])
    if isinstance(value, (list, tuple)):
        value = value[0] if value else TRAIN_FRACTION
    return float(value)


def latest_checkpoint(project: str | os.PathLike) -> Path:
    """The most recently written ``checkpoint.pt`` under the project's models folder."""
    root = project_root(project)
    found = [p for p in (root / MODELS_FOLDER).glob("iteration-*/*/train/checkpoint.pt") if p.is_file()]
    if not found:
        raise ProjectError(f"no trained model yet (nothing in {MODELS_FOLDER}/); run 'posekit train' first", root)
    return max(found, key=lambda p: p.stat().st_mtime_ns)


def project_of_checkpoint(checkpoint: str | os.PathLike) -> Path | None:
    """The project folder a checkpoint lies in (``<project>/posekit-models/...``), or None outside one."""
    models = next((p for p in Path(checkpoint).resolve().parents if p.name == MODELS_FOLDER), None)
    if models is not None and (models.parent / "config.yaml").is_file():
        return models.parent
    return None
