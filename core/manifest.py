"""``weights_manifest.json``: schema validation and an on-disk verifier (its command line:
``python -m tools.verify_weights``)."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .weights import WeightFileError, read_header, sha256_file

PACK_DIR = Path(__file__).resolve().parent.parent
SKIP_HASH_ENV = "FEWSTEP_SKIP_HASH_CHECK"  # "1": trust listed files without hashing them (for files edited on purpose)
LOADER_NODES = {  # the node that reads each kind of weight file (the manifest's ``node`` field)
    "inverfill": "FewStepInverFillLoader", "turbofill": "FewStepTurboFillLoader", "rad": "FewStepRegionAwareSampler",
    "turboedit": "FewStepTurboEditLoader", "sam2": "FewStepSAM2Loader"}
_digests: dict[tuple[str, int, int], str] = {}
MANIFEST_PATH = PACK_DIR / "weights_manifest.json"
SCHEMA_PATH = PACK_DIR / "weights_manifest.schema.json"

_JSON_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "null": type(None),
}


def schema_errors(instance, schema: dict, where: str = "$") -> list[str]:
    """Validate against the JSON-Schema subset the manifest schema uses (type, const, enum, required,
    properties, additionalProperties, items, pattern, minLength, minimum)."""
    errors: list[str] = []
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(instance, n) for n in names):
            return [f"{where}: expected {' or '.join(names)}, got {type(instance).__name__}"]
    if "const" in schema and instance != schema["const"]:
        errors.append(f"{where}: must be {schema['const']!r}")
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{where}: {instance!r} is not one of {schema['enum']}")
    if isinstance(instance, str):
        if len(instance) < schema.get("minLength", 0):
            errors.append(f"{where}: shorter than {schema['minLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            errors.append(f"{where}: {instance!r} does not match {schema['pattern']}")
    if _is_type(instance, "number") and "minimum" in schema and instance < schema["minimum"]:
        errors.append(f"{where}: {instance} is below {schema['minimum']}")
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in instance:
                errors.append(f"{where}: missing required field {key!r}")
        for key, value in instance.items():
            if key in props:
                errors += schema_errors(value, props[key], f"{where}.{key}")
            elif schema.get("additionalProperties", True) is False:
                errors.append(f"{where}: unknown field {key!r}")
    if isinstance(instance, list) and "items" in schema:
        for i, item in enumerate(instance):
            errors += schema_errors(item, schema["items"], f"{where}[{i}]")
    return errors


def _is_type(value, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _JSON_TYPES[name])


def load_manifest(path: str | Path = MANIFEST_PATH, schema_path: str | Path = SCHEMA_PATH) -> dict:
    """Read and validate a manifest; raise ValueError listing every schema violation."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path.name}: not valid JSON ({err})") from err
    schema = json.loads(Path(schema_path).read_text(encoding="utf-8"))
    errors = schema_errors(manifest, schema)
    ids = [m.get("id") for m in manifest.get("models", []) if isinstance(m, dict)]
    errors += [f"$.models: duplicate id {i!r}" for i in sorted({i for i in ids if ids.count(i) > 1})]
    if errors:
        raise ValueError(f"{path.name} does not follow its schema:\n  " + "\n  ".join(errors))
    return manifest


def find_entry(manifest: dict, filename: str, kind: str | None = None) -> dict | None:
    """The manifest entry for a file name (and kind), or None."""
    for entry in manifest.get("models", []):
        if entry["filename"] == filename and (kind is None or entry["kind"] == kind):
            return entry
    return None


def how_to_make(entry: dict) -> str:
    """One sentence telling the user how to obtain a weight file."""
    produced = entry.get("produced_by")
    if produced:
        return f"make it with: {produced['command']}"
    if entry.get("url"):
        return f"download it from {entry['url']}"
    return "no trainer or download is known for it"


def missing_weight_message(kind: str, filename: str, folders: list[str], entry: dict | None) -> str:
    """Error text for a weight that is not on disk: the file, every folder searched, how to make it."""
    where = ", ".join(folders) if folders else f"models/fewstep/{kind}"
    if entry is None:
        how = (
            "it is not listed in weights_manifest.json; train it with the pack's trainer for "
            f"'{kind}' (docs/trainers.md, 'Trainers') or copy the file there"
        )
    else:
        how = how_to_make(entry)
    return f"{kind} weight '{filename}' was not found in {where}; {how}"


def mismatch_message(entry: dict, path: str | Path, actual_bytes: int) -> str:
    """Error text for a weight whose size differs from its manifest entry."""
    return (
        f"{entry['filename']} in {Path(path).parent} has {actual_bytes} bytes but weights_manifest.json "
        f"expects {entry['bytes']} (partial copy or another version); {how_to_make(entry)}"
    )


def verify_listed_file(entry: dict, path: str | Path) -> None:
    """Refuse a manifest-listed file whose sha256 differs from its entry; hashed once per (path, size, mtime)."""
    if os.environ.get(SKIP_HASH_ENV) == "1":
        return
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        _digests[key] = sha256_file(path)
    if _digests[key] != entry["sha256"]:
        raise WeightFileError(
            f"{entry['filename']} in {Path(path).parent} has sha256 {_digests[key]} but weights_manifest.json "
            f"expects {entry['sha256']} (a damaged file or another version); {how_to_make(entry)}. If you changed "
            f"the file on purpose, update its manifest entry or set {SKIP_HASH_ENV}=1")


@dataclass
class Check:
    """Verification result of one manifest entry."""

    entry: dict
    path: Path
    status: str  # ok | missing | size | sha256 | unreadable
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def line(self) -> str:
        name = f"{self.entry['id']} ({self.entry['filename']} in models/{self.entry['save_path']})"
        if self.ok:
            return f"OK       {name}"
        label = {"missing": "MISSING", "size": "MISMATCH", "sha256": "CORRUPT", "unreadable": "CORRUPT"}
        return f"{label[self.status]:<8} {name}: {self.detail}"


def verify_entry(entry: dict, models_dir: str | Path, *, check_hash: bool = True) -> Check:
    """Check one entry's file: present, expected size, expected sha256, readable header."""
    path = Path(models_dir) / entry["save_path"] / entry["filename"]
    if not path.is_file():
        return Check(entry, path, "missing", f"{path} does not exist; {how_to_make(entry)}")
    size = path.stat().st_size
    if size != entry["bytes"]:
        return Check(
            entry, path, "size", f"{path} has {size} bytes, expected {entry['bytes']}; {how_to_make(entry)}"
        )
    if check_hash:
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            return Check(
                entry, path, "sha256",
                f"{path} has sha256 {digest}, expected {entry['sha256']}; {how_to_make(entry)}",
            )
    try:
        read_header(path)
    except WeightFileError as err:
        return Check(entry, path, "unreadable", f"{err}; {how_to_make(entry)}")
    return Check(entry, path, "ok")


def verify_manifest(manifest: dict, models_dir: str | Path, *, check_hash: bool = True) -> list[Check]:
    """Verify every entry of a validated manifest."""
    return [verify_entry(e, models_dir, check_hash=check_hash) for e in manifest["models"]]
