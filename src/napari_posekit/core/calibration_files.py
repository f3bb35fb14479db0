"""A calibration on disk: anipose's ``calibration.toml`` and a ``<stem>.report.json`` beside it.

The TOML is written by :func:`~napari_posekit.core.cameras.write_calibration`, so
anipose, aniposelib and sleap-anipose read it unchanged; its ``[metadata]`` table
names the software, date, board, the world frame (the first camera's) and the
reprojection errors. The JSON sidecar holds what a viewer needs to show the
calibration: the board, every image's detection (corners, ids, used or the reason
not, its error), the board poses per frame and the per-camera reports. Both files
are written together, atomically: on any error neither is left behind or changed.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from napari_posekit.core.boards import Board
from napari_posekit.core.cameras import CalibrationError, Rig, read_calibration, write_calibration
from napari_posekit.core.filesafety import write_atomically

__all__ = ["FORMAT_VERSION", "read_result", "report_path", "write_result"]

FORMAT_VERSION = 1


def report_path(path: str | os.PathLike) -> Path:
    """The sidecar of a ``calibration.toml``: ``<stem>.report.json`` in the same folder."""
    path = Path(path)
    return path.with_name(f"{path.stem}.report.json")


def _number(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _metadata(result, when: str) -> dict:
    from napari_posekit import __version__

    reports = result.reports
    errors = [r.error_median for r in reports if math.isfinite(r.error_median)]
    return {
        "software": f"napari-posekit {__version__}",
        "version": __version__,
        "date": when,
        "board": {"kind": result.board.kind, **result.board.to_dict()},
        "world": f"camera {result.rig.cameras[0].name!r} (the first) is the origin",
        "adjusted": len(result.rig) > 1,
        "extrinsics": "bundle adjustment" if len(result.rig) > 1 else "none: a single camera",
        "error": float(np.median(errors)) if errors else None,
        "errors": {r.name: _number(r.error_median) for r in reports},
        "errors_p90": {r.name: _number(r.error_p90) for r in reports},
        "images_used": {r.name: r.used for r in reports},
    }


def _sidecar(result, toml_name: str, when: str) -> dict:
    from napari_posekit import __version__

    return {
        "format": "napari-posekit calibration report",
        "format_version": FORMAT_VERSION,
        "software": f"napari-posekit {__version__}",
        "date": when,
        "calibration": toml_name,
        "board": {"kind": result.board.kind, **result.board.to_dict()},
        "cameras": result.rig.names,
        "sources": dict(result.sources),
        "options": dict(result.options),
        "reports": [
            {
                **asdict(r),
                "size": list(r.size),
                "error_median": _number(r.error_median),
                "error_p90": _number(r.error_p90),
            }
            for r in result.reports
        ],
        "detections": [
            {
                "camera": d.camera,
                "name": d.name,
                "frame": int(d.frame),
                "corners": np.asarray(d.corners, dtype=np.float64).round(4).tolist(),
                "ids": np.asarray(d.ids, dtype=np.int64).tolist(),
                "used": bool(d.used),
                "reason": d.reason,
                "error": _number(d.error),
            }
            for d in result.detections
        ],
        "board_poses": {
            str(int(f)): np.asarray(p, dtype=np.float64).tolist() for f, p in sorted(result.board_poses.items())
        },
    }


def write_result(path: str | os.PathLike, result) -> Path:
    """Write the calibration and its report; returns the calibration's path."""
    path = Path(path)
    if path.suffix.lower() != ".toml":
        raise CalibrationError(f"{path}: the calibration file must end in .toml")
    when = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    metadata = _metadata(result, when)
    metadata["report"] = report_path(path).name
    rig = Rig(result.rig.cameras, {**result.rig.metadata, **metadata})
    sidecar = _sidecar(result, path.name, when)

    def write_toml(tmp: Path) -> None:
        write_calibration(tmp, rig)

    def write_json(tmp: Path) -> None:
        tmp.write_text(json.dumps(sidecar, indent=1), encoding="utf-8")

    write_atomically({path: write_toml, report_path(path): write_json}, error=CalibrationError)
    result.rig = rig
    return path


def read_result(path: str | os.PathLike):
    """The :class:`~napari_posekit.core.calibration.CalibrationResult` of a calibration and its report."""
    from napari_posekit.core.calibration import CalibrationResult, CameraReport, ImageDetection

    path = Path(path)
    rig = read_calibration(path)
    side = report_path(path)
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CalibrationError(
            f"{side}: no calibration report beside {path.name}; it is written by 'posekit calibrate' "
            "(a calibration made elsewhere can still be read with read_calibration)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CalibrationError(f"{side}: cannot read the calibration report: {err}") from None
    try:
        board_data = dict(data["board"])
        board = Board(kind=board_data.pop("kind"), **board_data)
        reports = [
            CameraReport(**{**r, "size": tuple(r["size"]), **_nan(r, "error_median", "error_p90")})
            for r in data["reports"]
        ]
        detections = [
            ImageDetection(
                camera=d["camera"],
                name=d["name"],
                frame=int(d["frame"]),
                corners=np.asarray(d["corners"], dtype=np.float64).reshape(-1, 2),
                ids=np.asarray(d["ids"], dtype=np.int64),
                used=bool(d["used"]),
                reason=d["reason"],
                error=float("nan") if d["error"] is None else float(d["error"]),
            )
            for d in data["detections"]
        ]
        poses = {int(f): np.asarray(p, dtype=np.float64).reshape(4, 4) for f, p in data["board_poses"].items()}
    except (KeyError, TypeError, ValueError) as err:
        raise CalibrationError(f"{side}: not a calibration report of this version ({err!r})") from None
    if data.get("cameras") != rig.names:
        raise CalibrationError(
            f"{side}: the report is for the cameras {data.get('cameras')}, the calibration has {rig.names}; "
            "the two files do not belong together"
        )
    sources, options = data.get("sources", {}), data.get("options", {})
    return CalibrationResult(rig, board, detections, poses, reports, dict(sources), dict(options))


def _nan(row: dict, *keys: str) -> dict:
    return {k: float("nan") if row[k] is None else float(row[k]) for k in keys}
