"""Running the core's progress generators: to the end with a callback, or re-yielding transformed items."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

R = TypeVar("R")


def drive(work: Generator[Any, None, R], progress: Callable[[Any], None] | None = None) -> R:
    """Run ``work`` to the end, passing every item to ``progress``; return its return value."""
    while True:
        try:
            item = next(work)
        except StopIteration as done:
            return done.value
        if progress is not None:
            progress(item)


def relay(work: Generator[Any, None, R], convert: Callable[[Any], Any]) -> Generator[Any, None, R]:
    """Yield ``convert(item)`` for every item of ``work``; return its return value (use with ``yield from``)."""
    while True:
        try:
            item = next(work)
        except StopIteration as done:
            return done.value
        yield convert(item)
