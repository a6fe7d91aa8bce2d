"""Safetensors-only weight files: header checks, metadata, atomic writes, hashing.

Metadata convention (all values are strings, as safetensors requires): ``fewstep.kind``,
``fewstep.base_family``, ``fewstep.format_version``, ``fewstep.step``, ``fewstep.ema`` and
``fewstep.config`` (a JSON document). :func:`read_metadata` returns them decoded.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path

import torch

SAFETENSORS_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pt2"}
MAX_HEADER_BYTES = 100 * 1024 * 1024
METADATA_PREFIX = "fewstep."
MODEL_FAMILIES = ("sd15", "sd21", "sdxl", "flux")  # ``fewstep.base_family`` values a loader checks against the MODEL
JSON_METADATA_KEYS = {"config", "unet_config", "adapter_config", "transformer_config"}


class WeightFileError(ValueError):
    """A weight file that is missing, not safetensors, truncated or otherwise unusable."""


def check_suffix(path: str | os.PathLike) -> Path:
    """Refuse anything that is not ``.safetensors`` (pickle formats can execute code)."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise WeightFileError(
            f"{path.name}: pickle-based weight formats ({path.suffix}) are never loaded; "
            "convert the file to .safetensors"
        )
    if path.suffix.lower() != SAFETENSORS_SUFFIX:
        raise WeightFileError(f"{path.name}: only .safetensors files are accepted")
    return path


def read_header(path: str | os.PathLike) -> dict:
    """Parse and validate a safetensors header; detect truncation without reading tensor data."""
    path = check_suffix(path)
    if not path.is_file():
        raise WeightFileError(f"{path}: file not found")
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise WeightFileError(f"{path.name}: not a safetensors file (only {size} bytes)")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > min(MAX_HEADER_BYTES, size - 8):
            raise WeightFileError(f"{path.name}: not a safetensors file, or truncated (bad header length)")
        raw = f.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WeightFileError(f"{path.name}: not a safetensors file (unreadable header)") from err
    if not isinstance(header, dict):
        raise WeightFileError(f"{path.name}: not a safetensors file (header is not an object)")
    data_len = size - 8 - header_len
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            start, end = info["data_offsets"]
        except (TypeError, KeyError, ValueError) as err:
            raise WeightFileError(f"{path.name}: malformed entry for tensor {name!r}") from err
        if not 0 <= start <= end <= data_len:
            raise WeightFileError(
                f"{path.name}: truncated or corrupted (tensor {name!r} ends at byte {end}, "
                f"the file holds {data_len} data bytes)"
            )
    return header


def decode_metadata(raw: dict[str, str] | None) -> dict:
    """Strip the ``fewstep.`` prefix and decode JSON-valued keys; other keys are kept as is."""
    out: dict = {}
    for key, value in (raw or {}).items():
        short = key[len(METADATA_PREFIX):] if key.startswith(METADATA_PREFIX) else key
        if short in JSON_METADATA_KEYS:
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        out[short] = value
    return out


def encode_metadata(meta: dict) -> dict[str, str]:
    """Inverse of :func:`decode_metadata`: prefix keys, JSON-encode non-string values."""
    out = {}
    for key, value in meta.items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        out[f"{METADATA_PREFIX}{key}"] = text
    return out


def read_metadata(path: str | os.PathLike) -> dict:
    """Decoded ``fewstep.*`` metadata of a safetensors file (header only, no tensor data)."""
    return decode_metadata(read_header(path).get("__metadata__"))


def load_weights(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[dict, dict]:
    """Load (state_dict, metadata) from a validated ``.safetensors`` file."""
    from safetensors.torch import load_file

    header = read_header(path)
    try:
        state_dict = load_file(str(path), device=str(device))
    except Exception as err:  # safetensors raises its own error types
        raise WeightFileError(f"{Path(path).name}: cannot be read as safetensors ({err})") from err
    return state_dict, decode_metadata(header.get("__metadata__"))


def save_weights(path: str | os.PathLike, state_dict: dict, metadata: dict | None = None) -> Path:
    """Write a ``.safetensors`` file atomically (temp file in the same folder, fsync, rename)."""
    from safetensors.torch import save_file

    path = check_suffix(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=encode_metadata(metadata or {}))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | os.PathLike, chunk: int = 16 * 1024 * 1024) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
