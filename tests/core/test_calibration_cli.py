"""``posekit calibrate`` end to end on a small synthetic rig and DeepLabCut's stereo pair, and the input it refuses."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_calibration import K, charuco_board, write_rig

from conftest import require_shared
from napari_posekit.cli import main
from napari_posekit.cli.calibrate import parse_cameras
from napari_posekit.core.calibration import read_calibration_result
from napari_posekit.core.cameras import read_calibration

BOARD = "board_x = 5\nboard_y = 7\nsquare_length = 30.0\nmarker_length = 22.0\nmarker_bits = 4\ndict_size = 50\n"


@pytest.fixture(scope="module")
def rig_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    sources, _, _ = write_rig(folder, charuco_board(), yaws=(0.0, 25.0), frames=6, blank={(1, 5)})
    (folder / "board.toml").write_text(BOARD)
    return folder, sources


def test_calibrate_writes_both_files_and_prints_the_report(rig_folder, tmp_path, capsys):
    folder, sources = rig_folder
    out = tmp_path / "calibration.toml"
    cams = [f"--camera={name}={path}" for name, path in sources.items()]
    assert main(["calibrate", str(out), "--board", str(folder / "board.toml"), *cams]) == 0
    text = capsys.readouterr().out
    assert "camera cam0 (640x480): 6 images, board found in 6, used 6, rejected 0; reprojection error median" in text
    assert "camera cam1 (640x480): 6 images, board found in 5, used 5" in text
    assert "board not found in 1: img-5.png" in text
    assert f"written: {out} and calibration.report.json" in text
    rig = read_calibration(out)
    assert rig.names == ["cam0", "cam1"] and abs(rig.cameras[1].matrix[0, 0] / K[0, 0] - 1) < 0.015
    assert json.loads((tmp_path / "calibration.report.json").read_text())["board"]["dict_size"] == 50
    result = read_calibration_result(out)
    assert len(result.detections) == 12 and result.reports[1].used == 5


def test_single_camera_is_written_with_a_note(rig_folder, tmp_path, capsys):
    folder, sources = rig_folder
    out = tmp_path / "one.toml"
    code = main(["calibrate", str(out), "--board", str(folder / "board.toml"), f"--camera=cam0={sources['cam0']}"])
    assert code == 0
    assert "one camera: intrinsics only" in capsys.readouterr().err
    assert len(read_calibration(out)) == 1


@pytest.mark.parametrize(
    ("cameras", "message"),
    [
        (["a=x", "a=y"], "--camera 'a' is given twice"),
        (["a"], "expected NAME=PATH"),
        (["=x"], "expected NAME=PATH"),
        (["a="], "expected NAME=PATH"),
    ],
)
def test_parse_cameras_refuses(cameras, message):
    with pytest.raises(ValueError, match=message):
        parse_cameras(cameras)


def _refused(tmp_path, capsys, argv, message):
    out = tmp_path / "calibration.toml"
    assert main(["calibrate", str(out), *argv]) == 1
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err
    assert not list(tmp_path.glob("calibration*"))


def test_bad_input_writes_nothing(rig_folder, tmp_path, capsys):
    folder, sources = rig_folder
    board = ["--board", str(folder / "board.toml")]
    cam0, cam1 = f"--camera=cam0={sources['cam0']}", f"--camera=cam1={sources['cam1']}"
    _refused(tmp_path, capsys, [*board, cam0, f"--camera=cam0={sources['cam1']}"], "'cam0' is given twice")
    _refused(tmp_path, capsys, [*board, cam0, f"--camera=cam1={tmp_path / 'none'}"], "camera 'cam1': ")
    (tmp_path / "partial.toml").write_text("board_x = 5\nsquare_length = 30.0\n")
    _refused(tmp_path, capsys, ["--board", str(tmp_path / "partial.toml"), cam0, cam1], "missing board_y")
    _refused(tmp_path, capsys, ["--board", str(tmp_path / "absent.toml"), cam0, cam1], "no such board file")
    _refused(tmp_path, capsys, [*board, cam0, f"--camera=same={sources['cam0']}"], "degenerate rig")
    _refused(tmp_path, capsys, [*board, cam0, cam1, "--every", "0"], "--every must be at least 1")


def test_dlc_stereo_pair_from_the_command_line(tmp_path, capsys):
    """Bouguet's focal lengths within 1%, principal points within 5 px, board given as anipose describes it."""
    from scipy.io import loadmat

    folder = require_shared("dlc_stereo_example")
    for side in ("left", "right"):
        (tmp_path / side).mkdir()
        for image in sorted(folder.glob(f"{side}*.jpg")):
            (tmp_path / side / image.name).symlink_to(image)
    # 9 x 6 inner corners: board_x and board_y count squares, as in anipose
    (tmp_path / "board.toml").write_text("board_x = 10\nboard_y = 7\nsquare_length = 30.0\n")
    out = tmp_path / "stereo.toml"
    argv = ["calibrate", str(out), "--board", str(tmp_path / "board.toml")]
    argv += [f"--camera={side}={tmp_path / side}" for side in ("left", "right")]
    assert main(argv) == 0
    assert "camera left (640x480): 14 images" in capsys.readouterr().out
    for camera in read_calibration(out).cameras:
        ref = loadmat(folder / f"Calib_Results_{camera.name}.mat")
        fc, cc = ref["fc"].ravel(), ref["cc"].ravel()
        assert np.all(np.abs(np.diag(camera.matrix)[:2] / fc - 1) < 0.01)
        assert np.linalg.norm(camera.matrix[:2, 2] - cc) < 5.0
