"""Tiny random flow-matching DiTs of ComfyUI's own families, built in-process from ComfyUI's classes (no download):
FLUX.1-schnell (``comfy.supported_models.FluxSchnell``), Qwen-Image (``QwenImage``) and Lumina2 (``Lumina2``).

Each is the family's model config with its architecture shrunk (one or two blocks, 64-wide), wrapped by
``model_base`` exactly as a loaded checkpoint is, in a ModelPatcher on the CPU; weights random but finite. Random
weights test wiring, schedules and exactness, not image quality.
"""
from __future__ import annotations

import torch

FLOW_FAMILIES = ("flux_schnell", "qwen_image", "lumina2")
CONTEXT_DIM = 32  # text features of the tiny models (T5 / Qwen2.5-VL / Gemma widths shrunk)
POOLED_DIM = 32  # Flux's pooled CLIP vector

UNET_CONFIGS = {
    "flux_schnell": ("FluxSchnell", {
        "image_model": "flux", "in_channels": 16, "out_channels": 16, "vec_in_dim": POOLED_DIM,
        "context_in_dim": CONTEXT_DIM, "hidden_size": 64, "mlp_ratio": 2.0, "num_heads": 2, "depth": 1,
        "depth_single_blocks": 1, "axes_dim": [4, 14, 14], "theta": 10000, "patch_size": 2, "qkv_bias": True,
        "guidance_embed": False}),
    "qwen_image": ("QwenImage", {
        "image_model": "qwen_image", "patch_size": 2, "in_channels": 64, "out_channels": 16, "num_layers": 1,
        "attention_head_dim": 32, "num_attention_heads": 2, "joint_attention_dim": CONTEXT_DIM,
        "axes_dims_rope": (8, 12, 12)}),
    "lumina2": ("Lumina2", {
        "image_model": "lumina2", "patch_size": 2, "in_channels": 16, "dim": 64, "n_layers": 1,
        "n_refiner_layers": 1, "n_heads": 2, "n_kv_heads": 2, "multiple_of": 16, "ffn_dim_multiplier": None,
        "norm_eps": 1e-5, "qk_norm": True, "cap_feat_dim": CONTEXT_DIM, "axes_dims": [8, 12, 12],
        "axes_lens": [300, 64, 64]}),
}


def tiny_flow_model(family: str, seed: int = 0):
    """A ComfyUI MODEL (ModelPatcher) of ``family`` (one of ``FLOW_FAMILIES``), random finite weights, float32."""
    import comfy.model_patcher
    import comfy.supported_models

    config_name, unet_config = UNET_CONFIGS[family]
    config = getattr(comfy.supported_models, config_name)(dict(unet_config))
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({}, device=torch.device("cpu"))
    _initialise(model.diffusion_model, seed)
    model.diffusion_model.float()
    return comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def tiny_flow_conditioning(family: str, batch: int = 1, tokens: int = 6, seed: int = 1) -> list:
    """CONDITIONING for the tiny model of ``family``: random text features, Flux's pooled vector, Lumina2's mask."""
    generator = torch.Generator().manual_seed(seed)
    context = torch.randn(batch, tokens, CONTEXT_DIM, generator=generator)
    extra = {}
    if family == "flux_schnell":
        extra["pooled_output"] = torch.randn(batch, POOLED_DIM, generator=generator)
    if family == "lumina2":
        extra["attention_mask"] = torch.ones(batch, tokens, dtype=torch.long)
    return [[context, extra]]


def _initialise(module: torch.nn.Module, seed: int) -> None:
    """ComfyUI's ops leave weights as torch.empty: fan-in scaled normal weights, zero biases, unit norms."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.ndim <= 1:
                p.fill_(1.0)
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=generator) / fan_in**0.5)
        for buffer in module.buffers():
            if not torch.isfinite(buffer).all():
                buffer.zero_()
