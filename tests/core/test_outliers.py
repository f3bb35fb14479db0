"""Outlier frames: scores, diverse selection and extraction into a project with machine labels."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_PROJECT
from napari_posekit.cli import main
from napari_posekit.core.collected_data import read_collected
from napari_posekit.core.config import read_config
from napari_posekit.core.frames import frame_image_name, frame_of_image
from napari_posekit.core.inference import Predictor, output_paths
from napari_posekit.core.outliers import (
    OutlierError,
    extract_outliers,
    iter_extract_outliers,
    outlier_scores,
    select_outliers,
    write_outlier_frames,
)
from napari_posekit.core.predictions import read_predictions, write_predictions
from napari_posekit.core.refine import MACHINE_CSV, load_refinement, machinelabels_path, read_machinelabels
from napari_posekit.core.sample import write_sample

N_FRAMES, HEIGHT, WIDTH = TINY_PROJECT["n_frames"], TINY_PROJECT["height"], TINY_PROJECT["width"]
LABELED = [0, 6, 11, 17, 22, 28, 33, 39]  # the shared project's labeled frames: the expected picks below assume them

pytestmark = [pytest.mark.usefixtures("torch_threads"), pytest.mark.torch_threads(2)]


def _trajectories(n=200, k=4, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    base = np.stack([100 + 50 * np.sin(t / 30), 80 + 30 * np.cos(t / 25)], axis=-1)
    xy = np.stack([base + [10 * j, 0] for j in range(k)], axis=1) + rng.normal(0, 0.5, (n, k, 2))
    return xy, np.full((n, k), 0.95)


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- scores
def test_injected_jumps_low_likelihood_and_off_trajectory_frames_rank_first():
    xy, p = _trajectories()
    xy[50, 1] += [60, 0]  # a one-frame jump of one body part
    p[100, 2] = 0.001  # the network is unsure of one body part
    xy[150:153, 3] += [0, 30]  # three frames off the trajectory
    scores = outlier_scores(xy, p)
    assert scores.ranking[0] == 50  # jump, far from the smoothed trajectory
    assert set(scores.top(6)) == {50, 51, 100, 150, 151, 152}  # 51: the jump back
    assert scores.combined[50] > scores.combined[51]
    assert np.flatnonzero(scores.components["uncertain"]).tolist() == [100]
    assert set(np.flatnonzero(scores.components["fitting"])) == {50, 150, 151, 152}
    assert scores.jump_px[50] == pytest.approx(60, abs=3) and scores.fitting_px[151] == pytest.approx(30, abs=3)
    assert set(np.flatnonzero(scores.flagged)) == {50, 51, 100, 150, 151, 152, 153}

    only_uncertain = outlier_scores(xy, p, methods=["uncertain"])
    assert only_uncertain.ranking.tolist() == [100]
    clean = outlier_scores(*_trajectories())
    assert len(clean.ranking) == 0 and clean.top(5) == []


def test_scores_are_nan_safe():
    xy, p = _trajectories(60)
    xy[20] = np.nan  # a frame that failed to decode: NaN coordinates, likelihood 0
    p[20] = 0.0
    xy[30, 0] = np.nan
    p[40, 1] = np.nan
    scores = outlier_scores(xy, p)
    for values in (scores.jump_px, scores.fitting_px, scores.uncertain, scores.combined):
        assert np.isfinite(values).all()
    assert scores.ranking[0] == 20 and set(scores.top(3)) == {20, 30, 40}
    assert outlier_scores(np.zeros((0, 3, 2)), np.zeros((0, 3))).top(5) == []
    with pytest.raises(ValueError, match="methods"):
        outlier_scores(xy, p, methods=["sarimax"])
    with pytest.raises(ValueError, match="likelihood"):
        outlier_scores(xy, p[:5])


# --------------------------------------------------------------------------- selection
def test_kmeans_keeps_near_identical_consecutive_frames_out():
    n = 100
    rng = np.random.default_rng(3)
    video = rng.integers(0, 255, (n, 24, 32, 3), dtype=np.uint8)  # every frame looks different
    video[10:15] = video[10]  # ... except five consecutive copies
    xy, p = _trajectories(n)
    p[10:15, :] = 0.001  # the copies are the worst frames
    p[[30, 50, 70, 90], 0] = 0.001  # four other, different frames are flagged less
    scores = outlier_scores(xy, p, methods=["uncertain"])
    assert scores.top(3) == [10, 11, 12]

    picks = select_outliers(video, None, None, 3, scores=scores, seed=0)
    assert len(picks) == 3 and len(set(picks)) == 3
    assert len(set(picks) & set(range(10, 15))) == 1 and picks[0] in range(10, 15)  # the best copy, once
    assert select_outliers(video, None, None, 3, scores=scores, seed=0) == picks  # deterministic
    assert select_outliers(video, xy, p, 3, methods=["uncertain"], seed=0) == picks

    # few candidates: all are taken, no video needed; excluded frames make room for the next ones
    assert select_outliers(None, None, None, 20, scores=scores) == [10, 11, 12, 13, 14, 30, 50, 70, 90]
    assert select_outliers(None, None, None, 20, scores=scores, exclude=[10, 11]) == [12, 13, 14, 30, 50, 70, 90]
    assert select_outliers(None, None, None, 20, scores=scores, min_separation=1) == [10, 12, 14, 30, 50, 70, 90]


# --------------------------------------------------------------------------- extraction
@pytest.fixture()
def project(tiny_project_copy):
    """The test's own copy of the shared sample project (8 labeled frames) with its model."""
    assert sorted(frame_of_image(p.name) for p in tiny_project_copy.glob("labeled-data/*/*.png")) == LABELED
    return tiny_project_copy


