"""CollectedData (core.collected_data): exact round trips of DeepLabCut's files, validation, arrays, saving, merging."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import require_shared, writable_copy
from napari_posekit.core import collected_data as C
from napari_posekit.core import config as CF
from napari_posekit.core import labeled_images as L
from napari_posekit.core.project import ProjectError

OPENFIELD = "dlc_openfield-Pranav-2018-10-30"
BODYPARTS = ["snout", "leftear", "rightear", "tailbase"]
H5 = "labeled-data/m4s1/CollectedData_Pranav.h5"
CSV = "labeled-data/m4s1/CollectedData_Pranav.csv"


@pytest.fixture(scope="session")
def shared_project() -> Path:
    """The real project in ../shared/data (read only)."""
    return require_shared(OPENFIELD)


@pytest.fixture
def project(shared_project, tmp_path) -> Path:
    """A writable copy of the real project (without its video)."""
    return writable_copy(shared_project, tmp_path / OPENFIELD)


@pytest.fixture(scope="session")
def collected(shared_project) -> pd.DataFrame:
    return C.read_collected(shared_project / H5)


def assert_exact(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def no_temp_files(folder: Path) -> bool:
    return not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------------------------------------
# CollectedData: exact round trips
# ---------------------------------------------------------------------------------------------


def test_real_collected_data_reads_the_same_from_h5_and_csv(shared_project, collected):
    assert collected.shape == (116, 8)
    assert list(collected.columns.names) == ["scorer", "bodyparts", "coords"]
    assert list(dict.fromkeys(collected.columns.get_level_values("bodyparts"))) == BODYPARTS
    assert C.index_style(collected) == "string" and collected.index[0] == "labeled-data/m4s1/img0000.png"
    assert (collected.dtypes == np.float64).all()
    assert_exact(C.read_collected(shared_project / CSV), collected)
    assert_exact(C.read_collected(shared_project / "labeled-data" / "m4s1"), collected)  # the folder finds the .h5
    # what DeepLabCut itself does to read them
    assert_exact(pd.read_hdf(shared_project / H5, "df_with_missing"), collected)


def test_real_collected_data_round_trip_is_exact(project, shared_project, collected):
    h5, csv_path = C.write_collected(collected, project / "labeled-data" / "m4s1")
    assert (h5, csv_path) == (project / H5, project / CSV)
    assert csv_path.read_bytes() == (shared_project / CSV).read_bytes()  # DLC's float formatting, byte for byte
    assert_exact(C.read_collected(h5), collected)
    assert_exact(C.read_collected(csv_path), collected)
    assert_exact(pd.read_hdf(h5, "df_with_missing"), collected)
    with pd.HDFStore(h5, mode="r") as store:
        assert store.keys() == ["/df_with_missing"]
        assert not store.get_storer("df_with_missing").is_table  # pandas' fixed format, as DeepLabCut writes
    assert no_temp_files(h5.parent)


def test_multiindex_file_round_trip_is_exact(project, collected):
    multi = C.to_multi_index(collected)
    assert multi.index[0] == ("labeled-data", "m4s1", "img0000.png")
    h5, csv_path = C.write_collected(multi, project / H5)
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("scorer,,,Pranav,Pranav") and lines[2].startswith("coords,,,x,y")
    assert lines[3] == (
        "labeled-data,m4s1,img0000.png,21.521,265.428,33.819,265.941,19.984,250.05599999999998,87.11,152.69799999999998"
    )
    assert_exact(C.read_collected(h5), multi)
    assert_exact(C.read_collected(csv_path), multi)
    C.write_collected(C.read_collected(csv_path), h5)
    assert csv_path.read_text().splitlines() == lines


def test_legacy_string_index_file_made_by_conversion(project, collected):
    multi = C.to_multi_index(collected)
    legacy = C.to_string_index(multi)
    assert_exact(legacy, collected)
    C.write_collected(legacy, project / "labeled-data" / "m4s1", "Pranav")
    back = C.read_collected(project / CSV)
    assert C.index_style(back) == "string"
    assert_exact(back, collected)


def test_missing_values_and_numeric_folder_names(tmp_path, collected):
    df = C.to_multi_index(collected).iloc[:5].copy()
    df.index = pd.MultiIndex.from_tuples([("labeled-data", "1234", f"img{i}.png") for i in range(5)])
    df.iloc[0, :4] = np.nan
    df.iloc[3, :] = np.nan
    h5, csv_path = C.write_collected(df, tmp_path / "CollectedData_Pranav.h5")
    assert csv_path.read_text().splitlines()[3].startswith("labeled-data,1234,img0.png,,,,,19.984,")
    for path in (h5, csv_path):
        back = C.read_collected(path)
        assert_exact(back, df)
        assert back.index[0][1] == "1234"


def test_scorer_argument_renames_the_scorer_level(tmp_path, collected):
    h5, csv_path = C.write_collected(collected, tmp_path, "Ann")
    assert h5.name == "CollectedData_Ann.h5" and csv_path.name == "CollectedData_Ann.csv"
    assert set(C.read_collected(h5).columns.get_level_values("scorer")) == {"Ann"}
    assert set(collected.columns.get_level_values("scorer")) == {"Pranav"}


def test_multi_animal_files_are_read(tmp_path):
    columns = pd.MultiIndex.from_product(
        [["Ann"], ["mouse1", "mouse2"], ["nose", "tail"], ["x", "y"]], names=C.COLUMN_NAMES_MULTIANIMAL
    )
    index = pd.MultiIndex.from_tuples([("labeled-data", "v", f"img{i:03d}.png") for i in range(3)])
    df = pd.DataFrame(np.arange(24, dtype=float).reshape(3, 8), index=index, columns=columns)
    df.iloc[1, 2:4] = np.nan
    df.to_csv(tmp_path / "CollectedData_Ann.csv")
    df.to_hdf(tmp_path / "CollectedData_Ann.h5", key="df_with_missing", mode="w")
    for suffix in (".h5", ".csv"):
        back = C.read_collected(tmp_path / f"CollectedData_Ann{suffix}", ["nose", "tail"])
        assert_exact(back, df)
    C.write_collected(df, tmp_path / "out.h5")
    assert_exact(C.read_collected(tmp_path / "out.csv"), df)
    with pytest.raises(ProjectError, match="single-animal"):
        C.collected_to_arrays(df)
    warnings = L.check_labels(df, (10, 10))  # values 0..23 in a 10x10 image
    assert len(warnings) == 6
    assert warnings[0] == "labeled-data/v/img001.png: mouse2/nose at (12.0, 13.0) is outside the 10x10 image"


def test_h5_from_napari_deeplabcut_with_another_key(tmp_path, collected):
    collected.to_hdf(tmp_path / "CollectedData_Pranav.h5", key="keypoints", mode="w")
    assert_exact(C.read_collected(tmp_path / "CollectedData_Pranav.h5"), collected)


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def test_bodyparts_must_match_the_config(shared_project, collected):
    config = CF.read_config(shared_project)
    C.check_bodyparts(collected, config)
    C.check_bodyparts(collected, list(reversed(BODYPARTS)))  # order may differ
    C.read_collected(shared_project / H5, config)
    other = [*BODYPARTS[:3], "tailtip"]
    with pytest.raises(ProjectError) as info:
        C.read_collected(shared_project / H5, other)
    message = str(info.value)
    assert str(BODYPARTS) in message and str(other) in message
    assert "missing from the labels: ['tailtip']" in message and "not in the config: ['tailbase']" in message
    assert "CollectedData_Pranav.h5" in message


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_malformed_csv_headers(tmp_path, shared_project):
    lines = (shared_project / CSV).read_text().splitlines()
    two_rows = _write_lines(tmp_path / "two.csv", [lines[0], lines[2], *lines[3:6]])
    expected = r"two\.csv: malformed header: expected 3 header rows.*row 2 starts with 'coords'"
    with pytest.raises(ProjectError, match=expected):
        C.read_collected(two_rows)
    no_coords = _write_lines(tmp_path / "nocoords.csv", [lines[0], lines[1], *lines[3:6]])
    with pytest.raises(ProjectError, match="row 3 starts with 'labeled-data/m4s1/img0000.png'"):
        C.read_collected(no_coords)
    no_scorer = _write_lines(tmp_path / "noscorer.csv", lines[1:6])
    with pytest.raises(ProjectError, match="first row must start with 'scorer'"):
        C.read_collected(no_scorer)
    z_header = lines[2].replace(",y,x,y", ",z,x,y", 1)
    zcoords = _write_lines(tmp_path / "z.csv", [lines[0], lines[1], z_header, *lines[3:6]])
    with pytest.raises(ProjectError, match=r"coords must be \['x', 'y'\], found \['z'\]"):
        C.read_collected(zcoords)
    text_value = _write_lines(tmp_path / "text.csv", [*lines[:3], lines[3].replace("21.521", "abc"), *lines[4:6]])
    with pytest.raises(ProjectError, match="non-numeric"):
        C.read_collected(text_value)
    with pytest.raises(ProjectError, match="file not found"):
        C.read_collected(tmp_path / "absent.csv")
    garbage = tmp_path / "CollectedData_x.h5"
    garbage.write_text("not hdf5")
    with pytest.raises(ProjectError, match="cannot read the HDF5 file"):
        C.read_collected(garbage)


def test_likelihood_coords_only_when_asked(tmp_path, collected):
    _paths, bodyparts, xy = C.collected_to_arrays(collected)
    columns = pd.MultiIndex.from_product([["DLC_net"], bodyparts, ["x", "y", "likelihood"]], names=C.COLUMN_NAMES)
    values = np.concatenate([xy, np.full(xy.shape[:2] + (1,), 0.9)], axis=2).reshape(len(xy), -1)
    machine = pd.DataFrame(values, index=collected.index, columns=columns)
    machine.to_hdf(tmp_path / "machinelabels-iter0.h5", key="df_with_missing", mode="w")
    with pytest.raises(ProjectError, match="coords must be"):
        C.read_collected(tmp_path / "machinelabels-iter0.h5")
    assert C.read_collected(tmp_path / "machinelabels-iter0.h5", likelihood=True).shape == (116, 12)


# ---------------------------------------------------------------------------------------------
# Arrays and merging
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["string", "multi"])
def test_arrays_round_trip_exact(collected, style):
    df = collected if style == "string" else C.to_multi_index(collected)
    paths, bodyparts, xy = C.collected_to_arrays(df)
    assert paths[0] == "labeled-data/m4s1/img0000.png" and len(paths) == 116
    assert bodyparts == BODYPARTS and xy.shape == (116, 4, 2) and xy.dtype == np.float64
    assert xy[0, 0].tolist() == [21.521, 265.428]
    assert_exact(C.arrays_to_collected(paths, bodyparts, xy, "Pranav", index_style=style), df)
    with pytest.raises(ProjectError, match="shape"):
        C.arrays_to_collected(paths, bodyparts, xy[:, :3], "Pranav")


def test_arrays_keep_nan(tmp_path):
    xy = np.array([[[1.5, 2.5], [np.nan, np.nan]], [[np.nan, np.nan], [3.0, 4.0]]])
    paths = ["labeled-data/v/img0.png", "labeled-data/v/img1.png"]
    df = C.arrays_to_collected(paths, ["a", "b"], xy, "Ann")
    C.write_collected(df, tmp_path)
    back_paths, back_parts, back_xy = C.collected_to_arrays(C.read_collected(tmp_path / "CollectedData_Ann.csv"))
    assert back_paths == paths and back_parts == ["a", "b"]
    assert np.array_equal(back_xy, xy, equal_nan=True)


def _labels(rows: dict[str, list[float]], parts=("a", "b"), style="multi") -> pd.DataFrame:
    xy = np.array([v for v in rows.values()], dtype=float).reshape(len(rows), len(parts), 2)
    return C.arrays_to_collected(list(rows), list(parts), xy, "Ann", index_style=style)


def test_update_collected_rows(tmp_path):
    """A row for every labeled image and every row the file had; none for an unlabeled new image."""
    nan = np.nan
    images = [f"labeled-data/v/img{i}.png" for i in range(4)]
    xy = np.full((4, 2, 2), np.nan)
    xy[1, 0] = (1.0, 2.0)
    h5, csv_path = C.update_collected(tmp_path, images, ["a", "b"], xy, "Ann")
    assert (h5, csv_path) == (tmp_path / "CollectedData_Ann.h5", tmp_path / "CollectedData_Ann.csv")
    assert_exact(C.read_collected(h5), _labels({images[1]: [1, 2, nan, nan]}))

    xy[1] = np.nan  # every label of img1 removed: its row stays, empty
    xy[3, 1] = (5.0, 6.0)
    C.update_collected(h5, images, ["a", "b"], xy, "Ann")
    assert_exact(C.read_collected(csv_path), _labels({images[1]: [nan] * 4, images[3]: [nan, nan, 5, 6]}))


@pytest.mark.parametrize("style", ["string", "multi"])
def test_csv_whose_first_image_has_no_label_yet(tmp_path, style):
    """pandas takes an empty first row below a 3-row header for index names; it is read as the image it is."""
    nan = np.nan
    df = _labels({"labeled-data/v/img0.png": [nan] * 4, "labeled-data/v/img1.png": [1, 2, 3, 4]}, style=style)
    _, csv_path = C.write_collected(df, tmp_path)
    assert csv_path.read_text().splitlines()[3] in ("labeled-data/v/img0.png,,,,", "labeled-data,v,img0.png,,,,")
    assert_exact(C.read_collected(csv_path), df)


def test_update_collected_keeps_what_only_the_file_has(tmp_path):
    """Rows of images not saved now, body parts not saved now, the file's index style and Windows keys."""
    nan = np.nan
    old = _labels(
        {"labeled-data\\v\\img0.png": [1, 1, 2, 2, 3, 3], "labeled-data\\v\\gone.png": [4, 4, 5, 5, 6, 6]},
        parts=("a", "b", "c"),
        style="string",
    )
    C.write_collected(old, tmp_path)
    images = ["labeled-data/v/img0.png", "labeled-data/v/img1.png"]
    xy = np.array([[[7, 7], [nan, nan]], [[8, 8], [9, 9]]], dtype=float)
    h5, _ = C.update_collected(tmp_path, images, ["a", "b"], xy, "Ann", index_style="multi")
    saved = C.read_collected(h5)
    expected = _labels(
        {
            images[0]: [7, 7, nan, nan, 3, 3],
            images[1]: [8, 8, 9, 9, nan, nan],
            "labeled-data\\v\\gone.png": [4, 4, 5, 5, 6, 6],
        },
        parts=("a", "b", "c"),
        style="string",
    )
    assert C.index_style(saved) == "string"  # the file's style, not the argument's
    assert_exact(saved, expected)


