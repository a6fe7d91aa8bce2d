"""Build a random-weight SD1.5-architecture checkpoint that ComfyUI's CheckpointLoaderSimple accepts.

Runs with ComfyUI's Python and uses ComfyUI's own classes (nothing of ComfyUI is copied here)::

    python tests/support/build_tiny_checkpoint.py --comfyui $COMFYUI_DIR --out tiny.safetensors [--levels 2]

UNet: LDM layout, model_channels 320, context_dim 768 (what SD1.5 detection keys on), 1 or 2
levels. VAE: TAESD layout (``taesd_encoder.*``/``taesd_decoder.*``). Text encoder: CLIP ViT-L/14
text tower with random weights (it cannot shrink: detection needs 768-d, 12 layers). Random
weights test plumbing, shapes and timing, not image quality.
"""
from __future__ import annotations

import argparse
import math
import os
import sys


def init_uninitialised(module, generator) -> None:
    """ComfyUI's ops leave weights as torch.empty: give every tensor a finite, fan-in scaled value."""
    import torch

    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 0:
                continue
            if name.endswith("bias"):
                p.zero_()
            elif p.ndim == 1:
                p.fill_(1.0)
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=generator) / math.sqrt(fan_in))


def build_unet(levels: int):
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    return UNetModel(
        image_size=32, in_channels=4, model_channels=320, out_channels=4, num_res_blocks=1,
        channel_mult=[1, 2][:levels], num_heads=8, use_spatial_transformer=True,
        transformer_depth=[1] * levels, transformer_depth_output=[1] * (2 * levels),
        transformer_depth_middle=1, context_dim=768, use_linear_in_transformer=False, legacy=False,
    )


def build(levels: int, seed: int = 0) -> dict:
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    import comfy.taesd.taesd

    generator = torch.Generator().manual_seed(seed)
    sd = {}
    unet = build_unet(levels)
    init_uninitialised(unet, generator)
    sd.update({f"model.diffusion_model.{k}": v for k, v in unet.state_dict().items()})

    vae = comfy.taesd.taesd.TAESD(latent_channels=4)
    init_uninitialised(vae, generator)
    for k, v in vae.state_dict().items():
        sd[f"first_stage_model.{k}"] = v

    torch.manual_seed(seed)
    config = CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                            num_hidden_layers=12, projection_dim=768, hidden_act="quick_gelu")
    clip = CLIPTextModel(config)  # the ViT-L/14 text tower of SD1.5: 768-d, 12 layers
    for k, v in clip.state_dict().items():
        key = k if k.startswith("text_model.") else f"text_model.{k}"
        sd[f"cond_stage_model.transformer.{key}"] = v.to(torch.float16)
    return {k: v.contiguous() for k, v in sd.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", required=True, help="ComfyUI checkout")
    parser.add_argument("--out", required=True)
    parser.add_argument("--levels", type=int, default=1, choices=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.comfyui))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    from safetensors.torch import save_file

    sd = build(args.levels, args.seed)
    tmp = args.out + ".tmp"
    save_file(sd, tmp)
    os.replace(tmp, args.out)
    params = sum(v.numel() for k, v in sd.items() if k.startswith("model.diffusion_model."))
    print(f"wrote {args.out}: UNet {params / 1e6:.1f} M parameters, {levels_text(args.levels)}")
    return 0


def levels_text(levels: int) -> str:
    return "1 level (320)" if levels == 1 else "2 levels (320/640)"


if __name__ == "__main__":
    sys.exit(main())