def _video(project):
    return next((project / "videos").glob("*.mp4"))


def _groundtruth_predictions(project, path, n_frames=N_FRAMES):
    """Predictions from the sample's ground truth with a few glitches: frames 5, 20 and 31 are outliers."""
    behaviour = write_sample(project / "gt", n_frames=N_FRAMES, height=HEIGHT, width=WIDTH).behaviour
    xy = behaviour.keypoints.copy()
    p = np.full(xy.shape[:2], 0.99)
    xy[5, 0] += [30, 25]
    p[20, 1] = 0.001
    xy[31, 2] -= [40, 0]
    if n_frames != N_FRAMES:
        xy = np.resize(xy, (n_frames,) + xy.shape[1:])
        p = np.resize(p, (n_frames,) + p.shape[1:])
    return write_predictions(path, xy, p, behaviour.bodyparts, "DLC_groundtruth_sampleshuffle1_0")


def test_extract_outliers_analyses_the_video_and_writes_frames_with_machine_labels(project):
    video = _video(project)
    folder = project / "labeled-data" / video.stem
    collected = folder / f"CollectedData_{read_config(project)['scorer']}.h5"
    digest, config_digest = _digest(collected), _digest(project / "config.yaml")
    labeled = {int(k[-1][3:-4]) for k in read_collected(collected).index}
    events = []
    # p_bound above 1: every frame counts as uncertain, so a barely trained model still has candidates to pick
    result = extract_outliers(project, video.name, 5, p_bound=1.1, fast=False, progress=events.append)

    kinds = [e["event"] for e in events]
    assert kinds[0] == "analyze" and "select" in kinds and kinds[-1] == "write"
    assert result.analyzed and result.predictions.is_file() and result.predictions.parent == video.parent
    assert result.predictions.name.startswith(f"{video.stem}DLC_resnet18_sample")
    assert len(result.frames) == 5 and not set(result.frames) & labeled  # labeled frames are never picked again
    assert sorted(result.excluded) == sorted(labeled)
    assert [p.name for p in result.images] == [frame_image_name(f, N_FRAMES) for f in result.frames]
    assert all(p.is_file() and p.parent == folder for p in result.images)
    assert result.machinelabels == machinelabels_path(folder, 0) and (folder / MACHINE_CSV).is_file()
    machine = read_machinelabels(result.machinelabels)
    assert isinstance(machine.index, pd.MultiIndex)  # the style of the folder's CollectedData
    assert [k[-1] for k in machine.index] == sorted(p.name for p in result.images)
    assert machine.columns.get_level_values("scorer")[0] == result.predictions.stem[len(video.stem) :]
    assert set(machine.columns.get_level_values("coords")) == {"x", "y", "likelihood"}
    assert _digest(collected) == digest  # CollectedData is never touched
    assert _digest(project / "config.yaml") == config_digest and not result.added_video  # the video was listed

    refinement = load_refinement(folder)
    assert sum(refinement.source == "machine") == 5

    # a second extraction picks other frames and keeps the first machine labels
    again = extract_outliers(project, video, 5, p_bound=1.1)
    assert not again.analyzed and len(again.frames) == 5
    assert not set(again.frames) & (set(result.frames) | labeled)
    merged = read_machinelabels(result.machinelabels)
    assert len(merged) == 10
    pd.testing.assert_frame_equal(merged.loc[machine.index], machine)
    assert _digest(collected) == digest


