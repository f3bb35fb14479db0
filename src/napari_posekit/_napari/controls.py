"""Small builders of the Qt controls the dock widgets share: spin boxes, rows of widgets, the layer picker."""

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


def refill_layer_box(owner, layers: list) -> None:
    """Offer ``layers`` in ``owner.layer_box``, keeping ``owner.layer`` chosen while it is there.

    ``owner`` is a dock widget with ``viewer``, ``layer``, ``layer_box`` and
    ``attach(layer)``/``detach()``: a layer that left the viewer is detached, and
    without a choice the first of ``layers`` is attached.
    """
    names = [layer.name for layer in layers]
    current = owner.layer.name if owner.layer is not None else None
    owner.layer_box.blockSignals(True)
    owner.layer_box.clear()
    owner.layer_box.addItems(names)
    owner.layer_box.blockSignals(False)
    if owner.layer is not None and owner.layer not in owner.viewer.layers:
        owner.detach()
    if current in names:
        owner.layer_box.setCurrentIndex(names.index(current))
    elif layers:
        owner.layer_box.setCurrentIndex(0)
        owner.attach(layers[0])


def attach_chosen_layer(owner, index: int) -> None:
    """Attach the layer named at ``index`` of ``owner.layer_box`` unless it is attached already."""
    name = owner.layer_box.itemText(index)
    if name and name in owner.viewer.layers and owner.viewer.layers[name] is not owner.layer:
        owner.attach(owner.viewer.layers[name])
