"""A tiny random base model saved as a local diffusers folder, for trainer tests (no downloads)."""
from __future__ import annotations

import json
from pathlib import Path

import torch


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for bytes (GPT-2 / CLIP convention)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    symbols, extra = {}, 0
    for b in range(256):
        if b in printable:
            symbols[b] = chr(b)
        else:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def tiny_tokenizer(max_length: int = 16):
    """A byte-level CLIP tokenizer built in memory (every character is a token; no merges)."""
    from transformers import CLIPTokenizer

    chars = byte_symbols()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": i + len(chars) for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tok = CLIPTokenizer(vocab=vocab, merges=[])
    tok.model_max_length = max_length
    return tok


def build_tiny_base(folder: str | Path, *, seed: int = 0, sd15_shapes: bool = False, sdxl: bool = False,
                    max_length: int = 16) -> Path:
    """Save unet/, vae/, text_encoder/, tokenizer/, scheduler/ under ``folder`` and return it.

    ``sd15_shapes`` gives the UNet SD1.5's detection shapes (model_channels 320, context 768, one
    level) so ComfyUI accepts networks trained from it; ``sdxl`` builds an SDXL-style base (two text
    encoders, pooled text and size conditioning); otherwise everything is ~0.5 M parameters.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = Path(folder)
    torch.manual_seed(seed)
    ctx = 768 if sd15_shapes else 32
    if sd15_shapes:
        unet = UNet2DConditionModel(sample_size=8, block_out_channels=(320,), layers_per_block=1,
                                    down_block_types=("CrossAttnDownBlock2D",), up_block_types=("CrossAttnUpBlock2D",),
                                    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32)
    else:
        extra = {"addition_embed_type": "text_time", "addition_time_embed_dim": 8,
                 "projection_class_embeddings_input_dim": ctx + 6 * 8} if sdxl else {}
        unet = UNet2DConditionModel(sample_size=8, block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
                                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                    cross_attention_dim=2 * ctx if sdxl else ctx, attention_head_dim=8, **extra)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8, layers_per_block=1,
                        block_out_channels=(8, 16, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.18215)
    text_config = CLIPTextConfig(hidden_size=ctx, intermediate_size=2 * ctx, num_hidden_layers=2,
                                 num_attention_heads=4, vocab_size=514, max_position_embeddings=max_length,
                                 bos_token_id=512, eos_token_id=513, pad_token_id=513, projection_dim=ctx)
    text = CLIPTextModel(text_config)
    encoders = [text] + ([CLIPTextModelWithProjection(text_config)] if sdxl else [])
    return save_base(folder, unet, vae, encoders, max_length)


def save_base(folder: Path, unet, vae, text_encoders: list, max_length: int) -> Path:
    """Write a diffusers folder the trainers take: unet/, vae/, text_encoder(_2)/, tokenizer(_2)/, scheduler/."""
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    for i, encoder in enumerate(text_encoders):
        suffix = f"_{i + 1}" if i else ""
        encoder.save_pretrained(folder / f"text_encoder{suffix}")
        tiny_tokenizer(max_length).save_pretrained(folder / f"tokenizer{suffix}")
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({
        "_class_name": "EulerDiscreteScheduler", "beta_start": 0.00085, "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "prediction_type": "epsilon",
        "timestep_spacing": "trailing", "steps_offset": 1}))
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "safety_checker": [None, None], "feature_extractor": [None, None], "requires_safety_checker": False}))
    return folder


def build_sdxl_base(folder: str | Path, *, seed: int = 0, device: str = "cpu", dtype: torch.dtype = torch.float16
                    ) -> Path:
    """A random base of SDXL's real size (UNet 2.6 B, SD VAE, CLIP-L + bigG; byte-level tokenizer, 77 tokens),
    drawn on ``device`` and saved in ``dtype``: the device suite's training steps run on it."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from .build_tiny_checkpoint import CLIP_G, CLIP_L

    folder = Path(folder)
    torch.manual_seed(seed)
    ids = {"bos_token_id": 512, "eos_token_id": 513, "pad_token_id": 513, "max_position_embeddings": 77}
    with torch.device(device):
        unet = UNet2DConditionModel(
            sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
            use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816).to(dtype)
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            scaling_factor=0.13025, sample_size=1024).to(dtype)
        encoders = [CLIPTextModel(CLIPTextConfig(**CLIP_L, **ids)).to(dtype),
                    CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_G, **ids)).to(dtype)]
    return save_base(folder, unet, vae, encoders, 77)

