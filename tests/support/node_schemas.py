"""Render the pack's node schemas as ``/object_info`` entries, and keep the snapshot in tests/data.

    python -m tests.support.node_schemas --write    # after changing a node's schema

The snapshot is what CI validates example workflows against; ``tests/test_real_host.py`` checks
it against a live ComfyUI server, and ``tests/test_node_schemas.py`` against the node code.
"""
from __future__ import annotations

import json
import sys

from tools.workflow_check import PACK_SCHEMAS as SNAPSHOT
from tools.workflow_check import load_pack_schemas as load_snapshot  # noqa: F401 (the tests' name for it)

HOST_KEYS = {"python_module"}  # depend on the install folder, not on the node
NEWER_DEFAULTS = {"is_input_list": False, "dev_only": False, "has_intermediate_output": False}  # keys newer
# ComfyUI builds (0.38) add to every node; at these values they say nothing 0.3.64's snapshot does not
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")  # Combo file lists (SAM2 Loader also lists Meta's .pt)


def render(node_cls) -> dict:
    """One node's ``/object_info`` entry, JSON-normalised, without install-dependent keys."""
    schema = node_cls.GET_SCHEMA()
    info = schema.get_v1_info(node_cls)
    info = info if isinstance(info, dict) else _asdict(info)
    return normalise(info)


def normalise(info: dict) -> dict:
    """JSON round trip (tuples → lists, key order irrelevant) minus host-dependent parts.

    File names in Combo options (the weight lists, e.g. ``network_name``, ``sam2_name``) depend on the files on
    disk, so they are dropped; fixed entries such as ``none`` stay.
    """
    data = json.loads(json.dumps(info, default=str))
    for group in data.get("input", {}).values():
        for spec in group.values():
            if isinstance(spec, list) and len(spec) > 1 and isinstance(spec[1], dict) and "options" in spec[1]:
                spec[1]["options"] = [o for o in spec[1]["options"] if not str(o).endswith(WEIGHT_SUFFIXES)]
    return {k: v for k, v in data.items()
            if k not in HOST_KEYS and v is not None and not (k in NEWER_DEFAULTS and v == NEWER_DEFAULTS[k])}


def _asdict(info) -> dict:
    from dataclasses import asdict

    return asdict(info)


def render_all(nodes: list) -> dict:
    return {n.GET_SCHEMA().node_id: render(n) for n in nodes}


def main() -> int:
    from tests.conftest import load_pack  # sets up ComfyUI (COMFYUI_DIR) or the schema stand-in

    load_pack()
    from fewstep_pack.nodes.extension import NODES

    data = render_all(NODES)
    if "--write" in sys.argv:
        SNAPSHOT.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {SNAPSHOT} ({len(data)} nodes)")
    else:
        print(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
