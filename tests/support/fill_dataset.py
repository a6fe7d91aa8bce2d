"""A TurboFill training folder from photos: name.png + name_mask.png (random shapes, white = hole) + name.txt."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.random_masks import shape_mask


def build_fill_dataset(images: Path, out: Path, seed: int = 0) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    for i, path in enumerate(sorted(images.glob("*.png"))):
        shutil.copy(path, out / path.name)
        with Image.open(path) as img:
            w, h = img.size
        mask = shape_mask(h, w, g, count=(1, 2), area=(0.15, 0.35)).squeeze().numpy()
        Image.fromarray((mask > 0.5).astype(np.uint8) * 255).save(out / f"{path.stem}_mask.png")
        (out / f"{path.stem}.txt").write_text(f"a photo, {path.stem.replace('_', ' ')} number {i}")
    return out
