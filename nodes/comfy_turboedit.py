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

from ..core.attention_mask import edit_mask, joint_token_attention, soften_local_mask, token_attention
from ..core.caption_edit import conditioning_positions
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


TEXT_LENGTHS = "fewstep_text_lengths"  # transformer_options key: each batch row's text length in a DiT's joint sequence


class AttentionRecorder:
    """``optimized_attention_override``: records the cond rows' attention to the changed tokens.

    UNets: cross-attention (keys = the caption). DiTs (Flux, Qwen-Image, Lumina2): joint attention over
    [text ; image], found by its length (each row's text length, put in ``transformer_options`` by
    ``text_length_wrapper``, plus ``image_len``); the image queries' attention to the tokens is kept."""

    def __init__(self, tokens: list[int], previous=None, image_len: int | None = None):
        self.tokens, self.maps, self.active, self.image_len = tokens, [], True, image_len
        self.previous = previous  # an override already set (e.g. newer ComfyUI's attention-backend node): chained

    def __call__(self, func, *args, **kwargs):
        if self.active and len(args) >= 4:
            q, k, _, heads = args[:4]
            options = kwargs.get("transformer_options") or {}
            if self.image_len is not None and TEXT_LENGTHS in options:
                self._record_joint(q, k, heads, options, kwargs.get("skip_reshape", False))
            elif (self.image_len is None and not kwargs.get("skip_reshape", False) and q.ndim == 3 and k.ndim == 3
                  and k.shape[1] != q.shape[1]):
                rows = self._cond_rows(q.shape[0], options)
                self.maps.append(token_attention(q[rows], k[rows], heads, self.tokens).cpu())
        if self.previous is not None:
            return self.previous(func, *args, **kwargs)
        return func(*args, **kwargs)

    def _record_joint(self, q, k, heads: int, options: dict, heads_first: bool) -> None:
        lengths = options[TEXT_LENGTHS]
        seq = q.shape[2] if heads_first else q.shape[1]
        if k.shape[-2 if heads_first else 1] != seq or seq != max(lengths) + self.image_len:
            return  # not the joint attention (a text or image refiner, or extra reference tokens)
        rows = self._cond_rows(q.shape[0], options)
        rows = range(q.shape[0])[rows] if isinstance(rows, slice) else rows
        self.maps.append(torch.cat([joint_token_attention(q[r:r + 1], k[r:r + 1], heads, self.tokens, lengths[r],
                                                          self.image_len, heads_first=heads_first).cpu()
                                    for r in rows]))

    @staticmethod
    def _cond_rows(batch: int, transformer_options: dict) -> slice | list[int]:
        order = transformer_options.get("cond_or_uncond") or [0]
        per = batch // len(order)
        rows = [i for j, kind in enumerate(order) if kind == 0 for i in range(j * per, (j + 1) * per)]
        return rows or slice(None)


def joint_text_lengths(c: dict) -> list[int]:
    """Each batch row's text length in a DiT's joint sequence: the caption's tokens (Flux, Qwen-Image); Lumina2 keeps
    only the unmasked ones (its ``num_tokens`` / ``attention_mask``)."""
    context = c["c_crossattn"]
    batch, length = context.shape[0], context.shape[1]
    if "num_tokens" in c:
        mask = c.get("attention_mask")
        if mask is not None:
            return [int(n) for n in mask.reshape(batch, -1).sum(1)]
        return [int(c["num_tokens"])] * batch
    return [length] * batch


def text_length_wrapper(previous=None):
    """``model_function_wrapper`` that puts each call's text lengths in ``transformer_options`` for the recorder
    (chains a wrapper already set)."""

    def wrapper(apply_model, args):
        c = dict(args["c"])
        c["transformer_options"] = {**c.get("transformer_options", {}), TEXT_LENGTHS: joint_text_lengths(c)}
        args = {**args, "c": c}
        if previous is not None:
            return previous(apply_model, args)
        return apply_model(args["input"], args["timestep"], **c)

    return wrapper


