"""trainers.common: typed config, safetensors checkpoints, EMA, prompt files."""
import json
import os
from dataclasses import dataclass, field

import pytest
import torch

from trainers.common.checkpoint import (
    latest_checkpoint, load_checkpoint, optimizer_from_tensors, optimizer_to_tensors, save_checkpoint,
)
from trainers.common.config import ConfigError, build_config, parse_overrides
from trainers.common.data import DataError, read_prompts, step_generator
from trainers.common.ema import EMA


@dataclass
class Cfg:
    lr: float = 1e-5
    steps: int = 10
    name: str = "x"
    precision: str = "bf16"
    flag: bool = True
    probs: dict = field(default_factory=lambda: {"a": 0.5, "b": 0.5})
    pair: list = field(default_factory=lambda: [1, 2])


def test_config_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-4\nsteps: 20\nprecision: no\nprobs: {a: 1.0}\n")
    cfg = build_config(Cfg, path, ["--steps=30", "--name", "run", "--flag=false", "--probs.b=0.25", "pair=[3, 4]"])
    assert cfg.lr == 1e-4 and cfg.steps == 30 and cfg.name == "run" and cfg.flag is False
    assert cfg.precision == "no", "YAML 1.1 reads a bare no as false; string fields get the text back"
    assert cfg.probs == {"a": 1.0, "b": 0.25} and cfg.pair == [3, 4]
    assert build_config(Cfg, None, ["--precision=no"]).precision == "no"


@pytest.mark.parametrize("args, message", [
    (["--stepz=3"], "unknown option"), (["--steps=3.5"], "steps: expected an integer"),
    (["--lr=fast"], "lr: expected a number"), (["--flag=maybe"], "flag: expected true/false"),
    (["--steps"], "has no value"),
])
def test_config_errors_name_the_option(args, message):
    with pytest.raises(ConfigError, match=message):
        build_config(Cfg, None, args)


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        build_config(Cfg, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        build_config(Cfg, bad)


def test_parse_overrides_nests_dotted_keys():
    assert parse_overrides(["--a.b=1", "c=x"]) == {"a": {"b": "1"}, "c": "x"}


def test_prompts_file_errors(tmp_path):
    with pytest.raises(DataError, match="prompts_file: .* does not exist"):
        read_prompts(tmp_path / "none.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n   \n")
    with pytest.raises(DataError, match="prompts_file: .* holds no prompts"):
        read_prompts(empty)
    ok = tmp_path / "ok.txt"
    ok.write_text(" a cat \n\nA dog\n")
    assert read_prompts(ok) == ["a cat", "A dog"]


def test_step_generator_is_deterministic_and_distinct():
    a = torch.randn(3, generator=step_generator(1, 5, 0))
    assert torch.equal(a, torch.randn(3, generator=step_generator(1, 5, 0)))
    assert not torch.equal(a, torch.randn(3, generator=step_generator(1, 5, 1)))
    assert not torch.equal(a, torch.randn(3, generator=step_generator(1, 6, 0)))


def test_ema_update_and_full_state():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    before = ema.shadow["weight"].clone()
    ema.update(model, step=100)  # decay 0.5
    torch.testing.assert_close(ema.shadow["weight"], 0.5 * before + 0.5 * model.weight.detach())
    assert set(ema.full_state_dict(model)) == set(model.state_dict())
    with pytest.raises(KeyError):
        ema.load_state_dict({})


def test_optimizer_state_round_trips_without_pickle():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.8, 0.9))
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    tensors, meta = optimizer_to_tensors(opt)
    json.dumps(meta)  # JSON-able
    fresh = torch.optim.AdamW(model.parameters(), lr=1.0)
    optimizer_from_tensors(fresh, tensors, meta)
    a, b = opt.state_dict(), fresh.state_dict()
    assert b["param_groups"][0]["lr"] == 1e-3 and tuple(b["param_groups"][0]["betas"]) == (0.8, 0.9)
    for idx in a["state"]:
        for key, value in a["state"][idx].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["state"][idx][key]))


