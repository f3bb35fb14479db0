"""Synthetic top-view behaviour video with exact ground-truth keypoints.

:func:`make_behaviour` renders a mouse-like animal walking on a textured arena
floor, seen from above.  It is used as sample data, for demos and in tests:
the body parts are visually distinct (dark furry body and head, pink ears,
pink nose, black eyes, a tapering tail), so a pose network can be trained on
it, and the animal's appearance varies with its pose and the sensor noise.

Coordinate convention
---------------------
Keypoints are ``(x, y)`` pixel coordinates.  The *centre* of pixel
``frames[t, r, c]`` lies at ``x = c``, ``y = r`` (the convention used by
napari and DeepLabCut), so ``x`` points right and ``y`` points down.  The
keypoints are exactly the geometric points used to render the animal, to
float precision: ``snout`` is the tip of the head (centre of the nose),
``leftear``/``rightear`` are the centres of the ear discs and ``tailbase`` is
the rear end of the body ellipse, where the tail starts.

Handedness
----------
The camera looks down on the animal's back, so ``leftear`` is on the animal's
own left side: looking along its heading in the image, the left ear is on the
counter-clockwise side as displayed (heading right, left ear up).  In
``(x, y)`` coordinates the 2D cross product of ``snout - tailbase`` and
``rightear - leftear`` is therefore always **positive**.

Rendering is anti-aliased (coverage from a signed distance with a one-pixel
ramp), so sub-pixel motion changes pixel values, and every frame gets mild
sensor noise.  Everything is drawn from ``numpy.random.default_rng(seed)``:
the same arguments give bit-identical output.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["BODYPARTS", "SKELETON", "SyntheticBehaviour", "make_behaviour"]

BODYPARTS: tuple[str, ...] = ("snout", "leftear", "rightear", "tailbase")
SKELETON: tuple[tuple[str, str], ...] = (
    ("snout", "leftear"),
    ("snout", "rightear"),
    ("leftear", "rightear"),
    ("leftear", "tailbase"),
    ("rightear", "tailbase"),
)

MIN_SIZE = 64
#: Minimum distance (px) between any keypoint and the image border.
KEYPOINT_MARGIN = 12.0

# Body geometry in "body units"; one unit is min(height, width) / 240 pixels.
# Every part is placed relative to the neck point, which follows the path.
_BODY_BACK = 17.0  # neck -> body centre
_BODY_A, _BODY_B = 19.0, 12.0  # body semi-axes (along, across)
_HEAD_FWD = 9.0  # neck -> head centre
_HEAD_A, _HEAD_B = 12.0, 8.5  # head semi-axes (snout = head centre + _HEAD_A)
_NECK_A, _NECK_B = 8.0, 9.5  # shoulder ellipse, centred on the neck point
_EAR_BACK, _EAR_SIDE, _EAR_R = 4.0, 8.5, 4.2
_EYE_FWD, _EYE_SIDE, _EYE_R = 3.0, 5.2, 1.5
_NOSE_R = 1.9
_TAIL_LEN, _TAIL_SEGMENTS = 52.0, 8
_TAIL_R0, _TAIL_R1 = 2.6, 0.7
_BODY_LENGTH = _BODY_BACK + _BODY_A + _HEAD_FWD + _HEAD_A  # tailbase -> snout
_MAX_STRETCH = 1.05
#: Largest distance of any keypoint from the neck point (the tailbase).
_KEYPOINT_REACH = (_BODY_BACK + _BODY_A) * _MAX_STRETCH

_FLOOR_RGB = np.array([196.0, 196.0, 190.0], np.float32)
_FUR_RGB = np.array([104.0, 84.0, 70.0], np.float32)
_EAR_RGB = np.array([206.0, 122.0, 134.0], np.float32)
_EAR_INNER_RGB = np.array([240.0, 162.0, 170.0], np.float32)
_NOSE_RGB = np.array([226.0, 132.0, 146.0], np.float32)
_EYE_RGB = np.array([18.0, 14.0, 14.0], np.float32)
_TAIL_BASE_RGB = np.array([112.0, 90.0, 80.0], np.float32)
_TAIL_TIP_RGB = np.array([200.0, 160.0, 156.0], np.float32)
_NOISE_SIGMA = 2.5


@dataclass(frozen=True)
class SyntheticBehaviour:
    """A rendered video together with its ground-truth keypoints.

    ``frames`` is ``(T, H, W, 3)`` uint8 RGB; ``keypoints`` is
    ``(T, len(bodyparts), 2)`` float64 with columns ``(x, y)``.
    """

    frames: np.ndarray
    keypoints: np.ndarray
    bodyparts: tuple[str, ...]
    skeleton: tuple[tuple[str, str], ...]
    fps: float


def make_behaviour(
    n_frames: int = 200,
    height: int = 240,
    width: int = 320,
    *,
    fps: float = 30.0,
    seed: int = 0,
) -> SyntheticBehaviour:
    """Render a synthetic top-view video of a walking mouse-like animal.

    The animal walks along a smooth random path with varying speed, heading
    along its direction of motion, and sometimes pauses and turns in place.
    Its body is about a quarter of ``min(height, width)`` long and every
    keypoint stays at least ``KEYPOINT_MARGIN`` pixels inside the frame.
    """
    n_frames = _as_int(n_frames, "n_frames")
    height = _as_int(height, "height")
    width = _as_int(width, "width")
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if height < MIN_SIZE or width < MIN_SIZE:
        raise ValueError(f"height and width must be >= {MIN_SIZE}, got {height}x{width}")
    fps = float(fps)
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive finite number, got {fps}")

    rng = np.random.default_rng(seed)
    scale = min(height, width) / 240.0
    motion = _simulate_motion(n_frames, height, width, fps, scale, rng)
    pose = _pose(motion, scale)
    keypoints = np.stack([pose["snout"], pose["ear_l"], pose["ear_r"], pose["tailbase"]], axis=1)

    floor = _floor(height, width, scale, rng)
    fur = _fur_texture(rng)
    gain = 1.0 + 0.025 * _smooth_noise(rng, n_frames, 0.5 * fps)
    frames = np.empty((n_frames, height, width, 3), np.uint8)
    img = np.empty_like(floor)
    noise = np.empty_like(floor)
    for t in range(n_frames):
        np.multiply(floor, np.float32(gain[t]), out=img)
        _draw_animal(img, {k: v[t] for k, v in pose.items()}, fur, scale)
        img += _sensor_noise(rng, noise)
        np.clip(img, 0.0, 255.0, out=img)
        np.copyto(frames[t], img, casting="unsafe")
    return SyntheticBehaviour(
        frames=frames,
        keypoints=keypoints.astype(np.float64),
        bodyparts=BODYPARTS,
        skeleton=SKELETON,
        fps=fps,
    )


def _sensor_noise(rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
    """Zero-mean triangular pixel noise (std ``_NOISE_SIGMA``) plus 0.5 for rounding."""
    bits = rng.integers(0, 256, size=out.shape, dtype=np.uint8)
    tri = (bits & 15) + (bits >> 4)  # sum of two uniform 0..15: mean 15, std 6.5
    np.multiply(tri, np.float32(_NOISE_SIGMA / 6.5), out=out)
    out += np.float32(0.5 - 15.0 * _NOISE_SIGMA / 6.5)
    return out


def _as_int(value, name: str) -> int:
    """``value`` as an int; bools, floats and other types raise ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


