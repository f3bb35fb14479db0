"""Small builders of the Qt controls the dock widgets share: spin boxes set up in one call, rows of widgets."""

from __future__ import annotations

from qtpy.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLayout, QSpinBox, QWidget


def spin_box(
    lo: int,
    hi: int,
    value: int,
    *,
    step: int | None = None,
    special: str | None = None,
    suffix: str | None = None,
    tip: str | None = None,
) -> QSpinBox:
    """A QSpinBox from ``lo`` to ``hi`` showing ``value``; ``special`` is the text shown at ``lo``."""
    box = QSpinBox()
    _set_up(box, lo, hi, value, step, special, suffix, tip)
    return box


def double_spin_box(
    lo: float,
    hi: float,
    value: float,
    *,
    decimals: int = 2,
    step: float | None = None,
    special: str | None = None,
    suffix: str | None = None,
    tip: str | None = None,
) -> QDoubleSpinBox:
    """A QDoubleSpinBox from ``lo`` to ``hi`` with ``decimals``, showing ``value``; ``special`` is the text at ``lo``."""
    box = QDoubleSpinBox()
    box.setDecimals(decimals)
    _set_up(box, lo, hi, value, step, special, suffix, tip)
    return box


def _set_up(box, lo, hi, value, step, special, suffix, tip) -> None:
    box.setRange(lo, hi)
    if step is not None:
        box.setSingleStep(step)
    if special is not None:
        box.setSpecialValueText(special)
    if suffix is not None:
        box.setSuffix(suffix)
    if tip is not None:
        box.setToolTip(tip)
    box.setValue(value)


def row(*items: QWidget | QLayout, stretch: tuple[int, ...] = ()) -> QHBoxLayout:
    """A horizontal layout of ``items`` (widgets or layouts), each with its ``stretch`` factor when given."""
    layout = QHBoxLayout()
    for i, item in enumerate(items):
        factor = stretch[i] if i < len(stretch) else 0
        if isinstance(item, QLayout):
            layout.addLayout(item, factor)
        else:
            layout.addWidget(item, factor)
    return layout