def image_token_count(diffusion_model, latent: torch.Tensor) -> int:
    """Image tokens of a patchified DiT for ``latent``: ⌈h/p⌉·⌈w/p⌉ (the model pads to its patch size)."""
    patch = int(getattr(diffusion_model, "patch_size", 2))
    h, w = latent.shape[-2:]
    return -(-h // patch) * -(-w // patch)


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
            elif self.tokens and self.tokens.get("target"):
                extra_args, mask_at = self._attention_mask(extra_args, latent_image, model_wrap.inner_model)
            elif self.tokens:
                logging.warning("TurboEdit Sampler: the edit only deletes words, so no edited token can place the "
                                "local mask; editing the whole image (connect a mask to localise a deletion)")
        k_callback = k_diffusion_callback(callback, sigmas)
        return sample_replay(model_wrap, latent_image, sigmas, extra_args, k_callback, disable_pbar,
                             trajectory=self.inversion.trajectory, mask=mask, mask_at=mask_at)

    def _attention_mask(self, extra_args: dict, latent: torch.Tensor, base_model):
        options = comfy.model_patcher.create_model_options_clone(extra_args.get("model_options", {}))
        transformer_options = options.setdefault("transformer_options", {})
        image_len = None
        if is_flow(base_model.model_sampling):  # a DiT: the mask comes from its joint attention
            image_len = image_token_count(base_model.diffusion_model, latent)
            options["model_function_wrapper"] = text_length_wrapper(options.get("model_function_wrapper"))
        recorder = AttentionRecorder(list(self.tokens["target"]),
                                     transformer_options.get("optimized_attention_override"), image_len)
        transformer_options["optimized_attention_override"] = recorder

        def mask_at(step: int, x0: torch.Tensor) -> torch.Tensor:
            recorder.active = False
            return edit_mask(recorder.maps, tuple(latent.shape[-2:]), threshold=self.threshold,
                             blur=self.blur).to(latent)

        return {**extra_args, "model_options": options}, mask_at


# The token stream that becomes the conditioning, by ComfyUI's tokenizer key: Qwen-Image's Qwen2.5-VL, Lumina2's
# Gemma, Flux's T5 (its CLIP-L gives only the pooled vector); else CLIP ("l", which SDXL's "g" shares positions with).
CONDITIONING_KEYS = ("qwen25_7b", "gemma2_2b", "gemma3_4b")


def conditioning_key(keys) -> str:
    """The tokenizer key whose tokens are the conditioning's positions."""
    keys = set(keys)
    for key in CONDITIONING_KEYS:
        if key in keys:
            return key
    if "t5xxl" in keys and "g" not in keys:
        return "t5xxl"
    return "l" if "l" in keys else sorted(keys)[0]


def caption_tokens(clip, text: str) -> tuple[dict, list, list[int], int]:
    """(ComfyUI token dict, the caption's real tokens, their positions, the token count) of the text encoder whose
    output is the conditioning (``conditioning_key``): every chunk concatenated, start/end/padding tokens left out
    (ComfyUI's word ids are 0 there)."""
    tokens = clip.tokenize(text)
    with_words = clip.tokenize(text, return_word_ids=True)
    key = conditioning_key(with_words)
    ids, positions = [], []
    stream = [t for chunk in with_words[key] for t in chunk]
    for position, token in enumerate(stream):
        word = token[2] if isinstance(token, tuple) and len(token) > 2 else 1
        if word > 0:
            value = token[0] if isinstance(token, tuple) else token
            ids.append(value if isinstance(value, int) else f"embedding:{word}")
            positions.append(position)
    return tokens, ids, positions, len(stream)


def encode_caption(clip, text: str) -> tuple[list, list, list[int]]:
    """(CONDITIONING, the caption's real tokens, each one's position in the conditioning's token axis)."""
    tokens, ids, positions, count = caption_tokens(clip, text)
    conditioning = clip.encode_from_tokens_scheduled(tokens)
    kept = conditioning_positions(positions, count, conditioning[0][0].shape[1])
    dropped = len(positions) - len(kept)
    return conditioning, ids[dropped:], kept


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