def _human_labels_kept(human: pd.DataFrame, merged: pd.DataFrame) -> None:
    for row in human.index:
        for col in human.columns:
            value = human.at[row, col]
            if not np.isnan(value):
                assert merged.at[row, col] == value, (row, col)


def test_merge_never_loses_a_human_label(collected):
    rng = np.random.default_rng(0)
    human = C.to_multi_index(collected)
    human = human.iloc[rng.permutation(len(human))[:80]].copy()  # unsorted, a subset of frames
    holes = rng.random((len(human), 4)) < 0.3
    values = np.array(human.to_numpy(), dtype=np.float64).reshape(len(human), 4, 2)
    values[holes] = np.nan
    values[0, 0, 1] = np.nan  # a half label (x only) still counts as human
    human.loc[:, :] = values.reshape(len(human), -1)

    paths, bodyparts, xy = C.collected_to_arrays(collected)
    machine_xy = xy + 1000.0
    machine = C.arrays_to_collected(
        paths,
        bodyparts[::-1] + ["tailtip"],
        np.concatenate([machine_xy[:, ::-1], machine_xy[:, :1]], axis=1),
        "DLC_resnet50",
        index_style="string",
    )
    machine[("DLC_resnet50", "snout", "likelihood")] = 0.5

    merged = C.merge_collected(human, machine)
    assert merged.index.is_monotonic_increasing and C.index_style(merged) == "multi"
    assert len(merged) == 116 and set(merged.columns.get_level_values("scorer")) == {"Pranav"}
    assert list(dict.fromkeys(merged.columns.get_level_values("bodyparts"))) == [*BODYPARTS, "tailtip"]
    assert "likelihood" not in merged.columns.get_level_values("coords")
    _human_labels_kept(human, merged)

    merged_xy = C.collected_to_arrays(merged)[2]
    row_of = {p: i for i, p in enumerate(C.collected_to_arrays(merged)[0])}
    human_paths, _, human_xy = C.collected_to_arrays(human)
    for i, path in enumerate(human_paths):
        j = row_of[path]
        for k in range(4):
            if np.isnan(human_xy[i, k]).all():
                assert np.array_equal(merged_xy[j, k], xy[paths.index(path), k] + 1000.0)  # filled by the machine
            else:
                assert np.array_equal(merged_xy[j, k], human_xy[i, k], equal_nan=True)  # human, even half labels
    extra = [p for p in paths if p not in human_paths]
    assert all(np.array_equal(merged_xy[row_of[p], :4], xy[paths.index(p)] + 1000.0) for p in extra)


def test_merge_keeps_human_rows_the_machine_lacks(collected):
    human = collected.iloc[:10].copy()
    human.iloc[2, :] = np.nan  # an image nobody labeled yet stays
    machine = collected.iloc[5:20] * 0 + 1.0
    merged = C.merge_collected(human, machine)
    assert list(merged.index) == sorted(set(collected.index[:20]))
    _human_labels_kept(human, merged)
    assert merged.loc[collected.index[2]].isna().all()
    assert (merged.loc[collected.index[10:20]] == 1.0).all().all()
    assert_exact(C.merge_collected(collected, collected.iloc[:0]), collected)
