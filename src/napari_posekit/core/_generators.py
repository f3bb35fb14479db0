"""Running the core's progress generators: to the end with a callback, or re-yielding transformed items."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterable
from typing import Any, TypeVar

R = TypeVar("R")
T = TypeVar("T")


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


def prefetched(items: Iterable[T], depth: int = 1) -> Generator[T, None, None]:
    """Yield ``items`` in order while a background thread makes up to ``depth`` of the next ones.

    An exception raised while making an item is raised here, in its place.
    Closing the generator stops the thread.
    """
    ready: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stopping = threading.Event()

    def put(entry: tuple[str, Any]) -> bool:
        while not stopping.is_set():
            try:
                ready.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            put(("error", exc))
            return
        put(("end", None))

    thread = threading.Thread(target=work, name="posekit-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = ready.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stopping.set()
        thread.join()
