"""The world's UNets as ComfyUI MODELs, built in-process with ComfyUI's own classes (a model config carrying
the world's UNet settings, BaseModel, ModelPatcher). Needs ComfyUI importable; nothing of it is copied here."""
from __future__ import annotations

import json
from pathlib import Path

import torch


def ldm_unet_config(diffusers: dict) -> dict:
    """ComfyUI's UNetModel settings for a diffusers UNet2DConditionModel config of SD1.5's layout."""
    channels = list(diffusers["block_out_channels"])
    per_level = int(diffusers["layers_per_block"])
    down_attn = [1 if t.startswith("CrossAttn") else 0 for t in diffusers["down_block_types"]]
    up_attn = [1 if t.startswith("CrossAttn") else 0 for t in diffusers["up_block_types"]]
    return {
        "image_size": int(diffusers["sample_size"]), "in_channels": int(diffusers["in_channels"]),
        "out_channels": int(diffusers["out_channels"]), "model_channels": channels[0],
        "num_res_blocks": [per_level] * len(channels), "channel_mult": [c // channels[0] for c in channels],
        "transformer_depth": [d for d in down_attn for _ in range(per_level)],
        # ComfyUI pops from the end
        "transformer_depth_output": [d for d in reversed(up_attn) for _ in range(per_level + 1)],
        "transformer_depth_middle": 1, "context_dim": int(diffusers["cross_attention_dim"]),
        "use_spatial_transformer": True, "use_linear_in_transformer": bool(diffusers.get("use_linear_projection")),
        "legacy": False, "adm_in_channels": None, "use_temporal_attention": False, "use_temporal_resblock": False,
    }


def model_config(diffusers: dict, scaling_factor: float):
    """A ``comfy.supported_models_base.BASE`` for the world: ε-prediction, SD's 1000-step scaled-linear betas."""
    import comfy.latent_formats
    import comfy.supported_models_base

    heads = int(diffusers["attention_head_dim"])  # diffusers' legacy name: the number of heads, as SD1.5's 8

    class WorldLatent(comfy.latent_formats.LatentFormat):
        latent_channels = 4

        def __init__(self):
            self.scale_factor = scaling_factor

    class WorldUNet(comfy.supported_models_base.BASE):
        unet_config = ldm_unet_config(diffusers)
        unet_extra_config = {"num_heads": heads, "num_head_channels": -1}
        latent_format = WorldLatent
        sampling_settings = {"beta_schedule": "linear", "linear_start": 0.00085, "linear_end": 0.012}
        supported_inference_dtypes = [torch.float32]

    return WorldUNet(WorldUNet.unet_config)


def load_world_model(unet_folder: str | Path, scaling_factor: float):
    """A ComfyUI MODEL (ModelPatcher) holding the weights of a diffusers UNet folder of the world."""
    import comfy.model_base
    import comfy.model_patcher
    import comfy.utils
    from safetensors.torch import load_file

    folder = Path(unet_folder)
    diffusers = json.loads((folder / "config.json").read_text())
    config = model_config(diffusers, scaling_factor)
    weights = load_file(str(folder / "diffusion_pytorch_model.safetensors"))
    mapping = comfy.utils.unet_to_diffusers(config.unet_config)
    missing = sorted(set(weights) - set(mapping))
    if missing:
        raise ValueError(f"{folder}: {len(missing)} UNet weights have no ComfyUI name, e.g. {missing[:3]}")
    ldm = {mapping[k]: v.float() for k, v in weights.items()}
    model = comfy.model_base.BaseModel(config, model_type=comfy.model_base.ModelType.EPS, device=torch.device("cpu"))
    model.diffusion_model.load_state_dict(ldm, strict=True)
    model.diffusion_model.float()
    return comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def conditioning(hidden_states: torch.Tensor) -> list:
    """A ComfyUI CONDITIONING of per-token text states (B, T, width)."""
    return [[hidden_states, {}]]