def test_checkpoints_are_atomic_and_pruned(tmp_path):
    for step in (5, 10, 15):
        save_checkpoint(tmp_path, step, {"model": {"w": torch.full((2,), float(step))}}, {"note": step}, keep_last=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["checkpoint-00000010", "checkpoint-00000015", "latest.json"]
    tensors, state = load_checkpoint(latest_checkpoint(tmp_path))
    assert state["step"] == 15 and float(tensors["model"]["w"][0]) == 15.0
    # a half-written checkpoint (killed run) and a stale pointer are ignored
    (tmp_path / "checkpoints" / "checkpoint-00000020.tmp").mkdir()
    os.remove(tmp_path / "checkpoints" / "checkpoint-00000015" / "model.safetensors")
    assert latest_checkpoint(tmp_path).name == "checkpoint-00000010"
    assert latest_checkpoint(tmp_path / "nothing") is None


@pytest.mark.parametrize("trainer", ["inverfill", "turbofill", "rad", "turboedit"])
def test_an_unwritable_output_dir_is_refused_before_anything_loads(trainer, tmp_path, monkeypatch):
    """Was: a raw PermissionError from TensorBoard after the base model had loaded (38 s in)."""
    from .conftest import fails_before_loading

    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    fails_before_loading(monkeypatch, trainer, [f"--output_dir={blocker / 'run'}"],
                         r"output_dir: .*not_a_folder/run cannot be created: .*not_a_folder is a file, not a folder")
    fails_before_loading(monkeypatch, trainer, [f"--output_dir={blocker}"], r"output_dir: .*not_a_folder is a file")
    fails_before_loading(monkeypatch, trainer, [f"--output_dir={tmp_path / 'ok'}",
                                                f"--manifest={blocker / 'weights_manifest.json'}"],
                         r"manifest: .*cannot be created: .*not_a_folder is a file")
    assert not (tmp_path / "ok").exists()


def test_a_read_only_folder_is_refused(tmp_path, monkeypatch):
    from trainers.common.config import check_writable_path

    monkeypatch.setattr(os, "access", lambda path, mode: False)  # what access(2) says on a read-only mount
    with pytest.raises(ValueError, match=r"output_dir: .* is not writable \(choose another output_dir\)"):
        check_writable_path(tmp_path, "output_dir")
    with pytest.raises(ValueError, match=r"output_dir: .*new cannot be created: .* is not writable"):
        check_writable_path(tmp_path / "new", "output_dir")


@pytest.mark.parametrize("trainer, fixture", [("rad", "tiny_rad_run"), ("turboedit", "tiny_turboedit_run")])
def test_the_same_command_killed_and_resumed_gives_bit_identical_weights(trainer, fixture, tiny_bases, image_folder,
                                                                         tmp_path, request):
    """A second run of the documented command (SIGKILLed at checkpoint 30, then rerun) ends with the tensors of the
    first: its networks start from the seed, not from the global RNG (7 runs once gave 7 hashes), and resume is
    exact. (InverFill and TurboFill: their kill-and-resume tests compare with a straight run the same way.)"""
    from core.weights import load_weights

    from .conftest import run_killed, run_module

    args = ["--config", f"trainers/configs/{trainer}_tiny.yaml", f"--base_model={tiny_bases['sd15']}",
            f"--images_dir={image_folder}", f"--output_dir={tmp_path}"]
    run_killed(f"trainers.{trainer}", args, step=30)
    assert not (tmp_path / f"{trainer}_tiny.safetensors").exists()
    resumed = json.loads(run_module(f"trainers.{trainer}", args).stdout.strip().splitlines()[-1])
    assert resumed["resumed_from"] == 30
    first, _ = load_weights(request.getfixturevalue(fixture)["weights"])
    second, _ = load_weights(tmp_path / f"{trainer}_tiny.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
