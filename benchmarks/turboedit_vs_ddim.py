"""Benchmark: TurboEdit inversion + one edit vs 50-step DDIM inversion + edit, same model and size.

    COMFYUI_DIR=/path/to/ComfyUI python benchmarks/turboedit_vs_ddim.py [--size 256] [--repeats 3] [--gpu]

ComfyUI in-process, cfg 1 (one model call per step). Counts network passes (NFE) and times:
- exact: Iterative Inverter (exact, 4 passes) + TurboEdit Edit Sampler (4 passes);
- encoder: Iterative Inverter (encoder: 4 encoder + 4 model passes) + edit (4 passes); the encoder is the
  checkpoint's UNet widened to 8 channels (random-weight timing stand-in for a trained one);
- ddim: DDIM inversion over 50 steps + 50-step DDIM (Euler) sampling with the target caption.
Default checkpoint: the ~100 M-parameter random SD1.5-architecture one from tests/support.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

# benchmarks/ is on sys.path when a benchmark runs as a script
from comfy_host import host_arguments, start_from_arguments, tiny_sd15


def main() -> int:
    parser = host_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]), size=256, repeats=3)
    parser.add_argument("--ddim-steps", type=int, default=50)
    args = parser.parse_args()
    start_from_arguments(parser, args)
    import torch

    import comfy.model_management as mm
    import comfy.sample
    import comfy.samplers
    import comfy.sd
    import comfy.utils
    from comfy_extras.nodes_custom_sampler import Noise_EmptyNoise, SamplerCustomAdvanced

    from fewstep_pack.core.schedules import fewstep_sigmas, trailing_timesteps
    from fewstep_pack.core.turboedit import invert_ddim
    from fewstep_pack.nodes.comfy_networks import build_unet_network
    from fewstep_pack.nodes.comfy_turboedit import TurboEditEncoder
    from fewstep_pack.nodes.turboedit import CaptionEditor, IterativeInverter, TurboEditSampler

    checkpoint, (model, clip, vae) = tiny_sd15(args.checkpoint)
    source, target, *_, tokens, _ = CaptionEditor.execute(clip=clip, caption="a photo of a red car on a street",
                                                          edit="red → blue").result
    base = model.model.diffusion_model.state_dict()
    wide = {k: (torch.cat([v, torch.zeros_like(v)], 1) if k == "input_blocks.0.0.weight" else
                torch.cat([v, torch.zeros_like(v)], 0) if k.startswith("out.2.") else v.clone())
            for k, v in base.items()}
    encoder = TurboEditEncoder(build_unet_network(model, wide, {"kind": "turboedit", "key_format": "ldm"}, "bench",
                                                  "turboedit", channels_in=8, channels_out=8))
    image = torch.rand(1, args.size, args.size, 3, generator=torch.Generator().manual_seed(0))
    latent = {"samples": vae.encode(image)}
    calls = {"n": 0}

    def counter(apply_model, a):
        calls["n"] += 1
        return apply_model(a["input"], a["timestep"], **a["c"])

    counted = model.clone()
    counted.set_model_unet_function_wrapper(counter)

    def guider(conds):
        g = comfy.samplers.CFGGuider(counted)
        g.set_conds(conds, conds)
        g.set_cfg(1.0)
        return g

    class Start:
        """NOISE that makes a sampler start exactly at a given VE latent (zero latent, max-denoise start)."""

        def __init__(self, x, sigma0):
            self.seed, self.x, self.sigma0 = 0, x, sigma0

        def generate_noise(self, _latent):
            return self.x / (1 + self.sigma0 ** 2) ** 0.5

    def turboedit(method):
        inv, _, sigmas, src = IterativeInverter.execute(model=counted, conditioning=source, steps=4, method=method,
                                                        seed=0, latent=latent,
                                                        encoder=encoder if method == "encoder" else None).result
        sampler = TurboEditSampler.execute(inversion=inv, tokens=tokens).result[0]
        SamplerCustomAdvanced().sample(Noise_EmptyNoise(), guider(target), sampler, sigmas, src)

    ddim_sigmas = fewstep_sigmas(trailing_timesteps(args.ddim_steps),
                                 counted.get_model_object("model_sampling").sigmas.cpu())

    class DdimInverter(comfy.samplers.Sampler):
        def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
                   disable_pbar=False):
            self.x = invert_ddim(model_wrap, latent_image, sigmas, extra_args, disable=True)
            return latent_image

    def ddim():
        inverter = DdimInverter()
        comfy.sample.sample_custom(counted, torch.zeros_like(latent["samples"]), 1.0, inverter, ddim_sigmas,
                                   source, source, latent["samples"])
        zero = {"samples": torch.zeros_like(latent["samples"])}
        SamplerCustomAdvanced().sample(Start(inverter.x.cpu(), float(ddim_sigmas[0])), guider(target),
                                       comfy.samplers.sampler_object("euler"), ddim_sigmas, zero)

    report = {"checkpoint": Path(checkpoint).name, "size": args.size, "device": str(mm.get_torch_device())}
    with torch.inference_mode():
        for name, fn in (("exact", lambda: turboedit("exact")), ("encoder", lambda: turboedit("encoder")),
                         ("ddim", ddim)):
            fn()  # warm-up
            calls["n"] = 0
            fn()
            nfe = calls["n"]
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            report[name] = {"model_passes": nfe, "median_s": statistics.median(times), "runs": times}
    report["encoder"]["encoder_passes"] = 4
    for name in ("exact", "encoder"):
        report[f"ddim_over_{name}"] = report["ddim"]["median_s"] / report[name]["median_s"]
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
