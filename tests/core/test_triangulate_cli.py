"""``posekit triangulate`` end to end on a tiny synthetic rig, and every bad input it refuses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_triangulation import make_rig

from napari_posekit.cli import main
from napari_posekit.core.cameras import Camera, Rig, write_calibration
from napari_posekit.core.predictions import write_predictions
from napari_posekit.core.views import read_points3d

PARTS = ["snout", "neck", "tail"]
NAMES = ["top", "left", "right", "back"]


@pytest.fixture
def session(tmp_path):
    """A 4-camera rig, a walking 3-part animal over 40 frames, and one prediction file per camera."""
    rig = make_rig(4, names=NAMES)
    write_calibration(tmp_path / "calibration.toml", rig)
    t = np.arange(40)[:, None]
    truth = np.stack(
        [np.concatenate([3 * t - 60, 10 + 0 * t, 20 + 0 * t], 1) + [dx, 0, 0] for dx in (0, -40, -120)], axis=1
    )
    pixels = rig.project(truth) + np.random.default_rng(0).normal(0, 0.5, (4, 40, 3, 2))
    pixels[3, 5] = pixels[3, 5, ::-1]  # the back camera swaps snout and tail on frame 5
    files = {}
    for c, name in enumerate(NAMES):
        files[name] = tmp_path / f"{name}DLC_test.h5"
        write_predictions(files[name], pixels[c], np.full((40, 3), 0.9), PARTS, "DLC_test")
    return tmp_path, files, truth


def args_for(folder, files, *extra):
    cams = [f"--camera={name}={path}" for name, path in files.items()]
    return ["triangulate", str(folder / "calibration.toml"), *cams, "--output", str(folder / "out_3D.h5"), *extra]


def test_triangulate_writes_deeplabcut_3d_files(session, capsys):
    folder, files, truth = session
    assert main(args_for(folder, files)) == 0
    out = capsys.readouterr().out
    assert "120 of 120 points triangulated" in out and "back: used for 118 points" in out
    table = pd.read_hdf(folder / "out_3D.h5", "df_with_missing")
    assert list(table.columns.names) == ["scorer", "bodyparts", "coords"]
    assert list(dict.fromkeys(table.columns.get_level_values("coords"))) == ["x", "y", "z"]
    points = read_points3d(folder / "out_3D.h5")
    assert points.bodyparts == PARTS and points.points.shape == (40, 3, 3)
    assert np.abs(points.points - truth).max() < 2.0  # millimetres, from 0.5 px noise
    assert points.cameras[5, 0] == 3 and points.cameras[4, 0] == 4
    assert (folder / "out_3D.csv").is_file() and (folder / "out_3D_quality.csv").is_file()


def test_smoothing_with_a_given_skeleton(session, capsys):
    folder, files, truth = session
    assert main(args_for(folder, files, "--smooth", "--skeleton", "snout-neck,neck-tail")) == 0
    assert "smoothed over time with 2 skeleton edges" in capsys.readouterr().out
    points = read_points3d(folder / "out_3D.h5")
    assert np.abs(points.points - truth).max() < 0.5  # unsmoothed: 0.8
    lengths = np.linalg.norm(points.points[:, 0] - points.points[:, 1], axis=-1)
    assert np.std(lengths) < 0.1  # unsmoothed: 0.29


def test_mismatched_cameras_frames_and_parts(session, capsys):
    folder, files, _ = session
    wrong = dict(files, side=files.pop("back"))
    assert main(args_for(folder, wrong)) == 1
    err = capsys.readouterr().err
    assert (
        "no camera 'side'; the calibration has top, left, right, back and --camera gave top, left, right, side" in err
    )
    short = folder / "short.h5"
    write_predictions(short, np.zeros((30, 3, 2)), np.ones((30, 3)), PARTS, "DLC_test")
    assert main(args_for(folder, dict(files, back=short))) == 1
    err = capsys.readouterr().err
    assert "top has 40 frames (0-39)" in err and "back has 30 frames (0-29)" in err and "--trim" in err
    assert main(args_for(folder, dict(files, back=short), "--trim")) == 0
    assert read_points3d(folder / "out_3D.h5").points.shape == (30, 3, 3)
    capsys.readouterr()
    other = folder / "other.h5"
    write_predictions(other, np.zeros((40, 3, 2)), np.ones((40, 3)), ["snout", "neck", "paw"], "DLC_test")
    assert main(args_for(folder, dict(files, back=other))) == 1
    assert "body parts differ between cameras" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f, a: [*a[:3], *a[-2:]], "at least 2 cameras; --camera was given for top only"),
        (lambda f, a: [*a[:2], "--camera=top", *a[3:]], "expected NAME=PREDICTIONS"),
        (lambda f, a: [*a[:2], a[2], a[2], *a[3:]], "'top' given twice"),
        (lambda f, a: [*a[:-1], str(f / "out.csv")], "must end with .h5"),
        (lambda f, a: [*a[:-1], str(f / "nowhere" / "out.h5")], "does not exist"),
        (lambda f, a: [a[0], str(f / "none.toml"), *a[2:]], "no such calibration file"),
        (lambda f, a: [*a, "--skeleton", "snout"], "not two body parts joined by '-'"),
        (lambda f, a: [*a, "--skeleton", "snout-paw", "--smooth"], "unknown body parts paw"),
        (lambda f, a: [*a, "--min-cameras", "1"], "min_cameras must be at least 2"),
    ],
)
def test_bad_arguments_are_refused_without_a_traceback(session, capsys, change, message):
    folder, files, _ = session
    args = args_for(folder, files)
    assert main(change(folder, args)) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (folder / "out_3D.h5").exists()


def test_degenerate_rig_is_refused(session, capsys):
    folder, files, _ = session
    cam = make_rig(1, names=["top"]).cameras[0]
    same = Rig([Camera(n, cam.size, cam.matrix, rotation=cam.rotation, translation=cam.translation) for n in NAMES])
    write_calibration(folder / "calibration.toml", same)
    assert main(args_for(folder, files)) == 1
    assert "degenerate rig" in capsys.readouterr().err
