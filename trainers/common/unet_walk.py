"""Walk a diffusers UNet2DConditionModel's own modules with two extras the trainers need:

- a per-pixel timestep map (RAD, docs/methods.md §3.3): the time MLP and every ResNet's time projection per pixel,
  from ``core.rad`` so the trainer and the ComfyUI patch share one definition;
- adapter residuals in ComfyUI's control layout (``input`` after every encoder layer, ``middle``
  after the middle block, ``output`` on the decoder's skip inputs, each list popped from its end
  exactly as ComfyUI's UNet does), for the TurboFill trainer.

No weights are copied. Supports the SD1.x/2.x/SDXL block types (CrossAttnDown/Down/Mid/CrossAttnUp/Up)
with default ResNet blocks; a uniform map and no residuals reproduce ``unet(sample, t)``.
"""
from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from core.rad import spatial_time_embedding, time_term

SUPPORTED = {"CrossAttnDownBlock2D", "DownBlock2D", "UNetMidBlock2DCrossAttn", "CrossAttnUpBlock2D", "UpBlock2D"}


def check_unet(unet) -> None:
    """Refuse UNets whose blocks this walk does not reproduce (rather than computing something else)."""
    names = {type(b).__name__ for b in [*unet.down_blocks, unet.mid_block, *unet.up_blocks]}
    unknown = names - SUPPORTED
    if unknown:
        raise ValueError(f"base_model: UNet blocks {sorted(unknown)} are not supported by the RAD trainer")
    for block in [*unet.down_blocks, unet.mid_block, *unet.up_blocks]:
        for resnet in block.resnets:
            if resnet.time_embedding_norm != "default" or resnet.upsample is not None or resnet.downsample is not None:
                raise ValueError("base_model: only default ResNet blocks (no scale-shift, no resampling resnets)")


def resnet_forward(resnet, h: torch.Tensor, emb_map: torch.Tensor) -> torch.Tensor:
    """ResnetBlock2D with its time projection applied per pixel."""
    x = h
    h = resnet.conv1(resnet.nonlinearity(resnet.norm1(h)))
    if resnet.time_emb_proj is not None:
        h = h + time_term(emb_map, resnet.nonlinearity, resnet.time_emb_proj, h.shape[-2:]).to(h.dtype)
    h = resnet.conv2(resnet.dropout(resnet.nonlinearity(resnet.norm2(h))))
    if resnet.conv_shortcut is not None:
        x = resnet.conv_shortcut(x)
    return (x + h) / resnet.output_scale_factor


def _maybe_checkpoint(fn, *args, enabled: bool):
    if enabled and torch.is_grad_enabled():
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


def _resnet(resnet, h, emb):
    """A ResNet block with a (B,E) embedding (plain) or a (B,h,w,E) map (per pixel)."""
    if emb.ndim == 2:
        return resnet(h, emb)
    return resnet_forward(resnet, h, emb)


def _add(h: torch.Tensor, control: dict | None, name: str) -> torch.Tensor:
    if control and control.get(name):
        residual = control[name].pop()
        if residual is not None:
            h = h + residual.to(h.dtype)
    return h


def walk_unet(unet, sample: torch.Tensor, encoder_hidden_states: torch.Tensor, *,
              timesteps: torch.Tensor | None = None, tmap: torch.Tensor | None = None,
              added_cond_kwargs: dict | None = None, control: dict | None = None,
              gradient_checkpointing: bool = False) -> torch.Tensor:
    """ε̂ of ``unet`` at ``timesteps`` (B,) or per-pixel ``tmap`` (B,1,h,w), with optional ``control`` residuals."""
    if (timesteps is None) == (tmap is None):
        raise ValueError("walk_unet: give exactly one of timesteps and tmap")
    control = {k: list(v) for k, v in control.items()} if control else None  # popped below
    time_mlp = unet.time_embedding
    if tmap is not None:
        emb = spatial_time_embedding(tmap, unet.time_proj.num_channels, lambda e: time_mlp(e.to(sample.dtype)))
        aug = unet.get_aug_embed(emb=emb.new_zeros(sample.shape[0], emb.shape[-1]),
                                 encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added_cond_kwargs or {})
        if aug is not None:
            emb = emb + aug[:, None, None, :]
    else:
        emb = time_mlp(unet.time_proj(timesteps.expand(sample.shape[0])).to(sample.dtype))
        aug = unet.get_aug_embed(emb=emb, encoder_hidden_states=encoder_hidden_states,
                                 added_cond_kwargs=added_cond_kwargs or {})
        if aug is not None:
            emb = emb + aug
    ctx = encoder_hidden_states
    ck = gradient_checkpointing

    def attend(attn, h):
        return attn(h, encoder_hidden_states=ctx, return_dict=False)[0]

    h = _add(unet.conv_in(sample), control, "input")
    skips = [h]
    for block in unet.down_blocks:
        attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
        for resnet, attn in zip(block.resnets, attentions):
            h = _maybe_checkpoint(_resnet, resnet, h, emb, enabled=ck)
            if attn is not None:
                h = _maybe_checkpoint(attend, attn, h, enabled=ck)
            h = _add(h, control, "input")
            skips.append(h)
        for down in block.downsamplers or []:
            h = _add(down(h), control, "input")
            skips.append(h)
    mid = unet.mid_block
    h = _maybe_checkpoint(_resnet, mid.resnets[0], h, emb, enabled=ck)
    for attn, resnet in zip(mid.attentions, mid.resnets[1:]):
        h = _maybe_checkpoint(attend, attn, h, enabled=ck)
        h = _maybe_checkpoint(_resnet, resnet, h, emb, enabled=ck)
    h = _add(h, control, "middle")
    for block in unet.up_blocks:
        attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
        for resnet, attn in zip(block.resnets, attentions):
            h = torch.cat([h, _add(skips.pop(), control, "output")], dim=1)
            h = _maybe_checkpoint(_resnet, resnet, h, emb, enabled=ck)
            if attn is not None:
                h = _maybe_checkpoint(attend, attn, h, enabled=ck)
        for up in block.upsamplers or []:
            h = up(h, output_size=skips[-1].shape[-2:] if skips else None)
    if unet.conv_norm_out is not None:
        h = unet.conv_act(unet.conv_norm_out(h))
    return unet.conv_out(h)


def spatial_forward(unet, sample: torch.Tensor, tmap: torch.Tensor, encoder_hidden_states: torch.Tensor,
                    added_cond_kwargs: dict | None = None, *, gradient_checkpointing: bool = False) -> torch.Tensor:
    """ε̂ of ``unet`` at per-pixel timesteps ``tmap`` (B,1,h,w); equals ``unet(sample, t)`` when tmap ≡ t."""
    return walk_unet(unet, sample, encoder_hidden_states, tmap=tmap, added_cond_kwargs=added_cond_kwargs,
                     gradient_checkpointing=gradient_checkpointing)


def adm_vector(unet, added_cond_kwargs: dict | None) -> torch.Tensor | None:
    """SDXL's ``y`` as ComfyUI builds it: pooled text + sinusoidal size ids (what ``add_embedding`` reads)."""
    if not added_cond_kwargs or getattr(unet.config, "addition_embed_type", None) != "text_time":
        return None
    text, ids = added_cond_kwargs["text_embeds"], added_cond_kwargs["time_ids"]
    sizes = unet.add_time_proj(ids.flatten()).reshape(ids.shape[0], -1)
    return torch.cat([text, sizes.to(text.dtype)], dim=-1)
