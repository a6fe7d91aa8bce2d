"""Build a random-weight checkpoint that ComfyUI's CheckpointLoaderSimple accepts: the tiny SD1.5-shaped one the
tests use, or a real-size SD2.1 (SD-Turbo) or SDXL (SDXL-Turbo) one for the device suite.

Runs with ComfyUI's Python and uses ComfyUI's own classes (nothing of ComfyUI is copied here)::

    python tests/support/build_tiny_checkpoint.py --comfyui $COMFYUI_DIR --out tiny.safetensors [--levels 2]
    python tests/support/build_tiny_checkpoint.py --comfyui $COMFYUI_DIR --out sdxl.safetensors --arch sdxl \
        --device cuda --dtype fp16

Tiny (``sd15``): UNet in LDM layout, model_channels 320, context_dim 768 (what SD1.5 detection keys on), 1 or 2
levels; VAE in TAESD layout (``taesd_encoder.*``/``taesd_decoder.*``); text encoder the CLIP ViT-L/14 text tower
(it cannot shrink: detection needs 768-d, 12 layers). ``sd21``/``sdxl``: the published UNet shapes (ComfyUI
detects them by these), the SD VAE (diffusers layout, which ComfyUI converts on load) and the real text towers
(ViT-H; ViT-L + bigG) in transformers layout. Random weights test plumbing, shapes and timing, not image quality.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

# Text towers as transformers CLIPTextConfig fields: the published sizes of CLIP ViT-L/14, OpenCLIP ViT-H/14, bigG/14
CLIP_L = {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12,
          "projection_dim": 768, "hidden_act": "quick_gelu"}
CLIP_H = {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16, "num_hidden_layers": 24,
          "projection_dim": 1024, "hidden_act": "gelu"}
CLIP_G = {"hidden_size": 1280, "intermediate_size": 5120, "num_attention_heads": 20, "num_hidden_layers": 32,
          "projection_dim": 1280, "hidden_act": "gelu"}

# The LDM UNet arguments of each architecture (ComfyUI's detection reads these shapes back from the weights);
# transformer depths per block, shallow to deep on both sides (UNetModel pops the output list from its end)
SD15_UNET = {"model_channels": 320, "num_heads": 8, "context_dim": 768, "use_linear_in_transformer": False}
SD21_UNET = {"model_channels": 320, "num_res_blocks": 2, "channel_mult": [1, 2, 4, 4], "num_head_channels": 64,
             "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "transformer_depth_output": [1] * 9 + [0, 0, 0],
             "transformer_depth_middle": 1, "context_dim": 1024, "use_linear_in_transformer": True}
SDXL_UNET = {"model_channels": 320, "num_res_blocks": 2, "channel_mult": [1, 2, 4], "num_head_channels": 64,
             "transformer_depth": [0, 0, 2, 2, 10, 10], "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10],
             "transformer_depth_middle": 10, "context_dim": 2048, "use_linear_in_transformer": True,
             "adm_in_channels": 2816, "num_classes": "sequential"}
# Where each architecture's text towers sit in a single-file checkpoint: (config, prefix of the transformers
# ``text_model.*`` keys, prefix of ``text_projection.weight`` or None where the checkpoint carries no projection)
TEXT_TOWERS = {"sd15": [(CLIP_L, "cond_stage_model.transformer.", None)],
               "sd21": [(CLIP_H, "cond_stage_model.model.transformer.", "cond_stage_model.model.")],
               "sdxl": [(CLIP_L, "conditioner.embedders.0.transformer.", None),
                        (CLIP_G, "conditioner.embedders.1.model.transformer.", "conditioner.embedders.1.model.")]}
ARCHITECTURES = ("sd15", "sd21", "sdxl")
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


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
                p.copy_(torch.randn(p.shape, generator=generator, device=p.device, dtype=p.dtype) / math.sqrt(fan_in))


def unet_arguments(arch: str, levels: int = 1) -> dict:
    """The UNetModel keyword arguments of ``arch`` (``levels`` only shapes the tiny SD1.5 one)."""
    common = {"image_size": 32, "in_channels": 4, "out_channels": 4, "use_spatial_transformer": True,
              "legacy": False}
    if arch == "sd15":
        return {**common, **SD15_UNET, "num_res_blocks": 1, "channel_mult": [1, 2][:levels],
                "transformer_depth": [1] * levels, "transformer_depth_output": [1] * (2 * levels),
                "transformer_depth_middle": 1}
    return {**common, **(SD21_UNET if arch == "sd21" else SDXL_UNET)}


def text_tower_state(fields: dict, text_prefix: str, projection_prefix: str | None, dtype, device,
                     seed: int) -> dict:
    """A random transformers CLIP text tower as checkpoint entries (its projection only where one is kept)."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    kind = CLIPTextModel if projection_prefix is None else CLIPTextModelWithProjection
    with torch.device(device):
        tower = kind(CLIPTextConfig(**fields)).to(dtype)
    sd = {}
    for k, v in tower.state_dict().items():
        key = f"{projection_prefix}{k}" if k.startswith("text_projection.") else \
            f"{text_prefix}{k if k.startswith('text_model.') else 'text_model.' + k}"
        sd[key] = v.to("cpu")
    return sd


