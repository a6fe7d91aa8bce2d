"""Pre-fill of the hole before sampling: what the model sees there at 1–4 steps instead of the old content.

``neutral`` paints the known pixels' mean colour, ``blur`` a push-pull (pyramid) fill that carries the border's
colours smoothly inwards (Gortler et al. 1996, "The Lumigraph", §3.5 pull-push), ``telea`` OpenCV's fast-marching
inpainting (Telea 2004; needs ``opencv-python-headless``, an optional dependency). Soft mask values blend:
out = (1 − m)·image + m·fill, so pixels where m = 0 are returned bit for bit.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

PREFILLS = ("none", "neutral", "blur", "telea")
NEUTRAL_GREY = 0.5  # what a fill falls back to when nothing of the image is known


def prefill(image: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """IMAGE (B,H,W,C) with its hole (MASK (B,H,W), 1 = hole) pre-filled by ``mode`` (one of ``PREFILLS``)."""
    if mode not in PREFILLS:
        raise ValueError(f"prefill: {mode!r} is not one of {list(PREFILLS)}")
    if mode == "none" or not bool((mask > 0).any()):
        return image
    m = mask[..., None].to(image.dtype)  # BHW1
    fill = {"neutral": neutral_fill, "blur": push_pull_fill, "telea": telea_fill}[mode](image, mask)
    return torch.where(m == 0, image, image * (1 - m) + fill * m)


def neutral_fill(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Every pixel the known region's mean colour, weighted by 1 − m (grey where nothing is known)."""
    known = (1 - mask)[..., None].to(image.dtype)
    total = known.sum(dim=(1, 2), keepdim=True)
    mean = (image * known).sum(dim=(1, 2), keepdim=True) / total.clamp(min=1e-6)
    mean = torch.where(total > 0, mean, torch.full_like(mean, NEUTRAL_GREY))
    return mean.expand_as(image)


def push_pull_fill(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Pull-push: average known colour and known weight down a ×2 pyramid, then fill each level's unknown
    share from the coarser level on the way back up (bilinear), so the fill is the border's colours, smoothed."""
    weight = (1 - mask)[:, None].to(image.dtype)  # B1HW, 1 = known
    colour = image.permute(0, 3, 1, 2) * weight
    levels = [(colour, weight)]
    while min(levels[-1][1].shape[-2:]) > 1:
        c, w = levels[-1]
        levels.append((F.avg_pool2d(c, 2, ceil_mode=True), F.avg_pool2d(w, 2, ceil_mode=True)))
    c, w = levels[-1]
    filled = torch.where(w > 0, c / w.clamp(min=1e-6), torch.full_like(c, NEUTRAL_GREY))
    for c, w in reversed(levels[:-1]):
        coarse = F.interpolate(filled, size=c.shape[-2:], mode="bilinear", align_corners=False)
        filled = c + (1 - w) * coarse  # c is the known share's colour, (1 − w) the unknown share
    return filled.permute(0, 2, 3, 1).clamp(0.0, 1.0)


def telea_fill(image: torch.Tensor, mask: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """OpenCV's Telea fast-marching inpainting of the pixels where m > 0 (8-bit, per image)."""
    try:
        import cv2
    except ImportError as error:
        raise RuntimeError("prefill: 'telea' needs OpenCV: pip install opencv-python-headless "
                           "(or pick 'blur', which needs nothing)") from error
    import numpy as np

    out = []
    for b in range(image.shape[0]):
        rgb = (image[b].detach().cpu().float().clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        hole = ((mask[b] > 0).cpu().numpy() * 255).astype(np.uint8)
        channels = rgb.shape[-1]
        if channels not in (1, 3):  # OpenCV inpaints 1 or 3 channels: do them one by one
            filled = np.stack([cv2.inpaint(rgb[..., i].copy(), hole, radius, cv2.INPAINT_TELEA)
                               for i in range(channels)], axis=-1)
        else:
            filled = cv2.inpaint(rgb, hole, radius, cv2.INPAINT_TELEA).reshape(rgb.shape)
        out.append(torch.from_numpy(filled.astype(np.float32) / 255.0))
    return torch.stack(out).to(image.device, image.dtype)
