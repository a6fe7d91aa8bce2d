"""Benchmark: TurboFill adapter overhead per sampling step vs the bare few-step model.

    COMFYUI_DIR=/path/to/ComfyUI python benchmarks/turbofill_overhead.py [--size 512] [--steps 4]
    python benchmarks/turbofill_overhead.py --arch sdxl [--size 1024] [--dtype bf16] [--gpu]

``comfy`` (default): ComfyUI in-process, cfg 1, core KSampler (lcm) on the ~100 M-parameter random
SD1.5-architecture checkpoint from tests/support (or --checkpoint), without and with TurboFill Adapter
Apply (an adapter of the model's shape with random, non-zero residual convs); median of alternating
runs, divided by the steps. ``sdxl``: the full-size SDXL UNet architecture (random weights, diffusers)
and an adapter initialised from it; one model call per step at cfg 1, with and without the adapter.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

# benchmarks/ is on sys.path when a benchmark runs as a script
from comfy_host import alternate, centre_box_mask, host_arguments, start_comfyui, tiny_sd15

REPO = Path(__file__).resolve().parent.parent
SDXL_UNET = dict(sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816, use_linear_projection=True)


def randomise_residual_convs(adapter, seed: int = 0) -> None:
    """Give the zero convs values so the residual path computes what a trained adapter computes."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in adapter.named_parameters():
            if name.startswith(("input_zero", "output_zero", "middle_zero")):
                p.copy_(torch.randn(p.shape, generator=g) * 1e-3)


def bench_comfy(args) -> dict:
    if not args.comfyui:
        raise SystemExit("set COMFYUI_DIR or pass --comfyui (or use --arch sdxl)")
    start_comfyui(args.comfyui, gpu=args.gpu, threads=args.threads)
    import torch

    import comfy.model_management as mm
    import nodes as comfy_nodes

    from fewstep_pack.core.turbofill import AdapterConfig, TurboFillAdapter
    from fewstep_pack.nodes.comfy_turbofill import build_adapter, unet_shape
    from fewstep_pack.nodes.turbofill import TurboFillAdapterApply

    checkpoint, (model, clip, vae) = tiny_sd15(args.checkpoint)
    conds = clip.encode_from_tokens_scheduled(clip.tokenize("a wooden bench"))
    config = AdapterConfig(**unet_shape(model))
    torch.manual_seed(0)
    module = TurboFillAdapter(config)
    randomise_residual_convs(module)
    adapter = build_adapter(model, module.state_dict(), {"kind": "turbofill", "adapter_config": config.to_dict()},
                            "bench")
    image = torch.rand(1, args.size, args.size, 3, generator=torch.Generator().manual_seed(1))
    mask = centre_box_mask(args.size)
    adapted, _ = TurboFillAdapterApply.execute(positive=conds, negative=conds, adapter=adapter, vae=vae, image=image,
                                               mask=mask).result
    latent = {"samples": torch.zeros(1, 4, args.size // 8, args.size // 8)}

    def sample(positive):
        return lambda: comfy_nodes.common_ksampler(model, 1, args.steps, 1.0, "lcm", "sgm_uniform", positive, positive,
                                                   latent)

    with torch.inference_mode():
        times = alternate({"bare": sample(conds), "adapter": sample(adapted)}, args.repeats)
    per_step = {k: statistics.median(v) / args.steps for k, v in times.items()}
    params = sum(p.numel() for p in module.parameters())
    return {"mode": "comfy", "checkpoint": Path(checkpoint).name, "size": args.size, "steps": args.steps,
            "device": str(mm.get_torch_device()), "adapter_params_m": round(params / 1e6, 1),
            "seconds_per_step": per_step, "runs": times,
            "adapter_over_bare_per_step": per_step["adapter"] / per_step["bare"]}


def bench_sdxl(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO))
    from diffusers import UNet2DConditionModel

    from core.turbofill import adapter_from_unet
    from trainers.common.unet_walk import adm_vector, walk_unet

    device = torch.device("cuda" if args.gpu else "cpu")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SDXL_UNET).eval()
    adapter = adapter_from_unet(dict(unet.config), unet.state_dict()).eval()
    randomise_residual_convs(adapter)
    unet.to(device, dtype)
    adapter.to(device, dtype)
    side = args.size // 8
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, side, side, generator=g).to(device, dtype)
    hint = torch.cat([torch.randn(1, 4, side, side, generator=g), torch.ones(1, 1, side, side)], 1).to(device, dtype)
    ehs = torch.randn(1, 77, 2048, generator=g).to(device, dtype)
    added = {"text_embeds": torch.randn(1, 1280, generator=g).to(device, dtype),
             "time_ids": torch.tensor([[args.size, args.size, 0, 0, args.size, args.size]]).to(device, dtype)}
    y = adm_vector(unet, added)
    t = torch.tensor([499], device=device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def bare():
        walk_unet(unet, x, ehs, timesteps=t, added_cond_kwargs=added)
        sync()

    def with_adapter():
        walk_unet(unet, x, ehs, timesteps=t, added_cond_kwargs=added,
                  control=adapter(x, hint, t.to(dtype), y=y))
        sync()

    with torch.inference_mode():
        times = alternate({"bare": bare, "adapter": with_adapter}, args.repeats)
    per_step = {k: statistics.median(v) for k, v in times.items()}
    report = {"mode": "sdxl-architecture", "size": args.size, "dtype": args.dtype, "device": str(device),
              "unet_params_m": round(sum(p.numel() for p in unet.parameters()) / 1e6, 1),
              "adapter_params_m": round(sum(p.numel() for p in adapter.parameters()) / 1e6, 1),
              "seconds_per_step": per_step, "runs": times,
              "adapter_over_bare_per_step": per_step["adapter"] / per_step["bare"]}
    if device.type == "cuda":
        report["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return report


def main() -> int:
    parser = host_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]), size=512, repeats=4)
    parser.add_argument("--arch", choices=["comfy", "sdxl"], default="comfy")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="bf16")
    args = parser.parse_args()
    print(json.dumps(bench_sdxl(args) if args.arch == "sdxl" else bench_comfy(args), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
