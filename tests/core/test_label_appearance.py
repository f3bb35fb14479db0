"""The appearance check: labels on pixels unlike their body part in the other images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import require_shared
from napari_posekit.core.label_appearance import check_appearance
from napari_posekit.core.label_checks import fast_checks
from napari_posekit.core.label_suspects import SUSPECT_SCORE, LabelSet, project_label_set

PARTS = ("checks", "stripes", "ring")
OFFSETS = np.array([[0.0, 0.0], [26.0, 4.0], [10.0, 24.0]])


def _marker(kind: int) -> np.ndarray:
    """A 9 x 9 texture that stands for one body part."""
    yy, xx = np.mgrid[-4:5, -4:5]
    if kind == 0:
        return np.where((yy // 2 + xx // 2) % 2 == 0, 250, 10)
    if kind == 1:
        return np.where(yy % 3 == 0, 240, 30)
    r = np.hypot(yy, xx)
    return np.where(r < 2, 255, np.where(r < 4, 0, 128))


def _synthetic(root, n: int = 14, size: int = 96, seed: int = 0) -> LabelSet:
    """``n`` gray images with a textured marker under each label, the three markers in a jittered triangle."""
    rng = np.random.default_rng(seed)
    folder = root / "labeled-data" / "clip"
    folder.mkdir(parents=True)
    keys, xy = [], np.zeros((n, len(PARTS), 2))
    for i in range(n):
        image = np.clip(128 + rng.normal(0, 6, (size, size)), 0, 255)
        base = rng.uniform(12, size - 12 - 30, size=2)
        for k, offset in enumerate(OFFSETS):
            cx, cy = np.round(base + offset + rng.uniform(-2, 2, size=2)).astype(int)
            image[cy - 4 : cy + 5, cx - 4 : cx + 5] = _marker(k)
            xy[i, k] = cx, cy
        Image.fromarray(np.repeat(image.astype(np.uint8)[..., None], 3, axis=-1)).save(folder / f"img{i:03d}.png")
        keys.append(f"labeled-data/clip/img{i:03d}.png")
    return LabelSet(tuple(keys), PARTS, xy, root)


def test_a_label_moved_off_its_marker_is_the_one_flagged_and_the_fix_is_on_the_marker(tmp_path):
    labels = _synthetic(tmp_path)
    assert check_appearance(labels) == ([], [])  # every label on its marker: nothing stands out
    xy = labels.xy.copy()
    xy[5, 1] += (-14.0, -14.0)  # "stripes" off its marker, onto the background
    suspects, notes = check_appearance(labels.with_xy(xy))
    assert notes == []
    assert [(s.image, s.bodyparts, s.kind) for s in suspects] == [(labels.images[5], ("stripes",), "appearance")]
    found = suspects[0]
    assert found.score >= SUSPECT_SCORE
    assert found.reason.startswith("stripes does not look like stripes in the other images (similarity ")
    assert found.suggested is not None and found.suggested.shape == (1, 2)
    assert np.linalg.norm(found.suggested[0] - labels.xy[5, 1]) <= 4.0  # back on the marker
    assert "the best match nearby is" in found.reason


def test_fast_checks_run_the_appearance_check_when_it_has_pixels(tmp_path):
    labels = _synthetic(tmp_path)
    assert "appearance" in fast_checks(labels)[2]
    assert "appearance" not in fast_checks(LabelSet(labels.images, PARTS, labels.xy))[2]


def test_what_cannot_be_judged_is_a_note_and_the_rest_is_judged(tmp_path):
    labels = _synthetic(tmp_path, n=10)
    assert check_appearance(LabelSet(labels.images, PARTS, labels.xy)) == (
        [],
        ["appearance: these labels have no project folder, so no image files to look at"],
    )
    few = LabelSet(labels.images[:5], PARTS, labels.xy[:5], tmp_path)
    assert check_appearance(few) == (
        [],
        ["appearance: 5 labeled images, at least 8 needed to learn what parts look like"],
    )
    xy = labels.xy.copy()
    xy[3:, 2] = np.nan  # "ring" labeled in 3 images only
    (labels.root / labels.images[0]).write_bytes(b"not a png")
    suspects, notes = check_appearance(labels.with_xy(xy))
    assert suspects == []
    assert notes == [
        "appearance: 1 image files missing or unreadable, e.g. labeled-data/clip/img000.png",
        "appearance: ring is labeled in 2 images with pixels, too few to judge",
    ]
    nothing = labels.with_xy(np.full_like(xy, np.nan))
    assert check_appearance(nothing)[0] == []


@pytest.mark.parametrize("image", ["img0010", "img0040", "img0075"])
def test_openfield_tailbase_moved_30_px_off_the_mouse_is_flagged(image):
    labels = project_label_set(require_shared("dlc_openfield-Pranav-2018-10-30"))
    row = labels.row(f"labeled-data/m4s1/{image}.png")
    tail = labels.bodyparts.index("tailbase")
    body = labels.xy[row, tail] - labels.xy[row, 0]
    side = np.array([-body[1], body[0]]) / np.linalg.norm(body)  # across the body, onto the floor
    xy = labels.xy.copy()
    xy[row, tail] += 30 * side
    suspects, notes = check_appearance(labels.with_xy(xy))
    assert notes == []
    hits = [s for s in suspects if s.image == labels.images[row] and s.bodyparts == ("tailbase",)]
    assert hits and hits[0].score == max(s.score for s in suspects) >= 1.5 * SUSPECT_SCORE  # it comes first
    assert hits[0].suggested is not None and np.linalg.norm(hits[0].suggested[0] - labels.xy[row, tail]) < 10
    assert len(suspects) <= 6  # the move and a few unusual views (the clean project has 1 appearance suspect)
