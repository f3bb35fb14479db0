"""The Label QA controller: fixes as arrays, which fixes a suspect allows, the filter, the rows, the labels checked."""

from __future__ import annotations

import numpy as np
import pytest

from napari_posekit.controllers import label_qa as qa
from napari_posekit.core.config import read_config, write_config
from napari_posekit.core.label_suspects import CheckReport, LabelSet, Suspect
from napari_posekit.core.sample import write_sample_project

IMAGES = [f"labeled-data/v/img{i:03d}.png" for i in range(4)]
PARTS = ["snout", "leftear", "rightear", "tailbase"]


def _xy() -> np.ndarray:
    xy = np.arange(4 * 4 * 2, dtype=float).reshape(4, 4, 2) + 10.0
    xy[3] = np.nan  # an image without labels
    xy[2, 3] = np.nan  # tailbase not labeled in img002
    return xy


def _report(xy: np.ndarray, suspects: list[Suspect]) -> CheckReport:
    labels = LabelSet(tuple(IMAGES[:3]), tuple(PARTS), xy[:3])
    return CheckReport(labels, suspects, np.zeros(3))


SWAP = Suspect(IMAGES[1], ("leftear", "rightear"), "swap", 4.0, "ears look swapped")
MOVE = Suspect(IMAGES[0], ("snout",), "geometry", 2.5, "snout 30 px off", suggested=np.array([[1.0, 2.0]]))
COLLAPSE = Suspect(IMAGES[0], ("leftear", "rightear"), "collapse", 1.5, "two ears at one point")
MISSING = Suspect(IMAGES[2], ("tailbase",), "missing", 1.2, "tailbase visible", suggested=np.array([[5.0, 6.0]]))


def test_fixes_are_new_arrays_that_change_only_the_suspect_cells():
    xy = _xy()
    new, label = qa.fix_xy("swap", SWAP, xy, IMAGES, PARTS)
    assert label == "QA: swap leftear/rightear in img001"
    np.testing.assert_array_equal(new[1, 1], xy[1, 2])
    np.testing.assert_array_equal(new[1, 2], xy[1, 1])
    rest = np.ones(xy.shape[:2], bool)
    rest[1, [1, 2]] = False
    np.testing.assert_array_equal(new[rest], xy[rest])
    assert not np.shares_memory(new, xy) and np.isnan(xy[3]).all()

    moved, label = qa.fix_xy("move", MOVE, xy, IMAGES, PARTS)
    assert label == "QA: move to the suggestion snout in img000"
    np.testing.assert_array_equal(moved[0, 0], [1.0, 2.0])
    deleted, _ = qa.fix_xy("delete", MOVE, xy, IMAGES, PARTS)
    assert np.isnan(deleted[0, 0]).all() and not np.isnan(deleted[0, 1:]).any()

    placed, _ = qa.fix_xy("move", MISSING, xy, IMAGES, PARTS)  # a missing label is placed where the model sees it
    np.testing.assert_array_equal(placed[2, 3], [5.0, 6.0])
    # a NaN row in a suggestion deletes that label
    extra = Suspect(IMAGES[1], ("snout",), "extra", 1.1, "nothing there", suggested=np.full((1, 2), np.nan))
    gone, _ = qa.fix_xy("move", extra, xy, IMAGES, PARTS)
    assert np.isnan(gone[1, 0]).all()


def test_which_fixes_a_suspect_allows():
    xy = _xy()
    assert qa.fixes(SWAP, xy, IMAGES, PARTS) == ("swap", "delete")
    assert qa.fixes(MOVE, xy, IMAGES, PARTS) == ("move", "delete")
    assert qa.fixes(COLLAPSE, xy, IMAGES, PARTS) == ("delete",)  # exchanging two labels at one point fixes nothing
    assert qa.fixes(MISSING, xy, IMAGES, PARTS) == ("move",)  # nothing there to delete or swap
    moved, _ = qa.fix_xy("move", MOVE, xy, IMAGES, PARTS)
    assert qa.fixes(MOVE, moved, IMAGES, PARTS) == ("delete",)  # already at the suggestion
    unknown = Suspect("labeled-data/other/img9.png", ("snout",), "geometry", 2.0, "x")
    assert qa.fixes(unknown, xy, IMAGES, PARTS) == ()
    with pytest.raises(ValueError, match="cannot swap"):
        qa.fix_xy("swap", MOVE, xy, IMAGES, PARTS)
    with pytest.raises(ValueError, match="not among"):
        qa.fix_xy("delete", unknown, xy, IMAGES, PARTS)


