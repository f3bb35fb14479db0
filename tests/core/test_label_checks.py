"""The label checks that need no model, on synthetic animals and on the openfield project."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import require_shared
from napari_posekit.core.label_checks import (
    check_collapses,
    check_duplicates,
    check_geometry,
    check_swaps,
    fast_checks,
)
from napari_posekit.core.label_suspects import SUSPECT_SCORE, LabelSet, project_label_set
from napari_posekit.core.training_labels import infer_symmetric_pairs

PARTS = ("snout", "leftear", "rightear", "neck", "tailbase")
SHAPE = np.array([[0, 40], [-10, 25], [10, 25], [0, 5], [0, -45]], dtype=float)  # heading +y


def animals(n=40, seed=0, noise=1.0, scales=(0.6, 1.6), root=None) -> LabelSet:
    """``n`` copies of one shape, each turned, scaled and moved, with click noise."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(-np.pi, np.pi, n)
    scale = rng.uniform(*scales, n)
    rot = np.stack([np.stack([np.cos(angle), -np.sin(angle)], -1), np.stack([np.sin(angle), np.cos(angle)], -1)], -2)
    xy = np.einsum("nij,kj->nki", rot, SHAPE) * scale[:, None, None] + rng.uniform(100, 500, (n, 1, 2))
    xy += rng.normal(0, noise, xy.shape)
    images = tuple(f"labeled-data/video/img{i:03d}.png" for i in range(n))
    return LabelSet(images, PARTS, xy, root, pairs=(("leftear", "rightear"),))


def ranked(suspects):
    return sorted(suspects, key=lambda s: -s.score)


def test_pairs_are_inferred_from_the_usual_left_right_names():
    fly = "head thorax abdomen wingL wingR forelegL4 forelegR4 midlegL4 midlegR4 hindlegL4 hindlegR4 eyeL eyeR"
    assert infer_symmetric_pairs(fly.split()) == [
        ("wingL", "wingR"),
        ("forelegL4", "forelegR4"),
        ("midlegL4", "midlegR4"),
        ("hindlegL4", "hindlegR4"),
        ("eyeL", "eyeR"),
    ]
    assert infer_symmetric_pairs(["Haunch_right", "Haunch_left", "L_ear", "R_ear", "paw_l", "paw_r"]) == [
        ("Haunch_left", "Haunch_right"),
        ("L_ear", "R_ear"),
        ("paw_l", "paw_r"),
    ]
    assert infer_symmetric_pairs(["LeftEar", "RIGHTEAR", "hind-l-foot", "hind-r-foot"]) == [
        ("LeftEar", "RIGHTEAR"),
        ("hind-l-foot", "hind-r-foot"),
    ]
    assert infer_symmetric_pairs(["tail", "trail", "Lpaw", "tl", "tr", "nose", "leftear", "Tail_L"]) == []
    assert infer_symmetric_pairs(["earR", "earL", "earL2"]) == [("earL", "earR")]  # each pair once, left first


def test_a_planted_swap_is_found_ranked_first_with_the_exchange_as_fix():
    labels = animals()
    xy = labels.xy.copy()
    xy[7, [1, 2]] = xy[7, [2, 1]]
    labels = labels.with_xy(xy)
    suspects, notes, ran = fast_checks(labels)
    top = ranked(suspects)[0]
    assert (top.image, top.kind, top.bodyparts) == (labels.images[7], "swap", ("leftear", "rightear"))
    assert top.score >= 3 and "39 of 40 images" in top.reason
    np.testing.assert_allclose(top.suggested, xy[7, [2, 1]])
    assert not [s for s in suspects if s.image == labels.images[7] and s.kind == "geometry"]  # the swap, not a shape
    assert ran == ["swap", "geometry", "collapse"] and any("duplicate" in n for n in notes)


@pytest.mark.parametrize("part", [0, 1, 4])
def test_a_part_moved_30_px_is_blamed_with_a_fix_near_where_it_was(part):
    labels = animals(scales=(0.9, 1.1))
    xy = labels.xy.copy()
    truth = xy[11, part].copy()
    xy[11, part] += (21.0, -21.0)
    suspects, _ = check_geometry(labels.with_xy(xy))
    mine = ranked([s for s in suspects if s.image == labels.images[11]])
    assert mine and mine[0].bodyparts == (PARTS[part],) and mine[0].score > 1.5
    assert np.linalg.norm(mine[0].suggested[0] - truth) < 6
    moved = float(mine[0].reason.split(" is ")[1].split(" px")[0])
    assert 24 <= moved <= 36 and mine[0].reason.endswith("px off)")
    assert len(suspects) == 1


def test_turned_scaled_and_moved_animals_are_not_suspects():
    labels = animals(n=60, seed=3, scales=(0.4, 2.5))
    suspects, _notes, ran = fast_checks(labels)
    assert suspects == [] and ran == ["swap", "geometry", "collapse"]


def test_two_parts_at_one_point_collapse_and_the_shape_says_which_is_misplaced():
    labels = animals()
    xy = labels.xy.copy()
    truth = xy[5, 1].copy()
    xy[5, 1] = xy[5, 4] + 0.3  # leftear dropped on the tail base
    suspects, _ = check_collapses(labels.with_xy(xy))
    assert [(s.image, s.bodyparts, s.kind) for s in suspects] == [
        (labels.images[5], ("leftear", "tailbase"), "collapse")
    ]
    assert suspects[0].score > 2.5 and "leftear looks misplaced" in suspects[0].reason
    assert np.linalg.norm(suspects[0].suggested[0] - truth) < 5
    np.testing.assert_allclose(suspects[0].suggested[1], xy[5, 4])


