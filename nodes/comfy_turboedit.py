"""TurboEdit in ComfyUI: inversion run through ComfyUI's sampling, the edit SAMPLER, attention masks.

Imports ComfyUI; loaded when a TurboEdit node runs. Both inversions run as SAMPLER objects through
``comfy.sample.sample_custom`` so the model is prepared, patched and offloaded by ComfyUI itself.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import comfy.model_patcher
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import torch

from ..core.attention_mask import edit_mask, soften_local_mask, token_attention
from ..core.masks import check_finite, mask_for_latent
from ..core.schedules import parse_timesteps
from ..core.turboedit import Trajectory, encoder_step, invert_exact, invert_with_encoder, sample_replay
from ._api import INVERSION_METHODS, LOCAL_MASKS, check_option
from .comfy_networks import UNetNetwork, build_unet_network, first_conditioning, model_family
from .comfy_sampler import k_diffusion_callback
from .schedule import is_flow


@dataclass
class Inversion:
    """The FEWSTEP_INVERSION wire: an inverted trajectory plus what it is valid for."""

    trajectory: Trajectory  # model space, CPU float32
    model_id: int
    family: str
    method: str
    latent_shape: tuple
    patcher_uuid: object = None  # the MODEL's ``clone_base_uuid`` (newer ComfyUI), which survives a model swap

    def check(self, base_model, latent: torch.Tensor, sigmas: torch.Tensor, patcher=None) -> None:
        same_patcher = self.patcher_uuid is not None and getattr(patcher, "clone_base_uuid", None) == self.patcher_uuid
        if id(base_model) != self.model_id and not same_patcher:  # newer ComfyUI may rebuild the BaseModel (hooks)
            raise ValueError("inversion: was computed with another MODEL; invert with the model you edit with")
        if tuple(latent.shape) != self.latent_shape:
            raise ValueError(f"inversion: was computed for a latent of shape {self.latent_shape}, the LATENT is "
                             f"{tuple(latent.shape)} (another image or resolution)")
        if len(sigmas) != len(self.trajectory.sigmas):
            raise ValueError(f"sigmas: {len(sigmas) - 1} steps, the inversion has {self.trajectory.steps}; "
                             "use the SIGMAS output of Iterative Inverter")


class TurboEditEncoder:
    """TurboEdit's inversion encoder: a UNet of the MODEL's architecture with 2C in/out channels."""

    def __init__(self, network: UNetNetwork):
        self.network, self.name = network, network.name
        self.timesteps = network.metadata.get("timesteps", "")

    def check_schedule(self, timesteps: list[int]) -> None:
        trained = parse_timesteps(self.timesteps) if self.timesteps else None
        if trained is not None and trained != timesteps:
            raise ValueError(f"encoder: {self.name} was trained for timesteps {trained}, the inversion uses "
                             f"{timesteps}; set steps to {len(trained)} (trailing)")

    def fn(self, model, positive, batch: int, width: int, height: int):
        """``encoder(z, x̂0_prev, σ) → μ`` on model-space latents (deterministic: ε = μ at inference)."""
        sampling = model.get_model_object("model_sampling")
        context, extra = first_conditioning(positive, batch, "conditioning")
        y = self.network.adm(extra, batch, width, height)

        def encode(source, previous, sigma):
            t = sampling.timestep(sigma.float().cpu()).round()
            mean, _ = encoder_step(lambda x, tt: self.network.forward(x, tt, context, y),
                                   source.float().cpu(), previous.float().cpu(), t)
            return mean.to(source)

        return encode


def build_encoder(model, state_dict: dict, metadata: dict, name: str) -> TurboEditEncoder:
    channels = model.model.model_config.unet_config.get("in_channels", 4)
    return TurboEditEncoder(build_unet_network(model, state_dict, metadata, name, "turboedit",
                                               channels_in=2 * channels, channels_out=2 * channels))


def model_renoise(model_wrap):
    """The model's own re-noise x = noise_scaling(σ, ε, x̂0): VE form for ε/v models, (1 − σ)·x̂0 + σ·ε for flow."""
    sampling = model_wrap.inner_model.model_sampling
    return lambda sigma, eps, x0: sampling.noise_scaling(sigma, eps, x0)


