"""The steps of :func:`~napari_posekit.core.calibration.iter_calibrate` after detection.

Screening the detections, intrinsics per camera with outlier rejection, the first
extrinsics and the bundle adjustment with its own outlier rejection, then the
per-image errors and per-camera reports. Every rejected image keeps its reason.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_posekit.core.boards import Board
from napari_posekit.core.calibration_solve import (
    Observation,
    board_pose,
    board_to_world,
    bundle_adjust,
    calibrate_intrinsics,
    chain_extrinsics,
    view_errors,
)
from napari_posekit.core.cameras import CalibrationError, Camera, Rig, rotation_vector

__all__ = ["Settings", "solve"]

MIN_VIEWS = 3  # images a camera needs for its intrinsics


@dataclass
class Settings:
    min_corners: int = 8
    fix_k3: bool = True
    refine_intrinsics: bool = True
    loss: str = "soft_l1"
    f_scale: float = 1.0
    outlier_px: float = 1.0
    outlier_factor: float = 4.0
    max_intrinsic_images: int = 60


def _screen(board: Board, detections, settings: Settings) -> None:
    """Set aside detections with too few corners, or corners on one line."""
    obj = board.object_points()
    least = max(6, settings.min_corners) if board.kind == "charuco" else board.n_corners
    for det in detections:
        if not det.used:
            continue
        k = len(det.ids)
        if k < least:
            det.used, det.reason = False, f"too few corners ({k}, at least {least} needed)"
            continue
        pts = obj[det.ids, :2]
        spread = np.linalg.svd(pts - pts.mean(axis=0), compute_uv=False)
        if spread[-1] < 0.5 * board.square_length:
            det.used, det.reason = False, "the corners lie (nearly) on one line"


def _observation(board: Board, det, camera: int) -> Observation:
    return Observation(camera, det.frame, board.object_points()[det.ids], np.asarray(det.corners, dtype=np.float64))


def _outliers(errors: dict[int, float], settings: Settings) -> tuple[list[int], float]:
    """Keys whose median error is an outlier, and the camera's median."""
    typical = float(np.median(list(errors.values())))
    limit = max(settings.outlier_px, settings.outlier_factor * typical)
    return [k for k, e in errors.items() if e > limit], typical


def _intrinsics(board: Board, cam: str, index: int, size, dets, settings: Settings):
    """A camera's matrix, distortions and board poses (detection index -> board_to_camera)."""
    for _ in range(4):
        used = [i for i, d in enumerate(dets) if d.used]
        if len(used) < MIN_VIEWS:
            raise CalibrationError(
                f"camera {cam!r}: only {len(used)} usable board images (at least {MIN_VIEWS} needed for its "
                f"intrinsics); rejected: {_reasons(dets)}"
            )
        pick = used
        if len(used) > settings.max_intrinsic_images:
            pick = [used[int(j)] for j in np.linspace(0, len(used) - 1, settings.max_intrinsic_images).round()]
        views = [_observation(board, dets[i], index) for i in pick]
        matrix, dist, _ = calibrate_intrinsics(views, size, fix_k3=settings.fix_k3)
        poses, errors = {}, {}
        for i in used:
            pose = board_pose(_observation(board, dets[i], index), matrix, dist)
            if pose is None:
                dets[i].used, dets[i].reason = False, "no board pose fits the corners"
                continue
            poses[i] = pose
            errors[i] = float(np.median(view_errors(_observation(board, dets[i], index), pose, matrix, dist)))
        bad, typical = _outliers(errors, settings)
        for i in bad:
            dets[i].used = False
            dets[
                i
            ].reason = f"reprojection error {errors[i]:.2f} px is an outlier for this camera (median {typical:.2f} px)"
        if not bad and all(dets[i].used for i in used):
            return matrix, dist, poses
    return matrix, dist, {i: p for i, p in poses.items() if dets[i].used}


def _reasons(dets) -> str:
    counts: dict[str, int] = defaultdict(int)
    for d in dets:
        if not d.used:
            counts[d.reason.split(" (")[0]] += 1
    return ", ".join(f"{n} {r}" for r, n in counts.items()) or "none"