def test_filter_rows_status_and_scores():
    xy = _xy()
    c = qa.LabelQAController()
    assert c.rows() == [] and c.kind_choices() == [(None, "every kind")]
    c.set_report(_report(xy, [SWAP, MOVE, COLLAPSE, MISSING]))
    choices = c.kind_choices()
    assert choices[0] == (None, "every kind (4)")
    assert ("swap", "left/right swapped (1)") in choices and ("geometry", "out of shape (1)") in choices
    assert [k for k, _ in choices] == [None, "swap", "geometry", "collapse", "missing"]
    rows = c.rows(xy, IMAGES)
    assert [r.rank for r in rows] == [1, 2, 3, 4]
    assert rows[0].texts() == ["1", "img001", "leftear, rightear", "swap", "4.0", ""]

    c.set_kind("geometry")
    assert [r.suspect for r in c.rows(xy, IMAGES)] == [MOVE]
    assert c.rows(xy, IMAGES)[0].rank == 2  # the rank stays the rank in the whole report
    with pytest.raises(ValueError):
        c.set_kind("nonsense")
    c.set_kind(None)

    # a fix (here or anywhere) makes a suspect "fixed"; going back makes it open again
    swapped, _ = qa.fix_xy("swap", SWAP, xy, IMAGES, PARTS)
    assert c.status(SWAP, swapped, IMAGES) == "fixed" and c.status(SWAP, xy, IMAGES) == ""
    assert c.next_open(None, swapped, IMAGES) is MOVE
    open_rows, done = c.frames(IMAGES, swapped)
    assert open_rows == [0, 2] and done == {1}

    c.choose(MOVE)
    c.mark_correct(MOVE)
    assert c.current is None and MOVE not in [r.suspect for r in c.rows(xy, IMAGES)]
    assert c.kind_choices()[0] == (None, "every kind (3)")
    assert c.status(MOVE) == "marked correct"
    scores = c.image_scores(IMAGES)
    np.testing.assert_array_equal(scores, [1.5, 4.0, 1.2, 0.0])  # img000's best visible one is the collapse now
    assert c.first_on(IMAGES[0]) is COLLAPSE

    # suspects of images outside the layer (another folder of the project) are counted, not listed
    c.set_report(_report(xy, [SWAP, MOVE]), scope=IMAGES[:1])
    assert c.visible() == [MOVE] and c.elsewhere() == 1 and c.kind_choices()[0] == (None, "every kind (1)")
    assert "1 suspect (1 out of shape). 1 more in the project's other folders" in c.summary(xy, IMAGES)

    c.set_kind("collapse")
    c.set_report(_report(xy, [SWAP]))  # a new report without that kind shows every kind again
    assert c.kind is None and c.correct == set()


def test_label_set_from_a_layers_labels(tmp_path):
    xy = _xy()
    labels = qa.label_set(IMAGES, PARTS, xy, machine={(1, 0)}, keep={"img003.png"})
    assert labels.images == tuple(IMAGES)  # img003 has no labels but had a row in the file
    assert np.isnan(labels.xy[1, 0]).all() and not np.isnan(xy[1, 0]).any()  # machine labels are not checked
    assert labels.pairs == (("leftear", "rightear"),) and labels.skeleton == () and labels.root is None
    unlabeled = qa.label_set(IMAGES, PARTS, xy)
    assert unlabeled.images == tuple(IMAGES[:3])
    np.testing.assert_array_equal(unlabeled.xy, xy[:3])

    # a project: its other folders' saved labels join as context; skeleton and pairs from config.yaml
    config = write_sample_project(tmp_path, n_frames=10, height=64, width=64, n_labeled=3)
    cfg = read_config(config)
    bodyparts = list(cfg["bodyparts"])
    cfg["skeleton"] = [[bodyparts[0], bodyparts[1]]]
    cfg["symmetric_pairs"] = [[bodyparts[1], bodyparts[2]]]
    write_config(config, cfg)
    project = qa.project_labels(config.parent)
    assert len(project.images) == 3 and qa.project_labels(tmp_path) is None
    project_xy = np.ones((2, len(bodyparts), 2))
    images = ["labeled-data/a/img0.png", "labeled-data/a/img1.png"]
    labels = qa.label_set(images, bodyparts, project_xy, root=config.parent, project=project)
    assert labels.root == config.parent and labels.images == (*images, *project.images)
    np.testing.assert_array_equal(labels.xy[2:], project.xy)
    assert labels.skeleton == ((bodyparts[0], bodyparts[1]),)
    assert labels.pairs == ((bodyparts[1], bodyparts[2]),)
    edited = qa.label_set(images, bodyparts, project_xy, project=project, skeleton=[[bodyparts[2], bodyparts[0]]])
    assert edited.skeleton == ((bodyparts[2], bodyparts[0]),) and edited.root == config.parent
    # the layer's own folder replaces the saved one (a label deleted in the layer stays deleted)
    own = list(project.images[:2])
    mine = qa.label_set(own, bodyparts, project.xy[:2] + 5, project=project)
    assert mine.images == tuple(own)
    np.testing.assert_array_equal(mine.xy, project.xy[:2] + 5)
    assert qa.short_name("labeled-data\\m4s1\\img0102.png") == "img0102"


def test_summary_counts_kinds_dismissed_and_what_was_done():
    xy = _xy()
    c = qa.LabelQAController()
    assert c.summary() == "Not checked yet."
    report = _report(xy, [SWAP, MOVE, COLLAPSE])
    report.checks, report.seconds, report.dismissed = ["swaps", "geometry"], 0.25, 2
    c.set_report(report)
    text = c.summary(xy, IMAGES)
    assert text.startswith("3 images checked (swaps, geometry) in 0.2 s: 3 suspects (1 left/right swapped, ")
    assert "1 out of shape, 1 two body parts at one point)" in text and "2 marked correct earlier" in text
    assert "In this session" not in text
    swapped, _ = qa.fix_xy("swap", SWAP, xy, IMAGES, PARTS)
    c.mark_correct(MOVE)
    assert c.summary(swapped, IMAGES).endswith("In this session: 1 fixed, 1 marked correct.")
    c.set_report(_report(xy, []))
    assert c.summary(xy, IMAGES).endswith(": no suspects.")