FLUX_TRANSFORMER = {"patch_size": 1, "in_channels": 64, "num_layers": 1, "num_single_layers": 1,
                    "attention_head_dim": 32, "num_attention_heads": 2, "joint_attention_dim": 32,
                    "pooled_projection_dim": 32, "guidance_embeds": False, "axes_dims_rope": (4, 14, 14)}
# tests/support/tiny_flow.py's ComfyUI FLUX.1-schnell has the same architecture, so a network trained from this base
# loads into that MODEL


def t5_tokenizer(corpus: list[str]):
    """A T5 tokenizer (sentencepiece unigram, T5's ids: pad 0, eos 1, unk 2) trained in memory on ``corpus``."""
    import io

    import sentencepiece
    from transformers import T5Tokenizer

    buffer = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=buffer, vocab_size=96, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        hard_vocab_limit=False, minloglevel=2)
    model = sentencepiece.SentencePieceProcessor(model_proto=buffer.getvalue())
    vocab = [(model.id_to_piece(i), float(model.get_score(i))) for i in range(model.get_piece_size())]
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0)
    tokenizer.model_max_length = 32
    return tokenizer


def build_tiny_flux_base(folder: str | Path, *, seed: int = 0, prompts: list[str] | None = None) -> Path:
    """A tiny random FLUX.1-schnell-layout diffusers folder: transformer/ (FLUX_TRANSFORMER), vae/ (16 channels,
    FLUX's scale and shift), text_encoder/ + tokenizer/ (CLIP-L, pooled 32), text_encoder_2/ + tokenizer_2/ (T5, 32
    wide), scheduler/ (flow matching, shift 1)."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    folder = Path(folder)
    torch.manual_seed(seed)
    FluxTransformer2DModel(**FLUX_TRANSFORMER).save_pretrained(folder / "transformer")
    AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, norm_num_groups=8, layers_per_block=1,
                  block_out_channels=(8, 16, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
                  up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.3611, shift_factor=0.1159,
                  ).save_pretrained(folder / "vae")
    CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                 vocab_size=514, max_position_embeddings=16, bos_token_id=512, eos_token_id=513,
                                 pad_token_id=513, projection_dim=32)).save_pretrained(folder / "text_encoder")
    tiny_tokenizer(16).save_pretrained(folder / "tokenizer")
    corpus = prompts or [line.strip() for line in (Path(__file__).resolve().parents[2] / "trainers" / "configs" /
                                                   "prompts_example.txt").read_text().splitlines() if line.strip()]
    t5_tok = t5_tokenizer(corpus)
    t5_tok.save_pretrained(folder / "tokenizer_2")
    T5EncoderModel(T5Config(vocab_size=len(t5_tok), d_model=32, d_kv=16, d_ff=64, num_layers=1, num_heads=2,
                            feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1)
                   ).save_pretrained(folder / "text_encoder_2")
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({
        "_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 1.0,
        "use_dynamic_shifting": False}))
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "FluxPipeline", "transformer": ["diffusers", "FluxTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "text_encoder_2": ["transformers", "T5EncoderModel"],
        "tokenizer_2": ["transformers", "T5Tokenizer"],
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"]}))
    return folder


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Save a tiny random diffusers base model "
                                                 "(for the tiny trainer configs).")
    parser.add_argument("folder")
    parser.add_argument("--sd15-shapes", action="store_true", help="SD1.5 detection shapes (ComfyUI loads it)")
    parser.add_argument("--flux", action="store_true", help="a FLUX.1-schnell-layout folder (transformer/, T5)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.flux:
        print(build_tiny_flux_base(args.folder, seed=args.seed))
    else:
        print(build_tiny_base(args.folder, seed=args.seed, sd15_shapes=args.sd15_shapes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
