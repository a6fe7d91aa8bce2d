"""TurboFill adapter as a ComfyUI ControlNet: core's ControlBase machinery does the rest.

Imports ComfyUI. ``comfy.controlnet.ControlNet`` already runs a control module on
``calculate_input(σ, x)``, ``timestep(σ)``, the cross-attention context and ``y``, with the hint
VAE-encoded into model space (``latent_format``) and extra inputs concatenated. The adapter takes
(x, hint = [masked latent, hole mask]) and returns ComfyUI's control dict, so strength, start/end
percent, chaining with other ControlNets, GPU loading and uncond handling are core's.
"""
from __future__ import annotations

import comfy.controlnet
import comfy.model_management as mm
import torch

from ..core.masks import as_b1hw, check_finite, check_mask_range, fit_mask, match_batch
from ..core.turbofill import AdapterConfig, TurboFillAdapter, masked_image
from ..core.weights import MODEL_FAMILIES, WeightFileError
from .comfy_networks import model_family, shape_problems


def unet_shape(model) -> dict:
    """The parts of the MODEL's UNet an adapter's residuals must match."""
    cfg = model.model.model_config.unet_config
    blocks = [cfg["model_channels"] * m for m in cfg["channel_mult"]]
    layers = cfg["num_res_blocks"]
    layers = layers if isinstance(layers, int) else (layers[0] if len(set(layers)) == 1 else list(layers))
    return {"in_channels": cfg["in_channels"], "block_out_channels": blocks, "layers_per_block": layers,
            "adm_in_channels": cfg.get("adm_in_channels")}


def check_fit(config: AdapterConfig, model, name: str, trained: str | None) -> None:
    """The adapter must come from this model family and this UNet layout (errors name the file)."""
    family = model_family(model)
    if trained in MODEL_FAMILIES and trained != family:
        raise WeightFileError(f"adapter_name: {name} was trained for a {trained} base but the MODEL is {family}; "
                              "load the adapter trained for this model family")
    want = unet_shape(model)
    have = {k: getattr(config, k) for k in want}
    if have != want:
        diff = {k: (have[k], want[k]) for k in want if have[k] != want[k]}
        raise WeightFileError(f"adapter_name: {name} does not fit the MODEL's UNet ((adapter, model): {diff}); "
                              f"it was trained for another architecture ({trained or 'unknown family'})")


def build_adapter(model, state_dict: dict, metadata: dict, name: str) -> comfy.controlnet.ControlNet:
    """A ControlNet object around the adapter in the MODEL's compute dtype (strict load, checked fit)."""
    if metadata.get("kind", "turbofill") != "turbofill":
        raise WeightFileError(f"adapter_name: {name} is a '{metadata['kind']}' weight, not a TurboFill adapter")
    raw = metadata.get("adapter_config")
    if not isinstance(raw, dict):
        raise WeightFileError(f"adapter_name: {name} has no adapter_config metadata (not made by trainers.turbofill)")
    try:
        config = AdapterConfig(**raw)
    except TypeError as err:
        raise WeightFileError(f"adapter_name: {name} has an unreadable adapter_config ({err})") from None
    check_fit(config, model, name, metadata.get("base_family"))
    adapter = TurboFillAdapter(config)
    problems = shape_problems(adapter.state_dict(), state_dict)
    if problems:
        raise WeightFileError(f"adapter_name: {name} does not match its adapter_config ({'; '.join(problems)})")
    adapter.load_state_dict({k: v.float() for k, v in state_dict.items()}, strict=True)
    dtype = model.model.manual_cast_dtype or model.model.get_dtype()
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        dtype = torch.float32
    adapter = adapter.to(device=mm.unet_offload_device(), dtype=dtype).eval()
    return comfy.controlnet.ControlNet(adapter, compression_ratio=1,
                                       latent_format=model.get_model_object("latent_format"),
                                       load_device=mm.get_torch_device(), extra_conds=["y"])


def hint_inputs(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked image (B,3,H,W) with the hole black, hole mask (B,1,H,W) in {0,1}) at the image's size."""
    check_finite(image, "image")
    if image.ndim != 4 or image.shape[-1] < 3:
        raise ValueError(f"image: expected an IMAGE (B,H,W,C≥3), got shape {tuple(image.shape)}")
    pixels = image[..., :3].movedim(-1, 1).float()
    hole = fit_mask(check_mask_range(as_b1hw(mask, "mask"), "mask"), pixels.shape[-2:], "mask")
    hole = (match_batch(hole, pixels.shape[0], "mask") > 0.5).float()  # the image's batch is the latent's
    return masked_image(pixels, hole), hole


def apply_adapter(conditioning, adapter: comfy.controlnet.ControlNet, vae, hint: torch.Tensor, hole: torch.Tensor,
                  strength: float, percent: tuple[float, float], cache: dict) -> list:
    """Attach the adapter to every entry as core's ControlNet apply does (chained after existing controls)."""
    out = []
    for tensor, extra in conditioning:
        extra = dict(extra)
        previous = extra.get("control")
        if previous not in cache:
            cache[previous] = adapter.copy().set_cond_hint(hint, strength, percent, vae=vae, extra_concat=[hole])
            cache[previous].set_previous_controlnet(previous)
        extra["control"] = cache[previous]
        extra["control_apply_to_uncond"] = False
        out.append([tensor, extra])
    return out
