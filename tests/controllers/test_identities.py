"""The Identities controller: open and stitch, step through crossings, swap, merge, undo/redo, save beside the raw file."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from conftest import require_shared
from napari_posekit.controllers.identities import IdentitySession, animals_from_config, corrected_path
from napari_posekit.core.config import write_config
from napari_posekit.core.identity_edits import swap_from
from napari_posekit.core.multianimal import Tracks, read_tracks, write_tracks

T = 60
PARTS = ["head", "thorax", "tail"]


def _animal(x0: float, vx: float, y: float) -> np.ndarray:
    """``(T, 3, 3)``: a three-part animal walking along x at ``vx`` pixels per frame."""
    x = x0 + vx * np.arange(T, dtype=float)
    xy = np.stack([np.stack([x + dx, np.full(T, y)], axis=1) for dx in (6.0, 0.0, -6.0)], axis=1)
    return np.concatenate([xy, np.full((T, 3, 1), 0.9)], axis=2)


def _truth() -> Tracks:
    """Two animals passing each other around frame 30 (a crossing), with identity confidence."""
    poses = np.stack([_animal(40.0, 3.0, 100.0), _animal(220.0, -3.0, 104.0)], axis=1)
    return Tracks(poses, ["female", "male"], PARTS, np.arange(T) + 10, identity=np.full((T, 2), 0.9))


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_next_crossing_lands_where_the_tracker_swapped_and_one_swap_fixes_it():
    truth = _truth()
    session = IdentitySession(swap_from(truth, 33, 0, 1))  # the tracker swapped them at index 33 (frame 43)
    assert len(session.crossing_views) == 1
    view = session.next_crossing(session.frame_of(0))
    assert view.focus == 43 and view.gain > 0 and view.pair == (0, 1) and view.reviewed
    assert session.next_crossing(view.focus) is None
    assert session.previous_crossing(view.focus + 1).focus == 43
    assert session.default_pair(view.focus) == (0, 1)
    text = session.swap_from(view.focus, *view.pair)
    assert text == "Swapped female and male from frame 43 on (1 edit)."
    np.testing.assert_array_equal(session.tracks.poses, truth.poses)
    assert session.crossing_views[0].reviewed  # the review survives the edit
    assert session.crossing_views[0].focus == 43 and session.crossing_views[0].gain <= 0
    assert session.next_crossing(43) is None  # the fixed crossing does not come round again


def test_swap_range_merge_undo_redo_and_the_edit_count():
    truth = _truth()
    session = IdentitySession(truth)
    assert not session.can_undo and session.undo() == "Nothing to undo."
    assert session.swap_range(20, 29, 0, 1) == "Swapped female and male on frames 20–29 (1 edit)."
    np.testing.assert_array_equal(session.tracks.poses[10:20, 0], truth.poses[10:20, 1])
    np.testing.assert_array_equal(session.tracks.poses[20:, 0], truth.poses[20:, 0])
    assert session.undo() == "Undid: Swapped female and male on frames 20–29 (0 edits)."
    assert session.tracks is truth and session.can_redo and not session.dirty
    assert session.redo().startswith("Redid: Swapped") and session.n_edits == 1
    session.undo()

    poses = truth.poses.copy()
    poses[30:, 1] = np.nan  # "male" ends at index 30 ...
    poses[:30, 0] = np.nan  # ... where "female" starts: two fragments of one animal
    fragments = Tracks(poses, truth.individuals, PARTS, truth.frames, identity=truth.identity)
    session = IdentitySession(fragments)
    assert session.merge(1, 0) == "Merged female into male, 30 frames (1 edit)."
    assert session.present().sum(axis=0).tolist() == [0, T]
    with pytest.raises(ValueError, match="both have poses"):
        IdentitySession(truth).merge(0, 1)


def test_save_writes_beside_the_raw_file_never_over_it(tmp_path):
    raw = tmp_path / "videoDLC_resnet50_flyJan1shuffle1_1000.h5"
    write_tracks(raw, swap_from(_truth(), 33, 0, 1))
    before = {p.name: _md5(p) for p in tmp_path.iterdir()}
    session = IdentitySession.open(raw)
    assert session.target == tmp_path / "videoDLC_resnet50_flyJan1shuffle1_1000_corrected.h5"
    assert not session.dirty
    view = session.next_crossing(-1)
    session.swap_from(view.focus, *view.pair)
    written = session.save()
    assert written[0] == session.target and not session.dirty
    assert {p.name: _md5(p) for p in tmp_path.iterdir() if p.name in before} == before  # the raw is untouched
    np.testing.assert_allclose(read_tracks(session.target).poses, _truth().poses, equal_nan=True)
    session.undo()
    session.save()  # saving again replaces the corrected file
    np.testing.assert_allclose(read_tracks(session.target).poses, read_tracks(raw).poses, equal_nan=True)
    with pytest.raises(ValueError, match="beside it, not over it"):
        session.save(raw)
    assert IdentitySession(_truth()).target is None


def test_corrected_names_and_the_number_of_animals_from_a_project(tmp_path):
    assert corrected_path(tmp_path / "a.slp").name == "a_corrected.slp"
    assert corrected_path(tmp_path / "a.csv").name == "a_corrected.h5"
    assert corrected_path(tmp_path / "a_corrected.h5") == tmp_path / "a_corrected.h5"
    (tmp_path / "videos").mkdir()
    assert animals_from_config(tmp_path / "videos" / "v.h5") is None
    write_config(tmp_path / "config.yaml", {"multianimalproject": True, "individuals": ["mouse1", "mouse2", "m3"]})
    assert animals_from_config(tmp_path / "videos" / "v.h5") == ["mouse1", "mouse2", "m3"]


def test_centered_pair_27_fragments_become_2_tracks_and_save_rereads_equal(tmp_path):
    folder = require_shared("sleap_centered_pair_predictions")
    raw = tmp_path / "centered_pair_predictions.slp"
    raw.symlink_to(folder / "centered_pair_predictions.slp")
    (tmp_path / "centered_pair_low_quality.mp4").symlink_to(folder / "centered_pair_low_quality.mp4")
    digest = _md5(raw)
    session = IdentitySession.open(raw, n_animals=2)
    assert session.stitched_from == 27 and session.individuals == ["animal1", "animal2"]
    assert session.tracks.n_frames == 1100 and session.tracks.identity is not None
    assert session.dirty  # stitched tracks are not saved yet
    assert 3 <= len(session.crossing_views) <= 40
    view = session.next_crossing(0)
    session.swap_from(view.focus, *view.pair)
    with pytest.raises(ValueError, match="both have poses"):  # the stitched animals overlap
        session.merge(0, 1)
    assert session.n_edits == 1
    written = session.save()
    assert written == [tmp_path / "centered_pair_predictions_corrected.slp"]
    assert _md5(raw) == digest
    again = read_tracks(written[0])
    assert again.individuals == session.individuals
    keep = np.isin(session.tracks.frames, again.frames)
    np.testing.assert_allclose(again.poses[..., :2], session.tracks.poses[keep][..., :2], equal_nan=True, atol=1e-4)