def test_the_picks_are_the_glitches_of_the_predictions(project):
    video = _video(project)
    predictions = _groundtruth_predictions(project, project / "preds.h5")
    result = extract_outliers(project, video, 3, predictions=predictions)
    assert sorted(result.frames) == [5, 20, 31] and not result.analyzed
    machine = read_machinelabels(result.machinelabels)
    snout = machine.xs("snout", level="bodyparts", axis=1)
    assert snout.loc[("labeled-data", video.stem, frame_image_name(5, N_FRAMES))].iloc[:2].tolist() == pytest.approx(
        (write_sample(project / "gt", N_FRAMES, HEIGHT, WIDTH).behaviour.keypoints[5, 0] + [30, 25]).tolist()
    )
    # 32, the jump back from 31, looked like 31 and lost to it in k-means; it is all that is left
    again = extract_outliers(project, video, 3, predictions=predictions)
    assert again.frames == [32] and sorted(again.excluded) == [5, 6, 20, 31]  # 6: labeled, the jump back from 5
    assert extract_outliers(project, video, 3, predictions=predictions).frames == []


def test_predictions_of_another_length_are_refused(project):
    video = _video(project)
    short = _groundtruth_predictions(project, project / "short.h5", n_frames=N_FRAMES - 7)
    names = sorted(p.name for p in (project / "labeled-data" / video.stem).iterdir())
    with pytest.raises(OutlierError, match=f"predictions have {N_FRAMES - 7} frames but the video .* has {N_FRAMES}"):
        extract_outliers(project, video, 3, predictions=short)
    # the model's own prediction file, stale: refused too, without analysing again
    stale = output_paths(video, Predictor.load(project).scorer)["h5"]
    shutil.copy(short, stale)
    with pytest.raises(OutlierError, match="re-analyse"):
        extract_outliers(project, video, 3)
    assert sorted(p.name for p in (project / "labeled-data" / video.stem).iterdir()) == names


def test_no_predictions_and_no_model_or_no_analysis_is_a_clear_error(project, tmp_path):
    video = _video(project)
    with pytest.raises(OutlierError, match="no predictions of this model"):
        next(iter_extract_outliers(project, video, 3, analyze=False))
    shutil.rmtree(project / "posekit-models")
    with pytest.raises(OutlierError, match="no trained model"):
        extract_outliers(project, video, 3)
    # without a model the video's own prediction file is used
    _groundtruth_predictions(project, video.parent / f"{video.stem}DLC_groundtruth_sampleshuffle1_0.h5")
    assert sorted(extract_outliers(project, video, 3).frames) == [5, 20, 31]


def test_a_video_outside_the_config_is_added_to_video_sets(project, tmp_path):
    other = shutil.copy(_video(project), tmp_path / "other.mp4")
    predictions = _groundtruth_predictions(project, project / "preds.h5")
    result = extract_outliers(project, other, 3, predictions=predictions)
    assert result.added_video and result.folder == project / "labeled-data" / "other"
    sets = read_config(project)["video_sets"]
    assert sets[str(other.resolve())] == {"crop": f"0, {WIDTH}, 0, {HEIGHT}"} and len(sets) == 2
    assert isinstance(read_machinelabels(result.machinelabels).index, pd.MultiIndex)  # DeepLabCut's default


def test_write_outlier_frames_adds_chosen_frames_and_keeps_earlier_machine_rows(project):
    video = _video(project)
    folder = project / "labeled-data" / video.stem
    pred = read_predictions(_groundtruth_predictions(project, project / "preds.h5"))
    args = (pred.xy, pred.likelihood, pred.bodyparts, pred.scorer)
    images, path = write_outlier_frames(project, video, [31, 5], *args)
    assert [p.name for p in images] == [frame_image_name(31, N_FRAMES), frame_image_name(5, N_FRAMES)]
    first = read_machinelabels(path)
    assert [k[-1] for k in first.index] == [frame_image_name(f, N_FRAMES) for f in (5, 31)]
    # a later call adds rows and never rewrites existing ones, even with other predictions
    images, path = write_outlier_frames(project, video, [5, 20], pred.xy + 3.0, *args[1:])
    merged = read_machinelabels(path)
    assert len(merged) == 3
    pd.testing.assert_frame_equal(merged.loc[first.index], first)
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(OutlierError, match=r"frames \[40\] are outside the predictions"):
        write_outlier_frames(project, video, [3, N_FRAMES], *args)
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written


def test_cli_extract_outliers(project, capsys):
    video = _video(project)
    predictions = _groundtruth_predictions(project, project / "preds.h5")
    assert main(["extract-outliers", str(project), str(video), "--n", "2", "--predictions", str(predictions)]) == 0
    out = capsys.readouterr().out
    assert "2 frames written" in out and "machinelabels-iter0.h5" in out
    short = _groundtruth_predictions(project, project / "short.h5", n_frames=N_FRAMES - 1)
    assert main(["extract-outliers", str(project), str(video), "--predictions", str(short)]) == 1
    assert "re-analyse" in capsys.readouterr().err
