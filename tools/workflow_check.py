"""Validate ComfyUI workflow JSON (API and UI formats) against ``/object_info`` node definitions.

Checks what a server or the frontend would reject: unknown node types, missing or unknown inputs,
links between mismatched types or to missing outputs, and widget values outside their limits.
``ui_to_api`` converts a UI-format workflow the way the frontend does for the simple cases our
examples use (no reroutes, primitives or groups nodes).
"""
from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_OBJECT_INFO = REPO.parent / "shared" / "comfyui" / "object_info.json"  # core nodes, ComfyUI 0.3.64
PACK_SCHEMAS = REPO / "tests" / "data" / "node_schemas.json"  # the pack's nodes (python -m tests.support.node_schemas)
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize", True, False}
VIRTUAL_NODES = {"Note", "MarkdownNote"}  # frontend-only; never sent to the server
PSEUDO_FILES = {"pixel_space", "taesd", "taesdxl", "taesd3", "taef1", "None", "none"}
FILE_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".png", ".jpg", ".jpeg", ".webp")


def load_pack_schemas() -> dict:
    """The pack's own ``/object_info`` entries as last snapshotted from the node code."""
    return json.loads(PACK_SCHEMAS.read_text(encoding="utf-8"))


def load_object_info(extra: dict | None = None, path: Path = SHARED_OBJECT_INFO) -> dict:
    """Core node definitions (ComfyUI 0.3.64) plus ``extra`` (the pack's own)."""
    info = json.loads(path.read_text(encoding="utf-8"))
    info.update(extra or {})
    return info


def input_specs(info: dict) -> dict[str, tuple]:
    """name → (type, options) for required then optional inputs, in the node's input order."""
    specs: dict[str, tuple] = {}
    for group in ("required", "optional"):
        entries = info["input"].get(group, {})
        for name in info.get("input_order", {}).get(group, list(entries)):
            spec = entries[name]
            specs[name] = (spec[0], spec[1] if len(spec) > 1 else {})
    return specs


def required_names(info: dict) -> list[str]:
    return list(info.get("input_order", {}).get("required", info["input"].get("required", {})))


def is_widget(spec: tuple) -> bool:
    kind, options = spec
    return (isinstance(kind, list) or kind in WIDGET_TYPES) and not options.get("forceInput", False)


def socket_type(spec: tuple) -> str:
    kind = spec[0]
    return "COMBO" if isinstance(kind, list) else kind


def combo_options(spec: tuple) -> list:
    kind, options = spec
    return kind if isinstance(kind, list) else options.get("options", [])


def types_match(out_type: str, in_type: str) -> bool:
    if "*" in (out_type, in_type):
        return True
    outs, ins = set(str(out_type).split(",")), set(str(in_type).split(","))
    return bool(outs & ins)


