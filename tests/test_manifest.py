"""weights_manifest.json: schema, the built-in validator, and the on-disk verifier."""
import copy
import json

import pytest
import torch

from core.manifest import (
    MANIFEST_PATH,
    SCHEMA_PATH,
    load_manifest,
    missing_weight_message,
    schema_errors,
    verify_manifest,
)
from core.weights import save_weights, sha256_file
from tools.verify_weights import main

SCHEMA = json.loads(SCHEMA_PATH.read_text())


def entry(**over):
    base = {
        "id": "inverfill-sdxl-turbo-test",
        "name": "InverFill inversion network (SDXL-Turbo)",
        "type": "inverfill",
        "base": "SDXL",
        "save_path": "fewstep/inverfill",
        "description": "test entry",
        "reference": "https://arxiv.org/abs/2603.23463",
        "filename": "inverfill_sdxl_turbo.safetensors",
        "url": "",
        "size": "1KB",
        "kind": "inverfill",
        "sha256": "0" * 64,
        "bytes": 1,
        "base_family": "sdxl",
        "node": "FewStepInverFillLoader",
        "produced_by": {
            "trainer": "trainers.inverfill",
            "command": "python -m trainers.inverfill --config trainers/configs/inverfill_sdxl_turbo.yaml",
            "config": "trainers/configs/inverfill_sdxl_turbo.yaml",
        },
        "license": "CC-BY-4.0",
    }
    base.update(over)
    return base


def manifest(*entries):
    return {"$schema": "./weights_manifest.schema.json", "version": 1, "models": list(entries)}


def test_repository_manifest_validates():
    load_manifest()  # raises on any violation
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(json.loads(MANIFEST_PATH.read_text()), SCHEMA)


def test_example_entry_is_valid_for_both_validators():
    jsonschema = pytest.importorskip("jsonschema")
    doc = manifest(entry(), entry(id="x", produced_by=None, url="https://example.org/x.safetensors"))
    assert schema_errors(doc, SCHEMA) == []
    jsonschema.validate(doc, SCHEMA)


BAD = {
    "missing field": lambda e: e.pop("sha256"),
    "bad sha256": lambda e: e.update(sha256="xyz"),
    "pickle filename": lambda e: e.update(filename="net.ckpt"),
    "bytes not int": lambda e: e.update(bytes="12"),
    "bool as int": lambda e: e.update(bytes=True),
    "unknown field": lambda e: e.update(extra=1),
    "bad kind": lambda e: e.update(kind="lora"),
    "node prefix": lambda e: e.update(node="InverseNoiseInit"),
    "trainer path": lambda e: e.update(produced_by={"trainer": "x", "command": "y", "config": ""}),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_built_in_validator_agrees_with_jsonschema_on_bad_entries(case):
    jsonschema = pytest.importorskip("jsonschema")
    e = entry()
    BAD[case](e)
    doc = manifest(e)
    assert schema_errors(doc, SCHEMA), case
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)


def test_duplicate_ids_rejected(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(manifest(entry(), entry())))
    with pytest.raises(ValueError, match="duplicate id"):
        load_manifest(path)


def test_invalid_json_is_reported(tmp_path):
    path = tmp_path / "m.json"
    path.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_manifest(path)


@pytest.fixture
def models_dir(tmp_path):
    """A models dir with one good, one corrupted (same size), one truncated and one missing weight."""
    folder = tmp_path / "models" / "fewstep" / "inverfill"
    entries = []
    for name in ("good", "corrupt", "short", "missing"):
        path = save_weights(folder / f"{name}.safetensors", {"w": torch.arange(64.0)}, {"kind": "inverfill"})
        entries.append(entry(id=name, filename=path.name, sha256=sha256_file(path), bytes=path.stat().st_size))
    data = bytearray((folder / "corrupt.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (folder / "corrupt.safetensors").write_bytes(bytes(data))
    (folder / "short.safetensors").write_bytes((folder / "short.safetensors").read_bytes()[:-16])
    (folder / "missing.safetensors").unlink()
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest(*entries)))
    return tmp_path / "models", path


def test_verifier_reports_each_problem(models_dir):
    models, manifest_path = models_dir
    checks = {c.entry["id"]: c for c in verify_manifest(load_manifest(manifest_path), models)}
    assert checks["good"].ok
    assert checks["corrupt"].status == "sha256"
    assert checks["short"].status == "size"
    assert checks["missing"].status == "missing"
    line = checks["missing"].line()
    assert "missing.safetensors" in line and "fewstep/inverfill" in line
    assert "python -m trainers.inverfill --config" in line


def test_verifier_cli_output_and_exit_code(models_dir, capsys):
    models, manifest_path = models_dir
    code = main(["--manifest", str(manifest_path), "--models-dir", str(models)])
    out = capsys.readouterr().out
    assert code == 1
    assert "OK       good" in out
    assert "CORRUPT  corrupt" in out and "expected" in out
    assert "MISMATCH short" in out and "bytes" in out
    assert "MISSING  missing" in out
    assert "4 checked, 3 problem(s)" in out


def test_verifier_passes_when_all_files_match(models_dir):
    models, manifest_path = models_dir
    doc = json.loads(manifest_path.read_text())
    doc["models"] = [m for m in doc["models"] if m["id"] == "good"]
    manifest_path.write_text(json.dumps(doc))
    assert main(["--manifest", str(manifest_path), "--models-dir", str(models)]) == 0


def test_verifier_rejects_an_invalid_manifest(tmp_path, capsys):
    path = tmp_path / "m.json"
    bad = entry()
    bad.pop("license")
    path.write_text(json.dumps(manifest(bad)))
    assert main(["--manifest", str(path), "--models-dir", str(tmp_path)]) == 2
    assert "missing required field 'license'" in capsys.readouterr().err


def test_missing_weight_message_names_file_folder_and_command():
    msg = missing_weight_message("inverfill", "inverfill_sdxl_turbo.safetensors",
                                 ["/x/models/fewstep/inverfill"], copy.deepcopy(entry()))
    assert "inverfill_sdxl_turbo.safetensors" in msg and "/x/models/fewstep/inverfill" in msg
    assert "python -m trainers.inverfill --config trainers/configs/inverfill_sdxl_turbo.yaml" in msg
    unknown = missing_weight_message("rad", "mine.safetensors", ["/m/fewstep/rad"], None)
    assert "mine.safetensors" in unknown and "/m/fewstep/rad" in unknown and "not listed" in unknown
