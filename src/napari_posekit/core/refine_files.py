"""Reading a ``labeled-data/<video>`` folder's human and machine labels for refinement.

Image keys are CollectedData's index entries joined with ``/``
(``labeled-data/<video>/img042.png``); the helpers here find the folder's
CollectedData file and read it and every machine-label file, for
:func:`napari_posekit.core.refine.load_refinement` and
:func:`napari_posekit.core.refine_merge.save_refinement`.

Everything here is napari-free.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .collected_data import _image_keys, collected_path, read_collected
from .config import read_config
from .machinelabels import find_machinelabels, read_machinelabels
from .project import ProjectError


def _norm(key: str) -> str:
    return str(key).replace("\\", "/")


def _keys(df: pd.DataFrame) -> list[str]:
    return [_norm(k) for k in _image_keys(df.index)]


def _index_entry(key: str, like: pd.DataFrame | None, style: str) -> str | tuple[str, ...]:
    """The index entry for image ``key`` in the style (and path separator) of ``like``."""
    parts = tuple(_norm(key).split("/"))
    if style == "multi":
        return parts
    sep = "/"
    if like is not None and len(like) and any("\\" in str(k) for k in like.index):
        sep = "\\"
    return sep.join(parts)


def _project_config(folder: Path):
    root = folder.parent.parent
    if folder.parent.name == "labeled-data" and (root / "config.yaml").is_file():
        return read_config(root)
    return None


def _human_file(folder: Path, scorer: str | None) -> Path | None:
    """The CollectedData file of ``folder`` (``.h5`` preferred), or None when there is none yet."""
    if scorer is not None:
        for suffix in (".h5", ".csv"):
            path = collected_path(folder, scorer, suffix)
            if path.is_file():
                return path
        return None
    found = sorted(folder.glob("CollectedData_*.h5")) or sorted(folder.glob("CollectedData_*.csv"))
    if len(found) > 1:
        raise ProjectError(f"several CollectedData files, pass the scorer: {[f.name for f in found]}", folder)
    return found[0] if found else None


def _read_human(folder: Path, scorer: str | None) -> tuple[pd.DataFrame | None, Path | None]:
    path = _human_file(folder, scorer)
    if path is None:
        return None, None
    df = read_collected(path)
    if df.columns.nlevels != 3:
        raise ProjectError("refinement handles single-animal labels (scorer/bodyparts/coords)", path)
    return df, path


def _read_machine(folder: Path) -> tuple[list[tuple[Path, pd.DataFrame]], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Every machine-label file and ``{image key: (xy (K', 2), likelihood (K',)), ...}`` by body part name.

    A later iteration's row replaces an earlier one for the same image.
    """
    files = []
    rows: dict[str, dict[str, tuple[float, float, float]]] = {}
    for path in find_machinelabels(folder):
        df = read_machinelabels(path)
        if df.columns.nlevels != 3:
            raise ProjectError("refinement handles single-animal machine labels (scorer/bodyparts/coords)", path)
        files.append((path, df))
        scorer = df.columns.get_level_values("scorer")[0]
        parts = list(dict.fromkeys(df.columns.get_level_values("bodyparts")))
        has_p = "likelihood" in set(df.columns.get_level_values("coords"))
        for key, (_, row) in zip(_keys(df), df.iterrows()):
            rows[key] = {
                bp: (
                    row[(scorer, bp, "x")],
                    row[(scorer, bp, "y")],
                    row[(scorer, bp, "likelihood")] if has_p else np.nan,
                )
                for bp in parts
            }
    return files, rows
