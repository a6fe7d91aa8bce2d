"""Progress, TensorBoard scalars and image previews for trainers (main process only)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def image_grid(rows: list[torch.Tensor]) -> np.ndarray:
    """Rows of (B,3,H,W) images in [0, 1] → one uint8 (H·rows, W·B, 3) array."""
    lines = [torch.cat(list(r.clamp(0, 1).float().cpu()), dim=2) for r in rows]  # (3,H,W·B)
    grid = torch.cat(lines, dim=1)
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def save_preview(path: str | Path, rows: list[torch.Tensor]) -> np.ndarray:
    """Write a PNG grid (atomically) and return the array."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = image_grid(rows)
    tmp = path.with_name(f".{path.name}.tmp.png")
    Image.fromarray(grid).save(tmp)
    tmp.replace(path)
    return grid


def log_images(accelerator, tag: str, grid: np.ndarray, step: int) -> None:
    """Send an HWC uint8 image to the TensorBoard tracker, if one is active."""
    for tracker in getattr(accelerator, "trackers", []):
        writer = getattr(tracker, "writer", None)
        if writer is not None and hasattr(writer, "add_image"):
            writer.add_image(tag, grid, step, dataformats="HWC")
