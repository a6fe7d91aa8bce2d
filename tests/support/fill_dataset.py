"""Training folders from scikit-image's bundled photos: plain (name.png, one with a .txt caption) and for TurboFill
(name.png + name_mask.png with random shapes, white = hole, + name.txt)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.random_masks import shape_mask


PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "cat", "hubble_deep_field", "retina",
          "immunohistochemistry", "colorwheel", "page", "horse")


def save_photos(folder: Path) -> Path:
    """scikit-image's bundled photos as an image folder (RGB PNGs; astronaut.png has a .txt caption)."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        img = getattr(data, name)()
        img = np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]
        if img.dtype != np.uint8:
            img = (img.astype(np.float32) / img.max() * 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{name}.png")
    (folder / "astronaut.txt").write_text("a photo of an astronaut in a white suit")
    return folder


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
