"""Prediction files load unchanged in the rest of the DeepLabCut ecosystem.

* ``movement`` (neuroinformatics-unit) reads PoseKit's ``<video><scorer>.h5``
  and ``.csv`` (and ``_filtered.h5``) as DeepLabCut files: the same positions,
  confidence, keypoint and individual names and frame count as were written.
* The files have DeepLabCut's own layout: the ``df_with_missing`` key in
  pandas' "table" format, column levels ``scorer/bodyparts/coords`` (with
  ``individuals`` for multi-animal files), float64 values, the frame number as
  index, and in the CSV the header rows ``scorer``, ``bodyparts``, ``coords``.
* Files written by movement's DeepLabCut saver read back through PoseKit's
  reader and its napari reader (which needs no viewer).

movement reads the table by position: it ignores the index (its ``time`` is
0..n-1) and takes the columns in file order as individuals x keypoints x
coords. PoseKit writes every frame from 0 and the columns in that order.
"""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pandas as pd
import pytest

movement = pytest.importorskip("movement")
load_poses = pytest.importorskip("movement.io.load_poses")
save_poses = pytest.importorskip("movement.io.save_poses")

from napari_posekit.core.filtering import filter_prediction_file, filter_predictions, filtered_path
from napari_posekit.core.predictions import PREDICTIONS_KEY, read_predictions, write_predictions

SCORER = "DLC_resnet50_openfieldOct30shuffle1_1000"
BODYPARTS = ["snout", "leftear", "rightear", "spine", "tailbase"]
N_FRAMES = 240


