"""Reading labeled frames: any common image file as ``(H, W, 3)`` uint8 RGB, and image sizes from headers.

DeepLabCut projects hold PNG frames by default and JPEG frames when the user
asked for them; frames copied in by hand may be grayscale, carry an alpha
channel or use 16 bits per channel (microscopy and thermal cameras).  The
network always sees 8-bit RGB:

- grayscale is repeated into the three channels;
- an alpha channel is dropped (the colour values are kept as stored, not
  blended over a background);
- palette, CMYK, YCbCr and 1-bit images go through Pillow's RGB conversion;
- 16 bits per channel (grayscale ``I;16`` and 48-bit RGB PNGs) keep the high
  byte: ``value >> 8``, which maps the full range 0..65535 linearly onto
  0..255 (65535 -> 255, 32768 -> 128) without clipping.  Pillow decodes 48-bit
  RGB PNGs this way itself, so grayscale and colour 16-bit images agree;
- 32-bit integer images (Pillow mode ``I``) whose values fit in 16 bits are
  treated as 16-bit; larger values are scaled by the image's own maximum;
- float images (mode ``F``) in [0, 1] are scaled by 255, others clipped to 0..255.

Pixels are returned as stored: EXIF orientation tags are ignored, because
labels are placed on the stored pixel grid.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

__all__ = ["image_size", "outside_image", "read_rgb", "to_rgb_uint8"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image file, reading only its header.

    PNG sizes come straight from the IHDR chunk; other formats from Pillow,
    which parses the header without decoding pixels.  Raises OSError (or a
    subclass) when the file is missing or is not an image.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) == 24 and head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            width, height = im.size
    except UnidentifiedImageError as err:
        raise OSError(f"not an image file Pillow can read ({path.suffix or 'no extension'})") from err
    return int(width), int(height)


def _high_byte(array: np.ndarray) -> np.ndarray:
    """Unsigned 16-bit values as 8 bits: ``value >> 8`` (full range 0..65535 -> 0..255)."""
    return (np.asarray(array).astype(np.uint16) >> 8).astype(np.uint8)


def _pil_to_array(im) -> np.ndarray:
    """An opened Pillow image as a uint8 array: ``(H, W)`` gray or ``(H, W, 3)`` RGB."""
    mode = im.mode
    if mode in ("RGB", "L"):
        return np.asarray(im)
    if mode in ("RGBA", "RGBX", "RGBa"):
        return np.asarray(im.convert("RGBA"))[..., :3] if mode == "RGBa" else np.asarray(im)[..., :3]
    if mode in ("LA", "La"):
        return np.asarray(im.convert("LA"))[..., 0]
    if mode.startswith("I;16"):
        return _high_byte(np.asarray(im))
    if mode == "I":
        values = np.asarray(im).astype(np.int64)
        if values.size and values.min() >= 0 and values.max() <= 0xFFFF:
            return _high_byte(values)
        values = values - min(0, int(values.min(initial=0)))
        top = max(int(values.max(initial=0)), 1)
        return np.round(values * (255.0 / top)).astype(np.uint8)
    if mode == "F":
        values = np.nan_to_num(np.asarray(im, dtype=np.float64))
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            values = values * 255.0
        return np.clip(np.round(values), 0, 255).astype(np.uint8)
    # palette (possibly with transparency), 1-bit, CMYK, YCbCr, LAB, HSV
    return np.asarray(im.convert("RGBA" if mode in ("P", "PA") else "RGB"))[..., :3]


def to_rgb_uint8(array: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 from a gray ``(H, W)``, RGB or RGBA array of any common dtype.

    uint16 keeps the high byte (as :func:`read_rgb` does for 16-bit files);
    floats in [0, 1] are scaled by 255; other values are clipped to 0..255.
    """
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) image, got shape {array.shape}")
    array = array[..., :3]
    if array.dtype == np.uint16:
        return _high_byte(array)
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.max(initial=0.0) <= 1.0:
            array = array * 255.0
        array = np.clip(array, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array)


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """The pixels of an image file as an ``(H, W, 3)`` uint8 RGB array (see the module notes).

    Raises OSError (or a subclass) when the file is missing, is not an image or
    is truncated.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            array = _pil_to_array(im)
    except UnidentifiedImageError as err:
        raise OSError(f"not an image file Pillow can read ({path.suffix or 'no extension'})") from err
    return to_rgb_uint8(array)


def outside_image(xy: np.ndarray, sizes: np.ndarray, edge: float = 0.0) -> np.ndarray:
    """``(n_images, n_bodyparts)`` bool: placed labels that lie outside their own image.

    ``xy`` is ``(n_images, n_bodyparts, 2)`` ``(x, y)`` (NaN = not placed) and
    ``sizes`` ``(n_images, 2)`` ``(width, height)`` of each image.  Inside means
    ``0 <= x <= width - edge`` and ``0 <= y <= height - edge``: ``edge=0`` is the
    training data's rule; the centre of pixel ``(row r, column c)`` is at
    ``(x=c, y=r)``, so ``edge=0.5`` keeps a label on the pixels napari draws.
    """
    xy = np.asarray(xy, dtype=float)
    sizes = np.asarray(sizes, dtype=float).reshape(-1, 1, 2)
    with np.errstate(invalid="ignore"):
        inside = ((xy >= 0) & (xy <= sizes - float(edge))).all(axis=2)
    return ~np.isnan(xy).any(axis=2) & ~inside
