"""The layers that show the Analysis widget's predictions: points, skeleton, tracks and the filter preview.

:class:`AnalysisLayers` keeps, per video layer id, the layers it made for
that video's :class:`~napari_posekit.controllers.analysis.Analysis`, and
redraws them from the analysis' arrays with the widget's p-cutoff and tail
length.  A new analysis of the same video (another model) is drawn into the
same layers.  :class:`MultiAnimalLayers` does the same for the analyses of
several animals (:class:`~napari_posekit.controllers.analysis_multi.MultiAnalysis`):
points coloured by individual, a skeleton per animal, a Tracks layer per individual.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Image, Points, Tracks, Vectors
from napari.utils.colormaps import Colormap

from napari_posekit._napari.identity_layers import identity_points, identity_skeleton, individual_track
from napari_posekit._napari.layers import (
    BODYPART_SYMBOLS,
    Key,
    individual_colors,
    marker_size,
    points_kwargs,
    prediction_colors,
    prediction_points,
    skeleton_vectors,
    tracks_data,
)
from napari_posekit.controllers.analysis import Analysis, VideoSource
from napari_posekit.controllers.analysis_multi import MultiAnalysis

FILTERED_KEYS = ("filtered_points", "filtered_tracks")


def video_source(layer: Image) -> VideoSource:
    """What an analysis needs to know of a video layer, now."""
    video = layer.metadata.get(Key.VIDEO) or {}
    path = video.get("path")
    return VideoSource(
        name=layer.name,
        n_frames=int(layer.data.shape[0]),
        height=video.get("height") or int(layer.data.shape[1]),
        width=video.get("width") or int(layer.data.shape[2]),
        fps=video.get("fps"),
        path=Path(path) if path and Path(path).is_file() else None,
        folder=layer.metadata.get(Key.FOLDER) or layer.source.path,
    )


def _track_colormap(colors: np.ndarray, name: str) -> Colormap:
    """Body part ``k`` of ``K`` is drawn in ``colors[k]`` for the value ``(k + 0.5) / K``."""
    return Colormap(np.asarray(colors, dtype=float).reshape(-1, 4), interpolation="zero", name=name)


class _LayerRecords:
    """Layers by role for each video, keyed by the video layer's id; a layer that leaves the viewer is forgotten."""

    def __init__(self, viewer, pcutoff: Callable[[], float], tail_length: Callable[[], int]):
        self.viewer = viewer
        self.pcutoff = pcutoff
        self.tail_length = tail_length
        self._layers: dict[Any, dict[str, Any]] = {}

    def of(self, analysis) -> dict[str, Any]:
        """The layers showing ``analysis`` by role."""
        return self._layers.setdefault(analysis.layer_id, {})

    def forget(self, layer) -> None:
        """``layer`` left the viewer: a video takes its layers' records along; a predictions layer is forgotten."""
        self._layers.pop(layer.unique_id, None)
        for layers in self._layers.values():
            for key, value in list(layers.items()):
                if value is layer:
                    del layers[key]


