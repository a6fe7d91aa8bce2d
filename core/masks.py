"""Mask handling shared by every node: shape/batch rules, resizing to latents, grow/shrink/feather.

Convention everywhere: ``m = 1`` marks the hole (regenerate), ``m = 0`` the known region (keep),
soft values in between (comfyui-api.md §3; docs/methods.md §0.3).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ASPECT_TOLERANCE = 0.02


def as_b1hw(mask: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """Accept a MASK as (H,W), (B,H,W) or (B,1,H,W) and return float32 (B,1,H,W)."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor, got {type(mask).__name__}")
    if mask.ndim == 2:
        mask = mask[None, None]
    elif mask.ndim == 3:
        mask = mask[:, None]
    elif mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"{name}: expected shape (H,W), (B,H,W) or (B,1,H,W), got {tuple(mask.shape)}")
    if mask.shape[-1] == 0 or mask.shape[-2] == 0 or mask.shape[0] == 0:
        raise ValueError(f"{name}: empty mask of shape {tuple(mask.shape)}")
    return mask.to(torch.float32)


def check_finite(tensor: torch.Tensor, name: str) -> None:
    """Raise a ValueError naming the input when it holds NaN or ±inf."""
    if not torch.isfinite(tensor).all():
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{name}: contains {bad} NaN/inf value(s); fix the upstream node")


