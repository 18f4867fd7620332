"""Opening images safely and normalising every supported mode to 8-bit RGB."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

# Modes with more than 8 bits per sample: scaled down to 8 bits, not clipped.
_WIDE_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


class ImageTooLarge(ValueError):
    """The header claims more pixels than allowed; raised before any pixel is decoded."""


def open_checked(path: Path | BinaryIO, max_pixels: int) -> Image.Image:
    """Open lazily (a path or the bytes already read) and refuse images whose header claims more than
    ``max_pixels`` (nothing is allocated)."""
    with warnings.catch_warnings():
        # Pillow warns, then raises, above its own bomb limit; our own limit below names the file instead.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(path)
        except Image.DecompressionBombError as exc:
            # Pillow refuses before exposing the size; its message carries the pixel count.
            claimed = re.search(r"\((\d+) pixels\)", str(exc))
            raise ImageTooLarge(_too_large(int(claimed[1]) if claimed else None, max_pixels)) from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageTooLarge(_too_large(width * height, max_pixels, f"{width}x{height} = "))
    return image


def _too_large(pixels: int | None, max_pixels: int, dims: str = "") -> str:
    claim = f"{dims}{pixels} pixels" if pixels else "more pixels than Pillow allows"
    return f"image too large: header claims {claim}, over validate.max_pixels={max_pixels}; not decoded"


def to_rgb(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation and convert any mode to RGB.

    16-bit and 32-bit grey are rescaled to 8 bits; transparency (RGBA, LA, palette with a transparent
    index) is composited onto black, the same fill the augmentations use; CMYK and YCbCr go through
    Pillow's conversions. Decodes the whole image; an RGB image without an orientation to apply is returned as
    it is (transposed in place otherwise), not copied: a copy was a third of validation's time on photos.
    """
    ImageOps.exif_transpose(image, in_place=True)
    if image.mode in _WIDE_MODES:
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
        grey = np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if (image.mode == "P" and "transparency" in image.info) or image.mode in ("LA", "PA", "RGBA", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def load_rgb_array(path: Path, max_pixels: int = 50_000_000) -> np.ndarray:
    """Decode ``path`` into an HxWx3 uint8 array, normalised as :func:`to_rgb` describes."""
    with open_checked(path, max_pixels) as image:
        return np.asarray(to_rgb(image))
