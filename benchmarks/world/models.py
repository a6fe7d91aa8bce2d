"""The world's networks: configs of the VAE, text encoder and UNets, an in-memory word-level CLIP tokenizer,
and the judge (a small classifier of shapes, colours and backgrounds)."""
from __future__ import annotations

import torch
from torch import nn

from . import scene

MAX_TOKENS = 40  # the longest caption (3 objects, a two-colour background) is 36 tokens with BOS/EOS
TEXT_WIDTH = 64
VAE_SCALE_DOWN = 4  # f = 4: a small (13 px) object spans 3 latent cells, so shape and mask edges survive


def word_tokenizer():
    """A CLIPTokenizer whose BPE merges spell every world word as one token (built in memory, no download).

    Merges are added greedily, lowest priority last: a word already reduced to one token never meets a pair
    added later, so each word stays one token."""
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {}
    merges: list[tuple[str, str]] = []

    def add(token: str) -> None:
        vocab.setdefault(token, len(vocab))

    def bpe(word: str) -> list[str]:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        ranks = {m: i for i, m in enumerate(merges)}
        while len(parts) > 1:
            pairs = [(ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            rank, i = min(pairs)
            if rank == 1 << 30:
                break
            parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]
        return parts

    for word in scene.vocabulary():
        for ch in word[:-1]:
            add(ch)
        add(word[-1] + "</w>")
        parts = bpe(word)
        while len(parts) > 1:
            merges.append((parts[0], parts[1]))
            add(parts[0] + parts[1])
            parts = bpe(word)
    add("<|startoftext|>")
    add("<|endoftext|>")
    import json
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
        tok = CLIPTokenizer(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"), unk_token="<|endoftext|>",
                            pad_token="<|endoftext|>")
    tok.model_max_length = MAX_TOKENS
    return tok


def text_encoder(vocab_size: int):
    """A small CLIPTextModel (2 layers, width 64), trained jointly with the teacher, then frozen; its word and
    position embeddings start at std 1 and 0.3."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(hidden_size=TEXT_WIDTH, intermediate_size=4 * TEXT_WIDTH, num_hidden_layers=2,
                            num_attention_heads=4, vocab_size=vocab_size, max_position_embeddings=MAX_TOKENS,
                            bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
                            projection_dim=TEXT_WIDTH)
    model = CLIPTextModel(config)
    with torch.no_grad():  # words must dominate the residual stream: CLIP's init (std 0.02 tokens, 0.01 positions)
        # gave every caption nearly the same states (std across captions 0.06 of 1.0) and the UNet ignored them
        model.get_input_embeddings().weight.normal_(0.0, 1.0)
        positions = [m for name, m in model.named_modules() if name.endswith("embeddings.position_embedding")]
        positions[0].weight.normal_(0.0, 0.3)
    return model


def vae():
    """AutoencoderKL, 4 latent channels, f = 4 (two downsamplings), no mid-block attention (CPU budget)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=16,
                         block_out_channels=(16, 32, 64), down_block_types=("DownEncoderBlock2D",) * 3,
                         up_block_types=("UpDecoderBlock2D",) * 3, mid_block_add_attention=False, sample_size=64)


UNET_CONFIG = dict(
    sample_size=scene.SIZE // VAE_SCALE_DOWN, in_channels=4, out_channels=4, layers_per_block=1,
    block_out_channels=(32, 64, 128), norm_num_groups=32, cross_attention_dim=TEXT_WIDTH, attention_head_dim=4,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
)


def unet():
    """ε-prediction UNet2DConditionModel (3 levels at 16/8/4, cross-attention at 16 and 8; ~3.2 M parameters);
    SD1.5's layout at toy width, so ComfyUI's own UNetModel holds the same weights."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**UNET_CONFIG)


# ----------------------------------------------------------------------------------------------- the judge

NONE_SHAPE = len(scene.SHAPES)  # "no object here"
NONE_COLOUR = len(scene.COLOUR_NAMES)  # second background colour of a solid background


class Judge(nn.Module):
    """Reads an RGB image (0..1) and a region mask; predicts the region's object shape (or none) and colour,
    and the background's kind and colours."""

    def __init__(self, width: int = 32):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
                                 nn.Conv2d(cout, cout, 3, padding=1, stride=2), nn.GroupNorm(8, cout), nn.SiLU())

        self.trunk = nn.Sequential(block(4, width), block(width, 2 * width), block(2 * width, 2 * width),
                                   block(2 * width, 4 * width))  # 64 → 4
        feat = 4 * width * 4 * 4
        self.shape = nn.Linear(feat, len(scene.SHAPES) + 1)
        self.colour = nn.Linear(feat, len(scene.COLOUR_NAMES))
        self.bg_kind = nn.Linear(feat, len(scene.BACKGROUNDS))
        self.bg_first = nn.Linear(feat, len(scene.COLOUR_NAMES))
        self.bg_second = nn.Linear(feat, len(scene.COLOUR_NAMES) + 1)

    def forward(self, image: torch.Tensor, region: torch.Tensor) -> dict:
        h = self.trunk(torch.cat([image * 2 - 1, region], dim=1)).flatten(1)
        return {"shape": self.shape(h), "colour": self.colour(h), "bg_kind": self.bg_kind(h),
                "bg_first": self.bg_first(h), "bg_second": self.bg_second(h)}
