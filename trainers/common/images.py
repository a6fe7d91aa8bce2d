"""Image-folder datasets: ``name.png`` (+ optional ``name.txt`` caption), checked once, skipped with a report."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
log = logging.getLogger(__name__)


@dataclass
class ImageItem:
    path: Path
    caption: str


def scan_images(folder: str | Path, default_caption: str = "",
                what: str = "images_dir") -> tuple[list[ImageItem], list[str]]:
    """Readable images with their captions, and one line per skipped file (never raises mid-run)."""
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{what}: {folder} is not a folder")
    items, skipped = [], []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        caption_file = path.with_suffix(".txt")
        caption = caption_file.read_text(encoding="utf-8").strip() if caption_file.is_file() else ""
        caption = caption or default_caption
        if not caption:
            skipped.append(f"{path.name}: no caption (.txt) and no default_caption")
            continue
        try:
            with Image.open(path) as img:
                img.verify()
        except Exception as err:  # PIL raises many types for broken files
            skipped.append(f"{path.name}: unreadable image ({err})")
            continue
        items.append(ImageItem(path, caption))
    for line in skipped:
        log.warning("skipped %s", line)
    if not items:
        raise DataError(f"{what}: {folder} holds no usable images ({len(skipped)} skipped)")
    return items, skipped


def centre_square(img, resolution: int, resample):
    """A PIL image centre-cropped to a square and resized to ``resolution``² (images and their masks alike)."""
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    return img.crop((left, top, left + side, top + side)).resize((resolution, resolution), resample)


def load_image(path: Path, resolution: int) -> torch.Tensor:
    """(3,R,R) float in [0, 1]: RGB, centre-cropped to a square, resized with Lanczos."""
    from PIL import Image

    with Image.open(path) as img:
        img = centre_square(img.convert("RGB"), resolution, Image.LANCZOS)
        return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