# --------------------------------------------------------------------------
# Motion
# --------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise of roughly unit standard deviation."""
    white = rng.standard_normal(n)
    sigma = max(sigma, 1e-3)
    smooth = ndimage.gaussian_filter1d(white, sigma, mode="reflect")
    return smooth * math.sqrt(2.0 * math.sqrt(math.pi) * sigma)


def _bouts(n: int, fps: float, body: float, rng: np.random.Generator):
    """Per-frame target speed (px/s) and in-place turn rate (rad/s)."""
    speed = np.zeros(n)
    spin = np.zeros(n)
    t, walking = 0, True
    while t < n:
        if walking:
            k = max(1, round(rng.uniform(0.8, 2.5) * fps))
            speed[t : t + k] = rng.uniform(0.8, 3.0) * body
            walking = rng.random() > 0.6
        else:
            k = max(1, round(rng.uniform(0.5, 1.4) * fps))
            spin[t : t + k] = rng.choice((-1.0, 1.0)) * rng.uniform(1.5, 3.0)
            walking = True
        t += k
    return speed, spin


def _simulate_motion(n, height, width, fps, scale, rng):
    """Path of the neck point, heading, head yaw, body stretch and turn rate."""
    dt = 1.0 / fps
    body = _BODY_LENGTH * scale
    pad = KEYPOINT_MARGIN + _KEYPOINT_REACH * scale
    lo = np.array([pad, pad])
    hi = np.array([width - 1 - pad, height - 1 - pad])
    centre = 0.5 * (lo + hi)
    target_speed, spin = _bouts(n, fps, body, rng)
    kicks = rng.standard_normal(n)
    look = 0.2 * _smooth_noise(rng, n, 0.3 * fps)

    pos = rng.uniform(lo, hi)
    heading = rng.uniform(-math.pi, math.pi)
    speed = 0.5 * target_speed[0]
    omega = 0.0
    tau_turn, sigma_turn = 0.7, 0.8  # wandering: s, rad/s
    relax_speed = 1.0 - math.exp(-dt / 0.25)
    relax_turn = min(dt / tau_turn, 1.0)
    relax_spin = min(dt / 0.2, 1.0)
    out = np.empty((n, 5))
    for i in range(n):
        out[i] = pos[0], pos[1], heading, speed, omega
        # Turning: an Ornstein-Uhlenbeck wander, pulled to the spin rate
        # while pausing, plus steering away from the walls.
        relax = relax_spin if spin[i] else relax_turn
        omega += (spin[i] - omega) * relax + sigma_turn * math.sqrt(2.0 * relax) * kicks[i]
        direction = np.array([math.cos(heading), math.sin(heading)])
        ahead = pos + direction * (0.5 * speed + 0.15 * body)
        steer = 0.0
        if np.any(ahead < lo) or np.any(ahead > hi):
            to_centre = math.atan2(*(centre - pos)[::-1])
            steer = 3.0 * _wrap(to_centre - heading)
        heading = _wrap(heading + (omega + steer) * dt)
        speed += (target_speed[i] - speed) * relax_speed
        pos = np.clip(pos + direction * speed * dt, lo, hi)

    heading = np.unwrap(out[:, 2])
    speed, omega = out[:, 3], out[:, 4]
    return {
        "neck": out[:, :2],
        "heading": heading,
        "yaw": np.clip(0.35 * np.tanh(omega / 2.0) + look, -0.55, 0.55),
        "stretch": 0.98 + (_MAX_STRETCH - 0.98) * np.clip(speed / (3.0 * body), 0, 1),
        "omega": omega,
        "gait": np.cumsum(speed / body) * dt * 2.0 * math.pi * 1.3,
    }


