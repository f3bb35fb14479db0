"""DeepLabCut's machine-label files: a network's predictions on frames picked for refinement.

Outlier frames are extracted with the network's predictions beside them in
``labeled-data/<video>/machinelabels-iter<i>.h5`` (key ``df_with_missing``,
the network's scorer, coords ``x``, ``y``, ``likelihood``); the CSV copy of
the newest file is ``machinelabels.csv``. This module names, finds, reads and
writes these files; :mod:`napari_posekit.core.refine` merges them with the
human labels.

Everything here is napari-free.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from .collected_data import COLLECTED_KEY, read_collected
from .filesafety import write_atomically
from .project import ProjectError

__all__ = [
    "MACHINE_CSV",
    "find_machinelabels",
    "machinelabels_path",
    "read_machinelabels",
    "write_machinelabels",
]

#: DeepLabCut writes the CSV copy of the newest machine labels under this one name.
MACHINE_CSV = "machinelabels.csv"
_MACHINE_RE = re.compile(r"machinelabels-iter(\d+)\.h5")


def machinelabels_path(folder: str | os.PathLike, iteration: int = 0) -> Path:
    """``<folder>/machinelabels-iter<iteration>.h5``, DeepLabCut's name for machine labels."""
    return Path(folder) / f"machinelabels-iter{int(iteration)}.h5"


def find_machinelabels(folder: str | os.PathLike) -> list[Path]:
    """The ``machinelabels-iter<i>.h5`` files of a folder, oldest iteration first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _MACHINE_RE.fullmatch(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def read_machinelabels(path: str | os.PathLike) -> pd.DataFrame:
    """One machine-label file: CollectedData-shaped, coords ``x``, ``y`` (and usually ``likelihood``)."""
    return read_collected(path, likelihood=True)


def write_machinelabels(df: pd.DataFrame, path: str | os.PathLike, *, csv: bool = True) -> Path:
    """Write machine labels atomically as DeepLabCut does.

    The ``.h5`` is ``df.to_hdf(path, key="df_with_missing", mode="w")`` (pandas'
    fixed format) and, with ``csv``, ``machinelabels.csv`` beside it is the
    same table as text. Both temporary files are complete before either file
    is replaced. An empty table removes both files instead.
    """
    path = Path(path)
    csv_file = path.with_name(MACHINE_CSV)
    if len(df) == 0:
        for target in (path, csv_file if csv else None):
            if target is not None:
                try:
                    target.unlink(missing_ok=True)
                except OSError as err:
                    raise ProjectError(f"cannot remove the empty machine-label file: {err.strerror or err}", target)
        return path

    def write_h5(tmp: Path) -> None:
        df.to_hdf(tmp, key=COLLECTED_KEY, mode="w")

    writers = {path: write_h5}
    if csv:
        writers[csv_file] = lambda tmp: df.to_csv(tmp)
    write_atomically(writers, error=ProjectError)
    return path
