"""Checkpoint files: writing them atomically, reading and checking them, loading a model from one.

A checkpoint holds everything inference needs (model architecture and
weights, codec, normalisation, body parts) plus the split, the optimiser and
training time for resuming, and a format version.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .codec import HeatmapCodec

if TYPE_CHECKING:  # torch is imported by the functions that need it: CheckpointError does not
    import torch

    from .model import PoseModel

__all__ = [
    "CHECKPOINT_KIND",
    "CHECKPOINT_NAME",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
    "set_aside",
]

CHECKPOINT_KIND = "napari-posekit-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(ValueError):
    """A file is not a usable posekit checkpoint (wrong kind, newer version, mismatching weights)."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` with :func:`torch.save` to a temporary file, then :func:`os.replace` it."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The whole state stored in a checkpoint (on the CPU), checked for kind, version and completeness.

    Raises :class:`FileNotFoundError` for a missing file and
    :class:`CheckpointError` for a file that is not a compatible checkpoint.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a posekit checkpoint (cannot be read by torch.load: {exc})") from exc
    if not isinstance(state, dict) or state.get("kind") != CHECKPOINT_KIND:
        raise CheckpointError(f"{path}: not a posekit checkpoint (no '{CHECKPOINT_KIND}' marker)")
    version = state.get("version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is newer than this napari-posekit understands "
            f"({CHECKPOINT_VERSION}); update napari-posekit"
        )
    for key in ("model_config", "state_dict", "codec", "bodyparts"):
        if key not in state:
            raise CheckpointError(f"{path}: incomplete checkpoint, '{key}' is missing")
    return state


def load_checkpoint(
    path: str | os.PathLike, device: torch.device | str | None = "cpu"
) -> tuple[PoseModel, HeatmapCodec, dict[str, Any]]:
    """``(model, codec, meta)`` from a checkpoint written by :func:`~napari_posekit.core.train.iter_train`.

    The model is in eval mode on ``device``.  ``meta`` holds the remaining
    entries (``bodyparts``, ``mean``, ``std``, ``input_scale``, ``split``,
    ``epoch``, ``history``, ``train_config``, ...), without weights and
    optimiser state.  Raises :class:`FileNotFoundError` for a missing file and
    :class:`CheckpointError` for a file that is not a compatible checkpoint.
    """
    from .model import PoseModel

    state = read_checkpoint(path)
    try:
        model = PoseModel.from_config(state["model_config"])
        model.load_state_dict(state["state_dict"])
    except (RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the stored architecture: {exc}") from exc
    codec = HeatmapCodec.from_dict(state["codec"])
    model.to(device).eval()
    meta = {k: v for k, v in state.items() if k not in ("state_dict", "optimizer", "scheduler")}
    return model, codec, meta


def _unused_path(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        n += 1
    return candidate


def set_aside(path: Path) -> Path:
    """Rename the checkpoint ``path`` to ``checkpoint-<its modification time>.pt`` beside it; return the new name."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(path.stat().st_mtime))
    kept = _unused_path(path.with_name(f"checkpoint-{stamp}.pt"))
    os.replace(path, kept)
    return kept
