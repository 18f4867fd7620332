"""A dataset folder holding every kind of bad input the validator must name or normalise."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def png_bytes(seed: int, size: int = 16, mode: str = "L") -> bytes:
    """A small, distinct PNG."""
    rng = np.random.default_rng(seed)
    shape = (size, size) if mode == "L" else (size, size, 3)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(seed: int, size: tuple[int, int] = (32, 16), mode: str = "RGB", exif_orientation: int = 0) -> bytes:
    """A small JPEG, optionally CMYK or carrying an EXIF orientation tag."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        image.save(buf, "JPEG", exif=exif.tobytes())
    else:
        image.save(buf, "JPEG")
    return buf.getvalue()


def giant_header_png(width: int = 60000, height: int = 60000) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` (with a valid CRC) but carries almost no data."""
    data = bytearray(png_bytes(0))
    ihdr = bytearray(data[12:29])  # chunk type + 13 bytes of header
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def build_corpus(root: Path, outside: Path) -> dict[str, str | None]:
    """Write the corpus; return ``path -> expected reason fragment`` (None: accepted, normalised)."""
    expected: dict[str, str | None] = {}

    def put(rel: str, data: bytes, reason: str | None) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        expected[rel] = reason

    for i in range(3):
        put(f"shirt/good-{i}.png", png_bytes(10 + i), None)
        put(f"coat/good-{i}.png", png_bytes(20 + i, mode="RGB"), None)
    put("shirt/empty.png", b"", "empty file (0 bytes)")
    put("shirt/truncated.png", png_bytes(30, size=64)[:300], "truncated or corrupt")
    put("coat/truncated.jpg", jpeg_bytes(31, (64, 64))[:400], "truncated or corrupt")
    put("coat/notes.jpg", b"these are my notes, not a photo\n", "not an image")
    put("coat/cmyk.jpg", jpeg_bytes(32, mode="CMYK"), None)
    deep = io.BytesIO()
    Image.fromarray(np.arange(256, dtype=np.uint16).reshape(16, 16) * 257).save(deep, "PNG")
    put("shirt/sixteen-bit.png", deep.getvalue(), None)
    palette = io.BytesIO()
    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).convert("P").save(palette, "PNG", transparency=0)
    put("shirt/palette-transparent.png", palette.getvalue(), None)
    put("shirt/huge-header.png", giant_header_png(), "header claims 3600000000 pixels")
    put("coat/sub/dir/nested.png", png_bytes(40), None)
    put("shirt/my shirt ünïcödé.png", png_bytes(41), None)
    put("coat/rotated.jpg", jpeg_bytes(42, (32, 16), exif_orientation=6), None)
    put("lonely/only-one.png", png_bytes(43), None)
    put("shirt/dup.png", png_bytes(44), None)
    put("coat/dup-copy.png", png_bytes(44), None)
    put("stray.png", png_bytes(45), "file in the dataset root")
    put(".DS_Store", b"\x00\x00\x00\x01Bud1", None)
    put("shirt/.hidden.png", png_bytes(46), None)
    (root / "empty_class").mkdir()
    outside.write_bytes(png_bytes(47))
    (root / "coat" / "link-outside.png").symlink_to(outside)
    expected["coat/link-outside.png"] = "symlink points outside the dataset"
    return expected
