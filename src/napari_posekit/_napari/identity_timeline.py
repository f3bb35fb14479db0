"""The Identities widget's timeline: identity confidence per individual, where each is tracked, and the crossings.

From top to bottom:

* the identity confidence of each individual over the video (0 to 1), a line
  in the individual's colour (decimated to the plot's width so one-frame dips
  survive); without confidence the plot says so;
* the crossings as shaded spans over the plot: orange where the animals come
  close, red where the assignment is uncertain, green once reviewed; a small
  triangle marks the frame where a swap most likely happened;
* one thin bar per individual, filled where it has a pose (fragments and
  gaps show at a glance, which is what merging needs);
* the current frame as a dashed line.

Clicking anywhere emits the frame under the mouse.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt, Signal
from qtpy.QtGui import QColor, QFont, QFontMetrics, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

from napari_posekit._napari.loss_curve import linear_ticks

__all__ = ["IdentityTimeline"]

_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
_CENTER = Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of each run of True in ``mask``."""
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _decimated(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``2 * bins`` points keeping each bin's lowest and highest value (NaN bins dropped)."""
    n = len(values)
    if n <= 2 * bins:
        return np.arange(n, dtype=float), values
    xs, ys = [], []
    for a, b in pairwise(np.linspace(0, n, bins + 1).astype(int)):
        chunk = values[a:b]
        if b > a and np.isfinite(chunk).any():
            i, j = int(np.nanargmin(chunk)), int(np.nanargmax(chunk))
            for k in sorted({i, j}):
                xs.append(a + k)
                ys.append(chunk[k])
    return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)


