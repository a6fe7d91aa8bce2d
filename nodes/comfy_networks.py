"""Trained networks that share the base MODEL's UNet architecture, as ComfyUI models.

Imports ComfyUI. A network is built from the MODEL's own config (optionally with more input/output
channels), in its dtype, its weights mapped from diffusers keys with ComfyUI's own key map, and
wrapped in a ModelPatcher so ComfyUI loads and offloads it like any other model.
"""
from __future__ import annotations

import copy

import comfy.model_management as mm
import comfy.model_patcher
import comfy.supported_models as supported
import comfy.utils
import torch

from ..core.masks import match_batch
from ..core.weights import MODEL_FAMILIES, WeightFileError

FAMILY_CONFIGS = (("sdxl", supported.SDXL), ("sd21", supported.SD20), ("sd15", supported.SD15),
                  ("flux", supported.Flux))


def model_family(model) -> str:
    """sd15 / sd21 / sdxl / flux (FLUX.1-dev and -schnell) of a ComfyUI MODEL, or the config class name for anything
    else."""
    config = model.model.model_config
    for family, cls in FAMILY_CONFIGS:
        if isinstance(config, cls):
            return family
    return type(config).__name__


def to_ldm_keys(state_dict: dict, unet_config: dict, key_format: str) -> dict:
    """Diffusers UNet keys → ComfyUI's LDM keys with ComfyUI's own map; LDM keys pass through."""
    if key_format == "ldm" or "input_blocks.0.0.weight" in state_dict:
        return dict(state_dict)
    mapping = comfy.utils.unet_to_diffusers(unet_config)
    unknown = [k for k in state_dict if k not in mapping]
    if unknown:
        raise WeightFileError(
            f"{len(unknown)} weights of the network have no place in this MODEL's UNet (e.g. {unknown[:3]}): "
            "it was trained for another architecture"
        )
    return {mapping[k]: v for k, v in state_dict.items()}


def expected_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()``, with a shape-and-dtype placeholder (a meta tensor) for every weight that is not
    there yet: newer ComfyUI (dynamic VRAM, 0.38) builds its ``Linear`` layers with ``weight = None`` until the
    state dict is loaded; 0.3.64 builds them all, and then this is the state dict."""
    state = dict(module.state_dict())
    for name, sub in module.named_modules():
        if getattr(sub, "weight", False) is not None or not hasattr(sub, "in_features"):
            continue
        prefix = f"{name}." if name else ""
        dtype = getattr(sub, "weight_comfy_model_dtype", None) or torch.float32
        state[prefix + "weight"] = torch.empty((sub.out_features, sub.in_features), dtype=dtype, device="meta")
        if getattr(sub, "bias", None) is None and getattr(sub, "comfy_need_lazy_init_bias", False):
            bias_dtype = getattr(sub, "bias_comfy_model_dtype", None) or dtype
            state[prefix + "bias"] = torch.empty((sub.out_features,), dtype=bias_dtype, device="meta")
    return state


def shape_problems(expected: dict, given: dict) -> list[str]:
    """Human-readable differences between two state dicts' keys and shapes (empty: they fit)."""
    missing = [k for k in expected if k not in given]
    extra = [k for k in given if k not in expected]
    wrong = [f"{k} {tuple(given[k].shape)}≠{tuple(expected[k].shape)}" for k in expected
             if k in given and tuple(given[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[:3]})")
    if extra:
        problems.append(f"{len(extra)} unexpected (e.g. {extra[:3]})")
    if wrong:
        problems.append(f"{len(wrong)} of another shape (e.g. {wrong[:3]})")
    return problems


@torch.no_grad()
def run_diffusion_model(patcher, x: torch.Tensor, t: torch.Tensor, **conds) -> torch.Tensor:
    """The raw output of a network's diffusion model for model-space ``x`` at ``t``, loaded by ComfyUI onto its device
    in the model's dtype (``conds``: tensors or None, cast alike); float32 on the CPU."""
    mm.load_models_gpu([patcher])
    net = patcher.model
    device = patcher.load_device
    dtype = net.manual_cast_dtype or net.get_dtype()
    out = net.diffusion_model(x.to(device, dtype), t.to(device).float(),
                              **{k: None if v is None else v.to(device, dtype) for k, v in conds.items()})
    mm.throw_exception_if_processing_interrupted()
    return out.float().cpu()


class UNetNetwork:
    """A ModelPatcher around a UNet of the MODEL's architecture, plus the file's metadata."""

    def __init__(self, patcher, metadata: dict, family: str, name: str):
        self.patcher, self.metadata, self.family, self.name = patcher, metadata, family, name

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The raw UNet output for model-space ``x`` at discrete timesteps ``t`` (float32, CPU)."""
        return run_diffusion_model(self.patcher, x, t, context=context, y=y)

    def adm(self, cond: dict, batch: int, width: int, height: int) -> torch.Tensor | None:
        """SDXL's pooled-text + size vector ``y`` (None for SD1.x/2.x), as ComfyUI builds it."""
        kwargs = {"width": width, "height": height, "target_width": width, "target_height": height, **cond}
        y = self.patcher.model.encode_adm(**kwargs)
        return None if y is None else match_batch(y, batch, "conditioning", target="latent")


def build_unet_network(model, state_dict: dict, metadata: dict, name: str, kind: str,
                       channels_in: int | None = None, channels_out: int | None = None) -> UNetNetwork:
    """Check kind, family and shapes against ``model`` and build the network (errors name the file)."""
    if metadata.get("kind", kind) != kind:
        raise WeightFileError(f"{name}: is a '{metadata['kind']}' weight, not a {kind} network")
    family, trained = model_family(model), metadata.get("base_family")
    if trained in MODEL_FAMILIES and trained != family:
        raise WeightFileError(f"{name}: was trained for a {trained} base but the MODEL is {family}; "
                              "load the network trained for this model family")
    config = copy.copy(model.model.model_config)
    config.unet_config = dict(config.unet_config)
    if channels_in is not None:
        config.unet_config["in_channels"] = channels_in
    if channels_out is not None:
        config.unet_config["out_channels"] = channels_out
    ldm = to_ldm_keys(state_dict, config.unet_config, metadata.get("key_format", "diffusers"))
    net = config.get_model(ldm, "", device=mm.unet_offload_device())
    expected = expected_state(net.diffusion_model)
    problems = shape_problems(expected, ldm)
    if problems:
        raise WeightFileError(f"{name}: does not match the MODEL's UNet ({'; '.join(problems)}); "
                              f"it was trained for another architecture ({trained or 'unknown family'})")
    net.diffusion_model.load_state_dict({k: v.to(expected[k].dtype) for k, v in ldm.items()}, strict=True)
    patcher = comfy.model_patcher.ModelPatcher(net, load_device=mm.get_torch_device(),
                                               offload_device=mm.unet_offload_device())
    return UNetNetwork(patcher, metadata, family, name)


class FluxNetwork(UNetNetwork):
    """A ModelPatcher around a FLUX DiT of the MODEL's architecture (diffusers keys converted with ComfyUI's own map),
    plus the file's metadata."""

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, y: torch.Tensor | None,
                guidance: torch.Tensor | None = None) -> torch.Tensor:
        """The raw DiT output (the velocity) for model-space ``x`` at t = σ (float32, CPU)."""
        return run_diffusion_model(self.patcher, x, t, context=context, y=y, guidance=guidance)


