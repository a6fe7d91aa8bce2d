"""python -m benchmarks.world build --out DIR [--device cuda] [--preset full|mini] [--seed N] [--threads N]
                                  [--set KEY=VALUE ...]
python -m benchmarks.world measure --world DIR [--scenes N] [--device cuda] [--threads N]
python -m benchmarks.world images --out DIR [--split train|val|test] [--count N] [--masks]
python -m benchmarks.world prompts --out FILE [--split train|val|test] [--count N]
python -m benchmarks.world regions --out DIR [--split train|val|test] [--count N] [--background]"""
from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.world", description="Build the learned world.")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="train VAE, judge, text encoder + teacher, student; report (resumable)")
    build.add_argument("--out", required=True, help="output folder (rerun with the same folder to resume)")
    build.add_argument("--device", default="cpu")
    build.add_argument("--preset", default="full", choices=["full", "mini"], help="mini: a CI-sized build")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    build.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override one field of the preset (e.g. teacher_steps=12000; recorded in world.json)")
    measure = sub.add_parser("measure", help="re-measure a built world's figures (caption agreement overall and "
                                              "per attribute kind) without writing anything")
    measure.add_argument("--world", default=None, help="a built world (turbo/, teacher/, judge.safetensors); "
                                                        "default: the committed one")
    measure.add_argument("--scenes", type=int, default=None, help="test scenes (default: the build's eval_scenes)")
    measure.add_argument("--device", default="cpu")
    measure.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    images = sub.add_parser("images", help="write scenes as a trainer's image folder (png + caption txt [+ mask])")
    images.add_argument("--out", required=True)
    images.add_argument("--split", default="train", choices=["train", "val", "test"])
    images.add_argument("--count", type=int, default=2000)
    images.add_argument("--masks", action="store_true", help="also name_mask.png: the first object (TurboFill)")
    prompts = sub.add_parser("prompts", help="write scenes' detailed captions, one per line (a trainer's "
                                              "prompts_file, e.g. InverFill's image-free training)")
    prompts.add_argument("--out", required=True)
    prompts.add_argument("--split", default="train", choices=["train", "val", "test"])
    prompts.add_argument("--count", type=int, default=4000)
    regions = sub.add_parser("regions", help="write scenes, their objects' holes as mask files and region captions "
                                              "(trainers.region_dataset's --prompts / --captions; TurboFill)")
    regions.add_argument("--out", required=True)
    regions.add_argument("--split", default="train", choices=["train", "val", "test"])
    regions.add_argument("--count", type=int, default=2000)
    regions.add_argument("--background", action="store_true", help="also a background-only box per image")
    args = parser.parse_args(argv)
    if args.command == "regions":
        from .scene import write_regions

        total = write_regions(args.out, args.split, args.count, background=args.background)
        print(json.dumps({"out": args.out, "split": args.split, "images": args.count, "regions": total}))
        return 0
    if args.command == "prompts":
        from .scene import write_prompts

        lines = write_prompts(args.out, args.split, args.count)
        print(json.dumps({"out": args.out, "split": args.split, "prompts": lines}))
        return 0
    if args.command == "images":
        from .scene import write_folder

        stems = write_folder(args.out, args.split, args.count, masks=args.masks)
        print(json.dumps({"out": args.out, "split": args.split, "images": len(stems)}))
        return 0

    import torch

    torch.set_num_threads(args.threads)
    if args.command == "measure":
        from benchmarks.quality import load_world

        from .build import measure as measure_world

        from . import WEIGHTS

        world = load_world(args.world or WEIGHTS)
        config = world.summary.get("config", {})
        scenes = args.scenes or config.get("eval_scenes", 256)
        parts = [m.to(args.device) for m in (world.vae, world.judge, world.teacher, world.student, world.text)]
        figures, _ = measure_world(*parts, scenes, config.get("cfg_scale", 3.0), args.device)
        print(json.dumps(figures, indent=1))
        return 0
    from .build import BuildConfig, Builder

    try:
        cfg = BuildConfig.preset(args.preset).with_overrides(args.set)
    except ValueError as err:
        parser.error(str(err))
    cfg.seed = args.seed
    report = Builder(args.out, cfg, args.device).build()
    print(json.dumps({"world": report["world"], "seconds": report["seconds"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
