"""Keypoint arrays <-> DeepLabCut-style tables.

DeepLabCut stores single-animal keypoints as a DataFrame whose columns are a
MultiIndex ``(scorer, bodyparts, coords)`` with coords ``x, y`` (labels) or
``x, y, likelihood`` (predictions), one row per frame. Arrays here are
``(n_frames, n_bodyparts, 2)`` float ``(x, y)``, NaN where a body part is
missing, plus an optional ``(n_frames, n_bodyparts)`` likelihood.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["from_dlc_dataframe", "to_dlc_dataframe"]


def to_dlc_dataframe(
    xy: np.ndarray,
    bodyparts: Sequence[str],
    scorer: str,
    likelihood: np.ndarray | None = None,
    index: Sequence | None = None,
) -> pd.DataFrame:
    """A DeepLabCut-layout DataFrame from ``(T, K, 2)`` coordinates."""
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 3 or xy.shape[2] != 2:
        raise ValueError(f"keypoints must have shape (frames, bodyparts, 2), got {xy.shape}")
    if xy.shape[1] != len(bodyparts):
        raise ValueError(f"{xy.shape[1]} keypoints per frame but {len(bodyparts)} body parts: {list(bodyparts)}")
    coords = ["x", "y"]
    values = xy
    if likelihood is not None:
        likelihood = np.asarray(likelihood, dtype=np.float64)
        if likelihood.shape != xy.shape[:2]:
            raise ValueError(f"likelihood must have shape {xy.shape[:2]}, got {likelihood.shape}")
        coords.append("likelihood")
        values = np.concatenate([xy, likelihood[..., None]], axis=2)
    columns = pd.MultiIndex.from_product([[scorer], list(bodyparts), coords], names=["scorer", "bodyparts", "coords"])
    return pd.DataFrame(values.reshape(len(values), -1), columns=columns, index=index)


def from_dlc_dataframe(df: pd.DataFrame) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """``(xy, bodyparts, likelihood or None)`` from a single-animal DeepLabCut DataFrame."""
    if df.columns.nlevels != 3:
        raise ValueError(f"expected columns (scorer, bodyparts, coords), got {df.columns.nlevels} levels")
    scorers = df.columns.get_level_values(0).unique()
    if len(scorers) != 1:
        raise ValueError(f"expected one scorer, found {list(scorers)}")
    bodyparts = list(dict.fromkeys(df.columns.get_level_values(1)))
    sub = df[scorers[0]]
    xy = np.stack([sub[bp][["x", "y"]].to_numpy(np.float64) for bp in bodyparts], axis=1)
    has_likelihood = all("likelihood" in sub[bp].columns for bp in bodyparts)
    likelihood = (
        np.stack([sub[bp]["likelihood"].to_numpy(np.float64) for bp in bodyparts], axis=1) if has_likelihood else None
    )
    return xy, bodyparts, likelihood
