"""A FLUX-family base model from a local diffusers folder, for InverFill on a flow DiT (docs/methods.md §1.6).

The folder is diffusers' FluxPipeline layout: ``transformer/`` (FluxTransformer2DModel), ``vae/`` (16 latent
channels, with ``shift_factor``), ``text_encoder/`` + ``tokenizer/`` (CLIP-L: the pooled vector),
``text_encoder_2/`` + ``tokenizer_2/`` (T5: the token sequence), ``scheduler/`` (FlowMatchEulerDiscreteScheduler).
Nothing is downloaded (``local_files_only``). Latents in model space are (z − shift)·scale, as ComfyUI's FLUX
latent format takes them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

T5_TOKENS = 256  # FLUX.1-schnell's max_sequence_length (diffusers' FluxPipeline; ComfyUI pads T5 to 256 as well)


def is_flux_folder(path: str | Path) -> bool:
    path = Path(path)
    return (path / "transformer").is_dir() and (path / "vae").is_dir()


@dataclass
class FluxBase:
    """The frozen pieces of a FLUX-family model that InverFill's trainer needs."""

    transformer: torch.nn.Module
    vae: torch.nn.Module
    text_encoders: list  # [CLIP-L, T5]
    tokenizers: list
    scaling_factor: float
    shift_factor: float
    shift: float = 1.0  # the scheduler's σ shift (schnell: 1)
    transformer_config: dict = field(default_factory=dict)
    family: str = "flux"
    is_flow: bool = True

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str], device, size_hw: tuple[int, int] | None = None) -> dict:
        """FLUX's conditioning: the T5 token states and CLIP-L's pooled vector."""
        clip_tok, t5_tok = self.tokenizers
        clip_ids = clip_tok(prompts, padding="max_length", max_length=clip_tok.model_max_length, truncation=True,
                            return_tensors="pt").input_ids.to(device)
        length = min(T5_TOKENS, t5_tok.model_max_length)
        t5_ids = t5_tok(prompts, padding="max_length", max_length=length, truncation=True,
                        return_tensors="pt").input_ids.to(device)
        pooled = self.text_encoders[0](clip_ids).pooler_output
        states = self.text_encoders[1](t5_ids)[0]
        return {"encoder_hidden_states": states, "pooled_projections": pooled}

    def latent_in(self, vae_latent: torch.Tensor) -> torch.Tensor:
        return (vae_latent - self.shift_factor) * self.scaling_factor

    def latent_out(self, z: torch.Tensor) -> torch.Tensor:
        return z / self.scaling_factor + self.shift_factor

    def frozen(self) -> "FluxBase":
        for module in [self.transformer, self.vae, *self.text_encoders]:
            module.requires_grad_(False)
            module.eval()
        return self

    def to(self, device, dtype=None) -> "FluxBase":
        for module in [self.transformer, self.vae, *self.text_encoders]:
            module.to(device=device, dtype=dtype)
        return self


def pack(x: torch.Tensor) -> torch.Tensor:
    """(B,C,h,w) latents → (B, h/2·w/2, 4C) tokens of 2×2 patches (FLUX's layout, channels then the patch)."""
    b, c, h, w = x.shape
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: torch.Tensor, channels: int, h: int, w: int) -> torch.Tensor:
    b = tokens.shape[0]
    return tokens.view(b, h // 2, w // 2, channels, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, channels, h, w)


def flux_velocity_fn(transformer: torch.nn.Module, guidance: float = 3.5):
    """``fn(x, t, encoder_hidden_states, pooled_projections)`` → the velocity v̂ (B,C,h,w) of model-space latents at
    t = σ ∈ [0, 1] (x̂0 = x − σ·v̂). ``guidance`` feeds a guidance-distilled model's embedding (FLUX.1-dev); schnell
    has none."""

    def fn(x, t, encoder_hidden_states, pooled_projections):
        b, c, h, w = x.shape
        rows = torch.arange(h // 2, device=x.device, dtype=x.dtype)
        cols = torch.arange(w // 2, device=x.device, dtype=x.dtype)
        img_ids = torch.stack([torch.zeros(h // 2, w // 2, device=x.device, dtype=x.dtype),
                               rows[:, None].expand(h // 2, w // 2), cols[None].expand(h // 2, w // 2)], -1)
        txt_ids = torch.zeros(encoder_hidden_states.shape[1], 3, device=x.device, dtype=x.dtype)
        extra = {}
        if getattr(transformer.config, "guidance_embeds", False):
            extra["guidance"] = torch.full((b,), guidance, device=x.device, dtype=x.dtype)
        out = transformer(hidden_states=pack(x), encoder_hidden_states=encoder_hidden_states,
                          pooled_projections=pooled_projections, timestep=t.to(x.dtype), img_ids=img_ids.reshape(-1, 3),
                          txt_ids=txt_ids, return_dict=False, **extra)[0]
        return unpack(out, c, h, w)

    return fn


def flux_sigmas(times: list[float], shift: float) -> torch.Tensor:
    """σ = shift·t/(1 + (shift − 1)·t) on a grid of t (FlowMatchEulerDiscreteScheduler's static shift), then 0."""
    return torch.tensor([shift * t / (1 + (shift - 1) * t) for t in times] + [0.0])


def load_flux_base(path: str | Path, dtype: torch.dtype = torch.float32) -> FluxBase:
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import AutoTokenizer, CLIPTextModel, CLIPTokenizer, T5EncoderModel

    path = Path(path)
    kw = {"local_files_only": True, "torch_dtype": dtype}
    transformer = FluxTransformer2DModel.from_pretrained(path, subfolder="transformer", **kw)
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae", **kw)
    clip = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", **kw)
    t5 = T5EncoderModel.from_pretrained(path, subfolder="text_encoder_2", **kw)
    clip_tok = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", local_files_only=True)
    t5_tok = AutoTokenizer.from_pretrained(path, subfolder="tokenizer_2", local_files_only=True)
    scheduler = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
    return FluxBase(transformer, vae, [clip, t5], [clip_tok, t5_tok], float(vae.config.scaling_factor),
                    float(vae.config.shift_factor or 0.0), float(scheduler.get("shift", 1.0)),
                    dict(transformer.config)).frozen()
