"""Analysis widget on a multi-animal project: live points by individual, Tracks per individual, the file beside the video.

A tiny synthetic two-animal project (two three-part "flies", red and blue, circling
a 128x96 arena) is trained once for this module (two epochs of each network), then
analysed in a real viewer.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from napari.layers import Points, Tracks
from PIL import Image

from conftest import drain, ffmpeg_encode, torch_thread_limit
from napari_posekit._napari._analysis_widget import AnalysisWidget
from napari_posekit._napari.layers import individual_colors
from napari_posekit.core.collected_data import write_collected
from napari_posekit.core.config import write_config
from napari_posekit.core.multianimal import read_tracks

INDIVIDUALS = ["female", "male"]
PARTS = ["head", "thorax", "abdomen"]
SCORER = "synth"
HEIGHT, WIDTH, N_FRAMES = 96, 128, 40
LABELED = list(range(0, N_FRAMES, 3))
TIMEOUT = 60_000
#: Small networks, a few epochs (the finder needs a dozen to find the animals at all): the plumbing is tested.
TRAINING = {
    "epochs": 2,
    "finder_epochs": 12,
    "lr": 0.003,
    "backbone": "resnet18",
    "pretrained": False,
    "batch_size": 4,
    "device": "cpu",
}
_COLOURS = {
    "female": ((255, 230, 120), (220, 60, 50), (150, 30, 30)),
    "male": ((200, 255, 255), (50, 90, 230), (30, 40, 140)),
}

pytestmark = pytest.mark.usefixtures("torch_threads")


def two_animal_poses(n_frames: int = N_FRAMES) -> np.ndarray:
    """``(T, 2, 3, 2)`` x, y of head, thorax and abdomen of two animals circling on opposite sides."""
    t = np.arange(n_frames)[:, None]
    phase = 0.08 * t + np.array([0.0, np.pi])[None, :]
    cx, cy = WIDTH / 2 + 36 * np.cos(phase), HEIGHT / 2 + 22 * np.sin(phase)
    heading = np.arctan2(22 * np.cos(phase), -36 * np.sin(phase))
    offsets = np.array([12.0, 0.0, -12.0])
    x = cx[..., None] + offsets * np.cos(heading)[..., None]
    y = cy[..., None] + offsets * np.sin(heading)[..., None]
    return np.stack([x, y], axis=-1)


def render(poses: np.ndarray, seed: int = 0) -> np.ndarray:
    """RGB frames ``(T, H, W, 3)`` of the animals as discs on a noisy grey floor."""
    rng = np.random.default_rng(seed)
    frames = (70 + rng.normal(0, 6, (len(poses), HEIGHT, WIDTH, 1))).clip(0, 255).repeat(3, axis=3)
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    for f, pose in enumerate(poses):
        for i, name in enumerate(INDIVIDUALS):
            for k, radius in enumerate((5.0, 6.0, 5.5)):
                x, y = pose[i, k]
                inside = (cols - x) ** 2 + (rows - y) ** 2 <= radius**2
                frames[f][inside] = _COLOURS[name][k]
    return frames.astype(np.uint8)


def make_two_animal_project(folder: Path) -> Path:
    """A DeepLabCut multi-animal project: config, labeled frames (every third), and ``videos/clip.mp4``."""
    project = folder / "pair"
    labeled = project / "labeled-data" / "clip"
    labeled.mkdir(parents=True)
    (project / "videos").mkdir()
    poses = two_animal_poses()
    frames = render(poses)
    ffmpeg_encode(frames, project / "videos" / "clip.mp4", ["-c:v", "libx264", "-pix_fmt", "yuv444p", "-crf", "12"])
    names = [f"img{t:03d}.png" for t in LABELED]
    for t, name in zip(LABELED, names):
        Image.fromarray(frames[t]).save(labeled / name)
    columns = pd.MultiIndex.from_tuples(
        [(SCORER, ind, bp, c) for ind in INDIVIDUALS for bp in PARTS for c in "xy"],
        names=["scorer", "individuals", "bodyparts", "coords"],
    )
    values = poses[LABELED].reshape(len(LABELED), -1)
    index = pd.MultiIndex.from_tuples([("labeled-data", "clip", n) for n in names])
    write_collected(pd.DataFrame(values, index=index, columns=columns), labeled, SCORER)
    config = {
        "Task": "pair",
        "scorer": SCORER,
        "date": "Dec2",
        "multianimalproject": True,
        "individuals": INDIVIDUALS,
        "multianimalbodyparts": PARTS,
        "uniquebodyparts": [],
        "bodyparts": "MULTI!",
        "skeleton": [["head", "thorax"], ["thorax", "abdomen"]],
        "project_path": str(project),
        "video_sets": {str(project / "videos" / "clip.mp4"): {"crop": f"0, {WIDTH}, 0, {HEIGHT}"}},
        "TrainingFraction": [0.8],
        "iteration": 0,
    }
    write_config(project / "config.yaml", config)
    return project


@pytest.fixture(scope="module")
def pair_project(tmp_path_factory):
    """The two-animal project with its multi-animal model, trained once for the module; tests copy it."""
    from napari_posekit.core.topdown import iter_train_multianimal

    project = make_two_animal_project(tmp_path_factory.mktemp("pair"))
    with torch_thread_limit():
        drain(iter_train_multianimal(project, **TRAINING))
    return project


@pytest.fixture
def pair(pair_project, tmp_path) -> Path:
    return Path(shutil.copytree(pair_project, tmp_path / pair_project.name))


def _open(viewer, project: Path) -> tuple[AnalysisWidget, object]:
    [layer] = viewer.open(str(project / "videos" / "clip.mp4"), plugin="napari-posekit")
    widget = AnalysisWidget(viewer)
    widget.model.setText(str(project))
    widget.backend_box.setCurrentText("torch-eager-float32")  # "auto" measures every backend: long
    return widget, layer


def _wait(qtbot, widget) -> None:
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)


def test_analyse_two_animals_live_then_tracked_and_written(make_napari_viewer, qtbot, pair):
    viewer = make_napari_viewer()
    widget, _layer = _open(viewer, pair)
    assert not widget.fast.isEnabled()  # the crop option is the single-animal model's
    sizes, show = [], widget.multi_display.show

    def recording_show(analysis, create=True):
        show(analysis, create)
        sizes.append(int(analysis.analysed.sum()))

    widget.multi_display.show = recording_show
    assert widget.analyze("Whole video") is not None
    _wait(qtbot, widget)
    assert "40 frames of clip" in widget.status.text() and "frames/s" in widget.status.text()
    written = pair / "videos" / next(p.name for p in (pair / "videos").glob("clip*_el.h5"))
    assert str(written) in widget.status.text()
    assert sizes[0] < N_FRAMES and sizes[-1] == N_FRAMES  # the layers grew block by block

    points = viewer.layers["clip animals"]
    assert isinstance(points, Points) and set(points.features["individual"]) <= set(INDIVIDUALS)
    colors = individual_colors(INDIVIDUALS)
    owner = points.features["individual"].cat.codes.to_numpy()
    assert np.allclose(points.face_color, colors[owner])
    assert len(points.data) > N_FRAMES
    assert {s.value for s in points.symbol} == {"disc", "square", "diamond"}  # one symbol per body part
    tracks = [viewer.layers[f"clip {name}"] for name in INDIVIDUALS]
    assert all(isinstance(t, Tracks) for t in tracks)

    back = read_tracks(written)
    assert back.individuals == INDIVIDUALS and back.bodyparts == PARTS and len(back.frames) == N_FRAMES
    assert back.identity is not None and back.identity.shape == (N_FRAMES, 2)
    analysis = widget.current_multi()
    assert analysis.tracked and analysis.saved == written
    assert np.allclose(back.poses[..., :2], analysis.poses[..., :2], equal_nan=True, atol=1e-3)

    # the Identities widget opens what was written
    identities = widget.check_identities()
    qtbot.waitUntil(lambda: identities.session is not None, timeout=TIMEOUT)
    assert identities.session.path == written
    assert not points.visible and not any(t.visible for t in tracks)  # its own layers show them now


def test_found_predictions_are_offered_and_opened(make_napari_viewer, qtbot, pair):
    viewer = make_napari_viewer()
    widget, _layer = _open(viewer, pair)
    widget.analyze("Whole video")
    _wait(qtbot, widget)
    written = widget.current_multi().saved
    viewer.layers.clear()
    widget, layer = _open(viewer, pair)
    assert widget.found_row.isVisibleTo(widget) and written.name in widget.found.text()
    widget.open_found()
    _wait(qtbot, widget)
    analysis = widget.current_multi()
    assert analysis.saved == written and analysis.analysed.all()
    assert f"{layer.name} animals" in viewer.layers and f"{layer.name} male" in viewer.layers
    assert not widget.found_row.isVisibleTo(widget)
    points = viewer.layers[f"{layer.name} animals"]
    widget.pcutoff.setValue(1.0)
    widget.apply_pcutoff()
    assert not points.shown.any() and len(points.data)  # hidden, not dropped
    widget.tail_length.setValue(5)
    assert viewer.layers[f"{layer.name} female"].tail_length == 5

    # Save writes them elsewhere (e.g. when the video's folder is read-only)
    assert widget.save_button.isEnabled()
    job = widget.save_predictions(pair / "elsewhere")
    qtbot.waitUntil(lambda: job.finished, timeout=TIMEOUT)
    copy = read_tracks(pair / "elsewhere.h5")
    assert copy.individuals == INDIVIDUALS and len(copy.frames) == N_FRAMES
    assert widget.current_multi().saved == pair / "elsewhere.h5" and "Saved the predictions" in widget.status.text()


def test_single_animal_checkpoint_on_a_multi_animal_project_is_refused(make_napari_viewer, qtbot, pair, tmp_path):
    viewer = make_napari_viewer()
    widget, _layer = _open(viewer, pair)
    single = tmp_path / "other" / "train" / "checkpoint.pt"
    single.parent.mkdir(parents=True)
    single.write_bytes(b"not read")
    widget.model.setText(str(single))
    before = list(viewer.layers)
    assert widget.analyze("Whole video") is None
    assert "single-animal model" in widget.status.text() and "multi-animal project" in widget.status.text()
    assert list(viewer.layers) == before

    # stopped before the first block: nothing analysed, nothing written
    widget.model.setText(str(pair))
    widget.analyze("Whole video")
    widget.stop()
    _wait(qtbot, widget)
    assert "Stopped before any frame was analysed" in widget.status.text() and widget.multi_run is None
    assert list(viewer.layers) == before and not list((pair / "videos").glob("*_el.h5"))

    # a multi-animal project without its model: the job says so, nothing changes
    shutil.rmtree(pair / "posekit-models")
    widget.model.setText(str(pair))
    widget.analyze("Whole video")
    _wait(qtbot, widget)
    assert "Analysis failed" in widget.status.text() and "no multi-animal model" in widget.status.text()
    assert widget.multi_run is None
    assert list(viewer.layers) == before