class AnalysisLayers(_LayerRecords):
    """The layers of each analysed video, keyed by the video layer's id.

    Roles: ``points``, ``skeleton``, ``tracks`` and the filter preview's ``filtered_…``.
    """

    # -- bookkeeping -------------------------------------------------------------
    def video(self, layer_id: Any):
        """The viewer's layer with ``layer_id`` (the analysed video), or None."""
        return next((layer for layer in self.viewer.layers if layer.unique_id == layer_id), None)

    def drop_filtered(self, layer_id: Any) -> None:
        """Remove the filter preview's layers of a video (a new analysis replaced the one they showed)."""
        layers = self._layers.get(layer_id, {})
        for key in FILTERED_KEYS:
            layer = layers.pop(key, None)
            if layer is not None and layer in self.viewer.layers:
                self.viewer.layers.remove(layer)

    def set_tail_length(self, value: int) -> None:
        for layers in self._layers.values():
            for key in ("tracks", "filtered_tracks"):
                if isinstance(layers.get(key), Tracks):
                    layers[key].tail_length = int(value)

    def _layer(
        self, analysis: Analysis, key: str, make: Callable[[], Any], kind: type, create: bool
    ) -> tuple[Any, bool]:
        """The analysis' layer ``key`` if it is still in the viewer, else a new one from ``make()`` (or None)."""
        layers = self.of(analysis)
        layer = layers.get(key)
        if isinstance(layer, kind) and layer in self.viewer.layers:
            return layer, False
        if not create:
            return None, False
        layer = make()
        layers[key] = layer
        return layer, True

    @staticmethod
    def _placement(video) -> dict[str, Any]:
        return {"scale": tuple(video.scale), "translate": tuple(video.translate)}

    @staticmethod
    def _metadata(analysis: Analysis, **extra) -> dict[str, Any]:
        colors = prediction_colors(analysis.bodyparts)
        return {
            Key.BODYPARTS: list(analysis.bodyparts),
            Key.COLORS: {bp: tuple(float(c) for c in colors[k]) for k, bp in enumerate(analysis.bodyparts)},
            Key.SCORER: analysis.scorer,
            Key.SKELETON: [list(e) for e in analysis.skeleton],
            Key.VIDEO: str(analysis.video_path) if analysis.video_path else None,
            Key.CHECKPOINT: str(analysis.checkpoint) if analysis.checkpoint else None,
            Key.PREDICTIONS: True,
            Key.READONLY: True,
            **extra,
        }

    # -- drawing ---------------------------------------------------------------------
    def show(self, analysis: Analysis, create: bool = True, grow: bool = False, data_changed: bool = True) -> None:
        """Update the layers of ``analysis`` (and its filter preview) from its arrays.

        ``create`` adds the layers that are missing. ``grow`` (while an analysis
        runs) lets the Points layer grow in large steps, the rows past the
        predictions hidden: napari's Points does work on every point whenever
        points are added. Without ``data_changed`` (a new p-cutoff) only what
        is shown changes.
        """
        video = self.video(analysis.layer_id)
        if video is None:
            return
        cutoff = self.pcutoff()
        present = analysis.present()
        above = present & (analysis.likelihood >= cutoff)
        selection = list(self.viewer.layers.selection)
        active = self.viewer.layers.selection.active
        added = False
        if analysis.skeleton:
            vectors = skeleton_vectors(analysis.xy, analysis.bodyparts, analysis.skeleton, keep=above)
            added |= self._set_vectors(analysis, video, vectors, create)
        added |= self._set_tracks(analysis, video, "tracks", analysis.xy, above, create)
        added |= self._set_points(
            analysis,
            video,
            "points",
            analysis.xy,
            analysis.likelihood,
            present,
            cutoff,
            create,
            grow=grow,
            data_changed=data_changed,
        )
        if analysis.filtered is not None:
            xy_f, p_f = analysis.filtered
            keep = analysis.analysed[:, None] & np.isfinite(xy_f).all(axis=2)
            added |= self._set_tracks(analysis, video, "filtered_tracks", xy_f, keep, create)
            added |= self._set_points(analysis, video, "filtered_points", xy_f, p_f, keep, None, create)
        if added:  # a new layer takes the selection; give it back
            self.viewer.layers.selection.clear()
            self.viewer.layers.selection.update(layer for layer in selection if layer in self.viewer.layers)
            if active in self.viewer.layers:
                self.viewer.layers.selection.active = active

    def _set_points(
        self,
        analysis: Analysis,
        video,
        key: str,
        xy,
        likelihood,
        keep,
        cutoff: float | None,
        create: bool,
        *,
        grow: bool = False,
        data_changed: bool = True,
    ) -> bool:
        filtered = key == "filtered_points"
        colors = prediction_colors(analysis.bodyparts)
        data, features, face = prediction_points(xy, likelihood, keep, analysis.bodyparts, colors)
        shown = np.ones(len(data), bool) if cutoff is None else features["likelihood"].to_numpy() >= cutoff
        name = f"{video.name} predictions" + (" (filtered)" if filtered else "")

        def make():
            info = video.metadata.get(Key.VIDEO) or {}
            width = info.get("width") or video.data.shape[2]
            height = info.get("height") or video.data.shape[1]
            kwargs = points_kwargs(
                name, features, face, marker_size(width, height), self._metadata(analysis, filtered=filtered)
            )
            kwargs.update(shown=shown, **self._placement(video))
            if filtered:
                kwargs.update(symbol="diamond", opacity=0.8)
            layer = self.viewer.add_points(data, **kwargs)
            layer.editable = False
            return layer

        layer, added = self._layer(analysis, key, make, Points, create)
        if layer is None or added:
            return added
        size = len(layer.data)
        size = (max(len(data), 2 * size) if len(data) > size else size) if grow else len(data)
        if size > len(data):  # hidden rows keep the length
            pad = size - len(data)
            data = np.concatenate([data, np.zeros((pad, 3))])
            hidden = {
                "bodypart": pd.Categorical.from_codes(np.zeros(pad, int), categories=analysis.bodyparts),
                "likelihood": np.zeros(pad),
            }
            features = pd.concat([features, pd.DataFrame(hidden)], ignore_index=True)
            face = np.concatenate([face, np.zeros((pad, 4))])
            shown = np.concatenate([shown, np.zeros(pad, bool)])
        if data_changed or size != len(layer.data):
            layer.data = data
            layer.features = features
            if len(face):
                layer.face_color = face
            layer.metadata.update(self._metadata(analysis, filtered=filtered))
            layer.editable = False
        layer.shown = shown
        return added

    def _set_vectors(self, analysis: Analysis, video, data: np.ndarray, create: bool) -> bool:
        def make():
            return self.viewer.add_vectors(
                data,
                name=f"{video.name} skeleton",
                edge_width=1.5,
                edge_color="white",
                vector_style="line",
                opacity=0.7,
                metadata=self._metadata(analysis),
                **self._placement(video),
            )

        layer, added = self._layer(analysis, "skeleton", make, Vectors, create)
        if layer is not None and not added:
            layer.data = data
        return added

    def _set_tracks(self, analysis: Analysis, video, key: str, xy: np.ndarray, keep: np.ndarray, create: bool) -> bool:
        filtered = key == "filtered_tracks"
        data, parts = tracks_data(xy, keep)
        empty = not len(data)
        if empty:  # napari's Tracks cannot be empty; a lone vertex draws no line
            data, parts = np.array([[0.0, float(np.argmax(analysis.analysed)), 0.0, 0.0]]), np.zeros(1, int)
        metadata = self._metadata(analysis, filtered=filtered, empty=empty)
        k = max(len(analysis.bodyparts), 1)
        values = {"bodypart_color": (parts + 0.5) / k}
        colors = prediction_colors(analysis.bodyparts)
        if filtered:  # lighter, so the smoothed tracks stand out from the raw ones
            colors = np.column_stack([0.5 + 0.5 * colors[:, :3], np.ones(len(colors))])
        colormap = _track_colormap(colors, f"posekit-bodyparts-{id(analysis)}-{key}")
        name = f"{video.name} tracks" + (" (filtered)" if filtered else "")

        def make():
            return self.viewer.add_tracks(
                data,
                name=name,
                features=values,
                color_by="bodypart_color",
                colormaps_dict={"bodypart_color": colormap},
                tail_length=self.tail_length(),
                head_length=0,
                tail_width=3 if filtered else 2,
                opacity=1.0 if filtered else 0.6,
                blending="translucent",
                metadata=metadata,
                **self._placement(video),
            )

        layer, added = self._layer(analysis, key, make, Tracks, create)
        if layer is not None and not added:
            with warnings.catch_warnings():  # new data drops the features until they are set again below
                warnings.simplefilter("ignore", UserWarning)
                layer.data = data
                layer.colormaps_dict = {"bodypart_color": colormap}
                layer.features = values
            layer.color_by = "bodypart_color"
            layer.metadata.update(metadata)
        return added


