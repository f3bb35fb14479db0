"""The layers of the Identities widget: points and skeleton coloured by individual, one Tracks layer per individual.

:class:`IdentityLayers` builds them the first time and afterwards replaces
their data in place (same layer objects, same frame shown), so an identity
edit recolours the animals without the layers blinking or the view moving.

- ``"<name> identities"``: a Points layer ``(frame, y, x)`` of every placed
  body part, face coloured by individual (:func:`~napari_posekit._napari.layers.individual_colors`),
  features ``bodypart``, ``individual``, ``likelihood``;
- ``"<name> skeleton"``: a Vectors layer of the skeleton's edges in the
  individual's colour (when the file has a skeleton);
- ``"<name> <individual>"``: a Tracks layer per individual following the mean
  position of its body parts, split where the animal is missing.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from napari.layers import Points, Tracks, Vectors
from napari.utils.colormaps import Colormap

from napari_posekit._napari.layers import individual_colors, skeleton_vectors
from napari_posekit.core.multianimal import Tracks as PoseTracks

__all__ = ["IdentityLayers", "identity_points", "identity_skeleton", "individual_track"]

ROLE = "posekit_identity"


def identity_points(tracks: PoseTracks, colors: np.ndarray) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    """Points data ``(M, 3)`` (frame, y, x), features and face colours of every placed body part of ``tracks``."""
    xy = tracks.poses[..., :2]
    t, i, k = np.nonzero(np.isfinite(xy).all(axis=-1))
    data = np.column_stack([tracks.frames[t], xy[t, i, k, 1], xy[t, i, k, 0]]).astype(float).reshape(-1, 3)
    features = pd.DataFrame(
        {
            "bodypart": pd.Categorical.from_codes(k, categories=list(dict.fromkeys(tracks.bodyparts))),
            "individual": pd.Categorical.from_codes(i, categories=list(tracks.individuals)),
            "likelihood": np.nan_to_num(tracks.poses[t, i, k, 2].astype(float), nan=0.0),
            "label": _name_once(t, i, tracks.individuals),
        }
    )
    return data, features, np.asarray(colors, dtype=float).reshape(-1, 4)[i]


def _name_once(t: np.ndarray, i: np.ndarray, individuals: list[str]) -> np.ndarray:
    """The individual's name on its first placed body part of each frame, "" on the others (one label per animal)."""
    first = np.ones(len(t), bool)
    first[1:] = (t[1:] != t[:-1]) | (i[1:] != i[:-1])
    names = np.asarray(list(individuals) + [""], dtype=object)
    return names[np.where(first, i, len(individuals))]


