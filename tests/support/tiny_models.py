"""Tiny random diffusers models built offline for CPU tests (docs/methods.md §6)."""
from __future__ import annotations

import numpy as np
import torch


def tiny_unet(seed: int = 0, cross_attention_dim: int = 32):
    """SD-style ε-prediction UNet: 2 levels (32, 64), cross-attention at the second, ~0.5 M parameters."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=8,
    )
    return unet.eval()


def tiny_vae(seed: int = 0):
    """AutoencoderKL with 8× downsampling (4 blocks), 4 latent channels."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8, layers_per_block=1,
        block_out_channels=(8, 16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )
    return vae.eval()


def unet_eps_fn(unet, context: torch.Tensor):
    """eps_fn(x, t) for core.denoiser.EpsDenoiser, with a fixed text context."""

    def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return unet(x, t, encoder_hidden_states=context.expand(x.shape[0], -1, -1)).sample

    return eps_fn


def astronaut(size: int = 64) -> torch.Tensor:
    """scikit-image's astronaut as an IMAGE tensor (1,H,W,3) in [0, 1]."""
    from skimage import data
    from skimage.transform import resize

    img = resize(data.astronaut(), (size, size), anti_aliasing=True)
    return torch.from_numpy(np.asarray(img, dtype=np.float32))[None]


def encode(vae, image: torch.Tensor) -> torch.Tensor:
    """IMAGE (B,H,W,3) in [0, 1] → latent mean (B,4,H/8,W/8)."""
    with torch.no_grad():
        return vae.encode(image.permute(0, 3, 1, 2) * 2 - 1).latent_dist.mean


def decode(vae, latent: torch.Tensor) -> torch.Tensor:
    """Latent → IMAGE (B,H,W,3) in [0, 1]."""
    with torch.no_grad():
        return ((vae.decode(latent).sample.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1)
