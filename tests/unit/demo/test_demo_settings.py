"""The demo's command line and the training commands it runs (no training here: tests/e2e runs it)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import pytest

from tg_llava_eval.cli import build_parser
from tg_llava_eval.cli.demo import settings_from_args
from tg_llava_eval.demo import DemoSettings
from tg_llava_eval.demo.pipeline import _stage_commands


def parse(*argv: str):
    return build_parser().parse_args(["demo", *argv])


def test_defaults_and_quick_settings():
    assert settings_from_args(parse()) == DemoSettings()
    assert settings_from_args(parse("--quick", "--seed", "3")) == dataclasses.replace(DemoSettings.quick(), seed=3)


def test_schedule_flags_override_the_defaults():
    settings = settings_from_args(parse("--stage2-rows", "5000", "--finetune-steps", "900", "--finetune-lr", "1e-3"))
    assert settings == dataclasses.replace(DemoSettings(), n_stage2=5000, finetune_steps=900, finetune_lr=1e-3)


@pytest.mark.parametrize("argv, message", [
    (("--finetune-steps", "0"), "--finetune-steps: 0 must be > 0"),
    (("--finetune-lr", "fast"), "--finetune-lr: 'fast' is not a number"),
    (("--stage2-rows", "1.5"), "--stage2-rows: '1.5' is not an integer"),
])
def test_bad_schedule_flags_are_named(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse(*argv)
    assert message in capsys.readouterr().err


def test_stage_commands_use_the_real_cli_with_the_settings(tmp_path: Path):
    settings = dataclasses.replace(DemoSettings(), finetune_steps=77, pretrain_steps=5, batch_size=4)
    data = {"stage1_json": "s1.json", "stage2_json": "s2.json", "image_dir": "img"}
    steps = _stage_commands(settings, data, "tiny", tmp_path)
    assert [name for name, _ in steps] == ["create", "stage1", "stage2"]
    (_, create), (_, pretrain), (_, finetune) = steps
    cli = [sys.executable, "-m", "tg_llava_eval.cli"]
    assert create[:4] == [*cli, "create"]
    assert pretrain[:5] == [*cli, "train", "pretrain"] and finetune[:5] == [*cli, "train", "finetune"]

    def flag(cmd, name):
        return cmd[cmd.index(name) + 1]

    # The start is assembled from the pretrained parts, as a real stage 1 starts.
    components = Path(settings.components)
    assert flag(create, "--vision") == str(components / "clip") and flag(create, "--llm") == str(components / "llm")
    assert flag(create, "--variant") == "tiny" and flag(create, "--seed") == str(settings.seed)
    assert flag(pretrain, "--model") == flag(create, "--output") == str(tmp_path / "initial")
    assert flag(pretrain, "--max_steps") == "5" and flag(finetune, "--max_steps") == "77"
    assert flag(finetune, "--from") == flag(pretrain, "--output") == str(tmp_path / "stage1")
    assert flag(finetune, "--data") == "s2.json" and flag(pretrain, "--data") == "s1.json"
    for cmd in (pretrain, finetune):
        assert "--no-deepspeed" in cmd and flag(cmd, "--gradient_checkpointing") == "false"
        assert flag(cmd, "--per_device_train_batch_size") == "4" and flag(cmd, "--variant") == "tiny"
        # The recipes' own accumulation unless the settings name one.
        assert "--gradient_accumulation_steps" not in cmd
    accumulated = _stage_commands(dataclasses.replace(settings, gradient_accumulation_steps=1), data, "tiny", tmp_path)
    assert all(flag(cmd, "--gradient_accumulation_steps") == "1" for name, cmd in accumulated if name != "create")
    # Random init: no create step, stage 1 builds its own start.
    random_init = _stage_commands(dataclasses.replace(settings, components=None), data, "tiny", tmp_path)
    assert [name for name, _ in random_init] == ["stage1", "stage2"] and "--model" not in random_init[0][1]


def test_the_packaged_components_are_the_default_and_load(tmp_path: Path):
    from tg_llava_eval.checkpoints.assembling import assemble_checkpoint
    from tg_llava_eval.demo.settings import COMPONENTS_DIR

    assert Path(DemoSettings().components) == COMPONENTS_DIR
    record = json.loads((COMPONENTS_DIR / "pretraining.json").read_text())
    assert set(record) == {"clip", "llm"} and all(record[part]["command"].startswith("python tools/") for part in record)
    # The LLM was pretrained in several runs: the record holds the chain back to random weights.
    chain, run = [], record["llm"]
    while run is not None:
        chain.append(run)
        run = run.get("init", {}).get("record")
    assert len(chain) == 3 and chain[-1]["settings"].get("llm_init") is None  # the first run predates the flag
    assert all(earlier["settings"]["llm_init"] is not None for earlier in chain[:-1])
    # Both presets assemble from them (strict loading: sizes match the presets).
    for variant in ("tiny", "tiny-baseline"):
        assemble_checkpoint(variant, tmp_path / variant, vision=COMPONENTS_DIR / "clip", llm=COMPONENTS_DIR / "llm")


def test_components_flags(tmp_path: Path, capsys):
    assert settings_from_args(parse("--random-init")).components is None
    folder = tmp_path / "parts"
    for part in ("clip", "llm"):
        (folder / part).mkdir(parents=True)
        (folder / part / "config.json").write_text("{}")
    assert settings_from_args(parse("--components", str(folder))).components == str(folder.resolve())
    with pytest.raises(SystemExit):
        parse("--components", str(folder), "--random-init")
    assert "not allowed with argument" in capsys.readouterr().err
    (folder / "llm" / "config.json").unlink()
    with pytest.raises(SystemExit):
        parse("--components", str(folder))
    assert "has no llm/config.json" in capsys.readouterr().err


def test_phases_of_an_older_format_are_redone(tmp_path: Path, monkeypatch):
    from tg_llava_eval.demo import phases as demo_phases

    calls = []
    phases = demo_phases.Phases(tmp_path, fresh=False, progress=lambda message: None)
    fingerprint = demo_phases.fingerprint(DemoSettings(), "seed")
    assert phases.run("data", fingerprint, lambda: calls.append(1) or {"n": 1}) == {"n": 1}
    assert phases.run("data", fingerprint, lambda: calls.append(2) or {"n": 2}) == {"n": 1}  # reused
    monkeypatch.setattr(demo_phases, "PHASE_FORMAT", demo_phases.PHASE_FORMAT + 1)
    newer = demo_phases.fingerprint(DemoSettings(), "seed")
    assert newer != fingerprint
    assert phases.run("data", newer, lambda: calls.append(3) or {"n": 3}) == {"n": 3}
    assert calls == [1, 3] and phases.reused == ["data"]


def test_other_parts_redo_the_training_but_not_the_data(tmp_path: Path):
    from tg_llava_eval.demo.phases import phase_fingerprints
    from tg_llava_eval.demo.settings import COMPONENTS_DIR

    data_fp, train_fp = phase_fingerprints(DemoSettings())
    for other in (DemoSettings(components=None), DemoSettings(finetune_steps=301)):
        other_data_fp, other_train_fp = phase_fingerprints(other)
        assert other_data_fp == data_fp and other_train_fp != train_fp
    assert phase_fingerprints(DemoSettings(n_stage2=9601))[0] != data_fp
    # The parts enter through their bytes, not their folder's name.
    copy = tmp_path / "parts"
    shutil.copytree(COMPONENTS_DIR, copy)
    assert phase_fingerprints(DemoSettings(components=str(copy)))[1] == train_fp
    changed = tmp_path / "changed"  # another folder: the digest is computed once per folder and process
    shutil.copytree(COMPONENTS_DIR, changed)
    (changed / "llm" / "generation_config.json").write_text("{}")
    assert phase_fingerprints(DemoSettings(components=str(changed)))[1] != train_fp


def test_a_redone_phase_starts_without_its_old_outputs(tmp_path: Path):
    from tg_llava_eval.demo.phases import Phases

    folder = tmp_path / "models" / "tiny"
    (folder / "initial_checkpoint").mkdir(parents=True)
    phases = Phases(tmp_path, fresh=False, progress=lambda message: None)
    seen = phases.run("train", "fp-1", lambda: sorted(p.name for p in tmp_path.rglob("*")), outputs=(folder,))
    assert "initial_checkpoint" not in seen and "tiny" not in seen
    folder.mkdir(parents=True)
    (folder / "kept").touch()
    assert phases.run("train", "fp-1", lambda: "redone", outputs=(folder,)) == seen  # reused: nothing removed
    assert (folder / "kept").exists()
