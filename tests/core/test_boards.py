"""Calibration boards: anipose board.toml, corner geometry, ChArUco and checkerboard detection."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from test_calibration import PX_PER_UNIT, board_image

from conftest import require_shared
from napari_posekit.core.boards import Board, read_board
from napari_posekit.core.cameras import CalibrationError

CHARUCO_TOML = (
    "board_x = 8\nboard_y = 11\nsquare_length = 24.0\nmarker_length = 18.75\nmarker_bits = 4\ndict_size = 1000\n"
)


def test_read_board_charuco_and_checkerboard(tmp_path):
    (tmp_path / "b.toml").write_text(CHARUCO_TOML)
    board = read_board(tmp_path / "b.toml")
    assert board == Board("charuco", 8, 11, 24.0, 18.75, 4, 1000)
    assert board.inner == (7, 10) and board.n_corners == 70
    assert "DICT_4X4_1000" in board.describe()
    (tmp_path / "c.toml").write_text("board_x = 10\nboard_y = 7\nsquare_length = 30\n")
    checker = read_board(tmp_path / "c.toml")
    assert checker.kind == "checkerboard" and checker.inner == (9, 6) and checker.marker_length is None
    (tmp_path / "config.toml").write_text("[calibration]\n" + CHARUCO_TOML)  # an anipose config
    assert read_board(tmp_path / "config.toml") == board


def test_shared_board_files():
    session = require_shared("sleap_anipose_minimal_session")
    assert read_board(session / "board.toml").n_corners == 70
    checker = read_board(session / "board_checker.toml")
    assert checker.kind == "checkerboard" and checker.inner == (7, 10)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("board_x = 8\nsquare_length = 24.0\n", "missing board_y"),
        ("board_x = 8\nboard_y = 11\nsquare_length = 24.0\nmarker_length = 18\n", "missing marker_bits, dict_size"),
        (CHARUCO_TOML.replace("marker_bits = 4", "marker_bits = 3"), "no ArUco dictionary with marker_bits = 3"),
        (
            CHARUCO_TOML.replace("board_y = 11", "board_y = 15").replace("dict_size = 1000", "dict_size = 50"),
            "more than",
        ),
        (CHARUCO_TOML.replace("marker_length = 18.75", "marker_length = 30"), "must be positive and smaller"),
        (CHARUCO_TOML.replace("board_x = 8", "board_x = 2"), "at least 3"),
        (CHARUCO_TOML.replace("board_x = 8", "board_x = 8.5"), "board_x must be a whole number"),
        ("board_x = [", "not a valid TOML file"),
    ],
)
def test_read_board_errors(tmp_path, text, message):
    path = tmp_path / "board.toml"
    path.write_text(text)
    with pytest.raises(CalibrationError, match=message) as err:
        read_board(path)
    assert str(path) in str(err.value)


def test_read_board_missing_file(tmp_path):
    with pytest.raises(CalibrationError, match="no such board file"):
        read_board(tmp_path / "nope.toml")


def test_object_points_and_neighbours():
    board = Board("checkerboard", 4, 3, 10.0)  # 3 x 2 inner corners
    assert np.allclose(board.object_points(), [[0, 0, 0], [10, 0, 0], [20, 0, 0], [0, 10, 0], [10, 10, 0], [20, 10, 0]])
    pairs = board.neighbours()
    assert len(pairs) == 2 * 2 + 3 * 1
    obj = board.object_points()
    assert np.allclose(np.linalg.norm(obj[pairs[:, 0]] - obj[pairs[:, 1]], axis=1), 10.0)
    assert {tuple(p) for p in pairs} >= {(0, 1), (1, 2), (0, 3), (2, 5)}


def _expected(board: Board, origin: float) -> np.ndarray:
    return origin + board.object_points()[:, :2] * PX_PER_UNIT


def test_detect_charuco_positions_and_partial_views():
    board = Board("charuco", 5, 7, 30.0, 22.0, 4, 50)
    image, origin = board_image(board)
    corners, ids = board.detect(image)
    assert sorted(ids.tolist()) == list(range(24))
    assert corners.dtype == np.float64 and corners.shape == (24, 2)
    assert np.max(np.abs(corners - _expected(board, origin)[ids])) < 0.1
    rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    rgb[: image.shape[0] // 2] = 255  # the top half hidden: only the lower corners remain
    part, part_ids = board.detect(rgb)
    assert 0 < len(part_ids) < 24
    assert np.all(board.object_points()[part_ids, 1] >= 2 * board.square_length)
    assert np.max(np.abs(part - _expected(board, origin)[part_ids])) < 0.1


def test_detect_legacy_charuco_layout():
    board = Board("charuco", 5, 6, 30.0, 22.0, 4, 50)  # an even number of rows: the layouts differ
    dictionary = cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_50)
    old = cv2.aruco.CharucoBoard((5, 6), 30.0, 22.0, dictionary)
    old.setLegacyPattern(True)
    sq = int(30 * PX_PER_UNIT)
    image = old.generateImage((7 * sq, 8 * sq), marginSize=sq)
    corners, ids = board.detect(image)
    assert len(ids) == 20
    assert np.max(np.abs(corners - (sq + sq - 0.5 + board.object_points()[ids, :2] * PX_PER_UNIT))) < 0.1


def test_detect_checkerboard_whole_and_in_a_fixed_order():
    board = Board("checkerboard", 6, 5, 30.0)
    image, origin = board_image(board)
    corners, ids = board.detect(image)
    assert ids.tolist() == list(range(20))
    assert np.max(np.abs(corners - _expected(board, origin))) < 0.1
    height, width = image.shape
    turned, _ = board.detect(np.ascontiguousarray(image[::-1, ::-1]))
    assert np.max(np.abs(turned - ([width - 1, height - 1] - corners))) < 0.25  # the same corner, the same id
    assert board.detect(np.full((200, 300), 128, np.uint8))[1].shape == (0,)


def test_detect_nothing_is_empty():
    board = Board("charuco", 5, 7, 30.0, 22.0, 4, 50)
    corners, ids = board.detect(np.full((240, 320, 3), 90, np.uint8))
    assert corners.shape == (0, 2) and ids.shape == (0,) and ids.dtype == np.int64
