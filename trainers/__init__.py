"""Standalone trainers that produce the pack's weights, run as ``python -m trainers.<name>`` from the
pack folder: ``inverfill`` (InverFill inversion network), ``turboedit`` (TurboEdit inversion encoder),
``rad`` (RAD LoRA + time layers).
They import ``core`` so training and inference share every schedule and network; each writes a
``.safetensors`` file with metadata and its ``weights_manifest.json`` entry. Shared pieces live in
``trainers/common``.
"""
