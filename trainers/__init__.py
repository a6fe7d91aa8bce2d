"""Standalone trainers that produce the pack's weights (run as ``python -m trainers.<name>`` from the
pack folder). They import ``core`` so training and inference share every schedule and network.

No trainer ships yet: the InverFill, TurboEdit, RAD and TurboFill trainers arrive with their
nodes. Each will write a ``.safetensors`` file with metadata and its ``weights_manifest.json`` entry.
"""