def _write_images(root, labels, n):
    folder = root / "labeled-data" / "video"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(folder / f"img{i:03d}.png")


def test_an_image_labeled_twice_is_found_by_bytes_and_by_pixels(tmp_path):
    labels = animals(n=12, root=tmp_path)
    _write_images(tmp_path, labels, 12)
    folder = tmp_path / "labeled-data" / "video"
    (folder / "img009.png").write_bytes((folder / "img002.png").read_bytes())  # the same file twice
    Image.open(folder / "img004.png").save(folder / "img010.png", compress_level=0)  # same pixels, other bytes
    xy = labels.xy.copy()
    xy[9] = xy[2]
    xy[9, 0] += (12, 0)
    xy[10] = xy[4] + 0.2
    suspects, notes = check_duplicates(labels.with_xy(xy))
    found = {s.image: s for s in suspects}
    assert sorted(found) == [labels.images[9], labels.images[10]] and notes == []
    assert (
        "same pixels as labeled-data/video/img002.png; labels differ by up to 12.0 px (snout)"
        in found[labels.images[9]].reason
    )
    assert "labels agree within 0.3 px" in found[labels.images[10]].reason
    assert found[labels.images[9]].score > found[labels.images[10]].score >= SUSPECT_SCORE
    (folder / "img003.png").unlink()
    suspects, notes = check_duplicates(labels.with_xy(xy))
    assert len(suspects) == 2 and notes == [
        "duplicate images: 1 image files missing or unreadable, e.g. " + labels.images[3]
    ]


def test_checks_that_cannot_apply_say_why_and_the_rest_run():
    empty = LabelSet((), PARTS, np.zeros((0, 5, 2)))
    suspects, notes, ran = fast_checks(empty)
    assert suspects == [] and ran == [] and any("no labeled body parts" in n for n in notes)
    one = animals(n=1)
    assert fast_checks(one)[0] == [] and any("geometry: needs at least 8" in n for n in fast_checks(one)[1])
    two_parts = LabelSet(animals().images, ("snout", "tailbase"), animals().xy[:, [0, 4]])
    suspects, notes, ran = fast_checks(two_parts)
    assert "geometry: needs at least 3 body parts" in notes and ran == ["collapse"]
    assert "left/right swaps: no left/right pairs among the body parts" in notes
    one_part = LabelSet(animals().images, ("snout",), animals().xy[:, :1])
    assert "collapses: needs at least 2 body parts" in fast_checks(one_part)[1]
    xy = animals().xy.copy()
    xy[:, 3] = np.nan  # neck never labeled
    xy[[2, 6]] = np.nan  # two images without any label
    xy[8, 2] = np.nan
    xy[9, [1, 2]] = xy[9, [2, 1]]
    labels = animals().with_xy(xy)
    suspects, notes, ran = fast_checks(labels)
    assert ran == ["swap", "geometry", "collapse"]
    assert [(s.image, s.kind) for s in ranked(suspects)] == [(labels.images[9], "swap")]
    assert check_swaps(LabelSet(labels.images[:3], PARTS, xy[:3], pairs=labels.pairs))[1] == [
        "left/right swaps: leftear/rightear labeled with a body frame in 2 images, too few to judge"
    ]


def test_openfield_ear_swap_comes_out_above_everything_else():
    labels = project_label_set(require_shared("dlc_openfield-Pranav-2018-10-30"))
    suspects, notes, ran = fast_checks(labels)
    assert ran == ["swap", "geometry", "collapse", "duplicate", "appearance"] and notes == []
    top = ranked(suspects)[0]
    assert (top.image, top.kind) == ("labeled-data/m4s1/img0102.png", "swap")
    assert top.score >= 3 and all(s.score < top.score - 1 for s in suspects[1:] if s is not top)
    assert "115 of 116 images have leftear on the other side" in top.reason
    assert len([s for s in suspects if s.kind != "appearance"]) <= 3  # nothing else stands out
    assert len([s for s in suspects if s.kind == "appearance"]) <= 4  # unusual views only (label_appearance)


def test_fly_pairs_come_from_the_node_names_and_a_swap_of_each_is_found():
    import pandas as pd

    table = pd.read_csv(require_shared("sleap_fly_clip") / "clip.labels.flat.csv")
    table = table[(table.track == "female") & (table.frame_idx % 10 == 0)]
    nodes = tuple(dict.fromkeys(table.node))
    frames = np.sort(table.frame_idx.unique())
    xy = np.full((len(frames), len(nodes), 2), np.nan)
    xy[np.searchsorted(frames, table.frame_idx), [nodes.index(n) for n in table.node]] = table[["x", "y"]]
    pairs = tuple(infer_symmetric_pairs(nodes))
    assert len(pairs) == 5 and ("forelegL4", "forelegR4") in pairs
    labels = LabelSet(tuple(f"frame{f:04d}" for f in frames), nodes, xy, pairs=pairs)
    assert check_swaps(labels) == ([], [])
    for n, (left, right) in enumerate(pairs):
        i = 20 + 25 * n
        planted = xy.copy()
        planted[i, [nodes.index(left), nodes.index(right)]] = xy[i, [nodes.index(right), nodes.index(left)]]
        suspects, _ = check_swaps(labels.with_xy(planted))
        assert [(s.image, s.bodyparts) for s in suspects] == [(labels.images[i], (left, right))]
        assert suspects[0].score >= 3
