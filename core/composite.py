"""Pixel-space exact composite: the known region of the output is the input image, bit for bit."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .masks import (
    aspect_matches,
    as_b1hw,
    border_band,
    check_finite,
    check_mask_range,
    feather_inward,
    fit_mask,
    grow,
    match_batch,
)

MAX_CROP_SLACK = 64
STD_RATIO_LIMITS = (0.5, 2.0)
STD_FLOOR = 0.02
RING_SKIP_PX = 8


def compositing_mask(
    mask: torch.Tensor, size_hw: tuple[int, int], batch: int, *, grow_px: int = 0, feather_px: int = 0
) -> torch.Tensor:
    """The (B,1,H,W) mask actually used: fitted to the image, grown (or shrunk), feathered inward."""
    m = check_mask_range(as_b1hw(mask, "mask"), "mask")
    m = fit_mask(m, size_hw, "mask")
    m = match_batch(m, batch, "mask")
    m = grow(m, grow_px)
    return feather_inward(m, feather_px).clamp(0.0, 1.0)


def align_generated(generated: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Bring a (B,H,W,C) decoded image to the original's size.

    A VAE round trip crops sides to multiples of its factor (centred), so a slightly smaller image
    is put back at the crop offset and its border replicated; a different size of the same
    aspect ratio is resized bilinearly; anything else is an error naming ``generated``.
    """
    gh, gw = int(generated.shape[1]), int(generated.shape[2])
    h, w = size_hw
    if (gh, gw) == (h, w):
        return generated
    if 0 <= h - gh < MAX_CROP_SLACK and 0 <= w - gw < MAX_CROP_SLACK:
        top, left = (h - gh) // 2, (w - gw) // 2
        nchw = generated.permute(0, 3, 1, 2)
        padded = F.pad(nchw, (left, w - gw - left, top, h - gh - top), mode="replicate")
        return padded.permute(0, 2, 3, 1)
    if aspect_matches((gh, gw), (h, w)):
        nchw = F.interpolate(generated.permute(0, 3, 1, 2), size=(h, w), mode="bilinear", align_corners=False)
        return nchw.permute(0, 2, 3, 1).clamp(0.0, 1.0)
    raise ValueError(
        f"generated: {gw}×{gh} cannot be aligned with the {w}×{h} original (different aspect ratio)"
    )


def match_colors(
    generated: torch.Tensor, original: torch.Tensor, hole: torch.Tensor, band_px: int
) -> torch.Tensor:
    """Per-channel mean/std transfer measured where both images show the same content.

    The ring starts ``RING_SKIP_PX`` outside the hole (the latent blend's soft edge reaches about
    one latent pixel out) and is ``band_px`` wide; differences there are the VAE/model tone shift.
    Images are (B,H,W,C), ``hole`` (B,1,H,W); an image without ring pixels is returned unchanged.
    """
    band = border_band(hole, band_px, skip=RING_SKIP_PX)[:, 0]  # BHW bool
    out = generated.clone()
    for b in range(generated.shape[0]):
        ring = band[b]
        if int(ring.sum()) < 2:
            continue
        g, o = generated[b][ring], original[b][ring]  # (N,C)
        ratio = ((o.std(0) + STD_FLOOR) / (g.std(0) + STD_FLOOR)).clamp(*STD_RATIO_LIMITS)
        out[b] = ((generated[b] - g.mean(0)) * ratio + o.mean(0)).clamp(0.0, 1.0)
    return out


def exact_composite(
    original: torch.Tensor,
    generated: torch.Tensor,
    mask: torch.Tensor,
    *,
    grow_px: int = 0,
    feather_px: int = 0,
    color_match: float = 0.0,
    band_px: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite ``generated`` into ``original`` (IMAGE tensors, (B,H,W,C) in [0, 1]).

    Returns (image, mask used as (B,H,W)). Wherever the used mask is 0 the output equals
    ``original`` bit for bit; ``color_match`` ∈ [0, 1] blends in a colour-statistics correction of
    the filled pixels measured on a ring of ``band_px`` known pixels around the hole.
    """
    _check_image(original, "original")
    _check_image(generated, "generated")
    if original.shape[-1] != generated.shape[-1]:
        raise ValueError(
            f"generated: has {generated.shape[-1]} channels but original has {original.shape[-1]}"
        )
    if not 0.0 <= color_match <= 1.0:
        raise ValueError(f"color_match: must lie in [0, 1], got {color_match}")
    batch = max(original.shape[0], generated.shape[0])
    original_b = match_batch(original, batch, "original", target="generated")
    h, w = int(original.shape[1]), int(original.shape[2])
    generated_b = match_batch(align_generated(generated, (h, w)), batch, "generated", target="original")
    used = compositing_mask(mask, (h, w), batch, grow_px=grow_px, feather_px=feather_px)
    if not bool((used > 0).any()):
        return original_b.clone(), used[:, 0]
    if color_match > 0:
        band = band_px if band_px is not None else max(4, round(0.05 * min(h, w)))
        corrected = match_colors(generated_b, original_b, used, band)
        generated_b = torch.lerp(generated_b, corrected, color_match)
    m = used.permute(0, 2, 3, 1).to(original_b.dtype)  # BHW1
    mixed = torch.lerp(original_b, generated_b.to(original_b.dtype), m)  # exact where generated == original
    out = torch.where(m == 0, original_b, mixed)
    return out, used[:, 0]


def _check_image(image: torch.Tensor, name: str) -> None:
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"{name}: expected an IMAGE of shape (B,H,W,C), got {shape}")
    check_finite(image, name)