def build_flux_network(model, state_dict: dict, metadata: dict, name: str, kind: str) -> FluxNetwork:
    """A FLUX network for a FLUX MODEL from a trainer's diffusers-keyed file (errors name the file)."""
    import comfy.model_detection

    if metadata.get("kind", kind) != kind:
        raise WeightFileError(f"{name}: is a '{metadata['kind']}' weight, not a {kind} network")
    family, trained = model_family(model), metadata.get("base_family")
    if trained != "flux":
        raise WeightFileError(f"{name}: was trained for a {trained or 'unknown'} base but the MODEL is {family}; "
                              "load the network trained for this model family")
    converted = comfy.model_detection.convert_diffusers_mmdit(state_dict, "") if "x_embedder.weight" in state_dict \
        else dict(state_dict)
    net = copy.copy(model.model.model_config).get_model(converted, "", device=mm.unet_offload_device())
    expected = expected_state(net.diffusion_model)
    problems = shape_problems(expected, converted)
    if problems:
        raise WeightFileError(f"{name}: does not match the MODEL's FLUX transformer ({'; '.join(problems)}); it was "
                              "trained for another architecture")
    net.diffusion_model.load_state_dict({k: v.to(expected[k].dtype) for k, v in converted.items()}, strict=True)
    patcher = comfy.model_patcher.ModelPatcher(net, load_device=mm.get_torch_device(),
                                               offload_device=mm.unet_offload_device())
    return FluxNetwork(patcher, metadata, family, name)


def first_conditioning(conditioning, batch: int, name: str = "positive") -> tuple[torch.Tensor, dict]:
    """(context, extra dict) of the first CONDITIONING entry, batch-matched to the latent."""
    from ..core.masks import check_finite

    if not conditioning:
        raise ValueError(f"{name}: empty CONDITIONING")
    context, extra = conditioning[0][0], dict(conditioning[0][1])
    check_finite(context, name)
    return match_batch(context, batch, name, target="latent"), extra
