"""The one place widgets run long work: a napari thread worker around a core generator.

A widget hands :meth:`JobRunner.start` a *work* callable.  It is called with
the :class:`Job` in the worker thread and returns either a result or a core
``iter_*`` generator, whose yielded events go to the widget's ``on_event`` in
the GUI thread and whose return value is the result.  The runner owns what
every job needs: the stop flag (``job.stopping`` is the ``stop`` callable the
core generators take), a napari progress bar with an ETA, a timer that draws
progress at most ten times a second, the busy state, failure text in the
status line and a notification, and the finishing callbacks.

Work never touches layers or widgets; callbacks run in the GUI thread.  With
``synchronous=True`` the same work runs to the end inside :meth:`start`
(tests drive a widget's work that way without threads).
"""

from __future__ import annotations

import logging
import math
import traceback
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from napari.qt.threading import thread_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error
from qtpy.QtCore import QTimer

log = logging.getLogger(__name__)

PROGRESS_TOTAL = 1000
"""Steps of a progress bar driven by fractions (``Job.report(fraction=…)``)."""

KNOWN_ERRORS = (OSError, ValueError, RuntimeError, KeyError, MemoryError)
"""Errors whose message is meant for the user as it is (the core's own errors are too)."""


@dataclass
class Failed:
    """The result of a job that raised: its error, as a value.

    superqt's generator workers lose some errors (a ``RuntimeError`` raised
    inside a generator ends it without a signal), so work never lets one
    escape the worker: it comes back as a ``Failed``.
    """

    error: BaseException
    trace: str = ""

    @property
    def message(self) -> str:
        return error_message(self.error)


def error_message(err: BaseException) -> str:
    """A one-line text for ``err``: its message (a file error names the file); the type too when unexpected."""
    text = str(err) or type(err).__name__
    if isinstance(err, OSError) and err.filename:
        return f"{err.strerror or text}: {err.filename}"
    expected = isinstance(err, KNOWN_ERRORS) or type(err).__module__.startswith("napari_posekit")
    return text if expected else f"{type(err).__name__}: {text}"


def format_eta(seconds: float | None) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour on); ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _run(work: Callable[[Job], Any], job: Job) -> Generator[Any, None, Any]:
    """The worker's body: call ``work``, relay its events, return its result or a :class:`Failed`."""
    try:
        result = work(job)
        if isinstance(result, Generator):
            result = yield from result
    except Exception as err:  # noqa: BLE001 - every error reaches the widget as a value
        return Failed(err, traceback.format_exc())
    return result


class Job:
    """One running piece of work: its stop flag, progress and result."""

    def __init__(self, name: str, description: str, total: int | None):
        self.name = name
        self.description = description
        self.total = total
        self.stop_requested = False
        self.worker = None
        self.progress_bar = None
        self.result: Any = None
        self.finished = False
        self._done: float | None = None
        self._text: str | None = None
        self._eta: float | None = None
        self._dirty = False
        self._returning = False
        self._returned = False
        self._finish_waiting = False

    def stopping(self) -> bool:
        """True once a stop was asked for (pass as the core generators' ``stop``)."""
        return self.stop_requested

    def report(
        self,
        fraction: float | None = None,
        *,
        done: float | None = None,
        text: str | None = None,
        eta_s: float | None = None,
    ) -> None:
        """Record progress (a fraction of the whole, or ``done`` out of ``total``) and a status text.

        Only recorded here; the runner's timer draws it.
        """
        if fraction is not None:
            done = (self.total or PROGRESS_TOTAL) * min(max(float(fraction), 0.0), 1.0)
        if done is not None:
            self._done = done
        if text is not None:
            self._text = text
        if eta_s is not None:
            self._eta = eta_s
        self._dirty = True