def sd_vae_state(dtype, device, seed: int) -> dict:
    """The SD/SDXL VAE (4 latent channels, 128/256/512/512) with random weights, diffusers layout."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    with torch.device(device):
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    return {k: v.to(dtype).to("cpu") for k, v in vae.state_dict().items()}


def build(levels: int, seed: int = 0, arch: str = "sd15", dtype_name: str = "fp32", device: str = "cpu") -> dict:
    import torch

    import comfy.taesd.taesd
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    dtype = getattr(torch, DTYPES[dtype_name])
    generator = torch.Generator(device).manual_seed(seed)
    sd = {}
    unet = UNetModel(**unet_arguments(arch, levels), dtype=dtype, device=device)
    init_uninitialised(unet, generator)
    sd.update({f"model.diffusion_model.{k}": v.to("cpu") for k, v in unet.state_dict().items()})
    del unet
    if arch == "sd15":  # the tests' tiny checkpoint: TAESD, CLIP-L in fp16
        vae = comfy.taesd.taesd.TAESD(latent_channels=4)
        init_uninitialised(vae, generator)
        sd.update({f"first_stage_model.{k}": v for k, v in vae.state_dict().items()})
        sd.update(text_tower_state(*TEXT_TOWERS["sd15"][0], torch.float16, "cpu", seed))
    else:
        sd.update({f"first_stage_model.{k}": v for k, v in sd_vae_state(dtype, device, seed).items()})
        for i, tower in enumerate(TEXT_TOWERS[arch]):
            sd.update(text_tower_state(*tower, dtype, device, seed + 1 + i))
    return {k: v.contiguous() for k, v in sd.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", required=True, help="ComfyUI checkout")
    parser.add_argument("--out", required=True)
    parser.add_argument("--arch", default="sd15", choices=ARCHITECTURES)
    parser.add_argument("--levels", type=int, default=1, choices=[1, 2], help="levels of the tiny sd15 UNet")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES), help="UNet/VAE/text dtype (sd21, sdxl)")
    parser.add_argument("--device", default="cpu", help="where the random weights are drawn (cuda is faster)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.comfyui))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    from safetensors.torch import save_file

    sd = build(args.levels, args.seed, args.arch, args.dtype, args.device)
    tmp = args.out + ".tmp"
    save_file(sd, tmp)
    os.replace(tmp, args.out)
    params = sum(v.numel() for k, v in sd.items() if k.startswith("model.diffusion_model."))
    shape = levels_text(args.levels) if args.arch == "sd15" else f"{args.arch} shapes, {args.dtype}"
    print(f"wrote {args.out}: UNet {params / 1e6:.1f} M parameters, {shape}")
    return 0


def levels_text(levels: int) -> str:
    return "1 level (320)" if levels == 1 else "2 levels (320/640)"


if __name__ == "__main__":
    sys.exit(main())
