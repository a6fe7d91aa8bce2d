"""The single implementation of every inpainting blend in the pack (docs/methods.md §0.4, §1.2)."""
from __future__ import annotations

import torch


def reblend_noise(kept: torch.Tensor, fresh: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """InverFill Re-Blend (Sec. 3.2): z = m⊙ε′ + (1−m)⊙ẑ, normalised by √(m² + (1−m)²).

    ``kept`` and ``fresh`` are independent unit Gaussians; the divisor keeps unit variance on soft
    edges and is exactly 1 where m ∈ {0, 1}, so the known region returns ``kept`` bit for bit and
    the hole returns ``fresh`` bit for bit.
    """
    mask = mask.to(kept.dtype)
    mixed = torch.lerp(kept, fresh.to(kept.dtype), mask)
    norm = torch.sqrt(mask * mask + (1.0 - mask) * (1.0 - mask))
    out = mixed / norm
    out = torch.where(mask == 0, kept, out)
    return torch.where(mask == 1, fresh.to(kept.dtype), out)


def blend_known(generated: torch.Tensor, source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Blended latent diffusion on x̂0 (Avrahami et al. 2023): m⊙x̂0 + (1−m)⊙z_src.

    Where m = 0 the result is ``source`` exactly, even if ``generated`` holds NaN/inf there.
    """
    mask = mask.to(generated.dtype)
    mixed = generated * mask + source * (1.0 - mask)
    return torch.where(mask == 0, source.to(generated.dtype), mixed)


def clear_hole(source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(1−m)⊙z_src: the source with its hole emptied, so a start x = z + σε holds no trace of it."""
    return source * (1.0 - mask.to(source.dtype))


def is_empty_mask(mask: torch.Tensor | None) -> bool:
    """True when a mask exists and asks to regenerate nothing."""
    return mask is not None and not bool((mask > 0).any())
