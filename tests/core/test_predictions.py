"""Prediction files: DeepLabCut's layout, atomic writes, reading DeepLabCut's own files."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_posekit.core import filesafety
from napari_posekit.core.collected_data import arrays_to_collected, write_collected
from napari_posekit.core.predictions import (
    Predictions,
    find_predictions,
    prediction_stem,
    predictions_dataframe,
    read_predictions,
    write_predictions,
)

SCORER = "DLC_resnet50_openfieldOct30shuffle1_200000"
BODYPARTS = ["snout", "leftear", "rightear", "tailbase"]


def make_arrays(n: int = 12, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 640, size=(n, k, 2))
    likelihood = rng.uniform(0, 1, size=(n, k))
    xy[3] = np.nan  # a frame where nothing was found keeps its likelihood
    xy[5, 1] = np.nan
    return xy, likelihood


def dlc_dataframe(xy: np.ndarray, likelihood: np.ndarray, bodyparts, scorer=SCORER) -> pd.DataFrame:
    """The table exactly as deeplabcut.pose_estimation_tensorflow.predict_videos builds it."""
    n = len(xy)
    pdindex = pd.MultiIndex.from_product(
        [[scorer], bodyparts, ["x", "y", "likelihood"]], names=["scorer", "bodyparts", "coords"]
    )
    data = np.concatenate([xy, likelihood[..., None]], axis=2).reshape(n, -1)
    return pd.DataFrame(data, columns=pdindex, index=range(n))


def assert_same(pred: Predictions, xy, likelihood, bodyparts, scorer=SCORER, frames=None) -> None:
    np.testing.assert_array_equal(pred.xy, xy)
    np.testing.assert_array_equal(pred.likelihood, likelihood)
    assert pred.bodyparts == list(bodyparts)
    assert pred.scorer == scorer
    assert pred.xy.dtype == np.float64 and pred.likelihood.dtype == np.float64
    expected_frames = np.arange(len(xy)) if frames is None else np.asarray(frames)
    np.testing.assert_array_equal(pred.frames, expected_frames)
    assert pred.frames.dtype == np.int64


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_prediction_stem_and_dataframe_layout():
    assert prediction_stem("/data/videos/m3v1mp4.mp4", SCORER) == f"m3v1mp4{SCORER}"
    with pytest.raises(ValueError, match="starts with 'DLC'"):
        prediction_stem("a.mp4", "resnet50")
    xy, likelihood = make_arrays()
    df = predictions_dataframe(xy, likelihood, BODYPARTS, SCORER)
    pd.testing.assert_frame_equal(df, dlc_dataframe(xy, likelihood, BODYPARTS), check_exact=True)
    assert list(df.columns.names) == ["scorer", "bodyparts", "coords"]
    assert list(df.columns[:3]) == [(SCORER, "snout", "x"), (SCORER, "snout", "y"), (SCORER, "snout", "likelihood")]
    assert isinstance(df.index, pd.RangeIndex) and all(dt == np.float64 for dt in df.dtypes)
    assert np.isnan(df.loc[3, (SCORER, "snout", "x")])
    assert df.loc[3, (SCORER, "snout", "likelihood")] == likelihood[3, 0]
    framed = predictions_dataframe(xy, likelihood, BODYPARTS, SCORER, frames=np.arange(100, 112))
    assert list(framed.index) == list(range(100, 112))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"xy": np.zeros((3, 4))}, "xy must have shape"),
        ({"likelihood": np.zeros((3, 3))}, "likelihood must have shape"),
        ({"bodyparts": ["a", "b"]}, "4 body parts per frame but 2 names"),
        ({"bodyparts": ["a", "b", "a", "c"]}, "listed twice"),
        ({"frames": [0, 1, 1]}, "listed twice"),
        ({"frames": [0.5, 1, 2]}, "integer frame numbers"),
    ],
)
def test_dataframe_rejects_bad_arrays(change, message):
    args = {"xy": np.zeros((3, 4, 2)), "likelihood": np.zeros((3, 4)), "bodyparts": BODYPARTS, "scorer": SCORER}
    args.update(change)
    with pytest.raises(ValueError, match=message):
        predictions_dataframe(**args)


def test_write_then_read_round_trip(tmp_path):
    xy, likelihood = make_arrays()
    h5 = tmp_path / f"{prediction_stem('session1.mp4', SCORER)}.h5"
    meta = {"video": tmp_path / "session1.mp4", "n_frames": np.int64(12), "fps": 30.0, "failed_frames": [7]}
    assert write_predictions(h5, xy, likelihood, BODYPARTS, SCORER, metadata=meta) == h5
    csv = tmp_path / f"session1{SCORER}.csv"
    meta_file = tmp_path / f"session1{SCORER}_meta.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([h5.name, csv.name, meta_file.name])

    for path in (h5, csv):
        pred = read_predictions(path)
        assert_same(pred, xy, likelihood, BODYPARTS)
        assert pred.individual_of is None and pred.individuals is None and pred.path == path
        assert pred.metadata["video"] == str(tmp_path / "session1.mp4") and pred.metadata["failed_frames"] == [7]
    pd.testing.assert_frame_equal(
        pd.read_hdf(h5, "df_with_missing"),
        predictions_dataframe(xy, likelihood, BODYPARTS, SCORER),
        check_exact=True,
        check_index_type=False,
    )
    with pd.HDFStore(h5, "r") as store:  # pandas' table format, as DeepLabCut writes
        assert store.get_storer("df_with_missing").is_table
    written = json.loads(meta_file.read_text())
    assert written["scorer"] == SCORER and written["bodyparts"] == BODYPARTS and written["n_frames"] == 12
    assert written["n_rows"] == 12 and written["software"].startswith("napari-posekit")


def test_round_trip_with_frames_and_individuals(tmp_path):
    xy, likelihood = make_arrays(n=6, k=3)
    frames = np.array([10, 11, 12, 20, 21, 40])
    individual_of = ["mouse1", "mouse1", "mouse2"]
    parts = ["snout", "tail", "snout"]
    h5 = write_predictions(
        tmp_path / f"v{SCORER}.h5", xy, likelihood, parts, SCORER, frames=frames, individual_of=individual_of
    )
    for path in (h5, h5.with_suffix(".csv")):
        pred = read_predictions(path)
        assert_same(pred, xy, likelihood, parts, frames=frames)
        assert pred.individual_of == individual_of and pred.individuals == ["mouse1", "mouse2"]
        assert pred.labels == ["mouse1/snout", "mouse1/tail", "mouse2/snout"]
    pd.testing.assert_frame_equal(read_predictions(h5).to_dataframe(), pd.read_hdf(h5), check_index_type=False)


def test_reads_a_deeplabcut_file_made_as_deeplabcut_makes_it(tmp_path):
    xy, likelihood = make_arrays(n=30)
    df = dlc_dataframe(xy, likelihood, BODYPARTS)
    h5 = tmp_path / f"m3v1mp4{SCORER}.h5"
    df.to_hdf(h5, key="df_with_missing", format="table", mode="w")
    df.to_csv(h5.with_suffix(".csv"))
    for path in (h5, h5.with_suffix(".csv")):
        pred = read_predictions(path)
        assert_same(pred, xy, likelihood, BODYPARTS)
        assert pred.metadata is None

    other_key = tmp_path / "other.h5"  # any key will do (napari-deeplabcut writes "keypoints")
    df.to_hdf(other_key, key="keypoints", mode="w")
    assert_same(read_predictions(other_key), xy, likelihood, BODYPARTS)


def test_reads_a_multi_animal_csv_with_an_individuals_row(tmp_path):
    text = (
        f"scorer,{SCORER},{SCORER},{SCORER},{SCORER},{SCORER},{SCORER},{SCORER},{SCORER},{SCORER}\n"
        "individuals,mus1,mus1,mus1,mus2,mus2,mus2,single,single,single\n"
        "bodyparts,snout,snout,snout,snout,snout,snout,box,box,box\n"
        "coords,x,y,likelihood,x,y,likelihood,x,y,likelihood\n"
        "0,10.5,20.25,0.9,30,40,0.8,1,2,1.0\n"
        "1,11.5,21.25,0.95,,,0.01,1,2,1.0\n"
    )
    path = tmp_path / f"cage{SCORER}_el.csv"
    path.write_text(text)
    pred = read_predictions(path)
    assert pred.xy.shape == (2, 3, 2) and pred.bodyparts == ["snout", "snout", "box"]
    assert pred.individual_of == ["mus1", "mus2", "single"] and pred.individuals == ["mus1", "mus2", "single"]
    np.testing.assert_array_equal(pred.xy[0], [[10.5, 20.25], [30, 40], [1, 2]])
    assert np.isnan(pred.xy[1, 1]).all() and pred.likelihood[1, 1] == 0.01
    np.testing.assert_array_equal(pred.frames, [0, 1])


def test_missing_likelihood_counts_present_points_as_certain(tmp_path):
    xy, _ = make_arrays(n=6, k=2)
    df = arrays_to_collected([f"f{i}" for i in range(6)], ["a", "b"], xy, "me", index_style="string")
    df.index = range(6)
    path = tmp_path / "tracks.csv"
    df.to_csv(path)
    pred = read_predictions(path)
    np.testing.assert_array_equal(pred.xy, xy)
    expected = np.where(np.isfinite(xy).all(axis=2), 1.0, np.nan)
    np.testing.assert_array_equal(pred.likelihood, expected)


def test_rejects_files_that_are_not_predictions(tmp_path):
    xy = np.full((2, 2, 2), 5.0)
    labels = arrays_to_collected(["labeled-data/v/img000.png", "labeled-data/v/img007.png"], ["a", "b"], xy, "me")
    h5, csv = write_collected(labels, tmp_path / "CollectedData_me.h5")
    for path in (h5, csv):
        with pytest.raises(ValueError, match="CollectedData labels file"):
            read_predictions(path)
    string_index = tmp_path / "legacy" / "CollectedData_me.csv"
    string_index.parent.mkdir()
    legacy = arrays_to_collected(["labeled-data/v/img000.png"], ["a", "b"], xy[:1], "me", index_style="string")
    legacy.to_csv(string_index)
    with pytest.raises(ValueError, match="CollectedData labels file"):
        read_predictions(string_index)

    (tmp_path / "plain.csv").write_text("frame,x,y\n0,1,2\n")
    with pytest.raises(ValueError, match=r"plain\.csv.*must start with 'scorer'"):
        read_predictions(tmp_path / "plain.csv")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match=r"junk\.h5: cannot read the HDF5 file"):
        read_predictions(tmp_path / "junk.h5")
    flat = pd.DataFrame({"x": [1.0], "y": [2.0]})
    flat.to_hdf(tmp_path / "flat.h5", key="df_with_missing", mode="w")
    with pytest.raises(ValueError, match="no table of pose predictions"):
        read_predictions(tmp_path / "flat.h5")
    odd = dlc_dataframe(xy, np.ones((2, 2)), ["a", "b"]).rename(columns={"likelihood": "z"}, level="coords")
    odd.to_hdf(tmp_path / "odd.h5", key="df_with_missing", mode="w")
    with pytest.raises(ValueError, match="coords must be x, y and likelihood"):
        read_predictions(tmp_path / "odd.h5")
    with pytest.raises(FileNotFoundError):
        read_predictions(tmp_path / "missing.h5")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"expected a \.h5 or \.csv"):
        read_predictions(tmp_path / "notes.txt")


def test_write_into_a_read_only_folder_raises_and_leaves_nothing(tmp_path, monkeypatch):
    folder = tmp_path / "videos"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        probe = folder / "probe"
        try:
            probe.touch()
        except PermissionError:
            pass
        else:  # root ignores permissions: make creating the file fail as it would for a user
            probe.unlink()

            def refuse(target):
                raise PermissionError(errno.EACCES, "Permission denied", str(target))

            monkeypatch.setattr(filesafety, "_temp_path", refuse)
        xy, likelihood = make_arrays()
        with pytest.raises(PermissionError) as info:
            write_predictions(folder / f"s{SCORER}.h5", xy, likelihood, BODYPARTS, SCORER)
        assert str(folder) in str(info.value) and "Permission denied" in str(info.value)
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(stat.S_IRWXU)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_predictions(tmp_path / "nowhere" / "a.h5", xy, likelihood, BODYPARTS, SCORER)


def test_interrupted_write_keeps_the_old_files(tmp_path, monkeypatch):
    xy, likelihood = make_arrays()
    h5 = write_predictions(tmp_path / f"s{SCORER}.h5", xy, likelihood, BODYPARTS, SCORER)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def interrupted(self, path, *args, **kwargs):
        Path(path).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_hdf", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_predictions(h5, xy + 1, likelihood, BODYPARTS, SCORER)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert leftovers(tmp_path) == []

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with pytest.raises(KeyboardInterrupt):
        write_predictions(fresh / f"s{SCORER}.h5", xy, likelihood, BODYPARTS, SCORER)
    assert list(fresh.iterdir()) == []


def test_metadata_must_be_json(tmp_path):
    xy, likelihood = make_arrays()
    with pytest.raises(ValueError, match=r"metadata\['model'\] is a object"):
        write_predictions(tmp_path / "a.h5", xy, likelihood, BODYPARTS, SCORER, metadata={"model": object()})
    assert list(tmp_path.iterdir()) == []
    write_predictions(tmp_path / "a.h5", xy, likelihood, BODYPARTS, SCORER, csv=False, metadata={"rmse": np.nan})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "a_meta.json"]
    assert json.loads((tmp_path / "a_meta.json").read_text())["rmse"] is None


def test_find_predictions_newest_first(tmp_path):
    video = tmp_path / "session1.mp4"
    names = [f"session1{SCORER}.h5", f"session1{SCORER}_filtered.h5", "session1DLC_other_1000.h5"]
    for age, name in enumerate(names):
        path = tmp_path / name
        path.write_bytes(b"")
        os.utime(path, ns=(10**18 - age * 10**9, 10**18 - age * 10**9))
    for name in ("session10DLC_x.h5", f"session1{SCORER}.csv", "session1.h5", f".session1{SCORER}.h5.ab12.tmp"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in find_predictions(video)] == names
    other = tmp_path / "out"
    other.mkdir()
    assert find_predictions(video, other) == [] and find_predictions(video, tmp_path / "missing") == []
    odd = tmp_path / "odd[1]"
    odd.mkdir()
    (odd / f"a[1]{SCORER}.h5").write_bytes(b"")
    assert [p.name for p in find_predictions(odd / "a[1].avi")] == [f"a[1]{SCORER}.h5"]