class JobRunner:
    """Runs a widget's jobs, one per name at a time (e.g. ``"train"`` and ``"evaluate"``).

    ``status`` shows a line of text (the widget's status label); ``on_change``
    is called whenever a job starts, is asked to stop or ends (to enable the
    widget's buttons).
    """

    def __init__(
        self,
        status: Callable[[str], None] | None = None,
        on_change: Callable[[], None] | None = None,
        *,
        synchronous: bool = False,
        interval_ms: int = 100,
    ):
        self.status = status or (lambda _text: None)
        self.on_change = on_change or (lambda: None)
        self.synchronous = synchronous
        self.jobs: dict[str, Job] = {}
        self._timer = QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._ticks: dict[str, Callable[[], None]] = {}

    # -- state ----------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return bool(self.jobs)

    def running(self, name: str) -> Job | None:
        return self.jobs.get(name)

    def stop(self, name: str | None = None, text: str | None = "Stopping…") -> None:
        """Ask the job ``name`` (default: every job) to stop at its next step."""
        for job in [self.jobs.get(name)] if name else list(self.jobs.values()):
            if job is not None and not job.stop_requested:
                job.stop_requested = True
                if text:
                    self.status(text)
        self.on_change()

    # -- running --------------------------------------------------------------------
    def start(
        self,
        name: str,
        work: Callable[[Job], Any],
        *,
        description: str,
        total: int | None = PROGRESS_TOTAL,
        status: str | None = None,
        failure: str | None = None,
        on_event: Callable[[Job, Any], None] | None = None,
        on_tick: Callable[[Job], None] | None = None,
        on_done: Callable[[Job, Any], None] | None = None,
        on_failed: Callable[[Job, Failed], None] | None = None,
        on_finished: Callable[[Job], None] | None = None,
    ) -> Job | None:
        """Run ``work(job)`` off the GUI thread; return the :class:`Job`, or None when ``name`` is running.

        ``description`` names the progress bar (``total=None``: no bar);
        ``status`` is the first status text (default ``description…``).
        ``on_event(job, event)`` gets every yielded event; ``on_tick(job)``
        runs on the timer (draw there); ``on_done(job, result)`` gets a
        successful result; a failure shows ``"<failure>: <message>"`` (default
        ``"<description> failed"``) in the status line and a notification,
        then goes to ``on_failed``; ``on_finished(job)`` runs last, always.
        """
        if name in self.jobs:
            return None
        job = Job(name, description, total)
        handlers = {
            "event": on_event,
            "tick": on_tick,
            "done": on_done,
            "failed": on_failed,
            "finished": on_finished,
            "failure": failure or f"{description} failed",
        }
        self.jobs[name] = job
        if total is not None:
            job.progress_bar = napari_progress(total=total, desc=description)
        self.status(status if status is not None else f"{description}…")
        self.on_change()
        if self.synchronous:
            self._run_here(job, work, handlers)
            return job
        worker = thread_worker(_run, ignore_errors=True)(work, job)
        worker.yielded.connect(lambda event: self._on_event(job, handlers, event))
        worker.returned.connect(lambda result: self._on_returned(job, handlers, result))
        worker.errored.connect(lambda err: self._on_returned(job, handlers, Failed(err)))
        worker.finished.connect(lambda: self._on_finished(job, handlers))
        job.worker = worker
        self._ticks[name] = lambda: self._draw(job, handlers)
        self._timer.start()
        worker.start()
        return job

    def _run_here(self, job: Job, work: Callable[[Job], Any], handlers: dict[str, Any]) -> None:
        body = _run(work, job)
        while True:
            try:
                event = next(body)
            except StopIteration as end:
                result = end.value
                break
            self._on_event(job, handlers, event)
            self._draw(job, handlers)
        self._on_returned(job, handlers, result)
        self._on_finished(job, handlers)

    def _on_event(self, job: Job, handlers: dict[str, Any], event: Any) -> None:
        if handlers["event"] is not None:
            handlers["event"](job, event)
        job._dirty = True

    def _tick(self) -> None:
        for draw in list(self._ticks.values()):
            draw()

    def _draw(self, job: Job, handlers: dict[str, Any]) -> None:
        if not job._dirty or job.finished:
            return
        job._dirty = False
        if handlers["tick"] is not None:
            handlers["tick"](job)
        if job._text and not job.stop_requested:
            self.status(job._text)
        # napari's progress bar processes events when it changes: touch it last
        bar = job.progress_bar
        if bar is not None and job._done is not None:
            value = round(job._done)
            if value != bar.n:
                bar.update(value - bar.n)
            if job._eta is not None:
                bar.set_description(f"{job.description}: ETA {format_eta(job._eta)}")

    def _on_returned(self, job: Job, handlers: dict[str, Any], result: Any) -> None:
        # the progress bar processes events when it changes, so the worker's ``finished`` can
        # arrive inside this method: it waits until the result has been handed over
        job._returning = True
        job.result = result
        job._dirty = True
        self._draw(job, handlers)  # the last progress, before the result's own status text
        try:
            if isinstance(result, Failed):
                if result.trace:
                    log.error("%s: %s\n%s", handlers["failure"], result.message, result.trace)
                text = f"{handlers['failure']}: {result.message}"
                self.status(text)
                show_error(text)
                if handlers["failed"] is not None:
                    handlers["failed"](job, result)
            elif handlers["done"] is not None:
                handlers["done"](job, result)
        finally:
            job._returned = True
        if job._finish_waiting:
            self._on_finished(job, handlers)

    def _on_finished(self, job: Job, handlers: dict[str, Any]) -> None:
        if job.finished:
            return
        if job._returning and not job._returned:
            job._finish_waiting = True  # the result is still being handed over: finish after it
            return
        job.finished = True
        self._ticks.pop(job.name, None)
        if not self._ticks:
            self._timer.stop()
        if self.jobs.get(job.name) is job:
            del self.jobs[job.name]
        bar, job.progress_bar = job.progress_bar, None
        try:
            if handlers["finished"] is not None:
                handlers["finished"](job)
        finally:
            self.on_change()
            if bar is not None:
                bar.close()
