"""What the Refine widget reports after saving and after retraining, without napari or Qt.

- :class:`Saved`: what saving the corrections wrote, and :func:`saved_text`.
- :class:`Retrained`: a fine-tuned model, its evaluation and its parent's,
  and the new predictions of the video when it was re-analysed.
- :func:`mean_error`, :func:`compare_errors`: the mean keypoint error of
  both models on the corrected frames, the held-out frames, the other frames
  and all of them (:data:`COMPARISON_COLUMNS`); :func:`comparison_text`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_posekit.controllers.models import model_name

COMPARISON_COLUMNS = (
    ("corrected", "corrected px", "mean error on the frames corrected here"),
    ("test", "held-out px", "mean error on the test images, which neither model trained on"),
    ("earlier", "others px", "mean error on the other labeled frames"),
    ("all", "all px", "mean error on every labeled frame"),
)
"""The error table's columns: key, header and tooltip."""


@dataclass
class Saved:
    """What saving the corrections wrote (the core's ``SavedRefinement``) and the images saved as human labels."""

    result: Any
    images: list[str]


def saved_text(saved: Saved) -> str:
    """``Saved to CollectedData_me.h5: 2 frames added, 0 updated…``."""
    result = saved.result
    parts = [f"{len(result.added)} frames added", f"{len(result.updated)} updated"]
    if result.deleted:
        parts.append(f"{len(result.deleted)} body parts deleted")
    text = f"Saved to {Path(result.collected).name if result.collected else 'CollectedData'}: " + ", ".join(parts)
    if result.conflicts:
        text += f"; {len(result.conflicts)} images also have machine labels (the human labels were kept)"
    return text


@dataclass
class Retrained:
    """A fine-tuned model: its checkpoint, its evaluation and the one of the model it started from."""

    checkpoint: Path
    before: Any  # Evaluation of the checkpoint fine-tuned from, or None
    after: Any
    stopped: bool
    predictions: Any = None  # the video re-analysed with the new model (refine.Predictions)
    scores: Any = None  # their outlier scores
    before_error: str | None = None  # why the model before could not be evaluated
    video: Any = None  # the id of the video that was re-analysed


def mean_error(evaluation, images: set[str] | None, exclude: set[str] = frozenset()) -> tuple[float, int]:
    """Mean keypoint error (px) over the evaluation's images in ``images`` (all when None), and their count."""
    table = evaluation.per_image
    keep = np.ones(len(table), bool) if images is None else table["image"].isin(images).to_numpy()
    keep = keep & ~table["image"].isin(exclude).to_numpy()
    columns = [c for c in table.columns if c.endswith("_error_px") and c != "mean_error_px"]
    values = table.loc[keep, columns].to_numpy(dtype=float).ravel()
    values = values[np.isfinite(values)]
    return (float(values.mean()) if values.size else float("nan")), int(keep.sum())


def compare_errors(result: Retrained, corrected: set[str]) -> dict[str, dict[str, float]]:
    """``{"before"|"after": {column: mean error px, "n_<column>": images}}`` for the models that were evaluated."""
    comparison = {}
    for name, evaluation in (("before", result.before), ("after", result.after)):
        if evaluation is None:
            continue
        corr, n_corr = mean_error(evaluation, corrected)
        other, n_other = mean_error(evaluation, None, exclude=corrected)
        every, n_all = mean_error(evaluation, None)
        comparison[name] = {
            "corrected": corr,
            "earlier": other,
            "all": every,
            "test": evaluation.error("test"),
            "n_corrected": n_corr,
            "n_earlier": n_other,
            "n_all": n_all,
        }
    return comparison


def _held_out(evaluation) -> set[str]:
    table = evaluation.per_image
    return set(table.loc[table["split"] == "test", "image"])


def comparison_text(result: Retrained, comparison: dict[str, dict[str, float]]) -> str:
    """The line under the error table: the test error of both models, and how many frames were corrected."""
    after = result.after
    text = f"{model_name(result.checkpoint)}: test error {after.error('test'):.2f} px on its held-out frames"
    if result.before is not None:
        same = _held_out(result.before) == _held_out(after)
        text += f" (before: {result.before.error('test'):.2f} px on {'the same' if same else 'its own'} frames)"
    n = comparison.get("after", {}).get("n_corrected", 0)
    text += f"; {n} corrected frames" if n else "; no corrected frames yet"
    if result.before is None and result.before_error:
        text += f". The model before could not be evaluated: {result.before_error}"
    return text


def comparison_rows(result: Retrained, comparison: dict[str, dict[str, float]]) -> list[tuple[str, list[str]]]:
    """The error table's rows: ``(tooltip, cell texts)`` for the model before and after."""
    tips = [
        f"before ({model_name(result.before.checkpoint) if result.before else 'n/a'})",
        f"after ({result.checkpoint.name})",
    ]
    rows = []
    for tip, name in zip(tips, ("before", "after")):
        values = [comparison.get(name, {}).get(key, float("nan")) for key, _, _ in COMPARISON_COLUMNS]
        rows.append((tip, ["–" if not math.isfinite(v) else f"{v:.2f}" for v in values]))
    return rows
