"""core.weights: safetensors-only loading, metadata, atomic writes."""
import os
import stat

import pytest
import torch

from core.weights import WeightFileError, load_weights, read_header, read_metadata, save_weights, sha256_file


def _save(tmp_path, name="net.safetensors", **meta):
    sd = {"a.weight": torch.randn(4, 3), "b.bias": torch.zeros(4)}
    meta = {"kind": "inverfill", "base_family": "sdxl", "config": {"lr": 1e-5, "steps": 3}, **meta}
    return save_weights(tmp_path / name, sd, meta), sd


def test_roundtrip_with_metadata(tmp_path):
    path, sd = _save(tmp_path)
    loaded, meta = load_weights(path)
    assert set(loaded) == set(sd) and torch.equal(loaded["a.weight"], sd["a.weight"])
    assert meta == {"kind": "inverfill", "base_family": "sdxl", "config": {"lr": 1e-5, "steps": 3}}
    assert read_metadata(path) == meta


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    _save(tmp_path)
    _save(tmp_path)  # overwrite in place
    assert sorted(os.listdir(tmp_path)) == ["net.safetensors"]
    mode = stat.S_IMODE(os.stat(tmp_path / "net.safetensors").st_mode)
    assert mode & 0o044, "readable by group/others like any saved model"


def test_failed_save_keeps_the_old_file(tmp_path):
    path, _ = _save(tmp_path)
    before = sha256_file(path)
    with pytest.raises(AttributeError):  # str has no .detach()
        save_weights(path, {"bad": "not a tensor"})
    assert sha256_file(path) == before and os.listdir(tmp_path) == ["net.safetensors"]


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth", ".bin", ".pkl"])
def test_pickle_formats_are_refused(tmp_path, suffix):
    path = tmp_path / f"net{suffix}"
    path.write_bytes(b"whatever")
    with pytest.raises(WeightFileError, match="pickle-based"):
        load_weights(path)


def test_other_suffix_refused(tmp_path):
    with pytest.raises(WeightFileError, match="only .safetensors"):
        read_header(tmp_path / "net.onnx")


def test_not_safetensors_content(tmp_path):
    path = tmp_path / "fake.safetensors"
    path.write_bytes(b"PK\x03\x04 this is a zip, not safetensors" * 4)
    with pytest.raises(WeightFileError, match="not a safetensors file"):
        load_weights(path)


def test_truncated_file_is_detected_from_the_header(tmp_path):
    path, _ = _save(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(WeightFileError, match="truncated"):
        read_header(path)


def test_missing_file(tmp_path):
    with pytest.raises(WeightFileError, match="file not found"):
        read_header(tmp_path / "absent.safetensors")


def test_metadata_keeps_unknown_keys_and_plain_strings(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "x.safetensors"
    save_file({"t": torch.zeros(1)}, str(path), metadata={"fewstep.config": "{not json", "other": "v"})
    assert read_metadata(path) == {"config": "{not json", "other": "v"}


def test_sha256(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
