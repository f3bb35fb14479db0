"""SLEAP labels into a new project (core.sleap_import, ``posekit import``): made-up files and the 3D session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import require_shared
from napari_posekit.cli import main
from napari_posekit.core.collected_data import collected_to_arrays, read_collected
from napari_posekit.core.config import read_config
from napari_posekit.core.sleap import load_slp
from napari_posekit.core.sleap_import import (
    LabelsImportError,
    import_labels,
    iter_import_labels,
    read_sources,
)
from napari_posekit.core.video import VideoReader
from napari_posekit.core.video_write import write_video

NODES = ["nose", "head", "tail"]
EDGES = [("nose", "head"), ("head", "tail")]
N_FRAMES = 12
SESSION = "sleap_anipose_minimal_session"
CAMERAS = ("back", "mid", "side", "top")


def _video(path: Path, seed: int) -> Path:
    """A tiny video whose frames all differ (a moving bright square on noise)."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(N_FRAMES):
        frame = rng.integers(0, 60, (48, 64, 3), dtype=np.uint8)
        frame[10:20, 4 + 4 * i : 14 + 4 * i] = 250
        frames.append(frame)
    return write_video(frames, path, fps=10)


def _slp(path: Path, video_name: str, frames: dict, nodes=NODES, edges=EDGES, tracks=()) -> Path:
    """Write a .slp whose video is stored with a Windows path; ``frames``: frame -> list of (kind, points[, track])."""
    import sleap_io as sio

    skeleton = sio.Skeleton(list(nodes), edges=list(edges))
    video = sio.Video(filename=f"D:\\rig\\{video_name}", open_backend=False)
    track_objects = {name: sio.Track(name) for name in tracks}
    labeled = []
    for frame_idx, instances in frames.items():
        made = []
        for kind, points, *track in instances:
            track = track_objects[track[0]] if track else None
            if kind == "user":
                made.append(sio.Instance.from_numpy(np.asarray(points, float), skeleton=skeleton, track=track))
            else:
                made.append(
                    sio.PredictedInstance.from_numpy(
                        np.asarray(points, float),
                        skeleton=skeleton,
                        point_scores=np.full(len(nodes), 0.9),
                        score=1.0,
                        track=track,
                    )
                )
        labeled.append(sio.LabeledFrame(video=video, frame_idx=frame_idx, instances=made))
    labels = sio.Labels(labeled, videos=[video], skeletons=[skeleton], tracks=list(track_objects.values()))
    sio.save_slp(labels, str(path))
    return path


P1 = [[10.0, 12.0], [20.5, 14.25], [np.nan, np.nan]]
P2 = [[30.0, 22.0], [33.0, 25.0], [40.0, 30.0]]
P3 = [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]


@pytest.fixture
def two_cameras(tmp_path):
    """Two views, each a video beside its .slp: user, user-over-prediction and prediction-only frames."""
    src = tmp_path / "src"
    src.mkdir()
    _video(src / "cam1.mp4", 1)
    _video(src / "cam2.mp4", 2)
    one = _slp(
        src / "cam1.slp", "cam1.mp4", {2: [("user", P1)], 5: [("predicted", P3), ("user", P2)], 9: [("predicted", P3)]}
    )
    two = _slp(
        src / "cam2.slp",
        "cam2.mp4",
        {0: [("user", P2)], 11: [("user", P3)]},
        edges=[("head", "nose"), ("head", "tail")],
    )
    return one, two


def _assert_nothing_left(parent: Path, name: str) -> None:
    assert not (parent / name).exists()
    assert not [p for p in parent.iterdir() if p.name.startswith(f".{name}.")]


def test_two_views_become_one_project(two_cameras, tmp_path):
    project = tmp_path / "mouse3d"
    result = import_labels(two_cameras, project, scorer="anna")

    config = read_config(project)
    assert config["Task"] == "mouse3d" and config["scorer"] == "anna"
    assert config["project_path"] == str(project)
    assert config["bodyparts"] == NODES
    assert sorted(map(tuple, config["skeleton"])) == sorted(EDGES)
    crops = {Path(k).name: v["crop"] for k, v in config["video_sets"].items()}
    assert crops == {"cam1.mp4": "0, 64, 0, 48", "cam2.mp4": "0, 64, 0, 48"}

    one, two = result.videos
    assert one.folder == project / "labeled-data" / "cam1"
    assert one.frames.tolist() == [2, 5] and one.skipped_frames == 1 and one.predicted_frames == 0
    images, _, xy = collected_to_arrays(read_collected(one.folder / "CollectedData_anna.h5", NODES))
    assert images == ["labeled-data/cam1/img02.png", "labeled-data/cam1/img05.png"]
    np.testing.assert_array_equal(xy, np.array([P1, P2]))  # the user instance, not the prediction; NaN kept
    csv_images, _, csv_xy = collected_to_arrays(read_collected(one.folder / "CollectedData_anna.csv"))
    assert csv_images == images
    np.testing.assert_array_equal(csv_xy, xy)
    _, _, xy_two = collected_to_arrays(read_collected(two.folder))
    np.testing.assert_array_equal(xy_two, np.array([P2, P3]))

    from PIL import Image

    with VideoReader(tmp_path / "src" / "cam2.mp4") as reader:
        for frame, image in zip(two.frames, two.images):
            assert image.name == f"img{frame:02d}.png"
            np.testing.assert_array_equal(np.asarray(Image.open(image).convert("RGB")), reader.get(int(frame)))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".mouse3d.")]


