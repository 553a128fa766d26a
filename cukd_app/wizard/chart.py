"""A small line chart drawn with QPainter (QtCharts is not part of PySide6-Essentials).

Series are plotted against a left or a right y axis (each scaled to its own range), so the
training page can show the loss and the validation mAP together; the result page uses the
same widget for precision–recall curves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

__all__ = ["LineChart", "Series"]


@dataclass
class Series:
    """One line: ``points`` as ``(x, y)``; ``axis`` ``"left"`` or ``"right"``."""

    name: str
    color: str
    axis: str = "left"
    points: list[tuple[float, float]] = field(default_factory=list)
    markers: bool = False
    dashed: bool = False


class LineChart(QWidget):
    """Lines over a shared x axis with one or two y axes.

    Args:
        x_label: x axis title. ``left_range`` / ``right_range``: fixed y ranges (``None``:
            from the data). ``x_range``: fixed x range (``None``: from the data).
        integer_x: the x axis counts something (epochs): it spans whole numbers and its
            ticks are whole numbers only.
    """

    def __init__(self, x_label: str = "", *, left_label: str = "", right_label: str = "",
                 left_range: tuple[float, float] | None = None,
                 right_range: tuple[float, float] | None = None,
                 x_range: tuple[float, float] | None = None, integer_x: bool = False,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.x_label, self.left_label, self.right_label = x_label, left_label, right_label
        self.left_range, self.right_range, self.x_range = left_range, right_range, x_range
        self.integer_x = integer_x
        self.series: list[Series] = []
        self.empty_text = "No data yet"
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(240, 150)

    def sizeHint(self) -> QSize:
        """Preferred size."""
        return QSize(420, 220)

    def add_series(self, series: Series) -> Series:
        """Add a line (returned for appending points)."""
        self.series.append(series)
        self.update()
        return series

    def set_points(self, name: str, points: list[tuple[float, float]]) -> None:
        """Replace a series' points."""
        for s in self.series:
            if s.name == name:
                s.points = [(float(x), float(y)) for x, y in points
                            if math.isfinite(x) and math.isfinite(y)]
        self.update()

    def append(self, name: str, x: float, y: float) -> None:
        """Add one point to a series (non-finite values are skipped)."""
        if math.isfinite(x) and math.isfinite(y):
            for s in self.series:
                if s.name == name:
                    s.points.append((float(x), float(y)))
            self.update()

    def clear(self) -> None:
        """Remove every point (the series stay)."""
        for s in self.series:
            s.points.clear()
        self.update()

    # ------------------------------------------------------------------ painting
    def _range(self, axis: str) -> tuple[float, float]:
        fixed = self.left_range if axis == "left" else self.right_range
        if fixed is not None:
            return fixed
        ys = [y for s in self.series if s.axis == axis for _, y in s.points]
        if not ys:
            return 0.0, 1.0
        lo, hi = min(ys), max(ys)
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        pad = 0.05 * (hi - lo)
        return lo - pad, hi + pad

    def _xrange(self) -> tuple[float, float]:
        if self.x_range is not None:
            return self.x_range
        xs = [x for s in self.series for x, _ in s.points]
        if not xs:
            return 0.0, 1.0
        lo, hi = min(xs), max(xs)
        if self.integer_x:
            lo = float(math.floor(lo))
            step = self._int_step(lo, hi)
            return lo, lo + step * max(1, math.ceil((hi - lo) / step - 1e-9))
        return (lo, hi) if hi > lo else (lo, lo + 1.0)

    @staticmethod
    def _int_step(lo: float, hi: float) -> int:
        return max(1, math.ceil((hi - lo) / 5 - 1e-9))

    def x_ticks(self) -> list[tuple[float, str]]:
        """The x axis ticks as ``(value, label)``."""
        x0, x1 = self._xrange()
        if self.integer_x:
            step = self._int_step(x0, x1)
            n = round((x1 - x0) / step)
            return [(x0 + i * step, f"{int(x0) + i * step:d}") for i in range(n + 1)]
        return [(x0 + i * (x1 - x0) / 4, f"{x0 + i * (x1 - x0) / 4:.3g}") for i in range(5)]

    def paintEvent(self, _event: QPaintEvent) -> None:
        """Axes, grid, lines, legend."""
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        fg = pal.color(pal.ColorRole.WindowText)
        grid = QColor(fg)
        grid.setAlpha(40)
        small = QFont(self.font())
        small.setPointSizeF(max(7.0, small.pointSizeF() * 0.85))
        p.setFont(small)
        fm = p.fontMetrics()
        has_right = any(s.axis == "right" for s in self.series)
        left_pad = fm.horizontalAdvance("0.000") + 14
        right_pad = fm.horizontalAdvance("0.000") + 14 if has_right else 12
        plot = QRectF(left_pad, fm.height() + 10, self.width() - left_pad - right_pad,
                      self.height() - 2 * fm.height() - 26)
        if plot.width() < 20 or plot.height() < 20:
            return
        x0, x1 = self._xrange()
        ranges = {"left": self._range("left"), "right": self._range("right")}

        def to_px(x: float, y: float, axis: str) -> QPointF:
            y0, y1 = ranges[axis]
            return QPointF(plot.left() + (x - x0) / (x1 - x0) * plot.width(),
                           plot.bottom() - (y - y0) / (y1 - y0) * plot.height())

        # grid and tick labels
        p.setPen(QPen(grid, 1))
        for i in range(5):
            y = plot.top() + i * plot.height() / 4
            p.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
        p.setPen(fg)
        for axis, align_x in (("left", 0.0), ("right", plot.right() + 4)):
            if axis == "right" and not has_right:
                continue
            y0, y1 = ranges[axis]
            for i in range(5):
                v = y1 - i * (y1 - y0) / 4
                y = plot.top() + i * plot.height() / 4
                text = f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"
                r = QRectF(align_x if axis == "right" else 0, y - fm.height() / 2,
                           left_pad - 6 if axis == "left" else right_pad - 4, fm.height())
                p.drawText(r, (Qt.AlignmentFlag.AlignRight if axis == "left"
                               else Qt.AlignmentFlag.AlignLeft)
                           | Qt.AlignmentFlag.AlignVCenter, text)
        for v, label in self.x_ticks():
            x = plot.left() + (v - x0) / (x1 - x0) * plot.width()
            if self.integer_x:
                p.setPen(QPen(grid, 1))
                p.drawLine(QPointF(x, plot.top()), QPointF(x, plot.bottom()))
                p.setPen(fg)
            p.drawText(QRectF(x - 30, plot.bottom() + 2, 60, fm.height()),
                       Qt.AlignmentFlag.AlignHCenter, label)
        p.drawText(QRectF(plot.left(), plot.bottom() + fm.height() + 2, plot.width(),
                          fm.height()), Qt.AlignmentFlag.AlignHCenter, self.x_label)
        p.setPen(QPen(fg, 1))
        p.drawRect(plot)

        # lines
        any_points = False
        for s in self.series:
            if not s.points:
                continue
            any_points = True
            pen = QPen(QColor(s.color), 2)
            if s.dashed:
                pen.setStyle(Qt.PenStyle.DashLine)
            p.setPen(pen)
            path = QPainterPath(to_px(*s.points[0], s.axis))
            for x, y in s.points[1:]:
                path.lineTo(to_px(x, y, s.axis))
            p.drawPath(path)
            if s.markers or len(s.points) == 1:
                p.setBrush(QColor(s.color))
                for x, y in s.points:
                    p.drawEllipse(to_px(x, y, s.axis), 3, 3)
                p.setBrush(Qt.BrushStyle.NoBrush)
        if not any_points:
            p.setPen(fg)
            p.drawText(plot, Qt.AlignmentFlag.AlignCenter, self.empty_text)

        # legend (top)
        x = plot.left()
        for s in self.series:
            label = s.name + (" (right axis)" if s.axis == "right" and any(
                o.axis == "left" for o in self.series) else "")
            p.setPen(QPen(QColor(s.color), 3))
            p.drawLine(QPointF(x, 6 + fm.height() / 2), QPointF(x + 16, 6 + fm.height() / 2))
            p.setPen(fg)
            p.drawText(QPointF(x + 20, 4 + fm.ascent()), label)
            x += 36 + fm.horizontalAdvance(label)
        p.end()
