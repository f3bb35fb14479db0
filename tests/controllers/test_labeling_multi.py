"""Multi-animal labeling commands, without napari: columns, copy per individual, swap, next unplaced."""

from __future__ import annotations

import numpy as np
import pytest

from napari_posekit.controllers.labeling_multi import Columns, copy_previous, next_unplaced, swap_individuals

COLUMNS = Columns(("female", "male"), ("head", "thorax"), ("food",))


def test_columns_go_individual_by_individual_then_unique_parts():
    assert COLUMNS.pairs == (
        ("female", "head"),
        ("female", "thorax"),
        ("male", "head"),
        ("male", "thorax"),
        ("single", "food"),
    )
    assert COLUMNS.names[2] == "male/head" and len(COLUMNS) == 5
    assert COLUMNS.index("male", "thorax") == 3 and COLUMNS.index("male", "food") == 4
    assert list(COLUMNS.of_individual("single")) == [4]
    xy = np.arange(5 * 5 * 2, dtype=float).reshape(5, 5, 2)
    per, unique = COLUMNS.split(xy)
    assert per.shape == (5, 2, 2, 2) and unique.shape == (5, 1, 2)
    assert np.array_equal(COLUMNS.join(per, unique), xy)
    with pytest.raises(KeyError, match="individual 'mouse'"):
        COLUMNS.index("mouse", "head")


@pytest.mark.parametrize(
    ("individuals", "message"),
    [(("a", "a"), "individuals listed twice: \\['a'\\]"), (("a", ""), "non-empty"), (("single",), "single")],
)
def test_bad_individual_names_are_refused(individuals, message):
    with pytest.raises(ValueError, match=message):
        Columns(individuals, ("head",), ("food",))


def test_copy_previous_takes_each_individual_from_where_it_was_last_seen():
    xy = np.full((4, 5, 2), np.nan)
    xy[0, 0:2] = [[1, 1], [2, 2]]  # female on image 0
    xy[1, 2:4] = [[5, 5], [6, 6]]  # male on image 1 only
    xy[0, 4] = [9, 9]
    xy[3, 0] = [7, 7]  # female's head already placed on the target
    new, sources = copy_previous(xy, COLUMNS, 3)
    assert sources == {"female": 0, "male": 1, "single": 0}
    assert np.array_equal(new[3], [[7, 7], [2, 2], [5, 5], [6, 6], [9, 9]])
    assert np.array_equal(new[:3], xy[:3], equal_nan=True)
    only, sources = copy_previous(xy, COLUMNS, 3, ["male"])
    assert sources == {"male": 1} and np.isnan(only[3, [1, 4]]).all()
    same, sources = copy_previous(xy, COLUMNS, 0)
    assert sources == {} and np.array_equal(same, xy, equal_nan=True)


def test_swap_exchanges_two_individuals_on_one_image():
    xy = np.full((2, 5, 2), np.nan)
    xy[:, 0:2] = [[1, 1], [2, 2]]
    xy[:, 2] = [5, 5]
    xy[:, 4] = [9, 9]
    new = swap_individuals(xy, COLUMNS, 1, "female", "male")
    assert np.array_equal(new[0], xy[0], equal_nan=True)
    assert np.array_equal(new[1, 2:4], xy[1, 0:2]) and np.array_equal(new[1, 0:2], xy[1, 2:4], equal_nan=True)
    assert np.array_equal(new[1, 4], [9, 9])  # unique parts belong to nobody
    assert np.array_equal(swap_individuals(new, COLUMNS, 1, "male", "female"), xy, equal_nan=True)
    with pytest.raises(ValueError, match="two different"):
        swap_individuals(xy, COLUMNS, 1, "male", "male")


def test_next_unplaced_moves_on_to_the_next_individual():
    placed = np.array([True, True, False, True, False])
    assert next_unplaced(placed, after=1) == 2
    assert next_unplaced(placed, after=2) == 4
    assert next_unplaced(placed, after=4) == 2  # wraps
    assert next_unplaced(np.ones(5, bool)) is None


def test_an_absent_animal_leaves_an_image_complete():
    from napari_posekit.controllers.labeling_multi import complete_images, next_incomplete, progress

    columns = Columns(("female", "male"), ("head", "thorax"))
    xy = np.full((4, 4, 2), np.nan)
    xy[0] = 1.0  # both flies, every part
    xy[1, :2] = 1.0  # the female alone, complete
    xy[2, 0] = 1.0  # the female's head only
    assert complete_images(xy, columns).tolist() == [True, True, False, False]
    assert progress(xy, columns) == (2, 1, 4)
    assert next_incomplete(xy, columns, 0) == 2 and next_incomplete(xy, columns, 3) == 2
    assert next_incomplete(xy, columns, 2, step=-1) == 3  # backward, wrapping
    with_food = Columns(("female",), ("head",), ("food",))
    assert complete_images(np.ones((1, 2, 2)), with_food).tolist() == [True]
    assert next_incomplete(np.ones((1, 2, 2)), with_food, 0) is None