def test_predictions_only_when_asked(two_cameras, tmp_path):
    result = import_labels(two_cameras[:1], tmp_path / "p", include_predicted=True)
    (item,) = result.videos
    assert item.frames.tolist() == [2, 5, 9] and item.predicted_frames == 1
    _, _, xy = collected_to_arrays(read_collected(item.folder))
    np.testing.assert_array_equal(xy, np.array([P1, P2, P3]))  # frame 5 keeps its user instance


def test_predicted_only_file_says_how(tmp_path):
    _video(tmp_path / "v.mp4", 0)
    slp = _slp(tmp_path / "v.slp", "v.mp4", {1: [("predicted", P1)]})
    with pytest.raises(
        LabelsImportError, match=r"v\.slp: no user-labeled instances, only 1 predicted.*--include-predicted"
    ):
        import_labels([slp], tmp_path / "p")
    _assert_nothing_left(tmp_path, "p")


def test_several_animals_make_a_multianimal_project(tmp_path):
    _video(tmp_path / "v.mp4", 0)
    slp = _slp(
        tmp_path / "v.slp",
        "v.mp4",
        {1: [("user", P1)], 3: [("user", P1), ("user", P2)], 7: [("user", P2), ("user", P3)]},
    )
    with pytest.warns(UserWarning, match="no tracks"):
        result = import_labels([slp], tmp_path / "p")
    assert result.individuals == ["individual1", "individual2"]
    assert read_config(result.config)["multianimalproject"] is True


def test_several_tracks_make_individuals(tmp_path):
    _video(tmp_path / "v.mp4", 0)
    frames = {1: [("user", P1, "female")], 3: [("user", P2, "male")]}
    slp = _slp(tmp_path / "v.slp", "v.mp4", frames, tracks=("female", "male"))
    result = import_labels([slp], tmp_path / "p")
    assert result.individuals == ["female", "male"] and result.warnings == []
    assert read_config(result.config)["individuals"] == ["female", "male"]


def test_different_skeletons_named(two_cameras, tmp_path):
    other = _slp(
        tmp_path / "src" / "cam3.slp", "cam1.mp4", {1: [("user", P1)]}, nodes=["nose", "head", "tailbase"], edges=[]
    )
    with pytest.raises(
        LabelsImportError,
        match=r"cam3\.slp: its skeleton differs from that of .*cam1\.slp: nodes only here: \['tailbase'\]; nodes only there: \['tail'\]",
    ):
        import_labels([two_cameras[0], other], tmp_path / "p")
    edges = _slp(tmp_path / "src" / "cam4.slp", "cam2.mp4", {1: [("user", P1)]}, edges=[("nose", "tail")])
    with pytest.raises(
        LabelsImportError,
        match=r"cam4\.slp: .*edges only here: \['nose-tail'\]; edges only there: \['head-nose', 'head-tail'\]",
    ):
        import_labels([two_cameras[0], edges], tmp_path / "p")
    _assert_nothing_left(tmp_path, "p")


def test_existing_project_left_alone(two_cameras, tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    (project / "notes.txt").write_text("mine")
    with pytest.raises(LabelsImportError, match=r"p: exists already and is not an empty folder"):
        import_labels(two_cameras, project)
    assert [p.name for p in project.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert import_labels(two_cameras, empty).config == empty / "config.yaml"


def test_missing_video_then_given(tmp_path):
    slp = _slp(tmp_path / "v.slp", "gone.mp4", {1: [("user", P1)]})
    with pytest.raises(LabelsImportError, match=r"v\.slp: its video is not found: the stored path D:/rig/gone\.mp4"):
        import_labels([slp], tmp_path / "p")
    _assert_nothing_left(tmp_path, "p")
    video = _video(tmp_path / "elsewhere.mp4", 3)
    result = import_labels([slp], tmp_path / "p", video=video)
    assert result.videos[0].folder == tmp_path / "p" / "labeled-data" / "elsewhere"
    with pytest.raises(LabelsImportError, match="--video names the video of one labels file"):
        read_sources([slp, slp], video=video)


def test_frames_past_the_video_end(tmp_path):
    _video(tmp_path / "v.mp4", 0)
    slp = _slp(tmp_path / "v.slp", "v.mp4", {1: [("user", P1)], 40: [("user", P2)]})
    with pytest.raises(LabelsImportError, match=r"v\.slp: does not match its video: .*frames \[40\] are outside"):
        import_labels([slp], tmp_path / "p")
    _assert_nothing_left(tmp_path, "p")


def test_unreadable_file(tmp_path):
    bad = tmp_path / "bad.slp"
    bad.write_text("not hdf5")
    with pytest.raises(LabelsImportError, match=r"bad\.slp: not a SLEAP labels file"):
        import_labels([bad], tmp_path / "p")
    with pytest.raises(LabelsImportError, match=r"missing\.slp: file not found"):
        import_labels([tmp_path / "missing.slp"], tmp_path / "p")


def test_stopping_removes_the_partial_project(two_cameras, tmp_path):
    work = iter_import_labels(two_cameras, tmp_path / "p")
    next(work)
    next(work)  # inside the frame extraction
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".p.importing-")]
    work.close()
    _assert_nothing_left(tmp_path, "p")


