"""Load a frozen base model from local disk (diffusers folder or single-file checkpoint); encode prompts.

Nothing is downloaded: every ``from_pretrained``/``from_single_file`` call is ``local_files_only``.
A single-file checkpoint (``.safetensors`` in the original LDM layout, e.g.
``sd_xl_turbo_1.0_fp16.safetensors``) needs ``single_file_config``: a local diffusers-format folder
with the matching configs and tokenizers (weights not needed).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.schedules import scaled_linear_alphas_cumprod
from core.weights import check_suffix, read_header


class BaseModelError(ValueError):
    """A base model path or layout the trainer cannot use."""


@dataclass
class BaseModel:
    """The frozen pieces of a latent diffusion model a trainer needs."""

    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoders: list
    tokenizers: list
    alphas_cumprod: torch.Tensor
    family: str
    scaling_factor: float
    unet_config: dict = field(default_factory=dict)
    is_flow: bool = False  # a UNet on a discrete schedule (FluxBase: a flow DiT)

    @property
    def is_sdxl(self) -> bool:
        return self.family == "sdxl" or "text_time" == self.unet_config.get("addition_embed_type")

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str], device, size_hw: tuple[int, int]) -> dict:
        """UNet conditioning kwargs for ``prompts``: encoder_hidden_states (+ SDXL pooled text and size ids)."""
        if not self.is_sdxl:
            ids = self._ids(self.tokenizers[0], prompts, device)
            return {"encoder_hidden_states": self.text_encoders[0](ids)[0]}
        states, pooled = [], None
        for tokenizer, encoder in zip(self.tokenizers, self.text_encoders):
            out = encoder(self._ids(tokenizer, prompts, device), output_hidden_states=True)
            states.append(out.hidden_states[-2])
            pooled = out[0]
        h, w = size_hw
        time_ids = torch.tensor([[h, w, 0, 0, h, w]], device=device, dtype=states[0].dtype).repeat(len(prompts), 1)
        return {"encoder_hidden_states": torch.cat(states, dim=-1),
                "added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids}}

    @staticmethod
    def _ids(tokenizer, prompts, device) -> torch.Tensor:
        return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids.to(device)

    def frozen(self) -> "BaseModel":
        for module in [self.unet, self.vae, *self.text_encoders]:
            module.requires_grad_(False)
            module.eval()
        return self

    def to(self, device, dtype=None) -> "BaseModel":
        for module in [self.unet, self.vae, *self.text_encoders]:
            module.to(device=device, dtype=dtype)
        return self


def unet_eps_fn(unet: torch.nn.Module):
    """``eps_fn(x, t, encoder_hidden_states, added_cond_kwargs=None)`` for core's InverFill maths."""

    def eps_fn(x, t, encoder_hidden_states, added_cond_kwargs=None):
        return unet(x, t, encoder_hidden_states=encoder_hidden_states,
                    added_cond_kwargs=added_cond_kwargs, return_dict=False)[0]

    return eps_fn


def family_of(unet_config: dict) -> str:
    """sd15 / sd21 / sdxl from a diffusers UNet config; ``custom`` for other (e.g. test) shapes."""
    if unet_config.get("addition_embed_type") == "text_time":
        return "sdxl"
    if (unet_config.get("in_channels") == 4
            and tuple(unet_config.get("block_out_channels", ())) == (320, 640, 1280, 1280)):
        return {768: "sd15", 1024: "sd21"}.get(unet_config.get("cross_attention_dim"), "custom")
    if unet_config.get("cross_attention_dim") == 768 and unet_config.get("block_out_channels", [0])[0] == 320:
        return "sd15"  # reduced SD1.5 architectures (tests): ComfyUI detects them as SD1.5 too
    return "custom"


def single_file_family(path: str | Path) -> str:
    """Family of an original-layout checkpoint from its tensor names."""
    keys = read_header(path).keys()
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return "sdxl"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return "sd21"
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return "sd15"
    raise BaseModelError(f"{Path(path).name}: not a SD1.5/SD2.1/SDXL checkpoint (no known text-encoder keys)")


