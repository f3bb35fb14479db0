"""Video positions as text: times for display, frame numbers or times typed by a person.

Everything here is napari-free.
"""

from __future__ import annotations

import math

__all__ = ["format_time", "parse_position"]


def format_time(seconds: float) -> str:
    """``[h:]mm:ss.fff`` for a time in seconds."""
    if not math.isfinite(seconds):
        return "--:--"
    ms = round(seconds * 1000)
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h}:{m:02d}:{s:02d}.{ms:03d}" if h else f"{m:02d}:{s:02d}.{ms:03d}"


def parse_position(text: str, fps: float, n_frames: int) -> int:
    """Frame number from a frame number (``"120"``) or a time (``"1:02.5"``, ``"0:01:02"``, ``"62.5s"``).

    Raises ValueError with a readable message for anything else or a
    position outside the video.
    """
    text = text.strip()
    try:
        if text.isdigit():
            frame = int(text)
        else:
            body = text.removesuffix("s")
            parts = body.split(":")
            if not 1 <= len(parts) <= 3 or (len(parts) == 1 and not text.endswith("s")):
                raise ValueError
            seconds = 0.0
            for part in parts:
                value = float(part)
                if value < 0:
                    raise ValueError
                seconds = seconds * 60 + value
            if not (fps > 0):
                raise ValueError
            frame = math.floor(seconds * fps + 1e-6)
    except ValueError:
        raise ValueError(f"{text!r} is neither a frame number nor a time like 1:02.5 or 62.5s") from None
    if not 0 <= frame < n_frames:
        raise ValueError(f"{text!r} is outside the video (frames 0..{n_frames - 1})")
    return frame
