"""The job runner: threaded and synchronous runs, stop, failures, progress."""

from __future__ import annotations

import pytest

from napari_posekit._napari.jobs import Failed, JobRunner, error_message, format_eta


def _count(n, stop=None):
    for i in range(n):
        if stop is not None and stop():
            return f"stopped at {i}"
        yield {"done": i + 1}
    return f"counted {n}"


class Recorder:
    def __init__(self):
        self.status, self.events, self.done, self.failed, self.finished, self.changes = [], [], [], [], [], 0

    def runner(self, **kwargs):
        return JobRunner(self.status.append, self._changed, **kwargs)

    def _changed(self):
        self.changes += 1

    def handlers(self):
        return {
            "on_event": lambda job, e: (self.events.append(e), job.report(done=e["done"], text=f"{e['done']} done")),
            "on_done": lambda job, r: self.done.append(r),
            "on_failed": lambda job, f: self.failed.append(f),
            "on_finished": lambda job: self.finished.append(job.name),
        }


def test_synchronous_run_delivers_events_result_and_progress(qtbot):
    rec = Recorder()
    runner = rec.runner(synchronous=True)
    job = runner.start("count", lambda job: _count(5, job.stopping), description="Counting", total=5, **rec.handlers())
    assert job.finished and job.result == "counted 5"
    assert [e["done"] for e in rec.events] == [1, 2, 3, 4, 5]
    assert rec.done == ["counted 5"] and rec.failed == [] and rec.finished == ["count"]
    assert rec.status[0] == "Counting…" and "5 done" in rec.status
    assert not runner.busy and rec.changes >= 2


def test_threaded_run_one_job_per_name_and_stop(qtbot):
    rec = Recorder()
    runner = rec.runner()
    gate = {"open": False}

    def work(job):
        while not gate["open"] and not job.stopping():
            yield {"done": 0}
        return "stopped" if job.stopping() else "ran"

    job = runner.start("wait", work, description="Waiting", **rec.handlers())
    assert job is not None and runner.busy and runner.running("wait") is job
    assert runner.start("wait", work, description="Again") is None  # one at a time per name
    runner.stop("wait")
    qtbot.waitUntil(lambda: not runner.busy, timeout=10_000)
    assert rec.done == ["stopped"] and rec.finished == ["wait"]
    assert "Stopping…" in rec.status and job.progress_bar is None


def test_plain_function_result(qtbot):
    rec = Recorder()
    runner = rec.runner()
    runner.start("add", lambda job: 1 + 2, description="Adding", total=None, **rec.handlers())
    qtbot.waitUntil(lambda: not runner.busy, timeout=10_000)
    assert rec.done == [3] and rec.events == []


@pytest.mark.parametrize("synchronous", [True, False])
@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("weights missing"),
        FileNotFoundError(2, "No such file", "a.mp4"),
        ZeroDivisionError("division by zero"),
    ],
)
def test_errors_come_back_as_values_with_a_message(qtbot, synchronous, error):
    rec = Recorder()
    runner = rec.runner(synchronous=synchronous)

    def work(job):
        yield {"done": 1}
        raise error

    runner.start("fail", work, description="Working", failure="Could not work", **rec.handlers())
    qtbot.waitUntil(lambda: not runner.busy, timeout=10_000)
    assert rec.done == [] and len(rec.failed) == 1 and isinstance(rec.failed[0], Failed)
    assert rec.failed[0].error is error and rec.finished == ["fail"]
    assert rec.status[-1] == f"Could not work: {error_message(error)}"
    assert "ZeroDivisionError" in rec.status[-1] if isinstance(error, ZeroDivisionError) else True


def test_messages_and_eta():
    assert error_message(FileNotFoundError(2, "No such file", "a.mp4")) == "No such file: a.mp4"
    assert error_message(ValueError("bad value")) == "bad value"
    assert error_message(ZeroDivisionError("x")) == "ZeroDivisionError: x"
    assert format_eta(None) == "?" and format_eta(65) == "1:05" and format_eta(3725) == "1:02:05"


def test_finished_waits_for_the_result_even_when_events_are_processed_in_between(qtbot):
    # a progress bar update processes pending events: the worker's ``finished`` must not overtake the result
    from qtpy.QtWidgets import QApplication

    order = []

    def done(job, result):
        for _ in range(20):
            QApplication.processEvents()
        order.append(("done", result))

    runner = JobRunner()
    runner.start(
        "quick",
        lambda job: _count(3),
        description="Quick",
        on_done=done,
        on_finished=lambda job: order.append(("finished", job.result)),
    )
    qtbot.waitUntil(lambda: not runner.busy, timeout=10_000)
    assert order == [("done", "counted 3"), ("finished", "counted 3")]
