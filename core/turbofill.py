"""TurboFill adapter (Xie et al., CVPR 2025): a BrushNet-style branch for a frozen few-step UNet.

Design (docs/methods.md §2.1, adapted to ComfyUI's residual interface):
- input: cat[x (the UNet's scaled input), masked-image latent (model space), hole mask] = 2C + 1
  channels. **Mask polarity: 1 = hole** (the pack's convention; BrushNet's channel is the opposite);
- body: the UNet's encoder and middle block *without attention* (ResNet blocks, downsamplers, time
  and SDXL added embeddings), initialised from the base UNet; conv_in copies the base weights for
  the latent and the masked latent, zero for the mask channel;
- outputs: zero-initialised 1×1 convs after every encoder layer (added to the UNet's hidden state,
  ComfyUI ``input`` control), after the middle block (``middle``), and a second set on the encoder
  features added to the decoder's skip inputs (``output``): the decoder's own layers get the masked image
  only through the skips they read (BrushNet also adds after each decoder layer; ComfyUI's control
  interface has no such hook). All are scaled by the apply node's strength.
With zero convs at zero the UNet's output is unchanged.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .rad import sinusoidal_embedding


@dataclass
class AdapterConfig:
    in_channels: int = 4  # latent channels C
    block_out_channels: list = field(default_factory=lambda: [320, 640, 1280, 1280])
    layers_per_block: int = 2
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    adm_in_channels: int | None = None  # SDXL: 2816 (pooled text + size embeddings)

    def to_dict(self) -> dict:
        return asdict(self)


class ResBlock(nn.Module):
    """ResNet block with a time projection; parameter names follow diffusers' ResnetBlock2D."""

    def __init__(self, cin: int, cout: int, temb: int, groups: int, eps: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None
        self.act = nn.SiLU()

    def forward(self, x, temb):
        h = self.conv1(self.act(self.norm1(x)))
        h = h + self.time_emb_proj(self.act(temb))[:, :, None, None]
        h = self.conv2(self.act(self.norm2(h)))
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Embedding(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.linear_1, self.act, self.linear_2 = nn.Linear(cin, cout), nn.SiLU(), nn.Linear(cout, cout)

    def forward(self, x):
        return self.linear_2(self.act(self.linear_1(x)))


def zero_conv(channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(channels, channels, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class TurboFillAdapter(nn.Module):
    """The branch; ``forward`` has the signature ComfyUI's ControlNet wrapper calls and returns its dict."""

    def __init__(self, config: AdapterConfig, residual_convs: bool = True):
        super().__init__()
        self.config = config
        c0 = config.block_out_channels[0]
        temb = 4 * c0
        self.time_embedding = Embedding(c0, temb)
        self.add_embedding = Embedding(config.adm_in_channels, temb) if config.adm_in_channels else None
        self.conv_in = nn.Conv2d(2 * config.in_channels + 1, c0, 3, padding=1)
        g, eps = config.norm_num_groups, config.norm_eps
        self.down_resnets = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        features = [c0]  # channels of every encoder feature (= ComfyUI input block)
        cin = c0
        for level, cout in enumerate(config.block_out_channels):
            blocks = nn.ModuleList()
            for _ in range(config.layers_per_block):
                blocks.append(ResBlock(cin, cout, temb, g, eps))
                cin = cout
                features.append(cout)
            self.down_resnets.append(blocks)
            last = level == len(config.block_out_channels) - 1
            self.downsamplers.append(nn.Identity() if last else Downsample(cout))
            if not last:
                features.append(cout)
        self.mid_resnets = nn.ModuleList([ResBlock(cin, cin, temb, g, eps), ResBlock(cin, cin, temb, g, eps)])
        if residual_convs:  # the discriminator's encoder reuses this class without them
            self.input_zero = nn.ModuleList(zero_conv(c) for c in features)
            self.output_zero = nn.ModuleList(zero_conv(c) for c in features)
            self.middle_zero = zero_conv(cin)
        self.gradient_checkpointing = False

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    def features(self, x, hint, timesteps, y=None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Encoder features (one per ComfyUI input block) and the middle feature."""
        emb = self.time_embedding(sinusoidal_embedding(timesteps.flatten(),
                                                       self.config.block_out_channels[0]).to(x.dtype))
        if self.add_embedding is not None:
            if y is None:
                raise ValueError("TurboFill adapter: an SDXL adapter needs the pooled text/size conditioning (y)")
            emb = emb + self.add_embedding(y.to(x.dtype))
        h = self.conv_in(torch.cat([x, hint.to(x.dtype)], dim=1))
        feats = [h]
        for blocks, down in zip(self.down_resnets, self.downsamplers):
            for block in blocks:
                h = self._run(block, h, emb)
                feats.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                feats.append(h)
        for block in self.mid_resnets:
            h = self._run(block, h, emb)
        return feats, h

    def _run(self, block, h, emb):
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, h, emb, use_reentrant=False)
        return block(h, emb)

    def forward(self, x, hint, timesteps, context=None, y=None, **kwargs) -> dict[str, list[torch.Tensor]]:
        feats, mid = self.features(x, hint, timesteps, y)
        inputs = [conv(f) for conv, f in zip(self.input_zero, feats)]
        outputs = [conv(f) for conv, f in zip(self.output_zero, feats)]
        # ComfyUI pops controls from the end: 'input' is consumed first-block-first, 'output' deepest-first.
        return {"input": inputs[::-1], "middle": [self.middle_zero(mid)], "output": outputs}


class FillDiscriminator(nn.Module):
    """TurboFill's diffusion discriminator (Xie et al. 2025; docs/methods.md §2.2, wiring ours): a trainable
    encoder fed the noisy latent together with the adapter's inputs (masked latent, hole mask) — the auxiliary
    encoder is folded into its first conv — a conv classifier on the middle feature (real/fake logit) and an
    auxiliary decoder that predicts the noise (trained with the fake diffusion loss)."""

    def __init__(self, config: AdapterConfig, width: int = 64):
        super().__init__()
        self.encoder = TurboFillAdapter(config, residual_convs=False)
        chans = [config.block_out_channels[0]] + [c for c in config.block_out_channels for _ in
                                                   range(config.layers_per_block)]
        mid = config.block_out_channels[-1]
        groups = min(config.norm_num_groups, mid)
        self.classifier = nn.Sequential(nn.GroupNorm(groups, mid), nn.SiLU(), nn.Conv2d(mid, width, 3, padding=1),
                                        nn.SiLU(), nn.Conv2d(width, 1, 1))
        self.decoder_proj = nn.ModuleList(nn.Conv2d(c, width, 1) for c in sorted(set(chans)))
        self._proj_index = {c: i for i, c in enumerate(sorted(set(chans)))}
        self.decoder_out = nn.Sequential(nn.SiLU(), nn.Conv2d(width, width, 3, padding=1), nn.SiLU(),
                                         nn.Conv2d(width, config.in_channels, 3, padding=1))

    def forward(self, x, hint, timesteps, y=None) -> tuple[torch.Tensor, torch.Tensor]:
        feats, mid = self.encoder.features(x, hint, timesteps, y)
        logit = self.classifier(mid).mean(dim=(1, 2, 3))
        size = feats[0].shape[-2:]
        pyramid = sum(nn.functional.interpolate(self.decoder_proj[self._proj_index[f.shape[1]]](f), size=size,
                                                mode="bilinear", align_corners=False) for f in feats)
        return logit, self.decoder_out(pyramid)


def config_from_unet(unet_config: dict) -> AdapterConfig:
    """Adapter shape from a diffusers UNet2DConditionModel config (SD1.x/2.x/SDXL)."""
    blocks = list(unet_config["block_out_channels"])
    layers = unet_config.get("layers_per_block", 2)
    if not isinstance(layers, int):
        if len(set(layers)) != 1:
            raise ValueError(f"TurboFill adapter: per-block layers_per_block {layers} is not supported")
        layers = layers[0]
    adm = (unet_config.get("projection_class_embeddings_input_dim")
           if unet_config.get("addition_embed_type") == "text_time" else None)
    return AdapterConfig(in_channels=unet_config.get("in_channels", 4), block_out_channels=blocks,
                         layers_per_block=layers, norm_num_groups=unet_config.get("norm_num_groups", 32),
                         norm_eps=unet_config.get("norm_eps", 1e-5), adm_in_channels=adm)


def unet_key_map(config: AdapterConfig) -> dict[str, str]:
    """Adapter parameter prefix → diffusers UNet prefix for every module initialised from the UNet
    (BrushNet's from_unet, docs/methods.md §2.1)."""
    keys = {"time_embedding.": "time_embedding.", "mid_resnets.0.": "mid_block.resnets.0.",
            "mid_resnets.1.": "mid_block.resnets.1."}
    if config.adm_in_channels:
        keys["add_embedding."] = "add_embedding."
    for level in range(len(config.block_out_channels)):
        for i in range(config.layers_per_block):
            keys[f"down_resnets.{level}.{i}."] = f"down_blocks.{level}.resnets.{i}."
        if level < len(config.block_out_channels) - 1:
            keys[f"downsamplers.{level}.conv."] = f"down_blocks.{level}.downsamplers.0.conv."
    return keys


@torch.no_grad()
def init_from_unet(module: TurboFillAdapter, unet_state: dict[str, torch.Tensor]) -> None:
    """BrushNet's from_unet: copy embeddings, ResNets and downsamplers; conv_in gets the UNet's kernel for
    both the latent and the masked latent and zero for the mask channel; zero convs stay zero."""
    own = module.state_dict()
    mapping = unet_key_map(module.config)
    missing = []
    for name in own:
        prefix = next((p for p in mapping if name.startswith(p)), None)
        if prefix is None:
            continue
        source = mapping[prefix] + name[len(prefix):]
        if source not in unet_state or unet_state[source].shape != own[name].shape:
            missing.append(source)
            continue
        own[name].copy_(unet_state[source])
    if missing:
        raise ValueError(f"TurboFill adapter: the UNet does not match the adapter config ({len(missing)} keys, "
                         f"e.g. {missing[:3]})")
    c = module.config.in_channels
    weight = unet_state["conv_in.weight"]
    own["conv_in.weight"].zero_()
    own["conv_in.weight"][:, :c].copy_(weight)
    own["conv_in.weight"][:, c:2 * c].copy_(weight)
    own["conv_in.bias"].copy_(unet_state["conv_in.bias"])


def adapter_from_unet(unet_config: dict, unet_state: dict[str, torch.Tensor]) -> TurboFillAdapter:
    """A TurboFill adapter shaped like, and initialised from, a diffusers UNet."""
    adapter = TurboFillAdapter(config_from_unet(unet_config))
    init_from_unet(adapter, unet_state)
    return adapter


def masked_image(image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """The adapter's background image: pixels in [0, 1] with the hole set to black, image·(1−m)
    (docs/methods.md §2.1)."""
    return image * (1.0 - hole)


def hint_mask(hole: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Hole mask (B,1,H,W) at latent size, resized like ComfyUI resizes a ControlNet's extra input (nearest-exact)."""
    return nn.functional.interpolate(hole.float(), size=size, mode="nearest-exact")