def check_mask_range(mask: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """Finite check, then clamp to [0, 1] (masks from arithmetic nodes can overshoot slightly)."""
    check_finite(mask, name)
    return mask.clamp(0.0, 1.0)


def match_batch(tensor: torch.Tensor, batch: int, name: str, target: str = "image") -> torch.Tensor:
    """Batch rule: 1 → broadcast; equal → as is; a divisor of the target batch → cycled; larger → error."""
    have = tensor.shape[0]
    if have == batch:
        return tensor
    if have == 1:
        return tensor.expand(batch, *tensor.shape[1:])
    if have < batch and batch % have == 0:
        return tensor.repeat(batch // have, *([1] * (tensor.ndim - 1)))
    raise ValueError(f"{name}: batch of {have} does not fit the {target} batch of {batch}; "
                     + batch_advice(name, have, target, batch))


def batch_advice(name: str, have: int, target: str, batch: int) -> str:
    """What to do about a batch mismatch, in the user's terms."""
    if batch == 1:
        return (f"give one {name}, or repeat the {target} {have} times (Repeat Image Batch / Repeat Latent Batch) "
                f"to get one result per {name}")
    sizes = [d for d in range(1, batch + 1) if batch % d == 0]
    listed = ", ".join(map(str, sizes[:-1])) + f" or {sizes[-1]}"
    return f"use a {name} batch of {listed} (smaller batches are repeated)"


def aspect_matches(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> bool:
    """True when resizing src to dst keeps the aspect ratio within 2 % or within one destination pixel."""
    (sh, sw), (dh, dw) = src_hw, dst_hw
    scaled_h = sh * dw / sw
    return abs(scaled_h - dh) <= max(1.0, ASPECT_TOLERANCE * dh)


def encode_crop_box(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The centred crop a VAE encoder applies to sides that are not multiples of its factor.

    Returns (top, left, height, width) in source pixels when ``src`` is an image whose encoder
    crop maps exactly onto ``dst`` (ComfyUI's ``vae_encode_crop_pixels``), else None.
    """
    (sh, sw), (dh, dw) = src_hw, dst_hw
    factor = sh // dh if dh else 0
    if factor < 2 or sw // factor != dw or sh // factor != dh:
        return None
    if sh % factor == 0 and sw % factor == 0:
        return None
    return (sh % factor) // 2, (sw % factor) // 2, dh * factor, dw * factor


def fit_mask(mask_b1hw: torch.Tensor, size_hw: tuple[int, int], name: str = "mask",
             target: str = "image") -> torch.Tensor:
    """Resize a (B,1,H,W) mask to ``size_hw`` bilinearly (soft edges kept), validating the aspect ratio.

    Constant masks (all 0, all 1, …) fit any size.
    A pixel mask for an image whose sides are not multiples of the latent factor is first cropped
    the way the VAE encoder crops the image, so the mask stays aligned with the latent.
    """
    src_hw = (int(mask_b1hw.shape[-2]), int(mask_b1hw.shape[-1]))
    size_hw = (int(size_hw[0]), int(size_hw[1]))
    if src_hw == size_hw:
        return mask_b1hw
    flat = mask_b1hw.flatten(1)
    if bool((flat == flat[:, :1]).all()):
        # A constant mask fits any size: e.g. Load Image's 64×64 zeros for a picture without alpha.
        return flat[:, :1, None, None].expand(-1, 1, *size_hw).clone()
    box = encode_crop_box(src_hw, size_hw)
    if box is not None:
        top, left, h, w = box
        mask_b1hw = mask_b1hw[..., top : top + h, left : left + w]
    elif not aspect_matches(src_hw, size_hw):
        raise ValueError(f"{name}: {src_hw[1]}×{src_hw[0]} px ({_ratio(*src_hw)}) does not match "
                         + _target_words(size_hw, target) + "; give a mask made for this image, or resize both alike")
    resized = F.interpolate(mask_b1hw, size=size_hw, mode="bilinear", align_corners=False)
    return resized.clamp(0.0, 1.0)


def _ratio(h: int, w: int) -> str:
    """Width:height in small numbers (16:9), else as a decimal (1.37:1)."""
    g = math.gcd(w, h)
    return f"{w // g}:{h // g}" if max(w, h) // g <= 32 else f"{w / h:.2f}:1"


def _target_words(size_hw: tuple[int, int], target: str) -> str:
    """The size a mask must fit, in the user's terms: image pixels, or the image behind a latent."""
    h, w = size_hw
    if target == "latent":
        return f"the image behind the latent ({_ratio(h, w)}; a {w}×{h} latent is {8 * w}×{8 * h} px with an 8× VAE)"
    return f"the {target}'s {w}×{h} px ({_ratio(h, w)})"


def mask_for_latent(mask: torch.Tensor, latent_shape: torch.Size, name: str = "mask") -> torch.Tensor:
    """A MASK fitted to a latent (B,C,h,w): (B,1,h,w), bilinear, batch-matched, values in [0, 1]."""
    m = check_mask_range(as_b1hw(mask, name), name)
    m = fit_mask(m, (latent_shape[-2], latent_shape[-1]), name, target="latent")
    return match_batch(m, latent_shape[0], name, target="latent")


def grow(mask_b1hw: torch.Tensor, pixels: int) -> torch.Tensor:
    """Dilate (pixels > 0) or erode (pixels < 0) by a square max-pool of radius |pixels|."""
    if pixels == 0:
        return mask_b1hw
    r = abs(pixels)
    k = 2 * r + 1
    if pixels > 0:
        return F.max_pool2d(F.pad(mask_b1hw, (r, r, r, r), mode="replicate"), k, stride=1)
    return -F.max_pool2d(F.pad(-mask_b1hw, (r, r, r, r), mode="replicate"), k, stride=1)


def gaussian_blur(mask_b1hw: torch.Tensor, radius: int) -> torch.Tensor:
    """Separable Gaussian blur, σ = radius/2, kernel 2·radius+1, replicate padding."""
    if radius <= 0:
        return mask_b1hw
    sigma = radius / 2.0
    x = torch.arange(-radius, radius + 1, dtype=mask_b1hw.dtype, device=mask_b1hw.device)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    out = F.pad(mask_b1hw, (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1))
    out = F.pad(out, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(out, kernel.view(1, 1, -1, 1))


def feather_inward(mask_b1hw: torch.Tensor, radius: int) -> torch.Tensor:
    """Soften the hole's edge inside the hole only: min(blur(m, radius), m).

    Pixels where m = 0 stay exactly 0, so feathering never touches the known region; thin holes
    are weakened, never erased.
    """
    if radius <= 0:
        return mask_b1hw
    return torch.minimum(gaussian_blur(mask_b1hw, radius), mask_b1hw)


def border_band(hole_b1hw: torch.Tensor, width: int, skip: int = 0) -> torch.Tensor:
    """Boolean (B,1,H,W) ring of pixels between ``skip`` and ``skip + width`` pixels outside the hole."""
    hole = (hole_b1hw > 0).to(hole_b1hw.dtype)
    inner = grow(hole, skip) if skip > 0 else hole
    return (grow(hole, skip + width) > 0) & (inner == 0)