def alphas_from_scheduler_config(config: dict) -> torch.Tensor:
    """ᾱ_t from a diffusers scheduler config (ε-prediction, scaled_linear or linear betas)."""
    prediction = config.get("prediction_type", "epsilon")
    if prediction != "epsilon":
        raise BaseModelError(f"scheduler prediction_type {prediction!r}: only epsilon-prediction bases are supported")
    steps = int(config.get("num_train_timesteps", 1000))
    start, end = float(config.get("beta_start", 0.00085)), float(config.get("beta_end", 0.012))
    schedule = config.get("beta_schedule", "scaled_linear")
    if schedule == "scaled_linear":
        return scaled_linear_alphas_cumprod(steps, start, end)
    if schedule == "linear":
        return torch.cumprod(1 - torch.linspace(start, end, steps, dtype=torch.float64), 0)
    raise BaseModelError(f"scheduler beta_schedule {schedule!r} is not supported (scaled_linear or linear)")


def check_base_model(path: str | Path, single_file_config: str | Path | None = None) -> None:
    """What can be checked without loading anything: a diffusers folder, or a ``.safetensors`` checkpoint with
    the folder of its configs (trainers call this before they load or create anything)."""
    path = Path(path)
    if path.is_dir():
        if (path / "transformer").is_dir() and (path / "vae").is_dir():
            return  # a FLUX-family folder (trainers that take one check it themselves)
        if not (path / "unet").is_dir() or not (path / "vae").is_dir():
            raise BaseModelError(f"base_model: {path} is not a diffusers folder (needs unet/, vae/, text_encoder/, …; "
                                 "or transformer/, vae/, … for FLUX)")
        return
    if not path.is_file():
        raise BaseModelError(f"base_model: {path} does not exist "
                             "(give a diffusers folder or a .safetensors checkpoint)")
    check_suffix(path)
    if single_file_config is None or not Path(single_file_config).is_dir():
        raise BaseModelError(
            f"base_model: {path.name} is a single-file checkpoint; set single_file_config to a local diffusers "
            "folder with its configs and tokenizers (nothing is downloaded)"
        )


def load_base_model(path: str | Path, *, single_file_config: str | Path | None = None,
                    dtype: torch.dtype = torch.float32) -> BaseModel:
    """Load a base model from a diffusers folder or a single ``.safetensors`` checkpoint (never downloads)."""
    check_base_model(path, single_file_config)
    path = Path(path)
    if path.is_dir() and (path / "transformer").is_dir():
        from .flux_base import load_flux_base

        return load_flux_base(path, dtype)
    return _from_folder(path, dtype) if path.is_dir() else _from_single_file(path, single_file_config, dtype)


def _from_folder(path: Path, dtype: torch.dtype) -> BaseModel:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    kw = {"local_files_only": True, "torch_dtype": dtype}
    unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", **kw)
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae", **kw)
    encoders, tokenizers = [CLIPTextModel.from_pretrained(path, subfolder="text_encoder", **kw)], [
        CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", local_files_only=True)]
    if (path / "text_encoder_2").is_dir():
        encoders.append(CLIPTextModelWithProjection.from_pretrained(path, subfolder="text_encoder_2", **kw))
        tokenizers.append(CLIPTokenizer.from_pretrained(path, subfolder="tokenizer_2", local_files_only=True))
    scheduler = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
    config = dict(unet.config)
    return BaseModel(unet, vae, encoders, tokenizers, alphas_from_scheduler_config(scheduler), family_of(config),
                     float(vae.config.scaling_factor), config).frozen()


def _from_single_file(path: Path, config_dir: str | Path | None, dtype: torch.dtype) -> BaseModel:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    family = single_file_family(path)
    cls = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
    pipe = cls.from_single_file(str(path), config=str(config_dir), local_files_only=True, torch_dtype=dtype)
    encoders = [pipe.text_encoder] + ([pipe.text_encoder_2] if family == "sdxl" else [])
    tokenizers = [pipe.tokenizer] + ([pipe.tokenizer_2] if family == "sdxl" else [])
    config = dict(pipe.unet.config)
    scheduler = dict(pipe.scheduler.config)
    return BaseModel(pipe.unet, pipe.vae, encoders, tokenizers, alphas_from_scheduler_config(scheduler),
                     family_of(config) if family_of(config) != "custom" else family,
                     float(pipe.vae.config.scaling_factor), config).frozen()
