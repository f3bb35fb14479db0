"""Merging refined machine labels into CollectedData: no human label is ever lost or altered."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from napari_posekit.core.collected_data import arrays_to_collected, read_collected, write_collected
from napari_posekit.core.project import ProjectError
from napari_posekit.core.refine import (
    MACHINE_CSV,
    align_xy,
    find_machinelabels,
    load_refinement,
    machinelabels_path,
    read_machinelabels,
    retrain_options,
    write_machinelabels,
)

BODYPARTS = ["snout", "leftear", "rightear", "tailbase"]
VIDEO = "m1"


def _key(i: int) -> str:
    return f"labeled-data/{VIDEO}/img{i:03d}.png"


def _machine(frames, xy, scorer="DLC_resnet18_testJan1shuffle1_100", style="multi"):
    keys = [_key(i) for i in frames]
    columns = pd.MultiIndex.from_tuples(
        [(scorer, bp, c) for bp in BODYPARTS for c in ("x", "y", "likelihood")],
        names=["scorer", "bodyparts", "coords"],
    )
    values = np.concatenate([xy, np.full(xy.shape[:2] + (1,), 0.9)], axis=2).reshape(len(frames), -1)
    df = pd.DataFrame(values, index=pd.Index(keys), columns=columns)
    if style == "multi":
        df.index = pd.MultiIndex.from_tuples([tuple(k.split("/")) for k in keys])
    return df


@pytest.fixture()
def folder(tmp_path):
    """A labeled-data folder: 4 human-labeled images (awkward floats, gaps) and 3 machine-labeled ones."""
    folder = tmp_path / "labeled-data" / VIDEO
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    human = rng.uniform(0, 200, (4, 4, 2)) / 3.0  # values without short decimal forms
    human[1, 2] = np.nan  # a body part the labeler left out
    human[3, 0] = [1e-17, 123456.78901234567]
    write_collected(arrays_to_collected([_key(i) for i in (0, 1, 2, 3)], BODYPARTS, human, "alice"), folder)
    machine = rng.uniform(0, 200, (3, 4, 2))
    write_machinelabels(_machine([1, 5, 6], machine), machinelabels_path(folder, 0))
    for i in (0, 1, 2, 3, 5, 6, 7):
        (folder / f"img{i:03d}.png").write_bytes(b"")  # only names matter here
    return folder


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_load_lines_up_human_and_machine_labels(folder):
    r = load_refinement(folder)
    assert r.scorer == "alice" and r.bodyparts == BODYPARTS
    assert r.images == [_key(i) for i in (0, 1, 2, 3, 5, 6, 7)]
    assert list(r.in_human) == [True, True, True, True, False, False, False]
    assert list(r.in_machine) == [False, True, False, False, True, True, False]
    assert r.conflicts == [_key(1)]  # human labels and a machine row: the human labels win
    assert list(r.source) == ["human"] * 4 + ["machine", "machine", "none"]
    human = read_collected(folder / "CollectedData_alice.h5").to_numpy().reshape(4, 4, 2)
    assert np.array_equal(r.xy[1], human[1], equal_nan=True)
    assert np.isfinite(r.machine[1]).all() and not np.array_equal(r.xy[1], r.machine[1])
    assert np.array_equal(r.xy[4], r.machine[4]) and np.isnan(r.xy[6]).all()
    assert r.index_of("img005.png") == 4 and r.index_of(_key(5)) == 4 and r.index_of(4) == 4
    with pytest.raises(ValueError, match="not an image"):
        r.index_of("img999.png")


def test_accepted_machine_rows_become_human_and_human_rows_stay_bit_identical(folder):
    h5, csv = folder / "CollectedData_alice.h5", folder / "CollectedData_alice.csv"
    before = read_collected(h5)
    csv_before = csv.read_text().splitlines()
    r = load_refinement(folder)
    xy = r.xy.copy()
    xy[4, 0] += [3.5, -2.25]  # the person drags the snout of img005
    xy[0] += 1000.0  # edits on an image that is not accepted are ignored
    saved = r.save(xy, accepted=["img005.png", _key(6)], deleted=[("img006.png", "tailbase")])

    assert saved.collected == h5
    assert saved.added == [_key(5), _key(6)] and saved.updated == []
    assert saved.deleted == [(_key(6), "tailbase")]
    assert saved.removed_from_machine == [_key(5), _key(6)] and saved.conflicts == [_key(1)]
    after = read_collected(h5)
    assert list(after.columns) == list(before.columns)
    assert list(after.index[:4]) == list(before.index)
    for key in before.index:  # every earlier human row, bit for bit (NaNs included)
        assert after.loc[[key]].to_numpy().tobytes() == before.loc[[key]].to_numpy().tobytes()
    assert csv.read_text().splitlines()[: len(csv_before)] == csv_before  # the CSV rows too
    new = after.to_numpy().reshape(len(after), 4, 2)
    assert np.array_equal(new[4], xy[4])
    assert np.array_equal(new[5, :3], r.machine[5, :3]) and np.isnan(new[5, 3]).all()
    assert isinstance(after.index, pd.MultiIndex)  # the file's index style is kept

    machine = read_machinelabels(machinelabels_path(folder, 0))
    assert ["/".join(k) for k in machine.index] == [_key(1)]  # accepted rows are not offered again
    assert (folder / MACHINE_CSV).read_text().count("img") == 1

    # reloading: the deletion stays (nothing is filled in from machine labels), img001 still shows the human labels
    again = load_refinement(folder)
    assert list(again.source) == ["human"] * 6 + ["none"]
    assert np.isnan(again.xy[5, 3]).all() and np.array_equal(again.xy[4], xy[4])
    assert again.conflicts == [_key(1)]


def test_deleting_a_human_label_changes_only_that_body_part(folder):
    h5 = folder / "CollectedData_alice.h5"
    before = read_collected(h5)
    r = load_refinement(folder)
    saved = r.save(r.xy, deleted=[("img002.png", "leftear")])
    assert saved.updated == [_key(2)] and saved.added == [] and saved.removed_from_machine == []
    after = read_collected(h5)
    diff = ~((after.to_numpy() == before.to_numpy()) | (np.isnan(after.to_numpy()) & np.isnan(before.to_numpy())))
    assert [tuple(c[1:]) for c in after.columns[diff.any(axis=0)]] == [("leftear", "x"), ("leftear", "y")]
    assert np.flatnonzero(diff.any(axis=1)).tolist() == [2]
    assert np.isnan(load_refinement(folder).xy[2, 1]).all()


def test_accepting_a_conflicting_image_takes_the_edited_labels(folder):
    r = load_refinement(folder)
    xy = r.xy.copy()
    xy[1] = r.machine[1]  # the person prefers the network's labels for img001
    saved = r.save(xy, accepted=[1])
    assert saved.updated == [_key(1)] and saved.conflicts == []
    assert find_machinelabels(folder) == [machinelabels_path(folder, 0)]
    after = read_collected(folder / "CollectedData_alice.h5").to_numpy().reshape(4, 4, 2)
    assert np.array_equal(after[1], r.machine[1])


def test_rows_saved_meanwhile_by_someone_else_are_kept(folder):
    r = load_refinement(folder)
    current = read_collected(folder / "CollectedData_alice.h5")
    current.iloc[0, 0] = 42.0  # another layer saved img000 after this refinement was loaded
    write_collected(current, folder)
    r.save(r.xy, accepted=["img005.png"])
    after = read_collected(folder / "CollectedData_alice.h5")
    assert after.iloc[0, 0] == 42.0 and len(after) == 5


def test_a_failed_write_leaves_every_file_as_it_was(folder, monkeypatch):
    files = [
        folder / "CollectedData_alice.h5",
        folder / "CollectedData_alice.csv",
        machinelabels_path(folder, 0),
        folder / MACHINE_CSV,
    ]
    digests = [_digest(f) for f in files]
    names = sorted(p.name for p in folder.iterdir())
    r = load_refinement(folder)

    def fail(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_hdf", fail)
    with pytest.raises(ProjectError, match="No space left"):
        r.save(r.xy, accepted=["img005.png", "img006.png"], deleted=[("img000.png", "snout")])
    monkeypatch.undo()
    assert [_digest(f) for f in files] == digests
    assert sorted(p.name for p in folder.iterdir()) == names  # no temporary files left behind
    assert load_refinement(folder).conflicts == [_key(1)]


def test_a_folder_without_collected_data_gets_one_in_the_machine_labels_style(tmp_path):
    folder = tmp_path / "labeled-data" / VIDEO
    folder.mkdir(parents=True)
    write_machinelabels(_machine([3, 8], np.full((2, 4, 2), 10.0), style="string"), machinelabels_path(folder, 2))
    with pytest.raises(ProjectError, match="scorer"):
        load_refinement(folder)
    r = load_refinement(folder, scorer="bob")
    assert r.bodyparts == BODYPARTS and list(r.source) == ["machine", "machine"]
    saved = r.save(r.xy, accepted=["img008.png"])
    assert saved.collected == folder / "CollectedData_bob.h5"
    df = read_collected(saved.collected)
    assert list(df.index) == [_key(8)] and df.columns.get_level_values("scorer")[0] == "bob"
    assert list(read_machinelabels(machinelabels_path(folder, 2)).index) == [_key(3)]
    # accepting the last machine row removes the machine-label files
    load_refinement(folder).save(load_refinement(folder).xy, accepted=["img003.png"])
    assert find_machinelabels(folder) == [] and not (folder / MACHINE_CSV).exists()
    assert len(read_collected(folder / "CollectedData_bob.h5")) == 2


def test_bad_input_is_refused_before_anything_is_written(folder):
    r = load_refinement(folder)
    digest = _digest(folder / "CollectedData_alice.h5")
    with pytest.raises(ValueError, match="shape"):
        r.save(r.xy[:2], accepted=[4])
    with pytest.raises(ValueError, match="body part"):
        r.save(r.xy, deleted=[("img005.png", "paw")])
    xy = r.xy.copy()
    xy[4, 0, 0] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        r.save(xy, accepted=[4])
    assert _digest(folder / "CollectedData_alice.h5") == digest


def test_align_xy_lays_out_a_layers_coordinates_for_the_merge(folder):
    r = load_refinement(folder)
    # a layer showing two of the images, with its own body-part order, one part the labels lack
    images = ["img005.png", _key(2)]
    parts = ["tailbase", "tail_tip", "snout"]
    layer_xy = np.arange(2 * 3 * 2, dtype=float).reshape(2, 3, 2)
    rows = align_xy(r, images, parts, layer_xy)
    assert rows.shape == r.xy.shape
    expected = r.xy.copy()
    for i, image in enumerate(images):
        expected[r.index_of(image), BODYPARTS.index("tailbase")] = layer_xy[i, 0]
        expected[r.index_of(image), BODYPARTS.index("snout")] = layer_xy[i, 2]
    assert np.array_equal(rows, expected, equal_nan=True)
    assert np.array_equal(r.xy, load_refinement(folder).xy, equal_nan=True)  # the refinement is left alone
    saved = r.save(rows, accepted=["img005.png"])
    assert saved.added == [_key(5)]
    merged = load_refinement(folder)
    assert np.array_equal(merged.human[merged.index_of("img005.png"), BODYPARTS.index("tailbase")], layer_xy[0, 0])
    with pytest.raises(ValueError, match="xy must have shape"):
        align_xy(r, images, parts, layer_xy[:1])


def test_retrain_options_read_the_model_folder_name(tmp_path):
    models = tmp_path / "posekit-models" / "iteration-0"
    assert retrain_options(models / "openfieldOct30-trainset95shuffle1" / "train" / "snapshot.pt") == {"shuffle": 1}
    assert retrain_options(models / "openfieldOct30-trainset80shuffle3-block" / "best.pt") == {
        "split": "block",
        "shuffle": 3,
    }
    assert retrain_options(tmp_path / "somewhere" / "model.pt") == {}