def _wrap(angle: float) -> float:
    """Angle wrapped to [-pi, pi)."""
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


# --------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------


def _unit(angle):
    """Unit vectors (x, y) for angles measured from +x towards +y."""
    return np.stack([np.cos(angle), np.sin(angle)], axis=-1)


def _left(direction):
    """The animal's left for a heading ``direction`` (x right, y down)."""
    return np.stack([direction[..., 1], -direction[..., 0]], axis=-1)


def _pose(motion, scale):
    """Positions (in px) of all rendered parts, for every frame."""
    neck, stretch = motion["neck"], motion["stretch"][:, None]
    body_dir = _unit(motion["heading"])
    head_angle = motion["heading"] + motion["yaw"]
    head_dir = _unit(head_angle)
    head_left = _left(head_dir)
    body_centre = neck - body_dir * (_BODY_BACK * scale * stretch)
    head_centre = neck + head_dir * (_HEAD_FWD * scale)
    ear_base = head_centre - head_dir * (_EAR_BACK * scale)
    eye_base = head_centre + head_dir * (_EYE_FWD * scale)

    # Tail: a chain of points bending against the turn and swaying with gait.
    tailbase = body_centre - body_dir * (_BODY_A * scale * stretch)
    seg = np.arange(_TAIL_SEGMENTS)
    bend = np.clip(-0.12 * motion["omega"], -0.3, 0.3)[:, None] + 0.12 * np.sin(motion["gait"][:, None] - 0.9 * seg)
    tail_angle = motion["heading"][:, None] + math.pi + np.cumsum(bend, axis=1)
    steps = _unit(tail_angle) * (_TAIL_LEN * scale / _TAIL_SEGMENTS)
    tail = np.concatenate([tailbase[:, None], tailbase[:, None] + np.cumsum(steps, axis=1)], axis=1)
    return {
        "neck": neck,
        "body_centre": body_centre,
        "body_angle": motion["heading"],
        "stretch": motion["stretch"],
        "head_centre": head_centre,
        "head_angle": head_angle,
        "snout": head_centre + head_dir * (_HEAD_A * scale),
        "ear_l": ear_base + head_left * (_EAR_SIDE * scale),
        "ear_r": ear_base - head_left * (_EAR_SIDE * scale),
        "ear_dir_l": head_left,
        "eye_l": eye_base + head_left * (_EYE_SIDE * scale),
        "eye_r": eye_base - head_left * (_EYE_SIDE * scale),
        "tailbase": tailbase,
        "tail": tail,
    }


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------