class MultiAnimalLayers(_LayerRecords):
    """The layers of each video's multi-animal analysis, keyed by the video layer's id.

    ``"<video> animals"``: Points ``(frame, y, x)`` coloured by individual
    (:func:`~napari_posekit._napari.layers.individual_colors`), one symbol per
    body part, features ``bodypart``, ``individual``, ``likelihood``; keypoints
    below the p-cutoff are hidden.  ``"<video> animals skeleton"``: the
    skeleton in each individual's colour.  ``"<video> <individual>"``: one
    Tracks layer per individual (its body parts' mean position).  Redrawing
    replaces the data of the same layers.
    """

    def tracks_layers(self, analysis: MultiAnalysis) -> list[Tracks]:
        return [layer for key, layer in self.of(analysis).items() if key.startswith("track:")]

    def set_tail_length(self, value: int) -> None:
        for layers in self._layers.values():
            for key, layer in layers.items():
                if key.startswith("track:"):
                    layer.tail_length = int(value)

    def _live(self, analysis: MultiAnalysis, key: str, kind: type):
        layer = self.of(analysis).get(key)
        return layer if isinstance(layer, kind) and layer in self.viewer.layers else None

    def show(self, analysis: MultiAnalysis, create: bool = True) -> None:
        """Create (with ``create``) or update the layers of ``analysis`` from its arrays."""
        video = next((layer for layer in self.viewer.layers if layer.unique_id == analysis.layer_id), None)
        if video is None or not analysis.analysed.any():
            return
        selection, active = list(self.viewer.layers.selection), self.viewer.layers.selection.active
        colors = individual_colors(analysis.individuals)
        above = analysis.tracks(self.pcutoff())
        metadata = {
            Key.BODYPARTS: list(analysis.bodyparts),
            Key.INDIVIDUALS: list(analysis.individuals),
            Key.SCORER: analysis.scorer,
            Key.SKELETON: [list(e) for e in analysis.skeleton],
            Key.VIDEO: str(analysis.video_path) if analysis.video_path else None,
            Key.PATH: str(analysis.saved) if analysis.saved else None,
            Key.PREDICTIONS: True,
            Key.READONLY: True,
        }
        placement = AnalysisLayers._placement(video)
        added = False
        for i, individual in enumerate(analysis.individuals):
            data = individual_track(above, i)
            added |= self._track(analysis, video, i, individual, data, colors, create, placement, metadata)
        if analysis.skeleton:
            data, edge_colors = identity_skeleton(above, colors)
            added |= self._skeleton(analysis, video, data, edge_colors, metadata, create, placement)
        added |= self._points(analysis, video, colors, metadata, create, placement)
        if added:  # a new layer takes the selection; give it back
            self.viewer.layers.selection.clear()
            self.viewer.layers.selection.update(layer for layer in selection if layer in self.viewer.layers)
            if active in self.viewer.layers:
                self.viewer.layers.selection.active = active

    def _points(self, analysis, video, colors, metadata, create, placement) -> bool:
        data, features, face = identity_points(analysis.tracks(), colors)
        codes = features["bodypart"].cat.codes.to_numpy()
        symbols = np.array([BODYPART_SYMBOLS[c % len(BODYPART_SYMBOLS)] for c in codes], dtype=object)
        shown = features["likelihood"].to_numpy() >= self.pcutoff()
        layer = self._live(analysis, "points", Points)
        if layer is None:
            if not create:
                return False
            info = video.metadata.get(Key.VIDEO) or {}
            size = marker_size(info.get("width") or video.data.shape[2], info.get("height") or video.data.shape[1])
            kwargs = points_kwargs(f"{video.name} animals", features, face, size, dict(metadata))
            kwargs.update(shown=shown, **placement)
            if len(symbols):
                kwargs["symbol"] = symbols
            layer = self.viewer.add_points(data, **kwargs)
            layer.editable = False
            self.of(analysis)["points"] = layer
            return True
        layer.data = data
        layer.features = features
        if len(data):
            layer.face_color = face
            layer.symbol = symbols
        layer.shown = shown
        layer.metadata.update(metadata)
        layer.editable = False
        return False

    def _skeleton(self, analysis, video, data, edge_colors, metadata, create, placement) -> bool:
        layer = self._live(analysis, "skeleton", Vectors)
        if layer is None:
            if not create:
                return False
            self.of(analysis)["skeleton"] = self.viewer.add_vectors(
                data,
                name=f"{video.name} animals skeleton",
                edge_color=edge_colors if len(data) else "white",
                edge_width=1.5,
                vector_style="line",
                opacity=0.8,
                ndim=3,
                metadata=dict(metadata),
                **placement,
            )
            return True
        layer.data = data
        if len(data):
            layer.edge_color = edge_colors
        layer.metadata.update(metadata)
        return False

    def _track(self, analysis, video, i, individual, data, colors, create, placement, metadata) -> bool:
        key = f"track:{individual}"
        values = {"individual": np.full(len(data), 0.5)}
        color = np.asarray(colors[i], dtype=float).reshape(1, 4)
        colormap = Colormap(np.vstack([color, color]), name=f"posekit-animal-{id(self)}-{analysis.layer_id}-{i}")
        layer = self._live(analysis, key, Tracks)
        if layer is None:
            if not create:
                return False
            self.of(analysis)[key] = self.viewer.add_tracks(
                data,
                name=f"{video.name} {individual}",
                features=values,
                color_by="individual",
                colormaps_dict={"individual": colormap},
                tail_length=self.tail_length(),
                head_length=0,
                tail_width=2,
                opacity=0.8,
                blending="translucent",
                metadata={**metadata, "individual": individual},
                **placement,
            )
            return True
        with warnings.catch_warnings():  # new data drops the features until they are set again below
            warnings.simplefilter("ignore", UserWarning)
            layer.data = data
            layer.colormaps_dict = {"individual": colormap}
            layer.features = values
        layer.color_by = "individual"
        layer.metadata.update(
            metadata
        )  # the file they were saved to (the Identities widget hides them when it opens it)
        return False