def _joint(board: Board, names, per_cam, matrices, dists, settings: Settings):
    """Extrinsics and board poses by bundle adjustment, rejecting images that disagree with the fit."""
    for _ in range(3):
        poses = {
            (c, d.frame): per_cam[c][1][i] for c in range(len(names)) for i, d in enumerate(per_cam[c][0]) if d.used
        }
        extrinsics = chain_extrinsics(names, poses)
        seen: dict[int, dict[int, np.ndarray]] = defaultdict(dict)
        for (c, f), pose in poses.items():
            seen[f][c] = pose
        shared = {f: views for f, views in seen.items() if len(views) > 1}
        boards = {f: board_to_world(views, extrinsics) for f, views in shared.items()}
        obs, owners = [], []
        for c in range(len(names)):
            for d in per_cam[c][0]:
                if d.used and d.frame in shared:
                    obs.append(_observation(board, d, c))
                    owners.append(d)
        matrices, dists, extrinsics, boards = bundle_adjust(
            obs,
            matrices,
            dists,
            extrinsics,
            boards,
            refine_intrinsics=settings.refine_intrinsics,
            fix_k3=settings.fix_k3,
            loss=settings.loss,
            f_scale=settings.f_scale,
        )
        bad = []
        for c in range(len(names)):
            errs = {
                k: float(np.median(view_errors(o, extrinsics[c] @ boards[o.frame], matrices[c], dists[c])))
                for k, o in enumerate(obs)
                if o.camera == c
            }
            if errs:
                out, typical = _outliers(errs, settings)
                bad += [(k, errs[k], typical) for k in out]
        for k, err, typical in bad:
            owners[k].used = False
            owners[k].reason = (
                f"disagrees with the other cameras: reprojection error {err:.2f} px in the joint fit "
                f"(camera median {typical:.2f} px)"
            )
        if not bad:
            break
        for c in range(len(names)):
            dets, old = per_cam[c]
            per_cam[c] = (dets, {i: p for i, p in old.items() if dets[i].used})
    return matrices, dists, extrinsics, boards


def solve(board: Board, names: Sequence[str], sizes, detections, settings: Settings):
    """From detections to a :class:`CalibrationResult` (a generator yielding progress 0.7..1)."""
    from napari_posekit.core.calibration import CalibrationResult

    _screen(board, detections, settings)
    per_cam, matrices, dists = [], [], []
    for c, cam in enumerate(names):
        dets = [d for d in detections if d.camera == cam]
        matrix, dist, poses = _intrinsics(board, cam, c, sizes[cam], dets, settings)
        per_cam.append((dets, poses))
        matrices.append(matrix)
        dists.append(dist)
        yield 0.7 + 0.1 * (c + 1) / len(names)
    if len(names) > 1:
        matrices, dists, extrinsics, boards = _joint(board, names, per_cam, matrices, dists, settings)
    else:
        extrinsics, boards = [np.eye(4)], {}
    yield 0.95
    cameras = [
        Camera(cam, sizes[cam], matrices[c], dists[c], rotation_vector(extrinsics[c][:3, :3]), extrinsics[c][:3, 3])
        for c, cam in enumerate(names)
    ]
    rig = Rig(cameras)
    if len(cameras) > 1:
        try:
            rig.check_geometry(min_baseline=1e-3 * board.square_length)
        except CalibrationError as err:
            raise CalibrationError(f"{err}; were the same images given for two cameras?") from None
    reports = _finish(board, names, sizes, per_cam, rig, extrinsics, boards)
    return CalibrationResult(rig, board, detections, boards, reports)


def _finish(board: Board, names, sizes, per_cam, rig: Rig, extrinsics, boards) -> list:
    """Each used image's error under the final rig; board poses of the frames one camera saw; the reports."""
    from napari_posekit.core.calibration import CameraReport

    reports = []
    for c, cam in enumerate(names):
        camera = rig.cameras[c]
        dets = per_cam[c][0]
        errors = []
        for d in dets:
            if not d.used:
                d.error = float("nan")
                continue
            obs = _observation(board, d, c)
            if d.frame in boards:
                pose = extrinsics[c] @ boards[d.frame]
            else:
                pose = board_pose(obs, camera.matrix, camera.distortions)
                if pose is None:
                    d.used, d.reason, d.error = False, "no board pose fits the corners", float("nan")
                    continue
                boards[d.frame] = np.linalg.inv(extrinsics[c]) @ pose
            e = view_errors(obs, pose, camera.matrix, camera.distortions)
            d.error = float(np.median(e))
            errors.append(e)
        flat = np.concatenate(errors) if errors else np.array([np.nan])
        detected = sum(1 for d in dets if len(d.ids))
        used = sum(1 for d in dets if d.used)
        reports.append(
            CameraReport(
                cam,
                tuple(sizes[cam]),
                len(dets),
                detected,
                used,
                detected - used,
                float(np.median(flat)),
                float(np.percentile(flat, 90)),
            )
        )
    return reports
