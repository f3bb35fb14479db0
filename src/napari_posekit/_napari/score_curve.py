"""The combined outlier score over a video, drawn for the Refine widget.

The curve shows the score of every frame (decimated to the plot's width so
one-frame peaks survive), the picked frames in orange, the accepted or
corrected ones in green, the score before the last retraining in grey and the
current frame as a dashed line. Clicking the plot emits the frame under the
mouse.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt, Signal
from qtpy.QtGui import QColor, QFont, QFontMetrics, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

from napari_posekit._napari.loss_curve import linear_ticks

__all__ = ["ScoreCurve"]

_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
_CENTER = Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop


class ScoreCurve(QWidget):
    """The combined outlier score over the video; picked frames marked, the current frame a line; click to jump."""

    frame_clicked = Signal(int)

    LINE = QColor(86, 160, 242)
    PREVIOUS = QColor(150, 150, 150)
    PICKED = QColor(245, 146, 52)
    ACCEPTED = QColor(90, 200, 120)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.scores = np.zeros(0)
        self.previous: np.ndarray | None = None
        self.picked: list[int] = []
        self.accepted: set[int] = set()
        self.current: int | None = None
        self.setMinimumHeight(110)
        self.setMaximumHeight(150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("Combined outlier score per frame; orange: picked, green: accepted. Click to show a frame.")

    def set_scores(
        self, scores: np.ndarray, picked: list[int], accepted: set[int], previous: np.ndarray | None = None
    ) -> None:
        self.scores = np.asarray(scores, dtype=float)
        self.picked = list(picked)
        self.accepted = set(accepted)
        self.previous = None if previous is None else np.asarray(previous, dtype=float)
        self.update()

    def set_current(self, frame: int | None) -> None:
        if frame != self.current:
            self.current = frame
            self.update()

    def _font(self) -> QFont:
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        return font

    def _plot_rect(self) -> QRectF:
        metrics = QFontMetrics(self._font())
        left = metrics.horizontalAdvance("00.0") + 10
        return QRectF(left, 6, max(self.width() - left - 8, 10), max(self.height() - metrics.height() - 12, 10))

    def _x_range(self) -> tuple[float, float]:
        return 0.0, float(max(len(self.scores) - 1, 1))

    @staticmethod
    def _peaks(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
        """At most ``2 * bins`` points keeping each bin's lowest and highest value (peaks survive)."""
        n = len(values)
        if n <= 2 * bins:
            return np.arange(n, dtype=float), values
        edges = np.linspace(0, n, bins + 1).astype(int)
        xs, ys = [], []
        for a, b in pairwise(edges):
            if b > a:
                chunk = values[a:b]
                i, j = int(np.argmin(chunk)), int(np.argmax(chunk))
                for k in sorted({i, j}):
                    xs.append(a + k)
                    ys.append(chunk[k])
        return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setFont(self._font())
        fh = painter.fontMetrics().height()
        text = self.palette().color(self.foregroundRole())
        grid = QColor(text)
        grid.setAlpha(40)
        plot = self._plot_rect()
        painter.setPen(QPen(grid, 1))
        painter.drawRect(plot)
        if not len(self.scores):
            painter.setPen(text)
            painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, "The outlier score appears here")
            painter.end()
            return
        x0, x1 = self._x_range()
        values = np.nan_to_num(self.scores, nan=0.0)
        top = float(values.max())
        if self.previous is not None and len(self.previous) == len(values):
            top = max(top, float(np.nan_to_num(self.previous).max()))
        ticks = linear_ticks(0.0, top if top > 0 else 1.0, 2)
        top = max(ticks[-1], top, 1e-9)

        def px(x):
            return plot.left() + (np.asarray(x, dtype=float) - x0) / (x1 - x0) * plot.width()

        def py(v):
            return plot.bottom() - np.asarray(v, dtype=float) / top * plot.height()

        for tick in ticks:
            y = float(py(tick))
            painter.setPen(QPen(grid, 1))
            painter.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            painter.setPen(text)
            painter.drawText(QRectF(0, y - fh / 2, plot.left() - 4, fh), _RIGHT, f"{tick:g}")
        for tick in linear_ticks(x0, x1, max(2, int(plot.width() // 80))):
            painter.drawText(QRectF(float(px(tick)) - 40, plot.bottom() + 2, 80, fh), _CENTER, f"{tick:g}")

        painter.setClipRect(plot.adjusted(-1, -3, 1, 1))
        bins = max(int(plot.width()), 2)
        curves = []
        if self.previous is not None and len(self.previous) == len(values):
            curves.append((np.nan_to_num(self.previous, nan=0.0), self.PREVIOUS, 1.0))
        curves.append((values, self.LINE, 1.5))
        for curve, colour, width in curves:
            xs, ys = self._peaks(curve, bins)
            painter.setPen(QPen(colour, width))
            painter.drawPolyline(QPolygonF([QPointF(a, b) for a, b in zip(px(xs), py(ys))]))
        painter.setPen(Qt.PenStyle.NoPen)
        for frames, colour in ((self.picked, self.PICKED), (sorted(self.accepted), self.ACCEPTED)):
            painter.setBrush(colour)
            for f in frames:
                if 0 <= f < len(values):
                    painter.drawEllipse(QPointF(float(px(f)), float(py(values[f]))), 3.5, 3.5)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        if self.current is not None and 0 <= self.current < len(values):
            x = float(px(self.current))
            painter.setPen(QPen(text, 1, Qt.PenStyle.DashLine))
            painter.drawLine(QPointF(x, plot.top()), QPointF(x, plot.bottom()))
        painter.end()

    def frame_at(self, x: float) -> int | None:
        if not len(self.scores):
            return None
        plot = self._plot_rect()
        x0, x1 = self._x_range()
        frame = round(x0 + (x - plot.left()) / plot.width() * (x1 - x0))
        return int(np.clip(frame, 0, len(self.scores) - 1))

    def mousePressEvent(self, event) -> None:
        x = event.position().x() if hasattr(event, "position") else event.x()
        frame = self.frame_at(x)
        if frame is not None:
            self.frame_clicked.emit(frame)