def identity_skeleton(tracks: PoseTracks, colors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectors data ``(n, 2, 3)`` of the skeleton edges of every individual, and each edge's colour."""
    data, edge_colors = [], []
    for i in range(tracks.n_individuals):
        vectors = skeleton_vectors(tracks.poses[:, i, :, :2].astype(float), tracks.bodyparts, tracks.skeleton)
        vectors[:, 0, 0] = tracks.frames[vectors[:, 0, 0].astype(int)]
        data.append(vectors)
        edge_colors.append(np.repeat(np.asarray(colors, dtype=float)[i : i + 1], len(vectors), axis=0))
    if not data:
        return np.empty((0, 2, 3)), np.empty((0, 4))
    return np.concatenate(data), np.concatenate(edge_colors)


def individual_track(tracks: PoseTracks, i: int) -> np.ndarray:
    """Tracks data ``(M, 4)`` (segment, frame, y, x) of individual ``i``'s mean body-part position.

    A new segment starts wherever the animal is missing, so no line is drawn
    across a gap. An individual never seen gets one vertex at the first frame
    (napari's Tracks layer cannot be empty), far outside the image.
    """
    xy = tracks.poses[:, i, :, :2].astype(float)
    seen = np.isfinite(xy).all(axis=-1)
    found = seen.any(axis=1)
    if not found.any():
        return np.array([[0.0, float(tracks.frames[0]), -1e6, -1e6]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        centre = np.nanmean(np.where(seen[..., None], xy, np.nan), axis=1)
    rows = np.flatnonzero(found)
    segment = np.cumsum(np.diff(rows, prepend=rows[0] - 1) > 1)
    return np.column_stack([segment, tracks.frames[rows], centre[rows, 1], centre[rows, 0]]).astype(float)


def _single_colour(color: np.ndarray, name: str) -> Colormap:
    color = np.asarray(color, dtype=float).reshape(1, 4)
    return Colormap(np.vstack([color, color]), name=name)


class IdentityLayers:
    """The layers showing one :class:`IdentitySession`'s tracks; :meth:`show` creates or updates them."""

    def __init__(self, viewer, name: str, *, size: float = 6.0, tail_length: int = 30):
        self.viewer = viewer
        self.name = name
        self.size = size
        self.tail_length = tail_length
        self.points: Points | None = None
        self.skeleton: Vectors | None = None
        self.tracks: dict[str, Tracks] = {}

    def layers(self) -> list:
        out = [self.skeleton, self.points, *self.tracks.values()]
        return [layer for layer in out if layer is not None and layer in self.viewer.layers]

    def remove(self) -> None:
        for layer in self.layers():
            self.viewer.layers.remove(layer)
        self.points, self.skeleton, self.tracks = None, None, {}

    def show(self, tracks: PoseTracks) -> None:
        """Create the layers, or put ``tracks`` into the existing ones."""
        colors = individual_colors(tracks.individuals)
        for layer in self.layers():
            layer.metadata[ROLE] = self.name
        self._show_tracks(tracks, colors)
        self._show_skeleton(tracks, colors)
        self._show_points(tracks, colors)

    def _show_points(self, tracks: PoseTracks, colors: np.ndarray) -> None:
        data, features, face = identity_points(tracks, colors)
        if self.points is None or self.points not in self.viewer.layers:
            self.points = self.viewer.add_points(
                data,
                name=f"{self.name} identities",
                features=features,
                face_color=face,
                border_width=0,
                size=self.size,
                text={"string": "label", "color": "white", "size": 9, "anchor": "upper_left"},
                ndim=3,
                metadata={ROLE: self.name, "individuals": list(tracks.individuals)},
            )
            self.points.editable = False
            return
        layer = self.points
        layer.data = data
        layer.features = features
        layer.face_color = face
        layer.metadata["individuals"] = list(tracks.individuals)

    def _show_skeleton(self, tracks: PoseTracks, colors: np.ndarray) -> None:
        if not tracks.skeleton:
            return
        data, edge_colors = identity_skeleton(tracks, colors)
        if self.skeleton is None or self.skeleton not in self.viewer.layers:
            self.skeleton = self.viewer.add_vectors(
                data,
                name=f"{self.name} skeleton",
                edge_color=edge_colors,
                edge_width=max(self.size / 4, 1.0),
                vector_style="line",
                ndim=3,
                metadata={ROLE: self.name},
            )
            return
        self.skeleton.data = data
        self.skeleton.edge_color = edge_colors

    def _show_tracks(self, tracks: PoseTracks, colors: np.ndarray) -> None:
        names = list(tracks.individuals)
        for old in [n for n in self.tracks if n not in names]:
            layer = self.tracks.pop(old)
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        for i, individual in enumerate(names):
            data = individual_track(tracks, i)
            values = {"individual": np.full(len(data), 0.5)}
            colormap = _single_colour(colors[i], f"posekit-identity-{id(self)}-{i}")
            layer = self.tracks.get(individual)
            if layer is not None and layer in self.viewer.layers and np.array_equal(layer.data, data):
                continue  # untouched by the edit
            if layer is None or layer not in self.viewer.layers:
                self.tracks[individual] = self.viewer.add_tracks(
                    data,
                    name=f"{self.name} {individual}",
                    features=values,
                    color_by="individual",
                    colormaps_dict={"individual": colormap},
                    tail_length=self.tail_length,
                    head_length=0,
                    tail_width=2,
                    opacity=0.8,
                    blending="translucent",
                    metadata={ROLE: self.name, "individual": individual},
                )
                continue
            with warnings.catch_warnings():  # new data drops the features until they are set again below
                warnings.simplefilter("ignore", UserWarning)
                layer.data = data
                layer.colormaps_dict = {"individual": colormap}
                layer.features = values
            layer.color_by = "individual"
