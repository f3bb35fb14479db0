"""Labeling several animals: colours per individual, multi-animal projects in and out, the widget's tools."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mouse import click
from PIL import Image

from conftest import require_shared
from napari_posekit._napari._labeling import LabelingWidget
from napari_posekit._napari._project_reader import napari_get_reader
from napari_posekit._napari.layers import individual_colors
from napari_posekit.core.collected_data import write_collected
from napari_posekit.core.config import write_config


def test_individual_colours_are_distinct_and_stable():
    two = individual_colors(["female", "male"])
    many = individual_colors([f"mouse{i}" for i in range(20)])
    assert two.shape == (2, 4) and many.shape == (20, 4)
    assert np.array_equal(many[:2], two)  # stable by position, whatever the names
    assert len({tuple(np.round(c, 3)) for c in many}) == 20
    assert ((many >= 0) & (many <= 1)).all() and (many[:, 3] == 1).all()
    assert individual_colors([]).shape == (0, 4)


# --------------------------------------------------------------------------- a tiny two-animal project

INDIVIDUALS = ["female", "male"]
PARTS = ["head", "thorax", "abdomen"]
UNIQUE = ["food"]
SCORER = "jo"


def _labels_table(images: list[str]) -> pd.DataFrame:
    """Both flies on image 0, the male absent from image 1, nothing on image 2; food on image 0."""
    columns = pd.MultiIndex.from_tuples(
        [(SCORER, ind, bp, c) for ind in INDIVIDUALS for bp in PARTS for c in "xy"]
        + [(SCORER, "single", u, c) for u in UNIQUE for c in "xy"],
        names=["scorer", "individuals", "bodyparts", "coords"],
    )
    values = np.full((2, len(columns)), np.nan)
    values[0, :6] = [10, 12, 14, 16, 18, 20]  # female
    values[0, 6:12] = [40, 42, 44, 46, 48, 50]  # male
    values[0, 12:] = [30, 5]  # food
    values[1, :6] = [11, 13, 15, 17, 19, 21]
    index = pd.MultiIndex.from_tuples([tuple(i.split("/")) for i in images[:2]])
    return pd.DataFrame(values, index=index, columns=columns)


@pytest.fixture
def multi_project(tmp_path):
    project = tmp_path / "flies"
    folder = project / "labeled-data" / "clip"
    folder.mkdir(parents=True)
    names = [f"img{i:03d}.png" for i in range(3)]
    for name in names:
        Image.fromarray(np.full((64, 80, 3), 90, np.uint8)).save(folder / name)
    config = {
        "Task": "flies",
        "scorer": SCORER,
        "multianimalproject": True,
        "individuals": INDIVIDUALS,
        "multianimalbodyparts": PARTS,
        "uniquebodyparts": UNIQUE,
        "bodyparts": "MULTI!",
        "skeleton": [["head", "thorax"], ["thorax", "abdomen"]],
        "project_path": str(project),
    }
    write_config(project / "config.yaml", config)
    write_collected(_labels_table([f"labeled-data/clip/{n}" for n in names]), folder, SCORER)
    return project


def test_multianimal_project_opens_with_individuals_and_symbols(make_napari_viewer, multi_project):
    viewer = make_napari_viewer()
    image, points = viewer.open(str(multi_project / "config.yaml"), plugin="napari-posekit")
    assert image.data.shape == (3, 64, 80, 3)
    assert points.metadata["individuals"] == INDIVIDUALS and points.metadata["uniquebodyparts"] == UNIQUE
    assert len(points.data) == 7 + 3
    features = points.features
    assert set(features["individual"].astype(str)) == {"female", "male", "single"}
    female_head = points.data[((features["individual"] == "female") & (features["bodypart"] == "head")).to_numpy()]
    assert female_head.tolist() == [[0, 12, 10], [1, 13, 11]]
    colors = individual_colors(INDIVIDUALS)
    male = (features["individual"] == "male").to_numpy()
    assert np.allclose(points.face_color[male], colors[1])
    assert {str(s) for s in points.symbol[male]} == {"disc", "square", "diamond"}


def _open(viewer, project):
    _image, points = viewer.open(str(project / "config.yaml"), plugin="napari-posekit")
    widget = LabelingWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return points, widget


def test_label_copy_swap_undo_save_reopen(make_napari_viewer, multi_project):
    folder = multi_project / "labeled-data" / "clip"
    viewer = make_napari_viewer()
    points, widget = _open(viewer, multi_project)
    assert widget.layer is points and not widget.multi_box.isHidden()
    assert [widget.individual_box.itemText(i) for i in range(2)] == ["● female", "● male"]
    # image 1: the male is missing; pick the male's head, click, and the next click places his thorax
    widget.go_to_frame(1)
    widget.set_individual("male")
    widget.parts.setCurrentRow(0)
    assert widget.columns.pairs[widget.current] == ("male", "head")
    click(points, 1, 41, 43)
    assert widget.columns.pairs[widget.current] == ("male", "thorax")
    widget.key_bindings["i"](points)  # next individual, same body part
    assert widget.columns.pairs[widget.current] == ("female", "thorax") and widget.individual == "female"
    assert widget.swap_box.currentText() == "● male"  # swap the chosen one with another
    widget.key_bindings["i"](points)
    assert widget.store.xy[1, widget.columns.index("male", "head")].tolist() == [41, 43]
    added = points.features.iloc[-1]
    assert (added["individual"], added["bodypart"]) == ("male", "head")
    assert np.allclose(points.face_color[-1], individual_colors(INDIVIDUALS)[1])
    # copy the male's other parts from image 0, then the food (unique) with "all"
    widget.copy_previous(only_chosen=True)
    male = widget.columns.of_individual("male")
    assert widget.store.xy[1, male].tolist() == [[41, 43], [44, 46], [48, 50]]
    assert np.isnan(widget.store.xy[1, widget.columns.index("", "food")]).all()
    widget.copy_previous()
    assert widget.store.xy[1, widget.columns.index("", "food")].tolist() == [30, 5]
    # swap the two flies on image 1, undo it, redo it
    before = np.array(widget.store.xy)
    widget.swap_individuals()
    female = widget.columns.of_individual("female")
    assert np.array_equal(widget.store.xy[1, female], before[1, male])
    widget.undo()
    assert np.array_equal(widget.store.xy, before, equal_nan=True)
    male_points = (points.features["individual"] == "male").to_numpy()
    assert np.allclose(points.face_color[male_points], individual_colors(INDIVIDUALS)[1])  # restyled on rebuild
    assert str(points.symbol[np.flatnonzero((points.features["bodypart"] == "thorax").to_numpy())[0]]) == "square"
    widget.redo()
    assert np.array_equal(widget.store.xy[1, male], before[1, female])
    journal = folder / ".CollectedData_jo.posekit-journal.jsonl"
    assert journal.exists() and "swap male and female" in journal.read_text()
    assert '"male/head"' in journal.read_text().splitlines()[0]  # one journal column per (individual, part)
    # image 2 stays empty; save writes the 4-level table DeepLabCut reads
    expected = np.array(widget.store.xy)
    widget.save()
    assert not journal.exists()
    table = pd.read_hdf(folder / "CollectedData_jo.h5")
    assert list(table.columns.names) == ["scorer", "individuals", "bodyparts", "coords"]
    assert table.loc[("labeled-data", "clip", "img001.png"), (SCORER, "female", "head", "x")] == 41
    assert len(table) == 2  # no row for the image nobody labeled
    csv = pd.read_csv(folder / "CollectedData_jo.csv", header=[0, 1, 2, 3], index_col=[0, 1, 2])
    assert np.allclose(csv.to_numpy(), table.to_numpy(), equal_nan=True)
    # reopen: the same labels
    viewer2 = make_napari_viewer()
    _points2, widget2 = _open(viewer2, multi_project)
    assert np.array_equal(widget2.store.xy, expected, equal_nan=True)


@pytest.mark.filterwarnings("ignore:.*labeled images are not in")
def test_saving_keeps_rows_and_unknown_columns_and_individuals_may_be_absent(make_napari_viewer, multi_project):
    from napari_posekit.core.multianimal import read_multianimal_labels

    folder = multi_project / "labeled-data" / "clip"
    original = pd.read_hdf(folder / "CollectedData_jo.h5")
    viewer = make_napari_viewer()
    _points, widget = _open(viewer, multi_project)
    widget.save()  # nothing changed: the same table back
    pd.testing.assert_frame_equal(pd.read_hdf(folder / "CollectedData_jo.h5"), original, check_exact=True)
    core = read_multianimal_labels(multi_project)  # the project's own reader agrees
    per, unique = widget.columns.split(widget.store.xy)
    assert np.array_equal(core.xy, per[:2], equal_nan=True) and np.array_equal(
        core.unique_xy, unique[:2], equal_nan=True
    )

    # a row for an image no longer in the folder and an individual the config lacks: shown (or kept) and saved back
    extra = original.copy()
    extra[(SCORER, "ghost", "head", "x")] = [1.0, np.nan]
    extra[(SCORER, "ghost", "head", "y")] = [2.0, np.nan]
    extra.loc[("labeled-data", "clip", "img999.png"), :] = 7.0
    write_collected(extra, folder, SCORER)
    viewer2 = make_napari_viewer()
    with pytest.warns(UserWarning, match=r"individuals or body parts \[\('ghost', 'head'\)\] are not in the config"):
        points2, widget2 = _open(viewer2, multi_project)
    assert widget2.columns.individuals == ("female", "male", "ghost")
    widget2.set_individual("female")
    widget2.go_to_frame(2)  # the chosen individual's first missing part
    assert widget2.columns.pairs[widget2.current] == ("female", "head")
    click(points2, 2, 5, 6)  # female head on the empty image 2
    widget2.save()
    saved = pd.read_hdf(folder / "CollectedData_jo.h5")
    assert saved.loc[("labeled-data", "clip", "img999.png"), (SCORER, "male", "head", "x")] == 7
    assert saved.loc[("labeled-data", "clip", "img000.png"), (SCORER, "ghost", "head", "y")] == 2
    assert saved.loc[("labeled-data", "clip", "img002.png"), (SCORER, "female", "head", "x")] == 5


@pytest.mark.filterwarnings("ignore:.*are not in the config")
def test_new_multianimal_folder_and_bad_individuals(make_napari_viewer, multi_project):
    folder = multi_project / "labeled-data" / "clip"
    for suffix in (".h5", ".csv"):
        (folder / f"CollectedData_jo{suffix}").unlink()
    viewer = make_napari_viewer()
    points, widget = _open(viewer, multi_project)
    assert len(points.data) == 0 and widget.columns.individuals == ("female", "male")
    click(points, 0, 3, 4)
    widget.save()
    saved = pd.read_hdf(folder / "CollectedData_jo.h5")
    assert saved.shape == (1, 14) and saved.iloc[0, 0] == 3
    # duplicate individual names: the project is not opened, and the message says why
    config = (multi_project / "config.yaml").read_text()
    (multi_project / "config.yaml").write_text(config.replace("- male", "- female"))
    read = napari_get_reader(str(multi_project / "config.yaml"))
    with pytest.warns(UserWarning, match=r"individuals listed twice: \['female'\]"):
        assert read(str(multi_project)) is None
    # single-animal labels in a multi-animal project: named, not guessed
    (multi_project / "config.yaml").write_text(config)
    single = pd.DataFrame(
        [[1.0, 2.0]],
        index=["labeled-data/clip/img000.png"],
        columns=pd.MultiIndex.from_product([[SCORER], ["head"], ["x", "y"]]),
    )
    write_collected(single, folder, SCORER)
    with pytest.warns(UserWarning, match="single-animal labels .* in a multi-animal project"):
        assert read(str(multi_project)) is None


def test_multianimal_layer_saved_by_the_writer(tmp_path, multi_project):
    from napari_posekit._napari._project_reader import folder_layers
    from napari_posekit._napari._writer import write_keypoints

    folder = multi_project / "labeled-data" / "clip"
    original = pd.read_hdf(folder / "CollectedData_jo.h5")
    _image, (data, kwargs, _) = folder_layers(folder)
    (folder / "CollectedData_jo.h5").unlink()
    (folder / "CollectedData_jo.csv").unlink()
    written = write_keypoints(str(folder / "CollectedData_jo.h5"), data, kwargs)
    assert written == [str(folder / "CollectedData_jo.h5"), str(folder / "CollectedData_jo.csv")]
    pd.testing.assert_frame_equal(pd.read_hdf(written[0]), original, check_exact=True)
    bad = kwargs["features"].copy()
    bad["individual"] = bad["individual"].cat.add_categories(["ghost"])
    bad.loc[0, "individual"] = "ghost"
    with pytest.raises(ValueError, match="1 points have a body part or individual the layer does not list"):
        write_keypoints(str(tmp_path / "CollectedData_jo.h5"), data, {**kwargs, "features": bad})
    assert not (tmp_path / "CollectedData_jo.h5").exists()


# --------------------------------------------------------------------------- SLEAP layers are editable
def _two_fly_slp(path):
    """Frames 0 and 2: a user 'a' and a predicted 'b'; frame 1: 'a' only."""
    import sleap_io as sio

    skeleton = sio.Skeleton(["head", "tail"], edges=[("head", "tail")])
    video = sio.Video(filename=str(path.with_suffix(".mp4")), open_backend=False)
    a, b = sio.Track(name="a"), sio.Track(name="b")
    frames = []
    for f in (0, 1, 2):
        instances = [sio.Instance.from_numpy(np.array([[10.0 + f, 20], [12 + f, 30]]), skeleton=skeleton, track=a)]
        if f != 1:
            instances.append(
                sio.PredictedInstance.from_numpy(
                    np.array([[50.0, 60 + f], [52, 70]]), skeleton=skeleton, point_scores=np.array([0.9, 0.8]), track=b
                )
            )
        frames.append(sio.LabeledFrame(video=video, frame_idx=f, instances=instances))
    sio.save_slp(sio.Labels(frames, videos=[video], skeletons=[skeleton], tracks=[a, b]), str(path))
    return path


def test_sleap_layer_is_labeled_and_saved_beside_the_file(make_napari_viewer, tmp_path):
    import sleap_io as sio

    from napari_posekit._napari._sleap_reader import napari_get_reader
    from napari_posekit.core.sleap import load_slp

    path = _two_fly_slp(tmp_path / "two.slp")
    original = path.read_bytes()
    with pytest.warns(UserWarning, match="without their video"):
        layers = napari_get_reader(str(path))(str(path))
    viewer = make_napari_viewer()
    for layer in layers:
        viewer._add_layer_from_data(*layer)
    points = viewer.layers["two.slp"]
    widget = LabelingWidget(viewer)
    assert widget.layer is points and widget.columns.individuals == ("a", "b")
    assert np.allclose(points.face_color[points.features["individual"] == "b"], individual_colors(["a", "b"])[1])
    # frame 1: place b's head, swap a and b on frame 2, move a's tail on frame 0
    widget.go_to_frame(1)
    widget.set_individual("b")
    assert widget.columns.pairs[widget.current] == ("b", "head")
    click(points, 1, 55, 65)
    widget.go_to_frame(2)
    widget.swap_individuals("a", "b")
    widget.save()
    edited = tmp_path / "two.edited.slp"
    assert path.read_bytes() == original and edited.exists()
    back = load_slp(edited)
    names = back.individual_names()
    user = back.instance_kind == "user"
    f1 = np.flatnonzero(back.frame_indices == 1)[0]
    b_on_1 = np.flatnonzero(user[f1] & (names[f1] == "b"))[0]
    assert back.xy[f1, b_on_1, 0].tolist() == [55, 65] and np.isnan(back.xy[f1, b_on_1, 1]).all()
    f2 = np.flatnonzero(back.frame_indices == 2)[0]
    a_on_2 = np.flatnonzero(user[f2] & (names[f2] == "a"))[0]
    assert back.xy[f2, a_on_2].tolist() == [[50, 62], [52, 70]]  # a now has what b had
    # the corrected prediction stays in the file, linked to the user instance that replaced it
    labels = sio.load_slp(str(edited))
    frame2 = next(lf for lf in labels.labeled_frames if lf.frame_idx == 2)
    assert sum(isinstance(i, sio.PredictedInstance) for i in frame2.instances) == 1
    # reopening the edited file shows the same labels (a person's instance wins over a prediction)
    viewer2 = make_napari_viewer()
    with pytest.warns(UserWarning, match="without their video"):
        layers = napari_get_reader(str(edited))(str(edited))
    for layer in layers:
        viewer2._add_layer_from_data(*layer)
    widget2 = LabelingWidget(viewer2)
    assert np.array_equal(widget2.store.xy, widget.store.xy, equal_nan=True)


def test_single_animal_layers_show_no_individual_picker(make_napari_viewer):
    from napari_posekit._napari.layers import keypoints_layer_data

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((2, 20, 20), np.uint8))
    data, kwargs, _ = keypoints_layer_data(np.full((2, 2, 2), np.nan), ["snout", "tail"], name="keypoints")
    layer = viewer.add_points(data, **kwargs)
    widget = LabelingWidget(viewer, save=lambda store, lyr: None)
    assert widget.layer is layer and widget.columns is None and widget.multi_box.isHidden()
    assert widget.session.bodyparts == ["snout", "tail"] and widget.individual is None


def test_unsaved_multianimal_edits_are_recovered(make_napari_viewer, multi_project):
    viewer = make_napari_viewer()
    points, widget = _open(viewer, multi_project)
    widget.go_to_frame(1)
    widget.swap_individuals("female", "male")
    expected = np.array(widget.store.xy)
    viewer.layers.remove(points)  # the session ends unsaved: the journal keeps the swap
    viewer2 = make_napari_viewer()
    _points2, widget2 = _open(viewer2, multi_project)
    assert widget2.session.pending == 1 and widget2.recover_button.isVisibleTo(widget2)
    widget2.recover()
    assert np.array_equal(widget2.store.xy, expected, equal_nan=True)


def test_fly_clip_sleap_labels_edited_and_saved(make_napari_viewer, tmp_path):
    import shutil

    from napari_posekit.core.sleap import load_slp

    source = require_shared("sleap_fly_clip")
    for name in ("clip.slp", "clip.mp4"):  # a copy: the shared data stay untouched (journal, edited file)
        shutil.copy(source / name, tmp_path / name)
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "clip.slp"), plugin="napari-posekit")
    widget = LabelingWidget(viewer)
    assert widget.layer.name == "clip.slp" and widget.store.xy.shape == (1500, 26, 2)
    widget.go_to_frame(1200)
    widget.swap_individuals("female", "male")
    widget.save()
    back = load_slp(tmp_path / "clip.edited.slp")
    names = back.individual_names()
    user = back.instance_kind == "user"
    f = np.flatnonzero(back.frame_indices == 1200)[0]
    first = load_slp(tmp_path / "clip.slp")
    g = np.flatnonzero(first.frame_indices == 1200)[0]
    female_now = back.xy[f, np.flatnonzero(user[f] & (names[f] == "female"))[0]]
    male_before = first.xy[g, np.flatnonzero(first.individual_names()[g] == "male")[0]]
    assert np.array_equal(female_now, male_before, equal_nan=True)
    assert np.array_equal(back.xy[back.frame_indices != 1200], first.xy[first.frame_indices != 1200], equal_nan=True)


def test_untracked_sleap_instances_keep_their_places(make_napari_viewer, tmp_path):
    import sleap_io as sio

    from napari_posekit._napari._sleap_reader import napari_get_reader
    from napari_posekit.core.sleap import load_slp

    skeleton = sio.Skeleton(["head", "tail"])
    video = sio.Video(filename=str(tmp_path / "none.mp4"), open_backend=False)
    instances = [sio.Instance.from_numpy(np.array([[x, 1.0], [x, 2.0]]), skeleton=skeleton) for x in (10.0, 50.0)]
    path = tmp_path / "untracked.slp"
    sio.save_slp(sio.Labels([sio.LabeledFrame(video=video, frame_idx=0, instances=instances)]), str(path))
    with pytest.warns(UserWarning, match="without their video"):
        layers = napari_get_reader(str(path))(str(path))
    viewer = make_napari_viewer()
    for layer in layers:
        viewer._add_layer_from_data(*layer)
    widget = LabelingWidget(viewer)
    assert widget.columns.individuals == ("instance_0", "instance_1")
    xy = np.array(widget.store.xy)
    xy[0, :, 1] += 5  # both animals move down
    widget.session.apply(xy, "move both")
    widget.save()
    back = load_slp(tmp_path / "untracked.edited.slp")
    assert back.xy[0, :, :, 0].tolist() == [[10, 10], [50, 50]]  # each where it was, in its own place
    assert back.xy[0, :, :, 1].tolist() == [[6, 7], [6, 7]]