class IdentityTimeline(QWidget):
    """Identity confidence, presence and crossings over the video; the current frame a line; click to jump."""

    frame_clicked = Signal(int)

    CLOSE = QColor(245, 146, 52, 70)
    AMBIGUOUS = QColor(230, 60, 60, 80)
    REVIEWED = QColor(90, 200, 120, 60)
    MARK = QColor(245, 146, 52)
    BAR = 7

    def __init__(self, parent=None):
        super().__init__(parent)
        self.frames = np.zeros(0, dtype=np.int64)
        self.confidence: np.ndarray | None = None
        self.present = np.zeros((0, 0), bool)
        self.names: list[str] = []
        self.colors = np.zeros((0, 4))
        self.crossings: list = []
        self.current: int | None = None
        self._cache: tuple | None = None
        self.setMinimumHeight(150)
        self.setMaximumHeight(190)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip(
            "Identity confidence per animal (lines) and where each animal is tracked (bars). Shaded: crossings "
            "(orange: close, red: uncertain, green: reviewed); ▼ where a swap most likely happened. Click to go there."
        )

    def set_tracks(self, frames, present, confidence, names, colors, crossings) -> None:
        """Everything drawn but the current frame; ``crossings`` are the session's ``CrossingView``."""
        self.frames = np.asarray(frames, dtype=np.int64)
        self.present = np.asarray(present, dtype=bool)
        self.confidence = None if confidence is None else np.asarray(confidence, dtype=float)
        self.names = list(names)
        self.colors = np.asarray(colors, dtype=float).reshape(-1, 4)
        self.crossings = list(crossings)
        self._cache = None
        self.update()

    def set_current(self, frame: int | None) -> None:
        if frame != self.current:
            self.current = frame
            self.update()

    def _font(self) -> QFont:
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        return font

    def _rects(self) -> tuple[QRectF, QRectF]:
        """The confidence plot and the presence bars below it."""
        metrics = QFontMetrics(self._font())
        labels = [n[:10] for n in self.names] if len(self.names) <= 6 else ["tracks"]
        left = max([metrics.horizontalAdvance("0.5")] + [metrics.horizontalAdvance(n) for n in labels]) + 8
        width = max(self.width() - left - 8, 10)
        bars = len(self.names) * (self._bar() + self._gap())
        bottom = self.height() - metrics.height() - 4
        plot = QRectF(left, 6, width, max(bottom - bars - 6 - 6, 10))
        return plot, QRectF(left, plot.bottom() + 6, width, bars)

    def _bar(self) -> float:
        """Height of one individual's bar: thinner when there are many (fragments before merging)."""
        return float(self.BAR) if len(self.names) <= 6 else max(1.5, 60.0 / len(self.names) - 0.5)

    def _gap(self) -> float:
        return 2.0 if len(self.names) <= 6 else 0.5

    def _x_range(self) -> tuple[float, float]:
        if not len(self.frames):
            return 0.0, 1.0
        return float(self.frames[0]), float(max(self.frames[-1], self.frames[0] + 1))

    def _colour(self, i: int) -> QColor:
        r, g, b, a = (round(255 * float(v)) for v in self.colors[i]) if i < len(self.colors) else (200, 200, 200, 255)
        return QColor(r, g, b, a)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setFont(self._font())
        text = self.palette().color(self.foregroundRole())
        grid = QColor(text)
        grid.setAlpha(40)
        plot, bars = self._rects()
        painter.setPen(QPen(grid, 1))
        painter.drawRect(plot)
        if not len(self.frames):
            painter.setPen(text)
            painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, "Open predictions to see identities over the video")
            painter.end()
            return
        x0, x1 = self._x_range()

        def px(x):
            return plot.left() + (np.asarray(x, dtype=float) - x0) / (x1 - x0) * plot.width()

        self._draw_crossings(painter, plot, bars, px)
        self._draw_axes(painter, plot, bars, px, text, grid)
        self._draw_confidence(painter, plot, px, text)
        self._draw_presence(painter, bars, px)
        if self.current is not None and x0 <= self.current <= x1:
            x = float(px(self.current))
            painter.setPen(QPen(text, 1, Qt.PenStyle.DashLine))
            painter.drawLine(QPointF(x, plot.top()), QPointF(x, bars.bottom()))
        painter.end()

    def _draw_axes(self, painter, plot, bars, px, text, grid) -> None:
        fh = painter.fontMetrics().height()
        for tick in (0.0, 0.5, 1.0):
            y = plot.bottom() - tick * plot.height()
            painter.setPen(QPen(grid, 1))
            painter.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            painter.setPen(text)
            painter.drawText(QRectF(0, y - fh / 2, plot.left() - 4, fh), _RIGHT, f"{tick:g}")
        x0, x1 = self._x_range()
        for tick in linear_ticks(x0, x1, max(2, int(plot.width() // 80))):
            if x0 <= tick <= x1:
                painter.drawText(QRectF(float(px(tick)) - 40, bars.bottom() + 2, 80, fh), _CENTER, f"{tick:g}")

    def _draw_crossings(self, painter, plot, bars, px) -> None:
        painter.setPen(Qt.PenStyle.NoPen)
        for c in self.crossings:
            colour = self.REVIEWED if c.reviewed else self.AMBIGUOUS if c.kind == "ambiguous" else self.CLOSE
            left, right = float(px(c.start)), float(px(c.stop + 1))
            painter.setBrush(colour)
            painter.drawRect(QRectF(left, plot.top(), max(right - left, 2.0), bars.bottom() - plot.top()))
        painter.setBrush(self.MARK)
        for c in self.crossings:
            if c.gain > 0:
                x = float(px(c.focus))
                triangle = [QPointF(x - 4, plot.top()), QPointF(x + 4, plot.top()), QPointF(x, plot.top() + 6)]
                painter.drawPolygon(QPolygonF(triangle))
        painter.setBrush(Qt.BrushStyle.NoBrush)

    def _draw_confidence(self, painter, plot, px, text) -> None:
        if self.confidence is None or not self.confidence.size:
            painter.setPen(text)
            painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, "No identity confidence in this file")
            return
        painter.save()
        painter.setClipRect(plot.adjusted(-1, -2, 1, 2))
        for i, polygon in self._curves(plot, px):
            painter.setPen(QPen(self._colour(i), 1.5))
            if polygon.size() == 1:
                painter.drawPoint(polygon[0])
            else:
                painter.drawPolyline(polygon)
        painter.restore()

    def _curves(self, plot: QRectF, px) -> list[tuple[int, QPolygonF]]:
        """The confidence lines as polygons, kept until the data or the size changes (scrubbing only moves a line)."""
        key = (plot.left(), plot.top(), plot.width(), plot.height())
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        bins = max(int(plot.width()), 2)
        curves = []
        for i in range(self.confidence.shape[1]):
            values = np.where(self.present[:, i], self.confidence[:, i], np.nan)
            for a, b in _runs(np.isfinite(values)):
                xs, ys = _decimated(values[a:b], max(int(bins * (b - a) / len(values)), 1))
                x = px(self.frames[a + xs.astype(int)])
                y = plot.bottom() - ys * plot.height()
                curves.append((i, QPolygonF([QPointF(float(u), float(v)) for u, v in zip(x, y)])))
        self._cache = (key, curves)
        return curves

    def _draw_presence(self, painter, bars, px) -> None:
        painter.setPen(Qt.PenStyle.NoPen)
        fh = painter.fontMetrics().height()
        bar, step = self._bar(), self._bar() + self._gap()
        named = len(self.names) <= 6
        for i, name in enumerate(self.names):
            top = bars.top() + i * step
            colour = self._colour(i)
            painter.setBrush(colour)
            for a, b in _runs(self.present[:, i]):
                left, right = float(px(self.frames[a])), float(px(self.frames[b - 1] + 1))
                painter.drawRect(QRectF(left, top, max(right - left, 1.0), bar))
            if named:
                painter.setPen(colour)
                painter.drawText(QRectF(0, top + bar / 2 - fh / 2, bars.left() - 4, fh), _RIGHT, name[:10])
                painter.setPen(Qt.PenStyle.NoPen)
        if not named and self.names:
            painter.setPen(self.palette().color(self.foregroundRole()))
            painter.drawText(
                QRectF(0, bars.top(), bars.left() - 4, bars.height()), _RIGHT, f"{len(self.names)}\ntracks"
            )
        painter.setBrush(Qt.BrushStyle.NoBrush)

    def frame_at(self, x: float) -> int | None:
        if not len(self.frames):
            return None
        plot, _bars = self._rects()
        x0, x1 = self._x_range()
        frame = round(x0 + (x - plot.left()) / plot.width() * (x1 - x0))
        return int(np.clip(frame, self.frames[0], self.frames[-1]))

    def mousePressEvent(self, event) -> None:
        x = event.position().x() if hasattr(event, "position") else event.x()
        frame = self.frame_at(x)
        if frame is not None:
            self.frame_clicked.emit(frame)

    def mouseMoveEvent(self, event) -> None:  # dragging scrubs
        if event.buttons() & Qt.MouseButton.LeftButton:
            self.mousePressEvent(event)
