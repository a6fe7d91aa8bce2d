"""Low-rank adapters (Hu et al. 2022) for Linear and Conv2d layers, and their ComfyUI/kohya export.

Exported keys are ``lora_unet_<diffusers module path with _>.lora_down.weight / .lora_up.weight /
.alpha``: the kohya layout core ComfyUI's LoraLoader maps onto SD1.x/SD2.x/SDXL UNets. Fully trained
layers are exported as ``<key>.diff`` / ``<key>.diff_b`` (weight and bias deltas), which the same
loader applies.
"""
from __future__ import annotations

import torch
from torch import nn


class LoRALinear(nn.Module):
    """y = base(x) + (α/r)·up(down(x)); ``up`` starts at zero so the wrapped layer is unchanged."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base, self.rank, self.alpha = base, rank, alpha
        self.down = nn.Linear(base.in_features, rank, bias=False)
        self.up = nn.Linear(rank, base.out_features, bias=False)
        nn.init.normal_(self.down.weight, std=1.0 / rank)
        nn.init.zeros_(self.up.weight)

    def forward(self, x):
        return self.base(x) + self.up(self.down(x)) * (self.alpha / self.rank)


class LoRAConv2d(nn.Module):
    """Conv LoRA: ``down`` has the base kernel, stride and padding; ``up`` is a zero-initialised 1×1 conv."""

    def __init__(self, base: nn.Conv2d, rank: int, alpha: float):
        super().__init__()
        self.base, self.rank, self.alpha = base, rank, alpha
        self.down = nn.Conv2d(base.in_channels, rank, base.kernel_size, base.stride, base.padding, bias=False)
        self.up = nn.Conv2d(rank, base.out_channels, 1, bias=False)
        nn.init.normal_(self.down.weight, std=1.0 / rank)
        nn.init.zeros_(self.up.weight)

    def forward(self, x):
        return self.base(x) + self.up(self.down(x)) * (self.alpha / self.rank)


def _matches(name: str, targets: list[str]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


def inject_lora(model: nn.Module, targets: list[str], rank: int, alpha: float) -> dict[str, nn.Module]:
    """Wrap every Linear/Conv2d whose path ends with a target (e.g. ``to_q``, ``to_out.0``, ``conv1``)."""
    found: dict[str, nn.Module] = {}
    for name, module in list(model.named_modules()):
        if not _matches(name, targets) or not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        wrapper = LoRALinear(module, rank, alpha) if isinstance(module, nn.Linear) else LoRAConv2d(module, rank, alpha)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, wrapper)
        found[name] = wrapper
    if not found:
        raise ValueError(f"lora_targets: no Linear/Conv2d layer matches {targets}")
    return found


def kohya_key(path: str) -> str:
    return "lora_unet_" + path.replace(".", "_")


def lora_state(loras: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """kohya-layout tensors of injected adapters."""
    out = {}
    for path, module in loras.items():
        key = kohya_key(path)
        out[f"{key}.lora_down.weight"] = module.down.weight.detach().clone()
        out[f"{key}.lora_up.weight"] = module.up.weight.detach().clone()
        out[f"{key}.alpha"] = torch.tensor(float(module.alpha))
    return out


def diff_state(trained: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``.diff``/``.diff_b`` deltas of fully trained layers; keys of ``base`` are ``<module path>.weight|bias``."""
    out = {}
    for name, value in base.items():
        path, _, kind = name.rpartition(".")
        suffix = {"weight": "diff", "bias": "diff_b"}[kind]
        out[f"{kohya_key(path)}.{suffix}"] = (trained[name].detach().float() - value.float()).clone()
    return out


def merge_lora(model: nn.Module, state: dict[str, torch.Tensor], strength: float = 1.0) -> int:
    """Add a kohya-layout file's LoRA (W += s·(α/r)·up·down) and ``.diff``/``.diff_b`` deltas into ``model``'s
    weights in place, the arithmetic of core ComfyUI's LoraLoader; returns the number of layers changed. A key that
    names no layer of ``model`` is an error (a file for another architecture)."""
    modules = {kohya_key(name): module for name, module in model.named_modules() if name}
    keys = {k.rsplit(".", 2)[0] if ".lora_" in k else k.rsplit(".", 1)[0] for k in state}
    unknown = sorted(keys - set(modules))
    if unknown:
        raise ValueError(f"LoRA: {len(unknown)} keys name no layer of the model, e.g. {unknown[:3]}")
    with torch.no_grad():
        for key in sorted(keys):
            module = modules[key]
            if f"{key}.lora_down.weight" in state:
                down, up = state[f"{key}.lora_down.weight"].float(), state[f"{key}.lora_up.weight"].float()
                alpha = float(state.get(f"{key}.alpha", torch.tensor(float(down.shape[0]))))
                delta = (up.flatten(1) @ down.flatten(1)).reshape(module.weight.shape) * (alpha / down.shape[0])
                module.weight += (strength * delta).to(module.weight)
            if f"{key}.diff" in state:
                module.weight += (strength * state[f"{key}.diff"].float()).to(module.weight)
            if f"{key}.diff_b" in state:
                module.bias += (strength * state[f"{key}.diff_b"].float()).to(module.bias)
    return len(keys)
