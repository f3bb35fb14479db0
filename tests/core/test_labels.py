"""LabelStore: edits, undo/redo, progress, and the crash-recovery journal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from napari_posekit.core.labels import JournalError, LabelStore, journal_path, pending_journals

IMAGES = [f"labeled-data/v/img{i:03d}.png" for i in range(5)]
PARTS = ["snout", "leftear", "rightear", "tailbase"]


def nan_equal(a, b):
    return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)


def test_place_move_delete_undo_redo():
    store = LabelStore.empty(IMAGES, PARTS)
    assert store.set(0, "snout", (10.0, 20.0)).label == "place"
    assert store.set(0, "snout", (11.0, 21.0)).label == "move"
    assert store.set(0, 1, (5.0, 6.0)).label == "place"
    assert store.set(0, "snout", None).label == "delete"
    assert np.isnan(store.xy[0, 0]).all() and tuple(store.xy[0, 1]) == (5.0, 6.0)
    assert store.undo().label == "delete"
    assert tuple(store.xy[0, 0]) == (11.0, 21.0)
    store.undo()
    store.undo()
    assert tuple(store.xy[0, 0]) == (10.0, 20.0) and np.isnan(store.xy[0, 1]).all()
    store.redo()
    assert tuple(store.xy[0, 0]) == (11.0, 21.0)
    store.set(2, "tailbase", (1.0, 1.0))  # a new edit clears the redo stack
    assert not store.can_redo and store.redo() is None
    with pytest.raises(ValueError):
        store.xy[0, 0, 0] = 3.0  # the view is read-only


def test_update_records_only_changes_as_one_step():
    store = LabelStore.empty(IMAGES, PARTS)
    assert store.update(store.xy.copy()) is None
    new = store.xy.copy()
    new[1, :2] = [[1, 2], [3, 4]]
    new[3, 3] = [7, 8]
    edit = store.update(new)
    assert edit.cells == ((1, 0), (1, 1), (3, 3))
    store.undo()
    assert np.isnan(store.xy).all()


def test_copy_from_previous_fills_only_missing_parts():
    store = LabelStore.empty(IMAGES, PARTS)
    for b, xy in enumerate([(1, 1), (2, 2), (3, 3), (4, 4)]):
        store.set(0, b, xy)
    store.set(2, "leftear", (9.0, 9.0))
    assert store.previous_labeled_image(2) == 0
    store.copy_from(0, 2)
    assert store.xy[2].tolist() == [[1, 1], [9, 9], [3, 3], [4, 4]]
    store.undo()  # one step undoes the whole copy
    assert store.placed()[2].tolist() == [False, True, False, False]


def test_progress_and_navigation():
    store = LabelStore.empty(IMAGES, PARTS)
    for b in range(4):
        store.set(1, b, (b, b))
    store.set(3, "snout", (0.0, 0.0))
    assert store.progress() == (1, 1, 5)
    assert store.next_unplaced(3) == 1
    assert store.next_unplaced(3, after=2) == 3
    assert store.next_unplaced(1) is None
    assert store.next_incomplete_image(0) == 2
    assert store.next_incomplete_image(4) == 0
    assert store.next_incomplete_image(2, step=-1) == 0


def test_journal_replays_unsaved_edits_and_save_clears_it(tmp_path):
    journal = journal_path(tmp_path / "CollectedData_me.h5")
    store = LabelStore.empty(IMAGES, PARTS, journal=journal)
    store.set(0, "snout", (1.5, 2.5))
    store.set(4, "tailbase", (3.0, 4.0))
    store.set(0, "snout", None)
    store.set(2, "leftear", (7.0, 8.0))
    store.undo()
    expected = store.xy.copy()
    store.close_journal()

    fresh = LabelStore.empty(IMAGES, PARTS, journal=journal)
    assert fresh.pending_recovery() == 5
    assert fresh.recover() == 5
    assert nan_equal(fresh.xy, expected)
    fresh.undo()  # recovery is one undoable step
    assert np.isnan(fresh.xy).all()
    fresh.redo()
    fresh.set(1, "rightear", (5.0, 5.0))  # later edits go on top of the consolidated journal
    fresh.close_journal()
    again = LabelStore.empty(IMAGES, PARTS, journal=journal)
    again.recover()
    assert nan_equal(again.xy, fresh.xy)
    again.mark_saved()
    assert not journal.exists() and again.unsaved_edits == 0
    assert LabelStore.empty(IMAGES, PARTS, journal=journal).recover() == 0


def test_pending_journals_lists_the_folders_unsaved_edits(tmp_path):
    folder = tmp_path / "labeled-data" / "mouse"
    assert pending_journals(folder) == []  # no folder yet
    folder.mkdir(parents=True)
    store = LabelStore.empty(IMAGES, PARTS, journal=journal_path(folder / "CollectedData_me.h5"))
    assert pending_journals(folder) == []  # nothing edited yet
    store.set(0, "snout", (1.0, 2.0))
    journal_path(folder / "CollectedData_you.csv").write_text("")  # an empty journal holds no edits
    (folder / ".machinelabels-iter0.posekit-journal.jsonl").write_text("{}\n")  # not a journal of human labels
    assert pending_journals(folder) == [journal_path(folder / "CollectedData_me.h5")]
    store.mark_saved()
    assert pending_journals(folder) == []


def test_journal_matches_images_by_name(tmp_path):
    journal = tmp_path / "j.jsonl"
    store = LabelStore.empty(IMAGES, PARTS, journal=journal)
    store.set(3, "snout", (1.0, 1.0))
    store.close_journal()
    more = ["labeled-data/v/img000a.png", *IMAGES]  # an image was added before img003
    fresh = LabelStore.empty(more, PARTS, journal=journal)
    fresh.recover()
    assert tuple(fresh.xy[4, 0]) == (1.0, 1.0)


def test_journal_for_other_labels_is_refused(tmp_path):
    journal = tmp_path / "j.jsonl"
    store = LabelStore.empty(IMAGES, PARTS, journal=journal)
    store.set(0, 0, (1.0, 1.0))
    store.close_journal()
    with pytest.raises(JournalError, match="belongs to other labels"):
        LabelStore.empty(IMAGES, ["a", "b"], journal=journal).recover()


def test_unwritable_journal_refuses_the_edit(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = LabelStore.empty(IMAGES, PARTS, journal=blocker / "j.jsonl")  # parent is a file
    with pytest.raises(JournalError, match="cannot write the recovery journal"):
        store.set(0, 0, (1.0, 1.0))
    assert np.isnan(store.xy).all()  # not applied when it could not be journaled


CHILD = textwrap.dedent(
    """
    import sys, time
    from napari_posekit.core.labels import LabelStore
    images = [f"img{i}.png" for i in range(50)]
    store = LabelStore.empty(images, ["a", "b", "c"], journal=sys.argv[1])
    k = 0
    while True:
        store.set(k % 50, k % 3, (float(k), float(k) + 0.5))
        print(k, flush=True)
        k += 1
        time.sleep(0.01)
    """
)


def test_sigkill_loses_no_journaled_edit(tmp_path):
    journal = tmp_path / "journal.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(journal)], stdout=subprocess.PIPE, text=True)
    done = -1
    while done < 120:
        done = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = LabelStore.empty([f"img{i}.png" for i in range(50)], ["a", "b", "c"], journal=journal)
    assert store.recover() >= done + 1
    for k in range(done + 1):
        if k + 150 > done:  # not overwritten by a later edit of the same cell
            assert tuple(store.xy[k % 50, k % 3]) == (float(k), float(k) + 0.5), k
