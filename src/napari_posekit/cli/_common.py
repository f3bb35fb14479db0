"""What several ``posekit`` commands share: the errors of a model argument and the device check."""

from __future__ import annotations

__all__ = ["_device_problem", "_model_errors"]


def _model_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the model argument cannot be used."""
    from napari_posekit.core.checkpoint import CheckpointError
    from napari_posekit.core.inference import AnalysisError
    from napari_posekit.core.model_file import ModelFileError
    from napari_posekit.core.project import ProjectError

    return FileNotFoundError, ProjectError, CheckpointError, ModelFileError, AnalysisError


def _device_problem(device: str | None) -> str | None:
    """Why ``device`` cannot be used on this machine, or None."""
    if device is None or device == "cpu":
        return None
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        return "--device cuda: no CUDA GPU is available to torch on this machine"
    mps = getattr(torch.backends, "mps", None)
    if device == "mps" and not (mps is not None and mps.is_available()):
        return "--device mps: Apple MPS is not available on this machine"
    return None
