"""Image decoding (core.images): every common frame format loads as (H, W, 3) uint8 RGB."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from napari_posekit.core.data import load_image
from napari_posekit.core.images import image_size, read_rgb, to_rgb_uint8


def write_png16(path, array: np.ndarray) -> None:
    """A 16-bit PNG (gray (H, W), RGB (H, W, 3) or RGBA (H, W, 4)) written byte by byte.

    Pillow cannot write 48-bit RGB, so the file is assembled here: signature,
    IHDR, one zlib-compressed IDAT with filter type 0 on every row, IEND.
    """
    array = np.asarray(array, dtype=np.uint16)
    h, w = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    colour_type = {1: 0, 3: 2, 4: 6}[channels]
    raw = b"".join(b"\x00" + array[r].astype(">u2").tobytes() for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


@pytest.fixture()
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)


def test_rgb_png_and_formats_pillow_writes(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    out = read_rgb(tmp_path / "rgb.png")
    assert out.dtype == np.uint8 and out.shape == (30, 40, 3) and np.array_equal(out, rgb)

    # RGBA: alpha dropped, colour kept as stored (also where alpha is 0)
    alpha = np.zeros((30, 40, 1), np.uint8)
    alpha[:10] = 255
    Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(read_rgb(tmp_path / "rgba.png"), rgb)

    # grayscale: repeated into three channels
    gray = rgb[..., 0]
    Image.fromarray(gray).save(tmp_path / "gray.png")
    out = read_rgb(tmp_path / "gray.png")
    assert out.shape == (30, 40, 3) and all(np.array_equal(out[..., c], gray) for c in range(3))

    # gray + alpha, palette and 1-bit images
    Image.fromarray(gray).convert("LA").save(tmp_path / "la.png")
    assert np.array_equal(read_rgb(tmp_path / "la.png")[..., 1], gray)
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    assert read_rgb(tmp_path / "palette.png").shape == (30, 40, 3)
    Image.fromarray(gray > 128).save(tmp_path / "bits.png")
    assert set(np.unique(read_rgb(tmp_path / "bits.png"))) <= {0, 255}

    # JPEG (lossy, so close, not equal) in colour and grayscale; .jpeg too
    smooth = np.repeat(np.linspace(0, 255, 40, dtype=np.uint8)[None, :, None], 30, axis=0).repeat(3, axis=2)
    Image.fromarray(smooth).save(tmp_path / "frame.jpg", quality=95)
    out = read_rgb(tmp_path / "frame.jpg")
    assert out.shape == (30, 40, 3) and np.abs(out.astype(int) - smooth).max() <= 6
    Image.fromarray(smooth[..., 0]).save(tmp_path / "gray.jpeg", quality=95)
    assert read_rgb(tmp_path / "gray.jpeg").shape == (30, 40, 3)
    for name in ("rgb.png", "rgba.png", "gray.png", "frame.jpg", "gray.jpeg"):
        assert image_size(tmp_path / name) == (40, 30)


def test_16_bit_images_keep_the_full_range(tmp_path):
    values = np.array([[0, 1, 255, 256, 257], [32767, 32768, 65279, 65280, 65535]], dtype=np.uint16)
    expected = (values >> 8).astype(np.uint8)  # 0..65535 -> 0..255 linearly, never clipped
    assert expected.max() == 255 and expected[1, 1] == 128

    Image.fromarray(values).save(tmp_path / "gray16.png")  # Pillow writes mode I;16 as a 16-bit PNG
    with Image.open(tmp_path / "gray16.png") as im:
        assert im.mode.startswith("I;16")
    out = read_rgb(tmp_path / "gray16.png")
    assert out.dtype == np.uint8 and out.shape == (2, 5, 3)
    assert all(np.array_equal(out[..., c], expected) for c in range(3))

    write_png16(tmp_path / "gray16-handmade.png", values)
    assert np.array_equal(read_rgb(tmp_path / "gray16-handmade.png")[..., 0], expected)

    rgb48 = np.stack([values, values[::-1], 65535 - values], axis=2)
    write_png16(tmp_path / "rgb48.png", rgb48)
    out = read_rgb(tmp_path / "rgb48.png")
    assert out.shape == (2, 5, 3) and np.array_equal(out, (rgb48 >> 8).astype(np.uint8))

    rgba64 = np.concatenate([rgb48, np.full((2, 5, 1), 1000, np.uint16)], axis=2)
    write_png16(tmp_path / "rgba64.png", rgba64)
    assert np.array_equal(read_rgb(tmp_path / "rgba64.png"), (rgb48 >> 8).astype(np.uint8))
    assert image_size(tmp_path / "rgb48.png") == (5, 2)

    # the same mapping for arrays handed to load_image
    assert np.array_equal(load_image(values)[..., 0], expected)
    assert np.array_equal(load_image(rgb48), (rgb48 >> 8).astype(np.uint8))


def test_32_bit_and_float_images(tmp_path):
    small = np.array([[0, 65535]], dtype=np.int32)
    Image.fromarray(small, "I").save(tmp_path / "int32-small.tif")
    assert read_rgb(tmp_path / "int32-small.tif")[0, :, 0].tolist() == [0, 255]
    large = np.array([[0, 500_000, 1_000_000]], dtype=np.int32)
    Image.fromarray(large, "I").save(tmp_path / "int32-large.tif")
    assert read_rgb(tmp_path / "int32-large.tif")[0, :, 0].tolist() == [0, 128, 255]
    floats = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    Image.fromarray(floats, "F").save(tmp_path / "float.tif")
    assert read_rgb(tmp_path / "float.tif")[0, :, 0].tolist() == [0, 128, 255]


def test_arrays(rgb):
    assert load_image(rgb) is not None and np.array_equal(load_image(rgb), rgb)
    assert np.array_equal(to_rgb_uint8(rgb[..., :1])[..., 2], rgb[..., 0])
    rgba = np.concatenate([rgb, np.zeros((30, 40, 1), np.uint8)], axis=2)
    assert np.array_equal(load_image(rgba), rgb)
    assert np.array_equal(load_image(rgb / 255.0), rgb)
    with pytest.raises(ValueError, match="expected an"):
        load_image(np.zeros((4, 4, 2), np.uint8))


def test_bad_files_name_the_reason(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_rgb(tmp_path / "absent.png")
    with pytest.raises(FileNotFoundError):
        image_size(tmp_path / "absent.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(OSError, match="not an image file"):
        read_rgb(tmp_path / "notes.png")
    with pytest.raises(OSError, match="not an image file"):
        image_size(tmp_path / "notes.png")
    Image.fromarray(np.zeros((50, 50, 3), np.uint8)).save(tmp_path / "full.png")
    (tmp_path / "truncated.png").write_bytes((tmp_path / "full.png").read_bytes()[:60])
    assert image_size(tmp_path / "truncated.png") == (50, 50)  # the header is intact
    with pytest.raises(OSError):
        read_rgb(tmp_path / "truncated.png")