def synthetic_result(n: int = N_FRAMES, k: int = len(BODYPARTS), seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``(xy, likelihood)`` of a mouse-like track with missing and uncertain points.

    Frame 0 is wholly empty (NaN coordinates and NaN likelihood: "0,,,,,," in
    the CSV), one body part is missing for a stretch, and some points have a
    low likelihood, as a network's output has.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    centre = np.column_stack([320 + 150 * np.sin(t[:, 0] / 37), 240 + 100 * np.cos(t[:, 0] / 23)])
    offsets = rng.normal(0, 20, (k, 2))
    xy = centre[:, None, :] + offsets[None] + rng.normal(0, 0.7, (n, k, 2))
    likelihood = rng.uniform(0.6, 1.0, (n, k))
    low = rng.random((n, k)) < 0.1
    likelihood[low] = rng.uniform(0.0, 0.2, low.sum())
    xy[0] = np.nan
    likelihood[0] = np.nan
    xy[50:60, 2] = np.nan
    likelihood[50:60, 2] = 0.001
    xy[rng.random((n, k)) < 0.03] = np.nan
    return xy, likelihood


def as_movement(xy: np.ndarray, likelihood: np.ndarray, n_individuals: int = 1):
    """PoseKit's (n, K, 2) / (n, K) as movement's (time, space, keypoints, individuals) / (time, kp, ind)."""
    n, k = likelihood.shape
    per = k // n_individuals
    position = xy.reshape(n, n_individuals, per, 2).transpose(0, 3, 2, 1)
    confidence = likelihood.reshape(n, n_individuals, per).transpose(0, 2, 1)
    return position, confidence


def movement_loaders():
    """The ways movement loads a DeepLabCut file in this version (``from_file`` is deprecated in 0.15)."""
    loaders = {"from_dlc_file": load_poses.from_dlc_file}
    if hasattr(load_poses, "from_file"):
        loaders["from_file"] = lambda path: load_poses.from_file(path, source_software="DeepLabCut")
    try:
        from movement.io import load_dataset
    except ImportError:
        pass
    else:
        loaders["load_dataset"] = lambda path: load_dataset(path, source_software="DeepLabCut")
    return loaders


LOADERS = movement_loaders()


def load_with_movement(loader: str, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return LOADERS[loader](path)


def assert_movement_reads(ds, xy, likelihood, bodyparts, individuals=("individual_0",)):
    """The movement dataset holds exactly these arrays, names and frames."""
    position, confidence = as_movement(xy, likelihood, len(individuals))
    assert dict(ds.sizes) == {
        "time": xy.shape[0],
        "space": 2,
        "keypoints": len(bodyparts),
        "individuals": len(individuals),
    }
    assert [str(s) for s in ds.space.values] == ["x", "y"]
    assert [str(kp) for kp in ds.keypoints.values] == list(bodyparts)
    assert [str(i) for i in ds.individuals.values] == list(individuals)
    np.testing.assert_array_equal(ds.time.values, np.arange(xy.shape[0]))
    assert ds.position.dtype == np.float64 and ds.confidence.dtype == np.float64
    np.testing.assert_array_equal(ds.position.values, position)  # NaN where NaN, bit for bit elsewhere
    np.testing.assert_array_equal(ds.confidence.values, confidence)
    assert ds.attrs["source_software"] == "DeepLabCut"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A PoseKit prediction file (``.h5`` + ``.csv``) of a synthetic result, and its arrays."""
    folder = tmp_path_factory.mktemp("predictions")
    xy, likelihood = synthetic_result()
    h5 = write_predictions(folder / f"mouse{SCORER}.h5", xy, likelihood, BODYPARTS, SCORER, metadata={"fps": 30})
    return h5, xy, likelihood


# --------------------------------------------------------------------------------------
# movement reads PoseKit's files
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".h5", ".csv"])
@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_movement_reads_posekit_predictions(written, suffix, loader):
    h5, xy, likelihood = written
    ds = load_with_movement(loader, h5.with_suffix(suffix))
    assert_movement_reads(ds, xy, likelihood, BODYPARTS)


def test_movement_reads_filtered_predictions(written):
    h5, xy, likelihood = written
    out = filter_prediction_file(h5, method="median", window=5)
    assert out == filtered_path(h5) and out.name == f"mouse{SCORER}_filtered.h5"
    xy_filtered, likelihood_filtered = filter_predictions(xy, likelihood, method="median", window=5)
    assert np.isnan(xy_filtered).any() and not np.array_equal(xy_filtered, xy, equal_nan=True)
    for path in (out, out.with_suffix(".csv")):
        assert_movement_reads(load_with_movement("from_dlc_file", path), xy_filtered, likelihood_filtered, BODYPARTS)
        np.testing.assert_array_equal(read_predictions(path).xy, xy_filtered)


def test_movement_reads_multi_animal_predictions(tmp_path):
    xy, likelihood = synthetic_result(n=120, k=6, seed=5)
    individual_of = ["mus1"] * 3 + ["mus2"] * 3
    bodyparts = ["snout", "spine", "tailbase"] * 2
    h5 = write_predictions(
        tmp_path / f"cage{SCORER}_el.h5", xy, likelihood, bodyparts, SCORER, individual_of=individual_of
    )
    for path in (h5, h5.with_suffix(".csv")):
        ds = load_with_movement("from_dlc_file", path)
        assert_movement_reads(ds, xy, likelihood, bodyparts[:3], individuals=("mus1", "mus2"))


# --------------------------------------------------------------------------------------
# DeepLabCut's layout
# --------------------------------------------------------------------------------------


def dlc_reference_dataframe(xy, likelihood, bodyparts, scorer) -> pd.DataFrame:
    """The table as DeepLabCut's analyze_videos builds it (product of scorer, bodyparts, coords; index 0..n-1)."""
    n, k = likelihood.shape
    columns = pd.MultiIndex.from_product(
        [[scorer], bodyparts, ["x", "y", "likelihood"]], names=["scorer", "bodyparts", "coords"]
    )
    values = np.concatenate([xy, likelihood[..., None]], axis=2).reshape(n, 3 * k)
    return pd.DataFrame(values, columns=columns, index=range(n))


def test_h5_has_deeplabcuts_layout(written):
    h5, xy, likelihood = written
    assert PREDICTIONS_KEY == "df_with_missing"
    with pd.HDFStore(h5, mode="r") as store:
        assert store.keys() == ["/df_with_missing"]
        assert store.get_storer("df_with_missing").is_table  # format="table", as DeepLabCut writes it
    df = pd.read_hdf(h5, key="df_with_missing")
    assert list(df.columns.names) == ["scorer", "bodyparts", "coords"]
    assert (df.dtypes == np.float64).all()
    assert pd.api.types.is_integer_dtype(df.index.dtype) and df.index.name is None
    np.testing.assert_array_equal(df.index, np.arange(N_FRAMES))
    assert list(df.columns.get_level_values("scorer").unique()) == [SCORER]
    assert list(df.columns.get_level_values("bodyparts").unique()) == BODYPARTS
    assert list(df.columns.get_level_values("coords")) == ["x", "y", "likelihood"] * len(BODYPARTS)
    pd.testing.assert_frame_equal(df, dlc_reference_dataframe(xy, likelihood, BODYPARTS, SCORER))
    pd.testing.assert_frame_equal(pd.read_hdf(h5), df)  # the only key: pd.read_hdf(path) as DeepLabCut calls it


def test_csv_has_deeplabcuts_header_rows(written):
    h5, xy, likelihood = written
    path = h5.with_suffix(".csv")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    k = len(BODYPARTS)
    assert rows[0] == ["scorer"] + [SCORER] * 3 * k
    assert rows[1] == ["bodyparts"] + [bp for bp in BODYPARTS for _ in range(3)]
    assert rows[2] == ["coords"] + ["x", "y", "likelihood"] * k
    assert rows[3] == ["0"] + [""] * 3 * k  # frame 0, nothing found; no index-name row before it
    assert [row[0] for row in rows[3:]] == [str(i) for i in range(N_FRAMES)]
    assert len(rows) == 3 + N_FRAMES
    # Read as DeepLabCut reads its CSVs (3 header rows, index column), frame 0 kept
    df = pd.read_csv(path, header=[0, 1, 2])
    df = df.set_index(df.columns[0]).rename_axis(None)
    df.columns = pd.MultiIndex.from_tuples(df.columns, names=["scorer", "bodyparts", "coords"])
    pd.testing.assert_frame_equal(df, dlc_reference_dataframe(xy, likelihood, BODYPARTS, SCORER))
    pred = read_predictions(path)  # and PoseKit's reader keeps the empty frame 0 too
    np.testing.assert_array_equal(pred.frames, np.arange(N_FRAMES))
    np.testing.assert_array_equal(pred.xy, xy)
    np.testing.assert_array_equal(pred.likelihood, likelihood)


# --------------------------------------------------------------------------------------
# PoseKit reads movement's DeepLabCut files
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def movement_dataset():
    xy, likelihood = synthetic_result(n=200, seed=11)
    position, confidence = as_movement(xy, likelihood)
    ds = load_poses.from_numpy(
        position_array=position, confidence_array=confidence, individual_names=["mouse"], keypoint_names=BODYPARTS
    )
    return ds, xy, likelihood


@pytest.mark.parametrize("suffix", [".h5", ".csv"])
def test_posekit_reads_movements_dlc_file(tmp_path, movement_dataset, suffix):
    ds, xy, likelihood = movement_dataset
    save_poses.to_dlc_file(ds, tmp_path / f"mouseDLC_movement{suffix}")  # one individual: split per individual
    path = tmp_path / f"mouseDLC_movement_mouse{suffix}"
    assert path.is_file()
    pred = read_predictions(path)
    assert pred.bodyparts == BODYPARTS and pred.individual_of is None
    assert pred.scorer == "movement"
    np.testing.assert_array_equal(pred.frames, np.arange(200))
    np.testing.assert_array_equal(pred.xy, xy)
    np.testing.assert_array_equal(pred.likelihood, likelihood)

    # ... and as a multi-animal file (the individuals level)
    whole = tmp_path / f"allDLC_movement{suffix}"
    save_poses.to_dlc_file(ds, whole, split_individuals=False)
    pred = read_predictions(whole)
    assert pred.individual_of == ["mouse"] * len(BODYPARTS) and pred.bodyparts == BODYPARTS
    np.testing.assert_array_equal(pred.xy, xy)
    np.testing.assert_array_equal(pred.likelihood, likelihood)


@pytest.mark.parametrize("suffix", [".h5", ".csv"])
def test_napari_reader_opens_movements_dlc_file(tmp_path, movement_dataset, suffix):
    from napari_posekit._napari._predictions_reader import napari_get_reader
    from napari_posekit.core.options import PCUTOFF as DEFAULT_PCUTOFF

    ds, xy, likelihood = movement_dataset
    save_poses.to_dlc_file(ds, tmp_path / f"mouseDLC_movement{suffix}")
    path = tmp_path / f"mouseDLC_movement_mouse{suffix}"
    reader = napari_get_reader(str(path))
    assert callable(reader)
    [(data, kwargs, layer_type)] = reader(str(path))
    assert layer_type == "points"
    found = np.isfinite(xy).all(axis=2)
    rows, cols = np.nonzero(found)
    np.testing.assert_array_equal(data, np.column_stack([rows, xy[rows, cols, 1], xy[rows, cols, 0]]))
    features = kwargs["features"]
    assert list(features["bodypart"]) == [BODYPARTS[c] for c in cols]
    np.testing.assert_array_equal(features["likelihood"], likelihood[rows, cols])
    np.testing.assert_array_equal(kwargs["shown"], likelihood[rows, cols] >= DEFAULT_PCUTOFF)
    assert kwargs["metadata"]["bodyparts"] == BODYPARTS and kwargs["metadata"]["scorer"] == "movement"
