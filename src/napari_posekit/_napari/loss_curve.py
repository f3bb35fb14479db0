"""The Training widget's loss curve: training loss per step (log scale) and test error in pixels."""

from __future__ import annotations

import math

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QFont, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

from napari_posekit.controllers.training import LossHistory

_LEFT = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
_CENTER = Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop


def _nice_step(span: float, n: int) -> float:
    raw = span / max(n, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10 * magnitude


def linear_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    """Round tick values covering ``[lo, hi]``."""
    if not hi > lo:
        return [lo]
    step = _nice_step(hi - lo, n)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks at 1, 2, 5 times powers of ten inside ``[lo, hi]`` (powers of ten only when there are many)."""
    out: list[float] = []
    for mantissas in ((1.0,), (1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)):
        out = [
            m * 10.0**e
            for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
            for m in mantissas
            if lo * (1 - 1e-9) <= m * 10.0**e <= hi * (1 + 1e-9)
        ]
        if len(out) >= 2:
            return out[:: max(1, len(out) // 6)]
    return out or [lo]


def smooth(values: np.ndarray) -> np.ndarray:
    """Centred moving average over about a twentieth of the points (shorter at the ends)."""
    n, half = len(values), len(values) // 40
    if half < 1:
        return values
    total = np.concatenate([[0.0], np.cumsum(values)])
    lo = np.clip(np.arange(n) - half, 0, n)
    hi = np.clip(np.arange(n) + half + 1, 0, n)
    return (total[hi] - total[lo]) / (hi - lo)


def decimate(x: np.ndarray, y: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``bins`` points: means over equal runs of steps."""
    if len(x) <= bins:
        return x, y
    edges = np.linspace(0, len(x), bins + 1).astype(int)
    counts = np.diff(edges)
    keep = counts > 0
    return tuple(np.add.reduceat(v, edges[:-1])[keep] / counts[keep] for v in (x, y))


class _Frame:
    """Where a paint draws: the plot rectangle, its data ranges and the painter's colours and font height."""

    def __init__(
        self,
        plot: QRectF,
        x0: float,
        x1: float,
        lo: float,
        hi: float,
        text: QColor,
        grid: QColor,
        fh: float,
        right: float,
    ):
        self.plot, self.x0, self.x1, self.lo, self.hi = plot, x0, x1, lo, hi
        self.text, self.grid, self.fh, self.right = text, grid, fh, right

    def px(self, x):
        return self.plot.left() + (np.asarray(x, dtype=float) - self.x0) / (self.x1 - self.x0) * self.plot.width()

    def py_loss(self, v):
        return self.plot.bottom() - (np.asarray(v, dtype=float) - self.lo) / (self.hi - self.lo) * self.plot.height()


class LossCurve(QWidget):
    """Training loss per step (log scale, left axis) and test error in pixels (right axis), from a :class:`LossHistory`."""

    LOSS_COLOR = QColor(86, 160, 242)
    TEST_COLOR = QColor(245, 146, 52)

    def __init__(self, parent=None, history: LossHistory | None = None):
        super().__init__(parent)
        self.history = history if history is not None else LossHistory()
        self.setMinimumHeight(190)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.MinimumExpanding)

    @property
    def steps(self) -> list[int]:
        return self.history.steps

    @property
    def losses(self) -> list[float]:
        return self.history.losses

    @property
    def test_steps(self) -> list[int]:
        return self.history.test_steps

    @property
    def test_errors(self) -> list[float]:
        return self.history.test_errors

    def clear(self) -> None:
        self.history.clear()
        self.update()

    # -- painting --------------------------------------------------------------
    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        painter.setFont(font)
        metrics = painter.fontMetrics()
        text = self.palette().color(self.foregroundRole())
        grid = QColor(text)
        grid.setAlpha(40)
        fh = metrics.height()
        left, right = metrics.horizontalAdvance("0.0001") + 12, metrics.horizontalAdvance("000") + 16
        top, bottom = fh + 8, 2 * fh + 6
        plot = QRectF(left, top, max(self.width() - left - right, 10), max(self.height() - top - bottom, 10))
        painter.setPen(QPen(grid, 1))
        painter.drawRect(plot)
        if not self.steps:
            painter.setPen(text)
            painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, "The loss appears here during training")
            painter.end()
            return
        steps = np.asarray(self.steps, dtype=float)
        x0, x1 = float(steps[0]), float(max(steps[-1], self.test_steps[-1] if self.test_steps else 0))
        if x1 <= x0:
            x0, x1 = x0 - 1, x0 + 1
        logs = np.log10(np.asarray(self.losses))
        lo, hi = float(logs.min()), float(logs.max())
        if hi - lo < 0.1:
            lo, hi = lo - 0.05, hi + 0.05
        pad = 0.05 * (hi - lo)
        frame = _Frame(plot, x0, x1, lo - pad, hi + pad, text, grid, fh, right)
        self._draw_axes(painter, frame, left)
        self._draw_loss(painter, frame, steps, logs)
        if self.test_errors:
            self._draw_test(painter, frame)
        self._draw_legend(painter, frame, metrics)
        painter.end()

    def _draw_axes(self, painter: QPainter, f: _Frame, left: float) -> None:
        """x (steps) and the left axis (loss, log scale) with their grid lines."""
        plot, fh = f.plot, f.fh
        for tick in linear_ticks(f.x0, f.x1, max(2, int(plot.width() // 70))):
            x = float(f.px(tick))
            painter.setPen(QPen(f.grid, 1))
            painter.drawLine(QPointF(x, plot.top()), QPointF(x, plot.bottom()))
            painter.setPen(f.text)
            painter.drawText(QRectF(x - 40, plot.bottom() + 2, 80, fh), _CENTER, f"{tick:g}")
        painter.drawText(QRectF(plot.left(), plot.bottom() + fh + 2, plot.width(), fh), _CENTER, "step")
        for tick in log_ticks(10**f.lo, 10**f.hi):
            y = float(f.py_loss(math.log10(tick)))
            painter.setPen(QPen(f.grid, 1))
            painter.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            painter.setPen(self.LOSS_COLOR)
            painter.drawText(QRectF(0, y - fh / 2, left - 4, fh), _RIGHT, f"{tick:.3g}")
        painter.setPen(self.LOSS_COLOR)
        painter.drawText(QRectF(0, 2, left + 40, fh), Qt.AlignmentFlag.AlignLeft, "loss (log)")

    def _draw_loss(self, painter: QPainter, f: _Frame, steps: np.ndarray, logs: np.ndarray) -> None:
        """The raw loss, faint, and its moving average."""
        bins = max(int(f.plot.width()), 2)
        painter.setClipRect(f.plot.adjusted(-1, -1, 1, 1))
        raw = QColor(self.LOSS_COLOR)
        raw.setAlpha(70)
        for values, colour, width in ((logs, raw, 1.0), (smooth(logs), self.LOSS_COLOR, 2.0)):
            xs, ys = decimate(steps, values, bins)
            painter.setPen(QPen(colour, width))
            painter.drawPolyline(QPolygonF([QPointF(a, b) for a, b in zip(f.px(xs), f.py_loss(ys))]))
        painter.setClipping(False)

    def _draw_test(self, painter: QPainter, f: _Frame) -> None:
        """The test error per evaluation, on its own axis on the right."""
        plot, fh, right = f.plot, f.fh, f.right
        errors = np.asarray(self.test_errors)
        ticks = linear_ticks(0.0, float(errors.max()) * 1.1 or 1.0, 3)
        top_px = max(ticks[-1], float(errors.max()) * 1.05)

        def py_test(v):
            return plot.bottom() - np.asarray(v, dtype=float) / top_px * plot.height()

        painter.setPen(self.TEST_COLOR)
        for tick in ticks:
            y = float(py_test(tick))
            painter.drawText(QRectF(plot.right() + 4, y - fh / 2, right - 4, fh), _LEFT, f"{tick:g}")
        painter.drawText(QRectF(plot.right() - 40, 2, right + 40, fh), Qt.AlignmentFlag.AlignRight, "test px")
        xs, ys = f.px(np.asarray(self.test_steps)), py_test(errors)
        painter.setPen(QPen(self.TEST_COLOR, 1.5))
        if len(xs) > 1:
            painter.drawPolyline(QPolygonF([QPointF(a, b) for a, b in zip(xs, ys)]))
        painter.setBrush(self.TEST_COLOR)
        for a, b in zip(xs, ys):
            painter.drawEllipse(QPointF(a, b), 2.5, 2.5)
        painter.setBrush(Qt.BrushStyle.NoBrush)

    def _draw_legend(self, painter: QPainter, f: _Frame, metrics) -> None:
        """Top right inside the plot."""
        fh = f.fh
        entries = [("train loss", self.LOSS_COLOR)]
        if self.test_errors:
            entries.append(("test error (px)", self.TEST_COLOR))
        width = max(metrics.horizontalAdvance(label) for label, _ in entries) + 26
        box = QRectF(f.plot.right() - width - 4, f.plot.top() + 4, width, len(entries) * fh + 4)
        back = self.palette().color(self.backgroundRole())
        back.setAlpha(200)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(back)
        painter.drawRect(box)
        for i, (label, colour) in enumerate(entries):
            y = box.top() + 2 + i * fh + fh / 2
            painter.setPen(QPen(colour, 2))
            painter.drawLine(QPointF(box.left() + 4, y), QPointF(box.left() + 18, y))
            painter.setPen(f.text)
            painter.drawText(QRectF(box.left() + 22, y - fh / 2, width, fh), _LEFT, label)
