"""Video dock widget: what the open video is, where the viewer is in it, and a jump box."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import QFormLayout, QLabel, QLineEdit, QVBoxLayout, QWidget

from napari_posekit._napari._viewer import unwrap_viewer
from napari_posekit._napari.layers import Key, is_video_layer, video_layers
from napari_posekit.core.video import format_time, parse_position


class VideoWidget(QWidget):
    """Shows the video's metadata and current time; jumps to a frame or a time."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = unwrap_viewer(napari_viewer)
        self.title = QLabel("No video open")
        self.title.setWordWrap(True)
        self.fields = {
            key: QLabel("–") for key in ("frames", "fps", "duration", "size", "codec", "keyframes", "position")
        }
        self.goto = QLineEdit()
        self.goto.setPlaceholderText("frame number or time (1:02.5)")
        self.goto.returnPressed.connect(self._on_goto)
        self.message = QLabel("")
        self.message.setWordWrap(True)

        form = QFormLayout()
        for key, label in self.fields.items():
            form.addRow(key.capitalize() + ":", label)
        form.addRow("Go to:", self.goto)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addLayout(form)
        layout.addWidget(self.message)
        layout.addStretch(1)

        self.viewer.layers.selection.events.active.connect(self.refresh)
        self.viewer.layers.events.inserted.connect(self.refresh)
        self.viewer.layers.events.removed.connect(self.refresh)
        self.viewer.dims.events.current_step.connect(self._update_position)
        self.refresh()

    def layer(self):
        """The active video layer, else the topmost one, else None."""
        active = self.viewer.layers.selection.active
        if active is not None and is_video_layer(active):
            return active
        layers = video_layers(self.viewer)
        return layers[-1] if layers else None

    def refresh(self, event=None) -> None:
        layer = self.layer()
        self.goto.setEnabled(layer is not None)
        if layer is None:
            self.title.setText("No video open: File > Open a video, or File > Open Sample > PoseKit")
            for label in self.fields.values():
                label.setText("–")
            return
        v = layer.metadata[Key.VIDEO]
        self.title.setText(f"<b>{layer.name}</b><br><small>{Path(v['path']).name}</small>")
        self.fields["frames"].setText(f"{v['n_frames']}")
        self.fields["fps"].setText(f"{v['fps']:.3f}")
        self.fields["duration"].setText(format_time(v["duration"]))
        self.fields["size"].setText(f"{v['width']} × {v['height']}")
        self.fields["codec"].setText(f"{v['codec']} ({v['pix_fmt']})")
        self.fields["keyframes"].setText(f"{v['n_keyframes']}")
        self._update_position()

    def _update_position(self, event=None) -> None:
        layer = self.layer()
        if layer is None:
            return
        v = layer.metadata[Key.VIDEO]
        frame = int(self.viewer.dims.current_step[0])
        self.fields["position"].setText(f"frame {frame} / {v['n_frames'] - 1} · {format_time(frame / v['fps'])}")

    def _on_goto(self) -> None:
        layer = self.layer()
        if layer is None:
            return
        v = layer.metadata[Key.VIDEO]
        try:
            frame = parse_position(self.goto.text(), v["fps"], v["n_frames"])
        except ValueError as err:
            self.message.setText(f"<span style='color:#e07070'>{err}</span>")
            return
        self.message.setText("")
        step = list(self.viewer.dims.current_step)
        step[0] = frame
        self.viewer.dims.current_step = tuple(step)