def test_cli(two_cameras, tmp_path, capsys):
    assert main(["import", *map(str, two_cameras), str(tmp_path / "p"), "--scorer", "bo"]) == 0
    out = capsys.readouterr().out
    assert "labeled-data/cam1: 2 frames" in out and "1 labeled frames without points or user instance left out" in out
    assert "(3 body parts, 4 frames)" in out
    assert (tmp_path / "p" / "labeled-data" / "cam2" / "CollectedData_bo.h5").is_file()
    assert main(["import", str(two_cameras[0]), str(tmp_path / "p")]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "exists already" in err and "Traceback" not in err


# -- the four views of the 3D session -------------------------------------------------------
def test_session_views_read_whole():
    folder = require_shared(SESSION)
    files = [folder / cam / f"minimal_{cam}_proofread.slp" for cam in CAMERAS]
    bodyparts, edges, items = read_sources(files, include_predicted=True)
    assert len(bodyparts) == 15 and len(edges) == 14
    for cam, item in zip(CAMERAS, items):
        labels = load_slp(folder / cam / f"minimal_{cam}_proofread.slp")
        assert item.video == (folder / cam / f"minimal_{cam}.mp4").resolve()  # the stored D:/ path is not there
        assert item.frames.tolist() == list(range(120)) and item.predicted_frames == 120
        np.testing.assert_array_equal(item.xy, labels.xy[:, 0])


def test_session_views_few_frames_imported(tmp_path):
    """The four views, cut to 3 frames each (the whole session's 480 PNGs take minutes), as a project."""
    import sleap_io as sio

    folder = require_shared(SESSION)
    cut = []
    for cam in CAMERAS:
        full = sio.load_slp(str(folder / cam / f"minimal_{cam}_proofread.slp"), open_videos=False)
        keep = [lf for lf in full.labeled_frames if lf.frame_idx in (0, 57, 119)]
        path = tmp_path / f"minimal_{cam}_cut.slp"
        sio.save_slp(sio.Labels(keep, videos=full.videos, skeletons=full.skeletons, tracks=full.tracks), str(path))
        cut.append(path)
    with pytest.raises(LabelsImportError, match=r"its video is not found: the stored path D:/sleap-anipose"):
        import_labels(cut[:1], tmp_path / "p", include_predicted=True)
    videos = {cam: folder / cam / f"minimal_{cam}.mp4" for cam in CAMERAS}
    results = [
        import_labels([path], tmp_path / cam, video=videos[cam], include_predicted=True)
        for cam, path in zip(CAMERAS, cut)
    ]
    from PIL import Image

    for cam, result in zip(CAMERAS, results):
        labels = load_slp(folder / cam / f"minimal_{cam}_proofread.slp")
        df = read_collected(result.videos[0].folder, read_config(result.config))
        images, bodyparts, xy = collected_to_arrays(df)
        assert len(bodyparts) == 15 and bodyparts == labels.node_names
        assert images == [f"labeled-data/minimal_{cam}/img{f:03d}.png" for f in (0, 57, 119)]
        np.testing.assert_array_equal(xy, labels.xy[[0, 57, 119], 0])
    with VideoReader(videos["top"]) as reader:
        image = np.asarray(Image.open(results[-1].videos[0].images[1]).convert("RGB"))
        np.testing.assert_array_equal(image, reader.get(57))


def test_analysis_h5_reads_as_its_slp():
    folder = require_shared(SESSION) / "back"
    bodyparts, edges, (item,) = read_sources([folder / "minimal_back_proofread.analysis.h5"], include_predicted=True)
    slp_bodyparts, slp_edges, (slp_item,) = read_sources(
        [folder / "minimal_back_proofread.slp"], include_predicted=True
    )
    assert item.video == (folder / "minimal_back.mp4").resolve()  # stored as D:/.../back\minimal_back.mp4
    assert bodyparts == slp_bodyparts and {frozenset(e) for e in edges} == {frozenset(e) for e in slp_edges}
    np.testing.assert_array_equal(item.frames, slp_item.frames)
    np.testing.assert_array_equal(item.xy, slp_item.xy)


def test_labels_on_images_refused():
    csv = require_shared("dlc_openfield-Pranav-2018-10-30", "labeled-data", "m4s1", "CollectedData_Pranav.csv")
    with pytest.raises(LabelsImportError, match=r"CollectedData_Pranav\.csv: its labels are on image files"):
        read_sources([csv])