def image_mask(mask: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
    """A (B,1,h,w) latent mask shaped for ``latent``: (B,1,1,h,w) for a latent with a time axis of 1 (Qwen-Image)."""
    return mask[:, :, None] if latent.ndim == 5 else mask


class InvertingSampler(comfy.samplers.Sampler):
    """Runs an inversion inside ComfyUI's sampling and keeps the trajectory (returns the reconstruction)."""

    def __init__(self, method: str, seed: int, encode=None):
        self.method, self.seed, self.encode, self.trajectory = method, seed, encode, None

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        k_callback = k_diffusion_callback(callback, sigmas)
        if self.method == "exact":
            generator = torch.Generator(device="cpu").manual_seed(self.seed % 2**64)
            traj = invert_exact(model_wrap, latent_image, sigmas, extra_args, generator=generator,
                                disable=disable_pbar, callback=k_callback, renoise=model_renoise(model_wrap))
        else:
            traj = invert_with_encoder(model_wrap, self.encode, latent_image, sigmas, extra_args,
                                       disable=disable_pbar, callback=k_callback)
        self.trajectory = traj.to("cpu", torch.float32)
        return traj.x0s[-1] + traj.residual


def run_inversion(model, latent: torch.Tensor, positive, sigmas: torch.Tensor, method: str, seed: int,
                  encoder: TurboEditEncoder | None) -> tuple[Inversion, torch.Tensor]:
    """(INVERSION, reconstruction LATENT samples) of a raw latent under the source conditioning."""
    check_option("method", method, INVERSION_METHODS)
    check_finite(latent, "latent")
    latent = comfy.sample.fix_empty_latent_channels(model, latent)  # as SamplerCustomAdvanced shapes the edit's
    encode = None
    if method == "encoder":
        if encoder is None:
            raise ValueError("encoder: method 'encoder' needs a TurboEdit encoder (TurboEdit Encoder Loader)")
        encoder.check_schedule([int(round(float(model.get_model_object("model_sampling").timestep(s))))
                                for s in sigmas[:-1]])
        encode = encoder.fn(model, positive, latent.shape[0], latent.shape[-1] * 8, latent.shape[-2] * 8)
    sampler = InvertingSampler(method, seed, encode)
    callback = latent_preview.prepare_callback(model, len(sigmas) - 1)
    recon = comfy.sample.sample_custom(model, torch.zeros_like(latent), 1.0, sampler, sigmas, positive, positive,
                                       latent, callback=callback, disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
                                       seed=seed)
    inversion = Inversion(sampler.trajectory, id(model.model), model_family(model), method, tuple(latent.shape),
                          patcher_uuid=getattr(model, "clone_base_uuid", None))
    return inversion, recon


class AttentionRecorder:
    """``optimized_attention_override``: records cond-branch cross-attention to the changed tokens."""

    def __init__(self, tokens: list[int], previous=None):
        self.tokens, self.maps, self.active = tokens, [], True
        self.previous = previous  # an override already set (e.g. newer ComfyUI's attention-backend node): chained

    def __call__(self, func, *args, **kwargs):
        if self.active and len(args) >= 4 and not kwargs.get("skip_reshape", False):
            q, k, _, heads = args[:4]
            if q.ndim == 3 and k.ndim == 3 and k.shape[1] != q.shape[1]:
                rows = self._cond_rows(q.shape[0], kwargs.get("transformer_options") or {})
                self.maps.append(token_attention(q[rows], k[rows], heads, self.tokens).cpu())
        if self.previous is not None:
            return self.previous(func, *args, **kwargs)
        return func(*args, **kwargs)

    @staticmethod
    def _cond_rows(batch: int, transformer_options: dict) -> slice | list[int]:
        order = transformer_options.get("cond_or_uncond") or [0]
        per = batch // len(order)
        rows = [i for j, kind in enumerate(order) if kind == 0 for i in range(j * per, (j + 1) * per)]
        return rows or slice(None)


class EditSampler(comfy.samplers.Sampler):
    """Replays an INVERSION with the guider's (target) conditioning; keeps the source outside a local mask.

    Mask: the ``mask`` input, else the LATENT's noise_mask, else (``auto``) cross-attention to the
    changed tokens recorded during the first step; ``off`` edits everywhere.
    """

    def __init__(self, inversion: Inversion, mask=None, tokens=None, local_mask: str = "auto",
                 threshold: float = 0.4, blur: int = -1):
        self.inversion, self.mask, self.tokens = inversion, mask, tokens
        self.local_mask = check_option("local_mask", local_mask, LOCAL_MASKS)
        self.threshold, self.blur = threshold, blur

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        self.inversion.check(model_wrap.inner_model, latent_image, sigmas, getattr(model_wrap, "model_patcher", None))
        mask, mask_at = None, None
        if self.local_mask != "off":
            if self.mask is not None:
                mask = soften_local_mask(mask_for_latent(self.mask, latent_image.shape, "mask"), self.blur)
                mask = image_mask(mask, latent_image).to(latent_image)
            elif denoise_mask is not None:
                flat = denoise_mask[:, :1, 0] if denoise_mask.ndim == 5 else denoise_mask[:, :1]
                mask = image_mask(soften_local_mask(flat.float(), self.blur), latent_image).to(latent_image)
            elif self.tokens and self.tokens.get("target") and is_flow(model_wrap.inner_model.model_sampling):
                raise ValueError("local_mask: the automatic mask reads a UNet's cross-attention; on a flow model "
                                 "connect a mask (or the LATENT's noise mask), or set local_mask to off")
            elif self.tokens and self.tokens.get("target"):
                extra_args, mask_at = self._attention_mask(extra_args, latent_image)
            elif self.tokens:
                logging.warning("TurboEdit Sampler: the edit only deletes words, so no edited token can place the "
                                "local mask; editing the whole image (connect a mask to localise a deletion)")
        k_callback = k_diffusion_callback(callback, sigmas)
        return sample_replay(model_wrap, latent_image, sigmas, extra_args, k_callback, disable_pbar,
                             trajectory=self.inversion.trajectory, mask=mask, mask_at=mask_at)

    def _attention_mask(self, extra_args: dict, latent: torch.Tensor):
        options = comfy.model_patcher.create_model_options_clone(extra_args.get("model_options", {}))
        transformer_options = options.setdefault("transformer_options", {})
        recorder = AttentionRecorder(list(self.tokens["target"]),
                                     transformer_options.get("optimized_attention_override"))
        transformer_options["optimized_attention_override"] = recorder

        def mask_at(step: int, x0: torch.Tensor) -> torch.Tensor:
            recorder.active = False
            return edit_mask(recorder.maps, tuple(latent.shape[-2:]), threshold=self.threshold,
                             blur=self.blur).to(latent)

        return {**extra_args, "model_options": options}, mask_at


def caption_tokens(clip, text: str) -> tuple[dict, list, list[int]]:
    """(ComfyUI token dict, the caption's real tokens, their positions in the conditioning) of the first text
    encoder: every 77-token chunk concatenated, start/end/padding tokens left out (ComfyUI's word ids are 0 there)."""
    tokens = clip.tokenize(text)
    with_words = clip.tokenize(text, return_word_ids=True)
    key = "l" if "l" in with_words else sorted(with_words)[0]
    ids, positions = [], []
    for position, token in enumerate(t for chunk in with_words[key] for t in chunk):
        word = token[2] if isinstance(token, tuple) and len(token) > 2 else 1
        if word > 0:
            value = token[0] if isinstance(token, tuple) else token
            ids.append(value if isinstance(value, int) else f"embedding:{word}")
            positions.append(position)
    return tokens, ids, positions


def interpolate_conditioning(source, target, strength: float):
    """c_α = c + α(c′ − c) on token embeddings and pooled output (TurboEdit edit strength)."""
    if strength == 1.0:
        return target
    out = []
    for (s, sd), (t, td) in zip(source, target):
        if s.shape != t.shape:
            raise ValueError("strength: the two captions encode to different lengths (more than 75 tokens apart); "
                             "use strength 1 or shorten the caption")
        d = dict(td)
        if sd.get("pooled_output") is not None and td.get("pooled_output") is not None:
            d["pooled_output"] = torch.lerp(sd["pooled_output"], td["pooled_output"], strength)
        out.append([torch.lerp(s, t, strength), d])
    return out

