"""Small PNG renderings for dashboards (pure: data in, PNG bytes out), drawn with Pillow."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

CELL, MARGIN = 34, 110


def confusion_png(matrix: list[list[int]], classes: list[str]) -> bytes:
    """A confusion-matrix heatmap: rows = true class, columns = predicted, counts in the cells."""
    n = len(classes)
    size = MARGIN + CELL * n + 10
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        draw.text((4, MARGIN + CELL * i + CELL // 3), classes[i][:16], fill="black")
        for j, count in enumerate(row):
            shade = int(255 - 200 * count / peak)
            box = (MARGIN + CELL * j, MARGIN + CELL * i, MARGIN + CELL * (j + 1) - 1, MARGIN + CELL * (i + 1) - 1)
            draw.rectangle(box, fill=(shade, shade, 255) if i != j else (shade, 255, shade))
            draw.text((box[0] + 6, box[1] + CELL // 3), str(count), fill="black")
    for j, name in enumerate(classes):
        draw.text((MARGIN + CELL * j + 2, MARGIN - 14 - 12 * (j % 2)), name[:6], fill="black")
    draw.text((4, 4), "rows: true class, columns: predicted", fill="black")
    return _png(image)


def curves_png(history: list[dict[str, float]], keys: tuple[str, ...] = ("train_loss", "val_accuracy")) -> bytes:
    """Training curves per epoch, each series scaled to its own range (labels give min and max)."""
    width, height, pad = 480, 260, 40
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((pad, pad, width - pad, height - pad), outline="black")
    colours = ["#d62728", "#1f77b4", "#2ca02c"]
    epochs = [row["epoch"] for row in history]
    for n, key in enumerate(k for k in keys if all(k in row for row in history)):
        values = [row[key] for row in history]
        low, high = min(values), max(values)
        span = (high - low) or 1.0
        x = [pad + (width - 2 * pad) * (e - epochs[0]) / max(epochs[-1] - epochs[0], 1) for e in epochs]
        y = [height - pad - (height - 2 * pad) * (v - low) / span for v in values]
        draw.line(list(zip(x, y, strict=True)), fill=colours[n % 3], width=2)
        draw.text((pad + 150 * n, 10), f"{key} {low:.3f}–{high:.3f}", fill=colours[n % 3])
    draw.text((pad, height - pad + 8), f"epoch {epochs[0]} … {epochs[-1]}", fill="black")
    return _png(image)


def augmentation_grid_png(
    images: list[np.ndarray], augment: dict[str, Any], variants: int = 5, tile: int = 64, seed: int = 0
) -> bytes:
    """One row per image: the original, then ``variants`` draws of the params' albumentations pipeline."""
    import albumentations as A

    from headstart.library.data.transforms import load_augmentations

    pipeline = load_augmentations(augment)
    if pipeline is not None:
        pipeline.set_random_seed(seed)  # the same preview for the same params
    grid = Image.new("RGB", ((variants + 1) * (tile + 4) + 4, len(images) * (tile + 4) + 20), "white")
    ImageDraw.Draw(grid).text((4, 4), f"original, then {variants} augmented draws", fill="black")
    resize = A.Resize(tile, tile)
    for row, image in enumerate(images):
        draws = [image] + [pipeline(image=image)["image"] if pipeline else image for _ in range(variants)]
        for col, drawn in enumerate(draws):
            grid.paste(Image.fromarray(resize(image=drawn)["image"]), (4 + col * (tile + 4), 20 + row * (tile + 4)))
    return _png(grid)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def labelled_tiles_png(images: list[np.ndarray], captions: list[str], tile: int = 72, per_row: int = 6) -> bytes:
    """Images as tiles with a caption under each (the health page's suspected label errors: given → suggested)."""
    rows = (len(images) + per_row - 1) // per_row
    cell_w, cell_h = tile + 60, tile + 30
    sheet = Image.new("RGB", (per_row * cell_w + 4, rows * cell_h + 4), "white")
    draw = ImageDraw.Draw(sheet)
    for n, (array, caption) in enumerate(zip(images, captions, strict=True)):
        x, y = 4 + (n % per_row) * cell_w, 4 + (n // per_row) * cell_h
        sheet.paste(Image.fromarray(array).convert("RGB").resize((tile, tile), Image.NEAREST), (x + 30, y))
        draw.text((x, y + tile + 4), caption[:22], fill="black")
    return _png(sheet)


def markdown_image(png: bytes, alt: str) -> str:
    """Markdown with the PNG inline as a data URI (Prefect's image artifact takes only a URL)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"