def _smooth_field(rng, shape, sigma):
    """Unit-variance Gaussian-smoothed noise; coarse scales are made at low resolution."""
    step = max(1, int(sigma // 3))
    small = tuple(-(-n // step) + 1 for n in shape)
    field = ndimage.gaussian_filter(rng.standard_normal(small), sigma / step)
    if step > 1:
        field = ndimage.zoom(field, step, order=3, grid_mode=True, mode="nearest")
    field = field[: shape[0], : shape[1]]
    return field / field.std()


def _floor(height, width, scale, rng):
    """Smooth random floor texture with soft lighting and a faint arena rim."""
    shape = (height, width)
    lum = sum(
        weight * _smooth_field(rng, shape, sigma * scale) for sigma, weight in ((1.2, 0.35), (5.0, 0.5), (20.0, 1.0))
    )
    lum /= lum.std()
    tint = _smooth_field(rng, shape, 25.0 * scale)
    y = np.arange(height, dtype=np.float64)[:, None]
    x = np.arange(width, dtype=np.float64)[None, :]
    ry, rx = (y - (height - 1) / 2) / height, (x - (width - 1) / 2) / width
    light = 1.0 - 0.35 * (rx**2 + ry**2) + 0.04 * rx
    # A faint dark line marks the arena wall, a few pixels inside the border.
    edge = np.minimum(np.minimum(x, width - 1 - x), np.minimum(y, height - 1 - y))
    rim = np.clip(1.6 * scale - np.abs(edge - 5.0 * scale), 0.0, 1.0)
    rgb = _FLOOR_RGB * (light * (1.0 + 0.07 * lum) * (1.0 - 0.18 * rim))[..., None]
    rgb += (4.0 * tint)[..., None] * np.array([1.0, 0.4, -1.0], np.float32)
    return rgb.astype(np.float32)


def _fur_texture(rng):
    """Streaky noise in body coordinates: axis 0 along the body, axis 1 across."""
    streaks = ndimage.gaussian_filter(rng.standard_normal((128, 64)), (1.8, 0.5), mode="wrap")
    patches = ndimage.gaussian_filter(rng.standard_normal((128, 64)), (6.0, 4.0), mode="wrap")
    fur = 0.7 * streaks / streaks.std() + patches / patches.std()
    return (fur / fur.std()).astype(np.float32)


def _box(lo, hi, shape):
    """Slices of the pixels whose centres lie in ``[lo, hi]`` (x, y), or None."""
    x0, x1 = max(math.ceil(lo[0]), 0), min(math.floor(hi[0]) + 1, shape[1])
    y0, y1 = max(math.ceil(lo[1]), 0), min(math.floor(hi[1]) + 1, shape[0])
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1)


def _offsets(box, point):
    """Pixel-centre offsets from ``point``: dx as a row, dy as a column (float32)."""
    dx = (np.arange(box[1].start, box[1].stop) - float(point[0])).astype(np.float32)
    dy = (np.arange(box[0].start, box[0].stop) - float(point[1])).astype(np.float32)
    return dx[None, :], dy[:, None]


def _region(centre, radius, shape):
    """Box of pixels around a point and their offsets from it, or None."""
    box = _box(np.asarray(centre) - radius, np.asarray(centre) + radius, shape)
    return None if box is None else (box, *_offsets(box, centre))


def _coverage(distance, softness=1.0):
    """Fraction of a pixel covered by a shape, from a signed distance in px."""
    return np.clip(0.5 - distance / np.float32(softness), 0.0, 1.0)


def _blend(img, box, alpha, colour):
    """Alpha-blend ``colour`` (RGB or per-pixel RGB) into ``img[box]`` in place."""
    patch = img[box]
    patch += alpha[..., None] * (colour - patch)


def _ellipse(dx, dy, angle, a, b):
    """Body coordinates (u forward, v to the right), normalised radius² and distance."""
    c, s = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    u = dx * c + dy * s
    v = dy * c - dx * s
    ua, vb = u / np.float32(a), v / np.float32(b)
    q = ua * ua + vb * vb
    grad = 2.0 * np.sqrt((ua / np.float32(a)) ** 2 + (vb / np.float32(b)) ** 2)
    return u, v, q, (q - 1.0) / (grad + np.float32(1e-6))


def _fur_texture_at(fur, u, v, scale, u_offset):
    """Sample the fur texture at body coordinates ``u`` (forward), ``v`` (right)."""
    k = np.float32(1.0 / scale)
    coords = [u * k + np.float32(u_offset), v * (1.6 * k) + np.float32(32.0)]
    return ndimage.map_coordinates(fur, coords, order=1, mode="grid-wrap")


def _draw_fur(img, p, fur, scale):
    """Draw body, shoulders and head as one fur-textured, dome-shaded shape."""
    stretch = float(p["stretch"])
    reach = (_BODY_BACK + _BODY_A) * _MAX_STRETCH * scale + 2.0
    region = _region(p["neck"], reach, img.shape)
    if region is None:
        return
    box, dx, dy = region
    ellipses = (  # centre, angle, semi-axes
        (p["body_centre"], p["body_angle"], _BODY_A * stretch, _BODY_B / math.sqrt(stretch)),
        (p["neck"], 0.5 * (p["body_angle"] + p["head_angle"]), _NECK_A, _NECK_B),
        (p["head_centre"], p["head_angle"], _HEAD_A, _HEAD_B),
    )
    (ub, vb, qb, db), (_, _, qn, dn), (uh, vh, qh, dh) = (
        _ellipse(
            dx - np.float32(centre[0] - p["neck"][0]),
            dy - np.float32(centre[1] - p["neck"][1]),
            float(angle),
            a * scale,
            b * scale,
        )
        for centre, angle, a, b in ellipses
    )
    alpha = _coverage(np.minimum(np.minimum(db, dn), dh))
    dome = 0.72 + 0.38 * np.sqrt(np.clip(1.0 - np.minimum(np.minimum(qb, qn), qh), 0.0, 1.0))
    # Fur texture, sampled only where the animal is; the shoulders use the
    # body's texture coordinates, so body and neck blend seamlessly.
    head = qh <= np.minimum(qb, qn)
    on_head, on_body = (alpha > 0) & head, (alpha > 0) & ~head
    tex = np.zeros_like(alpha)
    tex[on_head] = _fur_texture_at(fur, uh[on_head], vh[on_head], scale, 64.0)
    tex[on_body] = _fur_texture_at(fur, ub[on_body], vb[on_body], scale, 0.0)
    muzzle = np.clip(uh / np.float32(_HEAD_A * scale), -1.0, 1.0)
    muzzle *= np.float32(0.12) * head
    shade = dome * (1.0 + 0.14 * tex) * (1.0 + muzzle)
    _blend(img, box, alpha, _FUR_RGB * shade[..., None])


def _disc(img, centre, radius, colour):
    """Draw an anti-aliased filled disc."""
    region = _region(centre, radius + 1.0, img.shape)
    if region is not None:
        box, dx, dy = region
        _blend(img, box, _coverage(np.sqrt(dx * dx + dy * dy) - radius), colour)


def _tail(img, points, scale):
    """Draw the tail as a chain of tapering capsules, dark at the base."""
    pad = _TAIL_R0 * scale + 1.0
    box = _box(points.min(axis=0) - pad, points.max(axis=0) + pad, img.shape)
    if box is None:
        return
    y0, x0 = box[0].start, box[1].start
    shape = (box[0].stop - y0, box[1].stop - x0)
    dist = np.full(shape, np.inf, np.float32)
    along = np.zeros(shape, np.float32)
    for k in range(_TAIL_SEGMENTS):
        a, b = points[k], points[k + 1]
        sub = _box(np.minimum(a, b) - pad, np.maximum(a, b) + pad, img.shape)
        if sub is None:
            continue
        dx, dy = _offsets(sub, a)
        seg = (b - a).astype(np.float32)
        t = np.clip((dx * seg[0] + dy * seg[1]) / np.float32(seg @ seg), 0.0, 1.0)
        frac = (k + t) / np.float32(_TAIL_SEGMENTS)
        radius = np.float32(scale) * (_TAIL_R0 + (_TAIL_R1 - _TAIL_R0) * frac)
        d = np.hypot(dx - t * seg[0], dy - t * seg[1]) - radius
        local = (
            slice(sub[0].start - y0, sub[0].stop - y0),
            slice(sub[1].start - x0, sub[1].stop - x0),
        )
        closer = d < dist[local]
        dist[local] = np.where(closer, d, dist[local])
        along[local] = np.where(closer, frac, along[local])
    colour = _TAIL_BASE_RGB + np.sqrt(along)[..., None] * (_TAIL_TIP_RGB - _TAIL_BASE_RGB)
    _blend(img, box, _coverage(dist), colour)


def _draw_animal(img, p, fur, scale):
    """Composite shadow, tail, body, head, ears, eyes and nose onto ``img``."""
    stretch = float(p["stretch"])
    body_a = _BODY_A * scale * stretch
    body_b = _BODY_B * scale / math.sqrt(stretch)
    head_a, head_b = _HEAD_A * scale, _HEAD_B * scale

    # Soft contact shadow, slightly offset towards the bottom right.
    shadow = np.array([1.5, 2.5]) * scale
    soft = 4.0 * scale
    for centre, angle, a, b in (
        (p["body_centre"], p["body_angle"], body_a, body_b),
        (p["head_centre"], p["head_angle"], head_a, head_b),
    ):
        region = _region(centre + shadow, a + soft + 1.0, img.shape)
        if region is not None:
            box, dx, dy = region
            dist = _ellipse(dx, dy, float(angle), a, b)[3]
            patch = img[box]
            patch *= (1.0 - 0.28 * _coverage(dist, soft))[..., None]

    _tail(img, p["tail"], scale)
    _draw_fur(img, p, fur, scale)
    ear_r = _EAR_R * scale
    for ear, outward in ((p["ear_l"], p["ear_dir_l"]), (p["ear_r"], -p["ear_dir_l"])):
        _disc(img, ear, ear_r, _EAR_RGB)
        _disc(img, ear + outward * (0.25 * ear_r), 0.6 * ear_r, _EAR_INNER_RGB)
    for eye in (p["eye_l"], p["eye_r"]):
        _disc(img, eye, _EYE_R * scale, _EYE_RGB)
    _disc(img, p["snout"], _NOSE_R * scale, _NOSE_RGB)
