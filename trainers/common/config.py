"""Typed trainer configs: dataclass defaults ← YAML file ← ``--key=value`` overrides (nanoGPT-style, typed)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from pathlib import Path

import yaml


@dataclasses.dataclass
class RunConfig:
    """The options every trainer has; a trainer's config adds its paper's own and restates the defaults it changes."""

    base_model: str = ""  # diffusers folder or single-file .safetensors of the base model
    single_file_config: str = ""  # diffusers config folder for a single-file base
    output_dir: str = "runs/run"  # checkpoints, previews, TensorBoard logs, metrics.json and the exported file
    name: str = "run"  # stem of the exported weight file and manifest id
    resolution: int = 1024
    batch_size: int = 1
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int = 1000
    lr: float = 1e-5
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    ema_decay: float = 0.999  # 0 disables EMA
    mixed_precision: str = "bf16"  # no | fp16 | bf16
    gradient_checkpointing: bool = True
    seed: int = 0
    checkpoint_every: int = 500  # 0: no checkpoints (and so no resume), e.g. for timing runs
    keep_checkpoints: int = 2
    log_every: int = 10
    eval_every: int = 250
    preview_every: int = 250
    preview_count: int = 4
    export_dtype: str = "fp16"  # fp32 | fp16 | bf16
    manifest: str = ""  # a weights_manifest.json to add the entry to (e.g. the pack's)
    license: str = "same as the base model"


class ConfigError(ValueError):
    """A config file or override that does not fit the trainer's config dataclass."""


class RawText(str):
    """An override value as typed on the command line; parsed according to the field's type."""


def _coerce(name: str, value, default, annotation):
    """Check ``value`` against the field's type (taken from its default or annotation)."""
    if value is None:
        return None
    kind = type(default) if default is not None else _plain_type(annotation)
    if isinstance(value, RawText):
        if kind is str:
            return str(value)
        value = yaml.safe_load(value) if value != "" else ""
    if kind is str and isinstance(value, bool):
        value = "yes" if value else "no"  # YAML 1.1 reads a bare no/yes/off/on as a boolean
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true/false, got {value!r}")
        return value
    if kind in (int, float) and isinstance(value, str):
        value = _number(name, value)  # YAML 1.1 reads "1e-5" as a string
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if kind is str:
        return str(value)
    if kind in (dict, list, tuple) and not isinstance(value, (dict, list, tuple)):
        raise ConfigError(f"{name}: expected a {kind.__name__}, got {value!r}")
    if isinstance(value, dict):
        value = {k: yaml.safe_load(v) if isinstance(v, RawText) else v for k, v in value.items()}
    return list(value) if kind is tuple else value


def _number(name: str, text: str):
    try:
        number = float(text)
    except ValueError as err:
        raise ConfigError(f"{name}: expected a number, got {text!r}") from err
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def _plain_type(annotation):
    origin = typing.get_origin(annotation)
    if origin is typing.Union or str(origin) == "types.UnionType":
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _plain_type(args[0]) if args else object
    return origin or annotation


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def parse_overrides(args: list[str]) -> dict:
    """``--key=value`` / ``key=value`` / ``--key value`` → {key: raw text}; dotted keys nest."""
    out: dict = {}
    i = 0
    while i < len(args):
        arg = args[i].removeprefix("--")
        if "=" in arg:
            key, text = arg.split("=", 1)
        elif i + 1 < len(args):
            key, text = arg, args[i + 1]
            i += 1
        else:
            raise ConfigError(f"override {args[i]!r} has no value (use --key=value)")
        value = RawText(text)
        node = out
        *parents, leaf = key.replace("-", "_").split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
        i += 1
    return out


def build_config(cls, file: str | Path | None = None, overrides: list[str] | dict | None = None):
    """Instance of dataclass ``cls`` from defaults, an optional YAML file and overrides, type-checked."""
    values: dict = {}
    if file is not None:
        path = Path(file)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found")
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of option: value")
        values.update(loaded)
    extra = overrides if isinstance(overrides, dict) else parse_overrides(list(overrides or []))
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    fields = _fields(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        field = fields[name]
        default = field.default if field.default is not dataclasses.MISSING else (
            field.default_factory() if field.default_factory is not dataclasses.MISSING else None)
        kwargs[name] = _coerce(name, value, default, hints.get(name))
    return cls(**kwargs)


def config_dict(config) -> dict:
    return dataclasses.asdict(config)


def config_hash(config) -> str:
    return hashlib.sha256(json.dumps(config_dict(config), sort_keys=True).encode()).hexdigest()[:16]


def check_writable_path(path: str | Path, name: str, *, folder: bool = True) -> None:
    """Refuse, before anything loads, an output path that cannot be written: the folder (or a file's folder)
    must exist and be writable, or its nearest existing parent must be a writable folder. Creates nothing."""
    path = Path(path).expanduser().absolute()
    if folder and path.exists() and not path.is_dir():
        raise ValueError(f"{name}: {path} is a file, not a folder")
    target = path if folder else path.parent
    probe = target
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{name}: {path} cannot be created: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "is not writable" if probe == target else f"cannot be created: {probe} is not writable"
        raise ValueError(f"{name}: {path} {what} (choose another {name})")


def check_output_paths(cfg) -> None:
    """output_dir (and manifest, where a trainer has one) are writable: checked first, before any model loads."""
    check_writable_path(cfg.output_dir, "output_dir")
    if getattr(cfg, "manifest", ""):
        check_writable_path(cfg.manifest, "manifest", folder=False)