def widget_errors(where: str, spec: tuple, value) -> list[str]:
    """Why ``value`` is not a legal value of the widget ``spec`` (empty list when it is)."""
    kind, options = socket_type(spec), spec[1]
    if kind == "COMBO":
        allowed = combo_options(spec)
        if _is_file_list(spec, allowed, value):
            return [] if isinstance(value, str) and value else [f"{where}: file name expected, got {value!r}"]
        if value not in allowed:
            return [f"{where}: {value!r} is not one of {allowed[:8]}{'…' if len(allowed) > 8 else ''}"]
        return []
    if kind == "INT" and not (isinstance(value, int) and not isinstance(value, bool)):
        return [f"{where}: {value!r} is not an integer"]
    if kind == "FLOAT" and not (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return [f"{where}: {value!r} is not a number"]
    if kind == "BOOLEAN" and not isinstance(value, bool):
        return [f"{where}: {value!r} is not a boolean"]
    if kind == "STRING" and not isinstance(value, str):
        return [f"{where}: {value!r} is not a string"]
    errors = []
    if kind in ("INT", "FLOAT"):
        if "min" in options and value < options["min"]:
            errors.append(f"{where}: {value} is below min {options['min']}")
        if "max" in options and value > options["max"]:
            errors.append(f"{where}: {value} is above max {options['max']}")
    return errors


def _is_file_list(spec: tuple, allowed: list, value) -> bool:
    """Combos listing the server's files (models, input images): any file name is acceptable."""
    if not allowed or spec[1].get("image_upload"):
        return True
    listed = all(isinstance(a, str) and (a.lower().endswith(FILE_SUFFIXES) or a in PSEUDO_FILES) for a in allowed)
    return listed and isinstance(value, str) and value.lower().endswith(FILE_SUFFIXES)


def validate_api(workflow: dict, object_info: dict) -> list[str]:
    """Errors a ComfyUI server would raise for an API-format prompt (empty list: valid)."""
    errors = []
    for node_id, node in workflow.items():
        kind = node.get("class_type")
        if kind not in object_info:
            errors.append(f"node {node_id}: unknown node type {kind!r}")
            continue
        info = object_info[kind]
        specs = input_specs(info)
        inputs = node.get("inputs", {})
        for name in required_names(info):
            if name not in inputs:
                errors.append(f"node {node_id} ({kind}): required input {name!r} missing")
        for name, value in inputs.items():
            where = f"node {node_id} ({kind}).{name}"
            if name not in specs:
                errors.append(f"{where}: no such input")
                continue
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                errors += _link_errors(where, workflow, object_info, value, socket_type(specs[name]))
            elif is_widget(specs[name]):
                errors += widget_errors(where, specs[name], value)
            else:
                errors.append(f"{where}: a {socket_type(specs[name])} input needs a link, got {value!r}")
    return errors


def _link_errors(where, workflow, object_info, link, in_type) -> list[str]:
    src_id, slot = link
    src = workflow.get(src_id)
    if src is None:
        return [f"{where}: links to missing node {src_id}"]
    outputs = object_info.get(src.get("class_type"), {}).get("output", [])
    if not 0 <= slot < len(outputs):
        return [f"{where}: node {src_id} has no output {slot}"]
    if not types_match(outputs[slot], in_type):
        return [f"{where}: {outputs[slot]} output linked to a {in_type} input"]
    return []


def widget_names_and_values(node: dict, info: dict) -> list[tuple[str | None, object]]:
    """Pair a UI node's positional ``widgets_values`` with its widget names.

    Extra frontend entries (the control_after_generate mode after a seed, the upload button of
    LoadImage) come back with name None.
    """
    values = list(node.get("widgets_values") or [])
    pairs, i = [], 0
    for name, spec in input_specs(info).items():
        if not is_widget(spec) or i >= len(values):
            continue
        pairs.append((name, values[i]))
        i += 1
        extra = spec[1].get("control_after_generate") or spec[1].get("image_upload") or spec[1].get("upload")
        if extra and i < len(values) and (values[i] in CONTROL_VALUES or spec[1].get("image_upload")):
            pairs.append((None, values[i]))
            i += 1
    pairs += [(None, v) for v in values[i:]]
    return pairs


def _is_uuid(value) -> bool:
    import uuid

    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def validate_ui(workflow: dict, object_info: dict) -> list[str]:
    """Errors the frontend or server would hit loading/running a UI-format workflow."""
    errors = []
    if "id" in workflow and not _is_uuid(workflow["id"]):
        errors.append(f"workflow id {workflow['id']!r} is not a UUID (the front end's schema refuses it on load)")
    nodes = {n["id"]: n for n in workflow.get("nodes", [])}
    for node in nodes.values():
        kind = node.get("type")
        if kind in VIRTUAL_NODES:
            continue
        if kind not in object_info:
            errors.append(f"node {node['id']}: unknown node type {kind!r}")
            continue
        info = object_info[kind]
        specs = input_specs(info)
        pairs = widget_names_and_values(node, info)
        extras = [v for n, v in pairs if n is None]
        if len(extras) > 2:
            errors.append(f"node {node['id']} ({kind}): {len(extras)} unexpected widgets_values {extras}")
        for name, value in pairs:
            if name is not None:
                errors += widget_errors(f"node {node['id']} ({kind}).{name}", specs[name], value)
        linked = {i["name"] for i in node.get("inputs", []) if i.get("link") is not None}
        for name in required_names(info) if node.get("mode", 0) == 0 else []:
            if not is_widget(specs[name]) and name not in linked:
                errors.append(f"node {node['id']} ({kind}): required input {name!r} is not connected")
    for link in workflow.get("links", []):
        errors += _ui_link_errors(link, nodes, object_info)
    return errors


def _ui_link_errors(link, nodes, object_info) -> list[str]:
    link_id, src, src_slot, dst, dst_slot, kind = link[:6]
    where = f"link {link_id}"
    if src not in nodes or dst not in nodes:
        return [f"{where}: joins missing node(s) {src}->{dst}"]
    src_info = object_info.get(nodes[src]["type"])
    if src_info is None:
        return []
    outputs = src_info["output"]
    if not 0 <= src_slot < len(outputs):
        return [f"{where}: node {src} has no output {src_slot}"]
    errors = []
    if not types_match(outputs[src_slot], kind):
        errors.append(f"{where}: labelled {kind} but node {src} output {src_slot} is {outputs[src_slot]}")
    dst_inputs = nodes[dst].get("inputs", [])
    if not 0 <= dst_slot < len(dst_inputs):
        return errors + [f"{where}: node {dst} has no input slot {dst_slot}"]
    slot = dst_inputs[dst_slot]
    if slot.get("link") != link_id:
        errors.append(f"{where}: node {dst} input {slot['name']!r} points to link {slot.get('link')}")
    specs = input_specs(object_info[nodes[dst]["type"]]) if nodes[dst]["type"] in object_info else {}
    if slot["name"] in specs and not types_match(outputs[src_slot], socket_type(specs[slot["name"]])):
        errors.append(f"{where}: {outputs[src_slot]} output into {socket_type(specs[slot['name']])} input")
    out_links = nodes[src].get("outputs", [])[src_slot].get("links") or []
    if link_id not in out_links:
        errors.append(f"{where}: node {src} output {src_slot} does not list it")
    return errors


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """API-format prompt of a UI workflow (active nodes only; widget values and links by name)."""
    links = {link[0]: link for link in workflow.get("links", [])}
    api = {}
    for node in workflow["nodes"]:
        if node.get("mode", 0) != 0 or node["type"] in VIRTUAL_NODES:
            continue
        info = object_info[node["type"]]
        inputs = {name: value for name, value in widget_names_and_values(node, info) if name is not None}
        for slot in node.get("inputs", []):
            if slot.get("link") is not None:
                _, src, src_slot, *_ = links[slot["link"]]
                inputs[slot["name"]] = [str(src), src_slot]
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs,
                                "_meta": {"title": node.get("title", info.get("display_name") or node["type"])}}
    return api
