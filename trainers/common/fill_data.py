"""Inpainting datasets: ``name.png`` + ``name_mask.png`` (white = hole) + ``name.txt`` caption.

The layout written by ``trainers.region_dataset``; missing masks or captions are skipped and
reported once, before training starts (a run never stops on a bad sample).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data import DataError
from .images import IMAGE_SUFFIXES, centre_square

MASK_SUFFIX = "_mask"
log = logging.getLogger(__name__)


@dataclass
class FillItem:
    image: Path
    mask: Path
    caption: str


def mask_path(image: Path) -> Path | None:
    """``name_mask.png`` (or another image suffix) beside ``name.ext``, if present."""
    for suffix in (".png", ".webp", ".bmp", ".jpg", ".jpeg"):
        candidate = image.with_name(f"{image.stem}{MASK_SUFFIX}{suffix}")
        if candidate.is_file():
            return candidate
    return None


def _readable(path: Path) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.verify()
    except Exception as err:  # PIL raises many types for broken files
        return str(err)
    return None


def scan_fill_dataset(folder: str | Path, default_caption: str = "", what: str = "images_dir"
                      ) -> tuple[list[FillItem], list[str]]:
    """Usable (image, mask, caption) samples and one line per skipped image."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{what}: {folder} is not a folder")
    items, skipped = [], []
    images = sorted(p for p in folder.iterdir()
                    if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith(MASK_SUFFIX))
    for path in images:
        mask = mask_path(path)
        caption_file = path.with_suffix(".txt")
        caption = caption_file.read_text(encoding="utf-8").strip() if caption_file.is_file() else ""
        caption = caption or default_caption
        problem = None
        if mask is None:
            problem = f"no mask ({path.stem}{MASK_SUFFIX}.png)"
        elif not caption:
            problem = "no caption (.txt) and no default_caption"
        else:
            err = _readable(path) or _readable(mask)
            problem = f"unreadable image or mask ({err})" if err else None
        if problem:
            skipped.append(f"{path.name}: {problem}")
            continue
        items.append(FillItem(path, mask, caption))
    for line in skipped:
        log.warning("skipped %s", line)
    if not items:
        raise DataError(f"{what}: {folder} holds no usable image/mask/caption samples ({len(skipped)} skipped)")
    return items, skipped


def load_mask(path: Path, resolution: int) -> torch.Tensor:
    """(1,R,R) hole mask in {0, 1}: centre-cropped like ``load_image``, nearest resize, white (> 127) = hole."""
    from PIL import Image

    with Image.open(path) as img:
        img = centre_square(img.convert("L"), resolution, Image.NEAREST)
        return torch.from_numpy((np.asarray(img) > 127).astype(np.float32))[None]
