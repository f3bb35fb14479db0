"""3D dock widget: several calibrated cameras side by side, their 3D points in a canvas of their own.

*Session*: a ``calibration.toml`` (anipose), then per camera a video and a 2D
prediction file (found beside the calibration by the camera naming rule of
:mod:`~napari_posekit.controllers.multiview`; every cell of the table can be
edited, and a camera unticked), and a 3D file (``read_points3d``: posekit's or
DeepLabCut's ``_3D.h5``).  Open reads it all in a job and tiles the views in the
main viewer (:class:`~napari_posekit._napari.threed_layers.SceneLayers`): video,
predictions, reprojections of the 3D points, optional residual lines.
Triangulate runs the core's triangulation over the 2D predictions in a job; Save
3D writes the result.  Points whose reprojection error is above the threshold are
red and larger, in the views and in the 3D canvas, and counted.

The 3D canvas is a second napari canvas (a ``QtViewer`` over a ``ViewerModel``
shown in 3D) embedded in the widget, because one napari canvas has one number of
displayed dimensions: it holds the 3D points ``(frame, z, y, x)``, the skeleton and
the cameras, and its frame follows the main viewer's time slider.

*Labeling aid*: when keypoints layers of two or more views of a project with a
``calibration.toml`` are open, the widget draws on each view the projections of
the body parts labeled in two or more other views and the epipolar curves of the
ones labeled elsewhere, for the current frame; "Propose labels in other views"
places the missing labels at the projections, through each layer's label session.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_posekit._napari._viewer import unwrap_viewer
from napari_posekit._napari.controls import double_spin_box, row
from napari_posekit._napari.jobs import JobRunner
from napari_posekit._napari.label_session import session_for
from napari_posekit._napari.layers import is_keypoints_layer, project_config
from napari_posekit._napari.threed_layers import (
    AidLayers,
    SceneLayers,
    apply_proposals,
    fill_scene3d,
    follow_frame,
    keypoints_views,
    restyle3d,
    tile_views,
    update_scene3d,
)
from napari_posekit.controllers.multiview import camera_of, find_calibration, frame_geometry, proposals
from napari_posekit.controllers.threed import (
    ERROR_THRESHOLD,
    Scene,
    SessionFiles,
    find_session_files,
    iter_load_scene,
    iter_triangulate_scene,
    points3d_from_triangulation,
)
from napari_posekit.core.cameras import read_calibration

COLUMNS = ("Camera", "Video", "2D predictions")
CANVAS_HEIGHT = 360
CANVAS_WIDTH = 360


class ThreeDWidget(QWidget):
    """Calibration, views and 3D file; Open, Triangulate, Save 3D; error threshold; the 3D canvas; the labeling aid."""

    _window = None  # the window the widget is docked in, watched for its closing

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = unwrap_viewer(napari_viewer)
        self.scene: Scene | None = None
        self.scene_layers: SceneLayers | None = None
        self.layers3d: dict = {}
        self.model3d = None
        self.canvas3d = None
        self._unfollow = None
        self.triangulation = None
        self.aid = AidLayers(self.viewer)
        self._aid_rigs: dict[Path, object] = {}
        self._aid_targets: dict[str, object] = {}
        self._drawing = False
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.aid_status = QLabel("")
        self.aid_status.setWordWrap(True)
        self.jobs = JobRunner(self.status.setText, self._update_controls)
        self.calibration = QLineEdit()
        self.calibration.setPlaceholderText("calibration.toml (anipose)")
        self.calibration.editingFinished.connect(lambda: self.set_calibration(self.calibration.text()))
        self.browse_button = QPushButton("…")
        self.browse_button.setMaximumWidth(30)
        self.browse_button.clicked.connect(self._browse)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setTextElideMode(Qt.TextElideMode.ElideLeft)  # the end of a path names the camera's file
        self.points3d_path = QLineEdit()
        self.points3d_path.setPlaceholderText("3D points (.h5/.csv), optional")
        self.open_button = QPushButton("Open")
        self.open_button.clicked.connect(lambda: self.open_scene())
        self.triangulate_button = QPushButton("Triangulate")
        self.triangulate_button.clicked.connect(lambda: self.triangulate())
        self.save_button = QPushButton("Save 3D…")
        self.save_button.clicked.connect(lambda: self.save_points3d())
        self.threshold = double_spin_box(0.0, 10_000.0, ERROR_THRESHOLD, decimals=1, suffix=" px")
        self.threshold.setToolTip("Reprojection error above which a point is drawn red and larger")
        self.threshold.valueChanged.connect(lambda _v: self.restyle())
        self.residuals = QCheckBox("lines from predictions to reprojections")
        self.residuals.toggled.connect(lambda on: self.scene_layers and self.scene_layers.show_residuals(on))
        self.aid_shown = QCheckBox("epipolar curves and projections")
        self.aid_shown.setChecked(True)
        self.aid_shown.toggled.connect(lambda _on: self.refresh_aid())
        self.propose_button = QPushButton("Propose labels in other views")
        self.propose_button.clicked.connect(lambda: self.propose_labels())
        self.tile_button = QPushButton("Tile the views")
        self.tile_button.setToolTip("Place the views' labels and images side by side")
        self.tile_button.clicked.connect(lambda: self.tile_aid_views())
        self._lay_out()
        self.viewer.dims.events.current_step.connect(self._on_frame)
        self.viewer.layers.events.inserted.connect(self._on_layers_changed)
        self.viewer.layers.events.removed.connect(self._on_layers_changed)
        self.refresh_aid()
        self._update_controls()

    def _lay_out(self) -> None:
        form = QFormLayout()
        form.addRow("Calibration:", row(self.calibration, self.browse_button))
        form.addRow("3D file:", self.points3d_path)
        form.addRow("Threshold:", self.threshold)
        self.canvas_box = QVBoxLayout()
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.table)
        layout.addLayout(row(self.open_button, self.triangulate_button, self.save_button))
        layout.addWidget(self.residuals)
        layout.addWidget(self.summary)
        layout.addWidget(self.status)
        layout.addLayout(self.canvas_box)
        layout.addWidget(QLabel("<b>Labeling aid</b>"))
        layout.addWidget(self.aid_shown)
        layout.addLayout(row(self.propose_button, self.tile_button))
        layout.addWidget(self.aid_status)
        layout.addStretch(1)

    # -- inputs -----------------------------------------------------------------------
    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Calibration", "", "Calibration (*.toml);;All files (*)")
        if path:
            self.set_calibration(path)

    def set_calibration(self, path) -> None:
        """Read the cameras of ``path`` and fill the table with the files found beside it."""
        self.calibration.setText(str(path))
        if not str(path).strip():
            return
        try:
            files = find_session_files(path)
        except ValueError as err:
            self.status.setText(str(err))
            return
        self.table.setRowCount(len(files.cameras))
        for r, cam in enumerate(files.cameras):
            item = QTableWidgetItem(cam)
            item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            self.table.setItem(r, 0, item)
            for col, path_ in ((1, files.videos.get(cam)), (2, files.predictions.get(cam))):
                cell = QTableWidgetItem(str(path_) if path_ else "")
                cell.setToolTip(cell.text())
                self.table.setItem(r, col, cell)
        if files.points3d is not None and not self.points3d_path.text().strip():
            self.points3d_path.setText(str(files.points3d))
        self.status.setText(f"{len(files.cameras)} cameras: {', '.join(files.cameras)}")

    def use_cameras(self, cameras) -> None:
        """Tick exactly ``cameras`` in the table (the others are left out: a broken camera, say)."""
        for r in range(self.table.rowCount()):
            item = self.table.item(r, 0)
            item.setCheckState(Qt.CheckState.Checked if item.text() in cameras else Qt.CheckState.Unchecked)

    def session_files(self) -> SessionFiles:
        """What the controls say: the ticked cameras with their files, and the 3D file."""
        cameras, videos, predictions = [], {}, {}
        for r in range(self.table.rowCount()):
            cam_item = self.table.item(r, 0)
            if cam_item.checkState() != Qt.CheckState.Checked:
                continue
            cam = cam_item.text()
            cameras.append(cam)
            for col, into in ((1, videos), (2, predictions)):
                text = self.table.item(r, col).text().strip() if self.table.item(r, col) else ""
                into[cam] = Path(text) if text else None
        points = self.points3d_path.text().strip()
        return SessionFiles(
            Path(self.calibration.text().strip()), cameras, videos, predictions, Path(points) if points else None
        )

    # -- jobs -------------------------------------------------------------------------
    def open_scene(self):
        """Read the session in a job, then show it."""
        files = self.session_files()
        return self.jobs.start(
            "open",
            lambda job: iter_load_scene(files, job.stopping),
            description="Opening the views",
            on_event=lambda job, fraction: job.report(fraction),
            on_done=lambda _job, scene: scene is not None and self.show_scene(scene),
            failure="Cannot open the views",
        )

    def triangulate(self):
        """Triangulate the open views' 2D predictions in a job; the 3D points replace the shown ones."""
        scene = self.scene
        if scene is None or scene.points2d is None:
            self.status.setText("Open the cameras' 2D predictions first.")
            return None
        return self.jobs.start(
            "triangulate",
            lambda job: iter_triangulate_scene(scene, job.stopping),
            description="Triangulating",
            on_event=lambda job, fraction: job.report(fraction),
            on_done=lambda _job, result: result is not None and self._triangulated(scene, result),
        )

    def _triangulated(self, scene: Scene, result) -> None:
        self.triangulation = points3d_from_triangulation(scene, result)
        scene.set_points3d(result.points3d, result.error)
        if scene is self.scene and self.scene_layers is not None and self.model3d is not None:
            self.scene_layers.update_points3d(self.threshold.value(), self.residuals.isChecked())
            self.layers3d = update_scene3d(self.model3d, self.layers3d, scene, self.threshold.value())
            self.summary.setText(scene.summary(self.threshold.value()))
            self._update_controls()
        else:
            self.show_scene(scene)
        self.status.setText(f"Triangulated {int(np.isfinite(result.points3d).all(-1).sum())} points.")

    def save_points3d(self, path=None):
        """Write the triangulated points (``write_points3d``: ``.h5`` and ``.csv``) in a job."""
        if self.triangulation is None:
            self.status.setText("Nothing to save: triangulate first.")
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save 3D points", "points3d.h5", "HDF5 (*.h5)")
            if not path:
                return None
        points = self.triangulation

        def work(_job):
            from napari_posekit.core.views import write_points3d

            return write_points3d(path, points)

        return self.jobs.start(
            "save",
            work,
            description="Saving 3D points",
            total=None,
            on_done=lambda _job, written: self.status.setText(f"Saved {written}"),
        )

    # -- showing ----------------------------------------------------------------------
    def show_scene(self, scene: Scene) -> None:
        """Tile the views in the main viewer and fill the 3D canvas."""
        self._drawing = True  # the aid need not look at each of these layers
        try:
            if self.scene_layers is not None:
                self.scene_layers.remove()
            self.scene = scene
            self.scene_layers = SceneLayers(self.viewer, scene, self.threshold.value(), self.residuals.isChecked())
        finally:
            self._drawing = False
        self._show_scene3d(scene)

    def _show_scene3d(self, scene: Scene) -> None:
        self._ensure_canvas()
        self.layers3d = fill_scene3d(self.model3d, scene, self.threshold.value())
        if self._unfollow is not None:
            self._unfollow()
        self._unfollow = follow_frame(self.viewer, self.model3d)
        self.summary.setText(scene.summary(self.threshold.value()))
        self._update_controls()

    def _ensure_canvas(self) -> None:
        if self.canvas3d is not None:
            return
        from napari.components import ViewerModel
        from napari.qt import QtViewer

        self.model3d = ViewerModel(title="3D", ndisplay=3)
        self.canvas3d = QtViewer(self.model3d)
        self.canvas3d.setMinimumHeight(CANVAS_HEIGHT)
        self.canvas3d.setMinimumWidth(CANVAS_WIDTH)
        self.canvas_box.addWidget(self.canvas3d)

    def restyle(self) -> None:
        """Apply the threshold: flagged points in the views and the 3D canvas, and the counts."""
        if self.scene is None:
            return
        threshold = self.threshold.value()
        self.scene_layers.restyle(threshold)
        restyle3d(self.layers3d, self.scene, threshold)
        self.summary.setText(self.scene.summary(threshold))

    def _update_controls(self, *_args) -> None:
        busy = self.jobs.busy
        self.open_button.setEnabled(not busy)
        self.triangulate_button.setEnabled(not busy and self.scene is not None and self.scene.points2d is not None)
        self.save_button.setEnabled(not busy and self.triangulation is not None)

    # -- labeling aid -------------------------------------------------------------------
    def _on_frame(self, _event=None) -> None:
        if self._aid_targets:
            self.refresh_aid()

    def _on_layers_changed(self, event) -> None:
        if self._drawing:
            return
        if event.value in [layer for pair in self.aid.layers.values() for layer in pair]:
            if event.type == "removed":  # someone removed the aid's drawings: the aid is off until ticked again
                self.aid_shown.setChecked(False)
            return
        self.refresh_aid()

    def _on_labels(self, change) -> None:
        if change.kind != "closed":
            self.refresh_aid()

    def _aid_views(self) -> tuple[object, dict[str, object], str]:
        """The rig and ``{camera: keypoints layer}`` of the open views of a calibrated project, or a message."""
        keypoints = [layer for layer in self.viewer.layers if is_keypoints_layer(layer)]
        calibrations = {find_calibration(Path(c).parent) for c in map(project_config, keypoints) if c}
        calibrations.discard(None)
        if not calibrations:
            return None, {}, "Labeling aid: open the labels of two or more views of a project with a calibration.toml."
        path = min(calibrations)
        try:
            rig = self._aid_rigs.get(path) or self._aid_rigs.setdefault(path, read_calibration(path))
            targets = keypoints_views(keypoints, rig.names, camera_of)
        except ValueError as err:
            return None, {}, f"Labeling aid: {err}"
        if len(targets) < 2:
            return None, {}, f"Labeling aid: {len(targets)} view of {', '.join(rig.names)} open; it needs two or more."
        return rig, targets, f"Labeling aid: views {', '.join(targets)}"

    def _aid_frame(self):
        rig, targets, message = self._aid_views()
        if rig is None:
            return None, None, {}, 0, message
        frame = int(self.viewer.dims.current_step[0]) if self.viewer.dims.ndim >= 3 else 0
        labels, bodyparts = {}, None
        for cam, layer in targets.items():
            session = session_for(layer, self.viewer)
            session.subscribe(self._on_labels)
            bodyparts = bodyparts or session.bodyparts
            xy = np.full((len(bodyparts), 2), np.nan)
            if 0 <= frame < len(session.store.xy):
                for k, bp in enumerate(session.bodyparts):
                    if bp in bodyparts:
                        xy[bodyparts.index(bp)] = session.store.xy[frame, k]
            labels[cam] = xy
        geometry = frame_geometry(rig, labels, bodyparts, curves=self.aid_shown.isChecked())
        return rig, geometry, targets, frame, message

    def refresh_aid(self) -> None:
        """Redraw the projections and epipolar curves of the current frame (or say why there are none)."""
        if self._drawing:
            return
        self._drawing = True
        try:
            rig, geometry, targets, frame, message = self._aid_frame()
            self._aid_targets = targets
            if geometry is None or not self.aid_shown.isChecked():
                self.aid.remove()
            else:
                self.aid.draw(geometry, targets, frame)
                message += f"; frame {frame}: {len(proposals(geometry, rig))} to propose"
            self.aid_status.setText(message)
            self.propose_button.setEnabled(geometry is not None)
            self.tile_button.setEnabled(geometry is not None)
        except ValueError as err:
            self.aid_status.setText(f"Labeling aid: {err}")
        finally:
            self._drawing = False

    def propose_labels(self) -> int:
        """Place the current frame's missing labels at the projections (one undoable edit per view)."""
        rig, geometry, targets, frame, _message = self._aid_frame()
        if geometry is None:
            return 0
        proposed = proposals(geometry, rig)
        placed = apply_proposals(self.viewer, targets, frame, proposed, label="proposed from other views")
        self.refresh_aid()
        self.aid_status.setText(
            f"Proposed {placed} labels on frame {frame}: drag them where they belong, or undo.\n{self.aid_status.text()}"
        )
        return placed

    def tile_aid_views(self) -> None:
        """Place the open views (labels and their images) side by side, then redraw the aid over them."""
        rig, targets, _message = self._aid_views()
        if rig is None:
            return
        self._drawing = True
        try:
            tile_views(self.viewer, targets, {cam: rig.camera(cam).size for cam in targets})
        finally:
            self._drawing = False
        self.refresh_aid()
        self.viewer.reset_view()

    # -- closing ----------------------------------------------------------------------
    def closeEvent(self, event) -> None:
        self.close_canvas()
        super().closeEvent(event)

    def event(self, event) -> bool:
        if event.type() == QEvent.Type.ParentChange:  # docked: watch the window once the dock is in it
            QTimer.singleShot(0, self._watch_window)
        return super().event(event)

    def _watch_window(self) -> None:
        window = self.window()
        if window is not self and window is not self._window:
            if self._window is not None:
                self._window.removeEventFilter(self)
            window.installEventFilter(self)
            self._window = window

    def eventFilter(self, watched, event) -> bool:
        if watched is getattr(self, "_window", None) and event.type() == QEvent.Type.Close:
            self.close_canvas()  # the window closes: the embedded canvas goes with it, not later
        return False

    def close_canvas(self) -> None:
        """Close the embedded 3D canvas (the widget keeps working without it)."""
        if self._unfollow is not None:
            self._unfollow()
            self._unfollow = None
        if self.canvas3d is not None:
            self.canvas3d.close()
            self.canvas3d.setParent(None)  # Python owns it now: it goes when the last reference does
            self.canvas3d = None
            self.model3d = None
            self.layers3d = {}
