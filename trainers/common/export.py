"""Export a trained network: ``.safetensors`` with metadata, plus its ``weights_manifest.json`` entry."""
from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import torch

from core.manifest import LOADER_NODES, SCHEMA_PATH, schema_errors
from core.weights import save_weights, sha256_file

from .config import config_dict


EXPORT_DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}GB"


def command_line(module: str) -> str:
    """The command that reproduces this run (module plus the arguments it was given)."""
    return shlex.join(["python", "-m", module, *sys.argv[1:]])


def export_weights(path: str | Path, state_dict: dict[str, torch.Tensor], metadata: dict,
                   dtype: torch.dtype | None = None) -> Path:
    """Atomic ``.safetensors`` write, optionally casting floating tensors to ``dtype``."""
    if dtype is not None:
        state_dict = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
    return save_weights(path, state_dict, metadata)


def manifest_entry(path: str | Path, *, id: str, kind: str, name: str, base: str, base_family: str, node: str,
                   trainer: str, command: str, config: str, license: str, reference: str, description: str) -> dict:
    """A manifest entry for a file just written (sha256 and bytes measured from disk)."""
    path = Path(path)
    size = path.stat().st_size
    return {
        "id": id, "name": name, "type": kind, "base": base, "save_path": f"fewstep/{kind}",
        "description": description, "reference": reference, "filename": path.name, "url": "",
        "size": human_size(size), "kind": kind, "sha256": sha256_file(path), "bytes": size,
        "base_family": base_family, "node": node,
        "produced_by": {"trainer": trainer, "command": command, "config": config}, "license": license,
    }


def write_entry(entry: dict, entry_path: str | Path, manifest_path: str | Path | None = None) -> None:
    """Write the entry beside the weights and, if asked, add or replace it (by id) in a manifest file."""
    schema = json.loads(SCHEMA_PATH.read_text())
    errors = schema_errors(entry, schema["properties"]["models"]["items"])
    if errors:
        raise ValueError("manifest entry does not follow the schema: " + "; ".join(errors))
    atomic_json(Path(entry_path), entry)
    if manifest_path:
        path = Path(manifest_path)
        manifest = json.loads(path.read_text()) if path.exists() else {"version": 1, "models": []}
        manifest["models"] = [m for m in manifest.get("models", []) if m.get("id") != entry["id"]] + [entry]
        atomic_json(path, manifest)


def atomic_json(path: Path, data: dict) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def export_run(cfg, config_path: str, module: str, state_dict: dict, metadata: dict, *, base, kind: str, title: str,
               reference: str, description: str) -> Path:
    """A trainer's final export: ``<output_dir>/<name>.safetensors`` in ``cfg.export_dtype`` and its manifest entry
    (beside the file, and in ``cfg.manifest`` when set), naming the node that loads the kind. ``metadata`` is what
    is particular to the kind; every file also records its kind, base family, format, step, EMA and config."""
    metadata = {"kind": kind, "base_family": base.family, "format_version": "1", "step": str(cfg.max_steps),
                "ema": "true" if cfg.ema_decay > 0 else "false", "config": config_dict(cfg), **metadata}
    path = export_weights(Path(cfg.output_dir) / f"{cfg.name}.safetensors", state_dict, metadata,
                          EXPORT_DTYPES[cfg.export_dtype])
    entry = manifest_entry(
        path, id=cfg.name.lower().replace("_", "-"), kind=kind, name=f"{title} ({cfg.name})", base=base.family.upper(),
        base_family=base.family, node=LOADER_NODES[kind], trainer=module, command=command_line(module),
        config=config_path, license=cfg.license, reference=reference, description=description,
    )
    write_entry(entry, path.with_suffix(".manifest.json"), cfg.manifest or None)
    return path
